/**
 * The bench behind `deno task bench` (not a lesson: it imports the lessons' code).
 *
 * Measures, in one run and side by side, the lessons' ways of moving data against references
 * run in the same bench (`dd | cat`, `dd > fifo` / `cat fifo`, an empty `deno run`, the slow
 * patterns), as ratios, because these machines are shared and noisy: each pair is measured
 * back to back, `--repeat` times, and reported as the median ratio with its min-max. The whole
 * set runs twice: pinned to CPU 0 (`taskset -a -p -c 0` on this process, inherited by every
 * child) and unpinned. Writes docs/benchmarks.md and docs/benchmarks.svg.
 *
 *   deno run --allow-run --allow-read --allow-write tests/benchmarks.ts [--repeat 5] [--bytes 256M]
 *     [--only pinned|unpinned] [--no-write]
 *
 * Sections whose lesson has not landed yet print "(not yet available)".
 *
 * @module
 */
import { parseArgs } from "node:util";
import { measure as measureBulk, parseSize } from "../scripts/pipe_speed.ts";
import { measure as measureMessages } from "../scripts/pipe_batching.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();
const children = new Set<Deno.ChildProcess>();
let tempDir: string | undefined;

/** One measured pair: the lesson's figure, the reference's, both in `unit` (higher is better). */
interface Pair {
  lesson: number;
  reference: number;
}

/** A row of the results table. */
interface Row {
  name: string;
  lesson: string;
  reference: string;
  unit: string;
  /** The ratio lesson/reference must be >= this, or <= it when `atMost`. */
  target: number;
  atMost?: boolean;
  pairs: Pair[];
  note?: string;
}

