/**
 * @title A message channel over pipes: calling a function in another Deno process
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/pipe_channel.ts
 * @resource {https://docs.python.org/3/library/multiprocessing.html#multiprocessing.Pipe} Python: multiprocessing.Pipe
 *
 * `await channel.call("add", 2, 3)` runs `add` in a worker, a child copy of this script, and
 * returns its result or rethrows its error. Requests and answers are pickles (lib/pickle_json.ts),
 * one a line with an id, through two FIFOs: many calls in flight, answers in any order, a bounded
 * window, AbortSignal, the worker's death and `close()`. Unix only. `--round-trips N` times N
 * strict round trips (one call in flight).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/pipe_channel.ts
 * worker 4242: add(2, 3) = 5
 * out of order: open answered, then gate, which waited for it
 * divide(1, 0) threw RangeError: division by zero, cause { dividend: 1 }
 * sleep(500) with AbortSignal.timeout(50): TimeoutError
 * exit(3) with 2 calls in flight: all 3 rejected with "worker 4243 exited with code 3"
 * close(): the worker answered the sleep, then exited with code 0
 * ```
 *
 * @module
 */
import { dumps, loads } from "../lib/pickle_json.ts";

// The story: a worker and its calls, then a second worker, which dies.
async function demo(): Promise<number> {
  const channel = await Channel.start();
  console.log(`worker ${channel.child.pid}: add(2, 3) = ${await channel.call("add", 2, 3)}`);
  // Answers carry their request's id, so they may come in any order: "gate" waits in the worker
  // until "open" has run.
  const order: string[] = [];
  const gate = channel.call("gate").then(() => order.push("gate"));
  await channel.call("open").then(() => order.push("open")).then(() => gate);
  console.log(`out of order: ${order[0]} answered, then ${order[1]}, which waited for it`);
  // A throw in the worker crosses the pipe as a pickled Error: its class, message and cause.
  const error = await channel.call("divide", 1, 0).catch((error: Error) => error) as Error;
  console.log(`divide(1, 0) threw ${error}, cause ${Deno.inspect(error.cause)}`);
  const signal = AbortSignal.timeout(50);
  const late = await channel.callWith({ signal }, "sleep", 500).catch((error) => error);
  console.log(`sleep(500) with AbortSignal.timeout(50): ${(late as Error).name}`);
  // A worker that dies takes the calls in flight with it: each rejects, with one clear error.
  const doomed = await Channel.start();
  const calls = [doomed.call("gate"), doomed.call("sleep", 1000), doomed.call("exit", 3)];
  const errors = new Set(await Promise.all(calls.map((call) => call.catch((error) => error))));
  const [reason] = errors as Set<Error>;
  console.log(`exit(3) with 2 calls in flight: all 3 rejected with "${reason.message}"`);
  // close() is the worker's EOF: it finishes what it has (the sleep), then exits by itself.
  const status = await channel.close();
  console.log(`close(): the worker answered the sleep, then exited with code ${status.code}`);
  return errors.size === 1 && status.success ? 0 : 1;
}

// What a worker can do. "gate" answers only once "open" has run; "exit" is a crash.
let openGate = () => {};
const functions: Record<string, (...args: never[]) => unknown> = {
  add: (a: number, b: number) => a + b,
  echo: (value: unknown) => value,
  divide(a: number, b: number) {
    if (b === 0) throw new RangeError("division by zero", { cause: { dividend: a } });
    return a / b;
  },
  gate: () => new Promise<void>((resolve) => openGate = resolve),
  open: () => openGate(),
  sleep: (ms: number) => new Promise((resolve) => setTimeout(resolve, ms, ms)),
  exit: (code: number) => Deno.exit(code),
};

// Framing: a pickle is JSON without whitespace, JSON escapes every control character in a
// string ("a\nb" travels as `"a\nb"`), and UTF-8 uses no byte below 0x80 inside a character. So
// the byte 0x0A only ever ends a message, and any reader (a human with `cat` too) can split on
// it. Binary formats can hold any byte, so they frame with a length prefix instead, 4 bytes and
// then that many: Python's mp.Connection, and Node's IPC with `serialization: "advanced"`.

// Requests in flight hold at most ROOM bytes, less than any pipe holds (Linux 64 KiB, macOS 16
// KiB at first): the request pipe is then never full, and writeSync never waits. (A parent
// blocked writing while its worker is blocked writing answers would be a deadlock.) A bigger
// request goes alone, when the worker, with nothing to answer, is reading. And at most WINDOW
// calls are in flight: more wait in the parent's queue, in order.
const [ROOM, WINDOW] = [16 * 1024, 64];

type Call = { id: number; line: Uint8Array; settle(ok: boolean, value: unknown): void };

/** A worker and the two FIFOs to it: `call` sends a request, and waits for its answer. */
export class Channel {
  #queue: Call[] = []; // not sent yet
  #sent = new Map<number, Call>(); // sent, not answered (aborted ones too: bytes in the pipe)
  #bytes = 0; // of the requests in #sent
  #nextId = 1;
  #closed: Error | null = null; // why calls now fail at once
  #closing = false;
  readonly ended: Promise<Deno.CommandStatus>;

