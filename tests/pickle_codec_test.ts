/**
 * Tests of the codec, lib/pickle_json.ts: round trips of every supported type (alone and
 * nested), sharing and cycles, the error path of each value that cannot be stored, hostile
 * input, deep nesting, the stream helpers, a seeded property test and a seeded fuzz test.
 *
 * The fuzz test runs PICKLE_FUZZ_CASES seeded cases (default 30,000, about a second, the same
 * cases every run); a longer run by hand, with another seed:
 *
 *   PICKLE_FUZZ_CASES=2000000 PICKLE_FUZZ_SEED=11 deno test -P --filter fuzz \
 *     tests/pickle_codec_test.ts
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  dumps,
  loads,
  PickleError,
  PickleWriter,
  readPickles,
  register,
} from "../lib/pickle_json.ts";

/** A registered class, as a program would register its own. */
class Point {
  constructor(public x: number, public y: number) {}
  move(dx: number, dy: number): this {
    this.x += dx;
    this.y += dy;
    return this;
  }
}
register(Point, { name: "demo.Point" });

import { hostileCases } from "./pickle_json_speed.ts";

// ---------------------------------------------------------------------------------------------
// The checker: deep equality with types, prototypes and sharing. It walks both graphs together
// and keeps a one-to-one map from the expected objects to the actual ones, so an object met
// twice in `expected` must be one object met twice in `actual` (node:assert's deepStrictEqual
// does not check that), and a cycle must be the same cycle.

/** Throws an AssertionError, with the path, unless `actual` is a faithful copy of `expected`. */
export function assertSameGraph(actual: unknown, expected: unknown): void {
  const forward = new Map<object, object>();
  const backward = new Map<object, object>();
  const walk = (a: unknown, e: unknown, path: string): void => {
    const fail = (what: string) => assert.fail(`${path}: ${what}`);
    if (typeof e !== "object" || e === null) {
      if (typeof a !== typeof e || !Object.is(a, e)) {
        fail(`expected ${String(e)} (${typeof e}), got ${String(a)} (${typeof a})`);
      }
      return;
    }
    if (typeof a !== "object" || a === null) return fail(`expected an object, got ${String(a)}`);
    const known = forward.get(e);
    if (known !== undefined) {
      if (known !== a) fail("sharing lost: the same object came back as two");
      return;
    }
    if (backward.has(a)) fail("two objects came back as one");
    forward.set(e, a);
    backward.set(a, e);
    if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(e)) fail("prototype differs");
    const ownKeys = (value: object) => Object.keys(value);
    if (e instanceof Date) {
      if (!Object.is((a as Date).getTime(), e.getTime())) fail("Date differs");
    } else if (e instanceof RegExp) {
      const r = a as RegExp;
      if (r.source !== e.source || r.flags !== e.flags || r.lastIndex !== e.lastIndex) {
        fail(`RegExp differs: ${r} ${r.lastIndex} vs ${e} ${e.lastIndex}`);
      }
    } else if (e instanceof Map) {
      const am = [...(a as Map<unknown, unknown>)], em = [...e];
      if (am.length !== em.length) fail("Map size differs");
      em.forEach(([k, v], i) => {
        walk(am[i][0], k, `${path}.entries()[${i}][0]`);
        walk(am[i][1], v, `${path}.entries()[${i}][1]`);
      });
    } else if (e instanceof Set) {
      const as = [...(a as Set<unknown>)], es = [...e];
      if (as.length !== es.length) fail("Set size differs");
      es.forEach((v, i) => walk(as[i], v, `${path}.values()[${i}]`));
    } else if (e instanceof ArrayBuffer) {
      const b = a as ArrayBuffer;
      assert.deepEqual(new Uint8Array(b), new Uint8Array(e), `${path}: bytes differ`);
      if (b.resizable !== e.resizable || b.maxByteLength !== e.maxByteLength) {
        fail("resizability differs");
      }
    } else if (ArrayBuffer.isView(e)) {
      const v = a as Uint8Array, w = e as Uint8Array;
      if (v.byteOffset !== w.byteOffset || v.byteLength !== w.byteLength) fail("view differs");
      walk(v.buffer, w.buffer, `${path}.buffer`);
    } else if (e instanceof Error) {
      const x = a as Error & Record<string, unknown>, y = e as Error & Record<string, unknown>;
      for (const field of ["message", "stack", "cause", "errors"]) {
        if (Object.hasOwn(x, field) !== Object.hasOwn(y, field)) fail(`${field} presence`);
        if (Object.hasOwn(y, field)) walk(x[field], y[field], `${path}.${field}`);
      }
      if (x.name !== y.name) fail("name differs");
    } else if (e instanceof URL) {
      if ((a as URL).href !== e.href) fail("URL differs");
    } else if (e instanceof URLSearchParams) {
      if (String(a) !== String(e)) fail("URLSearchParams differs");
    } else if (isTemporal(e)) {
      if (temporalFingerprint(a) !== temporalFingerprint(e)) {
        fail(`Temporal differs: ${temporalFingerprint(a)} vs ${temporalFingerprint(e)}`);
      }
    }
    if (Array.isArray(e)) {
      if (!Array.isArray(a) || a.length !== e.length) fail("array length differs");
    }
    // Own enumerable properties, in order: plain, null-prototype and class objects, arrays
    // (holes are missing keys), and extra properties of the others.
    if (!ArrayBuffer.isView(e)) {
      const ak = ownKeys(a), ek = ownKeys(e);
      assert.deepEqual(ak, ek, `${path}: keys differ`);
      for (const key of ek) {
        walk(
          (a as Record<string, unknown>)[key],
          (e as Record<string, unknown>)[key],
          `${path}[${JSON.stringify(key)}]`,
        );
      }
    }
  };
  walk(actual, expected, "$");
}

const temporalTypes = [
  Temporal.Instant,
  Temporal.ZonedDateTime,
  Temporal.PlainDate,
  Temporal.PlainTime,
  Temporal.PlainDateTime,
  Temporal.PlainYearMonth,
  Temporal.PlainMonthDay,
  Temporal.Duration,
];
const isTemporal = (value: object) =>
  temporalTypes.some((type) => Object.getPrototypeOf(value) === type.prototype);

/**
 * Everything that tells two Temporal values apart: the string with the calendar and the whole
 * reference date (a PlainYearMonth's day, a PlainMonthDay's year), a Duration's ten fields.
 */
