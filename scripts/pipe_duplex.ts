/**
 * @title Two-way pipes: requests and answers over a child's stdin and stdout
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_duplex.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.Command} Doc: Deno.Command
 *
 * A pipe carries bytes one way, so a conversation needs two: the parent writes requests (objects
 * serialized as one JSON value per line, the article's claim 6) into the child's stdin, and the
 * child answers each on its stdout. A writer to a full pipe waits (claim 3), so two writers
 * blocked on full pipes would wait forever: the parent reads while it writes, and matches answers
 * to requests by id. Options: --requests, --size, --window, --naive-child (see --help).
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
import { parseArgs } from "node:util";

const HELP = `usage: deno run --allow-run=deno scripts/pipe_duplex.ts [options]
  --requests N   requests to send (default 10000)
  --size BYTES   text per request (default 16)
  --window N     requests in flight at most (default 256)
  --naive-child  a child that awaits one write per answer, for comparison
  --help         show this help`;
const encoder = new TextEncoder();
// Requests in flight are capped in bytes too, so a window of big requests stays in memory bounds.
const MAX_IN_FLIGHT_BYTES = 4 * 1024 * 1024;
let running: Deno.ChildProcess | undefined;

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

/** The child's work for one request line: the same id, the text in capitals. */
export function answer(line: string): string {
  const { id, text } = JSON.parse(line);
  return JSON.stringify({ id, text: text.toUpperCase() });
}

/**
 * Splits text that arrives in chunks into whole lines. A line may be cut anywhere between two
 * chunks, or span many (a 1 MiB line arrives in 64 KiB pieces), so the tail is kept for later.
 */
export function lineSplitter(): (chunk: string) => string[] {
  let tail = "";
  return (chunk) => {
    if (!chunk.includes("\n")) {
      tail += chunk; // no line ends here: keep it all for later
      return [];
    }
    const lines = (tail + chunk).split("\n");
    tail = lines.pop()!;
    return lines;
  };
}

// The child, the fast way: one reader over the whole of stdin, and all the answers to one chunk
// in one writeSync (a loop, since a write may be partial). While writeSync blocks on a full
// stdout, the child reads nothing: the parent must read while it writes, or both wait forever.
async function child(): Promise<void> {
  const split = lineSplitter();
  Deno.stdout.writeSync(encoder.encode('{"ready":true}\n'));
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    const answers = split(text).map((line) => answer(line) + "\n").join("");
    const bytes = encoder.encode(answers);
    let done = 0;
    while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
  }
}

// The naive child, for comparison: one `await write()` per answer, each a round trip to the
// thread that does Deno's async I/O.
async function naiveChild(): Promise<void> {
  const split = lineSplitter();
  const stdout = Deno.stdout.writable.getWriter();
  await stdout.write(encoder.encode('{"ready":true}\n'));
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    for (const line of split(text)) await stdout.write(encoder.encode(answer(line) + "\n"));
  }
}

/** Big texts are mostly padding: show the start of a line and its length. */
function shorten(line: string): string {
  return line.length <= 64 ? line : `${line.slice(0, 40)}... (${line.length} chars)`;
}

