/**
 * @title Many writers, one FIFO: whole lines up to PIPE_BUF, torn lines beyond
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_many_writers.ts
 * @resource {https://man7.org/linux/man-pages/man7/pipe.7.html} Man page: pipe(7), PIPE_BUF
 *
 * Several unrelated writers may share one FIFO (claim 4; the server pattern of named_fifo.ts). Is
 * that safe? POSIX makes a write of at most PIPE_BUF bytes (4096 on Linux, 512 on macOS) to a pipe
 * atomic, so short lines never mix. A longer write may be split when the pipe is full (claim 3:
 * the writer waits), and another writer's bytes land in the gap. K writers send short lines, then
 * long ones (100,000 bytes, more than the 64 KiB pipe); the reader counts them, intact and torn
 * (how many long lines tear varies, even 0). Unix only. Read and write are unscoped as the FIFO
 * lives in a fresh temporary directory; each writer may only write it. Options: see `--help`.
 * Exit codes: 0 done, 1 error, 2 usage, 130 Ctrl-C, 143 SIGTERM.
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
import { parseArgs } from "node:util";

const HELP = `usage: fifo_many_writers.ts [--writers K] [--lines N] [--long-lines M]
  --writers K      writers sharing the FIFO, 1 to 64 (default 4)
  --lines N        short lines of 100 bytes per writer (default 10000)
  --long-lines M   long lines of 100,000 bytes per writer (default 50; 0 skips them)`;
const SHORT_BYTES = 100; // well under PIPE_BUF: one atomic write per line
const LONG_BYTES = 100_000; // over PIPE_BUF and over the pipe's 64 KiB capacity

/** A mistake on the command line: one line, exit 2. */
class UsageError extends Error {}
/** An expected failure the user can act on: one line, no stack trace, exit 1. */
class Refusal extends Error {}

// What to undo (stop the writers, remove the FIFO), run last-in first-out on every exit path.
const cleanups: (() => void | Promise<void>)[] = [];
let exiting = false;

/** Cleans up and exits. The first call wins: a signal may arrive while main is ending too. */
async function exitWith(code: number): Promise<never> {
  // A second call (a signal while main is ending, or the reverse) waits: the first one exits.
  if (exiting) return await new Promise<never>(() => {});
  exiting = true;
  for (const step of cleanups.reverse()) {
    try {
      await step();
    } catch { /* best effort: keep cleaning */ }
  }
  Deno.exit(code);
}

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

/** Writer `id`'s letter: its lines are `w<id> <seq> ` then this letter up to the length. */
function letterOf(id: number): string {
  return String.fromCharCode(97 + id % 26);
}

/** Line `seq` of writer `id`, `bytes` long with its newline, e.g. `w2 000017 cccc...c\n`. */
export function makeLine(id: number, seq: number, bytes: number): string {
  const head = `w${id} ${String(seq).padStart(6, "0")} `;
  return head + letterOf(id).repeat(bytes - head.length - 1) + "\n";
}

/** Whether a received line (without its newline) is exactly one writer's whole line. */
export function isIntact(line: string, bytes: number): boolean {
  const match = /^w(\d+) \d{6} ([a-z])\2*$/.exec(line);
  return match !== null && line.length + 1 === bytes && match[2] === letterOf(Number(match[1]));
}

/**
 * The child: one `writeSync` per line, a single system call with no worker-thread round trip.
 * `writeSync` may write less than asked, so loop until the whole line is out (for a line up to
 * PIPE_BUF it never does: a blocking pipe write that small is all or nothing).
 */
async function runWriter(path: string, id: number, lines: number, bytes: number) {
  const fifo = await Deno.open(path, { write: true });
  const encoder = new TextEncoder();
  try {
    for (let seq = 0; seq < lines; seq++) {
      const line = encoder.encode(makeLine(id, seq, bytes));
      for (let done = 0; done < line.length;) done += fifo.writeSync(line.subarray(done));
    }
  } catch (error) {
    // The reader is gone (its process was killed): Deno ignores SIGPIPE, so the write throws.
    if (error instanceof Deno.errors.BrokenPipe) throw new Refusal("the reader closed the FIFO");
    throw error;
  }
  fifo.close();
}

/**
 * Reads the FIFO to EOF with one reader, splits lines itself (a chunk may hold many lines, or end
 * in the middle of one), and counts them.
 */
async function countLines(fifo: Deno.FsFile, bytes: number) {
  const decoder = new TextDecoder();
  let partial = ""; // the start of a line whose end has not arrived yet
  let received = 0;
  let intact = 0;
  for await (const chunk of fifo.readable) {
    const text = decoder.decode(chunk, { stream: true });
    const lastNewline = text.lastIndexOf("\n");
    if (lastNewline < 0) {
      partial += text; // a long line: only look for its end in what arrives next
      continue;
    }
    const lines = (partial + text.slice(0, lastNewline)).split("\n");
    partial = text.slice(lastNewline + 1);
    received += lines.length;
    for (const line of lines) if (isIntact(line, bytes)) intact++;
  }
  return { received, intact };
}