  constructor(
    readonly child: Deno.ChildProcess,
    readonly requests: Deno.FsFile,
    answers: Deno.FsFile,
  ) {
    this.ended = this.#readAnswers(answers);
  }

  /** Calls `name(...args)` in the worker: its result, or its error rethrown. */
  call(name: string, ...args: unknown[]): Promise<unknown> {
    return this.callWith({}, name, ...args);
  }

  /** Like `call`; when `signal` aborts, the call rejects at once and its answer is dropped. */
  callWith(
    { signal }: { signal?: AbortSignal },
    name: string,
    ...args: unknown[]
  ): Promise<unknown> {
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    if (this.#closed || signal?.aborted) {
      return this.#closed ? Promise.reject(this.#closed) : Promise.reject(signal!.reason);
    }
    const line = encoder.encode(dumps([this.#nextId, name, args]) + "\n"); // throws if args cannot be pickled
    let settled = false;
    const settle = (ok: boolean, value: unknown) => {
      if (settled) return; // an aborted call's answer
      settled = true;
      signal?.removeEventListener("abort", abort);
      if (ok) resolve(value);
      else reject(value instanceof Error ? value : new Error(String(value)));
    };
    const abort = () => settle(false, signal!.reason);
    signal?.addEventListener("abort", abort);
    this.#queue.push({ id: this.#nextId++, line, settle });
    this.#send();
    return promise;
  }

  // Backpressure: calls go out in order while the window and ROOM have space; answers make room.
  #send(): void {
    while (this.#queue.length > 0 && this.#sent.size < WINDOW) {
      const call = this.#queue[0];
      if (this.#sent.size > 0 && this.#bytes + call.line.length > ROOM) break;
      this.#queue.shift();
      this.#sent.set(call.id, call);
      this.#bytes += call.line.length;
      writeAll(this.requests, call.line);
    }
  }

  // One loop reads all answers and settles each call by its id. We hold a write end of this FIFO
  // too, so no EOF comes: when the worker has exited, all its answers are in the pipe, and we
  // write an empty line after them (no pickle is empty) to end the loop.
  async #readAnswers(answers: Deno.FsFile): Promise<Deno.CommandStatus> {
    this.child.status.then(() => writeAll(answers, encoder.encode("\n")));
    const [buffer, decoder] = [new Uint8Array(64 * 1024), new TextDecoder()];
    let partial = "";
    try {
      reading: while (true) {
        const size = await answers.read(buffer);
        const lines = (partial + decoder.decode(buffer.subarray(0, size!), { stream: true })).split(
          "\n",
        );
        partial = lines.pop()!;
        for (const line of lines) {
          if (line === "") break reading;
          const [id, ok, value] = loads(line) as [number, boolean, unknown];
          const call = this.#sent.get(id)!;
          this.#sent.delete(id);
          this.#bytes -= call.line.length;
          call.settle(ok, value);
        }
        this.#send();
      }
    } catch (error) { // a malformed answer: this worker is not to be trusted with more calls
      console.error(`error: worker ${this.child.pid}: ${(error as Error).message}`);
      this.child.kill("SIGKILL");
    }
    // Every call still waiting rejects, with one error that says how the worker ended.
    const status = await this.child.status;
    const how = status.signal
      ? `was killed by ${status.signal}`
      : `exited with code ${status.code}`;
    this.#closed ??= new Error(`worker ${this.child.pid} ${how}`);
    [...this.#sent.values(), ...this.#queue].forEach((call) => call.settle(false, this.#closed));
    [this.#sent, this.#queue] = [new Map(), []];
    if (!this.#closing) this.requests.close();
    answers.close();
    return status;
  }

  /** No more calls: the worker sees EOF, answers the calls it has, and exits. */
  close(): Promise<Deno.CommandStatus> {
    if (!this.#closed && !this.#closing) this.requests.close();
    [this.#closing, this.#closed] = [true, this.#closed ?? new Error("the channel is closed")];
    return this.ended;
  }

  // Two FIFOs in a private directory (mode 700), which the parent opens for reading and writing:
  // such an open never waits for the other end (Linux, macOS), so a worker that dies at once
  // cannot hang it. The worker, granted these two files and nothing else, opens them and removes
  // the directory: open ends keep a pipe alive.
  static async start(): Promise<Channel> {
    const dir = await Deno.makeTempDir({ prefix: "pipe_channel_" });
    directories.add(dir);
    const paths = [`${dir}/requests`, `${dir}/answers`];
    const made = await new Deno.Command("mkfifo", { args: ["-m", "600", ...paths] }).output();
    if (!made.success) throw new Error(`mkfifo could not make FIFOs in ${dir}`);
    const [requests, answers] = await Promise.all(
      paths.map((path) => Deno.open(path, { read: true, write: true })),
    );
    const child = new Deno.Command(denoExecutable(), {
      args: ["run", `--allow-read=${dir}`, `--allow-write=${dir}`, import.meta.url, "--child", dir],
      stdin: "null",
    }).spawn();
    workers.add(child);
    child.status.then(() => workers.delete(child)).then(() => Deno.remove(dir, { recursive: true }))
      .catch(() => {}).then(() => directories.delete(dir)); // the worker may have removed it
    return new Channel(child, requests, answers);
  }
}

// Speed. A blocking readSync is the cheapest way to wait for a pipe, but while it blocks nothing
// else runs: no timer, no abort, no other worker's answer. So the parent awaits FsFile.read on
// its FIFO: Deno reads it in a thread of its own, about half the cost of a read of the stream
// `child.stdout` (see the README's figures). It writes with writeSync, kept from waiting by
// ROOM. The worker blocks in readSync while it has nothing else to do, and awaits its reads
// while a call still runs (a promise: a timer, "gate"), so that the call can finish.
async function worker(dir: string): Promise<void> {
  const requests = await Deno.open(`${dir}/requests`, { read: true });
  const answers = await Deno.open(`${dir}/answers`, { write: true });
  await Deno.remove(dir, { recursive: true });
  const [buffer, decoder] = [new Uint8Array(64 * 1024), new TextDecoder()];
  let [partial, running] = ["", 0];
  const answer = (id: number, ok: boolean, value: unknown) => dumps([id, ok, value]) + "\n";
  const reply = (text: string) => running-- && writeAll(answers, encoder.encode(text));
  while (true) {
    const size = running > 0 ? await requests.read(buffer) : requests.readSync(buffer);
    if (size === null) return; // EOF: the parent closed the channel, or has gone
    const lines = (partial + decoder.decode(buffer.subarray(0, size), { stream: true })).split(
      "\n",
    );
    partial = lines.pop()!;
    let batch = ""; // the answers to this chunk's requests, in one write
    for (const line of lines) {
      const [id, name, args] = loads(line) as [number, string, unknown[]];
      try { // an answer that cannot be pickled (a function...) fails here too, as an error
        if (!Object.hasOwn(functions, name)) throw new Error(`no function "${name}"`);
        const result = (functions[name] as (...args: unknown[]) => unknown)(...args);
        if (!(result instanceof Promise)) batch += answer(id, true, result);
        else if (++running) {
          result.then((value) => answer(id, true, value)).catch((error) => answer(id, false, error))
            .then(reply).catch(() => Deno.exit(1)); // the parent has gone: nobody reads answers
        }
      } catch (error) {
        batch += answer(id, false, error);
      }
    }
    writeAll(answers, encoder.encode(batch));
  }
}

// Strict round trips: one call in flight, each two trips through a pipe, and two wake-ups.
async function roundTrips(count: number): Promise<number> {
  const channel = await Channel.start();
  for (let i = 0; i < 1000; i++) await channel.call("echo", i); // warm up
  const start = performance.now();
  for (let i = 0; i < count; i++) await channel.call("echo", i);
  console.log(`${Math.round(count / ((performance.now() - start) / 1000))} round trips/s`);
  return (await channel.close()).success ? 0 : 1;
}

// Ctrl-C or SIGTERM: no worker may outlive us, nor a directory of FIFOs being set up.
const [workers, directories] = [new Set<Deno.ChildProcess>(), new Set<string>()];
function stop(code: number): void {
  directories.forEach((dir) => Deno.removeSync(dir, { recursive: true }));
  workers.forEach((child) => child.kill("SIGKILL")); // not reaped yet, so each is still there
  Promise.all([...workers].map((child) => child.status)).then(() => Deno.exit(code));
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

const encoder = new TextEncoder();

/**
 * Writes all of `bytes` with `writeSync`, one system call and no await (an `await write()` per
 * small message is 10-50x slower). Throws `Deno.errors.BrokenPipe` once nobody reads.
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

// The command line. A worker is this script with `--child DIR`, as Channel.start starts it.
const USAGE =
  `usage: deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/pipe_channel.ts [options]
  --round-trips N  time N strict round trips (one call in flight), instead of the demo
  --help           show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await worker(Deno.args[1]).catch(() => Deno.exit(1)); // the parent has gone: nobody reads
} else if (import.meta.main) {
  requireDeno();
  const [option, value, ...rest] = Deno.args;
  if (option === "--help") Deno.exit(console.log(USAGE) ?? 0);
  if (option !== undefined && option !== "--round-trips") usageError(`unknown option ${option}`);
  if (option && (!/^[1-9]\d{0,8}$/.test(value ?? "") || rest.length > 0)) {
    usageError(`--round-trips takes one whole number > 0, not "${Deno.args.slice(1).join(" ")}"`);
  }
  if (Deno.build.os === "windows") usageError("FIFOs are Unix only: use Linux or macOS");
  Deno.addSignalListener("SIGINT", () => stop(130));
  Deno.addSignalListener("SIGTERM", () => stop(143));
  // A missing permission is the user's mistake: one line (Deno's names the flag), exit 1.
  const code = await (option ? roundTrips(Number(value)) : demo()).catch((error) => {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    return console.error(`error: ${error.message}`) ?? 1;
  });
  Deno.exit(code);
}
