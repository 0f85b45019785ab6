/**
 * @title Fast pipes: bulk bytes and small messages at full speed
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_speed.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.FsFile.prototype.writeSync} Doc: writeSync
 * @resource {https://developer.mozilla.org/en-US/docs/Web/API/ReadableStreamBYOBReader} MDN: BYOB reader
 *
 * The article's pipe is a small kernel buffer (64 KiB on Linux): how fast data crosses it
 * depends on how the program fills and drains it. The script runs itself as a child once per
 * row, and times how fast the parent receives what the child writes to its stdout, checking
 * where every chunk belongs and the order of every message. Unix only.
 * What it teaches: write big chunks; batch small messages (one `await` per message
 * is a round trip to a worker thread); `writeSync` saves that trip but blocks the whole
 * event loop while the pipe is full, so use it in a child that has nothing else to do.
 * Options: --bytes SIZE per bulk row (64M), --messages N per message row (20000).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_speed.ts --bytes 64M --messages 20000
 * Bulk: 67108864 bytes a row; messages: 20000 JSON lines a row
 * child writes, parent reads                rate          x
 * writeSync 64 KiB, BYOB reader              809 MB/s    1.00
 * writeSync 64 KiB, for await                575 MB/s    0.71
 * await write 64 KiB, BYOB reader            563 MB/s    0.70
 * await write 64 KiB, for await              364 MB/s    0.45
 * writeSync 4 KiB, BYOB reader               373 MB/s    0.46
 * await write per message                  13879 msg/s   1.00
 * writeSync per message                   153584 msg/s  11.07
 * Batcher: 64 KiB batches, await write    590769 msg/s  42.57
 * Checked: every byte in its place, every message in order
 * ```
 *
 * @module
 */
const KiB = 1024, MiB = KiB * KiB;
const USAGE = "usage: deno run --allow-run=deno scripts/pipe_speed.ts " +
  "[--bytes 64M] [--messages 20000]";
const encoder = new TextEncoder();

/** How the child writes: bulk chunks (sync, async) or JSON lines (the rest). */
export type Mode = "sync" | "async" | "each-await" | "each-sync" | "batched";

// A write may take only part of the data, so both helpers loop. `await write()`
// hands the bytes to a worker thread and waits for it: a round trip per call.
// `writeSync()` makes the system call right here and blocks this thread (timers,
// signals, all other I/O of this process) for as long as the pipe is full.
function writeAllSync(data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += Deno.stdout.writeSync(data.subarray(done));
}
async function writeAll(data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    done += await Deno.stdout.write(data.subarray(done));
  }
}

/**
 * Gathers small messages in a 64 KiB buffer and writes it with one `await write()`
 * when it is full, or when the event loop goes idle: the `setTimeout(0)` armed by
 * a batch's first message runs only once the producer awaits real I/O or stops,
 * so a lone message is not held back. (A `queueMicrotask` flush would run after
 * every `await` and batch nothing.) Writes are chained so two never overlap, and
 * `send` waits while a full batch drains: that is the backpressure.
 */
export class Batcher {
  #buffer = new Uint8Array(64 * KiB);
  #used = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();

