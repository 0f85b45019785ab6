/**
 * The bench behind `deno task bench` (not a lesson: it runs the lessons and their peers).
 *
 * Measures the lessons' ways of moving data against what a C, Python or Node programmer would
 * use for the same job (tests/peers.ts), all in one run: `dd | cat` and `dd > fifo` for bulk
 * bytes, Python's `os.pipe` and `multiprocessing.Pipe` and Node's NDJSON pipes and `fork` IPC
 * for small messages and round trips, and `python3 -c pass`, `node -e 0` and an empty
 * `deno run` for start-up. These machines are shared and noisy, so every row runs once per
 * round, the rounds interleaved (the order turning each round), and a ratio is taken within a
 * round before the median over rounds. The whole set runs twice: pinned to CPU 0 (`taskset -a
 * -p -c 0` on this process, inherited by every child) and unpinned. A peer whose interpreter is
 * missing says "not installed"; a lesson that has not landed says "not present". Writes
 * docs/benchmarks.md, with the targets met or not.
 *
 *   deno task bench [--quick] [--rounds 5] [--only pinned|unpinned] [--write | --no-write]
 *
 * (`deno task bench` is `deno run --allow-run --allow-read --allow-write tests/benchmarks.ts`.)
 * A full run takes 2-4 minutes; `--quick` some 15 seconds and writes no docs.
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as peers from "./peers.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();
const children = new Set<Deno.ChildProcess>();
let tempDir = "";

/** How much each row does, for a full run and for `--quick`. */
const FULL = {
  rounds: 5,
  bytes: 512 * 2 ** 20,
  messages: 200_000,
  roundTrips: 20_000,
  startups: 3,
  pickleRounds: 9,
};
const QUICK = {
  rounds: 2,
  bytes: 64 * 2 ** 20,
  messages: 20_000,
  roundTrips: 2_000,
  startups: 1,
  pickleRounds: 2,
};
type Settings = typeof FULL;

/** One row: a program measured once per round. Higher is better, except for start-up times. */
interface Row {
  group: string;
  name: string;
  peer: boolean;
  measure?: () => Promise<number>;
  /** Why the row is not measured: "not installed", "not present", or what failed. */
  skip?: string;
  /** One value per round (undefined: not measured that round). */
  values: (number | undefined)[];
}

interface Group {
  name: string;
  unit: string;
  lowerIsBetter?: boolean;
}

const BULK = "bulk bytes, anonymous pipe";
const FIFO = "bulk bytes, FIFO";
const MESSAGES = "small messages, one way";
const ROUND_TRIPS = "round trips, one in flight";
const STARTUP = "start-up";
const LIMIT = "bulk bytes into a minimal Deno reader (Deno's limit)";
const NODE_BATCHED = "Node: spawn, NDJSON in 64 KiB batches";
const EMPTY_DENO = "deno run empty.ts";

const GROUPS: Group[] = [
  { name: BULK, unit: "MB/s" },
  { name: FIFO, unit: "MB/s" },
  { name: LIMIT, unit: "MB/s" },
  { name: MESSAGES, unit: "msg/s" },
  { name: ROUND_TRIPS, unit: "/s" },
  { name: STARTUP, unit: "ms", lowerIsBetter: true },
];

/** The targets: our best row of a group, round by round, against one peer of it. */
const TARGETS = [
  { group: MESSAGES, peer: NODE_BATCHED, min: 1 },
  { group: BULK, peer: "dd bs=1M | cat", min: 0.8 },
  { group: FIFO, peer: "dd bs=1M > fifo, cat fifo", min: 0.9 },
  { group: ROUND_TRIPS, peer: "Python: multiprocessing.Pipe", min: 1 },
  { group: STARTUP, peer: EMPTY_DENO, max: 1.3 },
];

// ---------------------------------------------------------------------------------------------
// Running things.

