/**
 * @title A message channel over pipes: calling a function in another Deno process
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_channel.ts
 * @resource {https://docs.python.org/3/library/multiprocessing.html#multiprocessing.Pipe} Python: multiprocessing.Pipe
 *
 * `await channel.call("add", 2, 3)` runs `add` in a worker, a child copy of this script, and
 * returns its result or rethrows its error. Pickles with ids, one a line, on the worker's stdin and
 * stdout: calls in flight, answers in any order, a window, AbortSignal, death, `close()`.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_channel.ts
 * worker 4242: add(2, 3) = 5
 * out of order: open answered, then gate, which waited for it
 * divide(1, 0) threw RangeError: division by zero, cause { dividend: 1 }
 * sleep(300) with AbortSignal.timeout(20): TimeoutError
 * 10000 calls, at most 64 in flight: 10000 answers, each the right one
 * exit(3) with 2 calls in flight: all 3 rejected with "worker 4243 exited with code 3"
 * close(): the worker answered the sleep, then exited with code 0
 * ```
 *
 * @module
 */
import { dumps, PickleWriter, readPickles } from "../lib/pickle_json.ts";

// Framing: one pickle a line. A pickle is JSON without whitespace, JSON escapes each control
// character in a string ("a\nb" travels as `"a\nb"`), and every byte of a multi-byte UTF-8
// character is 0x80 or more: 0x0A only ends messages. Binary formats hold any byte, so they frame
// with a length prefix: Python's mp.Connection, Node's IPC with `serialization: "advanced"`.
/** Calls in flight at most; more wait in the parent's queue. */
export const WINDOW = 64;
type Call = { request: unknown[]; done: Promise<unknown>; settle(ok: boolean, v: unknown): void };
/** A worker and the pipes to it: `call` sends a request, and waits for its answer. */
export class Channel {
  /** The worker: this script, with no permissions. */
  readonly child: Deno.ChildProcess = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  #toWorker = new PickleWriter(this.child.stdin);
  #queue: Call[] = []; // not sent yet
  #sent = new Map<unknown, Call>(); // by id: sent, not answered (aborted ones too, till answered)
  #nextId = 1;
  #gone: Error | null = null; // why new calls fail at once
  #ended = this.#readAnswers(); // how the worker ended, once every call is settled
  /** Calls `name(...args)` in the worker: its result, or its error rethrown. */
  call = (name: string, ...args: unknown[]) => this.callWith({}, name, ...args);

