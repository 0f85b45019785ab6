/**
 * @title Pipe buffer: a full pipe blocks its writer, an empty pipe blocks its reader
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_buffer.ts
 * @resource {https://man7.org/linux/man-pages/man7/pipe.7.html} Man page: pipe(7), "Pipe capacity"
 *
 * A child writes into a pipe its parent does not read, until the kernel's small buffer is full
 * and the write stops returning; then a child reads a pipe nobody has written, and waits. Proves
 * the article's claims 1-3: a pipe is a small kernel buffer, a writer to a full pipe waits until
 * the other end reads, a reader of an empty pipe waits until the other end writes (and gets EOF,
 * not an error, once the writer closes). Unix only.
 * Options: --total, --settle, --delay (see --help).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_buffer.ts
 * A full pipe: the child writes 4096-byte steps into its stdout; the parent does not read yet.
 *   the child's progress stopped at 65536 bytes (16 steps)
 *   after 303 ms without progress, the parent read 65536 bytes
 *   the writer resumed 0 ms later
 *   it wrote all 262144 bytes, and the parent read every one
 * An empty pipe: the child reads its stdin; the parent writes after 500 ms.
 *   the child waited 502 ms, got 6 bytes, then EOF (null), not an error
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const HELP = `usage: deno run --allow-run=deno scripts/pipe_buffer.ts [options]
  --total BYTES  bytes the writer child writes (default 262144, more than the pipe holds)
  --settle MS    silence that counts as "the write is blocked" (default 300)
  --delay MS     wait before writing to the empty pipe's reader (default 500)
  --help         show this help`;
// Linux counts a pipe in 4096-byte pages, and a write of up to PIPE_BUF (4096) bytes is all or
// nothing, never partial: so 4096-byte steps measure the capacity exactly.
const STEP = 4096;
const encoder = new TextEncoder();
const children = new Set<Deno.ChildProcess>();

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

/** Runs this script again as a child in `role`, with no permissions and piped stdio. */
function spawnChild(role: string, ...args: string[]): Deno.ChildProcess {
  const child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.filename!, "--role", role, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

/** Reads a byte stream line by line (null at EOF), keeping a line split across chunks. */
function lineReader(stream: ReadableStream<Uint8Array>): () => Promise<string | null> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    while (!buffered.includes("\n")) {
      const { done, value } = await reader.read();
      if (done) return buffered === "" ? null : buffered;
      buffered += value;
    }
    const line = buffered.slice(0, buffered.indexOf("\n"));
    buffered = buffered.slice(line.length + 1);
    return line;
  };
}

// Child "writer": 4096-byte steps into stdout (the last one shorter if --total asks for it), and
// after each a progress line on stderr, a second pipe that the parent does read. writeSync does
// not return while the pipe is full, so the progress lines stop exactly at the pipe's capacity.
function writer(total: number): void {
  const step = new Uint8Array(STEP).fill(0x78);
  let written = 0;
  while (written < total) {
    const size = Math.min(STEP, total - written);
    written += Deno.stdout.writeSync(step.subarray(0, size));
    Deno.stderr.writeSync(encoder.encode(`wrote ${written}\n`));
  }
}

// Child "reader": says it is about to read, then reads its empty stdin. Its clock starts before
// the parent hears that, so the wait it reports cannot be shorter than the parent's delay.
function reader(): void {
  const buffer = new Uint8Array(64);
  const start = performance.now();
  Deno.stdout.writeSync(encoder.encode("reading\n"));
  const bytes = Deno.stdin.readSync(buffer); // blocks: nobody has written yet
  const waitedMs = Math.round(performance.now() - start);
  const next = Deno.stdin.readSync(buffer); // null once every write end is closed: EOF
  const then = next === null ? "EOF (null), not an error" : `${next} more bytes`;
  const report = `waited ${waitedMs} ms, got ${bytes} bytes, then ${then}\n`;
  Deno.stdout.writeSync(encoder.encode(report));
}

