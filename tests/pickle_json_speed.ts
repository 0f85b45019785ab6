/**
 * Speed checks of lib/pickle_json.ts against JSON.stringify/JSON.parse, in the same run, with
 * targets (`deno bench` runs the plain comparisons, tests/pickle_json_bench.ts). On
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
 *   deno run tests/pickle_json_speed.ts [--rounds 9] [--hostile]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dumps, loads, PickleError } from "../lib/pickle_json.ts";

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

/** 10,000 plain records, about 1 MB of JSON: payload (a). */
export function plainRecords(): Record<string, unknown>[] {
  return Array.from({ length: 10_000 }, (_, i) => ({
    id: i,
    name: `user ${i} with a name`,
    tags: ["alpha", "beta", "gamma"],
    active: i % 2 === 0,
    score: i * 1.5,
  }));
}

/** The plain records, each with a Date, a Map and a Set: payload (b). */
export function richRecords(): Record<string, unknown>[] {
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
export function richAsJson(
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

// ---------------------------------------------------------------------------------------------
// Hostile but valid input (issue 4): text an attacker can send to make loads slow. Each case
// is a pickle of about 1 MB (or as noted) that loads either rebuilds or refuses with a
// PickleError; what matters is that loads costs at most a few times JSON.parse of the same
// text, never orders of magnitude more.

/** One hostile pickle: its name and text. */
export interface HostileCase {
  name: string;
  text: string;
}

const pickleOf = (node: string) => node; // (format version 2: a pickle is its node)
const listOf = (count: number, node: (i: number) => string) =>
  pickleOf(`[${Array.from({ length: count }, (_, i) => node(i)).join(",")}]`);

/** The hostile cases, built fresh (each 0.1-2 MB of text). Also used by the tests. */
export function hostileCases(): HostileCase[] {
  const hex = (i: number, digits: number) => "0x" + String(i % 9 + 1) + "e".repeat(digits - 1);
  return [
    { name: "Dates (50,000)", text: listOf(50_000, (i) => `{"$":"Date","v":${i * 1e6}}`) },
    {
      name: "refs to one object (100,000)",
      text: listOf(100_000, (i) => i === 0 ? '{"$":"Object","id":0,"v":{}}' : '{"$":"ref","id":0}'),
    },
    // (A tag at the bottom: without a "$", loads returns what JSON.parse built and walks nothing.)
    {
      name: "1M-deep arrays",
      text: pickleOf("[".repeat(1e6) + '{"$":"NaN"}' + "]".repeat(1e6)),
    },
    {
      name: "1M-deep objects",
      text: pickleOf('{"a":'.repeat(1e6) + '{"$":"NaN"}' + "}".repeat(1e6)),
    },
    {
      name: "RegExps (20,000)",
      text: listOf(20_000, (i) => `{"$":"RegExp","source":"(a+)+b${i}","flags":"gu"}`),
    },
    {
      name: "one 1 MB ArrayBuffer (base64)",
      text: pickleOf(
        `{"$":"ArrayBuffer","v":"${"AAAA".repeat(350_000)}"}`,
      ),
    },
    {
      name: "views of one buffer (20,000)",
      text: listOf(
        20_000,
        (i) =>
          i === 0
            ? '{"$":"Uint8Array","buffer":{"$":"ArrayBuffer","id":0,"v":"AAAAAAAA"},"byteOffset":0,"length":6}'
            : '{"$":"Uint8Array","buffer":{"$":"ref","id":0},"byteOffset":1,"length":4}',
      ),
    },
    {
      name: "resizable buffers, 64 MiB max (10,000)",
      text: listOf(10_000, () => '{"$":"ArrayBuffer","v":"","maxByteLength":67108864}'),
    },
    {
      name: "resizable buffers, 1 byte max (20,000)",
      text: listOf(20_000, () => '{"$":"ArrayBuffer","v":"","maxByteLength":1}'),
    },
    {
      name: "unknown tag at the end",
      text: pickleOf(
        `[${Array.from({ length: 50_000 }, (_, i) => `{"$":"Date","v":${i}}`).join(",")},` +
          '{"$":"Nope"}]',
      ),
    },
    {
      name: "sparse arrays, length 2^32-1 (20,000)",
      text: listOf(
        20_000,
        (i) => `{"$":"Array","length":4294967295,"v":{"4294967294":${i},"x":1}}`,
      ),
    },
    {
      name: "URLs (20,000)",
      text: listOf(20_000, (i) => `{"$":"URL","v":"https://user@example.com:8080/p/${i}?q=1#h"}`),
    },
    {
      name: "BigInts, 500 of 2,000 hex digits",
      text: listOf(500, (i) => `{"$":"BigInt","v":"${hex(i, 2_000)}"}`),
    },
    {
      name: "BigInts, 10 of 100,000 hex digits",
      text: listOf(10, (i) => `{"$":"BigInt","v":"-${hex(i, 100_000)}"}`),
    },
    {
      name: "Temporal.ZonedDateTimes (20,000)",
      text: listOf(
        20_000,
        (i) =>
          `{"$":"Temporal.ZonedDateTime","v":"2020-01-01T00:00:${
            String(i % 60).padStart(2, "0")
          }.5+01:00[Europe/Paris]"}`,
      ),
    },
    {
      name: "Temporal.Durations (20,000)",
      text: listOf(20_000, (i) => `{"$":"Temporal.Duration","v":{"hours":${i},"nanoseconds":1}}`),
    },
    {
      name: "Errors (1,000)",
      text: listOf(1_000, (i) => `{"$":"Error","message":"e${i}"}`),
    },
    {
      name: "AggregateErrors with causes (1,000)",
      text: listOf(
        1_000,
        () => '{"$":"AggregateError","message":"a","cause":1,"errors":[],"stack":"s"}',
      ),
    },
  ];
}

/** One hostile case's result: best times of JSON.parse and of loads (to its PickleError). */
export interface HostileRow {
  name: string;
  bytes: number;
  jsonMs: number;
  loadsMs: number;
  ratio: number;
  outcome: string; // "loaded" or the PickleError's message
}

/**
 * Times JSON.parse and loads of each hostile case, alternating, and keeps the best of each
 * (garbage collection and other processes make single times vary twofold): at least
 * `minTries` tries each, more while the case has taken less than a second, up to 30. loads
 * that throws is timed to its throw. Hand-run: `deno run tests/pickle_json_speed.ts --hostile`.
 */
export function benchHostile(options: { minTries?: number } = {}): HostileRow[] {
  const minTries = Math.max(1, options.minTries ?? 5);
  const rows: HostileRow[] = [];
  for (const { name, text } of hostileCases()) {
    let outcome = "loaded";
    const loadOnce = () => {
      try {
        loads(text);
      } catch (error) {
        if (!(error instanceof PickleError)) throw error;
        outcome = error.message.slice(0, 60);
      }
    };
    let json = Infinity, pickle = Infinity;
    const start = performance.now();
    for (let i = 0; i <= minTries || (i <= 30 && performance.now() - start < 1000); i++) {
      // (the first try of each is a warm-up)
      const jsonMs = time(() => JSON.parse(text));
      const loadsMs = time(loadOnce);
      if (i > 0) {
        json = Math.min(json, jsonMs);
        pickle = Math.min(pickle, loadsMs);
      }
    }
    const bytes = encoder.encode(text).length;
    rows.push({ name, bytes, jsonMs: json, loadsMs: pickle, ratio: pickle / json, outcome });
  }
  return rows;
}
const encoder = new TextEncoder();

if (import.meta.main) {
  let rounds: number, hostile: boolean | undefined;
  try {
    const { values } = parseArgs({
      options: { rounds: { type: "string", default: "9" }, hostile: { type: "boolean" } },
    });
    hostile = values.hostile;
    rounds = Number(values.rounds);
    if (!Number.isInteger(rounds) || rounds < 1) {
      throw new Error("--rounds must be >= 1");
    }
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (hostile) {
    console.log(
      `hostile input: loads vs JSON.parse of the same text, best of 5-30 (Deno ${Deno.version.deno})`,
    );
    console.log(
      "case                                      bytes  JSON ms  loads ms   ratio  outcome",
    );
    for (const row of benchHostile()) {
      console.log(
        `${row.name.padEnd(38)} ${String(row.bytes).padStart(9)} ${
          row.jsonMs.toFixed(2).padStart(8)
        } ${row.loadsMs.toFixed(2).padStart(9)} ${
          row.ratio.toFixed(1).padStart(6)
        }x  ${row.outcome}`,
      );
    }
    Deno.exit(0);
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
