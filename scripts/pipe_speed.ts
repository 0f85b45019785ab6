/**
 * @title Fast pipes: bulk bytes at full speed
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_speed.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.FsFile.prototype.writeSync} Doc: writeSync
 * @resource {https://developer.mozilla.org/en-US/docs/Web/API/ReadableStreamBYOBReader} MDN: BYOB reader
 *
 * The article's pipe is a small kernel buffer (claim 1: 64 KiB on Linux) whose writer waits
 * while it is full (claim 3), so no read returns more than 64 KiB: bulk speed is the cost of each
 * read and write. The script runs itself as a child once per row; the reader checks the count
 * and each chunk's first and last byte against their place. Pinned to one CPU (`taskset -c 0 deno run
 * ...`), the two sides take turns and the rows rank as the code teaches: `await write()` below
 * `writeSync`, 1 MiB chunks above 64 KiB ones, and either way round alike. Unpinned, waking the
 * other side on another CPU can cost more than all that, and the rows come out in any order.
 * Options: `--bytes SIZE` a row. Small messages: see pipe_batching.ts.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_speed.ts --bytes 64M
 * writer, reader (67108864 bytes a row)            rate          x
 * child writeSync 64 KiB, parent BYOB reader        804 MB/s    1.00
 * child await write 64 KiB, parent BYOB reader      916 MB/s    1.14
 * child writeSync 1 MiB, parent BYOB reader        4824 MB/s    6.00
 * parent await write 1 MiB, child readSync         5054 MB/s    6.28
 * ```
 *
 * @module
 */
/** Who writes: the child (`sync`: writeSync, `async`: await write), or the parent (`read`). */
export type Mode = "sync" | "async" | "read";

/** Sends `bytes` in `chunk`s, checks them, and times them from the first byte to EOF. */
export async function measure(
  mode: Mode,
  { bytes = 64 * 2 ** 20, chunk = 64 * 1024, onFirstByte = () => {} } = {},
): Promise<{ seconds: number }> {
  await using child = new Deno.Command(denoExecutable(), { // killed, reaped however this ends
    args: ["run", import.meta.url, "--child", mode, `${bytes}`, `${chunk}`],
    stdin: mode === "read" ? "piped" : "null",
    stdout: "piped",
  }).spawn();
  let [received, first, seconds] = [0, 0, 0];
  if (mode === "read") {
    // The parent's end of a pipe is only a stream, an async op per read (64 KiB at most) or per
    // write (1 MiB here); the child reads its stdin, a plain file descriptor, with `readSync`,
    // then prints "<bytes> <seconds>". A write fails only if the child left: its count says so.
    onFirstByte();
    await ReadableStream.from(windows(bytes, chunk)).pipeTo(child.stdin).catch(() => {});
    [received, seconds] = (await new Response(child.stdout).text()).split(" ").map(Number);
  } else {
    // A BYOB ("bring your own buffer") reader reuses our buffer; for-await allocates each read.
    const reader = child.stdout.getReader({ mode: "byob" });
    let buffer = new Uint8Array(64 * 1024);
    while (true) {
      const { value, done } = await reader.read(buffer);
      if (done) break;
      if (first === 0) onFirstByte();
      first ||= performance.now();
      received = checkPlace(value, received);
      buffer = new Uint8Array(value.buffer); // the same memory, handed back to us
    }
    seconds = (performance.now() - first) / 1000;
  }
  const { code } = await child.status;
  if (code !== 0 || received !== bytes) {
    throw new Error(`the ${mode} child: ${received} of ${bytes} bytes came, exit code ${code}`);
  }
  return { seconds };
}

