/**
 * @title A pool of worker processes: spreading CPU-bound calls over pipes
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno scripts/pipe_pool.ts
 * @resource {https://docs.python.org/3/library/multiprocessing.html#module-multiprocessing.pool} Python: multiprocessing.Pool
 *
 * `await pool.call("primes", 0, 100000)` runs `primes` in one of N workers (child copies of this
 * script, by default one per CPU) through its stdin and stdout, one call per worker at a time,
 * the others waiting in the pool. The demo counts primes a call at a time, then all at once; then
 * a worker crashes mid-call: that call rejects, a new worker takes its place, no call is lost.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pipe_pool.ts --workers 2
 * 2 workers count the primes below 4000000, in 16 calls
 * one by one 844 ms, all at once 450 ms: 1.88x faster (283146 primes)
 * crash: that call rejected: "worker 2429 exited with code 1"; a new worker took its place
 * the 8 other calls were all answered; close(): 2 workers exited with code 0
 * ```
 *
 * @module
 */
import { dumps, PickleWriter, readPickles } from "../lib/pickle_json.ts";

type Task = { request: unknown[]; settle(ok: boolean, value: unknown): void };
type Worker = { child: Deno.ChildProcess; toWorker: PickleWriter; task: Task | null };

/** N worker processes; `call` runs a function in the next one free. */
export class Pool {
  #waiting: Task[] = []; // calls not sent to any worker yet
  #idle: Worker[] = [];
  #all = new Set<Worker>();
  #state: "open" | "closing" | "killed" = "open";
  /** Starts `size` workers, by default one per CPU. */
  constructor(readonly size = navigator.hardwareConcurrency) {
    for (let i = 0; i < size; i++) this.#start();
  }

