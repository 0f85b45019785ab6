/**
 * @title A pickle by hand: what JSON cannot say, written as tagged JSON
 * @difficulty advanced
 * @tags cli
 * @run deno run scripts/pickle_by_hand.ts
 * @resource {https://docs.python.org/3/library/pickle.html} Python: pickle (and its warning)
 *
 * Claim 6 of the article: objects must be serialized to go through a pipe. Here is how, in a
 * recursive encoder and decoder: JSON data stays JSON, and what JSON cannot say (undefined, NaN,
 * -0, BigInt, Date, Map, Set, shared objects, cycles, registered classes) becomes an object with
 * a `"$"` tag, in a subset of lib/pickle_json.ts's format. Unlike Python's pickle, decode is
 * safe on hostile input: each safety rule is one commented line. scripts/pickle_json.ts sends
 * such pickles through a pipe; this lesson spawns nothing.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run scripts/pickle_by_hand.ts
 * {"id":7,"when":{"$":"Date","v":0},"langs":{"$":"Map","v":[["en",1]]},"primes":{"$":"Set","v":[2]}}
 *   decodes as { id: 7, when: 1970-01-01T00:00:00.000Z, langs: Map(1) { "en" => 1 }, primes: Set(1) { 2 } }
 * [{"$":"undefined"},{"$":"NaN"},{"$":"-0"},{"$":"-Infinity"},{"$":"BigInt","v":"0x10000000000000000"}]
 *   decodes as [ undefined, NaN, -0, -Infinity, 18446744073709551616n ]
 * {"$":"Object","id":0,"v":{"name":"ring","point":{"$":"class","id":1,"name":"Point","v":{"x":1,"y":2}},"again":{"$":"ref","id":1},"next":{"$":"ref","id":0}}}
 *   decodes as <ref *1> { name: "ring", point: Point { x: 1, y: 2 }, again: Point { x: 1, y: 2 }, next: [Circular *1] }
 *   where point and again are one object: true
 * ```
 *
 * @module
 */

/** What decode refuses and encode cannot write, in one line (never a stack overflow). */
export class PickleError extends Error {
  /** Shown before the message, as for any Error. */
  override name = "PickleError";
}
const fail = (problem: string): never => {
  throw new PickleError(problem);
};

/** Most levels of nesting encoded or decoded: more would overflow the recursion's stack. */
export const MAX_DEPTH = 1000;
/** Longest text decoded, in UTF-16 code units: a line read from a stream must be bounded. */
export const MAX_LENGTH = 1 << 20;

// The class registry, like Python's copyreg: Maps, so a name such as "constructor" or
// "__proto__" is only a name, and no name is ever looked up in globalThis.
const classes = new Map<string, { prototype: object }>();
const classNames = new Map<object, string>();

/** Registers a class (on both sides) so that its instances travel as instances of it. */
export function register(type: { name: string; prototype: object }, name = type.name): void {
  classes.set(name, type);
  classNames.set(type.prototype, name);
}

// The values JSON has no word for, by tag. Object.is tells -0 from 0, and NaN from itself.
const constants = new Map<string, unknown>([["undefined", undefined], ["NaN", NaN], ["-0", -0]]);
constants.set("Infinity", Infinity).set("-Infinity", -Infinity);

/** Whether `item` was made by `type` itself, not by a subclass (which would lose its class). */
const is = <T>(type: abstract new (...args: never[]) => T, item: object): item is T & object =>
  Object.getPrototypeOf(item) === type.prototype;