/** Runs a command to completion with a deadline; throws with its stderr when it fails. */
async function run(
  command: string,
  args: string[],
  timeoutMs = 120_000,
): Promise<{ stdout: string; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    cwd: repoRoot,
    env: { LC_ALL: "C", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const output = await child.output();
    const stdout = decoder.decode(output.stdout);
    const stderr = decoder.decode(output.stderr);
    if (!output.success) {
      const how = output.signal ? `killed by ${output.signal}` : `exit ${output.code}`;
      throw new Error(`${command} ${args.join(" ")}: ${how}: ${stderr.trim().slice(-300)}`);
    }
    return { stdout, stderr };
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

/** Runs a peer or a lesson and returns the number its output ends with (`... 1234 round trips/s`). */
async function rate(command: string, args: string[], pattern = /(\d+(?:\.\d+)?)\s*$/) {
  const { stdout } = await run(command, args);
  const match = pattern.exec(stdout.trimEnd());
  if (!match) throw new Error(`${args.join(" ")} printed no rate: ${stdout.slice(-200)}`);
  return Number(match[1]);
}

async function installed(command: string): Promise<boolean> {
  try {
    await run("sh", ["-c", `command -v ${command}`]);
    return true;
  } catch {
    return false;
  }
}

/**
 * The interpreters themselves, not a launcher in front of them (pyenv's shims are shell scripts
 * that add ~80 ms to every start), or undefined when missing. Deno puts a `node` of its own on
 * its children's PATH when there is none (Deno itself, in Node mode): that is not Node.
 */
export async function interpreters(): Promise<{ python?: string; node?: string }> {
  const path = async (command: string, args: string[]) => {
    if (!(await installed(command))) return undefined;
    return (await run(command, args).catch(() => ({ stdout: "" }))).stdout.trim() || undefined;
  };
  return {
    python: await path("python3", ["-c", "import sys; print(sys.executable)"]),
    node: await path("node", ["-p", "process.versions.deno ? '' : process.execPath"]),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(`${repoRoot}${path}`);
    return true;
  } catch {
    return false;
  }
}

/** The permission flags of a lesson's `@run` header line (its least privilege). */
async function runFlags(script: string): Promise<string[]> {
  const text = await Deno.readTextFile(`${repoRoot}${script}`);
  const line = /^\s*\*\s*@run\s+deno run\s+(.*)$/m.exec(text)?.[1] ?? "";
  return line.split(/\s+/).filter((word) => word.startsWith("--allow-"));
}

/** Imports a lesson's exported function `name`, or undefined when it does not export it. */
async function lessonFunction<T>(script: string, name: string): Promise<T | undefined> {
  if (!(await exists(script))) return undefined;
  const module: Record<string, unknown> = await import(`${repoRoot}${script}`);
  return typeof module[name] === "function" ? module[name] as T : undefined;
}

/** dd's own timing ("N bytes ... copied, S s, ...") as MB/s: dd's start-up left out. */
function ddRate(stderr: string): number {
  const match = /^(\d+) bytes .*copied, ([\d.]+) s/m.exec(stderr);
  if (!match) throw new Error(`no dd summary in: ${stderr}`);
  return Number(match[1]) / Number(match[2]) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// The FIFO rows. Ours: a Deno child writing with writeSync (this file, `--role fifo-writer`),
// this process reading with readSync, timed from the first byte to EOF.

function fifoWriter(path: string, bytes: number, chunkSize: number): void {
  const fifo = Deno.openSync(path, { write: true });
  const chunk = new Uint8Array(chunkSize);
  for (let sent = 0; sent < bytes;) {
    sent += fifo.writeSync(chunk.subarray(0, Math.min(chunkSize, bytes - sent)));
  }
  fifo.close();
}

async function denoFifo(bytes: number, chunkSize: number): Promise<number> {
  const path = `${tempDir}/bench.fifo`;
  const writer = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-write=${path}`,
      import.meta.filename!,
      ...["--role", "fifo-writer", "--path", path, "--bytes", `${bytes}`],
      ...["--chunk", `${chunkSize}`],
    ],
    stdin: "null",
    stdout: "null",
  }).spawn();
  children.add(writer);
  // If the writer dies before it opens the FIFO, open its write end ourselves so that our
  // open returns (and sees EOF at once) instead of waiting forever.
  let opened = false;
  writer.status.then(() => {
    if (!opened) Deno.open(path, { write: true }).then((f) => f.close(), () => {});
  });
  const fifo = await Deno.open(path, { read: true }); // waits (on a worker thread) for the writer
  opened = true;
  const buffer = new Uint8Array(65536);
  let received = 0, first = 0;
  while (true) {
    const n = fifo.readSync(buffer);
    if (n === null) break;
    if (received === 0) first = performance.now();
    received += n;
  }
  const seconds = (performance.now() - first) / 1000;
  fifo.close();
  const status = await writer.status;
  children.delete(writer);
  if (!status.success || received !== bytes) {
    throw new Error(`fifo: got ${received} of ${bytes} bytes`);
  }
  return bytes / seconds / 1e6;
}

// ---------------------------------------------------------------------------------------------
// Start-up: spawn to exit (or to the first byte on stdout), the best of `tries`.

async function startup(command: string, args: string[], tries: number, firstByte = false) {
  let best = Infinity;
  for (let i = 0; i < tries; i++) {
    const start = performance.now();
    const child = new Deno.Command(command, {
      args,
      cwd: repoRoot,
      stdin: "null",
      stdout: firstByte ? "piped" : "null",
      stderr: "null",
    }).spawn();
    children.add(child);
    let ms: number | undefined;
    if (firstByte) {
      const reader = child.stdout.getReader();
      const first = await reader.read();
      ms = performance.now() - start;
      await reader.cancel();
      if (first.done) throw new Error(`${args.join(" ")} wrote nothing`);
    }
    const status = await child.status;
    ms ??= performance.now() - start;
    children.delete(child);
    if (!status.success) throw new Error(`${command} ${args.join(" ")}: exit ${status.code}`);
    best = Math.min(best, ms);
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// The rows.

type Measure = (() => Promise<number>) | undefined;

async function rows(settings: Settings): Promise<Row[]> {
  const { bytes, messages, roundTrips, startups } = settings;
  const has = { dd: await installed("dd") };
  const { python: pythonPath, node: nodePath } = await interpreters();
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(`${tempDir}/${name}`, text);
    return `${tempDir}/${name}`;
  };
  let files = 0;
  const python = async (text: string, n: number): Promise<Measure> => {
    if (!pythonPath) return undefined;
    const path = await write(`peer${++files}.py`, text);
    return () => rate(pythonPath, [path, `${n}`]);
  };
  const node = async (text: string, n: number): Promise<Measure> => {
    if (!nodePath) return undefined;
    const path = await write(`peer${++files}.js`, text);
    return () => rate(nodePath, [path, "parent", `${n}`]);
  };
  const dd = (script: string): Measure =>
    has.dd
      ? async () => ddRate((await run("sh", ["-c", script, "sh", `${tempDir}/bench.fifo`])).stderr)
      : undefined;

  type SpeedMeasure = (
    mode: "sync" | "read",
    options: { bytes: number; chunk: number },
  ) => Promise<{ seconds: number }>;
  const speed = await lessonFunction<SpeedMeasure>("scripts/pipe_speed.ts", "measure");
  const speedRow = (chunk: number, mode: "sync" | "read" = "sync"): Measure =>
    speed && (async () => bytes / (await speed(mode, { bytes, chunk })).seconds / 1e6);
  type BatchMeasure = (mode: "batched", options: { count: number }) => Promise<{ seconds: number }>;
  const batching = await lessonFunction<BatchMeasure>("scripts/pipe_batching.ts", "measure");
  const lesson = async (script: string, args: string[]): Promise<Measure> => {
    if (!(await exists(script))) return undefined;
    const flags = await runFlags(script);
    return () =>
      rate(Deno.execPath(), ["run", ...flags, script, ...args], /([\d.]+) round trips\/s/);
  };
  const empty = await write("empty.ts", "");
  const mb = Math.round(bytes / 2 ** 20);
  const all: Row[] = [];
  const peer = (group: string, name: string, measure: Measure) =>
    all.push({
      group,
      name,
      peer: true,
      measure,
      skip: measure ? undefined : "not installed",
      values: [],
    });
  const ours = (group: string, name: string, measure: Measure) =>
    all.push({
      group,
      name,
      peer: false,
      measure,
      skip: measure ? undefined : "not present",
      values: [],
    });

  peer(BULK, "dd bs=1M | cat", dd(`dd if=/dev/zero bs=1M count=${mb} | cat > /dev/null`));
  peer(BULK, "dd bs=64K | cat", dd(`dd if=/dev/zero bs=64K count=${mb * 16} | cat > /dev/null`));
  ours(BULK, "pipe_speed.ts: writeSync 64 KiB, BYOB reader", speedRow(65536));
  ours(BULK, "pipe_speed.ts: writeSync 1 MiB, BYOB reader", speedRow(2 ** 20));
  ours(BULK, "pipe_speed.ts: parent writes 1 MiB, child readSync", speedRow(2 ** 20, "read"));

  const ddFifo = `cat "$1" > /dev/null & dd if=/dev/zero of="$1" bs=1M count=${mb}; wait`;
  peer(FIFO, "dd bs=1M > fifo, cat fifo", dd(ddFifo));
  ours(FIFO, "this bench: writeSync 1 MiB > fifo, readSync 64 KiB", () => denoFifo(bytes, 2 ** 20));

  // Deno's limit for a pipe it reads: the same dd output into a ten-line Deno reader of its
  // stdin, with readSync (one system call a read) and with the stream API that is all a
  // child's stdout offers (each read an async op, a wake-up of the event loop).
  const reader = await write(
    "limit.ts",
    `let buffer = new Uint8Array(1 << 20), received = 0, first = 0;
const stream = Deno.args[0] === "byob" ? Deno.stdin.readable.getReader({ mode: "byob" }) : null;
while (true) {
  let n = 0;
  if (stream) {
    const { value } = await stream.read(buffer); // the buffer comes back with the bytes in it
    if (!value) break;
    [n, buffer] = [value.length, new Uint8Array(value.buffer)];
  } else n = Deno.stdin.readSync(buffer) ?? 0;
  if (n === 0) break;
  if (received === 0) first = performance.now();
  received += n;
}
console.log(received / ((performance.now() - first) / 1000) / 1e6);`,
  );
  const into = (mode: string) =>
    `dd if=/dev/zero bs=1M count=${mb} 2>/dev/null | "$0" run ${reader} ${mode}`;
  const limit = (mode: string): Measure =>
    has.dd ? () => rate("sh", ["-c", into(mode), Deno.execPath()]) : undefined;
  peer(LIMIT, "dd bs=1M | cat", dd(`dd if=/dev/zero bs=1M count=${mb} | cat > /dev/null`));
  ours(LIMIT, "dd bs=1M | deno: Deno.stdin.readSync, 1 MiB", limit("sync"));
  ours(LIMIT, "dd bs=1M | deno: Deno.stdin.readable, BYOB reader", limit("byob"));

  const { PY_PIPE_MESSAGES, PY_MP_MESSAGES, NODE_NDJSON_MESSAGES, NODE_IPC_MESSAGES } = peers;
  peer(
    MESSAGES,
    "Python: os.pipe, 64 KiB buffered writes",
    await python(PY_PIPE_MESSAGES, messages),
  );
  peer(
    MESSAGES,
    "Python: multiprocessing.Pipe, send_bytes",
    await python(PY_MP_MESSAGES, messages),
  );
  peer(MESSAGES, NODE_BATCHED, await node(NODE_NDJSON_MESSAGES, messages));
  peer(MESSAGES, "Node: fork IPC, process.send", await node(NODE_IPC_MESSAGES, messages));
  ours(
    MESSAGES,
    "pipe_batching.ts: Batcher",
    batching && (async () => messages / (await batching("batched", { count: messages })).seconds),
  );

  const { PY_MP_ROUND_TRIPS, PY_PIPE_ROUND_TRIPS, NODE_IPC_ROUND_TRIPS } = peers;
  peer(ROUND_TRIPS, "Python: multiprocessing.Pipe", await python(PY_MP_ROUND_TRIPS, roundTrips));
  peer(
    ROUND_TRIPS,
    "Python: os.pipe, flush and readline",
    await python(PY_PIPE_ROUND_TRIPS, roundTrips),
  );
  peer(ROUND_TRIPS, "Node: fork IPC", await node(NODE_IPC_ROUND_TRIPS, roundTrips));
  peer(ROUND_TRIPS, "Node: spawn, NDJSON", await node(peers.NODE_NDJSON_ROUND_TRIPS, roundTrips));
  const window1 = ["--requests", `${roundTrips}`, "--window", "1"];
  ours(ROUND_TRIPS, "pipe_duplex.ts --window 1", await lesson("scripts/pipe_duplex.ts", window1));
  // Node's fork() IPC as Deno runs it (node:child_process): the same program as Node's row.
  const forkInDeno = await write("fork_in_deno.cjs", NODE_IPC_ROUND_TRIPS);
  const denoFlags = ["run", "--allow-run", "--allow-read", "--allow-env", forkInDeno];
  ours(
    ROUND_TRIPS,
    "this bench: Node's fork() IPC program, run by Deno",
    () => rate(Deno.execPath(), [...denoFlags, "parent", `${roundTrips}`]),
  );
  const fast = await lesson("scripts/pipe_round_trips.ts", ["--round-trips", `${roundTrips}`]);
  ours(ROUND_TRIPS, "pipe_round_trips.ts --round-trips", fast);

  const start = (command: string | undefined, args: string[], firstByte = false): Measure =>
    command ? () => startup(command, args, startups, firstByte) : undefined;
  peer(STARTUP, EMPTY_DENO, start(Deno.execPath(), ["run", empty]));
  peer(STARTUP, "python3 -c pass", start(pythonPath, ["-c", "pass"]));
  peer(STARTUP, "node -e 0", start(nodePath, ["-e", "0"]));
  const child = ["run", "scripts/anonymous_pipe.ts", "--child", "1", "0"];
  const hasChild = await exists("scripts/anonymous_pipe.ts");
  ours(
    STARTUP,
    "anonymous_pipe.ts child, to its first line",
    start(hasChild ? Deno.execPath() : undefined, child, true),
  );
  return all;
}

/** Runs every row once per round, the rows of each group in a turning order. */
async function measureAll(all: Row[], rounds: number, log: (line: string) => void) {
  for (let round = 0; round < rounds; round++) {
    for (const group of GROUPS) {
      const members = all.filter((row) => row.group === group.name);
      const shift = round % members.length;
      for (const row of [...members.slice(shift), ...members.slice(0, shift)]) {
        if (row.skip || !row.measure) continue;
        try {
          row.values[round] = await row.measure();
          log(
            `  round ${round + 1}/${rounds} ${group.name}: ${row.name}: ${
              format(row.values[round]!)
            } ${group.unit}`,
          );
        } catch (error) {
          row.skip = `failed: ${(error as Error).message.split("\n")[0].slice(0, 200)}`;
          log(`  round ${round + 1}/${rounds} ${group.name}: ${row.name}: ${row.skip}`);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Figures and tables.

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function format(value: number): string {
  if (!Number.isFinite(value)) return "-";
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

const measured = (row: Row) => row.values.filter((v): v is number => v !== undefined);

/** The ratios a/b within each round both were measured in. */
function ratios(a: (number | undefined)[], b: (number | undefined)[]): number[] {
  const out: number[] = [];
  a.forEach((value, round) => {
    if (value !== undefined && b[round] !== undefined) out.push(value / b[round]!);
  });
  return out;
}

/** Median (min-max); `digits` fixes the decimals (a target's ratio: 0.797 must not read 0.80). */
function spread(values: number[], digits?: number): string {
  if (values.length === 0) return "-";
  const show = (value: number) => digits === undefined ? format(value) : value.toFixed(digits);
  return `${show(median(values))} (${show(Math.min(...values))}-${show(Math.max(...values))})`;
}

/** The peer of a group with the best median, and each round's best of our rows. */
function bestOf(all: Row[], group: Group) {
  const better = (a: number, b: number) => group.lowerIsBetter ? a < b : a > b;
  let bestPeer: Row | undefined;
  for (const row of all.filter((r) => r.group === group.name && r.peer)) {
    if (measured(row).length === 0) continue;
    if (!bestPeer || better(median(measured(row)), median(measured(bestPeer)))) bestPeer = row;
  }
  const ours = all.filter((r) => r.group === group.name && !r.peer && measured(r).length > 0);
  const rounds = Math.max(0, ...ours.map((r) => r.values.length));
  const winners: string[] = []; // the best of our rows, each round
  const oursBest = Array.from({ length: rounds }, (_, round) => {
    let best: Row | undefined;
    for (const row of ours) {
      const value = row.values[round];
      if (value !== undefined && (!best || better(value, best.values[round]!))) best = row;
    }
    if (best) winners.push(best.name);
    return best?.values[round];
  });
  const counts = new Map<string, number>();
  for (const name of winners) counts.set(name, (counts.get(name) ?? 0) + 1);
  const oursTop = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
  return { bestPeer, oursBest, oursTop };
}

function rowsTable(all: Row[]): string {
  const lines = [
    "| measure | program | median | min-max | to the best peer, median (min-max) |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const group of GROUPS) {
    const { bestPeer } = bestOf(all, group);
    for (const row of all.filter((r) => r.group === group.name)) {
      const who = `${row.peer ? "peer" : "**Deno**"}: ${row.name.replaceAll("|", "\\|")}`;
      const label = `${group.name} (${group.unit}${
        group.lowerIsBetter ? ", lower is better" : ""
      })`;
      const values = measured(row);
      if (values.length === 0) {
        lines.push(`| ${label} | ${who} | ${row.skip ?? "not measured"} | | |`);
        continue;
      }
      const toBest = bestPeer ? spread(ratios(row.values, bestPeer.values)) : "-";
      const note = row.skip ? ` (${row.skip})` : "";
      lines.push(
        `| ${label} | ${who} | ${format(median(values))}${note} | ` +
          `${format(Math.min(...values))}-${format(Math.max(...values))} | ${toBest} |`,
      );
    }
  }
  return lines.join("\n");
}

function targetsTable(all: Row[]): string {
  const lines = [
    "| target | Deno's best row / the peer, median (min-max) | met | Deno's best row, most rounds |",
    "| --- | --- | --- | --- |",
  ];
  for (const target of TARGETS) {
    const group = GROUPS.find((g) => g.name === target.group)!;
    const { oursBest, oursTop } = bestOf(all, group);
    const peer = all.find((r) => r.group === target.group && r.name === target.peer)!;
    const bound = target.max !== undefined ? `<= ${target.max}` : `>= ${target.min}`;
    const label = `${target.group}: Deno ${bound} x ${target.peer.replaceAll("|", "\\|")}`;
    const r = ratios(oursBest, peer.values);
    if (r.length === 0) {
      lines.push(`| ${label} | not measured (${peer.skip ?? "no Deno row"}) | - | |`);
      continue;
    }
    const ok = target.max !== undefined ? median(r) <= target.max : median(r) >= target.min!;
    lines.push(`| ${label} | ${spread(r, 3)} | ${ok ? "met" : "**not met**"} | ${oursTop} |`);
  }
  return lines.join("\n");
}

/** The pickle-like codec's ratios to JSON (tests/pickle_json_speed.ts), as a table. */
async function pickleSection(rounds: number): Promise<string> {
  const { benchPickleJson } = await import("./pickle_json_speed.ts");
  const results = await benchPickleJson({ rounds });
  return [
    "| payload | JSON ms (median) | pickle-like ms (median) | ratio median (min-max) | target | met |",
    "| --- | --- | --- | --- | --- | --- |",
    ...results.map((r) =>
      `| ${r.payload} | ${format(r.jsonMs)} | ${format(r.pickleMs)} | ${format(r.ratio)} (${
        format(r.minRatio)
      }-${format(r.maxRatio)}) | <= ${r.target} | ${r.ratio <= r.target ? "met" : "**not met**"} |`
    ),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// The command line.

/** Pins this process (all its threads) to the given CPUs; children inherit it. */
async function pin(cpus: string): Promise<void> {
  await run("taskset", ["-a", "-p", "-c", cpus, `${Deno.pid}`]);
}

async function machine(): Promise<string> {
  const cpu = (await run("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]))
    .stdout.trim();
  const kernel = (await run("uname", ["-srm"])).stdout.trim();
  const { python, node } = await interpreters();
  const python3 = python ? (await run(python, ["--version"])).stdout.trim() : "no python3";
  const nodeVersion = node ? `Node ${(await run(node, ["--version"])).stdout.trim()}` : "no node";
  return `${navigator.hardwareConcurrency} x ${cpu || "unknown CPU"}, ${kernel}, ` +
    `Deno ${Deno.version.deno}, ${python3}, ${nodeVersion}`;
}

const USAGE = `usage: deno task bench [--quick] [--rounds N] [--only pinned|unpinned]
    [--write | --no-write]
  --quick          a short check: ${QUICK.rounds} rounds of smaller runs, docs left alone
  --rounds N       rounds of every row (default ${FULL.rounds}, --quick ${QUICK.rounds})
  --only SECTION   measure only pinned (to CPU 0) or only unpinned (default both)
  --write          rewrite docs/benchmarks.md even after --quick
  --no-write       print the results, do not rewrite docs/benchmarks.md`;

class UsageError extends Error {}

async function main() {
  const { values } = parseArgs({
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      rounds: { type: "string" },
      only: { type: "string" },
      write: { type: "boolean", default: false },
      "no-write": { type: "boolean", default: false },
      role: { type: "string" },
      path: { type: "string" },
      bytes: { type: "string" },
      chunk: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE);
  if (values.role === "fifo-writer") {
    return fifoWriter(values.path!, Number(values.bytes), Number(values.chunk));
  }
  const settings = { ...(values.quick ? QUICK : FULL) };
  if (values.rounds !== undefined) {
    settings.rounds = Number(values.rounds);
    if (!(Number.isSafeInteger(settings.rounds) && settings.rounds > 0)) {
      throw new UsageError("--rounds takes a whole number >= 1");
    }
  }
  if (values.only && !["pinned", "unpinned"].includes(values.only)) {
    throw new UsageError("--only takes pinned or unpinned");
  }
  const write = values.write || (!values.quick && !values["no-write"]);
  tempDir = await Deno.makeTempDir({ prefix: "pipe-bench-" });
  await run("mkfifo", ["-m", "600", `${tempDir}/bench.fifo`]);
  const started = performance.now();
  const description = await machine();
  console.log(`Machine: ${description}`);
  const cpus = `0-${navigator.hardwareConcurrency - 1}`;
  const canPin = await installed("taskset");
  const blocks: string[] = [];
  for (const title of ["pinned", "unpinned"]) {
    if (values.only && values.only !== title) continue;
    const heading = title === "pinned" ? "Pinned to one CPU (`taskset -c 0`)" : "Unpinned";
    if (title === "pinned" && !canPin) {
      blocks.push(
        `<!-- bench:pinned -->\n## ${heading}\n\nNot measured: no taskset.\n` +
          "<!-- /bench:pinned -->",
      );
      continue;
    }
    if (canPin) await pin(title === "pinned" ? "0" : cpus);
    console.log(`\n${heading}, ${settings.rounds} rounds:`);
    const all = await rows(settings);
    await measureAll(all, settings.rounds, (line) => console.log(line));
    const date = new Date().toISOString().slice(0, 10);
    const block = `<!-- bench:${title} -->\n## ${heading}\n\n` +
      `Measured ${date}${values.quick ? " in a --quick run (indicative only)" : ""} on ` +
      `${description}; ${settings.rounds} rounds; ` +
      `${settings.bytes / 2 ** 20} MiB a bulk row, ${settings.messages} messages, ` +
      `${settings.roundTrips} round trips, start-up the best of ${settings.startups} a round.` +
      `\n\n### Targets\n\n${targetsTable(all)}\n\n### Every row\n\n${rowsTable(all)}\n` +
      `<!-- /bench:${title} -->`;
    console.log(`\n${block}`);
    blocks.push(block);
  }
  if (canPin) await pin(cpus);
  console.log("\nPickle-like codec vs JSON (tests/pickle_json_speed.ts):");
  const pickle = await pickleSection(settings.pickleRounds);
  console.log(pickle);
  console.log(`\nBench took ${((performance.now() - started) / 1000).toFixed(0)} s.`);
  if (!write) return;
  await writeDocs(blocks, pickle);
  console.log("Wrote docs/benchmarks.md");
}

