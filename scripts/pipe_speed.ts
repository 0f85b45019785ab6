/**
 * @title Fast pipes: bulk bytes at full speed
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_speed.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.FsFile.prototype.writeSync} Doc: writeSync
 * @resource {https://developer.mozilla.org/en-US/docs/Web/API/ReadableStreamBYOBReader} MDN: BYOB reader
 *
 * The article's pipe is a small kernel buffer (64 KiB on Linux) whose writer waits while it is
 * full, so how fast bytes cross it depends on how each side fills and drains it. The script runs
 * itself as a child once per row and times what the parent receives, checking the count and that
 * each chunk starts and ends with the bytes due at its place (every byte would cost more than the
 * reading it measures: 64 MiB took 114-155 ms here). It teaches: write big chunks; `writeSync`
 * skips `await write()`'s round trip to a worker thread; a BYOB reader reuses one buffer. Small
 * messages: see pipe_batching.ts. Unix only.
 * Options: --bytes SIZE per row (64M).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_speed.ts --bytes 64M
 * 67108864 bytes a row
 * child writes, parent reads                rate          x
 * writeSync 64 KiB, BYOB reader              840 MB/s    1.00
 * writeSync 64 KiB, for await                753 MB/s    0.90
 * await write 64 KiB, BYOB reader            513 MB/s    0.61
 * await write 64 KiB, for await              461 MB/s    0.55
 * writeSync 4 KiB, BYOB reader               728 MB/s    0.87
 * Checked: every chunk in its place, every byte counted
 * ```
 *
 * @module
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_speed.ts [--bytes 64M]
  --bytes SIZE   bytes sent in each row: 65536, 64K, 64M or 1G (default 64M)`;

/** How the child writes its chunks: `writeSync` or `await write()`. */
export type Mode = "sync" | "async";

// A write may take only part of the data, so both helpers loop. `await write()` hands the bytes
// to a worker thread and waits for it: a round trip per call. `writeSync()` makes the system call
// right here and blocks this thread (timers, signals, all other I/O) while the pipe is full,
// which is fine in a child that has nothing else to do. Deno.stdout is line-buffered: a chunk
// holding a "\n" byte (as ours do) leaves as two system calls, up to its last "\n", then the rest.
function writeAllSync(data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += Deno.stdout.writeSync(data.subarray(done));
}

async function writeAll(data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += await Deno.stdout.write(data.subarray(done));
}

// Byte k is k % 251, so the parent can check where each chunk it reads belongs (251 is prime:
// a lost or repeated chunk shifts the pattern). Every chunk is a window on one pattern array.
async function child(mode: Mode, bytes: number, chunk: number): Promise<void> {
  const pattern = new Uint8Array(chunk + 251).map((_, i) => i % 251);
  for (let sent = 0; sent < bytes; sent += chunk) {
    const size = Math.min(chunk, bytes - sent);
    const data = pattern.subarray(sent % 251, sent % 251 + size);
    if (mode === "sync") writeAllSync(data);
    else await writeAll(data);
  }
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
 * Runs this script as a child writing `bytes` in `chunk`s in `mode`, reads (with a BYOB reader
 * or for-await), checks and times it all. Returns the seconds from the first byte to EOF.
 * `onFirstByte` runs when the child's first bytes arrive, before the clock starts.
 */
export async function measure(
  mode: Mode,
  { bytes = 64 * MiB, chunk = 64 * KiB, byob = true, onFirstByte = () => {} } = {},
): Promise<{ seconds: number }> {
  // The child needs no permission: writing to its own stdout is always allowed.
  const args = ["run", import.meta.filename!, "--role=child", `--mode=${mode}`];
  args.push(`--bytes=${bytes}`, `--chunk=${chunk}`);
  const process = new Deno.Command(denoExecutable(), { args, stdin: "null", stdout: "piped" })
    .spawn();
  running = process;
  let received = 0;
  let first = 0;
  await readChunks(process.stdout, byob, (chunk) => {
    if (received === 0) {
      onFirstByte();
      first = performance.now();
    }
    const last = received + chunk.length - 1;
    if (chunk[0] !== received % 251 || chunk.at(-1) !== last % 251) {
      throw new Error(`bytes ${received}-${last} are out of place`);
    }
    received += chunk.length;
  });
  const seconds = (performance.now() - first) / 1000;
  const { code } = await process.status;
  running = undefined;
  if (code !== 0) throw new Error(`the ${mode} child ended with exit code ${code}`);
  if (received !== bytes) throw new Error(`${received} of the ${bytes} bytes arrived`);
  return { seconds };
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
];

async function main(): Promise<void> {
  // The child reads its flags itself: importing `node:util` loads Node's compatibility layer,
  // some 15 ms more start-up for every child.
  if (Deno.args.includes("--role=child")) {
    const flag = (name: string) =>
      Deno.args.find((arg) => arg.startsWith(`--${name}=`))!.slice(name.length + 3);
    await child(flag("mode") as Mode, Number(flag("bytes")), Number(flag("chunk")));
    return;
  }
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    strict: true,
    options: {
      bytes: { type: "string", default: "64M" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const bytes = parseSize(values.bytes);
  if (!(bytes > 0)) exit(2, "--bytes takes a size like 65536, 64K or 64M (see --help)");
  if (Deno.build.os === "windows") throw new Error("this lesson is Unix only");
  // On Ctrl-C or SIGTERM, kill the child first, so that none is left writing to no one.
  Deno.addSignalListener("SIGINT", () => stop(130));
  Deno.addSignalListener("SIGTERM", () => stop(143));
  // A short, fixed report: console.log is fine (a long or endless one would need writeSync,
  // because console.log silently ignores a closed stdout).
  console.log(`${bytes} bytes a row`);
  console.log("child writes, parent reads                rate          x");
  // A row's label goes out once its child's first bytes arrive, its figures once it is done: a
  // reader (or a test) sees which row runs, and that its child is writing. A closed stdout
  // (`| head -1`) is ignored, as console.log ignores it for the figures.
  const showLabel = (label: string) => () => {
    try {
      writeAllSync(new TextEncoder().encode(label.padEnd(38)));
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    }
  };
  let base = 0;
  for (const [label, mode, kib, byob] of ROWS) {
    const onFirstByte = showLabel(label);
    const run = await measure(mode, { bytes, chunk: kib * KiB, byob, onFirstByte });
    const rate = bytes / run.seconds / 1e6;
    if (base === 0) base = rate; // x: against the first row.
    const figure = `${rate.toFixed(0).padStart(8)} MB/s `;
    console.log(`${figure}${(rate / base).toFixed(2).padStart(7)}`);
  }
  console.log("Checked: every chunk in its place, every byte counted");
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
