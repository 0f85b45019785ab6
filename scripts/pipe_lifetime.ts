/**
 * @title Where a pipe lives, and when it disappears
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
 * @resource {https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html} Man page: /proc/pid/fd
 *
 * An anonymous pipe is `pipe:[inode]` in /proc/<pid>/fd, with no name, gone once its ends close;
 * a FIFO's name outlives both processes until removed: the article's claims 4 and 5. Linux only.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
 * Anonymous pipe: the child's stdout; the parent holds the read end.
 *   parent got "hello through the pipe"; pipe:[269391] has no path, only these ends:
 *     /proc/3401/fd/26 -> pipe:[269391] (parent)
 *     /proc/3408/fd/1 -> pipe:[269391] (child)
 *     /proc/3408/fd/19 -> pipe:[269391] (child)
 *   the child exited; the parent's end keeps it alive:
 *     /proc/3401/fd/26 -> pipe:[269391] (parent)
 *   the parent read EOF and closed its end; in every process: no process holds it
 * FIFO: mkfifo made /tmp/pipe_lifetime_6280037fd99c07af/lesson.fifo, inode 2146463.
 *   parent got "hello through the FIFO"; its ends point to the name:
 *     /proc/3401/fd/27 -> /tmp/pipe_lifetime_6280037fd99c07af/lesson.fifo (parent)
 *     /proc/3419/fd/21 -> /tmp/pipe_lifetime_6280037fd99c07af/lesson.fifo (child)
 *   the child exited; the parent's end keeps it alive:
 *     /proc/3401/fd/27 -> /tmp/pipe_lifetime_6280037fd99c07af/lesson.fifo (parent)
 *   the parent read EOF and closed its end; in every process: no process holds it
 *   yet the name stays: isFifo true, inode 2146463, until the lesson removes it.
 * ```
 *
 * @module
 */

// First the anonymous pipe: the child's stdout. Its fd 1 is the write end, whose /proc link
// names the pipe, `pipe:[inode]`: there is no path to it, only the ends the processes hold.
async function anonymousPipe(): Promise<void> {
  if (Deno.build.os !== "linux") throw new Refusal("this lesson reads Linux's /proc: Linux only");
  console.log("Anonymous pipe: the child's stdout; the parent holds the read end.");
  const args = ["run", import.meta.url, "--child", "pipe"];
  const child = start(denoExecutable(), { args, stdin: "piped", stdout: "piped" });
  const [fdLink] = await findLinks([`/proc/${child.pid}/fd/1`, "-maxdepth", "0"]);
  if (!fdLink) throw new Refusal(`cannot read /proc/${child.pid}/fd/1`);
  const pipe = fdLink.split(" -> ")[1];
  // Expect two child lines: Deno keeps its own duplicate of the stdout it was given.
  await closeEnds(pipe, child, child.stdout.getReader(), `${pipe} has no path, only these ends`);
}

// Then a FIFO, in a fresh private directory. Opening it to read waits for a writer, so the open
// starts first, then the writer, which finds the FIFO by its name and may write only that path.
async function namedFifo(): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "pipe_lifetime_" });
  undo.push(() => Deno.remove(dir));
  const fifo = await makeFifo(`${dir}/lesson.fifo`);
  console.log(`FIFO: mkfifo made ${fifo}, inode ${(await Deno.lstat(fifo)).ino}.`);
  const opening = Deno.open(fifo, { read: true });
  const args = ["run", `--allow-write=${fifo}`, import.meta.url, "--child", "FIFO", fifo];
  const child = start(denoExecutable(), { args, stdin: "piped", stdout: "null" });
  // A writer that dies before it opens the FIFO would leave this open waiting forever.
  const opened = await Promise.race([opening, child.status]);
  if (!(opened instanceof Deno.FsFile)) throw new Refusal("the writer ended before its open");
  await closeEnds(fifo, child, opened.readable.getReader(), "its ends point to the name");
  const { isFifo, ino } = await Deno.lstat(fifo); // cleanUpAndExit removes it, and the directory
  console.log(`  yet the name stays: isFifo ${isFifo}, inode ${ino}, until the lesson removes it.`);
  return 0;
}