function temporalFingerprint(value: unknown): string {
  if (value instanceof Temporal.Duration) {
    return JSON.stringify([
      value.years,
      value.months,
      value.weeks,
      value.days,
      value.hours,
      value.minutes,
      value.seconds,
      value.milliseconds,
      value.microseconds,
      value.nanoseconds,
    ]);
  }
  if (value instanceof Temporal.Instant || value instanceof Temporal.PlainTime) {
    return value.toString();
  }
  return (value as Temporal.PlainDate).toString({ calendarName: "always" });
}

/** One value of each Temporal type, and the cases their default strings would lose. */
function temporalSamples(): Record<string, unknown> {
  return {
    instant: Temporal.Instant.from("2020-01-01T00:00:00.123456789Z"),
    zoned: Temporal.ZonedDateTime.from("2021-03-14T03:30:00-04:00[America/New_York]"),
    zonedLmt: Temporal.ZonedDateTime.from("1900-01-01T00:00:00+00:09:21[Europe/Paris]"),
    zonedJapanese: Temporal.ZonedDateTime.from("2019-05-01T00:00+09:00[Asia/Tokyo][u-ca=japanese]"),
    plainDate: Temporal.PlainDate.from("2024-02-29"),
    hebrewDate: Temporal.PlainDate.from("2020-01-01[u-ca=hebrew]"),
    plainTime: Temporal.PlainTime.from("23:59:59.999999999"),
    plainDateTime: Temporal.PlainDateTime.from("-271821-04-20T00:00"),
    yearMonth: Temporal.PlainYearMonth.from("2020-01"),
    yearMonthDay15: new Temporal.PlainYearMonth(2020, 1, "iso8601", 15),
    hebrewYearMonth: Temporal.PlainYearMonth.from({
      year: 5784,
      monthCode: "M05L",
      calendar: "hebrew",
    }),
    monthDay: Temporal.PlainMonthDay.from("12-25"),
    leapDay1980: new Temporal.PlainMonthDay(2, 29, "iso8601", 1980),
    hebrewMonthDay: Temporal.PlainMonthDay.from({ monthCode: "M12", day: 25, calendar: "hebrew" }),
    duration: Temporal.Duration.from("P1Y2M3W4DT5H6M7.008009010S"),
    unbalanced: Temporal.Duration.from({ minutes: 90, milliseconds: 1500 }), // not PT1M30.5S
    negative: Temporal.Duration.from({ days: -1, nanoseconds: -9e15 }),
    zero: new Temporal.Duration(),
  };
}

const roundTrip = <T>(value: T): T => loads(dumps(value)) as T;

function assertRoundTrip(value: unknown): void {
  assertSameGraph(roundTrip(value), value);
}

// Snapshots of the prototypes a hostile pickle would like to change.
const prototypes = [Object.prototype, Array.prototype, Function.prototype, Map.prototype];
const prototypeKeys = prototypes.map((p) => Reflect.ownKeys(p).length);
function assertPrototypesUntouched(): void {
  prototypes.forEach((p, i) => assert.equal(Reflect.ownKeys(p).length, prototypeKeys[i]));
  assert.equal(Object.getPrototypeOf(Object.prototype), null);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
}

class Temperature {
  #kelvin: number;
  constructor(kelvin: number) {
    this.#kelvin = kelvin;
  }
  get kelvin(): number {
    return this.#kelvin;
  }
}
register(Temperature, {
  name: "test.Temperature",
  reduce: (t) => t.kelvin,
  restore: (state) => new Temperature(state as number),
});
class Tree {
  children: Tree[] = [];
  constructor(public label: string) {
    Tree.constructed++;
  }
  static constructed = 0;
}
register(Tree, { name: "test.Tree" });

// One sample of every supported type, built fresh each time (some tests mutate them).
function samples(): Record<string, unknown> {
  const sparse = [1, , 3]; // a hole at 1
  (sparse as unknown as Record<string, unknown>).extra = "kept";
  const nullProto = Object.create(null);
  nullProto.a = 1;
  Object.defineProperty(nullProto, "__proto__", { value: "data", enumerable: true });
  const withProtoKey = JSON.parse('{"__proto__": {"polluted": true}, "b": 2}');
  const regexp = /a(b+)c/gimsuy;
  regexp.lastIndex = 3;
  const buffer = new ArrayBuffer(16);
  new Uint8Array(buffer).set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  const typed: Record<string, unknown> = {};
  for (
    const T of [
      Int8Array,
      Uint8Array,
      Uint8ClampedArray,
      Int16Array,
      Uint16Array,
      Int32Array,
      Uint32Array,
      Float32Array,
      Float64Array,
      BigInt64Array,
      BigUint64Array,
      Float16Array,
    ]
  ) typed[T.name] = new T(buffer, 8, 8 / T.BYTES_PER_ELEMENT);
  const error = new TypeError("bad type", { cause: new Error("root cause") });
  (error as unknown as Record<string, unknown>).code = "E_BAD";
  const errors: Record<string, unknown> = {
    error,
    range: new RangeError("range"),
    reference: new ReferenceError("ref"),
    syntax: new SyntaxError("syntax"),
    uri: new URIError("uri"),
    evalError: new EvalError("eval"),
    aggregate: new AggregateError([new Error("one"), "two"], "many"),
    noMessage: new Error(),
  };
  return {
    undefined: undefined,
    null: null,
    true: true,
    false: false,
    number: 1.5,
    NaN: NaN,
    Infinity: Infinity,
    minusInfinity: -Infinity,
    minusZero: -0,
    bigint: -(2n ** 100n),
    string: "héllo \u2028 \u2029 \n \u0000 \ud800 lone \udfff",
    date: new Date(Date.UTC(2024, 1, 29, 12, 30)),
    invalidDate: new Date(NaN),
    regexp,
    map: new Map<unknown, unknown>([[{ key: "object" }, 1], [NaN, "nan"], ["s", new Set([1])]]),
    set: new Set<unknown>(["a", 1, { b: 2 }, 3n]),
    sparse,
    empty: [],
    holes: new Array(5),
    nullProto,
    withProtoKey,
    dollarKey: { $: "not a tag", v: 1 },
    buffer,
    resizable: new ArrayBuffer(4, { maxByteLength: 64 }),
    dataView: new DataView(buffer, 2, 5),
    ...typed,
    ...errors,
    url: new URL("https://user@example.com:8080/p/a/t/h?query=string#hash"),
    params: new URLSearchParams("a=1&b=%20two&a=3"),
    point: new Point(3, 4),
    temperature: new Temperature(300),
    tree: new Tree("root"),
    ...temporalSamples(),
  };
}

Deno.test("every supported type survives a round trip alone", () => {
  for (const [name, value] of Object.entries(samples())) {
    try {
      assertRoundTrip(value);
    } catch (error) {
      throw new Error(`${name}: ${(error as Error).message}`);
    }
  }
});

