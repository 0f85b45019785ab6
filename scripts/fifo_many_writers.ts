/**
 * @title Many writers, one FIFO: whole lines up to PIPE_BUF, torn lines beyond
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_many_writers.ts
 * @resource {https://man7.org/linux/man-pages/man7/pipe.7.html} Man page: pipe(7), PIPE_BUF
 *
 * Several unrelated writers may share one FIFO (the server pattern of the named FIFO lesson). Is
 * that safe? POSIX makes a write of at most PIPE_BUF bytes (4096 on Linux, 512 on macOS) to a pipe
 * atomic: its bytes arrive together, so short lines never mix. A longer write may be split when
 * the pipe is full, and another writer's bytes land in the gap. K writers each send short lines,
 * then long ones (100,000 bytes, more than the whole 64 KiB pipe), and the reader counts lines
 * received, intact and torn. Unix only. Read and write are unscoped because the FIFO lives in a
 * fresh temporary directory whose place depends on the system; each writer may only write it.
 * Options: `--writers K` (4), `--lines N` short lines per writer (10000), `--long-lines M` long
 * lines per writer (50; 0 skips them). Exit codes: 0 done, 1 error, 2 usage, 130 Ctrl-C,
 * 143 SIGTERM. How many long lines are torn varies from run to run (it may even be 0).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_many_writers.ts --writers 4 --lines 10000 --long-lines 50
 * Parent 7068: 4 writers share the FIFO /tmp/fifo_many_writers_c9b01cbf7b3b029d/fifo
 * 100-byte lines: sent 40000, received 40000, intact 40000, torn 0 (in 520 ms)
 * 100000-byte lines: sent 200, received 200, intact 12, torn 188 (in 358 ms)
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const USAGE = "usage: fifo_many_writers.ts [--writers K] [--lines N] [--long-lines M] [--help]";
const SHORT_BYTES = 100; // well under PIPE_BUF: one atomic write per line
const LONG_BYTES = 100_000; // over PIPE_BUF and over the pipe's 64 KiB capacity

/** A one-line failure the user can act on (no stack trace): exit 1. */
class Refusal extends Error {}
/** A mistake on the command line: exit 2 with the usage line. */
class UsageError extends Error {}

/** Cleanup steps, run last-in first-out on every exit path. */
const cleanups: (() => void | Promise<void>)[] = [];
let exiting = false;

async function cleanUp(): Promise<void> {
  for (const step of cleanups.splice(0).reverse()) {
    try {
      await step();
    } catch { /* best effort: keep cleaning */ }
  }
}