/** Writes `value` as one line of JSON text: JSON data as itself, the rest tagged. */
export function encode(value: unknown): string {
  // Pass 1: which objects occur twice (or in a cycle)? Each gets an id at its first occurrence,
  // written before its contents, and every later occurrence is `{"$":"ref","id":n}`. Inside an
  // object: a Map's keys and values, a Set's values, an array's or object's own values.
  const seen = new Set<object>(), shared = new Set<object>();
  const count = (item: unknown, depth: number): void => {
    if (typeof item !== "object" || item === null) return;
    if (depth >= MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH}`); // so pass 2 is as shallow
    if (seen.has(item)) return void shared.add(item);
    seen.add(item);
    const inside = item instanceof Map ? [...item].flat() : item instanceof Set ? [...item] : item;
    for (const child of Object.values(inside)) count(child, depth + 1);
  };
  count(value, 0);

  // Pass 2: the nodes. Only a tag can carry an id, so a shared array or object is tagged.
  // (Simplified: holes in arrays and own properties of Dates, Maps and Sets are not covered.)
  const ids = new Map<object, number>();
  const node = (item: unknown): unknown => {
    for (const [name, constant] of constants) if (Object.is(item, constant)) return { $: name };
    if (typeof item === "bigint") return { $: "BigInt", v: hex(item) };
    if (typeof item === "function" || typeof item === "symbol") fail(`a ${typeof item}`);
    if (typeof item !== "object" || item === null) return item; // JSON already
    if (ids.has(item)) return { $: "ref", id: ids.get(item) };
    const tag = (name: string): Record<string, unknown> =>
      shared.has(item) ? { $: name, id: ids.set(item, ids.size).size - 1 } : { $: name };
    const dict = (source: object) =>
      Object.fromEntries(Object.entries(source).map(([key, child]) => [key, node(child)]));
    if (is(Date, item)) return { ...tag("Date"), v: Number.isNaN(+item) ? null : +item };
    if (is(Map, item)) return { ...tag("Map"), v: [...item].map((pair) => pair.map(node)) };
    if (is(Set, item)) return { ...tag("Set"), v: [...item].map(node) };
    const plain = !shared.has(item) && !Object.hasOwn(item, "$") && // else it reads as a tag,
      !(item === value && Object.hasOwn(item, "pickle")); // or at the top as an old envelope
    if (is(Array, item) && Object.keys(item).length !== item.length) fail("a sparse array");
    if (is(Array, item)) return plain ? item.map(node) : { ...tag("Array"), v: item.map(node) };
    if (is(Object, item)) return plain ? dict(item) : { ...tag("Object"), v: dict(item) };
    const name = classNames.get(Object.getPrototypeOf(item)) ?? fail("an unregistered class");
    return { ...tag("class"), name, v: dict(item) };
  };
  return JSON.stringify(node(value)); // no envelope: a value without tags is its plain JSON
}

/** Reads what {@link encode}, or lib/pickle_json.ts's `dumps`, wrote for the types above. */
export function decode(text: string): unknown {
  if (text.length > MAX_LENGTH) fail(`longer than ${MAX_LENGTH}`); // a size limit
  // (Simplified: text that is not JSON throws JSON.parse's SyntaxError, not a PickleError.)
  const tree: unknown = JSON.parse(text); // a parser, never eval: data is never run as code
  const envelope = isDict(tree) && Object.hasOwn(tree, "pickle") && !Object.hasOwn(tree, "$");
  if (envelope) fail("an envelope of format version 1"); // (lib/pickle_json.ts still reads it)
  const ids = new Map<unknown, unknown>();
  // An id is defined before the contents of its object are read: a cycle inside them finds it.
  const define = <T>(tag: Record<string, unknown>, made: T): T => {
    if (tag.id !== undefined) ids.set(ids.has(tag.id) ? fail("an id defined twice") : tag.id, made);
    return made;
  };
  const fill = (target: object, dict: unknown, child: (node: unknown) => unknown): object => {
    if (!isDict(dict)) fail("v is not a dict");
    for (const [key, node] of Object.entries(dict as object)) {
      const property = { value: child(node), writable: true, enumerable: true, configurable: true };
      // "__proto__" stays data: `=` would call the prototype setter (Node and browsers have it;
      Object.defineProperty(target, key, property); // Deno only with --unstable-unsafe-proto)
    }
    return target;
  };
  const revive = (node: unknown, depth: number): unknown => {
    if (typeof node !== "object" || node === null) return node;
    if (depth >= MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH}`); // a depth limit
    const child = (inner: unknown) => revive(inner, depth + 1);
    if (Array.isArray(node)) return node.map(child);
    if (!Object.hasOwn(node, "$")) return fill({}, node, child);
    const tag = node as Record<string, unknown>, $ = tag.$ as string, v = tag.v; // ["Date"] is not "Date"
    if (constants.has($)) return constants.get($);
    if ($ === "BigInt") return bigint(v);
    if ($ === "Date") return define(tag, new Date(v === null ? NaN : number(v)));
    if ($ === "Object") return fill(define(tag, {}), v, child);
    if ($ === "ref") return ids.has(tag.id) ? ids.get(tag.id) : fail("a ref to no id yet");
    if ($ === "class") {
      const type = classes.get(tag.name as string) ?? fail("unregistered"); // registered only
      return fill(define(tag, Object.create(type.prototype)), v, child);
    }
    if ($ === "Array" || $ === "Set" || $ === "Map") {
      const made = define(tag, $ === "Map" ? new Map() : $ === "Set" ? new Set() : [] as unknown[]);
      for (const item of list(v)) {
        if (made instanceof Map) made.set(child(pair(item)[0]), child(pair(item)[1]));
        else if (made instanceof Set) made.add(child(item));
        else made.push(child(item));
      }
      return made;
    }
    return fail(`unknown tag ${JSON.stringify(tag.$)}`); // unknown tags are refused
  };
  return revive(tree, 0);
}

const hex = (big: bigint) => (big < 0n ? "-0x" + (-big).toString(16) : "0x" + big.toString(16));
const isDict = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);
const list = (field: unknown) => Array.isArray(field) ? field : fail("v is not a list");
const pair = (item: unknown) => list(item).length === 2 ? item as unknown[] : fail("not a pair");
const number = (field: unknown) => typeof field === "number" ? field : fail("not a number");
function bigint(field: unknown): bigint {
  const ok = typeof field === "string" && /^-?0x[0-9a-f]+$/i.test(field);
  return !ok ? fail("a bad BigInt") : field[0] === "-" ? -BigInt(field.slice(1)) : BigInt(field);
}

// The demo: values that JSON loses, and a class of our own, registered.
class Point {
  constructor(public x: number, public y: number) {}
}
register(Point);

function main(): void {
  const point = new Point(1, 2);
  const ring: Record<string, unknown> = { name: "ring", point, again: point };
  ring.next = ring; // a cycle, and the point shared
  const record = { id: 7, when: new Date(0), langs: new Map([["en", 1]]), primes: new Set([2]) };
  let back: unknown;
  for (const value of [record, [undefined, NaN, -0, -Infinity, 2n ** 64n], ring]) {
    const line = encode(value);
    back = decode(line);
    console.log(`${line}\n  decodes as ${Deno.inspect(back, { breakLength: Infinity })}`);
  }
  const { point: first, again } = back as typeof ring;
  console.log(`  where point and again are one object: ${first === again}`);
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

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

// The command line: --help only. The lesson needs no permission.
const USAGE = `usage: deno run scripts/pickle_by_hand.ts [--help]
  Encodes values that JSON cannot hold as tagged JSON, and decodes them back.`;

if (import.meta.main) {
  requireDeno();
  const [first] = Deno.args;
  if (first !== undefined && first !== "--help") usageError(`unknown argument "${first}"`);
  if (first === "--help") console.log(USAGE);
  else main();
}