  /** Like `call`; when `signal` aborts, the call rejects at once and its answer is dropped. */
  callWith(options: { signal?: AbortSignal }, name: string, ...args: unknown[]): Promise<unknown> {
    const signal = options.signal;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const abort = () => call.settle(false, signal!.reason);
    const settle = (ok: boolean, value: unknown) => {
      call.settle = () => {}; // settled once: an aborted call's answer is dropped
      signal?.removeEventListener("abort", abort);
      if (ok) resolve(value);
      else reject(value instanceof Error ? value : new Error(String(value)));
    };
    const call: Call = { request: [this.#nextId++, name, args], done: promise, settle };
    dumps(args); // arguments that cannot be pickled (a function...) throw here, at once
    signal?.addEventListener("abort", abort);
    if (this.#gone || signal?.aborted) call.settle(false, this.#gone ?? signal!.reason);
    else this.#queue.push(call);
    this.#send();
    return promise;
  }

  // Backpressure: calls go out in order while fewer than WINDOW are in flight; a burst waits
  // here. An aborted call still goes out (its answer is dropped) and counts until answered.
  #send(): void {
    while (this.#queue.length > 0 && this.#sent.size < WINDOW) {
      const call = this.#queue.shift()!;
      this.#toWorker.send(call.request); // lines sent while a write is busy go in one write
      this.#sent.set(call.request[0], call);
    }
  }

  // One loop reads every answer and settles its call by id. EOF comes once the worker has
  // exited (its stdout closed): every call still waiting rejects, with one error that says how.
  async #readAnswers(): Promise<Deno.CommandStatus> {
    try {
      for await (const answer of readPickles(this.child.stdout)) {
        const [id, ok, value] = answer as [number, boolean, unknown];
        this.#sent.get(id)?.settle(ok, value);
        this.#sent.delete(id);
        this.#send();
      }
    } catch { // a malformed answer (a PickleError), or a write to a worker that has gone
      await this.child[Symbol.asyncDispose](); // SIGTERM unless it has exited, then reaped
    }
    const end = await this.child.status;
    const how = end.signal ? `was killed by ${end.signal}` : `exited with code ${end.code}`;
    const gone = new Error(`worker ${this.child.pid} ${how}`);
    this.#gone ??= gone;
    for (const call of [...this.#sent.values(), ...this.#queue.splice(0)]) call.settle(false, gone);
    return end;
  }

  /** No more calls: the worker sees EOF, answers the calls it has, and exits. */
  async close(): Promise<Deno.CommandStatus> {
    this.#gone ??= new Error("the channel is closed");
    await Promise.allSettled(this.#queue.map((call) => call.done)); // the queue goes first
    await this.#toWorker.close().catch(() => {}); // the worker's EOF (a dead one's stdin is gone)
    return await this.#ended;
  }
}

// The story: a worker and its calls, then a second worker, which dies. Answers carry their
// request's id, so they may come in any order: "gate" waits for "open".
async function demo(): Promise<number> {
  const channel = new Channel();
  console.log(`worker ${channel.child.pid}: add(2, 3) = ${await channel.call("add", 2, 3)}`);
  const order: string[] = [];
  const mark = (name: string) => channel.call(name).then(() => order.push(name));
  await Promise.all([mark("gate"), mark("open")]);
  console.log(`out of order: ${order.join(" answered, then ")}, which waited for it`);
  // A throw in the worker crosses the pipe as a pickled Error: its class, message and cause.
  const error = await channel.call("divide", 1, 0).catch((error) => error) as Error;
  console.log(`divide(1, 0) threw ${error}, cause ${Deno.inspect(error.cause)}`);
  // An abort rejects the call at once. The worker is not interrupted: its answer is dropped.
  const late = await channel.callWith({ signal: AbortSignal.timeout(20) }, "sleep", 300)
    .catch((error) => error) as Error;
  console.log(`sleep(300) with AbortSignal.timeout(20): ${late.name}`);
  // Many calls at once: the window lets 64 go, the others wait in the parent, in order.
  const answers = await Promise.all([...Array(10_000).keys()].map((i) => channel.call("add", i)));
  const right = answers.filter((answer, index) => answer === index).length;
  console.log(`10000 calls, at most ${WINDOW} in flight: ${right} answers, each the right one`);
  // A worker that dies takes the calls in flight with it: each rejects, with one clear error.
  const doomed = new Channel();
  const calls = [doomed.call("gate"), doomed.call("sleep", 1000), doomed.call("exit", 3)];
  const errors = await Promise.all(calls.map((call) => call.catch((error: Error) => error)));
  const [first] = errors as Error[];
  const same = errors.every((error) => error === first);
  console.log(`exit(3) with 2 calls in flight: all 3 rejected with "${first.message}"`);
  // close() is the worker's EOF: it finishes what it has (the sleep), then exits by itself.
  const status = await channel.close();
  console.log(`close(): the worker answered the sleep, then exited with code ${status.code}`);
  return same && status.success ? 0 : 1;
}

// What a worker can do. "gate" answers only once "open" has run; "exit" is a crash.
let openGate = () => {};
const functions: Record<string, (...args: never[]) => unknown> = {
  add: (a: number, b = 0) => a + b,
  divide(a: number, b: number) {
    if (b === 0) throw new RangeError("division by zero", { cause: { dividend: a } });
    return a / b;
  },
  gate: () => new Promise<void>((resolve) => openGate = resolve),
  open: () => void setTimeout(openGate), // "gate" answers after "open" has
  sleep: (ms: number) => new Promise((resolve) => setTimeout(resolve, ms, ms)),
  exit: (code: number) => Deno.exit(code),
};
const missing = (name: string) => Promise.reject(new Error(`no function "${name}"`));
// The worker answers each request on stdout (a promise, later). EOF means the parent closed or
// died, so no signal handler is needed: it exits once all have answered. Never print to stdout.
async function worker(): Promise<void> {
  const toParent = new PickleWriter(Deno.stdout.writable);
  for await (const request of readPickles(Deno.stdin.readable)) {
    const [id, name, args] = request as [number, string, unknown[]];
    const fn = Object.hasOwn(functions, name) ? functions[name] : () => missing(name);
    Promise.try(fn as (...args: unknown[]) => unknown, ...args) // a throw becomes a rejection
      .then((value) => [id, true, value], (error) => [id, false, error])
      .then((answer) => toParent.send(answer)) // an answer that cannot be pickled (a function...)
      .catch((error) => toParent.send([id, false, error])) // goes back as that error
      .catch(() => Deno.exit(0)); // a write failed: the parent has gone, nobody reads answers
  }
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

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

const USAGE = `usage: deno run --allow-run=deno scripts/pipe_channel.ts [--help]
  --help  show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await worker();
} else if (import.meta.main) {
  requireDeno();
  if (Deno.args[0] === "--help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (Deno.args.length > 0) {
    console.error(`error: unknown argument "${Deno.args[0]}" (see --help)`);
    Deno.exit(2);
  }
  // A missing permission is the user's mistake: one line (Deno's names the flag), exit 1.
  const code = await demo().catch((error) => {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error(`error: ${error.message}`);
    return 1;
  });
  Deno.exit(code);
}
