/**
 * @title Two-way pipes: requests and answers over a child's stdin and stdout
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_duplex.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.Command} Doc: Deno.Command
 *
 * A pipe carries bytes one way, so a conversation needs two: the parent writes requests (objects
 * serialized as one JSON value per line, the article's claim 6) into the child's stdin, and the
 * child answers each on its stdout. A writer to a full pipe waits (claim 3), and two such writers
 * would wait for each other forever: the parent never waits for its own writes. See `--help`.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_duplex.ts --requests 10000
 * Parent 7377 talks to child 7392: a window of 256 in flight, 16-byte texts.
 * request {"id":1,"text":"1:xxxxxxxxxxxxxx"}
 * answer  {"id":1,"text":"1:XXXXXXXXXXXXXX"}
 * The child saw EOF on its stdin, answered everything, and exited with code 0.
 * Answered 10000 of 10000 requests, in order, in 63 ms: 159406 round trips/s
 * ```
 *
 * @module
 */

// The parent starts this same file as its child, with a pipe each way: requests go into its
// stdin, answers come back on its stdout. `await using` kills and reaps it however this ends.
async function parent(requests: number, size: number, window: number, naive: boolean) {
  await using child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", naive ? "naive" : "fast"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const who = `${naive ? "naive child" : "child"} ${child.pid}`;
  say(`Parent ${Deno.pid} talks to ${who}: a window of ${window} in flight, ${size}-byte texts.`);
  // The child greets first, so the clock starts when it is ready, not while Deno starts it.
  const answers = readLines(child.stdout);
  await answers.next();
  const start = performance.now();
  const text = (id: number) => `${id}:`.padEnd(size, "x"); // the text of request `id`
  const stdin = child.stdin.getWriter();
  let [sent, answered] = [0, 0];
  // The writer: pipelining. A strict ping-pong (--window 1) waits a whole round trip per request;
  // a window in flight, topped up in one batch per write, keeps both sides busy. The stream queues
  // the write, unawaited; if it fails (the child is gone), the answers just never come.
  function refill() {
    let batch = "";
    for (; sent < requests && sent - answered < window; sent++) {
      const line = JSON.stringify({ id: sent + 1, text: text(sent + 1) });
      if (sent === 0) say(`request ${shorten(line)}`);
      batch += line + "\n";
    }
    stdin.write(encoder.encode(batch + "\n")).catch(() => {}); // an empty line ends a batch
  }
  // The reader. Not waiting for its writes is what prevents the deadlock: the child, blocked
  // writing a big answer into a full stdout pipe, reads nothing, so a parent that waited for its
  // own write into a full stdin pipe before it read on would wait forever.
  refill();
  for await (const line of answers) {
    const id = answered + 1; // answers come in order
    if (line !== JSON.stringify({ id, text: text(id).toUpperCase() })) break; // wrong, or cut
    answered = id;
    if (id === 1) say(`answer  ${shorten(line)}`);
    if (answered === requests) break;
    if (sent < requests && sent - answered <= window / 2) refill(); // half the window is free
  }
  // Closing stdin is the child's EOF: without it, the child, and so this parent, waits forever.
  await stdin.close().catch(() => {}); // fails if the child is gone: its status says why
  const status = await child.status;
  const ms = performance.now() - start;
  if (answered !== requests || !status.success) {
    const how = status.signal ? `was killed by ${status.signal}` : `exited with ${status.code}`;
    console.error(`error: the child ${how} after ${answered} of ${requests} answers`);
    return 1;
  }
  say("The child saw EOF on its stdin, answered everything, and exited with code 0.");
  // The last line is for benchmarks too: it matches /: (\d+) round trips\/s$/.
  const summary = `Answered ${answered} of ${requests} requests, in order, in ${Math.round(ms)} ms`;
  say(`${summary}: ${Math.round(answered / (ms / 1000))} round trips/s`);
  return 0;
}

/** The child's work for one request line: the same id, the text in capitals. */
export function answer(line: string): string {
  const { id, text } = JSON.parse(line);
  return JSON.stringify({ id, text: text.toUpperCase() });
}

// The child, the fast way: the answers to a batch gather in one string, and go in one writeSync
// where the batch ends (an empty line) or once 64 KiB wait. While writeSync blocks on a full
// stdout, the child reads nothing: the parent must read while it writes, or both wait forever.
async function fastChild(): Promise<void> {
  let batch = "";
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line !== "") batch += answer(line) + "\n";
    if (line === "" || batch.length >= 65536) {
      writeAll(Deno.stdout, encoder.encode(batch));
      batch = "";
    }
  }
  writeAll(Deno.stdout, encoder.encode(batch));
}

// The naive child, for comparison: one `await write()` per answer, each a round trip to the
// thread that does Deno's async I/O.
async function naiveChild(): Promise<void> {
  const stdout = Deno.stdout.writable.getWriter();
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line !== "") await stdout.write(encoder.encode(answer(line) + "\n"));
  }
}

/** Big texts are mostly padding: show the start of a line and its length. */
function shorten(line: string): string {
  return line.length <= 64 ? line : `${line.slice(0, 40)}... (${line.length} chars)`;
}

const say = (line: string) => writeAll(Deno.stdout, encoder.encode(line + "\n"));

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

/** Splits a byte stream into lines (without "\n"), however the pipe cut it into chunks. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let partial = ""; // the start of a line whose "\n" has not arrived yet
  // TextDecoderStream keeps a UTF-8 character split between two chunks whole.
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    if (!text.includes("\n")) { // a piece of a long line: split nothing until its end comes
      partial += text;
      continue;
    }
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    yield* lines;
  }
  if (partial !== "") yield partial; // a last line without "\n" is still a line
}

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

// The command line. No signal handlers: a child whose parent died ends at EOF or BrokenPipe.
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_duplex.ts [options]
  --requests N   requests to send (default 10000)
  --size BYTES   text per request (default 16)
  --window N     requests in flight at most (default 256)
  --naive-child  a child that awaits one write per answer, for comparison
  --help         show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  try {
    writeAll(Deno.stdout, encoder.encode('{"ready":true}\n')); // the parent's clock starts now
    await (Deno.args[1] === "naive" ? naiveChild() : fastChild());
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error; // the parent is gone: stop
  }
} else if (import.meta.main) {
  requireDeno();
  const { parseArgs } = await import("node:util");
  const defaults = { requests: "10000", size: "16", window: "256" };
  const values = { ...defaults, "naive-child": false, help: false };
  try {
    const [number, flag] = [{ type: "string" }, { type: "boolean" }] as const;
    const options = { requests: number, size: number, window: number, "naive-child": flag };
    Object.assign(values, parseArgs({ options: { ...options, help: flag } }).values);
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) console.log(USAGE);
  if (values.help) Deno.exit(0);
  for (const name of ["requests", "size", "window"] as const) {
    if (!/^[1-9]\d{0,14}$/.test(values[name])) usageError(`--${name} must be a whole number >= 1`);
  }
  const [requests, size, window] = [values.requests, values.size, values.window].map(Number);
  // A missing --allow-run is one line. Our own stdout closed (`... | head -3`) stops us quietly,
  // as a Unix tool does. Any other error is a bug, and keeps its stack trace.
  try {
    Deno.exit(await parent(requests, size, window, values["naive-child"]));
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) Deno.exit(0);
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error(`error: ${error.message}`);
    Deno.exit(1);
  }
}