/** Part 1: measures the pipe's capacity by not reading, then reads and sees the writer resume. */
async function fullPipe(total: number, settleMs: number): Promise<void> {
  console.log(
    "A full pipe: the child writes 4096-byte steps into its stdout; the parent does not read yet.",
  );
  const child = spawnChild("writer", "--total", String(total));
  child.stdin.close();
  const progress = lineReader(child.stderr);
  const bytesIn = (line: string | null) => Number(line?.split(" ")[1] ?? 0);
  // From outside, a write that has not returned looks like silence: no progress line for
  // --settle ms. (A child descheduled that long on a loaded machine would look blocked too,
  // so raise --settle there.)
  let next = progress();
  let line = await next; // awaited as an event, with no time limit: Deno takes a while to start
  let capacity = 0;
  let lastAt = 0;
  while (line !== "blocked") {
    if (line === null) {
      const { success, code } = await child.status; // the writer's stderr ended: it is gone
      if (success) throw new Error(`all ${total} bytes fitted in the pipe; raise --total`);
      throw new Error(`the writer child exited with code ${code} before the pipe was full`);
    }
    capacity = bytesIn(line);
    lastAt = performance.now();
    next = progress();
    const silence = Promise.withResolvers<string>();
    const timer = setTimeout(() => silence.resolve("blocked"), settleMs);
    line = await Promise.race([next, silence.promise]);
    clearTimeout(timer);
  }
  console.log(`  the child's progress stopped at ${capacity} bytes (${capacity / STEP} steps)`);
  // Now read: that frees room in the buffer, and the blocked write returns.
  const stdout = child.stdout.getReader();
  const first = await stdout.read();
  const readAt = performance.now();
  const silentMs = Math.round(readAt - lastAt);
  let received = first.value?.length ?? 0;
  console.log(`  after ${silentMs} ms without progress, the parent read ${received} bytes`);
  let written = bytesIn(await next);
  console.log(`  the writer resumed ${Math.round(performance.now() - readAt)} ms later`);
  // Drain both pipes to the end, or the writer would fill the buffer and block again.
  stdout.releaseLock();
  async function drainStdout() {
    for await (const chunk of child.stdout) received += chunk.length;
  }
  async function drainProgress() {
    let line = await progress();
    while (line !== null) {
      written = bytesIn(line);
      line = await progress();
    }
  }
  const [, , status] = await Promise.all([drainStdout(), drainProgress(), child.status]);
  if (!status.success) throw new Error(`the writer child exited with code ${status.code}`);
  if (received !== written) {
    throw new Error(`read ${received} bytes but the child reported ${written}`);
  }
  console.log(`  it wrote all ${written} bytes, and the parent read every one`);
}

/** Part 2: the child reads an empty pipe; the parent writes after a delay, then closes. */
async function emptyPipe(delayMs: number): Promise<void> {
  console.log(`An empty pipe: the child reads its stdin; the parent writes after ${delayMs} ms.`);
  const child = spawnChild("reader");
  const answers = lineReader(child.stdout);
  if ((await answers()) !== "reading") throw new Error("the reader child did not start");
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  // Closing the write end is what turns "wait for data" into EOF for the reader.
  const stdin = child.stdin.getWriter();
  await stdin.write(encoder.encode("hello\n"));
  await stdin.close();
  const report = await answers();
  if (report === null) throw new Error("the reader child ended without a report");
  console.log(`  the child ${report}`);
  await child.status;
}

/** Kills the children this lesson started that are still running. */
function killChildren(): void {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* it exited a moment ago */ }
  }
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      options: {
        role: { type: "string" }, // "writer" or "reader": what the parent starts
        total: { type: "string", default: "262144" },
        settle: { type: "string", default: "300" },
        delay: { type: "string", default: "500" },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (error) {
    console.error(`error: ${(error as Error).message.replaceAll("\n", " ")} (see --help)`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const total = Number(values.total);
  const settleMs = Number(values.settle);
  const delayMs = Number(values.delay);
  if (![total, settleMs, delayMs].every((n) => Number.isInteger(n) && n > 0)) {
    console.error("error: --total, --settle and --delay take positive integers (see --help)");
    return 2;
  }
  if (![undefined, "writer", "reader"].includes(values.role)) {
    console.error(`error: --role must be writer or reader, not "${values.role}" (see --help)`);
    return 2;
  }
  if (Deno.build.os === "windows") {
    console.error("error: this lesson shows Unix pipe buffers; it runs on Linux and macOS only");
    return 1;
  }
  try {
    if (values.role === "writer") writer(total);
    else if (values.role === "reader") reader();
    else {
      await fullPipe(total, settleMs);
      await emptyPipe(delayMs);
    }
    return 0;
  } catch (error) {
    // A child whose parent went away meets a closed pipe: that is the end, not a bug.
    if (values.role && error instanceof Deno.errors.BrokenPipe) return 1;
    if (error instanceof Deno.errors.NotCapable) {
      console.error("error: run with --allow-run=deno to let the lesson start its child");
    } else if (error instanceof Deno.errors.BrokenPipe) {
      console.error("error: a child closed its end of a pipe early (it exited or was killed)");
    } else console.error(`error: ${(error as Error).message}`);
    return 1;
  } finally {
    killChildren();
  }
}

if (import.meta.main) {
  // Ctrl-C or SIGTERM: kill the children this lesson started, then exit 130 / 143.
  Deno.addSignalListener("SIGINT", () => {
    killChildren();
    Deno.exit(130);
  });
  Deno.addSignalListener("SIGTERM", () => {
    killChildren();
    Deno.exit(143);
  });
  Deno.exit(await main());
}