Deno.test("every supported type survives nested in each container", () => {
  for (const [name, value] of Object.entries(samples())) {
    const containers = [
      [value],
      { inner: value },
      new Map([[value, value]]),
      new Set([value]),
      Object.assign(Object.create(null), { value }),
      Object.assign(new Tree("t"), { extra: value }),
      new Error("e", { cause: value }),
    ];
    for (const container of containers) {
      try {
        assertRoundTrip(container);
      } catch (error) {
        throw new Error(`${name} in ${Object.prototype.toString.call(container)}: ${error}`);
      }
    }
  }
  assertRoundTrip(samples()); // all of them in one object
});

Deno.test("types and values that matter are really kept", () => {
  const back = roundTrip(samples());
  assert.ok(Object.is(back.minusZero, -0));
  assert.equal(typeof back.bigint, "bigint");
  assert.equal(back.string, samples().string); // lone surrogates included
  assert.ok(back.date instanceof Date);
  assert.equal((back.regexp as RegExp).lastIndex, 3);
  const sparse = back.sparse as unknown[];
  assert.equal(sparse.length, 3);
  assert.ok(!(1 in sparse));
  assert.equal((back.holes as unknown[]).length, 5);
  assert.equal(Object.getPrototypeOf(back.nullProto), null);
  const withProtoKey = back.withProtoKey as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(withProtoKey), Object.prototype);
  assert.deepEqual(Object.keys(withProtoKey), ["__proto__", "b"]);
  assert.ok(back.point instanceof Point);
  assert.deepEqual((back.point as Point).move(1, 1), new Point(4, 5));
  assert.equal((back.temperature as Temperature).kelvin, 300);
  const constructedBefore = Tree.constructed;
  const tree = roundTrip(new Tree("x"));
  assert.equal(Tree.constructed, constructedBefore + 1, "loads must not run the constructor");
  assert.ok(tree instanceof Tree);
  assert.ok(back.aggregate instanceof AggregateError);
  assert.equal(((back.aggregate as AggregateError).errors[0] as Error).message, "one");
  assert.ok(Error.isError(back.error), "a real Error, not an object that looks like one");
});

Deno.test("plain JSON data is stored as itself, only what JSON cannot say is tagged", () => {
  const data = { id: 7, name: "x", tags: ["a", "b"], nested: { ok: true, none: null } };
  assert.equal(dumps(data), JSON.stringify(data)); // no envelope: the JSON is the pickle
  for (const value of [1, "text", null, true, [], [1, [2]], { $price: "$5", "a$": "$" }]) {
    assert.equal(dumps(value), JSON.stringify(value));
    assertRoundTrip(value);
  }
  assert.equal(dumps({ when: new Date(0), n: 1 }), '{"when":{"$":"Date","v":0},"n":1}');
  assert.equal(dumps("\u2028").includes("\u2028"), false, "U+2028 is escaped on the wire");
  // The escapes: an object with a "$" key (anywhere), and one at the top with a "pickle" key
  // (which would read as a version 1 envelope), are wrapped in an "Object" tag.
  assert.equal(dumps({ $: "Date", v: 0 }), '{"$":"Object","v":{"$":"Date","v":0}}');
  assert.equal(dumps([{ $: 1 }]), '[{"$":"Object","v":{"$":1}}]');
  assert.equal(dumps({ pickle: 1, json: 2 }), '{"$":"Object","v":{"pickle":1,"json":2}}');
  assert.equal(
    dumps({ pickle: 1, d: new Date(0) }),
    '{"$":"Object","v":{"pickle":1,"d":{"$":"Date","v":0}}}',
  );
  assert.equal(dumps([{ pickle: 1 }]), '[{"pickle":1}]'); // only at the top
  const escaped = [{ $: "Date", v: 0 }, { pickle: 1, json: 2 }, { pickle: 1, value: { $: "ref" } }];
  for (const value of escaped) assertRoundTrip(value);
  // "$" spelt as an escape is a "$" key too.
  assert.ok(loads('{"\\u0024":"Date","v":0}') instanceof Date);
  assert.deepEqual(loads('{"a":"\\u0024"}'), { a: "$" });
});

Deno.test("version 1 pickles (with their envelope) are still read, a newer version is refused", () => {
  assert.deepEqual(loads('{"pickle":1,"json":{"$":"Date","v":0}}'), { $: "Date", v: 0 });
  assert.deepEqual(loads('{"pickle":1,"value":{"when":{"$":"Date","v":0}}}'), {
    when: new Date(0),
  });
  assert.deepEqual(loads('{ "value" : [1, {"$":"NaN"}], "pickle" : 1 }'), [1, NaN]);
  assert.deepEqual(loads('{"pickle":2,"value":{"$":"-0"}}'), -0); // version 2 may have one too
  assert.throws(() => loads('{"pickle":3,"json":1}'), /version 3 is newer than this reader/);
  for (const text of ['{"pickle":0,"json":1}', '{"pickle":"1","json":1}', '{"pickle":1}']) {
    assert.throws(() => loads(text), /not a pickle/);
  }
});

Deno.test("10,000 tiny messages: the pickles are no longer than 1.1 times their JSON", () => {
  const messages = Array.from({ length: 10_000 }, (_, seq) => ({
    seq,
    text: `Number ${String(seq % 1000).padStart(3, "0")}`,
  }));
  const utf8 = new TextEncoder();
  const bytes = (texts: string[]) => texts.reduce((sum, text) => sum + utf8.encode(text).length, 0);
  const pickleBytes = bytes(messages.map((message) => dumps(message)));
  const jsonBytes = bytes(messages.map((message) => JSON.stringify(message)));
  console.log(`  10,000 tiny messages: ${pickleBytes} bytes of pickles, ${jsonBytes} of JSON`);
  assert.ok(pickleBytes <= 1.1 * jsonBytes, `${pickleBytes} > 1.1 x ${jsonBytes}`);
  // And the same for values with a few tags: the tags cost, the envelope no longer does.
  const withDates = messages.map((message) => ({ ...message, at: new Date(message.seq) }));
  const tagged = bytes(withDates.map((message) => dumps(message)));
  const taggedJson = bytes(withDates.map((message) => JSON.stringify(message)));
  assert.ok(tagged <= 1.1 * taggedJson, `${tagged} > 1.1 x ${taggedJson}`);
});