/** Runs a command to completion with a deadline; throws with its stderr when it fails. */
async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    cwd: repoRoot,
    env: { LC_ALL: "C", NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const timer = setTimeout(
    () => child.kill("SIGKILL"),
    options.timeoutMs ?? 60_000,
  );
  try {
    const output = await child.output();
    const result = {
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
    if (!output.success) {
      throw new Error(
        `${command} ${args.join(" ")}: exit ${output.code}: ${result.stderr.trim()}`,
      );
    }
    return result;
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

/** dd's own timing ("N bytes ... copied, S s, ...") turned into MB/s. */
function ddRate(stderr: string): number {
  const match = /^(\d+) bytes .*copied, ([\d.]+) s/m.exec(stderr);
  if (!match) throw new Error(`no dd summary in: ${stderr}`);
  return Number(match[1]) / Number(match[2]) / 1e6;
}

/** Bulk bytes through an anonymous pipe: the lesson's child (writeSync 64 KiB) and BYOB reader. */
async function bulkPipe(bytes: number): Promise<Pair> {
  const { seconds } = await measureBulk("sync", {
    bytes,
    chunk: 64 * 1024,
    byob: true,
  });
  const count = Math.ceil(bytes / 65536);
  const dd = await run("sh", [
    "-c",
    `dd if=/dev/zero bs=64K count=${count} | cat > /dev/null`,
  ]);
  return { lesson: bytes / seconds / 1e6, reference: ddRate(dd.stderr) };
}

/** The FIFO writer role: opens the FIFO, writes `bytes` with writeSync in 64 KiB chunks. */
function fifoWriter(path: string, bytes: number): void {
  const fifo = Deno.openSync(path, { write: true });
  const chunk = new Uint8Array(65536);
  for (let sent = 0; sent < bytes;) {
    sent += fifo.writeSync(chunk.subarray(0, Math.min(65536, bytes - sent)));
  }
  fifo.close();
}

/** Bulk bytes through a FIFO: a Deno child writing with writeSync, this process reading with readSync. */
async function bulkFifo(bytes: number): Promise<Pair> {
  const path = `${tempDir}/bench.fifo`;
  const writer = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-write=${path}`,
      import.meta.filename!,
      "--role",
      "fifo-writer",
      "--path",
      path,
      "--bytes",
      `${bytes}`,
    ],
    stdin: "null",
    stdout: "null",
  }).spawn();
  children.add(writer);
  // If the writer dies before it opens the FIFO, open its write end ourselves so that our
  // open returns (and sees EOF at once) instead of waiting forever.
  let opened = false;
  writer.status.then(() => {
    if (!opened) {
      Deno.open(path, { write: true }).then((f) => f.close(), () => {});
    }
  });
  const fifo = await Deno.open(path, { read: true }); // Waits (on a worker thread) for the writer.
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
  const count = Math.ceil(bytes / 65536);
  const dd = await run("sh", [
    "-c",
    `cat "$1" > /dev/null & dd if=/dev/zero of="$1" bs=64K count=${count}; wait`,
    "sh",
    path,
  ]);
  return { lesson: bytes / seconds / 1e6, reference: ddRate(dd.stderr) };
}

/** Small JSON messages: the lesson's Batcher against one `await write()` per message. */
async function messages(count: number): Promise<Pair> {
  const batched = await measureMessages("batched", { count });
  const slowCount = Math.max(1000, Math.round(count / 20));
  const naive = await measureMessages("each-await", { count: slowCount });
  return {
    lesson: count / batched.seconds,
    reference: slowCount / naive.seconds,
  };
}

/** Round trips over pipe_duplex.ts's two pipes, against its naive child. */
async function duplex(requests: number): Promise<Pair> {
  const rate = async (extra: string[]) => {
    const { stdout } = await run(Deno.execPath(), [
      "run",
      "--allow-run=deno",
      "scripts/pipe_duplex.ts",
      "--requests",
      `${requests}`,
      ...extra,
    ]);
    const match = /: (\d+) round trips\/s$/m.exec(stdout);
    if (!match) throw new Error(`pipe_duplex printed no rate: ${stdout}`);
    return Number(match[1]);
  };
  return { lesson: await rate([]), reference: await rate(["--naive-child"]) };
}

/**
 * Spawn to first message of anonymous_pipe.ts's child (the article's program, as its parent
 * starts it, sending one line at once), against spawn to exit of an empty script.
 */
async function startup(): Promise<Pair> {
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", `${repoRoot}scripts/anonymous_pipe.ts`, "--child", "1", "0"],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  children.add(child);
  const reader = child.stdout.getReader();
  const first = await reader.read();
  const lesson = performance.now() - start;
  await reader.cancel();
  await child.status;
  children.delete(child);
  if (first.done) throw new Error("anonymous_pipe.ts --child sent nothing");
  const empty = `${tempDir}/empty.ts`;
  const emptyStart = performance.now();
  await run(Deno.execPath(), ["run", empty]);
  return { lesson, reference: performance.now() - emptyStart };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const format = (value: number) =>
  value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);

function ratios(row: Row): number[] {
  return row.pairs.map((pair) => pair.lesson / pair.reference);
}

function met(row: Row): boolean {
  const ratio = median(ratios(row));
  return row.atMost ? ratio <= row.target : ratio >= row.target;
}

/** The results as a Markdown table. */
function table(rows: Row[]): string {
  const lines = [
    "| measure | lesson (median) | reference (median) | ratio median (min-max) | target | met |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const row of rows) {
    if (row.pairs.length === 0) {
      lines.push(
        `| ${row.name} | ${row.note ?? "(not yet available)"} | | | | |`,
      );
      continue;
    }
    const r = ratios(row);
    lines.push(
      `| ${row.name} | ${
        format(median(row.pairs.map((p) => p.lesson)))
      } ${row.unit} ${row.lesson} | ` +
        `${format(median(row.pairs.map((p) => p.reference)))} ${row.unit} ${row.reference} | ` +
        `${format(median(r))} (${format(Math.min(...r))}-${format(Math.max(...r))}) | ` +
        `${row.atMost ? "<=" : ">="} ${row.target} | ${met(row) ? "yes" : "**no**"} |`,
    );
  }
  return lines.join("\n");
}

/** Runs every measure `repeat` times, interleaved, and returns the rows. */
async function measureAll(
  repeat: number,
  bytes: number,
  log: (line: string) => void,
): Promise<Row[]> {
  const hasDuplex = await exists("scripts/pipe_duplex.ts");
  const rows: Array<Row & { measure?: () => Promise<Pair> }> = [
    {
      name: "anonymous pipe, bulk",
      lesson: "(pipe_speed: writeSync 64 KiB, BYOB reader)",
      reference: "(dd bs=64K \\| cat)",
      unit: "MB/s",
      target: 0.6,
      pairs: [],
      measure: () => bulkPipe(bytes),
    },
    {
      name: "FIFO, bulk",
      lesson: "(writeSync / readSync 64 KiB)",
      reference: "(dd > fifo, cat fifo)",
      unit: "MB/s",
      target: 0.9,
      pairs: [],
      measure: () => bulkFifo(bytes),
    },
    {
      name: "small JSON messages",
      lesson: "(pipe_batching Batcher, parent parses each)",
      reference: "(one await write per message)",
      unit: "msg/s",
      target: 10,
      pairs: [],
      measure: () => messages(200_000),
    },
    {
      name: "duplex round trips",
      lesson: "(pipe_duplex)",
      reference: "(pipe_duplex --naive-child)",
      unit: "/s",
      target: 1.5,
      pairs: [],
      measure: hasDuplex ? () => duplex(20_000) : undefined,
    },
    {
      name: "start to first message",
      lesson: "(anonymous_pipe child)",
      reference: "(empty deno run)",
      unit: "ms",
      target: 1.3,
      atMost: true,
      pairs: [],
      measure: () => startup(),
    },
  ];
  for (let round = 1; round <= repeat; round++) {
    for (const row of rows) {
      if (!row.measure) continue;
      const pair = await row.measure();
      row.pairs.push(pair);
      log(
        `  round ${round}/${repeat} ${row.name}: ${format(pair.lesson)} vs ${
          format(pair.reference)
        } ${row.unit}`,
      );
    }
  }
  return rows;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(`${repoRoot}${path}`);
    return true;
  } catch {
    return false;
  }
}

/** One payload's result from tests/pickle_json_speed.ts (ratio = codec time / JSON time). */
interface PickleRow {
  payload: string;
  jsonMs: number;
  pickleMs: number;
  ratio: number;
  minRatio?: number;
  maxRatio?: number;
  target?: number;
}

/** The pickle-like codec's ratios to JSON, from tests/pickle_json_speed.ts when it has landed. */
async function pickleSection(): Promise<string> {
  if (!(await exists("tests/pickle_json_speed.ts"))) {
    return "(not yet available)";
  }
  const module = await import(`${repoRoot}tests/pickle_json_speed.ts`);
  const results: PickleRow[] = await module.benchPickleJson({ rounds: 9 });
  const spread = (r: PickleRow) =>
    r.minRatio === undefined ? "" : ` (${format(r.minRatio)}-${format(r.maxRatio!)})`;
  const verdict = (r: PickleRow) =>
    r.target === undefined ? "" : `<= ${r.target} | ${r.ratio <= r.target ? "yes" : "**no**"}`;
  return [
    "| payload | JSON ms (median) | pickle-like ms (median) | ratio median (min-max) | target | met |",
    "| --- | --- | --- | --- | --- | --- |",
    ...results.map((r) =>
      `| ${r.payload} | ${format(r.jsonMs)} | ${format(r.pickleMs)} | ${format(r.ratio)}${
        spread(r)
      } | ${verdict(r) || " |"} |`
    ),
  ].join("\n");
}

/** Pins this process (all its threads) to the given CPUs; children inherit it. */
async function pin(cpus: string): Promise<void> {
  await run("taskset", ["-a", "-p", "-c", cpus, `${Deno.pid}`]);
}

/** A bar chart of the median ratios (log scale), pinned and unpinned, with min-max and target. */
function chart(sections: Array<{ title: string; rows: Row[] }>): string {
  const names = sections[0]?.rows.map((row) => row.name) ?? [];
  const left = 190,
    width = 520,
    barHeight = 14,
    groupHeight = 20 + sections.length * (barHeight + 4);
  const height = 50 + names.length * groupHeight + 30;
  const x = (ratio: number) =>
    left +
    ((Math.log10(Math.min(Math.max(ratio, 0.05), 200)) + 1.3) / (2.3 + 1.3)) *
      width;
  const colors = ["#3b6fb6", "#e39b2d"];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${
      left + width + 30
    }" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14">Lesson / reference, median ratio with min-max (log scale); red tick: target</text>`,
  ];
  for (const tick of [0.1, 0.3, 1, 3, 10, 30, 100]) {
    parts.push(
      `<line x1="${x(tick)}" y1="35" x2="${x(tick)}" y2="${height - 25}" stroke="${
        tick === 1 ? "#444" : "#ddd"
      }"/>`,
    );
    parts.push(
      `<text x="${x(tick)}" y="${height - 10}" text-anchor="middle">${tick}x</text>`,
    );
  }
  names.forEach((name, i) => {
    const top = 45 + i * groupHeight;
    parts.push(`<text x="10" y="${top + 14}">${name}</text>`);
    sections.forEach((section, s) => {
      const row = section.rows[i];
      const y = top + 4 + s * (barHeight + 4);
      if (!row || row.pairs.length === 0) {
        parts.push(
          `<text x="${left + 4}" y="${
            y + 11
          }" fill="#888">${section.title}: not yet available</text>`,
        );
        return;
      }
      const r = ratios(row);
      const value = median(r);
      parts.push(
        `<rect x="${x(0.05)}" y="${y}" width="${x(value) - x(0.05)}" height="${barHeight}" fill="${
          colors[s % 2]
        }"/>`,
      );
      parts.push(
        `<line x1="${x(Math.min(...r))}" y1="${y + barHeight / 2}" x2="${x(Math.max(...r))}" y2="${
          y + barHeight / 2
        }" stroke="black"/>`,
      );
      parts.push(
        `<line x1="${x(row.target)}" y1="${y - 2}" x2="${x(row.target)}" y2="${
          y + barHeight + 2
        }" stroke="red" stroke-width="2"/>`,
      );
      parts.push(
        `<text x="${x(Math.max(value, Math.max(...r))) + 4}" y="${y + 11}">${
          format(value)
        }x ${section.title}</text>`,
      );
    });
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

async function machine(): Promise<string> {
  const cpu = (await run("sh", [
    "-c",
    "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2",
  ])).stdout.trim();
  const kernel = (await run("uname", ["-srm"])).stdout.trim();
  return `${navigator.hardwareConcurrency} x ${
    cpu || "unknown CPU"
  }, ${kernel}, Deno ${Deno.version.deno} (V8 ${Deno.version.v8})`;
}

async function main() {
  const { values } = parseArgs({
    strict: true,
    options: {
      repeat: { type: "string", default: "5" },
      bytes: { type: "string", default: "256M" },
      only: { type: "string" },
      "no-write": { type: "boolean", default: false },
      role: { type: "string" },
      path: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      `usage: deno task bench [--repeat 5] [--bytes 256M] [--only pinned|unpinned] [--no-write]
  --repeat N       rounds of every measure, reported as median and min-max (default 5)
  --bytes SIZE     bytes per bulk run: 65536, 64K, 256M or 1G (default 256M)
  --only SECTION   measure only pinned (to CPU 0) or only unpinned (default both)
  --no-write       print the results, do not rewrite docs/benchmarks.md and .svg`,
    );
    return;
  }
  const bytes = parseSize(values.bytes);
  if (values.role === "fifo-writer") return fifoWriter(values.path!, bytes);
  const repeat = Number(values.repeat);
  if (!(Number.isSafeInteger(repeat) && repeat > 0) || !(bytes > 0)) {
    throw new UsageError("--repeat takes N > 0 and --bytes a size like 256M");
  }
  if (values.only && !["pinned", "unpinned"].includes(values.only)) {
    throw new UsageError("--only takes pinned or unpinned");
  }
  tempDir = await Deno.makeTempDir({ prefix: "pipe-bench-" });
  await Deno.writeTextFile(`${tempDir}/empty.ts`, "");
  await run("mkfifo", ["-m", "600", `${tempDir}/bench.fifo`]);
  const started = performance.now();
  const description = await machine();
  console.log(`Machine: ${description}`);
  const sections: Array<{ title: string; rows: Row[] }> = [];
  const cpus = `0-${navigator.hardwareConcurrency - 1}`;
  for (const title of ["pinned", "unpinned"]) {
    if (values.only && values.only !== title) continue;
    await pin(title === "pinned" ? "0" : cpus);
    console.log(
      `\n${
        title === "pinned" ? "Pinned to CPU 0 (taskset -c 0)" : `Unpinned (CPUs ${cpus})`
      }, ${repeat} rounds:`,
    );
    const rows = await measureAll(repeat, bytes, (line) => console.log(line));
    sections.push({ title, rows });
    console.log("\n" + table(rows));
  }
  await pin(cpus);
  console.log("\nPickle-like codec vs JSON (tests/pickle_json_speed.ts):");
  const pickle = await pickleSection();
  console.log(pickle);
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  console.log(`\nBench took ${seconds} s.`);
  if (values["no-write"]) return;
  const date = new Date().toISOString().slice(0, 10);
  const blocks = sections.map(({ title, rows }) =>
    `<!-- bench:${title} -->\n## ${
      title === "pinned" ? "Pinned to one CPU (`taskset -c 0`)" : "Unpinned"
    }\n\n` +
    `Measured ${date} on ${description}; ${repeat} rounds, ${bytes} bytes per bulk run.\n\n${
      table(rows)
    }\n<!-- /bench:${title} -->`
  );
  await writeDocs(blocks, sections, pickle);
  console.log("Wrote docs/benchmarks.md and docs/benchmarks.svg");
}

/** Writes docs/benchmarks.md, keeping a section from an earlier run when this run skipped it. */
async function writeDocs(
  blocks: string[],
  sections: Array<{ title: string; rows: Row[] }>,
  pickle: string,
) {
  const path = `${repoRoot}docs/benchmarks.md`;
  const old = await Deno.readTextFile(path).catch(() => "");
  const keep = (title: string) => {
    const found = blocks.find((block) => block.startsWith(`<!-- bench:${title} -->`));
    if (found) return found;
    const match = new RegExp(
      `<!-- bench:${title} -->[\\s\\S]*?<!-- /bench:${title} -->`,
    ).exec(old);
    return match?.[0] ??
      `<!-- bench:${title} -->\n(not measured yet)\n<!-- /bench:${title} -->`;
  };
  const text = `# Benchmarks

Written by \`deno task bench\` (tests/benchmarks.ts). Every figure is a ratio of the lessons' way to a
reference measured in the same run, back to back, so that the noise of a shared machine cancels
out; the median of the rounds is shown with its min-max. Throughputs are measured from the first
byte to EOF (dd's own timing for dd), so process start-up is left out of them and measured on its
own in the last row. Higher is better, except for start-up time.

![Ratios, pinned and unpinned](benchmarks.svg)

${keep("pinned")}

${keep("unpinned")}

## Pickle-like codec vs JSON

${pickle}
`;
  await Deno.writeTextFile(path, text);
  await Deno.writeTextFile(`${repoRoot}docs/benchmarks.svg`, chart(sections));
}

class UsageError extends Error {}

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
    const usageHint = " (usage: deno task bench [--repeat 5] [--bytes 256M] " +
      "[--only pinned|unpinned] [--no-write])";
    console.error(`error: ${(error as Error).message}${usage ? usageHint : ""}`);
    await cleanup();
    Deno.exit(usage ? 2 : 1);
  }
  await cleanup();
}
