/**
 * @title Fast pipes: bulk bytes and small messages at full speed
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_speed.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.FsFile.prototype.writeSync} Doc: writeSync
 * @resource {https://developer.mozilla.org/en-US/docs/Web/API/ReadableStreamBYOBReader} MDN: BYOB reader
 *
 * The article's pipe is a small kernel buffer (64 KiB on Linux) whose writer waits while it is
 * full, so how fast data crosses it depends on how each side fills and drains it. The script runs
 * itself as a child once per row and times what the parent receives, checking every byte and the
 * order of every message. Unix only. It teaches: write big chunks; batch small messages (each
 * `await write()` is a round trip to a worker thread); `writeSync` skips that trip but blocks the
 * whole event loop while the pipe is full, so keep it to a child that has nothing else to do.
 * Options: --bytes SIZE per bulk row (64M), --messages N per message row (20000).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_speed.ts --bytes 64M --messages 20000
 * Bulk: 67108864 bytes a row; messages: 20000 JSON lines a row
 * child writes, parent reads                rate          x
 * writeSync 64 KiB, BYOB reader             1077 MB/s    1.00
 * writeSync 64 KiB, for await                776 MB/s    0.72
 * await write 64 KiB, BYOB reader            544 MB/s    0.51
 * await write 64 KiB, for await              540 MB/s    0.50
 * writeSync 4 KiB, BYOB reader               472 MB/s    0.44
 * await write per message                  14947 msg/s   1.00
 * writeSync per message                   211697 msg/s  14.16
 * Batcher: 64 KiB batches, await write    492743 msg/s  32.97
 * Checked: every byte in its place, every message in order
 * ```
 *
 * @module
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const USAGE =
  `usage: deno run --allow-run=deno scripts/pipe_speed.ts [--bytes 64M] [--messages 20000]
  --bytes SIZE   bytes sent in each bulk row: 65536, 64K, 64M or 1G (default 64M)
  --messages N   JSON lines sent in each message row (default 20000)`;
const encoder = new TextEncoder();

/** How the child writes: bulk chunks (sync, async) or JSON lines (the rest). */
export type Mode = "sync" | "async" | "each-await" | "each-sync" | "batched";

// A write may take only part of the data, so both helpers loop. `await write()` hands the bytes
// to a worker thread and waits for it: a round trip per call. `writeSync()` makes the system call
// right here and blocks this thread (timers, signals, all other I/O) while the pipe is full.
// Deno.stdout is line-buffered: a chunk holding a "\n" leaves as two system calls, up to its last
// newline, then the rest with the next write. Batches of whole lines leave as one.
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
  #buffer = new Uint8Array(64 * KiB);
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