/** Writes docs/benchmarks.md, keeping a section from an earlier run when this run skipped it. */
async function writeDocs(blocks: string[], pickle: string) {
  const path = `${repoRoot}docs/benchmarks.md`;
  const old = await Deno.readTextFile(path).catch(() => "");
  const keep = (title: string) => {
    const found = blocks.find((block) => block.startsWith(`<!-- bench:${title} -->`));
    if (found) return found;
    const pattern = new RegExp(`<!-- bench:${title} -->[\\s\\S]*?<!-- /bench:${title} -->`);
    return pattern.exec(old)?.[0] ??
      `<!-- bench:${title} -->\n(not measured yet)\n<!-- /bench:${title} -->`;
  };
  const text = `# Benchmarks

Written by \`deno task bench\` (tests/benchmarks.ts); \`deno task bench --quick\` is a short check
that writes nothing. The lessons (**Deno** rows) are measured against their peers, what a C,
Python or Node programmer would write for the same job (tests/peers.ts), in the same run. Every
row runs once per round, the rounds interleaved, and the ratios are taken within a round, so that
the noise of a shared machine cancels out; medians are shown with their min-max over the rounds.
Rates are timed from the first byte (or after a warm-up round trip) to the end, dd's by dd
itself, so process start-up is left out of them and measured on its own, from spawn to exit (for
the lesson's child: to its first line). The targets compare the best Deno row of a group, round
by round, with one peer.

- Bulk bytes: \`/dev/zero\` through a pipe or a FIFO to a reader that throws it away.
- Small messages: JSON lines \`{"seq":7,"text":"Number 7"}\` from a child to its parent, which
  parses each one and checks its order.
- Round trips: \`{"id":7,"text":"7:xxxxxxxxxxxxxx"}\` answered by the child with the text in
  capitals, one request in flight.

Reading the tables: the group "Deno's limit" feeds the same \`dd\` output to a minimal Deno
reader of its stdin, once with \`readSync\` and once with a BYOB stream reader; the FIFO group
reads with \`readSync\` too. \`readSync\` keeps up with \`cat\`; a stream pays an async op and
a wake-up of the event loop per read of at most 64 KiB (the pipe's size), and the parent's end of
a child's stdout is only a stream. Where the bulk target is missed, that is why.
Unpinned, every round trip wakes a process on the other CPU, and pipes wake slower than the Unix
sockets under \`multiprocessing.Pipe\` and \`fork()\` IPC (Node's, and Deno's
\`node:child_process\`): compare Python's own \`os.pipe\` row with its \`multiprocessing.Pipe\` row.

\`deno bench\` (tests/pickle_json_bench.ts) compares the codec's \`dumps\` and \`loads\` with
\`JSON\` and \`node:v8\` on small messages and records.

${keep("pinned")}

${keep("unpinned")}

## Pickle-like codec vs JSON (tests/pickle_json_speed.ts)

${pickle}
`;
  await Deno.writeTextFile(path, text);
}

async function cleanup() {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
  if (tempDir) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
}

if (import.meta.main) {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, async () => {
      await cleanup();
      Deno.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
  try {
    await main();
  } catch (error) {
    const usage = error instanceof UsageError ||
      (error as { code?: string })?.code?.startsWith("ERR_PARSE_ARGS");
    console.error(`error: ${(error as Error).message}${usage ? " (see --help)" : ""}`);
    await cleanup();
    Deno.exit(usage ? 2 : 1);
  }
  await cleanup();
}
