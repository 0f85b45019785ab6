/**
 * @title Where a pipe lives, and when it disappears
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
 * @resource {https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html} Man page: /proc/pid/fd
 *
 * An anonymous pipe is a kernel object with no name: /proc/<pid>/fd shows each end as
 * `pipe:[inode]`, and once every process holding an end has closed it, no trace is left. A FIFO
 * has a name in the file system that outlives both processes until someone removes it. Proves
 * the article's claims 4 and 5. Linux only. Deno refuses to read /proc without -A, so the lesson
 * asks GNU `find` to read the links; it writes only in a temporary directory it makes and removes.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
 * Anonymous pipe: the child's stdout; the parent holds the read end.
 *   parent got: hello through the pipe
 *   while both run, pipe:[126044] has no path, only these ends:
 *     /proc/3638/fd/25 -> pipe:[126044] (parent)
 *     /proc/3645/fd/1 -> pipe:[126044] (child)
 *     /proc/3645/fd/18 -> pipe:[126044] (child)
 *   the child exited; the pipe lives on while the parent holds an end:
 *     /proc/3638/fd/25 -> pipe:[126044] (parent)
 *   the parent read EOF and closed its end; every process on the machine:
 *     no process holds it
 * FIFO: mkfifo made /tmp/pipe_lifetime_b3b177c085be37f0/lesson.fifo, inode 2147532.
 *   parent got: hello through the FIFO
 *   while both run, the ends point to the name:
 *     /proc/3638/fd/26 -> /tmp/pipe_lifetime_b3b177c085be37f0/lesson.fifo (parent)
 *     /proc/3666/fd/22 -> /tmp/pipe_lifetime_b3b177c085be37f0/lesson.fifo (child)
 *   both ends closed, the child exited; every process on the machine:
 *     no process holds it
 *   yet the name stays: isFifo true, inode 2147532
 *   until the lesson removes it (and its temporary directory).
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const HELP =
  `usage: deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
Shows what /proc says of an anonymous pipe and of a FIFO. No options but --help.`;
const children = new Set<Deno.ChildProcess>();
let tempDir: string | undefined;

/**
 * The Deno binary to run the child with: this very binary. `--allow-run=deno` grants the `deno`
 * found on PATH; when that is a symlink to this binary (npm and Homebrew installs), Deno grants
 * the name but not the real path, so fall back to the name.
 */
function denoExecutable(): string {
  const self = Deno.execPath();
  const status = Deno.permissions.querySync({ name: "run", command: self });
  return status.state === "granted" ? self : "deno";
}