Deno.test("Temporal values come back of their type, equal, with calendar and reference date", () => {
  for (const [name, value] of Object.entries(temporalSamples())) {
    const back = roundTrip(value);
    assert.equal(Object.getPrototypeOf(back), Object.getPrototypeOf(value), name);
    assert.equal(temporalFingerprint(back), temporalFingerprint(value), name);
    if (!(value instanceof Temporal.Duration)) {
      assert.ok((value as Temporal.PlainDate).equals(back as Temporal.PlainDate), name);
    }
  }
  const instant = Temporal.Instant.fromEpochMilliseconds(0);
  assert.equal(dumps(instant), '{"$":"Temporal.Instant","v":"1970-01-01T00:00:00Z"}');
  const [a, b] = roundTrip([instant, instant]); // one object, as for any other type
  assert.equal(a, b);
  // What each type's default string loses is kept: the reference day, the unbalanced fields.
  const yearMonth = roundTrip(new Temporal.PlainYearMonth(2020, 1, "iso8601", 15));
  assert.equal(yearMonth.toString({ calendarName: "always" }), "2020-01-15[u-ca=iso8601]");
  const duration = roundTrip(Temporal.Duration.from({ milliseconds: 1500 }));
  assert.deepEqual([duration.seconds, duration.milliseconds], [0, 1500]);
});

Deno.test("Temporal: bad strings and fields are refused with PickleError, naming the type", () => {
  const bad: [string, RegExp][] = [
    ['{"$":"Temporal.Instant","v":"yesterday"}', /bad Temporal.Instant/],
    ['{"$":"Temporal.Instant","v":"2020-01-01T00:00:00"}', /bad Temporal.Instant/], // no offset
    ['{"$":"Temporal.Instant","v":0}', /"v" must be a string/],
    ['{"$":"Temporal.Instant"}', /"v" must be a string/],
    ['{"$":"Temporal.ZonedDateTime","v":"2020-01-01T00:00:00+05:00[Europe/Paris]"}', /Zoned/],
    ['{"$":"Temporal.ZonedDateTime","v":"2020-01-01T00:00:00[Mars/Olympus]"}', /Zoned/],
    ['{"$":"Temporal.ZonedDateTime","v":"2020-01-01T00:00:00Z"}', /Zoned/], // no time zone
    ['{"$":"Temporal.PlainDate","v":"2021-02-29"}', /PlainDate/],
    ['{"$":"Temporal.PlainDate","v":"2020-01-01[u-ca=martian]"}', /PlainDate/],
    ['{"$":"Temporal.PlainDate","v":["2020-01-01"]}', /must be a string/],
    ['{"$":"Temporal.PlainTime","v":"25:00"}', /PlainTime/],
    ['{"$":"Temporal.PlainDateTime","v":"+275760-09-14T00:00"}', /PlainDateTime/], // past the end
    ['{"$":"Temporal.PlainYearMonth","v":"2020-13-01[u-ca=iso8601]"}', /PlainYearMonth/],
    ['{"$":"Temporal.PlainYearMonth","v":"2020-01"}', /PlainYearMonth/], // no reference day
    ['{"$":"Temporal.PlainMonthDay","v":"12-25"}', /PlainMonthDay/], // no reference year
    ['{"$":"Temporal.PlainMonthDay","v":{"month":12,"day":25}}', /must be a string/],
    ['{"$":"Temporal.Duration","v":"PT1H"}', /"v" must be an object/],
    ['{"$":"Temporal.Duration","v":{"hours":1,"minutes":-1}}', /Duration/], // mixed signs
    ['{"$":"Temporal.Duration","v":{"hours":1.5}}', /Duration/],
    ['{"$":"Temporal.Duration","v":{"hours":"1"}}', /"hours" must be a number/],
    ['{"$":"Temporal.Duration","v":{"__proto__":1}}', /not a Duration field/],
    ['{"$":"Temporal.Duration","v":{"constructor":1}}', /not a Duration field/],
    ['{"$":"Temporal.Duration","v":{"years":1e300}}', /Duration/],
    ['{"$":"Temporal.Now","v":""}', /unknown tag/],
    ['{"$":"Temporal.Instant.prototype","v":""}', /unknown tag/],
  ];
  for (const [node, problem] of bad) {
    for (const text of [node, `{"pickle":1,"value":${node}}`]) { // version 2, and 1
      assert.throws(() => loads(text), (error: unknown) => {
        assert.ok(error instanceof PickleError, `${text}: ${error}`);
        assert.match(error.message, problem, text);
        assert.ok(!error.message.includes("\n"), "a one-line message");
        return true;
      });
    }
  }
  assertPrototypesUntouched();
});

Deno.test("where the runtime has no Temporal, the codec loads and refuses Temporal tags plainly", async () => {
  // The codec looks Temporal up once, when it is imported: so remove it first, then import.
  const code = `delete globalThis.Temporal;
const { dumps, loads } = await import(${
    JSON.stringify(new URL("../lib/pickle_json.ts", import.meta.url).href)
  });
console.log(dumps(new Date(0)));
try { loads('{"$":"Temporal.Instant","v":"1970-01-01T00:00:00Z"}'); }
catch (error) { console.log(error.name, error.message); }`;
  const command = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  });
  const { code: exitCode, stdout, stderr } = await command.output();
  const decoder = new TextDecoder();
  assert.equal(exitCode, 0, decoder.decode(stderr));
  assert.equal(
    decoder.decode(stdout),
    '{"$":"Date","v":0}\n' +
      "PickleError at $: Temporal.Instant: this runtime has no Temporal\n",
  );
});

Deno.test("shared references and cycles come back shared, anywhere in the graph", () => {
  const shared = { shared: true };
  const cycle: Record<string, unknown> = { name: "cycle" };
  cycle.self = cycle;
  const map = new Map<unknown, unknown>();
  map.set(map, map); // a Map that is its own key and value
  const set = new Set<unknown>();
  set.add(set);
  const array: unknown[] = [];
  array.push(array, shared);
  const tree = new Tree("parent");
  tree.children.push(tree);
  const error = new Error("loop");
  (error as Error & { cause: unknown }).cause = error;
  const buffer = new ArrayBuffer(8);
  const views = [new Uint8Array(buffer), new Float64Array(buffer), new DataView(buffer, 4)];
  const graph = { a: shared, b: [shared, shared], cycle, map, set, array, tree, error, views };
  const back = roundTrip(graph);
  assertSameGraph(back, graph);
  assert.equal(back.a, back.b[0]);
  assert.equal((back.views[0] as Uint8Array).buffer, (back.views[1] as Float64Array).buffer);
  (back.views[0] as Uint8Array)[0] = 42; // one buffer: a write through one view shows in all
  assert.equal((back.views[2] as DataView).buffer, (back.views[0] as Uint8Array).buffer);
});

