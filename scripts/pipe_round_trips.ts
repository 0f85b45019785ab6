/**
 * @title Strict round trips: one call in flight, and how Deno waits for the answer
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/pipe_round_trips.ts
 * @resource {https://docs.python.org/3/library/multiprocessing.html#multiprocessing.Pipe} Python: multiprocessing.Pipe
 *
 * A call, its answer, the next call: each round trip crosses two pipes and wakes two processes;
 * the cost is in the waiting. The parent sends pickles to a worker (a child copy of this script,
 * in readSync) and waits for each echo three ways: await `child.stdout`, await FsFile.read on a
 * FIFO, readSync on a FIFO. Unix only. `--round-trips N`: N with readSync, one line printed.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/pipe_round_trips.ts
 * 20000 strict round trips each, a pickle [id, "echo", [id]] and its answer:
 *   child.stdout, await reader.read()  20629 round trips/s
 *   FIFO, await file.read()            16768 round trips/s
 *   FIFO, file.readSync()              77288 round trips/s
 * ```
 *
 * @module
 */
import { dumps, loads } from "../lib/pickle_json.ts";

type Link = { // a way to talk to a worker: requests out, answers in, close() is its EOF
  write(bytes: Uint8Array): void;
  read(): Promise<Uint8Array | null> | Uint8Array | null; // null: EOF
  close(): Promise<Deno.CommandStatus>;
};

// The usual way: the worker's stdin and stdout are the pipes, both streams: a write is async,
// and each read a trip through the event loop and the stream's machinery, with a new chunk.
function viaStdio(): Link {
  const child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", "stdio"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const [writer, reader] = [child.stdin.getWriter(), child.stdout.getReader()];
  const read = async () => (await reader.read()).value ?? null;
  const close = () => writer.close().then(() => reader.cancel()).then(() => child.status);
  return { write: (bytes) => void writer.write(bytes).catch(() => {}), read, close };
}

// Two FIFOs instead, opened as files: writeSync, and a choice of reads. The request FIFO is
// opened read-write (which never waits), the answer FIFO read-only, which waits for the worker's
// write end: raced against its exit. Then the names go: open ends keep a pipe alive.
async function viaFifos(blocking: boolean): Promise<Link> {
  const dir = await Deno.makeTempDir({ prefix: "pipe_round_trips_" });
  directories.add(dir);
  try {
    const [requests, answers] = [`${dir}/requests`, `${dir}/answers`];
    const mkfifo = new Deno.Command("mkfifo", { args: ["-m", "600", requests, answers] });
    if (!(await mkfifo.output()).success) throw new Error(`mkfifo failed in ${dir}`);
    const toWorker = await Deno.open(requests, { read: true, write: true });
    const child = new Deno.Command(denoExecutable(), {
      args: ["run", `--allow-read=${dir}`, `--allow-write=${dir}`, import.meta.url, "--child", dir],
    }).spawn();
    const opening = Deno.open(answers, { read: true });
    if (await Promise.race([opening.then(() => false), child.status.then(() => true)])) {
      (await Deno.open(answers, { write: true })).close(); // lets our own open return
      [toWorker, await opening].forEach((file) => file.close());
      throw new Error(`the worker exited before it opened ${answers}`);
    }
    const fromWorker = await opening;
    const close = () => {
      toWorker.close(); // the worker's EOF
      return child.status.finally(() => fromWorker.close());
    };
    const buffer = new Uint8Array(64 * 1024);
    const filled = (size: number | null) => size === null ? null : buffer.subarray(0, size);
    const read = blocking
      ? () => filled(fromWorker.readSync(buffer)) // blocks: nothing else runs meanwhile
      : async () => filled(await fromWorker.read(buffer)); // a plain read, in a thread of Deno's
    return { write: (bytes) => writeAll(toWorker, bytes), read, close };
  } finally {
    await Deno.remove(dir, { recursive: true });
    directories.delete(dir);
  }
}