/** Runs GNU find with `args` and returns its "path -> link" lines (it reads /proc for us). */
async function findLinks(args: string[]): Promise<string[]> {
  const { stdout } = await new Deno.Command("find", {
    args: [...args, "-printf", "%p -> %l\n"],
    stdout: "piped",
    stderr: "null", // processes we may not inspect, or that exit while find looks
  }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((line) => line !== "");
}

/**
 * The open file descriptors whose /proc link reads `target`, as "/proc/<pid>/fd/<n> -> target"
 * lines: in the processes `pids`, or in every process we may inspect when none are given.
 */
export function holders(target: string, pids: number[] = []): Promise<string[]> {
  const where = pids.length > 0
    ? [...pids.map((pid) => `/proc/${pid}/fd`), "-mindepth", "1", "-maxdepth", "1"]
    : ["/proc", "-mindepth", "3", "-maxdepth", "3", "-path", "/proc/[0-9]*/fd/*"];
  const pattern = target.replace(/[[\]*?\\]/g, "\\$&"); // a find pattern: escape [ ] * ? \
  return findLinks([...where, "-lname", pattern]);
}

/** Prints each holder line, naming the process it belongs to. */
function show(lines: string[], childPid: number): void {
  if (lines.length === 0) console.log("    no process holds it");
  for (const line of lines) {
    const who = line.startsWith(`/proc/${childPid}/`) ? "child" : "parent";
    console.log(`    ${line} (${who})`);
  }
}

/** Runs this script as a child with `args`, given only `permissions`. */
function spawnChild(args: string[], permissions: string[], stdout: "piped" | "null") {
  const child = new Deno.Command(denoExecutable(), {
    args: ["run", ...permissions, import.meta.filename!, ...args],
    stdin: "piped",
    stdout,
    stderr: "inherit",
  }).spawn();
  children.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

// Both children write a line, then keep their end open until their stdin reaches EOF: the parent
// decides when they exit, so it can look at /proc while the pipe is in use, with no sleeps.
async function childWrites(fifo: string | undefined): Promise<void> {
  const out = fifo ? await Deno.open(fifo, { write: true }) : Deno.stdout;
  const kind = fifo ? "FIFO" : "pipe";
  await out.write(new TextEncoder().encode(`hello through the ${kind}\n`));
  await new Response(Deno.stdin.readable).arrayBuffer(); // reads stdin to EOF
  if (fifo) out.close();
}

// Both readers below read chunk by chunk, with no pipeThrough: a piped stream reads ahead on its
// own, so it would meet EOF as soon as the child exits and close the parent's end before we look.

/** Reads until the first line is in, and no further: it proves the writer runs. */
async function firstLine(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  return text.split("\n")[0];
}

/** Reads to EOF, which comes once no write end is left; Deno then closes the read end. */
async function readToEof(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  let chunk = await reader.read();
  while (!chunk.done) chunk = await reader.read();
}

async function anonymousPipe(): Promise<void> {
  console.log("Anonymous pipe: the child's stdout; the parent holds the read end.");
  const child = spawnChild(["--role", "pipe-writer"], [], "piped");
  const reader = child.stdout.getReader();
  console.log(`  parent got: ${await firstLine(reader)}`);
  // The child's fd 1 is its write end; its /proc link names the pipe: pipe:[inode].
  const [fdLink] = await findLinks([`/proc/${child.pid}/fd/1`, "-maxdepth", "0"]);
  if (!fdLink) throw new Error(`cannot read /proc/${child.pid}/fd/1`);
  const pipe = fdLink.split(" -> ")[1];
  // Expect two child lines: Deno keeps its own duplicate of the stdout it was given.
  console.log(`  while both run, ${pipe} has no path, only these ends:`);
  show(await holders(pipe, [Deno.pid, child.pid]), child.pid);
  // Closing the child's stdin lets it exit; its write end closes with it.
  await child.stdin.close();
  await child.status;
  console.log("  the child exited; the pipe lives on while the parent holds an end:");
  show(await holders(pipe), child.pid);
  await readToEof(reader);
  console.log("  the parent read EOF and closed its end; every process on the machine:");
  show(await holders(pipe), child.pid);
}

async function namedFifo(): Promise<void> {
  tempDir = await Deno.makeTempDir({ prefix: "pipe_lifetime_" });
  const fifo = `${tempDir}/lesson.fifo`;
  // Deno has no mkfifo call, so run the program (mode 600: only we may open it).
  const made = await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] }).output();
  if (!made.success) throw new Error(`mkfifo ${fifo} failed`);
  const { ino } = await Deno.lstat(fifo);
  console.log(`FIFO: mkfifo made ${fifo}, inode ${ino}.`);
  // Opening a FIFO to read waits for a writer, so start the open, then start the writer, which
  // finds the FIFO by its name and needs only the right to write to it.
  const opening = Deno.open(fifo, { read: true });
  const writerArgs = ["--role", "fifo-writer", "--fifo", fifo];
  const child = spawnChild(writerArgs, [`--allow-write=${fifo}`], "null");
  // A writer that dies before it opens the FIFO would leave this open waiting forever.
  const opened = await Promise.race([opening, child.status]);
  if (!(opened instanceof Deno.FsFile)) {
    throw new Error(`the FIFO writer exited with code ${opened.code} before it opened the FIFO`);
  }
  const reader = opened.readable.getReader();
  console.log(`  parent got: ${await firstLine(reader)}`);
  console.log("  while both run, the ends point to the name:");
  show(await holders(fifo, [Deno.pid, child.pid]), child.pid);
  await child.stdin.close();
  await child.status;
  await readToEof(reader);
  console.log("  both ends closed, the child exited; every process on the machine:");
  show(await holders(fifo), child.pid);
  const after = await Deno.lstat(fifo);
  console.log(`  yet the name stays: isFifo ${after.isFifo}, inode ${after.ino}`);
  await Deno.remove(tempDir, { recursive: true });
  tempDir = undefined;
  console.log("  until the lesson removes it (and its temporary directory).");
}

/** Kills the children this lesson started and removes its temporary directory. */
function cleanUp(): void {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* it has exited already */ }
  }
  if (tempDir) Deno.removeSync(tempDir, { recursive: true });
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      options: {
        role: { type: "string" }, // "pipe-writer" or "fifo-writer": what the parent starts
        fifo: { type: "string" },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (error) {
    console.error(`error: ${(error as Error).message.replaceAll("\n", " ")} (see --help)`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (![undefined, "pipe-writer", "fifo-writer"].includes(values.role)) {
    console.error(
      `error: --role must be pipe-writer or fifo-writer, not "${values.role}" (see --help)`,
    );
    return 2;
  }
  try {
    if (values.role) {
      await childWrites(values.fifo);
      return 0;
    }
    if (Deno.build.os !== "linux") {
      console.error("error: this lesson reads Linux's /proc; it runs on Linux only");
      return 1;
    }
    await anonymousPipe();
    await namedFifo();
    return 0;
  } catch (error) {
    // A child whose parent went away meets a closed pipe: an ending, not a bug.
    if (values.role && error instanceof Deno.errors.BrokenPipe) return 1;
    if (error instanceof Deno.errors.NotCapable) {
      const what = (error as Error).message.split(",")[0];
      console.error(`error: ${what}; run it as the header shows`);
    } else if (error instanceof Deno.errors.BrokenPipe) {
      console.error("error: a child closed its end of a pipe early (it exited or was killed)");
    } else console.error(`error: ${(error as Error).message}`);
    return 1;
  } finally {
    cleanUp();
  }
}

if (import.meta.main) {
  // Ctrl-C or SIGTERM: clean up what this lesson made, then exit 130 / 143.
  Deno.addSignalListener("SIGINT", () => {
    cleanUp();
    Deno.exit(130);
  });
  Deno.addSignalListener("SIGTERM", () => {
    cleanUp();
    Deno.exit(143);
  });
  Deno.exit(await main());
}