Deno.test("a value that cannot be stored throws a PickleError naming its path", () => {
  class Unregistered {}
  const cases: [unknown, string][] = [
    [{ users: [{}, {}, {}, { onClick() {} }] }, "$.users[3].onClick: a function cannot be pickled"],
    [[Symbol("s")], "$[0]: a symbol cannot be pickled"],
    [{ w: new WeakMap() }, "$.w: a WeakMap cannot be pickled"],
    [{ w: new WeakSet() }, "$.w: a WeakSet cannot be pickled"],
    [{ p: Promise.resolve() }, "$.p: a Promise cannot be pickled"],
    [{ r: new WeakRef({}) }, "$.r: a WeakRef cannot be pickled"],
    [new Map([["k", new Unregistered()]]), "an instance of class Unregistered"],
    [new Set([() => 1]), "$.values()[0]: a function"],
    [{ "odd key": { f: Math.max } }, '$["odd key"].f: a function'],
    [new Uint8Array(new SharedArrayBuffer(4)), "SharedArrayBuffer"],
    [new Error("e", { cause: Symbol() }), "$.cause: a symbol"],
    [Object.assign(new Tree("t"), { f() {} }), "$.f: a function"],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => dumps(value), (error: unknown) => {
      assert.ok(error instanceof PickleError, `${message}: ${error}`);
      assert.ok(error.message.includes(message), `${error.message} should include ${message}`);
      return true;
    });
  }
  const detached = new ArrayBuffer(8);
  detached.transfer();
  assert.throws(() => dumps(detached), PickleError);
});

Deno.test("register: reduce/restore, names, and a cycle through reduce is refused", () => {
  class Anonymous {}
  assert.throws(() => register(Anonymous, { name: "test.Tree" }), PickleError);
  assert.throws(() => register(Anonymous, { reduce: () => 1 }), PickleError);
  class Box {
    constructor(public content: unknown) {}
  }
  register(Box, { name: "test.Box", reduce: (b) => b.content, restore: (c) => new Box(c) });
  const box = new Box(null);
  box.content = { back: box };
  assert.throws(() => dumps(box), /cycle back into an object being reduce\(\)d/);
  // A reference to a custom class from elsewhere (not a cycle) is fine.
  const shared = new Box(5);
  const back = roundTrip([shared, shared]);
  assert.equal(back[0], back[1]);
  assert.ok(back[0] instanceof Box);
});

Deno.test("loads refuses malformed, hostile and unknown input with PickleError only", () => {
  const bad = [
    "",
    "not json",
    "[] []",
    '{"pickle":1}',
    '{"pickle":3,"json":1}',
    '{"pickle":"1","json":1}',
    '{"pickle":1,"json":1,"extra":2}',
    '{"pickle":1,"v":1}',
    '{"pickle":null}',
    '{"pickle":1,"value":{"$":"Function","v":"return 1"}}',
    '{"pickle":1,"value":{"$":"class","name":"__proto__","v":{}}}',
    '{"pickle":1,"value":{"$":"class","name":"constructor","v":{}}}',
    '{"pickle":1,"value":{"$":"class","name":"Object","v":{}}}',
    '{"pickle":1,"value":{"$":"ref","id":0}}',
    '{"pickle":1,"value":[{"$":"Object","id":0,"v":{}},{"$":"Object","id":0,"v":{}}]}',
    '{"pickle":1,"value":{"$":"BigInt","v":"12"}}', // decimal: not this format
    '{"pickle":1,"value":{"$":"BigInt","v":"0x12g3"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":""}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"0x"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"-0x"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"--0x1"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"+0x1"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"0X1f"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"0x-1f"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":" 0x1f"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"0x1f "}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"0x1 f"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"0x1_0"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":"0b101"}}',
    '{"pickle":1,"value":{"$":"BigInt","v":16}}',
    '{"pickle":1,"value":{"$":"Date","v":"yesterday"}}',
    '{"pickle":1,"value":{"$":"Date","v":1e300}}',
    '{"pickle":1,"value":{"$":"RegExp","source":"(","flags":""}}',
    '{"pickle":1,"value":{"$":"RegExp","source":"a","flags":"zz"}}',
    '{"pickle":1,"value":{"$":"URL","v":"not a url"}}',
    '{"pickle":1,"value":{"$":"ArrayBuffer","v":"!!!"}}',
    '{"pickle":1,"value":{"$":"ArrayBuffer","v":"","maxByteLength":1e12}}',
    '{"pickle":1,"value":{"$":"Uint32Array","buffer":{"$":"ArrayBuffer","v":"AAAA"},"byteOffset":1,"length":1}}',
    '{"pickle":1,"value":{"$":"Uint8Array","buffer":{"$":"Date","v":0},"byteOffset":0,"length":0}}',
    '{"pickle":1,"value":{"$":"Uint8Array","buffer":[],"byteOffset":0,"length":0}}',
    '{"pickle":1,"value":{"$":"DataView","buffer":{"$":"ArrayBuffer","v":""},"byteOffset":0,"byteLength":9}}',
    '{"pickle":1,"value":{"$":"Array","length":-1,"v":{}}}',
    '{"pickle":1,"value":{"$":"Array","length":2,"v":{"length":9}}}',
    '{"pickle":1,"value":{"$":"Map","v":[[1]]}}',
    '{"pickle":1,"value":{"$":"Map","v":{}}}',
    '{"pickle":1,"value":{"$":"Set","v":1}}',
    '{"pickle":1,"value":{"$":"Object","v":[]}}',
    '{"pickle":1,"value":{"$":"Object","proto":{},"v":{}}}',
    '{"pickle":1,"value":{"$":{"x":1}}}',
    '{"pickle":1,"value":{"$":"test.Temperature"}}',
    '{"pickle":1,"value":{"$":"class","name":"test.Temperature"}}',
  ];
  // Each one as version 1 wrote it (in an envelope) and, where it has one, its body alone.
  const bodies = bad.map((text) => text.match(/^\{"pickle":1,"value":(.*)\}$/)?.[1]);
  for (const text of [...bad, ...bodies.filter((body) => body !== undefined)]) {
    assert.throws(() => loads(text), (error: unknown) => {
      assert.ok(error instanceof PickleError, `${text.slice(0, 80)}: ${error}`);
      assert.ok(!error.message.includes("\n"), "a one-line message");
      return true;
    });
  }
  assert.throws(() => loads('{"pickle":3,"json":1}'), /version 3 is newer than this reader/);
  assert.throws(() => loads("x".repeat(100), { maxLength: 50 }), /maxLength/);
  assert.throws(
    () => loads(dumps(new ArrayBuffer(2048)), { maxBufferBytes: 1024 }),
    /maxBufferBytes/,
  );
  // maxBufferBytes bounds all the buffers of a pickle together; a resizable one counts as its
  // maxByteLength, and at least 1 MiB (each one reserves address space with a system call).
  const buffers = dumps([new ArrayBuffer(600), new ArrayBuffer(600)]);
  assert.equal((loads(buffers, { maxBufferBytes: 1200 }) as ArrayBuffer[]).length, 2);
  assert.throws(() => loads(buffers, { maxBufferBytes: 1199 }), /maxBufferBytes/);
  const resizable = (count: number) =>
    dumps(Array.from({ length: count }, () => new ArrayBuffer(1, { maxByteLength: 2 })));
  assert.equal((loads(resizable(64)) as ArrayBuffer[]).length, 64);
  assert.throws(() => loads(resizable(65)), /maxBufferBytes \(67108864\) in total/);
  assert.throws(() => loads(resizable(1), { maxBufferBytes: 1024 }), /maxBufferBytes/);
  assertPrototypesUntouched();
});