// One read gets the child's line: one write of far fewer than PIPE_BUF bytes. No pipeThrough: a
// piped stream reads ahead, and would meet EOF and close the parent's end before we look.
async function closeEnds(target: string, child: Deno.ChildProcess, reader: Reader, now: string) {
  const { value } = await reader.read();
  await showHolders(target, child.pid, `parent got "${decoder.decode(value).trimEnd()}"; ${now}`);
  // Then both ends close, one at a time. Closing the child's stdin lets it exit, and its end
  // closes with it; the parent's end keeps the pipe alive until the parent reads EOF.
  await child.stdin.close();
  await child.status;
  await showHolders(target, child.pid, "the child exited; the parent's end keeps it alive");
  let chunk = await reader.read();
  while (!chunk.done) chunk = await reader.read(); // EOF comes once no write end is left
  await showHolders(target, child.pid, "the parent read EOF and closed its end; in every process");
}

// Each child writes a line, then keeps its end open until its stdin reaches EOF: the parent
// decides when it exits, so it can look at /proc while the pipe is in use, with no sleeps.
async function child(kind: string, fifo?: string): Promise<void> {
  const out = fifo ? await Deno.open(fifo, { write: true }) : Deno.stdout;
  out.writeSync(new TextEncoder().encode(`hello through the ${kind}\n`)); // short: written whole
  await new Response(Deno.stdin.readable).arrayBuffer(); // reads stdin to EOF
  out.close();
}

/** Starts `program`; the clean-up stops it (SIGTERM) and waits for it: no child outlives us. */
function start(program: string, options: Deno.CommandOptions): Deno.ChildProcess {
  const stop = new AbortController();
  const child = new Deno.Command(program, { ...options, signal: stop.signal }).spawn();
  undo.push(() => child.status, () => stop.abort()); // undo runs last first: SIGTERM, then wait
  return child;
}

type Reader = ReadableStreamDefaultReader<Uint8Array>;
const decoder = new TextDecoder();

/** Runs GNU find with `args`: its "path -> link" lines (Deno refuses to read /proc without -A). */
async function findLinks(args: string[]): Promise<string[]> {
  const withLinks = [...args, "-printf", "%p -> %l\n"];
  // Its complaints are dropped: processes we may not inspect, or that exit while it looks.
  const find = start("find", { args: withLinks, stdout: "piped", stderr: "null" });
  const { stdout } = await find.output();
  return decoder.decode(stdout).split("\n").filter((line) => line !== "");
}

