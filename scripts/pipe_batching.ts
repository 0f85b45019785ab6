/**
 * @title Small messages through a pipe: batch them, without holding any back
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_batching.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.FsFile.prototype.writeSync} Doc: writeSync
 *
 * Many small JSON lines cost per write, not per byte. The script runs itself as a child once per
 * row, and the parent parses every line (`JSON.parse`) and checks its order as it times them.
 * `await write()` per line goes through Deno's async I/O each time; `writeSync` per line is one
 * system call each; a Batcher gathers lines in one string and writes it when it is full or when
 * the event loop goes idle, so no message waits. A writer to a full pipe waits (claim 3): the
 * Batcher's caller waits for a full batch only. Options: `--messages N` a row. Bulk bytes: see
 * pipe_speed.ts.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_batching.ts --messages 20000
 * 20000 JSON lines a row, each parsed by the parent
 * child writes, parent reads                rate          x
 * await write per message                  20054 msg/s   1.00
 * writeSync per message                   134207 msg/s   6.69
 * Batcher: 64 KiB, writeSync              473718 msg/s  23.62
 * Checked: every message once, in order
 * ```
 *
 * @module
 */

/** How the child writes each message: one `await write()`, one `writeSync`, or a Batcher. */
export type Mode = "each-await" | "each-sync" | "batched";

/**
 * Runs a child writing `count` JSON lines in `mode`; parses, checks and times them: seconds from
 * the first byte (`onFirstByte` runs then) to EOF, and milliseconds from spawn to the first byte.
 */
export async function measure(
  mode: Mode,
  { count = 20_000, onFirstByte = () => {} } = {},
): Promise<{ seconds: number; firstByteMs: number }> {
  const start = performance.now(); // `await using` kills and reaps the child however we end
  await using child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", mode, `${count}`],
    stdin: "null",
    stdout: "piped",
  }).spawn();
  // A read returns whatever the pipe holds: many lines, the first and last often cut. One
  // decode and one split per read costs less than a stream stage or a `yield` per line.
  const decoder = new TextDecoder();
  let [first, seq, partial] = [0, 0, ""];
  for await (const chunk of child.stdout) {
    if (first === 0) onFirstByte();
    first ||= performance.now();
    const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = lines.pop()!; // the start of a line whose end is still in the pipe
    for (const line of lines) {
      if (JSON.parse(line).seq !== seq) throw new Error(`message ${seq} is lost or late`);
      seq++;
    }
  }
  const seconds = (performance.now() - first) / 1000;
  const { code } = await child.status;
  if (code !== 0 || seq !== count || partial !== "") {
    throw new Error(`the ${mode} child sent ${seq} of ${count} lines, exit code ${code}`);
  }
  return { seconds, firstByteMs: first - start };
}

// One child per row. A row's label goes out when its child's first bytes arrive, its figures
// when it is done, so a reader (or a test) sees which child is writing.
async function parent(count: number): Promise<number> {
  const rows: [Mode, string][] = [["each-await", "await write per message"]];
  rows.push(["each-sync", "writeSync per message"], ["batched", "Batcher: 64 KiB, writeSync"]);
  const say = (text: string) => writeAll(Deno.stdout, encoder.encode(text));
  try {
    say(`${count} JSON lines a row, each parsed by the parent\nchild writes, parent reads`);
    say("                rate          x\n");
    let base = 0; // x: against the first row
    for (const [mode, label] of rows) {
      const { seconds } = await measure(mode, { count, onFirstByte: () => say(label.padEnd(38)) });
      const rate = count / seconds;
      base ||= rate;
      say(`${rate.toFixed(0).padStart(8)} msg/s${(rate / base).toFixed(2).padStart(7)}\n`);
    }
    say("Checked: every message once, in order\n");
  } catch (error) {
    // Our own stdout was closed (`| head -3`): stop quietly, as a Unix tool does.
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
  return 0;
}

/**
 * Gathers messages in one string and writes it with one `writeSync` once it holds 64 KiB, or
 * when the event loop goes idle: the `setTimeout(0)` armed by a batch's first message runs once
 * the producer awaits real I/O or stops, so a lone message is not held back. (A `queueMicrotask`
 * flush would run after every `await` and batch nothing.)
 */
export class Batcher {
  #batch = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Queues a message, and writes the batch once it is full. */
  send(text: string): void {
    this.#batch += text;
    if (this.#batch.length >= 64 * 1024) this.flush();
    else this.#timer ??= setTimeout(() => this.#idleFlush(), 0);
  }
  /** Writes the batch now: one encode, one system call. Throws BrokenPipe once nobody reads. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    writeAll(Deno.stdout, encoder.encode(this.#batch));
    this.#batch = "";
  }
  #idleFlush(): void {
    try {
      this.flush();
    } catch { /* nobody reads (BrokenPipe): the producer's next flush throws it again */ }
  }
}

// The child's stdout is the pipe. `writeSync` blocks the child's whole event loop while the
// pipe is full (claim 3): fine here, but a child with timers or other I/O to serve would use
// `await write()` in flush, and await it. Once the parent is gone, a write throws BrokenPipe.
async function child(mode: Mode, count: number): Promise<void> {
  const batcher = new Batcher();
  try {
    for (let seq = 0; seq < count; seq++) {
      const line = JSON.stringify({ seq, text: `Number ${seq}` }) + "\n";
      if (mode === "batched") batcher.send(line);
      else if (mode === "each-sync") writeAll(Deno.stdout, encoder.encode(line));
      else await Deno.stdout.write(encoder.encode(line)); // under 4 KiB: a pipe takes it whole
    }
    batcher.flush(); // never forget the last, partial batch
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error; // BrokenPipe: stop quietly
  }
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

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

// The command line. The child reads its plain words after `--child` itself (no `node:util`: a
// slower start). One option needs only `parseArgs`, not the plumbing's readOptions.
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_batching.ts [options]
  --messages N   JSON lines the child sends in each row (default 20000)
  --help         show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Deno.args[1] as Mode, Number(Deno.args[2]));
} else if (import.meta.main) {
  requireDeno();
  const { parseArgs } = await import("node:util");
  let values = { messages: "20000", help: false };
  try {
    const options = { messages: { type: "string" }, help: { type: "boolean" } } as const;
    values = { ...values, ...parseArgs({ options }).values };
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) console.log(USAGE);
  if (values.help) Deno.exit(0);
  if (!/^[1-9]\d{0,14}$/.test(values.messages)) {
    usageError("--messages must be a whole number >= 1");
  }
  await exitWith(() => parent(Number(values.messages)));
}