Deno.test("loads keeps __proto__ as data and changes no prototype", () => {
  const texts = [
    '{"pickle":1,"json":{"__proto__":{"polluted":true}}}',
    '{"pickle":1,"value":{"__proto__":{"polluted":true},"d":{"$":"Date","v":0}}}',
    '{"pickle":1,"value":{"__proto__":{"$":"Date","v":0}}}',
    '{"pickle":1,"value":{"$":"Object","v":{"__proto__":{"$":"Map","v":[]}}}}',
    '{"pickle":1,"value":{"$":"Object","proto":null,"v":{"__proto__":{"polluted":1}}}}',
    '{"pickle":1,"value":{"$":"Array","length":1,"v":{"__proto__":{"polluted":1}}}}',
    '{"pickle":1,"value":{"$":"class","name":"demo.Point","v":{"__proto__":{"polluted":1}}}}',
    '{"pickle":1,"value":{"$":"Error","v":{"__proto__":{"polluted":1}}}}',
    '{"pickle":1,"value":{"$":"Map","v":[["__proto__",{"polluted":1}]]}}',
    '{"pickle":1,"value":{"constructor":{"prototype":{"polluted":1}}}}',
  ];
  const bodies = texts.map((text) => text.match(/^\{"pickle":1,"value":(.*)\}$/)?.[1]);
  for (const text of [...texts, ...bodies.filter((body) => body !== undefined)]) {
    const value = loads(text) as Record<string, unknown>;
    if (!(value instanceof Map) && Object.getPrototypeOf(value) !== null) {
      assert.ok(Object.hasOwn(value, "__proto__") || Object.hasOwn(value, "constructor"), text);
      const expected = text.includes('"demo.Point"')
        ? Point.prototype
        : text.includes('"Error"')
        ? Error.prototype
        : text.includes('"Array"')
        ? Array.prototype
        : Object.prototype;
      assert.equal(Object.getPrototypeOf(value), expected, text);
    }
  }
  assertPrototypesUntouched();
});

Deno.test("hostile but valid pickles (the bench's cases) load or fail with PickleError", () => {
  // Behaviour only: their cost is measured by `deno run tests/pickle_json_speed.ts --hostile`.
  const refusals: [RegExp, RegExp][] = [ // case name, message: the cases loads must refuse
    [/^1M-deep/, /nested deeper than maxDepth/],
    [/^resizable buffers/, /ArrayBuffers larger than maxBufferBytes \(67108864\) in total/],
    [/^unknown tag/, /unknown tag "Nope"/],
  ];
  let refused = 0;
  for (const { name, text } of hostileCases()) {
    const refusal = refusals.find(([pattern]) => pattern.test(name));
    if (refusal === undefined) {
      const value = loads(text);
      assert.ok(typeof value === "object" && value !== null, name);
      continue;
    }
    assert.throws(() => loads(text), (error: unknown) => {
      assert.ok(error instanceof PickleError, `${name}: ${error}`);
      assert.match(error.message, refusal[1], name);
      assert.ok(!error.message.includes("\n"), `${name}: a one-line message`);
      return true;
    });
    refused++;
  }
  assert.equal(refused, 5);
  assertPrototypesUntouched();
});

Deno.test("errors come back as real errors, however many (made without a stack walk)", () => {
  const errors = Array.from({ length: 3_000 }, (_, i) => {
    const Type = [Error, RangeError, TypeError, SyntaxError, URIError, EvalError][i % 6];
    return i % 7 === 0 ? new Error(`e${i}`, { cause: i }) : new Type(`e${i}`);
  });
  errors.push(new AggregateError([1, "two"], "many"));
  const back = roundTrip(errors);
  assertSameGraph(back, errors);
  assert.equal(new Set(back).size, back.length, "every error is a new object");
  assert.notEqual(roundTrip(errors)[0], back[0], "and so is every error of the next loads");
  back.forEach((error, i) => {
    const expected = errors[i];
    assert.ok(Error.isError(error) && error instanceof expected.constructor, `${i}`);
    assert.equal(error.name, expected.name);
    assert.equal(String(error), String(expected));
    assert.equal(error.stack, expected.stack);
    assert.deepEqual(
      Object.getOwnPropertyNames(error).sort(),
      Object.getOwnPropertyNames(expected).sort(),
    );
  });
  assert.deepEqual((back.at(-1) as AggregateError).errors, [1, "two"]);
  // Fields only: no stack, no message.
  const bare = loads('{"$":"TypeError"}') as TypeError;
  assert.ok(bare instanceof TypeError && Error.isError(bare));
  assert.deepEqual(Object.getOwnPropertyNames(bare), []);
  assert.equal(String(bare), "TypeError");
});

Deno.test("BigInts are written in hexadecimal and read back exactly, any size", () => {
  assert.equal(dumps(255n), '{"$":"BigInt","v":"0xff"}');
  assert.equal(dumps(-256n), '{"$":"BigInt","v":"-0x100"}');
  assert.equal(dumps(0n), '{"$":"BigInt","v":"0x0"}');
  for (const value of [0n, 1n, -1n, 2n ** 64n, -(3n ** 100_000n), 7n ** 50_000n]) {
    assert.equal(roundTrip(value), value);
  }
  const read = (v: string) => loads(`{"$":"BigInt","v":"${v}"}`);
  assert.equal(read("0x00FF"), 255n); // uppercase digits and leading zeros are read too
  assert.equal(read("-0x0"), 0n);
});

Deno.test("docs/pickle_format.md: each example is exactly what dumps writes for its value", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/pickle_format.md", import.meta.url));
  const examples = doc.split("## Examples")[1].split("```text\n")[1].split("```")[0].trim();
  const lines = examples.split("\n");
  assert.ok(lines.length >= 5);
  for (const line of lines) assert.equal(dumps(loads(line)), line);
  // The version 1 examples read as the same values as the first version 2 ones.
  const version1 = doc.split("## Examples")[1].split("```text\n")[2].split("```")[0].trim();
  version1.split("\n").forEach((line, i) => assertSameGraph(loads(line), loads(lines[i])));
});

