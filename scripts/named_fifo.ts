/**
 * @title Named FIFO: a pipe with a name, between related and unrelated processes
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/named_fifo.ts
 * @resource {https://man7.org/linux/man-pages/man7/fifo.7.html} Man page: fifo(7)
 *
 * The article's program, through a FIFO made with `mkfifo` (Unix only). A FIFO has a name, so
 * its two sides need no common parent (claim 4): `--role reader|writer --path P` runs one side.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/named_fifo.ts --count 2 --interval 200
 * Parent 12630 made the FIFO /tmp/named_fifo_748806e2baf2ba59/fifo and started writer 12638
 * Parent 12630 got "Number 000" at 1796292137.661
 * Parent 12630 got "Number 001" at 1796292137.863
 * Parent 12630 saw EOF: every writer has closed the FIFO
 * ```
 *
 * @module
 */

// The parent is the article's reader; its writer, this script's `--role writer`, may open only P.
async function parent(count: number, intervalMs: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "named_fifo_" }); // mode 700: unlike /tmp, private
  undo.push(() => Deno.remove(dir));
  const path = await makeFifo(`${dir}/fifo`);
  const writer = new Deno.Command(denoExecutable(), {
    args: ["run", `--allow-read=${path}`, `--allow-write=${path}`, import.meta.url]
      .concat("--role=writer", `--path=${path}`, `--count=${count}`, `--interval=${intervalMs}`),
    stdout: "null",
  }).spawn();
  undo.push(() => writer.status, () => writer.kill()); // undo runs last first: SIGTERM, then wait
  console.log(`Parent ${Deno.pid} made the FIFO ${path} and started writer ${writer.pid}`);
  // Open waits for the writer (in a thread since Deno 2.8.0, deno#33667): race it with its exit.
  const fifo = await Promise.race([openFifo(path, { read: true }), writer.status]);
  if (fifo instanceof Deno.FsFile) await read(fifo, `Parent ${Deno.pid}`);
  const status = await writer.status; // EOF came however the writer ended: ask it how
  if (status.success) return 0;
  const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
  throw new Refusal(`the writer ${how}`);
}

// Each read waits while the FIFO is empty (claim 2); EOF comes once every writer has closed it.
async function read(fifo: Deno.FsFile, who: string): Promise<number> {
  for await (const line of readLines(fifo.readable)) {
    const seconds = (Date.now() / 1000).toFixed(3);
    writeAll(Deno.stdout, encoder.encode(`${who} got "${line}" at ${seconds}\n`));
  }
  writeAll(Deno.stdout, encoder.encode(`${who} saw EOF: every writer has closed the FIFO\n`));
  return 0;
}

async function oneSide(role: string, path: string, count: number, intervalMs: number) {
  try { // the name is all the two share: this side removes a FIFO it made, and leaves one it found
    if (!(await Deno.lstat(path)).isFifo) await makeFifo(path); // refuses a file or a symlink at P
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error; // NotCapable, say, or that refusal
    await makeFifo(path).catch(async (refusal) => { // did the other side, started at once, make it?
      if (!(await Deno.lstat(path).catch(() => null))?.isFifo) throw refusal;
    });
  }
  const who = `${role === "reader" ? "Reader" : "Writer"} ${Deno.pid}`;
  console.log(`${who}: waiting for the other end of ${path}`);
  if (role === "reader") return await read(await openFifo(path, { read: true }), who);
  // The writer (the article's child): a line is one writeSync under PIPE_BUF bytes: it comes whole.
  const fifo = await openFifo(path, { write: true });
  for (let sent = 0; count === 0 || sent < count; sent++) { // no reader: BrokenPipe, a quiet end
    if (sent > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
    writeAll(fifo, encoder.encode(`Number ${String(sent % 5).padStart(3, "0")}\n`));
  }
  fifo.close(); // the reader's EOF
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

/** Splits a byte stream into lines (without "\n"), however the pipe cut it into chunks. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let partial = ""; // the start of a line whose "\n" has not arrived yet
  // TextDecoderStream keeps a UTF-8 character split between two chunks whole.
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    if (!text.includes("\n")) { // a piece of a long line: split nothing until its end comes
      partial += text;
      continue;
    }
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    yield* lines;
  }
  if (partial !== "") yield partial; // a last line without "\n" is still a line
}

const encoder = new TextEncoder();

/**
 * Writes all of `bytes` with `writeSync`, one system call and no await (an `await write()` per
 * small message is several times slower). Throws `Deno.errors.BrokenPipe` once nobody reads.
 */
function writeAll(file: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

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

/** Opens a FIFO, then checks that it is one: the path may have been swapped before the open. */
async function openFifo(path: string, options: Deno.OpenOptions): Promise<Deno.FsFile> {
  const file = await Deno.open(path, options);
  if ((await file.stat()).isFifo) return file;
  file.close();
  throw new Refusal(`${path} is not a FIFO: refusing to touch it`);
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

const USAGE =
  `usage: deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/named_fifo.ts [options]
  --count N             lines the writer sends (default 10; 0 sends forever, until Ctrl-C)
  --interval MS         milliseconds between lines (default 1000)
  --role reader|writer  one side only, on --path P, made if missing (many writers: fifo_server.ts)
  --path P              the FIFO; --allow-run=mkfifo --allow-read=P --allow-write=P are enough
  --help                show this help`;

if (import.meta.main) {
  requireDeno();
  const { parseArgs } = await import("node:util");
  const [text, flag] = [{ type: "string" }, { type: "boolean" }] as const;
  let values = { count: "10", interval: "1000", role: "", path: "", help: false };
  try {
    const options = { count: text, interval: text, role: text, path: text, help: flag };
    values = { ...values, ...parseArgs({ options }).values };
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) console.log(USAGE);
  if (values.help) Deno.exit(0);
  const { role, path } = values;
  const numbers = /^\d{1,15}$/.test(values.count) && /^\d{1,15}$/.test(values.interval);
  if (!numbers) usageError("--count and --interval take a whole number >= 0");
  const side = /^(reader|writer)$/.test(role) && path !== ""; // a valid --role, with its --path
  if ((role !== "" || path !== "") && !side) usageError("use --role reader|writer with --path P");
  const [count, interval] = [Number(values.count), Number(values.interval)];
  await runFifoLesson(() => role ? oneSide(role, path, count, interval) : parent(count, interval));
}
