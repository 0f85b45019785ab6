/**
 * Benchmark of scripts/pickle_json.ts against JSON.stringify/JSON.parse, in the same run, on
 * the three payloads of issue 4 (a round trip is dumps + loads against stringify + parse):
 *
 * - (a) 10,000 plain records `{id, name, tags: string[3], active, score}`, about 1 MB of JSON;
 * - (b) the same records each with a Date, a Map of 3 entries and a Set of 3 numbers, against
 *   JSON of the same data with Dates as strings and Maps/Sets as arrays;
 * - (c) 10,000 tiny messages `{seq, text: "Number 007"}`, encoded and decoded one by one.
 *
 * Each round times JSON and the codec back to back, alternating, three times each, and keeps
 * the best of each (machines are shared and noisy); the report is the median of the rounds'
 * ratios, with min-max. Targets: (a) <= 1.5, (b) <= 3,
 * (c) <= 2. `deno task bench` imports {@link benchPickleJson}; alone:
 *
 *   deno run tests/pickle_json_bench.ts [--rounds 9]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dumps, loads } from "../scripts/pickle_json.ts";

/** One payload's result: median times of a round trip, and the median ratio pickle/JSON. */
export interface PickleBenchRow {
  payload: string;
  jsonMs: number;
  pickleMs: number;
  ratio: number;
  minRatio: number;
  maxRatio: number;
  target: number;
}

function plainRecords(): Record<string, unknown>[] {
  return Array.from({ length: 10_000 }, (_, i) => ({
    id: i,
    name: `user ${i} with a name`,
    tags: ["alpha", "beta", "gamma"],
    active: i % 2 === 0,
    score: i * 1.5,
  }));
}

function richRecords(): Record<string, unknown>[] {
  return plainRecords().map((record, i) => ({
    ...record,
    created: new Date(Date.UTC(2025, 0, 1) + i * 60_000),
    limits: new Map<string, number>([["cpu", i], ["memory", i * 2], [
      "disk",
      i * 3,
    ]]),
    levels: new Set([i, i + 1, i + 2]),
  }));
}

/** What JSON can say of richRecords(): Dates as ISO strings, a Map and a Set as arrays. */
function richAsJson(
  records: Record<string, unknown>[],
): Record<string, unknown>[] {
  return records.map((record) => ({
    ...record,
    created: (record.created as Date).toISOString(),
    limits: [...(record.limits as Map<string, number>)],
    levels: [...(record.levels as Set<number>)],
  }));
}

interface Payload {
  name: string;
  target: number;
  json: () => void;
  pickle: () => void;
}

function payloads(): Payload[] {
  const plain = plainRecords();
  const rich = richRecords();
  const richJson = richAsJson(rich);
  const messages = Array.from({ length: 10_000 }, (_, seq) => ({
    seq,
    text: `Number ${String(seq % 1000).padStart(3, "0")}`,
  }));
  // Results go to a sink so the engine cannot skip the work.
  const sink: unknown[] = [];
  return [
    {
      name: "(a) 10,000 plain records",
      target: 1.5,
      json: () => void sink.push(JSON.parse(JSON.stringify(plain))),
      pickle: () => void sink.push(loads(dumps(plain))),
    },
    {
      name: "(b) records + Date, Map, Set",
      target: 3,
      json: () => void sink.push(JSON.parse(JSON.stringify(richJson))),
      pickle: () => void sink.push(loads(dumps(rich))),
    },
    {
      name: "(c) 10,000 tiny messages, one by one",
      target: 2,
      json: () => {
        for (const message of messages) {
          sink.push(JSON.parse(JSON.stringify(message)));
        }
        sink.length = 0;
      },
      pickle: () => {
        for (const message of messages) sink.push(loads(dumps(message)));
        sink.length = 0;
      },
    },
  ].map((payload) => ({
    ...payload,
    json: wrap(payload.json, sink),
    pickle: wrap(payload.pickle, sink),
  }));
}

function wrap(run: () => void, sink: unknown[]): () => void {
  return () => {
    run();
    sink.length = 0;
  };
}

function time(run: () => void): number {
  const start = performance.now();
  run();
  return performance.now() - start;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/**
 * Runs the three payloads, JSON and the codec back to back in each round, after a warm-up, and
 * returns each payload's median times and ratio (pickle / JSON) with min-max over the rounds.
 */
export function benchPickleJson(
  options: { rounds?: number } = {},
): Promise<PickleBenchRow[]> {
  const rounds = Math.max(1, options.rounds ?? 9);
  const rows: PickleBenchRow[] = [];
  for (const payload of payloads()) {
    for (let i = 0; i < 3; i++) { // warm-up: let the JIT compile both paths
      payload.json();
      payload.pickle();
    }
    const jsonTimes: number[] = [],
      pickleTimes: number[] = [],
      ratios: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // The best of three, alternating, in each round: a time slice lost to another process
      // (these machines are shared) spoils one try, not the round.
      let json = Infinity, pickle = Infinity;
      for (let i = 0; i < 3; i++) {
        json = Math.min(json, time(payload.json));
        pickle = Math.min(pickle, time(payload.pickle));
      }
      jsonTimes.push(json);
      pickleTimes.push(pickle);
      ratios.push(pickle / json);
    }
    rows.push({
      payload: payload.name,
      jsonMs: median(jsonTimes),
      pickleMs: median(pickleTimes),
      ratio: median(ratios),
      minRatio: Math.min(...ratios),
      maxRatio: Math.max(...ratios),
      target: payload.target,
    });
  }
  return Promise.resolve(rows);
}

if (import.meta.main) {
  let rounds: number;
  try {
    const { values } = parseArgs({
      options: { rounds: { type: "string", default: "9" } },
    });
    rounds = Number(values.rounds);
    if (!Number.isInteger(rounds) || rounds < 1) {
      throw new Error("--rounds must be >= 1");
    }
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const rows = await benchPickleJson({ rounds });
  console.log(
    `round trip, median of ${rounds} rounds (Deno ${Deno.version.deno})`,
  );
  console.log(
    "payload                               JSON ms  pickle ms  ratio (min-max)   target",
  );
  for (const row of rows) {
    const ok = row.ratio <= row.target ? "ok" : "MISSED";
    console.log(
      `${row.payload.padEnd(36)} ${row.jsonMs.toFixed(2).padStart(8)} ${
        row.pickleMs.toFixed(2).padStart(10)
      }  ${row.ratio.toFixed(2)}x (${row.minRatio.toFixed(2)}-${
        row.maxRatio.toFixed(2)
      })  <= ${row.target}x ${ok}`,
    );
  }
}
