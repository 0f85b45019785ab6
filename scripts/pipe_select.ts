/**
 * @title Several pipes at once: what select() and poll() do, in Deno
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_select.ts
 * @resource {https://man7.org/linux/man-pages/man2/select.2.html} Man page: select(2)
 *
 * A C program that reads several pipes at once asks `select` or `poll` which one has data. Deno
 * needs no such call: each `for await` over a child's stdout is a task of its own on the event
 * loop, and the loop is the select(). The parent reads two children (copies of this script) at
 * the same time, prints each line labelled with its child as it arrives, and notices each EOF.
 * Child 1 is slow, child 2 fast: child 2's lines all arrive while child 1's pipe is open and
 * quiet. Options: `--help`.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_select.ts
 * child 1: line 1 of 2
 * child 2: line 1 of 3
 * child 2: line 2 of 3
 * child 2: line 3 of 3
 * child 2 done
 * child 1: line 2 of 2
 * child 1 done
 * ```
 *
 * @module
 */

// Child 1 is slow: it writes a line, then waits for its stdin to end before the next, a stand-in
// for a child waiting on a disk or a network. The waiting is ours to end, so the run prints the
// same every time: child 2 starts once child 1's first line is here, and child 1 goes on once
// child 2 is done. All the while, our read of child 1's pipe is pending, and nothing waits on it.
async function parent(fastLines: number): Promise<number> {
  await using slow = start(2, "wait");
  const merged = new MergedLines();
  merged.add(1, slow.stdout);
  let fast: Deno.ChildProcess | undefined;
  try {
    for await (const { child, line } of merged) {
      const text = line === null ? `child ${child} done` : `child ${child}: ${line}`;
      writeAll(Deno.stdout, encoder.encode(text + "\n"));
      if (child === 1 && fast === undefined) {
        fast = start(fastLines, "go");
        merged.add(2, fast.stdout);
      }
      if (child === 2 && line === null) await slow.stdin.close(); // child 1 may go on
    }
  } catch (error) {
    await fast?.[Symbol.asyncDispose](); // killed unless exited, reaped; `await using` ends slow
    // Our own stdout was closed (`... | head -3`): stop quietly, as a Unix tool does.
    if (error instanceof Deno.errors.BrokenPipe) return 0;
    throw error;
  }
  const statuses = await Promise.all([slow.status, fast!.status]);
  const failed = statuses.findIndex((status) => !status.success);
  if (failed < 0) return 0;
  const { code, signal } = statuses[failed];
  console.error(
    `error: child ${failed + 1} ${signal ? `was killed by ${signal}` : `exited ${code}`}`,
  );
  return 1;
}

/** Starts a child copy of this script; a slow one gets a stdin pipe to wait on. */
function start(lines: number, pace: "wait" | "go"): Deno.ChildProcess {
  return new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", `${lines}`, pace],
    stdin: pace === "wait" ? "piped" : "null",
    stdout: "piped",
  }).spawn();
}

/** One event of {@link MergedLines}: a line of a child, or (`line: null`) its EOF. */
export interface ChildLine {
  /** Which child: the number given to `add`. */
  child: number;
  /** The line, or null at the child's EOF. */
  line: string | null;
}

/**
 * Lines of several streams, merged as they arrive: one task per stream, each pushing into one
 * queue that a `for await` drains. The other way, `Promise.race` over one pending read per
 * stream, must keep the reads that lost the race and race them again, or lines are lost.
 */
export class MergedLines {
  #queue: ChildLine[] = [];
  #wake = () => {};
  #open = 0;

  /** Reads `stream` in a task of its own: its lines join the queue as `child`'s. */
  add(child: number, stream: ReadableStream<Uint8Array>): void {
    this.#open++;
    const push = (line: string | null) => {
      this.#queue.push({ child, line });
      this.#wake();
    };
    (async () => {
      for await (const line of readLines(stream)) push(line);
      push(null); // EOF: the child closed its end
    })();
  }

  /** The lines and EOFs in the order they arrived, until every stream has ended. */
  async *[Symbol.asyncIterator](): AsyncGenerator<ChildLine> {
    while (this.#open > 0) {
      if (this.#queue.length === 0) await new Promise<void>((wake) => this.#wake = wake);
      const event = this.#queue.shift()!;
      if (event.line === null) this.#open--;
      yield event;
    }
  }
}

// A child writes `line 1 of N` at once; the slow one (`wait`) then reads its stdin to the end
// before it writes the rest. Returning closes its stdout: the parent's read sees EOF.
async function child(lines: number, wait: boolean): Promise<void> {
  const say = (n: number) => writeAll(Deno.stdout, encoder.encode(`line ${n} of ${lines}\n`));
  try {
    say(1);
    if (wait) { for await (const _ of Deno.stdin.readable) { /* nothing to read: only its end */ } }
    for (let n = 2; n <= lines; n++) say(n);
  } catch (error) {
    // The parent has gone (its read ends closed): nobody will read, so stop quietly.
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

/**
 * Runs the lesson and exits with its code. A missing permission is the user's mistake: one line
 * (Deno's message names the flag), code 1. Any other error is a bug and keeps its stack trace.
 */
async function exitWith(lesson: () => Promise<number>): Promise<never> {
  try {
    Deno.exit(await lesson());
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error(`error: ${error.message}`);
    Deno.exit(1);
  }
}

// The command line. A child gets its settings as plain words after `--child`.
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_select.ts [--help]
  (no options)  two children, a slow one and a fast one, read at the same time`;

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Number(Deno.args[1]), Deno.args[2] === "wait");
} else if (import.meta.main) {
  requireDeno();
  if (Deno.args.length === 1 && Deno.args[0] === "--help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (Deno.args.length > 0) usageError(`unknown argument "${Deno.args[0]}"`);
  await exitWith(() => parent(3));
}