/** Cleans up and exits. The first call wins: a signal may arrive while main is ending too. */
async function exitWith(code: number): Promise<never> {
  if (exiting) return await new Promise<never>(() => {});
  exiting = true;
  await cleanUp();
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

/**
 * Line `seq` of writer `id`, `bytes` long with its newline, e.g. `w2 000017 cccc...c\n`.
 * Exported for the tests.
 */
export function makeLine(id: number, seq: number, bytes: number): string {
  const head = `w${id} ${String(seq).padStart(6, "0")} `;
  return head + letterOf(id).repeat(bytes - head.length - 1) + "\n";
}

/** Whether a received line (without its newline) is exactly one writer's whole line. */
export function isIntact(line: string, bytes: number): boolean {
  const match = /^w(\d+) \d{6} ([a-z])\2*$/.exec(line);
  return match !== null && line.length + 1 === bytes &&
    match[2] === letterOf(Number(match[1]));
}

/**
 * The child: one `writeSync` per line, a single system call with no worker-thread round trip.
 * `writeSync` may write less than asked, so loop until the whole line is out (for a line up to
 * PIPE_BUF it never does: a blocking pipe write that small is all or nothing).
 */
async function runWriter(
  path: string,
  id: number,
  lines: number,
  bytes: number,
) {
  const fifo = await Deno.open(path, { write: true });
  const encoder = new TextEncoder();
  for (let seq = 0; seq < lines; seq++) {
    const line = encoder.encode(makeLine(id, seq, bytes));
    for (let done = 0; done < line.length;) {
      done += fifo.writeSync(line.subarray(done));
    }
  }
  fifo.close();
}

/** Reads the FIFO to EOF with one reader, splitting lines itself, and counts them. */
async function countLines(fifo: Deno.FsFile, bytes: number) {
  const decoder = new TextDecoder();
  let partial = "", received = 0, intact = 0;
  for await (const chunk of fifo.readable) {
    const lines = (partial + decoder.decode(chunk, { stream: true })).split(
      "\n",
    );
    partial = lines.pop()!; // the start of a line whose end has not arrived yet
    received += lines.length;
    for (const line of lines) if (isIntact(line, bytes)) intact++;
  }
  return { received, intact };
}

/** One round: `writers` children send `lines` lines of `bytes` bytes each at the same time. */
async function round(
  path: string,
  writers: number,
  lines: number,
  bytes: number,
) {
  const started = performance.now();
  // Open our read end and a spare write end together (each open waits for the other). The spare
  // keeps the FIFO from reporting EOF if one writer finishes before the next has even opened.
  const [reading, spare] = await Promise.all([
    Deno.open(path, { read: true }),
    Deno.open(path, { write: true }),
  ]);
  const children = Array.from({ length: writers }, (_, id) => {
    const child = new Deno.Command(denoExecutable(), {
      args: [
        "run",
        `--allow-write=${path}`,
        import.meta.filename!,
        "--role",
        "writer",
        "--path",
        path,
        "--id",
        `${id}`,
        "--lines",
        `${lines}`,
        "--bytes",
        `${bytes}`,
      ],
      stdout: "null",
    }).spawn();
    cleanups.push(() => {
      child.kill("SIGTERM"); // throws if it already ended: nothing to wait for
      return child.status.then(() => {}); // no child outlives us
    });
    return child;
  });
  const counting = countLines(reading, bytes);
  const statuses = await Promise.all(children.map((child) => child.status));
  spare.close(); // now every writer has closed: the reader drains the pipe and sees EOF
  const { received, intact } = await counting;
  if (statuses.some((status) => !status.success)) {
    throw new Refusal("a writer failed");
  }
  const sent = writers * lines, ms = Math.round(performance.now() - started);
  console.log(
    `${bytes}-byte lines: sent ${sent}, received ${received}, ` +
      `intact ${intact}, torn ${received - intact} (in ${ms} ms)`,
  );
}

async function main(args: string[]): Promise<void> {
  const { values: opts } = (() => {
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
          id: { type: "string" },
          bytes: { type: "string" },
        },
      });
    } catch (error) {
      throw new UsageError((error as Error).message.split("\n")[0]); // one line
    }
  })();
  if (opts.help) return console.log(USAGE);
  const number = (name: string, value: string | undefined, min: number) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min) {
      throw new UsageError(`--${name} wants a whole number >= ${min}`);
    }
    return parsed;
  };
  if (opts.role === "writer") {
    const id = number("id", opts.id, 0),
      bytes = number("bytes", opts.bytes, 16);
    return await runWriter(
      opts.path!,
      id,
      number("lines", opts.lines, 0),
      bytes,
    );
  }
  const writers = number("writers", opts.writers, 1);
  const lines = number("lines", opts.lines, 0);
  const longLines = number("long-lines", opts["long-lines"], 0);
  if (writers > 64) throw new UsageError("--writers wants at most 64");
  if (Deno.build.os === "windows") {
    throw new Refusal(
      "FIFOs are POSIX-only (Windows named pipes are another API): use Linux or macOS",
    );
  }
  Deno.addSignalListener("SIGINT", () => exitWith(130));
  Deno.addSignalListener("SIGTERM", () => exitWith(143));

  const dir = await Deno.makeTempDir({ prefix: "fifo_many_writers_" });
  cleanups.push(() => Deno.remove(dir));
  const path = `${dir}/fifo`;
  const made = await new Deno.Command("mkfifo", { args: ["-m", "600", path] })
    .output();
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
    if (exiting) await exitWith(1); // a signal is ending the run: a writer it killed is no news
    const usage = error instanceof UsageError;
    const expected = usage || error instanceof Refusal ||
      error instanceof Deno.errors.NotCapable ||
      error instanceof Deno.errors.NotFound;
    if (!expected) {
      await cleanUp(); // a bug: still remove what we made, then show the stack trace
      throw error;
    }
    console.error(`error: ${error.message}${usage ? `\n${USAGE}` : ""}`);
    await exitWith(usage ? 2 : 1);
  }
}
