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
 * not an error, once the writer closes). Unix only. Options: `--total`, `--settle`, `--delay`.
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

// Part 1, a full pipe: the writer child's stdout, unread for now. After each 4096-byte step the
// child writes a byte on its stderr, a second pipe that the parent does read: those bytes stop
// where the buffer is full. `await using` kills and reaps the child however this function ends.
async function fullPipe(total: number, settleMs: number): Promise<number> {
  const what = "the child writes 4096-byte steps into its stdout; the parent does not read yet";
  say(`A full pipe: ${what}.`);
  await using child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", "writer", `${total}`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // From outside, a write that has not returned looks like silence: no progress for --settle ms
  // (raise it on a loaded machine). The first byte may take long: Deno takes a while to start.
  const progress = child.stderr.getReader();
  let steps = 0;
  let lastAt = 0; // when the last progress byte came
  let next = progress.read();
  let got: Awaited<typeof next> | "silence" = await next;
  while (got !== "silence") {
    if (got.done) return fail("the writer child ended before the pipe was full: raise --total?");
    steps += got.value.length;
    lastAt = performance.now();
    next = progress.read();
    got = await Promise.race([next, sleep(settleMs).then(() => "silence" as const)]);
  }
  say(`  the child's progress stopped at ${steps * STEP} bytes (${steps} steps)`);
  // Now read: that frees room in the buffer, and the blocked write returns (claim 3).
  const data = child.stdout.getReader();
  let received = (await data.read()).value?.length ?? 0;
  const readAt = performance.now();
  say(`  after ${ms(readAt - lastAt)} ms without progress, the parent read ${received} bytes`);
  await next; // the progress byte of the write that was blocked
  say(`  the writer resumed ${ms(performance.now() - readAt)} ms later`);
  // Read both pipes to the end at once: a pipe left unread fills and blocks its writer for good.
  data.releaseLock();
  progress.releaseLock();
  const dropping = child.stderr.pipeTo(new WritableStream()); // read to the end, and dropped
  for await (const chunk of child.stdout) received += chunk.length;
  await dropping;
  const { code } = await child.status;
  const outcome = `the parent read ${received} of ${total} bytes, the writer exited with ${code}`;
  if (code !== 0 || received !== total) return fail(outcome);
  say(`  it wrote all ${total} bytes, and the parent read every one`);
  return 0;
}

// Part 2, an empty pipe: the reader child's stdin. Its stdout brings the report back.
async function emptyPipe(delayMs: number): Promise<number> {
  await using child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", "reader"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  // The child's first bytes, "reading", come alone: it writes nothing more until its read returns.
  // Each of its writes is one short writeSync, which a pipe delivers whole, in one read.
  const report = child.stdout.getReader();
  if ((await report.read()).done) return fail("the reader child ended before it read");
  say(`An empty pipe: the child reads its stdin; the parent writes after ${delayMs} ms.`);
  await sleep(delayMs);
  // Closing the write end turns "wait for data" into EOF for the reader: without it, its second
  // read would wait forever. The stream queues the write; if the child is gone, both fail.
  const stdin = child.stdin.getWriter();
  stdin.write(encoder.encode("hello\n")).catch(() => {});
  await stdin.close().catch(() => {});
  const { value } = await report.read();
  if (!(await child.status).success) return fail("the reader child failed");
  say(`  the child ${new TextDecoder().decode(value).trimEnd()}`);
  return 0;
}

// Linux counts a pipe in 4096-byte pages, and a write of up to PIPE_BUF (4096) bytes is all or
// nothing, never partial: so 4096-byte steps measure the capacity exactly.
const STEP = 4096;
// The writer child: 4096-byte steps (the last one shorter if --total asks for it). writeSync
// does not return while the pipe is full, so the progress bytes stop at the capacity.
function writer(total: number): void {
  const step = new Uint8Array(STEP).fill(0x78); // "xxxx..."
  for (let written = 0; written < total; written += STEP) {
    writeAll(Deno.stdout, step.subarray(0, Math.min(STEP, total - written)));
    writeAll(Deno.stderr, encoder.encode("."));
  }
}

// The reader child: says it is about to read, then reads its empty stdin. Its clock starts before
// the parent hears that, so the wait it reports cannot be shorter than the parent's delay.
function reader(): void {
  const buffer = new Uint8Array(64);
  const start = performance.now();
  writeAll(Deno.stdout, encoder.encode("reading\n"));
  const bytes = Deno.stdin.readSync(buffer); // waits: nobody has written yet
  const waited = ms(performance.now() - start);
  const next = Deno.stdin.readSync(buffer); // null once every write end is closed: EOF
  const then = next === null ? "EOF (null), not an error" : `${next} more bytes`;
  writeAll(Deno.stdout, encoder.encode(`waited ${waited} ms, got ${bytes} bytes, then ${then}\n`));
}

// Never cancelled: a sleep that loses a race just runs out, harmlessly.
const sleep = (delay: number) => new Promise((done) => setTimeout(done, delay));
const ms = (milliseconds: number) => Math.round(milliseconds);
const say = (line: string) => writeAll(Deno.stdout, encoder.encode(line + "\n"));
/** A failure at run time: one line on stderr, and exit code 1. */
function fail(message: string): number {
  console.error(`error: ${message}`);
  return 1;
}

// The run: part 2 only once part 1 has succeeded. A missing --allow-run is one line; our own
// stdout closed (`... | head -3`) stops us quietly, as a Unix tool does.
async function parent(total: number, settleMs: number, delayMs: number): Promise<number> {
  try {
    const code = await fullPipe(total, settleMs);
    return code === 0 ? await emptyPipe(delayMs) : code;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return fail(error.message);
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error; // a bug: keep its stack trace
    return 0;
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

// The command line. A child reads its plain words after `--child` itself. No signal handlers:
// if the parent dies, the kernel closes its pipe ends, and a child ends at BrokenPipe or EOF.
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_buffer.ts [options]
  --total BYTES  bytes the writer child writes (default 262144, more than the pipe holds)
  --settle MS    silence that counts as "the write is blocked" (default 300)
  --delay MS     wait before writing to the empty pipe's reader (default 500)
  --help         show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  try {
    if (Deno.args[1] === "writer") writer(Number(Deno.args[2]));
    else reader();
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error; // the parent is gone: stop
  }
} else if (import.meta.main) {
  requireDeno();
  const { parseArgs } = await import("node:util");
  const values = { total: "262144", settle: "300", delay: "500", help: false };
  try {
    const [number, flag] = [{ type: "string" }, { type: "boolean" }] as const;
    const options = { total: number, settle: number, delay: number, help: flag };
    Object.assign(values, parseArgs({ options }).values);
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) console.log(USAGE);
  if (values.help) Deno.exit(0);
  for (const name of ["total", "settle", "delay"] as const) {
    if (!/^[1-9]\d{0,14}$/.test(values[name])) usageError(`--${name} must be a whole number >= 1`);
  }
  if (Deno.build.os === "windows") Deno.exit(fail("this lesson shows Unix pipes: Linux, macOS"));
  Deno.exit(await parent(Number(values.total), Number(values.settle), Number(values.delay)));
}