/** Prints `heading`, then every fd on the machine whose /proc link reads `target`, and its owner. */
async function showHolders(target: string, childPid: number, heading: string): Promise<void> {
  const pattern = target.replace(/[[\]*?\\]/g, "\\$&"); // a find pattern: escape [ ] * ? \
  const fds = ["/proc", "-mindepth", "3", "-maxdepth", "3", "-path", "/proc/[0-9]*/fd/*"];
  const lines = await findLinks([...fds, "-lname", pattern]);
  if (lines.length === 0) console.log(`  ${heading}: no process holds it`);
  else console.log(`  ${heading}:`);
  for (const line of lines) {
    const who = line.startsWith(`/proc/${childPid}/`) ? "child" : "parent";
    console.log(`    ${line} (${who})`);
  }
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

/**
 * This Deno, to start a child with. `--allow-run=deno` grants the `deno` on PATH; when that is a
 * symlink (npm, Homebrew), the real path `Deno.execPath()` is not granted, so run it by name.
 */
function denoExecutable(): string {
  const self = Deno.execPath();
  const status = Deno.permissions.querySync({ name: "run", command: self });
  return status.state === "granted" ? self : "deno";
}

/** Exits with one line, code 1, on a Deno older than the lessons need (2.8.3). */
function requireDeno(): void {
  const [major, minor, patch] = Deno.version.deno.split(/[.-]/).map(Number);
  if (major * 1e6 + minor * 1e3 + patch >= 2_008_003) return;
  console.error(`error: this lesson needs Deno 2.8.3 or newer, not ${Deno.version.deno}`);
  Deno.exit(1);
}

/** A mistake on the command line: one line naming it, and exit code 2, never a stack trace. */
function usageError(message: string): never {
  console.error(`error: ${message.replaceAll("\n", " ")} (see --help)`);
  Deno.exit(2);
}

// The FIFO pieces. What to undo on every way out (the end, an error, Ctrl-C, SIGTERM), last
// first: only what this process made, and a FIFO only while its inode is still the one it made.
const undo: (() => unknown)[] = [];
let exiting = false; // set by the first call of cleanUpAndExit, which ends the run

/** Undoes what this process made, last first, then exits. A later call waits for the first. */
async function cleanUpAndExit(code: number): Promise<never> {
  if (exiting) await new Promise(() => {}); // never resolves: the first call exits for both
  exiting = true;
  for (const step of undo.reverse()) await Promise.try(step).catch(() => {}); // gone already?
  Deno.exit(code);
}

/** Makes a FIFO with `mkfifo` (Deno has no call for it), mode 600: only our user may open it.
 * mkfifo runs outside Deno's sandbox: first make sure we may check and remove what it makes. */
async function makeFifo(path: string): Promise<string> {
  const state = (name: "read" | "write") => Deno.permissions.querySync({ name, path }).state;
  if (state("read") !== "granted" || state("write") !== "granted") {
    throw new Refusal(`--allow-read and --allow-write must both cover ${path}`);
  }
  const made = await new Deno.Command("mkfifo", { args: ["-m", "600", "--", path] }).output();
  if (!made.success) throw new Refusal(`mkfifo could not make ${path}`); // something is there
  const { ino } = await Deno.lstat(path);
  undo.push(() => { // only while the path still holds our FIFO, never what took its place
    const now = Deno.lstatSync(path);
    if (now.isFifo && now.ino === ino) Deno.removeSync(path);
  });
  return path;
}

/** A failure the user can act on: one line, exit code 1. A bug keeps its stack trace. */
class Refusal extends Error {}

/** Runs a FIFO lesson, then undoes what it made and exits; so do Ctrl-C (130) and SIGTERM (143). */
async function runFifoLesson(lesson: () => Promise<number>): Promise<never> {
  let code = 1;
  try {
    if (Deno.build.os === "windows") throw new Refusal("FIFOs are Unix only: use Linux or macOS");
    Deno.addSignalListener("SIGINT", () => cleanUpAndExit(130));
    Deno.addSignalListener("SIGTERM", () => cleanUpAndExit(143));
    code = await lesson();
  } catch (error) {
    const expected = [Refusal, Deno.errors.NotFound, Deno.errors.NotCapable];
    const oneLine = expected.some((kind) => error instanceof kind);
    // A closed stdout (`| head`) ends the run quietly; after a signal, how it ended is no news.
    if (error instanceof Deno.errors.BrokenPipe) code = 0;
    else if (!exiting) console.error(oneLine ? `error: ${(error as Error).message}` : error);
  }
  return await cleanUpAndExit(code);
}

// The command line. A child gets `--child pipe` or `--child FIFO PATH`.
const USAGE =
  `usage: deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
Shows what /proc says of an anonymous pipe and of a FIFO. No options but --help.`;

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Deno.args[1], Deno.args[2]);
} else if (import.meta.main) {
  requireDeno();
  const words = Deno.args.join(" ");
  if (words === "--help") console.log(USAGE);
  else if (words !== "") usageError(`no options but --help, got "${words}"`);
  else await runFifoLesson(() => anonymousPipe().then(namedFifo));
}
