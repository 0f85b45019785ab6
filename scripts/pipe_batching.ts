/**
 * @title Small messages through a pipe: batch them, without holding any back
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_batching.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.FsFile.prototype.writeSync} Doc: writeSync
 * @resource {https://developer.mozilla.org/en-US/docs/Web/API/Window/setTimeout} MDN: setTimeout
 *
 * Many small messages (JSON lines, as the article's `readline` reads them) cost per write, not
 * per byte: each `await write()` is a round trip to a worker thread. The script runs itself as a
 * child once per row and times the lines the parent receives, checking their order. It teaches:
 * `writeSync` skips the round trip but blocks the child's whole event loop while the pipe is
 * full; a Batcher writes when its buffer is full or the loop goes idle, so no message waits.
 * Unix only. Options: --messages N per row (20000). Bulk bytes: see pipe_speed.ts.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_batching.ts --messages 20000
 * 20000 JSON lines a row
 * child writes, parent reads                rate          x
 * await write per message                   7012 msg/s   1.00
 * writeSync per message                   141909 msg/s  20.24
 * Batcher: 64 KiB batches, await write    359922 msg/s  51.33
 * Checked: every message once, in order
 * ```
 *
 * @module
 */
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_batching.ts [--messages 20000]
  --messages N   JSON lines sent in each row (default 20000)`;
const encoder = new TextEncoder();

/** How the child writes each message: one `await write()`, one `writeSync`, or a Batcher. */
export type Mode = "each-await" | "each-sync" | "batched";

// A write may take only part of the data, so both helpers loop. `await write()` hands the bytes
// to a worker thread and waits for it: a round trip per call. `writeSync()` makes the system call
// right here and blocks this thread (timers, signals, all other I/O) while the pipe is full: the
// price of its speed, fine in a child with nothing else to do, not in a server.
// Deno.stdout is line-buffered: writing a chunk with bytes after its last "\n" makes two system
// calls, up to that newline, then the rest at once (strace shows it); nothing waits for the next
// write. Batches of whole lines leave as one.
function writeAllSync(data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += Deno.stdout.writeSync(data.subarray(done));
}

async function writeAll(data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += await Deno.stdout.write(data.subarray(done));
}

/**
 * Gathers small messages in a 64 KiB buffer and writes it with one `await write()` when it is
 * full, or when the event loop goes idle: the `setTimeout(0)` armed by a batch's first message
 * runs only once the producer awaits real I/O or stops, so a lone message is not held back. (A
 * `queueMicrotask` flush would run after every `await` and batch nothing.) Writes are chained so
 * two never overlap, and `send` waits while a full batch drains: that is the backpressure.
 */
export class Batcher {
  #buffer = new Uint8Array(64 * 1024);
  #used = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();

  /** Queues one message; waits only when the buffer had to be written first. */
  async send(text: string): Promise<void> {
    let result = encoder.encodeInto(text, this.#buffer.subarray(this.#used));
    if (result.read < text.length) { // It does not fit: write the batch, then retry.
      await this.flush();
      result = encoder.encodeInto(text, this.#buffer);
      if (result.read < text.length) { // Larger than a whole batch: it goes alone.
        await this.#write(encoder.encode(text));
        return;
      }
    }
    this.#used += result.written;
    this.#timer ??= setTimeout(() => this.flush().catch(() => {}), 0);
  }

  /** Writes the batch; after a failed write (BrokenPipe) every flush rejects. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#used === 0) return this.#writing;
    const batch = this.#buffer.subarray(0, this.#used);
    this.#buffer = new Uint8Array(this.#buffer.length); // The old one is still in flight.
    this.#used = 0;
    return this.#write(batch);
  }

  #write(data: Uint8Array): Promise<void> {
    this.#writing = this.#writing.then(() => writeAll(data));
    return this.#writing;
  }
}

async function child(mode: Mode, count: number): Promise<void> {
  const batcher = new Batcher();
  for (let seq = 0; seq < count; seq++) {
    const line = JSON.stringify({ seq, text: `Number ${seq}` }) + "\n";
    if (mode === "each-await") await writeAll(encoder.encode(line));
    else if (mode === "each-sync") writeAllSync(encoder.encode(line));
    else await batcher.send(line);
  }
  await batcher.flush(); // Never forget the last, partial batch.
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

let running: Deno.ChildProcess | undefined; // One child at a time.

/** Kills the child if one is running (so none is left writing to no one), says why, and exits. */
function exit(code: number, message?: string): never {
  try {
    running?.kill("SIGKILL");
  } catch { /* already gone */ }
  if (message) console.error(`error: ${message}`);
  Deno.exit(code);
}

let stopping = false; // Set by a signal: the child's death that follows is no error.

/** On Ctrl-C or SIGTERM: kills the child, waits until it is gone (reaped), exits quietly. */
async function stop(code: number): Promise<void> {
  stopping = true;
  try {
    running?.kill("SIGKILL");
  } catch { /* already gone */ }
  await running?.status;
  Deno.exit(code);
}

/**
 * Runs this script as a child writing `count` JSON lines in `mode`; reads, checks and times
 * them. Returns the seconds from the first byte to EOF and the milliseconds from spawn to the
 * first byte. `onFirstByte` runs when the child's first bytes arrive, before the clock starts.
 */
export async function measure(
  mode: Mode,
  { count = 20_000, onFirstByte = () => {} } = {},
): Promise<{ seconds: number; firstByteMs: number }> {
  // The child needs no permission: writing to its own stdout is always allowed.
  const args = ["run", import.meta.filename!, "--role=child", `--mode=${mode}`];
  args.push(`--messages=${count}`);
  const start = performance.now();
  const process = new Deno.Command(denoExecutable(), { args, stdin: "null", stdout: "piped" })
    .spawn();
  running = process;
  const decoder = new TextDecoder();
  let first = 0;
  let seq = 0;
  let partial = ""; // The start of a line whose end is still in the pipe.
  // A read returns whatever the pipe holds: many lines, and the first or last often cut.
  for await (const chunk of process.stdout) {
    if (first === 0) {
      onFirstByte();
      first = performance.now();
    }
    const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      if (JSON.parse(line).seq !== seq) throw new Error(`message ${seq} is lost or late`);
      seq++;
    }
  }
  const seconds = (performance.now() - first) / 1000;
  const { code } = await process.status;
  running = undefined;
  if (code !== 0) throw new Error(`the ${mode} child ended with exit code ${code}`);
  if (seq !== count || partial !== "") throw new Error(`${seq} of the ${count} messages arrived`);
  return { seconds, firstByteMs: first - start };
}

const ROWS: [string, Mode][] = [
  ["await write per message", "each-await"],
  ["writeSync per message", "each-sync"],
  ["Batcher: 64 KiB batches, await write", "batched"],
];

async function main(): Promise<void> {
  // The child reads its flags itself: importing `node:util` loads Node's compatibility layer,
  // some 15 ms more start-up for every child.
  if (Deno.args.includes("--role=child")) {
    const flag = (name: string) =>
      Deno.args.find((arg) => arg.startsWith(`--${name}=`))!.slice(name.length + 3);
    await child(flag("mode") as Mode, Number(flag("messages")));
    return;
  }
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    strict: true,
    options: {
      messages: { type: "string", default: "20000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const count = Number(values.messages);
  if (!(count > 0 && Number.isSafeInteger(count))) exit(2, "--messages takes N > 0 (see --help)");
  if (Deno.build.os === "windows") throw new Error("this lesson is Unix only");
  // On Ctrl-C or SIGTERM, kill the child first, so that none is left writing to no one.
  Deno.addSignalListener("SIGINT", () => stop(130));
  Deno.addSignalListener("SIGTERM", () => stop(143));
  // A short, fixed report: console.log is fine (a long or endless one would need writeSync,
  // because console.log silently ignores a closed stdout).
  console.log(`${count} JSON lines a row`);
  console.log("child writes, parent reads                rate          x");
  // A row's label goes out once its child's first bytes arrive, its figures once it is done: a
  // reader (or a test) sees which row runs, and that its child is writing. A closed stdout
  // (`| head -1`) is ignored, as console.log ignores it for the figures.
  const showLabel = (label: string) => () => {
    try {
      writeAllSync(encoder.encode(label.padEnd(38)));
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    }
  };
  let base = 0;
  for (const [label, mode] of ROWS) {
    const { seconds } = await measure(mode, { count, onFirstByte: showLabel(label) });
    const rate = count / seconds;
    if (base === 0) base = rate; // x: against the first row.
    const figure = `${rate.toFixed(0).padStart(8)} msg/s`;
    console.log(`${figure}${(rate / base).toFixed(2).padStart(7)}`);
  }
  console.log("Checked: every message once, in order");
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    if (stopping) await new Promise(() => {}); // stop() exits once the child is reaped.
    const { code, message } = error as { code?: string; message: string };
    // BrokenPipe in the child: its parent left, and there is nobody left to tell.
    if (error instanceof Deno.errors.BrokenPipe) exit(1);
    if (error instanceof Deno.errors.NotCapable) {
      exit(1, "this lesson runs itself as a child: run it with --allow-run=deno");
    }
    if (code?.startsWith("ERR_PARSE_ARGS")) {
      exit(2, `${message.replaceAll("\n", " ")} (see --help)`);
    }
    exit(1, message);
  }
}
