/**
 * Tests of the lesson scripts/pickle_by_hand.ts: its whole run, every type it covers through a
 * round trip, each of its safety rules (each test fails if the rule's line is taken out), and
 * the format shared with lib/pickle_json.ts: `loads` reads what `encode` writes, and `decode`
 * reads what `dumps` writes, for the types the lesson covers.
 */
import assert from "node:assert/strict";
import * as library from "../lib/pickle_json.ts";
import {
  decode,
  encode,
  MAX_DEPTH,
  MAX_LENGTH,
  PickleError,
  register,
} from "../scripts/pickle_by_hand.ts";
import {
  assertHelp,
  assertUsageError,
  repoRoot,
  runDeno,
  runScript,
  wholeRunBlock,
} from "./helpers.ts";

const NAME = "pickle_by_hand.ts";

/** A class both codecs know, under one name: each side registers it, as a reader must. */
class Pet {
  constructor(public name: string, public friend: Pet | null = null) {}
  /** Only a real Pet has this method. */
  greet(): string {
    return `I am ${this.name}`;
  }
}
register(Pet, "test.Pet");
library.register(Pet, { name: "test.Pet" });

/** Values of every type the lesson covers, alone, nested, shared and in cycles. */
function coveredValues(): unknown[] {
  const shared = { n: 1 };
  const ring: Record<string, unknown> = { name: "ring" };
  ring.self = ring;
  const cat = new Pet("cat"), dog = new Pet("dog", cat);
  cat.friend = dog; // a cycle through two class instances
  const map = new Map<unknown, unknown>([[shared, "object key"], [1n, new Set([shared])]]);
  map.set("self", map);
  const set = new Set<unknown>([1, "a"]);
  set.add(set);
  const list: unknown[] = [1];
  list.push(list, list);
  const withDollar = { $: "Date", v: 0, "__proto__": 1 }; // a "$" key is data, not a tag
  Object.defineProperty(withDollar, "__proto__", { value: { x: 1 }, enumerable: true });
  return [
    null,
    true,
    false,
    0,
    1.5,
    -7,
    "",
    "text \n\u2028 \u0000 \ud800", // plain JSON
    { a: [1, { b: null }], "": "empty key" },
    undefined,
    NaN,
    -0,
    Infinity,
    -Infinity,
    [undefined, NaN, -0],
    0n,
    1n,
    -1n,
    2n ** 200n,
    -(2n ** 64n),
    new Date(0),
    new Date(-4861728000000),
    new Date(NaN),
    new Map(),
    map,
    new Set(),
    set,
    [shared, shared, { again: shared }],
    ring,
    list,
    new Pet("rex"),
    [cat, dog],
    { pets: [cat], also: cat },
    withDollar,
    { nested: { $: "ref", id: 0 } },
    { pickle: 1, json: "an object, not an envelope" }, // tagged at the top, plain below
    [{ pickle: 1, value: 2 }],
  ];
}

/** Asserts `actual` is a faithful copy: same types, values (-0, NaN), prototypes and sharing. */
function assertSameGraph(actual: unknown, expected: unknown): void {
  assert.deepStrictEqual(actual, expected); // prototypes, Map/Set/Date contents, -0, cycles
  // deepStrictEqual does not check sharing: walk both and map each object one to one.
  const pairs = new Map<object, unknown>();
  const walk = (a: unknown, e: unknown): void => {
    if (typeof e !== "object" || e === null) return;
    if (pairs.has(e)) return assert.equal(a, pairs.get(e), "one object came back as two");
    pairs.set(e, a);
    const children = (x: object) =>
      x instanceof Map ? [...x].flat() : x instanceof Set ? [...x] : Object.values(x);
    const [as, es] = [children(a as object), children(e)];
    es.forEach((child, i) => walk(as[i], child));
  };
  walk(actual, expected);
  const distinct = new Set(pairs.values());
  assert.equal(distinct.size, pairs.size, "two objects came back as one");
}

/** Asserts that `run` throws a PickleError whose message matches `problem`. */
function assertRefused(run: () => unknown, problem: RegExp): void {
  assert.throws(run, (error) => error instanceof PickleError && problem.test(error.message));
}

// The format (version 2): a pickle is the node of its value, with no envelope around it. (This
// is the one place that says so.)
const pickled = (node: string) => node;

Deno.test("the whole run prints what the header shows", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs);
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(result.stdout, block.expected);
});