async function parent(requests: number, size: number, window: number, naive: boolean) {
  const role = naive ? "naive-child" : "child";
  const child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.filename!, "--role", role],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  running = child;
  const who = naive ? "naive child" : "child";
  console.log(
    `Parent ${Deno.pid} talks to ${who} ${child.pid}: a window of ${window} in flight, ${size}-byte texts.`,
  );
  // The child greets first, so the clock starts when it is ready, not while Deno starts it.
  const chunks = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const split = lineSplitter();
  let greeting: string[] = [];
  while (greeting.length === 0) {
    const { done, value } = await chunks.read();
    if (done) throw new Error("the child ended before it was ready");
    greeting = split(value);
  }
  const start = performance.now();
  const expected = new Map<number, string>(); // id -> the answer's text, for requests in flight
  let inFlightBytes = 0;
  let wakeWriter = () => {};
  let childGone = false; // its stdout ended: the writer must stop waiting for room

  // Writer task: pipelining. A strict ping-pong (--window 1) waits a whole round trip per
  // request; keeping a window in flight, written in one batch per write, keeps both sides busy.
  async function send() {
    const stdin = child.stdin.getWriter();
    let id = 1;
    while (id <= requests && !childGone) {
      let batch = "";
      while (
        id <= requests && expected.size < window &&
        (inFlightBytes < MAX_IN_FLIGHT_BYTES || expected.size === 0)
      ) {
        const text = `${id}:`.padEnd(size, "x");
        const line = JSON.stringify({ id, text });
        if (id === 1) console.log(`request ${shorten(line)}`);
        expected.set(id, text.toUpperCase());
        inFlightBytes += line.length + 1;
        batch += line + "\n";
        id++;
      }
      if (batch) await stdin.write(encoder.encode(batch));
      else await new Promise<void>((resolve) => wakeWriter = resolve); // the window is full
    }
    // Closing stdin is the child's EOF: without it the child's read loop would wait forever,
    // and so would this parent, waiting for the child's stdout to end.
    await stdin.close();
  }

  // Reader task, running at the same time as the writer. This is what prevents the deadlock: the
  // parent writes a big request into a full stdin pipe while the child, blocked writing a big
  // answer into a full stdout pipe, reads nothing. Only a parent that reads meanwhile unblocks it.
  let answered = 0;
  async function receive() {
    while (true) {
      const { done, value } = await chunks.read();
      if (done) {
        childGone = true;
        wakeWriter();
        return;
      }
      for (const line of split(value)) {
        const { id, text } = JSON.parse(line);
        if (id !== answered + 1 || text !== expected.get(id)) {
          throw new Error(`answer ${shorten(line)} does not match request ${answered + 1}`);
        }
        if (id === 1) console.log(`answer  ${shorten(line)}`);
        expected.delete(id);
        inFlightBytes -= line.length + 1;
        answered++;
      }
      wakeWriter();
    }
  }

  await Promise.all([send(), receive()]);
  const status = await child.status;
  const ms = performance.now() - start;
  if (answered !== requests || !status.success) {
    const how = status.signal
      ? `was killed by ${status.signal}`
      : `exited with code ${status.code}`;
    throw new Error(`the child ${how} after ${answered} of ${requests} answers`);
  }
  console.log("The child saw EOF on its stdin, answered everything, and exited with code 0.");
  // The last line is for benchmarks too: it matches /: (\d+) round trips\/s$/.
  const rate = Math.round(answered / (ms / 1000));
  const summary = `Answered ${answered} of ${requests} requests, in order, in ${Math.round(ms)} ms`;
  console.log(`${summary}: ${rate} round trips/s`);
}

/** Kills the child this lesson started, if it still runs. */
function killChild(): void {
  try {
    running?.kill("SIGKILL");
  } catch { /* it has exited already */ }
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      options: {
        role: { type: "string" }, // "child" or "naive-child": what the parent starts
        requests: { type: "string", default: "10000" },
        size: { type: "string", default: "16" },
        window: { type: "string", default: "256" },
        "naive-child": { type: "boolean", default: false },
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
  const requests = Number(values.requests);
  const size = Number(values.size);
  const window = Number(values.window);
  if (![requests, size, window].every((n) => Number.isInteger(n) && n > 0)) {
    console.error("error: --requests, --size and --window take positive integers (see --help)");
    return 2;
  }
  if (![undefined, "child", "naive-child"].includes(values.role)) {
    console.error(`error: --role must be child or naive-child, not "${values.role}" (see --help)`);
    return 2;
  }
  try {
    if (values.role === "child") await child();
    else if (values.role === "naive-child") await naiveChild();
    else await parent(requests, size, window, values["naive-child"]);
    return 0;
  } catch (error) {
    // A child whose parent went away meets a closed pipe: that is an ending, not a bug.
    if (values.role && error instanceof Deno.errors.BrokenPipe) return 1;
    if (error instanceof Deno.errors.NotCapable) {
      console.error("error: run with --allow-run=deno to let the lesson start its child");
    } else if (error instanceof Deno.errors.BrokenPipe) {
      console.error("error: the child closed its stdin before all requests were sent");
    } else console.error(`error: ${(error as Error).message}`);
    return 1;
  } finally {
    killChild();
  }
}

if (import.meta.main) {
  // Ctrl-C or SIGTERM: kill the child this lesson started, then exit 130 / 143.
  Deno.addSignalListener("SIGINT", () => {
    killChild();
    Deno.exit(130);
  });
  if (Deno.build.os !== "windows") { // Windows has no SIGTERM to listen for
    Deno.addSignalListener("SIGTERM", () => {
      killChild();
      Deno.exit(143);
    });
  }
  Deno.exit(await main());
}
