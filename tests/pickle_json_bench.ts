/**
 * `deno bench`: lib/pickle_json.ts's `dumps` and `loads` against `JSON.stringify` and
 * `JSON.parse` (the baseline of every group) and `node:v8`'s `serialize` and `deserialize`
 * (structured clone, the format Node's `advanced` IPC uses), encode and decode apart, on:
 *
 * - a small message `{seq, text: "Number 007"}`, the lessons' typical line;
 * - 10,000 plain records `{id, name, tags: string[3], active, score}`, about 1 MB of JSON;
 * - the same records each with a Date, a Map and a Set. JSON gets what it can say of them
 *   (Dates as strings, Maps and Sets as arrays), so its row does less than the other two.
 *
 *   deno bench                          # every group
 *   deno bench --filter "small message" # one payload
 *
 * The targets (the codec at most 1.5-3x JSON) are checked by tests/pickle_json_speed.ts,
 * which `deno task bench` runs.
 *
 * @module
 */
import { deserialize, serialize } from "node:v8";
import { dumps, loads } from "../lib/pickle_json.ts";
import { plainRecords, richAsJson, richRecords } from "./pickle_json_speed.ts";

/** Each result goes here, so that the engine cannot skip the work as dead code. */
const sink: unknown[] = [];

const payloads = [
  { name: "small message", value: { seq: 7, text: "Number 007" }, json: undefined },
  { name: "10,000 plain records", value: plainRecords(), json: undefined },
  { name: "10,000 rich records", value: richRecords(), json: richAsJson(richRecords()) },
];

for (const { name, value, json } of payloads) {
  const asJson = json ?? value;
  const jsonText = JSON.stringify(asJson);
  const v8Bytes = serialize(value);
  const pickleText = dumps(value);

  const encode = `encode ${name}`;
  Deno.bench("JSON.stringify", { group: encode, baseline: true }, () => {
    sink[0] = JSON.stringify(asJson);
  });
  Deno.bench("node:v8 serialize", { group: encode }, () => {
    sink[0] = serialize(value);
  });
  Deno.bench("pickle_json dumps", { group: encode }, () => {
    sink[0] = dumps(value);
  });

  const decode = `decode ${name}`;
  Deno.bench("JSON.parse", { group: decode, baseline: true }, () => {
    sink[0] = JSON.parse(jsonText);
  });
  Deno.bench("node:v8 deserialize", { group: decode }, () => {
    sink[0] = deserialize(v8Bytes);
  });
  Deno.bench("pickle_json loads", { group: decode }, () => {
    sink[0] = loads(pickleText);
  });
}