// Bulk data has byte k = k % 251, so the parent can check where each chunk it reads belongs
// (251 is prime: a lost or repeated chunk shifts the pattern).
async function child(mode: Mode, bytes: number, chunk: number, count: number): Promise<void> {
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

// for-await gets a newly allocated chunk per read; a BYOB ("bring your own buffer") reader reads
// into our buffer and hands it back to be reused. No read gets more than the pipe holds (64 KiB),
// and a larger buffer measured slower, not faster.
async function readChunks(
  stream: ReadableStream<Uint8Array>,
  byob: boolean,
  onChunk: (chunk: Uint8Array) => void,
): Promise<void> {
  if (!byob) {
    for await (const chunk of stream) onChunk(chunk);
    return;
  }
  const reader = stream.getReader({ mode: "byob" });
  let buffer = new Uint8Array(64 * KiB);
  while (true) {
    const { value, done } = await reader.read(buffer);
    if (done || !value) return;
    onChunk(value);
    buffer = new Uint8Array(value.buffer); // The same memory, handed back to us.
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

const running = new Set<Deno.ChildProcess>();

/** Kills every child still running (so none is left writing to no one), says why, and exits. */
function exit(code: number, message?: string): never {
  for (const process of running) {
    try {
      process.kill("SIGKILL");
    } catch { /* already gone */ }
  }
  if (message) console.error(`error: ${message}`);
  Deno.exit(code);
}

/**
 * Runs this script as a child writing `bytes` in `chunk`s, or `count` messages, in `mode`;
 * reads, checks and times it all. Returns the seconds from the first byte to EOF and the
 * milliseconds from spawn to the first byte.
 */
export async function measure(
  mode: Mode,
  { bytes = 64 * MiB, chunk = 64 * KiB, count = 20_000, byob = true } = {},
): Promise<{ seconds: number; firstByteMs: number }> {
  // The child needs no permission: writing to its own stdout is always allowed.
  const flags = [`--mode=${mode}`, `--bytes=${bytes}`, `--chunk=${chunk}`, `--messages=${count}`];
  const args = ["run", import.meta.filename!, "--role=child", ...flags];
  const start = performance.now();
  const process = new Deno.Command(denoExecutable(), { args, stdout: "piped" }).spawn();
  running.add(process);
  const bulk = mode === "sync" || mode === "async";
  const decoder = new TextDecoder();
  let received = 0;
  let first = 0;
  let seq = 0;
  let partial = ""; // The start of a line whose end is still in the pipe.
  await readChunks(process.stdout, byob, (chunk) => {
    if (received === 0) first = performance.now();
    const last = received + chunk.length - 1;
    if (bulk && (chunk[0] !== received % 251 || chunk.at(-1) !== last % 251)) {
      throw new Error(`bytes ${received}-${last} are out of place`);
    }
    if (!bulk) {
      const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (JSON.parse(line).seq !== seq) throw new Error(`message ${seq} is lost or late`);
        seq++;
      }
    }
    received += chunk.length;
  });
  const seconds = (performance.now() - first) / 1000;
  const { code } = await process.status;
  running.delete(process);
  if (code !== 0) throw new Error(`the ${mode} child ended with exit code ${code}`);
  const complete = bulk ? received === bytes : seq === count && partial === "";
  if (!complete) throw new Error(`not all that the ${mode} child wrote arrived`);
  return { seconds, firstByteMs: first - start };
}

/** Parses a size like 65536, 64K, 64M or 1G into bytes; NaN if it is not one. */
export function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  if (!match) return NaN;
  const units: Record<string, number> = { "": 1, K: KiB, M: MiB, G: 1024 * MiB };
  return Number(match[1]) * units[match[2].toUpperCase()];
}

// [label, mode, chunk KiB, BYOB reader?]
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

async function main(): Promise<void> {
  // The child reads its flags itself: importing `node:util` loads Node's compatibility layer,
  // some 15 ms more start-up for every child.
  if (Deno.args.includes("--role=child")) {
    const flag = (name: string) =>
      Deno.args.find((arg) => arg.startsWith(`--${name}=`))!.slice(name.length + 3);
    const [bytes, chunk, count] = [flag("bytes"), flag("chunk"), flag("messages")].map(Number);
    await child(flag("mode") as Mode, bytes, chunk, count);
    return;
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
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const bytes = parseSize(values.bytes);
  const count = Number(values.messages);
  if (!(bytes > 0)) exit(2, "--bytes takes a size like 65536, 64K or 64M (see --help)");
  if (!(count > 0 && Number.isSafeInteger(count))) exit(2, "--messages takes N > 0 (see --help)");
  if (Deno.build.os === "windows") throw new Error("this lesson is Unix only");
  // On Ctrl-C or SIGTERM, kill the child first, so that none is left writing to no one.
  Deno.addSignalListener("SIGINT", () => exit(130));
  Deno.addSignalListener("SIGTERM", () => exit(143));
  // A short, fixed report: console.log is fine (a long or endless one would need writeSync,
  // because console.log silently ignores a closed stdout).
  console.log(`Bulk: ${bytes} bytes a row; messages: ${count} JSON lines a row`);
  console.log("child writes, parent reads                rate          x");
  let base = 0;
  for (const [label, mode, kib, byob] of ROWS) {
    const run = await measure(mode, { bytes, chunk: kib * KiB, count, byob });
    const bulk = mode === "sync" || mode === "async";
    const rate = bulk ? bytes / run.seconds / 1e6 : count / run.seconds;
    if (base === 0 || mode === "each-await") base = rate; // x: against the first of its kind.
    const figure = `${rate.toFixed(0).padStart(8)} ${bulk ? "MB/s " : "msg/s"}`;
    console.log(`${label.padEnd(38)}${figure}${(rate / base).toFixed(2).padStart(7)}`);
  }
  console.log("Checked: every byte in its place, every message in order");
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
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
