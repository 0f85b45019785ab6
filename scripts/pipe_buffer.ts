/**
 * @title Pipe buffer: a full pipe blocks its writer, an empty pipe blocks its reader
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_buffer.ts
 * @resource {https://man7.org/linux/man-pages/man7/pipe.7.html} Man page: pipe(7), "Pipe capacity"
 *
 * Proves three claims of the article: a pipe is a small kernel buffer, a writer to a full pipe
 * waits until the other end reads, and a reader of an empty pipe waits until the other end
 * writes (then gets EOF, not an error, once the writer closes). Unix only.
 * Options: --total BYTES the child writes (default 262144), --settle MS of silence that counts
 * as "blocked" (default 300), --delay MS before the parent writes to the empty pipe (default 500).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_buffer.ts
 * A full pipe: the child writes 4096-byte steps into its stdout; the parent does not read yet.
 *   the child's progress stopped at 65536 bytes (16 steps)
 *   the parent read 65536 bytes; the writer resumed 1 ms later
 * An empty pipe: the child reads its stdin; the parent writes after 500 ms.
 *   the child got 6 bytes, then EOF (null), not an error
 *
 * | figure                                     |  value |
 * | ------------------------------------------ | -----: |
 * | pipe capacity, bytes written unread        |  65536 |
 * | writer blocked until the parent read (ms)  |    303 |
 * | bytes written in total, after resuming     | 262144 |
 * | empty-pipe reader waited (ms)              |    503 |
 * | writer's delay before writing (ms)         |    500 |
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const usage =
  "usage: deno run --allow-run=deno scripts/pipe_buffer.ts [--total BYTES] [--settle MS] [--delay MS]";
const STEP = 4096; // Linux counts a pipe in 4096-byte pages, so 4096-byte steps measure it exactly.
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

/** Reads a byte stream line by line, keeping a line that arrives split across chunks. */
function lines(
  stream: ReadableStream<Uint8Array>,
): () => Promise<string | null> {
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

/** Resolves to `value` after `ms` milliseconds; the timer is cleared when `cancel` settles. */
function after<T>(ms: number, value: T, cancel: Promise<unknown>): Promise<T> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(value), ms);
    cancel.finally(() => clearTimeout(timer));
  });
}

// Child "writer": writes 4096-byte steps into stdout, and after each one a progress line on
// stderr, a second pipe that the parent does read. writeSync does not return while the pipe is
// full, so the progress lines stop exactly at the pipe's capacity.
function writer(total: number): void {
  const step = new Uint8Array(STEP).fill(0x78);
  for (let written = 0; written < total;) {
    written += Deno.stdout.writeSync(step);
    Deno.stderr.writeSync(encoder.encode(`wrote ${written}\n`));
  }
}

// Child "reader": tells the parent it is about to read, then reads its empty stdin. The clock
// starts before the parent is told, so the wait it reports cannot be shorter than the delay.
function reader(): void {
  const buffer = new Uint8Array(64);
  const start = performance.now();
  Deno.stdout.writeSync(encoder.encode("reading\n"));
  const bytes = Deno.stdin.readSync(buffer); // blocks: nobody has written yet
  const waitedMs = performance.now() - start;
  const after = Deno.stdin.readSync(buffer); // null once every write end is closed
  const report = {
    bytes,
    waitedMs,
    after: after === null ? "EOF (null)" : after,
  };
  Deno.stdout.writeSync(encoder.encode(JSON.stringify(report) + "\n"));
}