/** Starts writer `id` as a copy of this script, allowed to write the FIFO and nothing else. */
function startWriter(path: string, id: number, lines: number, bytes: number): Deno.ChildProcess {
  const asWriter = ["--role", "writer", "--path", path, "--id", `${id}`];
  const work = ["--lines", `${lines}`, "--bytes", `${bytes}`];
  const command = new Deno.Command(denoExecutable(), {
    args: ["run", `--allow-write=${path}`, import.meta.filename!, ...asWriter, ...work],
    stdout: "null",
  });
  try {
    return command.spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new Refusal("starting the writers needs --allow-run=deno");
    }
    throw error;
  }
}

/**
 * Writes `text` to stdout now, even without a newline (a row's label, its figures to come). A
 * closed stdout (`| head -1`) is ignored, as console.log ignores it for the figures.
 */
function writeText(text: string): void {
  const bytes = new TextEncoder().encode(text);
  try {
    for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}

/** One round: `writers` children send `lines` lines of `bytes` bytes each at the same time. */
async function round(path: string, writers: number, lines: number, bytes: number) {
  const started = performance.now();
  // Open our read end and a spare write end together (each open waits for the other). The spare
  // keeps the FIFO from reporting EOF if one writer finishes before the next has even opened.
  const [reading, spare] = await Promise.all([
    Deno.open(path, { read: true }),
    Deno.open(path, { write: true }),
  ]);
  const children: Deno.ChildProcess[] = [];
  for (let id = 0; id < writers; id++) {
    const child = startWriter(path, id, lines, bytes);
    children.push(child);
    cleanups.push(async () => {
      child.kill("SIGTERM"); // throws if it has ended already: then there is nothing to wait for
      await child.status; // no child outlives us
    });
  }
  // The row's label goes out now that the writers run, its figures once they are done.
  writeText(`${bytes}-byte lines: `);
  const counting = countLines(reading, bytes);
  const statuses = await Promise.all(children.map((child) => child.status));
  spare.close(); // now every writer has closed: the reader drains the pipe and sees EOF
  const { received, intact } = await counting;
  if (statuses.some((status) => !status.success)) throw new Refusal("a writer failed");
  const ms = Math.round(performance.now() - started);
  console.log(
    `sent ${writers * lines}, received ${received}, ` +
      `intact ${intact}, torn ${received - intact} (in ${ms} ms)`,
  );
}

/** The options, as parseArgs returns them; any mistake is a one-line UsageError. */
function parseCommandLine(args: string[]) {
  try {
    return parseArgs({
      args,
      strict: true,
      options: {
        writers: { type: "string", default: "4" },
        lines: { type: "string", default: "10000" },
        "long-lines": { type: "string", default: "50" },
        help: { type: "boolean", default: false },
        role: { type: "string" }, // internal: how the parent starts each writer
        path: { type: "string" },
        id: { type: "string", default: "0" },
        bytes: { type: "string", default: `${SHORT_BYTES}` },
      },
    }).values;
  } catch (error) {
    throw new UsageError((error as Error).message.replaceAll("\n", " "));
  }
}

/** A whole number >= `min` from option `--name`, or a UsageError naming it. */
function wholeNumber(name: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`--${name} wants a whole number >= ${min}, got "${text}"`);
  }
  return value;
}

async function main(args: string[]): Promise<void> {
  const opts = parseCommandLine(args);
  if (opts.help) {
    console.log(HELP);
    return;
  }
  const lines = wholeNumber("lines", opts.lines, 0);
  if (opts.role !== undefined) {
    if (opts.role !== "writer" || opts.path === undefined) {
      throw new UsageError("--role writer --path P is how the parent starts a writer");
    }
    const id = wholeNumber("id", opts.id, 0);
    await runWriter(opts.path, id, lines, wholeNumber("bytes", opts.bytes, 16));
    return;
  }
  const writers = wholeNumber("writers", opts.writers, 1);
  if (writers > 64) throw new UsageError(`--writers wants at most 64, got ${writers}`);
  const longLines = wholeNumber("long-lines", opts["long-lines"], 0);
  if (Deno.build.os === "windows") throw new Refusal("FIFOs are Unix only: use Linux or macOS");
  Deno.addSignalListener("SIGINT", () => exitWith(130));
  Deno.addSignalListener("SIGTERM", () => exitWith(143));

  const dir = await Deno.makeTempDir({ prefix: "fifo_many_writers_" });
  cleanups.push(() => Deno.remove(dir));
  const path = `${dir}/fifo`;
  // Deno has no mkfifo call, so we run the program; mode 600: only our user may open the FIFO.
  const made = await new Deno.Command("mkfifo", { args: ["-m", "600", path] }).output();
  if (!made.success) throw new Refusal(`mkfifo could not create ${path}`);
  cleanups.push(() => Deno.remove(path));
  console.log(`Parent ${Deno.pid}: ${writers} writers share the FIFO ${path}`);
  if (lines > 0) await round(path, writers, lines, SHORT_BYTES);
  if (longLines > 0) await round(path, writers, longLines, LONG_BYTES);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
    await exitWith(0);
  } catch (error) {
    // A signal is ending the run: the exit code is the signal's, and a writer it killed is no news.
    if (exiting) await exitWith(1);
    if (error instanceof UsageError) {
      console.error(`error: ${error.message} (see --help)`);
      await exitWith(2);
    }
    const expected = error instanceof Refusal || error instanceof Deno.errors.NotCapable ||
      error instanceof Deno.errors.NotFound;
    // An expected failure is one line; anything else is a bug, shown with its stack trace.
    console.error(expected ? `error: ${(error as Error).message}` : error);
    await exitWith(1);
  }
}
