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
 * read and write. The script runs itself as a child once per row and times what the parent
 * receives, checking the count and that each chunk holds the bytes due at its place. Run it
 * pinned to one CPU (`taskset -c 0 deno run ...`), where the two sides take turns, and the rows
 * rank as the code teaches: `writeSync` over `await write()`, a BYOB reader (one buffer, reused)
 * over `for await` (a new chunk each read), 1 MiB or 64 KiB chunks over 4 KiB ones. Unpinned, on
 * a busy or virtual machine, waking the other side on another CPU can cost more than all that,
 * and the rows may come out in any order. Options: `--bytes SIZE` a row. Small messages: see
 * pipe_batching.ts.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_speed.ts --bytes 64M
 * 67108864 bytes a row
 * child writes, parent reads                rate          x
 * writeSync 64 KiB, BYOB reader             1472 MB/s    1.00
 * writeSync 64 KiB, for await                699 MB/s    0.47
 * await write 64 KiB, BYOB reader            460 MB/s    0.31
 * writeSync 4 KiB, BYOB reader               823 MB/s    0.56
 * writeSync 1 MiB, BYOB reader               825 MB/s    0.56
 * Checked: every chunk in its place, every byte counted
 * ```
 *
 * @module
 */

/** How the child writes its chunks: `writeSync` or `await write()`. */
export type Mode = "sync" | "async";

/**
 * Runs a child writing `bytes` in `chunk`s in `mode`; reads them (a BYOB reader, or for-await),
 * checks and times them: the seconds from the first byte (`onFirstByte` runs then) to EOF.
 */
export async function measure(
  mode: Mode,
  { bytes = 64 * 2 ** 20, chunk = 64 * 1024, byob = true, onFirstByte = () => {} } = {},
): Promise<{ seconds: number }> {
  // `await using` kills and reaps the child however this function ends (a failed check).
  await using child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", mode, `${bytes}`, `${chunk}`],
    stdin: "null",
    stdout: "piped",
  }).spawn();
  let [received, first] = [0, 0];
  const check = (chunk: Uint8Array) => {
    if (first === 0) onFirstByte();
    first ||= performance.now();
    const last = received + chunk.length - 1;
    if (chunk[0] !== received % 251 || chunk.at(-1) !== last % 251) {
      throw new Error(`bytes ${received}-${last} are out of place`);
    }
    received += chunk.length;
  };
  // for-await gets a newly allocated chunk per read; a BYOB ("bring your own buffer") reader
  // reads into our buffer and hands the same memory back to be reused. A buffer larger than the
  // pipe would get no more per read.
  if (byob) {
    const reader = child.stdout.getReader({ mode: "byob" });
    let buffer = new Uint8Array(64 * 1024);
    while (true) {
      const { value, done } = await reader.read(buffer);
      if (done) break;
      check(value);
      buffer = new Uint8Array(value.buffer); // the same memory, handed back to us
    }
  } else {
    for await (const chunk of child.stdout) check(chunk);
  }
  const seconds = (performance.now() - first) / 1000;
  const { code } = await child.status;
  if (code !== 0 || received !== bytes) {
    throw new Error(`the ${mode} child sent ${received} of ${bytes} bytes, exit code ${code}`);
  }
  return { seconds };
}

// One child per row. A row's label goes out when its child's first bytes arrive, its figures
// when it is done, so a reader (or a test) sees which child is writing.
async function parent(bytes: number): Promise<number> {
  const rows: [string, Mode, number, boolean][] = [
    ["writeSync 64 KiB, BYOB reader", "sync", 64, true],
    ["writeSync 64 KiB, for await", "sync", 64, false],
    ["await write 64 KiB, BYOB reader", "async", 64, true],
    ["writeSync 4 KiB, BYOB reader", "sync", 4, true],
    ["writeSync 1 MiB, BYOB reader", "sync", 1024, true],
  ];
  const say = (text: string) => writeAll(Deno.stdout, encoder.encode(text));
  try {
    say(`${bytes} bytes a row\nchild writes, parent reads                rate          x\n`);
    let base = 0; // x: against the first row
    for (const [label, mode, kib, byob] of rows) {
      const onFirstByte = () => say(label.padEnd(38));
      const { seconds } = await measure(mode, { bytes, chunk: kib * 1024, byob, onFirstByte });
      const rate = bytes / seconds / 1e6;
      base ||= rate;
      say(`${rate.toFixed(0).padStart(8)} MB/s ${(rate / base).toFixed(2).padStart(7)}\n`);
    }
    say("Checked: every chunk in its place, every byte counted\n");
  } catch (error) {
    // Our own stdout was closed (`| head -3`): stop quietly, as a Unix tool does.
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
  return 0;
}

// The child's stdout is the pipe. Byte k is k % 251, so the parent can check where each chunk
// belongs (251 is prime: a lost or repeated chunk shifts the pattern); every chunk is a window
// on one pattern array. `await write()` is a round trip through Deno's async I/O per chunk;
// `writeSync` is the system call itself, blocking this thread while the pipe is full (claim 3).
// Deno.stdout is line-buffered: a chunk holding a "\n" byte leaves as two system calls (strace
// shows it), which costs little next to the reads.
async function child(mode: Mode, bytes: number, chunk: number): Promise<void> {
  const pattern = new Uint8Array(chunk + 251).map((_, i) => i % 251);
  try {
    for (let sent = 0; sent < bytes; sent += chunk) {
      const data = pattern.subarray(sent % 251, sent % 251 + Math.min(chunk, bytes - sent));
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

// The command line. The child reads its plain words after `--child` itself (no `node:util`: a
// slower start). One option needs only `parseArgs`, not the plumbing's readOptions.
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