// One child per row. A row's label goes out when the first bytes cross (a test waits for it).
async function parent(bytes: number): Promise<number> {
  const rows: [string, Mode, number][] = [
    ["child writeSync 64 KiB, parent BYOB reader", "sync", 64],
    ["child await write 64 KiB, parent BYOB reader", "async", 64],
    ["child writeSync 1 MiB, parent BYOB reader", "sync", 1024],
    ["parent await write 1 MiB, child readSync", "read", 1024],
  ];
  const say = (text: string) => writeAll(Deno.stdout, encoder.encode(text));
  try {
    say(`writer, reader (${bytes} bytes a row)`.padEnd(49) + "rate          x\n");
    let base = 0; // x: against the first row
    for (const [label, mode, kib] of rows) {
      const onFirstByte = () => say(label.padEnd(45));
      const { seconds } = await measure(mode, { bytes, chunk: kib * 1024, onFirstByte });
      const rate = bytes / seconds / 1e6;
      base ||= rate;
      say(`${rate.toFixed(0).padStart(8)} MB/s ${(rate / base).toFixed(2).padStart(7)}\n`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error; // our stdout closed: `| head -3`
  }
  return 0;
}

// Byte k is k % 251 (prime: a lost or repeated chunk shifts it); chunks are windows on one array.
function* windows(bytes: number, chunk: number): Generator<Uint8Array> {
  const pattern = new Uint8Array(chunk + 251).map((_, i) => i % 251);
  for (let sent = 0; sent < bytes; sent += chunk) {
    yield pattern.subarray(sent % 251, sent % 251 + Math.min(chunk, bytes - sent));
  }
}

/** Throws unless `chunk`'s first and last byte are those due at byte `at`; returns its end. */
function checkPlace(chunk: Uint8Array, at: number): number {
  const last = at + chunk.length - 1;
  if (chunk[0] !== at % 251 || chunk.at(-1) !== last % 251) {
    throw new Error(`bytes ${at}-${last} are out of place`);
  }
  return last + 1;
}

// `await write()` is a round trip through Deno's async I/O per chunk; `writeSync` is the system
// call itself, blocking while the pipe is full (claim 3). A byte out of place is a bug: exit 1.
async function child(mode: Mode, bytes: number, chunk: number): Promise<void> {
  try {
    if (mode === "read") {
      const buffer = new Uint8Array(chunk);
      let [received, first] = [0, 0];
      for (let n = Deno.stdin.readSync(buffer); n !== null; n = Deno.stdin.readSync(buffer)) {
        first ||= performance.now();
        received = checkPlace(buffer.subarray(0, n), received);
      }
      const seconds = (performance.now() - first) / 1000;
      return writeAll(Deno.stdout, encoder.encode(`${received} ${seconds}`));
    }
    for (const data of windows(bytes, chunk)) {
      if (mode === "sync") writeAll(Deno.stdout, data);
      else for (let n = 0; n < data.length;) n += await Deno.stdout.write(data.subarray(n));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error; // the parent left: stop quietly
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

// The command line. The child reads its words after `--child` itself (`node:util` is slower).
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_speed.ts [options]
  --bytes SIZE   bytes sent in each row: 65536, 64K, 64M or 1G (default 64M)
  --help         show this help`;

/** Parses a size like 65536, 64K, 64M or 1G into bytes; NaN if it is not one. */
export function parseSize(text: string): number {
  const match = /^(\d{1,12})([KMG]?)$/i.exec(text);
  return match ? Number(match[1]) * 1024 ** " KMG".indexOf(match[2].toUpperCase() || " ") : NaN;
}

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Deno.args[1] as Mode, Number(Deno.args[2]), Number(Deno.args[3]));
} else if (import.meta.main) {
  requireDeno();
  const { parseArgs } = await import("node:util");
  let values = { bytes: "64M", help: false };
  try {
    const options = { bytes: { type: "string" }, help: { type: "boolean" } } as const;
    values = { ...values, ...parseArgs({ options }).values };
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) console.log(USAGE);
  if (values.help) Deno.exit(0);
  const bytes = parseSize(values.bytes);
  if (!(bytes > 0)) usageError("--bytes takes a size like 65536, 64K or 64M");
  await exitWith(() => parent(bytes));
}