// Builds `levels` nested one-element arrays, with `leaf` at the bottom, without recursion.
function nested(levels: number, leaf: unknown): unknown[] {
  const root: unknown[] = [];
  let current = root;
  for (let i = 1; i < levels; i++) {
    const next: unknown[] = [];
    current.push(next);
    current = next;
  }
  current.push(leaf);
  return root;
}

function depthOf(value: unknown): number {
  let depth = 0;
  while (Array.isArray(value)) {
    depth++;
    value = value[0];
  }
  return depth;
}

Deno.test("100,000 levels of nesting: a PickleError by default, works when allowed", () => {
  for (const leaf of [1, new Date(0)]) { // plain JSON, and tagged (walked by the codec)
    const deep = nested(100_000, leaf);
    assert.throws(() => dumps(deep), /deeper than maxDepth \(10000\)/);
    const text = dumps(deep, { maxDepth: 200_000 });
    if (leaf instanceof Date) {
      assert.throws(() => loads(text), /deeper than maxDepth/);
    }
    const back = loads(text, { maxDepth: 200_000 });
    assert.equal(depthOf(back), 100_000);
  }
  // Hostile depth: a million levels of JSON; loads never overflows the stack.
  const million = "[".repeat(1_000_000) + "]".repeat(1_000_000);
  assert.equal(depthOf(loads(million)), 1_000_000); // no "$": returned as JSON.parse built it
  assert.equal(depthOf(loads(`{"pickle":1,"json":${million}}`)), 1_000_000);
  const taggedDeep = "[".repeat(1_000_000) + '{"$":"NaN"}' + "]".repeat(1_000_000);
  assert.throws(() => loads(taggedDeep), PickleError);
  assert.throws(() => loads(`{"pickle":1,"value":${taggedDeep}}`), PickleError);
  // An option given as undefined means its default, not "no limit".
  assert.throws(() => loads(taggedDeep, { maxDepth: undefined }), /maxDepth/);
  assert.equal(depthOf(loads(taggedDeep, { maxDepth: Infinity })), 1_000_000);
});

// A ReadableStream that hands out the bytes in the given chunk sizes (cycled).
function chunked(bytes: Uint8Array, sizes: number[]): ReadableStream<Uint8Array> {
  let offset = 0, turn = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      const size = sizes[turn++ % sizes.length];
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<unknown[]> {
  const values: unknown[] = [];
  for await (const value of readPickles(stream)) values.push(value);
  return values;
}

Deno.test("streams: one pickle a line, however the bytes are cut", async () => {
  const values = [
    samples(),
    "é\u2028\u2029\ud800",
    "x".repeat(1_000_000), // a long line
    { n: 1 },
    new Map([[1, 2]]),
  ];
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = new PickleWriter(writable);
  for (const value of values) writer.send(value);
  const closing = writer.close();
  const bytes = new Uint8Array(await new Response(readable).arrayBuffer());
  await closing;
  assert.equal(new TextDecoder().decode(bytes).split("\n").length, values.length + 1);
  // Cuts everywhere: inside lines, inside UTF-8 sequences, many lines in one chunk.
  for (const sizes of [[1, 4093, 3, 7], [65536], [bytes.length]]) {
    const back = await collect(chunked(bytes, sizes));
    assertSameGraph(back, values);
  }
  // A stream cut in the middle of a line, a line too long, bytes that are not UTF-8.
  await assert.rejects(collect(chunked(bytes.slice(0, bytes.length - 3), [100])), /middle/);
  await assert.rejects(
    (async () => {
      for await (const _ of readPickles(chunked(bytes, [1000]), { maxLength: 5000 })) { /* */ }
    })(),
    /longer than maxLength/,
  );
  await assert.rejects(collect(chunked(new Uint8Array([0xff, 0x0a]), [2])), /UTF-8/);
});

Deno.test("PickleWriter reports a closed reader on the next call, not as a crash", async () => {
  const stream = new WritableStream<Uint8Array>({
    write() {
      throw new Deno.errors.BrokenPipe("gone");
    },
  });
  const writer = new PickleWriter(stream);
  writer.send(1);
  await assert.rejects(writer.flush(), Deno.errors.BrokenPipe);
});

// ---------------------------------------------------------------------------------------------
// Seeded random value graphs (property test) and mutated pickles (fuzz test).

/** mulberry32: a small seeded PRNG, so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random value graph: every supported type, nested, with shared objects and cycles. */
function randomGraph(random: () => number): unknown {
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)];
  const objects: object[] = []; // made so far: a later slot may point back at one
  const strings = ["", "a", "__proto__", "$", "é", "\u2028", "\ud800", "constructor", "0", "1"];
  const leaf = (): unknown =>
    pick<() => unknown>([
      () => undefined,
      () => null,
      () => random() < 0.5,
      () => pick([0, -0, 1.5, -7, NaN, Infinity, -Infinity, 2 ** 53, 5e-324]),
      () => BigInt(Math.floor(random() * 1e6)) * pick([1n, -1n, 10n ** 30n]),
      () => pick(strings) + pick(strings),
      () => new Date(pick([0, NaN, -1e12, 1e12, 8.64e15])),
      () => new RegExp(pick(["a+", "(b)", "[\\u2028]"]), pick(["", "g", "iu", "dgimsy"])),
      () => new URL(pick(["https://a.b/c?d#e", "file:///x", "data:,hi"])),
      () => new URLSearchParams(pick(["a=1", "", "x=%20&x=2"])),
      () => pick(Object.values(temporalSamples())),
    ])();
  const build = (depth: number): unknown => {
    if (depth > 4 || random() < 0.3) {
      if (objects.length > 0 && random() < 0.15) return pick(objects); // shared or a cycle
      return leaf();
    }
    const kind = Math.floor(random() * 12);
    const size = Math.floor(random() * 4);
    const fill = (add: (value: unknown, i: number) => void) => {
      for (let i = 0; i < size; i++) add(build(depth + 1), i);
    };
    let value: object;
    switch (kind) {
      case 0:
      case 1: {
        const array: unknown[] = [];
        objects.push(array);
        fill((v) => array.push(v));
        if (random() < 0.2) array.length += 2; // holes
        if (random() < 0.1) delete array[0];
        if (random() < 0.1) (array as unknown as Record<string, unknown>).extra = 1;
        return array;
      }
      case 2:
      case 3: {
        const object: Record<string, unknown> = random() < 0.2 ? Object.create(null) : {};
        objects.push(object);
        fill((v) => {
          Object.defineProperty(object, pick(strings) + random().toString(36).slice(2, 4), {
            value: v,
            enumerable: true,
            writable: true,
            configurable: true,
          });
        });
        return object;
      }
      case 4: {
        const map = new Map();
        objects.push(map);
        fill((v) => map.set(random() < 0.5 ? build(depth + 1) : pick(strings), v));
        return map;
      }
      case 5: {
        const set = new Set();
        objects.push(set);
        fill((v) => set.add(v));
        return set;
      }
      case 6: {
        const buffer = objects.find((o) => o instanceof ArrayBuffer) as ArrayBuffer ??
          new ArrayBuffer(16);
        objects.push(buffer);
        const T = pick<
          Int8ArrayConstructor | Float64ArrayConstructor | BigInt64ArrayConstructor
        >([Int8Array, Float64Array, BigInt64Array]);
        value = random() < 0.3 ? new DataView(buffer, 1, 3) : new T(buffer, 8, 1);
        break;
      }
      case 7: {
        const error = new (pick([Error, TypeError, RangeError]))("e" + size);
        objects.push(error);
        if (random() < 0.5) (error as Error & { cause: unknown }).cause = build(depth + 1);
        if (random() < 0.3) (error as unknown as Record<string, unknown>).code = pick(strings);
        return error;
      }
      case 8: {
        const tree = new Tree(pick(strings));
        objects.push(tree);
        fill((v) => tree.children.push(v as Tree));
        return tree;
      }
      case 9:
        value = new Temperature(Math.floor(random() * 500));
        break;
      case 10:
        value = new AggregateError([build(depth + 1)], "agg");
        break;
      default:
        value = new Point(random(), -random());
    }
    objects.push(value);
    return value;
  };
  return build(0);
}