/** Part 1: measures the pipe's capacity by not reading, then reads and sees the writer resume. */
async function fullPipe(total: number, settleMs: number) {
  console.log(
    "A full pipe: the child writes 4096-byte steps into its stdout; the parent does not read yet.",
  );
  const child = spawnChild("writer", "--total", String(total));
  child.stdin.close();
  const progress = lines(child.stderr);
  const bytesIn = (line: string) => Number(line.split(" ")[1]);
  // The first line only says that the child has started (Deno takes a moment), so wait for it as
  // an event; after it, silence for --settle ms means the next writeSync has not returned.
  let next = progress();
  let line = await next;
  let capacity = 0, lastAt = 0;
  while (line !== "settled") {
    if (line === null) {
      throw new Error(`all ${total} bytes fitted; raise --total`);
    }
    capacity = bytesIn(line), lastAt = performance.now();
    next = progress();
    line = await Promise.race([next, after(settleMs, "settled", next)]);
  }
  const blockedMs = performance.now() - lastAt;
  console.log(
    `  the child's progress stopped at ${capacity} bytes (${capacity / STEP} steps)`,
  );
  // Now read: that frees room in the buffer, and the blocked write returns.
  const stdout = child.stdout.getReader();
  const first = await stdout.read();
  const readAt = performance.now();
  let written = bytesIn((await next) ?? "wrote 0");
  const resumedMs = performance.now() - readAt;
  let received = first.value?.length ?? 0;
  console.log(
    `  the parent read ${received} bytes; the writer resumed ${resumedMs.toFixed(0)} ms later`,
  );
  // Drain both pipes to the end, or the writer would block again.
  const drainStdout = async () => {
    for (let r = await stdout.read(); !r.done; r = await stdout.read()) {
      received += r.value.length;
    }
  };
  const drainProgress = async () => {
    for (let l = await progress(); l !== null; l = await progress()) {
      written = bytesIn(l);
    }
  };
  await Promise.all([drainStdout(), drainProgress(), child.status]);
  if (received !== written) {
    throw new Error(`read ${received} bytes but the child reported ${written}`);
  }
  return { capacity, blockedMs, written };
}

/** Part 2: the child reads an empty pipe; the parent writes after a delay, then closes. */
async function emptyPipe(delayMs: number) {
  console.log(
    `An empty pipe: the child reads its stdin; the parent writes after ${delayMs} ms.`,
  );
  const child = spawnChild("reader");
  const answers = lines(child.stdout);
  if ((await answers()) !== "reading") {
    throw new Error("the reader did not start");
  }
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  // Closing the write end is what turns "wait for data" into EOF for the reader.
  const stdin = child.stdin.getWriter();
  await stdin.write(encoder.encode("hello\n"));
  await stdin.close();
  const report = JSON.parse((await answers()) ?? "{}");
  await child.status;
  console.log(
    `  the child got ${report.bytes} bytes, then ${report.after}, not an error`,
  );
  return report.waitedMs as number;
}

async function main(): Promise<number> {
  let options;
  try {
    options = parseArgs({
      options: {
        role: { type: "string" },
        total: { type: "string", default: "262144" },
        settle: { type: "string", default: "300" },
        delay: { type: "string", default: "500" },
      },
      strict: true,
    }).values;
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n${usage}`);
    return 2;
  }
  const [total, settleMs, delayMs] = [
    options.total,
    options.settle,
    options.delay,
  ].map(Number);
  if (![total, settleMs, delayMs].every((n) => Number.isInteger(n) && n > 0)) {
    console.error(
      `error: --total, --settle and --delay take positive integers\n${usage}`,
    );
    return 2;
  }
  try {
    if (options.role === "writer") writer(total);
    else if (options.role === "reader") reader();
    else await parent(total, settleMs, delayMs);
    return 0;
  } catch (error) {
    // A child whose parent went away meets a closed pipe: that is the end, not a bug.
    if (options.role && error instanceof Deno.errors.BrokenPipe) return 1;
    if (error instanceof Deno.errors.NotCapable) {
      console.error(
        "error: run with --allow-run=deno to let the lesson start its child",
      );
    } else console.error(`error: ${(error as Error).message}`);
    return 1;
  } finally {
    for (const child of children) child.kill("SIGKILL");
  }
}

/** Both parts, then the figures in a table. */
async function parent(total: number, settleMs: number, delayMs: number) {
  const full = await fullPipe(total, settleMs);
  const waitedMs = await emptyPipe(delayMs);
  const rows: [string, number][] = [
    ["pipe capacity, bytes written unread", full.capacity],
    ["writer blocked until the parent read (ms)", Math.round(full.blockedMs)],
    ["bytes written in total, after resuming", full.written],
    ["empty-pipe reader waited (ms)", Math.round(waitedMs)],
    ["writer's delay before writing (ms)", delayMs],
  ];
  console.log("\n| figure                                     |  value |");
  console.log("| ------------------------------------------ | -----: |");
  for (const [name, value] of rows) {
    console.log(`| ${name.padEnd(42)} | ${String(value).padStart(6)} |`);
  }
}

if (import.meta.main) {
  // Ctrl-C or SIGTERM: kill the children this lesson started, then exit 130 / 143.
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, () => {
      for (const child of children) child.kill("SIGKILL");
      Deno.exit(code);
    });
  }
  Deno.exit(await main());
}