  /** Queues one message; waits only when the buffer had to be written first. */
  async send(text: string): Promise<void> {
    let result = encoder.encodeInto(text, this.#buffer.subarray(this.#used));
    if (result.read < text.length) { // It does not fit: write the batch, retry.
      await this.flush();
      result = encoder.encodeInto(text, this.#buffer);
      if (result.read < text.length) return this.#write(encoder.encode(text));
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
    this.#buffer = new Uint8Array(this.#buffer.length); // The old one is in flight.
    this.#used = 0;
    return this.#write(batch);
  }

  #write(data: Uint8Array): Promise<void> {
    return this.#writing = this.#writing.then(() => writeAll(data));
  }
}

// Bulk data has byte k = k % 251, so the parent can check where each chunk it
// reads belongs (251 is prime: a lost or repeated chunk shifts the pattern).
async function child(mode: Mode, bytes: number, chunk: number, count: number) {
  if (mode === "sync" || mode === "async") {
    const pattern = new Uint8Array(chunk + 251).map((_, i) => i % 251);
    for (let sent = 0; sent < bytes; sent += chunk) {
      const size = Math.min(chunk, bytes - sent);
      const data = pattern.subarray(sent % 251, sent % 251 + size);
      if (mode === "sync") writeAllSync(data);
      else await writeAll(data);
    }
    return;
  }
  const batcher = new Batcher();
  for (let seq = 0; seq < count; seq++) {
    const line = JSON.stringify({ seq, text: `Number ${seq}` }) + "\n";
    if (mode === "each-await") await writeAll(encoder.encode(line));
    else if (mode === "each-sync") writeAllSync(encoder.encode(line));
    else await batcher.send(line);
  }
  await batcher.flush(); // Never forget the last, partial batch.
}

// for-await gets a newly allocated chunk per read; a BYOB ("bring your own
// buffer") reader reads into our buffer and hands it back to be reused.
async function readChunks(
  stream: ReadableStream<Uint8Array>,
  byob: boolean,
  onChunk: (chunk: Uint8Array) => void,
) {
  if (!byob) {
    for await (const chunk of stream) onChunk(chunk);
    return;
  }
  const reader = stream.getReader({ mode: "byob" });
  let buffer = new Uint8Array(64 * KiB); // A pipe holds 64 KiB: no read gets more.
  while (true) {
    const { value, done } = await reader.read(buffer);
    if (done || !value) return;
    onChunk(value);
    buffer = new Uint8Array(value.buffer); // The same memory, handed back.
  }
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

const running = new Set<Deno.ChildProcess>(); // Killed if we are interrupted.

/**
 * Runs this script as a child writing `bytes` in `chunk`s, or `count` messages,
 * in `mode`; reads, checks and times it all. Returns the seconds from the first
 * byte to EOF and the milliseconds from spawn to the first byte.
 */
export async function measure(
  mode: Mode,
  { bytes = 64 * MiB, chunk = 64 * KiB, count = 20_000, byob = true } = {},
): Promise<{ seconds: number; firstByteMs: number }> {
  const options = { mode, bytes, chunk, messages: count, role: "child" };
  const flags = Object.entries(options).map(([name, v]) => `--${name}=${v}`);
  const args = ["run", import.meta.filename!, ...flags]; // No permissions:
  const command = new Deno.Command(denoExecutable(), { args, stdout: "piped" });
  const start = performance.now(); // writing to its own stdout needs none.
  const process = command.spawn();
  running.add(process);
  const bulk = mode === "sync" || mode === "async";
  let received = 0, seq = 0, partial = "", first = 0;
  const decoder = new TextDecoder();
  await readChunks(process.stdout, byob, (chunk) => {
    if (received === 0) first = performance.now();
    const last = received + chunk.length - 1;
    if (bulk && (chunk[0] !== received % 251 || chunk.at(-1) !== last % 251)) {
      throw new Error(`bytes ${received}-${last} are out of place`);
    } else if (!bulk) { // A line may be split across reads: keep its start.
      const text = partial + decoder.decode(chunk, { stream: true });
      const lines = text.split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (JSON.parse(line).seq !== seq++) throw new Error(`lost ${seq - 1}`);
      }
    }
    received += chunk.length;
  });
  const seconds = (performance.now() - first) / 1000;
  const { code } = await process.status;
  running.delete(process);
  if (code !== 0) throw new Error(`the ${mode} child ended with ${code}`);
  if (bulk ? received !== bytes : seq !== count || partial !== "") {
    throw new Error(`not all the ${mode} child wrote arrived`);
  }
  return { seconds, firstByteMs: first - start };
}

/** Parses a size like 65536, 64K, 64M or 1G into bytes; NaN if it is not. */
export function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  const power = " KMG".indexOf(match?.[2].toUpperCase() || " ");
  return match ? Number(match[1]) * KiB ** power : NaN;
}

function fail(message: string, code: number): never {
  console.error(`error: ${message}`);
  if (code === 2) console.error(USAGE);
  Deno.exit(code);
}

// [label, mode, chunk KiB, BYOB reader?]: each row changes one thing.
const ROWS: [string, Mode, number, boolean][] = [
  ["writeSync 64 KiB, BYOB reader", "sync", 64, true],
  ["writeSync 64 KiB, for await", "sync", 64, false],
  ["await write 64 KiB, BYOB reader", "async", 64, true],
  ["await write 64 KiB, for await", "async", 64, false],
  ["writeSync 4 KiB, BYOB reader", "sync", 4, true],
  ["await write per message", "each-await", 64, true],
  ["writeSync per message", "each-sync", 64, true],
  ["Batcher: 64 KiB batches, await write", "batched", 64, true],
];

async function main() {
  // The child reads the flags its parent wrote, itself: importing `node:util`
  // loads Node's compatibility layer, some 15 ms more start-up for every child.
  if (Deno.args.includes("--role=child")) {
    const flag = (name: string) =>
      Deno.args.find((arg) => arg.startsWith(`--${name}=`))!.split("=")[1];
    const [bytes, chunk, count] = ["bytes", "chunk", "messages"].map(flag);
    const mode = flag("mode") as Mode;
    return await child(mode, Number(bytes), Number(chunk), Number(count));
  }
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    strict: true,
    options: {
      bytes: { type: "string", default: "64M" },
      messages: { type: "string", default: "20000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE);
  const [bytes, count] = [parseSize(values.bytes), Number(values.messages)];
  if (!(bytes > 0)) fail("--bytes takes a size like 65536, 64K or 64M", 2);
  if (!(count > 0 && Number.isSafeInteger(count))) fail("--messages N > 0", 2);
  if (Deno.build.os === "windows") fail("this lesson is Unix only", 1);
  // On Ctrl-C or SIGTERM, kill the child, so none is left writing to no one.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      for (const process of running) process.kill("SIGKILL");
      Deno.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
  console.log(
    `Bulk: ${bytes} bytes a row; messages: ${count} JSON lines a row`,
  );
  console.log("child writes, parent reads                rate          x");
  let base = 0;
  for (const [label, mode, kib, byob] of ROWS) {
    const run = await measure(mode, { bytes, chunk: kib * KiB, count, byob });
    const bulk = mode === "sync" || mode === "async";
    const rate = bulk ? bytes / run.seconds / 1e6 : count / run.seconds;
    if (label === ROWS[0][0] || mode === "each-await") base = rate;
    const figure = `${rate.toFixed(0).padStart(8)} ${bulk ? "MB/s " : "msg/s"}`;
    console.log(
      `${label.padEnd(38)}${figure}${(rate / base).toFixed(2).padStart(7)}`,
    );
  }
  console.log("Checked: every byte in its place, every message in order");
}

if (import.meta.main) {
  await main().catch((error) => {
    // BrokenPipe in the child: its parent left, and there is nobody to tell.
    if (error instanceof Deno.errors.BrokenPipe) Deno.exit(1);
    if (error instanceof Deno.errors.NotCapable) {
      fail("run it with --allow-run=deno: it runs itself as a child", 1);
    }
    if (error?.code?.startsWith?.("ERR_PARSE_ARGS")) fail(error.message, 2);
    fail(error instanceof Error ? error.message : `${error}`, 1);
  });
}