Deno.test("property: thousands of random value graphs survive with types and sharing", () => {
  const random = prng(20251126);
  let count = 0;
  for (; count < 3000; count++) {
    const graph = randomGraph(random);
    try {
      assertSameGraph(roundTrip(graph), graph);
    } catch (error) {
      throw new Error(`graph ${count}: ${(error as Error).message}\n${dumps(graph)}`);
    }
  }
  console.log(`  ${count} random graphs round-tripped`);
});

/** A random JSON value, sometimes shaped like a tag node, to splice into a pickle. */
function randomJson(random: () => number, depth = 0): unknown {
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)];
  const tags = [
    "undefined",
    "NaN",
    "-0",
    "BigInt",
    "ref",
    "Date",
    "RegExp",
    "Map",
    "Set",
    "Object",
    "Array",
    "ArrayBuffer",
    "Uint8Array",
    "Float64Array",
    "DataView",
    "Error",
    "AggregateError",
    "URL",
    "URLSearchParams",
    "Temporal.Instant",
    "Temporal.ZonedDateTime",
    "Temporal.PlainDate",
    "Temporal.PlainYearMonth",
    "Temporal.PlainMonthDay",
    "Temporal.Duration",
    "class",
    "__proto__",
    "constructor",
    "Function",
  ];
  const fields = ["$", "id", "v", "length", "proto", "buffer", "byteOffset", "byteLength", "name"];
  const scalar = () =>
    pick<unknown>([
      null,
      true,
      0,
      -1,
      1e21,
      2 ** 32,
      0.5,
      "",
      "x",
      "AAAA",
      "__proto__",
      "demo.Point",
      "test.Tree",
      "2020-01-01[u-ca=iso8601]",
      "1970-01-01T00:00Z",
      pick(tags),
    ]);
  if (depth > 3 || random() < 0.4) return scalar();
  if (random() < 0.3) {
    return Array.from({ length: Math.floor(random() * 3) }, () => randomJson(random, depth + 1));
  }
  const node: Record<string, unknown> = {};
  if (random() < 0.7) node.$ = pick(tags);
  for (let i = Math.floor(random() * 4); i > 0; i--) {
    setKey(node, pick(fields), randomJson(random, depth + 1));
  }
  return node;
}

function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Replaces a random node of a parsed pickle's JSON tree with random JSON. */
function mutateTree(tree: unknown, random: () => number): unknown {
  const containers: [Record<string, unknown> | unknown[], string | number][] = [];
  const stack = [tree];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== "object" || value === null) continue;
    for (const key of Object.keys(value)) {
      containers.push([value as Record<string, unknown>, key]);
      stack.push((value as Record<string, unknown>)[key]);
    }
  }
  if (containers.length === 0) return randomJson(random);
  const [container, key] = containers[Math.floor(random() * containers.length)];
  setKey(container as Record<string, unknown>, String(key), randomJson(random));
  return tree;
}

function mutateText(text: string, random: () => number): string {
  const at = Math.floor(random() * text.length);
  switch (Math.floor(random() * 4)) {
    case 0:
      return text.slice(0, at) + text.slice(at + 1 + Math.floor(random() * 5));
    case 1:
      return text.slice(0, at) + '{}[]",:$0-e'[Math.floor(random() * 11)] + text.slice(at);
    case 2:
      return text.slice(0, at) + text.slice(Math.floor(random() * text.length));
    default:
      return String.fromCharCode(...Array.from({ length: at % 64 }, () => random() * 256));
  }
}

Deno.test("fuzz: mutated pickles and random bytes throw only PickleError", () => {
  const total = Number(Deno.env.get("PICKLE_FUZZ_CASES") ?? "30000");
  const seed = Number(Deno.env.get("PICKLE_FUZZ_SEED") ?? "4");
  const random = prng(seed);
  const originals = Array.from({ length: 200 }, () => dumps(randomGraph(random)));
  let accepted = 0;
  for (let cases = 0; cases < total; cases++) {
    const original = originals[Math.floor(random() * originals.length)];
    const text = random() < 0.6
      ? JSON.stringify(mutateTree(JSON.parse(original), random))
      : mutateText(original, random);
    try {
      loads(text);
      accepted++;
    } catch (error) {
      if (!(error instanceof PickleError)) {
        throw new Error(`seed ${seed}, case ${cases}: ${error}\n${text.slice(0, 2000)}`);
      }
      assert.ok(!error.message.includes("\n"), error.message);
    }
    if (cases % 100 === 99) assertPrototypesUntouched();
  }
  assertPrototypesUntouched();
  console.log(`  ${total} fuzz cases (seed ${seed}): ${accepted} loaded, the rest refused`);
  // The mutations must reach both paths, or the fuzz would test little.
  assert.ok(accepted > 0 && accepted < total, `${accepted} of ${total} loaded`);
});
