/**
 * @title Many writers, one FIFO: whole lines up to PIPE_BUF, torn lines beyond
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_many_writers.ts
 * @resource {https://man7.org/linux/man-pages/man7/pipe.7.html} Man page: pipe(7), PIPE_BUF
 *
 * K writers share one FIFO (claim 4). A write of at most PIPE_BUF bytes (4096 on Linux, 512 on
 * macOS) is atomic, so short lines never mix; a longer one may be split when the pipe is full
 * (claim 3: the writer waits) and torn by other writers' bytes: how many varies, even 0. Unix only.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_many_writers.ts --writers 4 --lines 10000 --long-lines 50
 * Parent 32052: 4 writers share the FIFO /tmp/fifo_many_writers_fb88101b37a56dc1/fifo
 * 100-byte lines: sent 40000, received 40000, intact 40000, torn 0 (in 209 ms)
 * 100000-byte lines: sent 200, received 200, intact 5, torn 195 (in 179 ms)
 * ```
 *
 * @module
 */

async function parent(writers: number, lines: number, longLines: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "fifo_many_writers_" }); // private: mode 700
  undo.push(() => Deno.remove(dir));
  const path = await makeFifo(`${dir}/fifo`);
  console.log(`Parent ${Deno.pid}: ${writers} writers share the FIFO ${path}`);
  if (lines > 0) await round(path, writers, lines, 100); // far below PIPE_BUF
  if (longLines > 0) await round(path, writers, longLines, 100_000); // above it, and the pipe
  return 0;
}

// A round: read end and spare write end open together (each open waits for the other end); the
// spare holds off EOF between writers. Writers (`--child PATH ID LINES BYTES`) may write PATH only.
async function round(path: string, writers: number, lines: number, bytes: number) {
  const started = Date.now();
  const ends = [Deno.open(path, { read: true }), Deno.open(path, { write: true })];
  const [reading, spare] = await Promise.all(ends);
  const stopWriters = new AbortController(); // abort() sends each writer SIGTERM
  const children = Array.from({ length: writers }, (_, id) =>
    new Deno.Command(denoExecutable(), {
      args: ["run", `--allow-write=${path}`, import.meta.url, "--child", path, `${id}`]
        .concat(`${lines}`, `${bytes}`),
      stdout: "null",
      signal: stopWriters.signal,
    }).spawn());
  const exited = Promise.all(children.map((child) => child.status));
  undo.push(() => exited, () => stopWriters.abort()); // undo runs last first: SIGTERM, then wait
  writeAll(Deno.stdout, encoder.encode(`${bytes}-byte lines: `)); // the writers run now
  exited.then(() => spare.close()); // then no write end is left: the reader drains, and sees EOF
  let [received, intact] = [0, 0];
  for await (const line of readLines(reading.readable)) {
    received++;
    if (isIntact(line, bytes)) intact++;
  }
  if ((await exited).some((status) => !status.success)) throw new Refusal("a writer failed");
  const figures = `received ${received}, intact ${intact}, torn ${received - intact}`;
  console.log(`sent ${writers * lines}, ${figures} (in ${Date.now() - started} ms)`);
}

/** Line `seq` of writer `id`, `bytes` long with its newline, e.g. `w2 000017 cccc...c\n`. */
export function makeLine(id: number, seq: number, bytes: number): string {
  const head = `w${id} ${String(seq).padStart(6, "0")} `; // then its letter: a for w0, b for w1...
  return head + String.fromCharCode(97 + id % 26).repeat(bytes - head.length - 1) + "\n";
}

/** Whether a received line (without its newline) is exactly one writer's whole line. */
export function isIntact(line: string, bytes: number): boolean {
  const match = /^w(\d+) (\d+) /.exec(line);
  return match !== null && line + "\n" === makeLine(Number(match[1]), Number(match[2]), bytes);
}

// Each line is one writeSync, one write(2): up to PIPE_BUF bytes go in at once; the kernel copies
// a longer one in parts as the pipe drains, between other writers' bytes. No reader left: stop.
async function child(path: string, id: number, lines: number, bytes: number): Promise<void> {
  const fifo = await Deno.open(path, { write: true });
  try {
    for (let seq = 0; seq < lines; seq++) writeAll(fifo, encoder.encode(makeLine(id, seq, bytes)));
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
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
  `usage: deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_many_writers.ts [options]
  --writers K     writers sharing the FIFO, 1 to 64 (default 4)
  --lines N       short lines of 100 bytes per writer (default 10000; 0 skips them)
  --long-lines M  long lines of 100,000 bytes per writer (default 50; 0 skips them)
  --help          show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Deno.args[1], Number(Deno.args[2]), Number(Deno.args[3]), Number(Deno.args[4]));
} else if (import.meta.main) {
  requireDeno();
  const { parseArgs } = await import("node:util");
  const [text, flag] = [{ type: "string" }, { type: "boolean" }] as const;
  let values = { writers: "4", lines: "10000", "long-lines": "50", help: false };
  try {
    const options = { writers: text, lines: text, "long-lines": text, help: flag };
    values = { ...values, ...parseArgs({ options }).values };
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) console.log(USAGE);
  if (values.help) Deno.exit(0);
  const numbers = [values.writers, values.lines, values["long-lines"]];
  const bad = numbers.find((value) => !/^\d{1,9}$/.test(value));
  if (bad !== undefined) usageError(`the numbers must be whole numbers >= 0, not "${bad}"`);
  const [writers, lines, longLines] = numbers.map(Number);
  if (writers < 1 || writers > 64) usageError("--writers must be 1 to 64");
  await runFifoLesson(() => parent(writers, lines, longLines));
}