// Round trips: a pickled request out, as a real channel's, then reads until its answer is whole.
async function time(count: number, link: Link): Promise<number> {
  const decoder = new TextDecoder();
  let [partial, start] = ["", 0];
  for (let id = -1000; id < count; id++) { // the first 1000 warm up: both sides compile loops
    if (id === 0) start = performance.now();
    link.write(encoder.encode(dumps([id, "echo", [id]]) + "\n"));
    while (!partial.includes("\n")) {
      const read = link.read(); // what readSync gives is not awaited: an await costs time too
      const bytes = read instanceof Promise ? await read : read;
      if (bytes === null) throw new Error("the worker has gone");
      partial += decoder.decode(bytes, { stream: true });
    }
    const end = partial.indexOf("\n");
    const [answerId, ok, value] = loads(partial.slice(0, end)) as [number, boolean, number];
    partial = partial.slice(end + 1);
    if (answerId !== id || !ok || value !== id) throw new Error(`a wrong answer to call ${id}`);
    // Now and then (a timer costs ~2 ms), let the event loop run: readSync delays even Ctrl-C.
    if (id % 10_000 === 9_999) await new Promise((resolve) => setTimeout(resolve));
  }
  const rate = Math.round(count / ((performance.now() - start) / 1000));
  const status = await link.close();
  if (!status.success) throw new Error(`the worker failed: ${status.signal ?? status.code}`);
  return rate;
}
// The worker blocks in readSync (it has nothing else to do), answers in one writeSync; EOF ends it.
async function worker(where: string): Promise<void> {
  Deno.addSignalListener("SIGINT", () => {}); // Ctrl-C is the parent's: it cleans up; EOF ends us
  const [requests, answers] = where === "stdio"
    ? [Deno.stdin, Deno.stdout]
    : [await Deno.open(`${where}/requests`), await Deno.open(`${where}/answers`, { write: true })];
  const [buffer, decoder] = [new Uint8Array(64 * 1024), new TextDecoder()];
  let partial = "";
  for (let size; (size = requests.readSync(buffer)) !== null;) {
    const text = partial + decoder.decode(buffer.subarray(0, size), { stream: true });
    const lines = text.split("\n");
    partial = lines.pop()!;
    const calls = lines.map((line) => loads(line) as [number, string, unknown[]]);
    const echoes = calls.map(([id, _name, args]) => dumps([id, true, args[0]]) + "\n");
    writeAll(answers, encoder.encode(echoes.join("")));
  }
}

// The story: the same round trips, each way of waiting in turn. readSync wins (Python's `recv`
// blocks too), but while it blocks nothing else runs: no timer, no abort, no other pipe; fine for
// one call at a time (pipe_channel.ts, with many in flight, awaits). Unpinned, a wake-up on an idle
// CPU can cost more than all that: `taskset -c 0 deno run ...` (Linux) gives a fair race.
async function demo(count: number): Promise<void> {
  console.log(`${count} strict round trips each, a pickle [id, "echo", [id]] and its answer:`);
  const ways: [string, () => Link | Promise<Link>][] = [
    ["child.stdout, await reader.read()", viaStdio],
    ["FIFO, await file.read()", () => viaFifos(false)],
    ["FIFO, file.readSync()", () => viaFifos(true)],
  ];
  for (const [way, link] of ways) {
    console.log(`  ${way.padEnd(34)} ${await time(count, await link())} round trips/s`);
  }
}

const directories = new Set<string>(); // FIFO dirs being set up: the Ctrl-C handler removes them

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

// The command line. A worker is this script with `--child stdio` or `--child DIR`.
const USAGE =
  `usage: deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/pipe_round_trips.ts
  --round-trips N  time N round trips with readSync only, and print "<rate> round trips/s"
  --help           show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await worker(Deno.args[1]).catch((error) => { // the parent has gone: nobody reads, so stop
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  });
} else if (import.meta.main) {
  requireDeno();
  const [option, value = "", ...rest] = Deno.args;
  if (option === "--help") console.log(USAGE);
  if (option === "--help") Deno.exit(0);
  const wrong = option !== "--round-trips" || !/^[1-9]\d{0,8}$/.test(value) || rest.length > 0;
  if (option !== undefined && wrong) usageError("use --round-trips N, N a whole number > 0");
  if (Deno.build.os === "windows") console.error("error: FIFOs are Unix only");
  if (Deno.build.os === "windows") Deno.exit(1);
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, () => {
      directories.forEach((dir) => Deno.removeSync(dir, { recursive: true }));
      Deno.exit(code);
    });
  }
  const lesson = option
    ? async () => console.log(`${await time(Number(value), await viaFifos(true))} round trips/s`)
    : () => demo(20_000);
  // A missing permission is the user's mistake: one line (Deno's names the flag), exit 1.
  const code = await lesson().then(() => 0, (error) => {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error(`error: ${error.message}`);
    return 1;
  });
  Deno.exit(code);
}