  // A worker: a child copy of this script, no permissions, one call at a time (so no ids).
  #start(): void {
    const child = new Deno.Command(denoExecutable(), {
      args: ["run", import.meta.url, "--child"],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const worker: Worker = { child, toWorker: new PickleWriter(child.stdin), task: null };
    this.#all.add(worker);
    this.#idle.push(worker);
    this.#serve(worker);
    this.#dispatch();
  }

  /** Calls `name(...args)` in a worker: its result, or its error rethrown. */
  call(name: string, ...args: unknown[]): Promise<unknown> {
    if (this.#state !== "open") return Promise.reject(new Error("the pool is closed"));
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    dumps(args); // arguments that cannot be pickled (a function...) throw here, at once
    this.#waiting.push({ request: [name, args], settle: (ok, v) => ok ? resolve(v) : reject(v) });
    this.#dispatch();
    return promise;
  }

  // Backpressure: one call per worker in flight; the rest wait here, where no crash takes them.
  #dispatch(): void {
    while (this.#waiting.length > 0 && this.#idle.length > 0) {
      const worker = this.#idle.pop()!;
      worker.task = this.#waiting.shift()!;
      worker.toWorker.send(worker.task.request);
    }
  }

  // An answer settles the worker's call; it takes the next. At EOF, it has exited: its call
  // rejects (no retry: it may be what crashed it), and a new worker takes its place.
  async #serve(worker: Worker): Promise<void> {
    try {
      for await (const answer of readPickles(worker.child.stdout)) {
        const task = worker.task!;
        task.settle(...answer as [boolean, unknown]); // not a list: throws, worker.task still set
        worker.task = null;
        this.#idle.push(worker);
        this.#dispatch();
      }
    } catch { // a malformed answer: this worker is not to be trusted
      await worker.child[Symbol.asyncDispose](); // SIGTERM unless it has exited, then reaped
    }
    const end = await worker.child.status;
    this.#all.delete(worker);
    this.#idle = this.#idle.filter((other) => other !== worker);
    if (this.#state === "killed") return; // we are exiting: nobody waits for that call
    const how = end.signal ? `was killed by ${end.signal}` : `exited with code ${end.code}`;
    worker.task?.settle(false, new Error(`worker ${worker.child.pid} ${how}`));
    if (this.#state === "open") this.#start();
  }

  /** No more calls: those in flight are answered, those still waiting reject; EOF ends each. */
  async close(): Promise<Deno.CommandStatus[]> {
    this.#state = "closing";
    for (const task of this.#waiting.splice(0)) task.settle(false, new Error("the pool is closed"));
    const workers = [...this.#all];
    await Promise.all(workers.map((worker) => worker.toWorker.close().catch(() => {})));
    return await Promise.all(workers.map((worker) => worker.child.status));
  }

  /** Kills every worker (Ctrl-C): SIGTERM unless it has exited (kill() would throw), reaped. */
  kill(): Promise<unknown> {
    this.#state = "killed";
    return Promise.all([...this.#all].map((worker) => worker.child[Symbol.asyncDispose]()));
  }
}

// The story: CPU-bound calls one by one, then all at once (each worker started first). A crash.
async function demo(workers: number): Promise<number> {
  const slices = Array.from({ length: 16 }, (_, i) => [i * 250_000, (i + 1) * 250_000]);
  const pool = new Pool(workers);
  // Ctrl-C: a busy worker would outlive us until its call is done, so kill the workers first.
  Deno.addSignalListener("SIGINT", () => pool.kill().then(() => Deno.exit(130)));
  Deno.addSignalListener("SIGTERM", () => pool.kill().then(() => Deno.exit(143)));
  await Promise.all(Array.from({ length: workers }, () => pool.call("primes", 0, 2)));
  console.log(`${workers} workers count the primes below 4000000, in ${slices.length} calls`);
  let [start, total] = [performance.now(), 0];
  for (const slice of slices) total += await pool.call("primes", ...slice) as number;
  const serial = Math.round(performance.now() - start);
  start = performance.now();
  await Promise.all(slices.map((slice) => pool.call("primes", ...slice)));
  const parallel = Math.round(performance.now() - start);
  const speedUp = `${(serial / parallel).toFixed(2)}x faster (${total} primes)`;
  console.log(`one by one ${serial} ms, all at once ${parallel} ms: ${speedUp}`);
  // A worker crashes mid-call: that call rejects. The calls waiting in the pool were not sent
  // to it, so none is lost: a new worker takes its place, and they run there and elsewhere.
  const crash = pool.call("exit", 1).catch((error: Error) => error.message);
  await Promise.all(slices.slice(0, 8).map((slice) => pool.call("primes", ...slice)));
  console.log(`crash: that call rejected: "${await crash}"; a new worker took its place`);
  const clean = (await pool.close()).filter((status) => status.code === 0).length;
  console.log(`the 8 other calls were all answered; close(): ${clean} workers exited with code 0`);
  return clean === workers ? 0 : 1;
}

// What a worker can do: count primes the slow way (CPU-bound on purpose), crash, tell its pid.
const functions: Record<string, (...args: never[]) => unknown> = {
  primes(from: number, to: number) {
    let count = 0;
    for (let n = Math.max(from, 2); n < to; n++) {
      let prime = true;
      for (let divisor = 2; divisor * divisor <= n && prime; divisor++) prime = n % divisor !== 0;
      if (prime) count++;
    }
    return count;
  },
  exit: (code: number) => Deno.exit(code),
  pid: () => Deno.pid, // for tests: which worker answered
};
const missing = (name: string) => Promise.reject(new Error(`no function "${name}"`));
// The worker: one call at a time, answered on stdout before it reads the next. EOF (its parent
// closed the pool, or died) ends it. It must never print to stdout: that is the answer pipe.
async function worker(): Promise<void> {
  const toParent = new PickleWriter(Deno.stdout.writable);
  for await (const request of readPickles(Deno.stdin.readable)) {
    const [name, args] = request as [string, unknown[]];
    const fn = Object.hasOwn(functions, name) ? functions[name] : () => missing(name);
    await Promise.try(fn as (...args: unknown[]) => unknown, ...args) // a throw: a rejection
      .then((value) => [true, value], (error) => [false, error])
      .then((answer) => toParent.send(answer)) // an answer that cannot be pickled (a function...)
      .catch((error) => toParent.send([false, error])) // goes back as that error
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

/** A mistake on the command line: one line naming it, and exit code 2, never a stack trace. */
function usageError(message: string): never {
  console.error(`error: ${message.replaceAll("\n", " ")} (see --help)`);
  Deno.exit(2);
}

// The command line. A worker is this script with `--child`, as the pool starts it.
const USAGE = `usage: deno run --allow-run=deno scripts/pipe_pool.ts [--workers N]
  --workers N  worker processes (default: ${navigator.hardwareConcurrency}, one per CPU)
  --help       show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await worker();
} else if (import.meta.main) {
  requireDeno();
  const [option, value = "", ...rest] = Deno.args;
  if (option === "--help") console.log(USAGE);
  if (option === "--help") Deno.exit(0);
  const wrong = option !== "--workers" || !/^[1-9]\d{0,2}$/.test(value) || rest.length > 0;
  if (option !== undefined && wrong) usageError(`use --workers N, N from 1 to 999`);
  // A missing permission is the user's mistake: one line (Deno's names the flag), exit 1.
  const code = await demo(Number(value) || navigator.hardwareConcurrency).catch((error) => {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error(`error: ${error.message}`);
    return 1;
  });
  Deno.exit(code);
}