Deno.test("the lesson imports nothing", () => {
  const source = Deno.readTextFileSync(`${repoRoot}scripts/${NAME}`);
  assert.doesNotMatch(source, /^\s*import\b|\bimport\(/m);
});

Deno.test("every covered type survives a round trip, with its prototype and its sharing", () => {
  for (const value of coveredValues()) assertSameGraph(decode(encode(value)), value);
  const all = coveredValues();
  assertSameGraph(decode(encode(all)), all); // all of them nested in one array
  const cat = new Pet("cat");
  cat.friend = new Pet("dog", cat);
  const back = decode(encode(cat)) as Pet;
  assert.equal(back.greet(), "I am cat"); // rebuilt as a Pet, method and all
  assert.equal(back.friend!.friend, back);
});

Deno.test("plain JSON data is written as the JSON it is; only what JSON lacks is tagged", () => {
  const plain = { a: [1, "x", null, true], b: { c: 1.5 } };
  assert.equal(encode(plain), pickled(JSON.stringify(plain)));
  assert.ok(encode({ when: new Date(0) }).includes('{"when":{"$":"Date","v":0}}'));
});

Deno.test("encode refuses what it does not cover, in one PickleError", () => {
  class Unregistered {}
  const sparse = [1, , 3];
  const extra = Object.assign([1], { key: 2 });
  let deep: unknown = 0;
  for (let i = 0; i < MAX_DEPTH + 1; i++) deep = [deep];
  for (
    const [value, problem] of [
      [() => 1, /function/],
      [Symbol("s"), /symbol/],
      [new Unregistered(), /unregistered/],
      [Object.create(null), /unregistered/],
      [/regexp/, /unregistered/],
      [new Uint8Array(1), /unregistered/],
      [sparse, /sparse/],
      [extra, /sparse/],
      [deep, /deeper/],
    ] as const
  ) assertRefused(() => encode(value), problem);
});

// The safety rules of decode, one test each.

Deno.test('rule: a "__proto__" key is data; no prototype is ever changed', async () => {
  const texts = [
    pickled('{"__proto__":{"admin":true}}'),
    pickled('{"$":"Object","v":{"__proto__":{"admin":true}}}'),
    pickled('{"$":"class","name":"test.Pet","v":{"__proto__":{"admin":true}}}'),
  ];
  // Deno disables the `__proto__` setter by default (assigning the key makes an own property),
  // so the rule is checked where the setter works, as it does in Node and in browsers.
  const code = `import { decode, register } from ${JSON.stringify(`${repoRoot}scripts/${NAME}`)};
class Pet {}
register(Pet, "test.Pet");
const results = ${JSON.stringify(texts)}.map((text) => {
  const value = decode(text);
  const prototypeKept = [Object.prototype, Pet.prototype].includes(Object.getPrototypeOf(value));
  return [Object.hasOwn(value, "__proto__"), value.admin, ({}).admin, prototypeKept];
});
console.log(JSON.stringify([({}).__proto__ === Object.prototype, ...results]));`;
  const result = await runDeno(["eval", "--unstable-unsafe-proto", code]);
  assert.equal(result.code, 0, result.stderr);
  const [setterWorks, ...results] = JSON.parse(result.stdout);
  assert.equal(setterWorks, true, "the __proto__ accessor is enabled there");
  for (const [i, text] of texts.entries()) {
    assert.deepEqual(results[i], [true, null, null, true], text); // null: admin is undefined
  }
});

Deno.test("rule: only registered classes are built, never a name looked up elsewhere", () => {
  for (
    const name of ["Function", "Object", "Date", "constructor", "__proto__", "toString", "Pet"]
  ) {
    const text = pickled(`{"$":"class","name":${JSON.stringify(name)},"v":{}}`);
    assertRefused(() => decode(text), /unregistered/);
  }
  assertRefused(() => decode(pickled('{"$":"class","name":["test.Pet"],"v":{}}')), /unregistered/);
  assert.ok(decode(pickled('{"$":"class","name":"test.Pet","v":{}}')) instanceof Pet);
});

Deno.test("rule: nesting deeper than MAX_DEPTH is refused, not a stack overflow", () => {
  const nest = (open: string, inner: string, close: string, levels: number) =>
    pickled(open.repeat(levels) + inner + close.repeat(levels));
  decode(nest("[", "1", "]", MAX_DEPTH)); // as deep as allowed
  for (
    const text of [
      nest("[", "1", "]", MAX_DEPTH + 1),
      nest('{"a":', "1", "}", MAX_DEPTH + 1),
      nest('{"$":"Set","v":[', "", "]}", MAX_DEPTH + 1),
      nest("[", "", "]", 100_000), // what would overflow the stack of a recursion without it
    ]
  ) assertRefused(() => decode(text), /deeper than/);
});

Deno.test("rule: a text longer than MAX_LENGTH is refused before it is parsed", () => {
  const longest = JSON.stringify("x".repeat(MAX_LENGTH - 2 - pickled("").length));
  assert.equal(pickled(longest).length, MAX_LENGTH);
  assert.equal((decode(pickled(longest)) as string).length, MAX_LENGTH - 2 - pickled("").length);
  const tooLong = pickled(JSON.stringify("x".repeat(MAX_LENGTH)));
  assertRefused(() => decode(tooLong), /longer than/);
});

Deno.test("rule: an unknown tag is refused, whatever it names", () => {
  for (
    const tag of [
      '"Function"',
      '"RegExp"',
      '"toString"',
      '"__proto__"',
      '"constructor"',
      '"date"',
      '["Date"]',
      "null",
      "1",
    ]
  ) assertRefused(() => decode(pickled(`{"$":${tag},"v":0}`)), /unknown tag/);
});

Deno.test("rule: no eval: text that is only JavaScript is not run, and strings stay strings", () => {
  const global = globalThis as { pwned?: number };
  for (
    const text of [
      "globalThis.pwned = 1",
      `{"pickle":1,"value":(globalThis.pwned = 1)}`,
      `({"pickle":1,"value":globalThis.pwned = 1})`,
    ]
  ) {
    assert.throws(() => decode(text), SyntaxError);
    assert.equal(global.pwned, undefined, text);
  }
  const code = "globalThis.pwned = 1";
  assert.equal(decode(pickled(JSON.stringify(code))), code);
  assert.equal(global.pwned, undefined);
});

Deno.test("decode refuses ill-formed tags with a PickleError, never a TypeError", () => {
  for (
    const [node, problem] of [
      ['{"$":"BigInt","v":"12"}', /BigInt/],
      ['{"$":"BigInt","v":"0x"}', /BigInt/],
      ['{"$":"BigInt","v":"0x 1"}', /BigInt/],
      ['{"$":"BigInt","v":16}', /BigInt/],
      ['{"$":"Date","v":"1970-01-01"}', /number/],
      ['{"$":"Map","v":{}}', /list/],
      ['{"$":"Map","v":[[1]]}', /pair/],
      ['{"$":"Map","v":[1]}', /list/],
      ['{"$":"Set","v":"ab"}', /list/],
      ['{"$":"Array","v":null}', /list/],
      ['{"$":"Object","v":[1]}', /dict/],
      ['{"$":"class","name":"test.Pet","v":"x"}', /dict/],
      ['{"$":"ref","id":0}', /ref/],
      ['[{"$":"ref","id":0},{"$":"Object","id":0,"v":{}}]', /ref/],
      ['[{"$":"Object","id":0,"v":{}},{"$":"Object","id":0,"v":{}}]', /twice/],
    ] as const
  ) assertRefused(() => decode(pickled(node)), problem);
  for (const text of ['{"pickle":1,"value":1}', '{"pickle":1,"json":[]}', '{"pickle":2}']) {
    assertRefused(() => decode(text), /envelope/);
  }
  for (const text of ["[]", "1", '"text"', "null", '[{"pickle":1}]']) {
    assert.deepEqual(decode(text), JSON.parse(text)); // any JSON is a pickle
  }
});

// One format: each codec reads what the other writes.

Deno.test("lib/pickle_json.ts's loads reads what encode writes", () => {
  for (const value of [...coveredValues(), coveredValues()]) {
    assertSameGraph(library.loads(encode(value)), value);
  }
});

Deno.test("decode reads what lib/pickle_json.ts's dumps writes, for the types it covers", () => {
  for (const value of [...coveredValues(), coveredValues()]) {
    assertSameGraph(decode(library.dumps(value)), value);
  }
  // What the library covers beyond the lesson's subset is refused, not misread.
  for (const value of [/x/g, new Uint8Array(2), new URL("http://a/"), new Error("e")]) {
    assertRefused(() => decode(library.dumps(value)), /unknown tag/);
  }
});

Deno.test("--help prints the usage and exits 0; anything else is a usage error", async () => {
  await assertHelp(NAME, /^usage: deno run scripts\/pickle_by_hand.ts/, /--help/);
  assertUsageError(await runScript(NAME, ["--bogus"]), /unknown argument "--bogus"/);
  assertUsageError(await runScript(NAME, ["value"]), /unknown argument "value"/);
});
