/**
 * A pickle whose output is JSON: `dumps` and `loads` like Python's pickle, `register` like
 * copyreg, and stream helpers that send one value per line (`PickleWriter`, `readPickles`).
 * Dates, Temporal values, Maps, Sets, BigInt, NaN, -0, undefined, typed arrays, errors, shared
 * objects, cycles and registered class instances come back equal. Unlike pickle, `loads` is safe
 * on hostile input: it never runs code from the data and fails only with `PickleError`. The
 * format is described in docs/pickle_format.md.
 *
 * ```ts
 * import { dumps, loads } from "./lib/pickle_json.ts";
 * const back = loads(dumps({ when: new Date(0), tags: new Set(["a"]) }));
 * ```
 *
 * @module
 */

/** The format version `dumps` writes; `loads` reads it and version 1. */
export const PICKLE_VERSION = 2;

/** The only error `loads` throws, and what `dumps` throws for a value it cannot store. */
export class PickleError extends Error {
  /** Always "PickleError", so that a printed error says what failed. */
  override name = "PickleError";
}

/** Limits for {@link dumps}. */
export interface DumpsOptions {
  /** Deepest nesting stored; deeper values throw a PickleError (default 10,000). */
  maxDepth?: number;
}

/** Limits for {@link loads} and {@link readPickles}; the defaults are safe for hostile input. */
export interface LoadsOptions {
  /**
   * Deepest nesting of tagged nodes rebuilt (default 10,000). A pickle without a "$" key is
   * returned as JSON.parse built it: that parser is iterative, so no depth can crash loads.
   */
  maxDepth?: number;
  /** Longest pickle text read, in UTF-16 code units (default 64 Mi). */
  maxLength?: number;
  /**
   * Most bytes of all the ArrayBuffers of one pickle together (default 64 MiB). A resizable one
   * counts as its maxByteLength, and as at least 1 MiB: each one reserves address space with a
   * system call (microseconds), so the default allows 64 of them.
   */
  maxBufferBytes?: number;
}

// ---------------------------------------------------------------------------------------------
// The class registry, like Python's copyreg. Looked up by prototype when dumping and by name
// (a Map, so "__proto__" or "constructor" are just names) when loading: loads never looks a
// name up in globalThis, so only what was registered can be rebuilt.

/** How a registered class is stored. Without reduce/restore: its own enumerable properties. */
export interface ClassOptions<T> {
  /** The name in the pickle (default: the class's name). Both sides must register it. */
  name?: string;
  /** Turns an instance into a picklable state (for private fields, caches, handles...). */
  reduce?: (instance: T) => unknown;
  /** Rebuilds an instance from the state `reduce` returned. */
  restore?: (state: unknown) => T;
}

interface ClassEntry {
  name: string;
  prototype: object;
  reduce?: (instance: never) => unknown;
  restore?: (state: unknown) => unknown;
}
const classesByPrototype = new Map<object, ClassEntry>();
const classesByName = new Map<string, ClassEntry>();

/**
 * Registers a class so its instances survive a round trip as instances of that class. By
 * default they come back with their own enumerable properties and without running the
 * constructor; give `reduce` and `restore` (both) to decide what is stored and how it is rebuilt
 * (needed for #private fields, which no one outside the class can read or set).
 */
export function register<T extends object>(
  // deno-lint-ignore no-explicit-any
  constructor: abstract new (...args: any[]) => T,
  options: ClassOptions<T> = {},
): void {
  const name = options.name ?? constructor.name;
  if (!name) throw new PickleError("register: the class needs a name");
  if ((options.reduce === undefined) !== (options.restore === undefined)) {
    throw new PickleError(`register ${name}: give both reduce and restore`);
  }
  const existing = classesByName.get(name);
  if (existing && existing.prototype !== constructor.prototype) {
    throw new PickleError(`register: another class is registered as "${name}"`);
  }
  const entry: ClassEntry = {
    name,
    prototype: constructor.prototype,
    reduce: options.reduce as ClassEntry["reduce"],
    restore: options.restore,
  };
  classesByPrototype.set(constructor.prototype, entry);
  classesByName.set(name, entry);
}

// ---------------------------------------------------------------------------------------------
// Built-in types, listed by hand: loads maps a tag to a constructor through these tables only.

type TypedArrayConstructor =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;
const typedArrays = new Map<string, TypedArrayConstructor>([
  ["Int8Array", Int8Array],
  ["Uint8Array", Uint8Array],
  ["Uint8ClampedArray", Uint8ClampedArray],
  ["Int16Array", Int16Array],
  ["Uint16Array", Uint16Array],
  ["Int32Array", Int32Array],
  ["Uint32Array", Uint32Array],
  ["Float32Array", Float32Array],
  ["Float64Array", Float64Array],
  ["BigInt64Array", BigInt64Array],
  ["BigUint64Array", BigUint64Array],
]);
// Float16Array is new (ES2025): use it where this Deno has it.
const float16 = (globalThis as unknown as { Float16Array?: TypedArrayConstructor })
  .Float16Array;
if (float16) typedArrays.set("Float16Array", float16);
const typedArrayNames = new Map<object, string>(
  [...typedArrays].map(([name, constructor]) => [constructor.prototype, name]),
);

type ErrorConstructorLike = new (message?: string) => Error;
const errorTypes = new Map<string, ErrorConstructorLike>([
  ["Error", Error],
  ["EvalError", EvalError],
  ["RangeError", RangeError],
  ["ReferenceError", ReferenceError],
  ["SyntaxError", SyntaxError],
  ["TypeError", TypeError],
  ["URIError", URIError],
  ["AggregateError", AggregateError as unknown as ErrorConstructorLike],
]);
const errorNames = new Map<object, string>(
  [...errorTypes].map(([name, constructor]) => [constructor.prototype, name]),
);
// Own properties an Error keeps non-enumerable; stored in their own fields.
const errorFields = ["message", "stack", "cause", "errors"] as const;

// Temporal (ES2026; in Deno 2.9 without a flag), used only where this runtime has it. A value is
// stored as the ISO 8601 string its toString() writes and its from() reads, except where that
// string loses something: a PlainYearMonth's reference day and a PlainMonthDay's reference year
// (so they are written with their whole reference date, calendarName "always"), and a
// Duration's fields (PT1.5S reads as 1 second and 500 milliseconds, not 1500 milliseconds: so a
// dict of its non-zero fields). Reading gets only strings and numbers: no code can run.

/** How one Temporal type is written ("v" of its tag) and read back (throws when "v" is bad). */
interface TemporalType {
  tag: string;
  prototype: object;
  write: (value: never) => unknown;
  read: (v: unknown) => object;
}

const durationFields = [
  "years",
  "months",
  "weeks",
  "days",
  "hours",
  "minutes",
  "seconds",
  "milliseconds",
  "microseconds",
  "nanoseconds",
] as const;

function isoString(v: unknown): string {
  if (typeof v !== "string") throw new TypeError('"v" must be a string');
  return v;
}

/** The Temporal types of this runtime, by tag ("Temporal.Instant"...). */
function temporalTypes(T: typeof Temporal): TemporalType[] {
  const plain = <V extends object>(
    name: string,
    type: { prototype: V; from(text: string): V },
  ): TemporalType => ({
    tag: `Temporal.${name}`,
    prototype: type.prototype,
    write: (value: V) => String(value),
    read: (v) => type.from(isoString(v)),
  });
  // A whole reference date ("2020-01-15[u-ca=iso8601]"), as a PlainDate and its ISO fields.
  const referenceDate = (v: unknown) => {
    const date = T.PlainDate.from(isoString(v));
    return { calendar: date.calendarId, iso: date.withCalendar("iso8601") };
  };
  const always = { calendarName: "always" } as const;
  return [
    plain("Instant", T.Instant),
    plain("ZonedDateTime", T.ZonedDateTime),
    plain("PlainDate", T.PlainDate),
    plain("PlainTime", T.PlainTime),
    plain("PlainDateTime", T.PlainDateTime),
    {
      tag: "Temporal.PlainYearMonth",
      prototype: T.PlainYearMonth.prototype,
      write: (value: Temporal.PlainYearMonth) => value.toString(always),
      read: (v) => {
        const { calendar, iso } = referenceDate(v);
        return new T.PlainYearMonth(iso.year, iso.month, calendar, iso.day);
      },
    },
    {
      tag: "Temporal.PlainMonthDay",
      prototype: T.PlainMonthDay.prototype,
      write: (value: Temporal.PlainMonthDay) => value.toString(always),
      read: (v) => {
        const { calendar, iso } = referenceDate(v);
        return new T.PlainMonthDay(iso.month, iso.day, calendar, iso.year);
      },
    },
    {
      tag: "Temporal.Duration",
      prototype: T.Duration.prototype,
      write: durationDict,
      read: (v) => new T.Duration(...durationFieldsOf(v)),
    },
  ];
}

/** A Duration's non-zero fields, e.g. {"hours":1,"milliseconds":1500}. */
function durationDict(duration: Temporal.Duration): Record<string, number> {
  const dict: Record<string, number> = {};
  for (const field of durationFields) {
    if (duration[field] !== 0) dict[field] = duration[field];
  }
  return dict;
}

/** The ten fields of a Duration dict, in the constructor's order (0 for a missing one). */
function durationFieldsOf(v: unknown): number[] {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new TypeError('"v" must be an object');
  }
  const dict = v as Record<string, unknown>;
  for (const key of Object.keys(dict)) {
    if (!(durationFields as readonly string[]).includes(key)) {
      throw new TypeError(`${JSON.stringify(key.slice(0, 100))} is not a Duration field`);
    }
    if (typeof dict[key] !== "number") throw new TypeError(`"${key}" must be a number`);
  }
  return durationFields.map((field) => Object.hasOwn(dict, field) ? dict[field] as number : 0);
}

const temporal = (globalThis as { Temporal?: typeof Temporal }).Temporal;
const temporalByTag = new Map<string, TemporalType>();
const temporalByPrototype = new Map<object, TemporalType>();
for (const type of temporal ? temporalTypes(temporal) : []) {
  temporalByTag.set(type.tag, type);
  temporalByPrototype.set(type.prototype, type);
}

// Tags of values with no contents, shared by every pickle (JSON.stringify may meet one twice).
const specialNumbers = new Map<string, number>([
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
  ["-0", -0],
]);
const undefinedNode = { $: "undefined" };

// ---------------------------------------------------------------------------------------------
// dumps. Most values are plain data, so a quick check comes first: when the value holds only
// JSON-safe things (no tags, no object met twice), JSON.stringify writes it as it is, and that
// JSON is the whole pickle (format version 2 has no envelope around it). Otherwise
// one iterative depth-first walk (an explicit stack, so 100,000 levels cannot overflow the call
// stack) checks every value and builds the tagged copy. Plain objects and arrays are copied
// only when something inside them needs a tag (copy on write). A walk that meets an object
// twice (sharing or a cycle) is redone once, giving those objects an id at their first place.

/**
 * Turns a value into pickle text (one line of JSON). Throws a PickleError naming the path of
 * the first value that cannot be stored, e.g. `$.users[3].onClick: a function cannot be pickled`.
 */
export function dumps(value: unknown, options?: DumpsOptions): string {
  const maxDepth = options?.maxDepth ?? 10_000;
  let text: string;
  try {
    if (isPlainJson(value, maxDepth)) {
      text = JSON.stringify(value);
    } else {
      const shared = new Set<object>();
      let node = new Encoder(maxDepth, null, shared).run(value);
      if (shared.size > 0) {
        node = new Encoder(maxDepth, shared, shared).run(value);
      }
      text = JSON.stringify(node);
    }
  } catch (error) {
    if (error instanceof PickleError) throw error;
    // A getter or reduce() threw, or the text would be longer than a string can be.
    throw new PickleError(`cannot pickle: ${(error as Error)?.message}`);
  }
  // JSON allows raw U+2028/U+2029 in strings; escaping them keeps every line splitter happy.
  if (text.includes("\u2028") || text.includes("\u2029")) {
    text = text.replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
  }
  return text;
}

// Reused by isPlainJson, since most calls are small; a getter calling dumps gets fresh ones.
let spare: { seen: Set<object>; stack: object[]; depths: number[] } | null = {
  seen: new Set(),
  stack: [],
  depths: [],
};

/**
 * True when JSON.stringify would write the value exactly: only plain objects (no "$" key),
 * dense arrays without extra properties, strings, booleans, null and finite numbers other
 * than -0, with no object met twice and no deeper than maxDepth; and at the top, not an object
 * with a "pickle" key (which loads would take for an envelope).
 */
function isPlainJson(root: unknown, maxDepth: number): boolean {
  if (typeof root !== "object" || root === null) return isPlainPrimitive(root);
  if (Object.hasOwn(root, ENVELOPE_KEY)) return false;
  // The most common message, one plain object of primitives, needs no bookkeeping.
  if (Object.getPrototypeOf(root) === Object.prototype && maxDepth >= 1) {
    const flat = isFlatPlainJson(root as Record<string, unknown>);
    if (flat !== undefined) return flat;
  }
  return isPlainJsonTree(root, maxDepth);
}

/**
 * For a plain object: true when its values are all primitives JSON.stringify writes exactly,
 * false when one is not or it has a "$" key, undefined when it holds objects (to be walked).
 */
function isFlatPlainJson(root: Record<string, unknown>): boolean | undefined {
  let flat = true;
  for (const key in root) {
    if (key === "$") return false;
    const item = root[key];
    if (typeof item === "object" && item !== null) flat = false;
    else if (!isPlainPrimitive(item)) return false;
  }
  return flat ? true : undefined;
}

/** isPlainJson of an object, walked depth first with an explicit stack. */
function isPlainJsonTree(root: object, maxDepth: number): boolean {
  const work = spare ?? { seen: new Set(), stack: [], depths: [] };
  spare = null;
  const { seen, stack, depths } = work;
  stack.push(root);
  depths.push(1);
  try {
    while (stack.length > 0) {
      const value = stack.pop()!;
      const depth = depths.pop()!;
      if (depth > maxDepth || seen.has(value)) return false;
      seen.add(value);
      const prototype = Object.getPrototypeOf(value);
      if (prototype === Object.prototype) {
        for (const key in value) {
          // (for-in also lists keys someone added to Object.prototype; JSON.stringify skips
          // them, so checking their values too is only stricter.)
          if (key === "$") return false;
          const item = (value as Record<string, unknown>)[key];
          if (typeof item === "object" && item !== null) {
            stack.push(item);
            depths.push(depth + 1);
          } else if (!isPlainPrimitive(item)) return false;
        }
      } else if (prototype === Array.prototype) {
        const array = value as unknown[];
        if (!Array.isArray(array)) return false;
        for (let i = 0; i < array.length; i++) {
          const item = array[i];
          if (typeof item === "object" && item !== null) {
            stack.push(item);
            depths.push(depth + 1);
          } else if (!isPlainPrimitive(item)) return false; // a hole reads as undefined
        }
        // Extra properties (array.name = ...) would be lost; holes were caught above.
        if (Object.keys(array).length !== array.length) {
          return false;
        }
      } else return false;
    }
    return true;
  } finally {
    seen.clear();
    stack.length = 0;
    depths.length = 0;
    spare = work;
  }
}

function isPlainPrimitive(value: unknown): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value) && (value !== 0 || 1 / value > 0);
    default:
      return value === null;
  }
}

const PENDING = Symbol("pending"); // "a frame was pushed; its value arrives when it finishes"

// How a frame's encoded items are stored. Array and Object: in a copy of the source made on
// the first item that changes (copy on write). The others fill a node built beforehand.
const Fill = {
  Array: 0,
  Object: 1,
  List: 2, // node.v[i]: a Set's values
  Pairs: 3, // node.v[i >> 1][i & 1]: a Map's entries
  Dict: 4, // node.v[names[i]]: own properties (null-prototype objects, sparse arrays, classes)
  Error: 5, // node[names[i]] for the first `hidden` names, then node.v[names[i]]
  State: 6, // node.state: a reduce()d class instance
} as const;
type Fill = typeof Fill[keyof typeof Fill];

class EncodeFrame {
  index = 0;
  current: unknown = undefined; // the source item at index - 1, as read
  constructor(
    public fill: Fill,
    public source: unknown[] | Record<string, unknown>,
    public names: string[] | null, // the keys walked (Object, Dict, Error)
    public length: number,
    public out: unknown, // Array/Object: the copy (or the source); others: the node
    public id: number | undefined, // Array/Object: wrap in a node with this id when done
    public wrap: boolean, // Object: wrap (a "$" key, or an id)
    public hidden = 0, // Error: how many names are fields of the node
    public instance: object | null = null, // State: the instance being reduced
  ) {}
}

/** `$.users[3].onClick`: the path of the value being encoded, from the frames. */
function encodePath(stack: EncodeFrame[]): string {
  const steps = stack.map((frame) => {
    const index = frame.index - 1;
    switch (frame.fill) {
      case Fill.Array:
        return `[${index}]`;
      case Fill.List:
        return `.values()[${index}]`;
      case Fill.Pairs:
        return `.entries()[${index >> 1}][${index & 1}]`;
      case Fill.State:
        return "<reduce>";
      default:
        return keyStep(frame.names![index]);
    }
  });
  if (steps.length > 40) {
    steps.splice(10, steps.length - 20, `...(${steps.length - 20} more)...`);
  }
  return "$" + steps.join("");
}

const keyStep = (key: string) =>
  /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;

/** What a value that cannot be stored is called in an error message. */
function describe(value: object): string {
  const prototype = Object.getPrototypeOf(value);
  const name = prototype?.constructor?.name;
  if (typeof name !== "string" || name === "") {
    return "this object cannot be pickled";
  }
  const builtin = (globalThis as Record<string, unknown>)[name];
  if (typeof builtin === "function" && builtin.prototype === prototype) {
    return `a ${name} cannot be pickled`;
  }
  return `an instance of class ${name} cannot be pickled: register(${name}) first`;
}

function setData(target: object, key: string, value: unknown): void {
  // `target.__proto__ = x` would change the prototype; defining it keeps it a plain key.
  if (key === "__proto__") {
    Object.defineProperty(target, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  } else (target as Record<string, unknown>)[key] = value;
}

/** A tag node: `{"$": tag, "id": id}` (id only when the object is shared), then its fields. */
function tagged(tag: string, id: number | undefined): Record<string, unknown> {
  return id === undefined ? { $: tag } : { $: tag, id };
}

/** True when an array has no holes (a hole reads as undefined but is not `in` the array). */
function isDense(array: unknown[]): boolean {
  for (let i = 0; i < array.length; i++) {
    if (array[i] === undefined && !(i in array)) return false;
  }
  return true;
}

/** A frame whose items are encoded into a copy of `source`, made on the first item that changes. */
function copyFrame(
  fill: typeof Fill.Array | typeof Fill.Object,
  source: unknown[] | Record<string, unknown>,
  names: string[] | null,
  id: number | undefined,
  wrap: boolean,
): EncodeFrame {
  const length = names === null ? (source as unknown[]).length : names.length;
  return new EncodeFrame(fill, source, names, length, source, id, wrap);
}

/** A frame that encodes `items` into `node`, a node built beforehand (its id already in it). */
function nodeFrame(
  fill: Fill,
  items: unknown[],
  node: Record<string, unknown>,
  names: string[] | null = null,
  hidden = 0,
  instance: object | null = null,
): EncodeFrame {
  return new EncodeFrame(
    fill,
    items,
    names,
    items.length,
    node,
    undefined,
    false,
    hidden,
    instance,
  );
}

/**
 * One walk. `shared` null: the first walk, which adds to `found` the objects it meets more than
 * once (its result is then thrown away). `shared` given: the second walk, giving them ids.
 */
class Encoder {
  stack: EncodeFrame[] = [];
  seen = new Set<object>(); // first walk: every object met so far
  ids = new Map<object, number>(); // second walk: the ids given so far
  reducing = new Set<object>(); // instances whose reduce()d state is being walked
  flatKey: string | null = null; // the key objectInline is encoding, for error paths
  root: unknown = undefined; // the value of the whole walk

  constructor(
    readonly maxDepth: number,
    readonly shared: Set<object> | null,
    readonly found: Set<object>,
  ) {}

  fail(message: string): never {
    const last = this.flatKey === null ? "" : keyStep(this.flatKey);
    throw new PickleError(`${encodePath(this.stack)}${last}: ${message}`);
  }

  /** The walk: encodes the root, then the items of each frame pushed, until none is left. */
  run(root: unknown): unknown {
    const stack = this.stack;
    this.root = root;
    let result = this.value(root);
    while (result === PENDING) {
      const frame = stack[stack.length - 1];
      if (frame.index < frame.length) {
        const index = frame.index++;
        const item = frame.fill === Fill.Object
          ? (frame.source as Record<string, unknown>)[frame.names![index]]
          : (frame.source as unknown[])[index];
        frame.current = item;
        const encoded = this.value(item);
        if (encoded !== PENDING) this.put(frame, encoded);
        continue;
      }
      stack.pop();
      const encoded = this.finish(frame);
      if (stack.length === 0) result = encoded;
      else this.put(stack[stack.length - 1], encoded);
    }
    return result;
  }

  /** The node of any value, or PENDING when a frame was pushed to encode its contents. */
  value(value: unknown): unknown {
    switch (typeof value) {
      case "string":
      case "boolean":
        return value;
      case "number":
        // JSON has no NaN, Infinity or -0 (JSON.stringify writes null, null and 0).
        if (Number.isFinite(value) && (value !== 0 || 1 / value > 0)) {
          return value;
        }
        return { $: Object.is(value, -0) ? "-0" : String(value) };
      case "undefined":
        return undefinedNode;
      case "bigint":
        return bigIntNode(value);
      case "object":
        return value === null ? null : this.object(value);
      case "function":
        return this.fail("a function cannot be pickled");
      default:
        return this.fail(`a ${typeof value} cannot be pickled`);
    }
  }

  push(frame: EncodeFrame): symbol {
    if (this.stack.length >= this.maxDepth) {
      this.fail(`nested deeper than maxDepth (${this.maxDepth})`);
    }
    this.stack.push(frame);
    return PENDING;
  }

  /** A frame that encodes own enumerable properties into `node.v`. */
  dict(node: Record<string, unknown>, value: object): symbol {
    const names = Object.keys(value);
    node.v = {};
    return this.push(nodeFrame(Fill.Dict, valuesOf(value, names), node, names));
  }

  /**
   * The node of an object: a ref when it was met before (second walk), else its type's node,
   * with an id when it is shared.
   */
  object(value: object): unknown {
    let id: number | undefined;
    if (this.shared === null) {
      if (this.seen.has(value)) {
        this.found.add(value);
        return null; // a placeholder: this walk's result is thrown away
      }
      this.seen.add(value);
    } else if (this.shared.has(value)) {
      const known = this.ids.get(value);
      if (known !== undefined) return this.reference(value, known);
      id = this.ids.size;
      this.ids.set(value, id);
    }
    const prototype = Object.getPrototypeOf(value);
    if (prototype === Object.prototype) {
      return this.plainObject(value as Record<string, unknown>, id);
    }
    if (Array.isArray(value) && prototype === Array.prototype) return this.array(value, id);
    return this.builtin(value, prototype, id);
  }

  /** `{"$":"ref","id":n}` for an object met before, unless it is its own reduce()d state. */
  reference(value: object, id: number): unknown {
    if (this.reducing.has(value)) {
      this.fail("a cycle back into an object being reduce()d cannot be restored");
    }
    return { $: "ref", id };
  }

  plainObject(value: Record<string, unknown>, id: number | undefined): unknown {
    const names = Object.keys(value);
    // A plain object with a "$" key would read as a tag, and one at the top with a "pickle" key
    // as an envelope: wrap it, as a shared one is.
    const wrap = id !== undefined || Object.hasOwn(value, "$") ||
      (value === this.root && Object.hasOwn(value, ENVELOPE_KEY));
    if (this.flatKey === null) return this.objectInline(value, names, id, wrap);
    return this.push(copyFrame(Fill.Object, value, names, id, wrap));
  }

  array(value: unknown[], id: number | undefined): unknown {
    // Holes and extra properties: JSON would lose them, so such an array is a dict.
    if (!isDense(value) || Object.keys(value).length !== value.length) {
      const node = tagged("Array", id);
      node.length = value.length;
      return this.dict(node, value);
    }
    if (id === undefined && value.every(isPlainPrimitive)) return value; // no frame needed
    return this.push(copyFrame(Fill.Array, value, null, id, id !== undefined));
  }

  /** The node of an object that is neither a plain object nor an array, by its prototype. */
  builtin(value: object, prototype: object | null, id: number | undefined): unknown {
    if (prototype === null) {
      const node = tagged("Object", id);
      node.proto = null;
      return this.dict(node, value);
    }
    if (prototype === Date.prototype) return dateNode(value as Date, id);
    if (prototype === Map.prototype) return this.map(value as Map<unknown, unknown>, id);
    if (prototype === Set.prototype) return this.set(value as Set<unknown>, id);
    if (prototype === RegExp.prototype) return regExpNode(value as RegExp, id);
    if (prototype === ArrayBuffer.prototype) return this.arrayBuffer(value as ArrayBuffer, id);
    const typedName = typedArrayNames.get(prototype);
    if (typedName !== undefined || prototype === DataView.prototype) {
      return this.view(value as DataView | Uint8Array, typedName, id);
    }
    const errorName = errorNames.get(prototype);
    if (errorName !== undefined) return this.error(value as Error, errorName, id);
    if (prototype === URL.prototype) return stringNode("URL", id, (value as URL).href);
    if (prototype === URLSearchParams.prototype) {
      return stringNode("URLSearchParams", id, String(value));
    }
    const temporalType = temporalByPrototype.get(prototype);
    if (temporalType !== undefined) {
      const node = tagged(temporalType.tag, id);
      node.v = temporalType.write(value as never);
      return node;
    }
    const entry = classesByPrototype.get(prototype);
    if (entry !== undefined) return this.instance(value, entry, id);
    return this.fail(describe(value));
  }

  map(map: Map<unknown, unknown>, id: number | undefined): unknown {
    const pairs: unknown[][] = [];
    for (const entry of map) pairs.push(entry); // a fresh [key, value] each: 3x faster than [...map]
    const node = id === undefined ? { $: "Map", v: pairs } : { $: "Map", id, v: pairs };
    let plain = true; // only JSON primitives: the pairs are the node, no frame needed
    for (let i = 0; i < pairs.length && plain; i++) {
      plain = isPlainPrimitive(pairs[i][0]) && isPlainPrimitive(pairs[i][1]);
    }
    if (plain) return node;
    // Encoded into the pairs, which the frame fills in.
    return this.push(nodeFrame(Fill.Pairs, pairs.flat(), node));
  }

  set(set: Set<unknown>, id: number | undefined): unknown {
    const items = [...set];
    if (id === undefined && items.every(isPlainPrimitive)) return { $: "Set", v: items };
    const node = tagged("Set", id);
    node.v = new Array(items.length);
    return this.push(nodeFrame(Fill.List, items, node));
  }

  arrayBuffer(buffer: ArrayBuffer, id: number | undefined): unknown {
    if (buffer.detached) this.fail("a detached ArrayBuffer cannot be pickled");
    const node = tagged("ArrayBuffer", id);
    node.v = new Uint8Array(buffer).toBase64();
    if (buffer.resizable) node.maxByteLength = buffer.maxByteLength;
    return node;
  }

  /** A typed array (`typedName`) or a DataView (no typedName). */
  view(view: DataView | Uint8Array, typedName: string | undefined, id: number | undefined) {
    if (!(view.buffer instanceof ArrayBuffer)) {
      this.fail("a view of a SharedArrayBuffer cannot be pickled");
    }
    const node = tagged(typedName ?? "DataView", id);
    // The buffer is a node of its own, so views of one buffer share it after loads.
    node.buffer = this.object(view.buffer);
    node.byteOffset = view.byteOffset;
    if (typedName) node.length = (view as Uint8Array).length;
    else node.byteLength = view.byteLength;
    return node;
  }

  error(error: Error, errorName: string, id: number | undefined): unknown {
    // message, stack, cause and errors are own non-enumerable properties: each one present
    // becomes a field of the node; other own enumerable properties (code...) go in "v".
    const present: string[] = errorFields.filter((field) =>
      Object.hasOwn(error, field) && !Object.prototype.propertyIsEnumerable.call(error, field)
    );
    const extra = Object.keys(error); // (error.cause = x makes an enumerable one: kept so)
    const names = [...present, ...extra];
    const node = tagged(errorName, id);
    if (extra.length > 0) node.v = {};
    return this.push(
      nodeFrame(Fill.Error, valuesOf(error, names), node, names, present.length),
    );
  }

  /** An instance of a registered class: its own properties, or its reduce()d state. */
  instance(value: object, entry: ClassEntry, id: number | undefined): unknown {
    const node = tagged("class", id);
    node.name = entry.name;
    if (!entry.reduce) return this.dict(node, value);
    const state = (entry.reduce as (instance: object) => unknown)(value);
    this.reducing.add(value);
    return this.push(nodeFrame(Fill.State, [state], node, null, 0, value));
  }

  /**
   * A plain object encoded without a frame of its own, the common case of a record whose
   * values are primitives, Dates, Maps and Sets of primitives... When a value needs a frame
   * (it pushed one), this object's frame is slipped in under it and the walk goes on as usual.
   * Only one level at a time (flatKey is set meanwhile), so this never recurses deeper.
   */
  objectInline(
    value: Record<string, unknown>,
    names: string[],
    id: number | undefined,
    wrap: boolean,
  ): unknown {
    let out = value;
    for (let i = 0; i < names.length; i++) {
      const item = value[names[i]];
      const type = typeof item;
      if (type === "string" || type === "boolean") continue; // stays as it is
      this.flatKey = names[i];
      const encoded = this.value(item);
      this.flatKey = null;
      if (encoded === PENDING) {
        const frame = copyFrame(Fill.Object, value, names, id, wrap);
        frame.out = out;
        frame.index = i + 1;
        frame.current = item;
        this.stack.splice(this.stack.length - 1, 0, frame);
        if (this.stack.length > this.maxDepth) {
          this.fail(`nested deeper than maxDepth (${this.maxDepth})`);
        }
        return PENDING;
      }
      if (encoded !== item) {
        if (out === value) out = { ...value };
        setData(out, names[i], encoded);
      }
    }
    return wrap ? objectNode(id, out) : out;
  }

  /** Stores an encoded item in the frame that asked for it. */
  put(frame: EncodeFrame, encoded: unknown): void {
    const index = frame.index - 1;
    const node = frame.out as Record<string, unknown>;
    switch (frame.fill) {
      case Fill.Array:
      case Fill.Object:
        return copyOnWrite(frame, index, encoded);
      case Fill.List:
        (node.v as unknown[])[index] = encoded;
        return;
      case Fill.Pairs:
        (node.v as unknown[][])[index >> 1][index & 1] = encoded;
        return;
      case Fill.Dict:
        setData(node.v as object, frame.names![index], encoded);
        return;
      case Fill.Error:
        if (index < frame.hidden) node[frame.names![index]] = encoded;
        else setData(node.v as object, frame.names![index], encoded);
        return;
      default:
        node.state = encoded;
    }
  }

  /** The node of a frame whose items are all encoded. */
  finish(frame: EncodeFrame): unknown {
    if (frame.instance) this.reducing.delete(frame.instance);
    if (!frame.wrap) return frame.out;
    const node = tagged(frame.fill === Fill.Array ? "Array" : "Object", frame.id);
    node.v = frame.out;
    return node;
  }
}

/** Stores an item of an Array or Object frame, copying the source the first time one changes. */
function copyOnWrite(frame: EncodeFrame, index: number, encoded: unknown): void {
  if (encoded === frame.current) return; // unchanged: no copy needed
  if (frame.out === frame.source) {
    frame.out = frame.fill === Fill.Array
      ? (frame.source as unknown[]).slice()
      : { ...frame.source };
  }
  if (frame.fill === Fill.Array) {
    (frame.out as unknown[])[index] = encoded;
  } else setData(frame.out as object, frame.names![index], encoded);
}

/** `{"$":"Object","v":dict}`, with an id when the object is shared. */
function objectNode(id: number | undefined, dict: unknown): Record<string, unknown> {
  const node = tagged("Object", id);
  node.v = dict;
  return node;
}

/** In hexadecimal ("0x1f", "-0x1f"): V8 reads and writes it in linear time, decimal not. */
function bigIntNode(value: bigint): Record<string, unknown> {
  return {
    $: "BigInt",
    v: value < 0n ? `-0x${(-value).toString(16)}` : `0x${value.toString(16)}`,
  };
}

/** Milliseconds since 1970-01-01 UTC: exact, and 50 times faster than toISOString. */
function dateNode(date: Date, id: number | undefined): Record<string, unknown> {
  const time = date.getTime();
  const v = Number.isNaN(time) ? null : time;
  return id === undefined ? { $: "Date", v } : { $: "Date", id, v };
}

function regExpNode(regexp: RegExp, id: number | undefined): Record<string, unknown> {
  const node = tagged("RegExp", id);
  node.source = regexp.source;
  node.flags = regexp.flags;
  const lastIndex = regexp.lastIndex; // may be set to anything; a finite number is kept
  if (typeof lastIndex === "number" && Number.isFinite(lastIndex) && lastIndex !== 0) {
    node.lastIndex = lastIndex;
  }
  return node;
}

/** A tag whose value is one string in "v" (a URL's href...). */
function stringNode(tag: string, id: number | undefined, v: string): Record<string, unknown> {
  const node = tagged(tag, id);
  node.v = v;
  return node;
}

function valuesOf(value: object, names: string[]): unknown[] {
  return names.map((name) => (value as Record<string, unknown>)[name]);
}

// ---------------------------------------------------------------------------------------------
// loads: JSON.parse (native, iterative, never runs code), then one iterative walk that rebuilds
// tagged nodes in place. Plain objects and arrays from JSON.parse are kept and only the slots
// holding a tag are replaced. Every constructor comes from the tables above or the registry,
// and a key is written with defineProperty when it is "__proto__", so no prototype can change.

const Revive = {
  Array: 0, // a parsed array, fixed up in place
  Object: 1, // a parsed plain object, fixed up in place
  Map: 2, // source: [key, value, key, value...] nodes
  Set: 3,
  Entries: 4, // source: nodes for `names`, defined on `target` (the first `hidden` ones hidden)
  Assign: 5, // source: nodes for `names`, set on `target`, an array or a null-prototype object
  Custom: 6, // source: [state]; restore(state) when it is rebuilt
} as const;
type Revive = typeof Revive[keyof typeof Revive];

interface ReviveFrame {
  kind: Revive;
  source: unknown[] | Record<string, unknown>;
  keys: string[] | null;
  index: number;
  length: number;
  target: unknown;
  names: string[] | null;
  hidden: number;
  pendingKey: unknown;
  entry: ClassEntry | null;
  id: unknown;
}

const DEFAULT_LIMITS: Required<LoadsOptions> = {
  maxDepth: 10_000,
  maxLength: 64 * 1024 * 1024,
  maxBufferBytes: 64 * 1024 * 1024,
};

/** The options with their defaults (an option given as undefined gets its default too). */
function limitsOf(options: LoadsOptions | undefined): Required<LoadsOptions> {
  return {
    maxDepth: options?.maxDepth ?? DEFAULT_LIMITS.maxDepth,
    maxLength: options?.maxLength ?? DEFAULT_LIMITS.maxLength,
    maxBufferBytes: options?.maxBufferBytes ?? DEFAULT_LIMITS.maxBufferBytes,
  };
}

/**
 * Rebuilds a value from pickle text. Safe on any input: it runs no code from the data (only the
 * constructors of built-in types and `restore` of registered classes), changes no prototype,
 * and throws only PickleError, with a message, on malformed, hostile or too large input.
 */
export function loads(text: string, options?: LoadsOptions): unknown {
  try {
    return loadsText(text, options);
  } catch (error) {
    if (error instanceof PickleError) throw error;
    // A constructor refused its argument (new URL("x"), new Uint8Array(buffer, 3)...).
    throw new PickleError(`malformed pickle: ${oneLine((error as Error)?.message)}`);
  }
}

// The envelope of format version 1, `{"pickle":1,"json":...}` or `{"pickle":1,"value":...}`: a
// top-level object without "$" and with this key. Version 2 writes none, but reads it.
const ENVELOPE_KEY = "pickle";

function loadsText(text: string, options: LoadsOptions | undefined): unknown {
  if (typeof text !== "string") throw new PickleError("a pickle is a string");
  const maxLength = options?.maxLength ?? DEFAULT_LIMITS.maxLength;
  if (text.length > maxLength) {
    throw new PickleError(`pickle longer than maxLength (${maxLength})`);
  }
  const root = parseJson(text);
  if (isEnvelope(root)) return openEnvelope(root, options);
  // A tag is an object with a "$" key, which JSON spells "$" or "\u0024". A text with neither
  // $" nor \u0024 in it (most messages) holds no tag: it is returned as JSON.parse built it,
  // walked by no one. (Searching for '"$"' would cost a third of JSON.parse: quotes are
  // everywhere in JSON; '$"' is found at memchr speed.)
  if (!text.includes('$"') && !text.includes("\\u0024")) return root;
  return revive(root, limitsOf(options));
}

function isEnvelope(root: unknown): root is Record<string, unknown> {
  return typeof root === "object" && root !== null && !Array.isArray(root) &&
    Object.hasOwn(root, ENVELOPE_KEY) && !Object.hasOwn(root, "$");
}

/**
 * `{"pickle": 1 or 2, "json": <JSON taken literally>}` or `{"pickle": 1 or 2, "value": <node>}`,
 * as version 1 wrote them; a later version will write its number there.
 */
function openEnvelope(top: Record<string, unknown>, options: LoadsOptions | undefined): unknown {
  const version = top[ENVELOPE_KEY];
  if (version !== 1 && version !== PICKLE_VERSION) {
    throw new PickleError(
      Number.isInteger(version) && (version as number) > PICKLE_VERSION
        ? `pickle version ${version} is newer than this reader (version ${PICKLE_VERSION})`
        : 'not a pickle: an object with a "pickle" key is an envelope, and its version is 1 or 2',
    );
  }
  const body = Object.hasOwn(top, "json") ? "json" : "value";
  if (!Object.hasOwn(top, body) || Object.keys(top).length !== 2) {
    throw new PickleError('not a pickle: expected {"pickle": 1, "json" or "value": ...}');
  }
  // "json": stored as itself. JSON.parse is iterative in V8 (any depth is safe for loads) and
  // nothing in it is rebuilt, so it is returned as parsed.
  if (body === "json") return top.json;
  return revive(top.value, limitsOf(options));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new PickleError(`not a pickle: ${oneLine((error as Error).message)}`);
  }
}

/** A message quoting the input (JSON.parse's does) may hold line breaks: keep it one line. */
function oneLine(message: string): string {
  return String(message).replace(/[\r\n\u2028\u2029]+/g, " ").slice(0, 300);
}

const isHexDigit = (code: number): boolean =>
  (code >= 48 && code <= 57) || (code >= 97 && code <= 102) || (code >= 65 && code <= 70);

// A resizable ArrayBuffer counts as at least this many bytes against maxBufferBytes.
const RESIZABLE_MIN_CHARGE = 1024 * 1024;

// Errors. `new Error` costs microseconds in Deno whatever Error.stackTraceLimit says: Deno has
// V8 record the 10 calling frames of every new error (for the report of an uncaught one), and
// reading optimized frames is slow. structuredClone makes errors without recording frames, so
// loads takes fresh ones from clones, a batch at a time, of blank errors made once. They are
// real errors (Error.isError is true); the stored message and stack are then put on them.
const ERROR_BATCH = 128;
let blankErrors: Error[] | null = null;
let spareErrors: Error[] = [];

/**
 * A fresh error of the given type, with no message and, unless `withStack`, no own property (a
 * clone has an own "stack" accessor that gives undefined; it is left to be redefined over).
 */
function blankError(Type: ErrorConstructorLike, withStack: boolean): Error {
  if (spareErrors.length === 0) {
    blankErrors ??= Array.from({ length: ERROR_BATCH }, () => {
      const error = new Error();
      delete (error as { stack?: string }).stack;
      return error;
    });
    spareErrors = structuredClone(blankErrors);
  }
  const error = spareErrors.pop()!;
  if (!withStack) delete (error as { stack?: string }).stack;
  // The types differ only by prototype (and AggregateError by its own "errors", stored).
  if (Type !== Error) Object.setPrototypeOf(error, Type.prototype);
  return error;
}

const isObject = (value: unknown) => typeof value === "object" && value !== null;

// One descriptor for every non-enumerable field defined (its value is set before each use).
const hiddenField: PropertyDescriptor = {
  value: undefined,
  writable: true,
  enumerable: false,
  configurable: true,
};

const isIndex = (value: unknown, max = 2 ** 32 - 1): value is number =>
  Number.isSafeInteger(value) && (value as number) >= 0 &&
  (value as number) <= max;

/** `$[0]["name"]`: the path of the node being rebuilt, from the frames and objectInline's key. */
function revivePath(stack: ReviveFrame[], inlineKey: string | null): string {
  const steps = stack.map((frame) => {
    const index = frame.index - 1;
    switch (frame.kind) {
      case Revive.Array:
        return `[${index}]`;
      case Revive.Object:
        return `[${JSON.stringify(frame.keys![index])}]`;
      case Revive.Map:
        return `.entries()[${index >> 1}][${index & 1}]`;
      case Revive.Set:
        return `.values()[${index}]`;
      case Revive.Entries:
      case Revive.Assign:
        return `[${JSON.stringify(frame.names![index])}]`;
      default:
        return "<state>";
    }
  });
  if (inlineKey !== null) steps.push(`[${JSON.stringify(inlineKey)}]`);
  if (steps.length > 40) {
    steps.splice(10, steps.length - 20, `...(${steps.length - 20} more)...`);
  }
  return "$" + steps.join("");
}

/** Rebuilds the value of a parsed tagged node. */
function revive(root: unknown, limits: Required<LoadsOptions>): unknown {
  return new Reviver(limits).run(root);
}

/**
 * One walk over a parsed node, iterative like the Encoder's (an explicit stack of frames, so
 * no depth overflows the call stack). A node that holds objects pushes a frame; the walk takes
 * the frame on top, rebuilds its next item, and when the frame is done hands its value to the
 * frame below.
 */
class Reviver {
  stack: ReviveFrame[] = [];
  ids = new Map<number, unknown>();
  inlineKey: string | null = null; // the key objectInline is rebuilding, for error paths
  bufferBytes = 0; // of every ArrayBuffer so far, checked against maxBufferBytes

  constructor(readonly limits: Required<LoadsOptions>) {}

  fail(message: string): never {
    throw new PickleError(`at ${revivePath(this.stack, this.inlineKey)}: ${message}`);
  }

  /** The walk: rebuilds the root, then the items of each frame pushed, until none is left. */
  run(root: unknown): unknown {
    const stack = this.stack;
    let result = this.node(root);
    while (result === PENDING) {
      const frame = stack[stack.length - 1];
      if (frame.index < frame.length) {
        const node = frame.keys === null
          ? (frame.source as unknown[])[frame.index]
          : (frame.source as Record<string, unknown>)[frame.keys[frame.index]];
        frame.index++;
        // JSON primitives stand for themselves; in place, they are already where they belong.
        if (typeof node !== "object" || node === null) {
          if (frame.kind > Revive.Object) this.put(frame, node);
          continue;
        }
        const value = this.node(node);
        if (value !== PENDING) this.put(frame, value);
        continue;
      }
      stack.pop();
      const value = this.finish(frame);
      if (stack.length === 0) result = value;
      else this.put(stack[stack.length - 1], value);
    }
    return result;
  }

  push(
    kind: Revive,
    source: unknown[] | Record<string, unknown>,
    target: unknown,
    more?: Partial<ReviveFrame>,
  ): symbol {
    if (this.stack.length >= this.limits.maxDepth) {
      this.fail(`nested deeper than maxDepth (${this.limits.maxDepth})`);
    }
    const keys = kind === Revive.Object ? Object.keys(source) : null;
    this.stack.push({
      kind,
      source,
      keys,
      index: 0,
      length: keys ? keys.length : (source as unknown[]).length,
      target,
      names: more?.names ?? null,
      hidden: more?.hidden ?? 0,
      pendingKey: undefined,
      entry: more?.entry ?? null,
      id: more?.id,
    });
    return PENDING;
  }

  /**
   * An object node's "id": a whole number not seen before. Recorded before the node's
   * contents are rebuilt, so a reference inside them (a cycle) finds it.
   */
  define(id: unknown, value: unknown): void {
    if (id === undefined) return;
    if (!isIndex(id, Number.MAX_SAFE_INTEGER)) {
      this.fail(`bad id ${JSON.stringify(id)}`);
    }
    if (this.ids.has(id as number)) this.fail(`id ${id} defined twice`);
    this.ids.set(id as number, value);
  }

  dictOf(node: Record<string, unknown>, field: string): Record<string, unknown> {
    const value = node[field];
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.fail(`"${field}" must be an object`);
    }
    return value as Record<string, unknown>;
  }

  stringOf(node: Record<string, unknown>, field: string): string {
    const value = node[field];
    if (typeof value !== "string") this.fail(`"${field}" must be a string`);
    return value as string;
  }

  chargeBuffer(bytes: number): void {
    this.bufferBytes += bytes;
    if (this.bufferBytes > this.limits.maxBufferBytes) {
      this.fail(`ArrayBuffers larger than maxBufferBytes (${this.limits.maxBufferBytes}) in total`);
    }
  }

  /** Defines `target` under `id`, then a frame that sets `names` on it from `nodes`. */
  entries(
    target: object,
    id: unknown,
    names: string[],
    nodes: unknown[],
    hidden = 0,
    kind: Revive = Revive.Entries,
  ): symbol {
    this.define(id, target);
    return this.push(kind, nodes, target, { names, hidden });
  }

  /**
   * A node: a JSON primitive is itself; an array or object holding only primitives is itself
   * too (no frame needed); one holding objects gets a frame; an object with "$" is a tag.
   */
  node(node: unknown): unknown {
    if (typeof node !== "object" || node === null) return node;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const item = node[i];
        if (typeof item === "object" && item !== null) {
          return this.push(Revive.Array, node, node);
        }
      }
      return node;
    }
    const tag = (node as Record<string, unknown>).$;
    if (tag !== undefined) return this.tag(node as Record<string, unknown>, tag);
    if (this.inlineKey !== null) {
      return this.push(Revive.Object, node as Record<string, unknown>, node);
    }
    return this.objectInline(node as Record<string, unknown>);
  }

  /**
   * A plain object rebuilt without a frame of its own (a record of primitives, Dates, Maps...).
   * When a value needs a frame (it pushed one), this object's frame is slipped in under it and
   * the walk goes on as usual. One level at a time (inlineKey is set meanwhile): no recursion.
   */
  objectInline(node: Record<string, unknown>): unknown {
    const keys = Object.keys(node);
    for (let i = 0; i < keys.length; i++) {
      const item = node[keys[i]];
      if (typeof item !== "object" || item === null) continue;
      this.inlineKey = keys[i];
      const value = this.node(item);
      this.inlineKey = null;
      if (value === PENDING) {
        const frame = this.stack.pop()!;
        this.push(Revive.Object, node, node);
        this.stack[this.stack.length - 1].index = i + 1;
        this.stack.push(frame);
        return PENDING;
      }
      if (value !== item) setData(node, keys[i], value);
    }
    return node;
  }

  /** A tag: the value it stands for, or PENDING when a frame was pushed for its contents. */
  tag(node: Record<string, unknown>, tag: unknown): unknown {
    const id = node.id;
    switch (tag) {
      case "undefined":
        return undefined;
      case "NaN":
      case "Infinity":
      case "-Infinity":
      case "-0":
        return specialNumbers.get(tag);
      case "BigInt":
        return this.bigInt(node);
      case "ref":
        if (!this.ids.has(id as number)) {
          this.fail(`reference to an undefined id ${JSON.stringify(id)}`);
        }
        return this.ids.get(id as number);
      case "Date":
        return this.date(node, id);
      case "RegExp":
        return this.regExp(node, id);
      case "ArrayBuffer":
        return this.arrayBuffer(node, id);
      case "DataView":
        return this.dataView(node, id);
      case "URL":
        return this.url(node, id);
      case "URLSearchParams":
        return this.defined(id, new URLSearchParams(this.stringOf(node, "v")));
      case "Object":
        return this.objectTag(node, id);
      case "Array":
        return this.arrayTag(node, id);
      case "Map":
        return this.map(node, id);
      case "Set":
        return this.set(node, id);
      case "class":
        return this.instance(node, id);
    }
    const Type = errorTypes.get(tag as string);
    if (Type !== undefined) return this.error(node, id, Type);
    const TypedArray = typedArrays.get(tag as string);
    if (TypedArray !== undefined) return this.typedArray(node, id, TypedArray);
    const temporalType = temporalByTag.get(tag as string);
    if (temporalType !== undefined) return this.temporal(node, id, temporalType);
    if (typeof tag === "string" && tag.startsWith("Temporal.") && temporal === undefined) {
      this.fail(`${tag.slice(0, 100)}: this runtime has no Temporal`);
    }
    return this.fail(`unknown tag ${JSON.stringify(tag)?.slice(0, 100)}`);
  }

  /** Defines a value made in one step under its id, and returns it. */
  defined<T>(id: unknown, value: T): T {
    this.define(id, value);
    return value;
  }

  bigInt(node: Record<string, unknown>): bigint {
    // "0x1f" or "-0x1f". BigInt() reads hexadecimal digits in linear time (decimal ones in
    // superlinear time) and refuses any other character, but allows blanks around them: the
    // checks of the first and last characters refuse those.
    const text = this.stringOf(node, "v");
    const negative = text.startsWith("-");
    const hex = negative ? text.slice(1) : text;
    if (!hex.startsWith("0x") || !isHexDigit(hex.charCodeAt(hex.length - 1))) {
      this.fail("bad BigInt");
    }
    let magnitude = 0n;
    try {
      magnitude = BigInt(hex);
    } catch {
      this.fail("bad BigInt");
    }
    return negative ? -magnitude : magnitude;
  }

  date(node: Record<string, unknown>, id: unknown): Date {
    if (node.v !== null && typeof node.v !== "number") this.fail("bad Date");
    const date = new Date(node.v === null ? NaN : node.v as number);
    if (node.v !== null && Number.isNaN(date.getTime())) this.fail("bad Date");
    return this.defined(id, date);
  }

  regExp(node: Record<string, unknown>, id: unknown): RegExp {
    const regexp = new RegExp(this.stringOf(node, "source"), this.stringOf(node, "flags"));
    if (node.lastIndex !== undefined) {
      if (typeof node.lastIndex !== "number") this.fail("bad lastIndex");
      regexp.lastIndex = node.lastIndex as number;
    }
    return this.defined(id, regexp);
  }

  /** Base64 bytes; a resizable buffer (maxByteLength) counts as at least RESIZABLE_MIN_CHARGE. */
  arrayBuffer(node: Record<string, unknown>, id: unknown): ArrayBuffer {
    const base64 = this.stringOf(node, "v");
    const max = node.maxByteLength;
    if (max !== undefined) {
      if (!isIndex(max)) this.fail("bad maxByteLength");
      this.chargeBuffer(Math.max(max as number, RESIZABLE_MIN_CHARGE));
    }
    const bytes = Uint8Array.fromBase64(base64);
    if (max === undefined) this.chargeBuffer(bytes.length);
    let buffer = bytes.buffer;
    if (max !== undefined) {
      if ((max as number) < bytes.length) this.fail("bad maxByteLength (less than the bytes)");
      buffer = new ArrayBuffer(bytes.length, { maxByteLength: max as number });
      new Uint8Array(buffer).set(bytes);
    }
    return this.defined(id, buffer);
  }

  /** A view's "buffer": an "ArrayBuffer" tag or a "ref" to one, nothing else. */
  buffer(node: unknown): ArrayBuffer {
    const tag = (node as Record<string, unknown> | null)?.$;
    const buffer = tag === "ArrayBuffer" || tag === "ref"
      ? this.tag(node as Record<string, unknown>, tag)
      : undefined;
    if (!(buffer instanceof ArrayBuffer)) {
      this.fail(`"buffer" must be an ArrayBuffer`);
    }
    return buffer as ArrayBuffer;
  }

  dataView(node: Record<string, unknown>, id: unknown): DataView {
    const buffer = this.buffer(node.buffer);
    if (!isIndex(node.byteOffset) || !isIndex(node.byteLength)) {
      this.fail("bad DataView bounds");
    }
    const view = new DataView(buffer, node.byteOffset as number, node.byteLength as number);
    return this.defined(id, view);
  }

  typedArray(node: Record<string, unknown>, id: unknown, TypedArray: TypedArrayConstructor) {
    const buffer = this.buffer(node.buffer);
    if (!isIndex(node.byteOffset) || !isIndex(node.length)) {
      this.fail("bad typed array bounds");
    }
    const view = new TypedArray(buffer, node.byteOffset as number, node.length as number);
    return this.defined(id, view);
  }

  temporal(node: Record<string, unknown>, id: unknown, type: TemporalType): object {
    let value: object;
    try {
      value = type.read(node.v);
    } catch (error) {
      this.fail(`bad ${type.tag}: ${oneLine((error as Error)?.message)}`);
    }
    return this.defined(id, value!);
  }

  url(node: Record<string, unknown>, id: unknown): URL {
    const url = URL.parse(this.stringOf(node, "v")); // null, not an exception, when invalid
    if (url === null) this.fail("bad URL");
    return this.defined(id, url!);
  }

  /** A wrapped plain object (a "$" key, or shared), or one with no prototype. */
  objectTag(node: Record<string, unknown>, id: unknown): unknown {
    const dict = this.dictOf(node, "v");
    if (!Object.hasOwn(node, "proto")) {
      this.define(id, dict); // rebuilt in place, like an untagged object
      return this.push(Revive.Object, dict, dict);
    }
    if (node.proto !== null) this.fail('"proto" must be null');
    const keys = Object.keys(dict);
    const values = keys.map((key) => dict[key]);
    return this.entries(Object.create(null), id, keys, values, 0, Revive.Assign);
  }

  /** A shared dense array (its items in "v"), or a sparse one (a dict and a length). */
  arrayTag(node: Record<string, unknown>, id: unknown): unknown {
    if (Array.isArray(node.v)) {
      this.define(id, node.v);
      return this.push(Revive.Array, node.v, node.v);
    }
    const dict = this.dictOf(node, "v");
    if (!isIndex(node.length)) this.fail("bad Array length");
    const keys = Object.keys(dict);
    if (keys.includes("length")) {
      this.fail('an Array\'s "length" is not a property');
    }
    const array = new Array(node.length as number);
    return this.entries(array, id, keys, keys.map((key) => dict[key]), 0, Revive.Assign);
  }

  map(node: Record<string, unknown>, id: unknown): unknown {
    const pairs = node.v;
    if (!Array.isArray(pairs)) {
      this.fail('"v" must be an array of [key, value] pairs');
    }
    let plain = true;
    for (const pair of pairs as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2) {
        this.fail("a Map entry must be [key, value]");
      }
      plain &&= allPrimitive(pair as unknown[]);
    }
    if (plain) return this.defined(id, new Map(pairs as [unknown, unknown][]));
    const map = new Map();
    this.define(id, map);
    return this.push(Revive.Map, (pairs as unknown[]).flat(), map);
  }

  set(node: Record<string, unknown>, id: unknown): unknown {
    if (!Array.isArray(node.v)) this.fail('"v" must be an array');
    if (allPrimitive(node.v as unknown[])) {
      return this.defined(id, new Set(node.v as unknown[]));
    }
    const set = new Set();
    this.define(id, set);
    return this.push(Revive.Set, node.v as unknown[], set);
  }

  /** An instance of a registered class: its properties, or restore() of its state. */
  instance(node: Record<string, unknown>, id: unknown): unknown {
    const name = this.stringOf(node, "name");
    const entry = classesByName.get(name);
    if (entry === undefined) {
      this.fail(`class ${JSON.stringify(name.slice(0, 100))} is not registered`);
    }
    if (entry!.restore) {
      if (!Object.hasOwn(node, "state")) this.fail('"state" missing');
      return this.push(Revive.Custom, [node.state], undefined, { entry, id });
    }
    const dict = this.dictOf(node, "v");
    const keys = Object.keys(dict);
    const values = keys.map((key) => dict[key]);
    return this.entries(Object.create(entry!.prototype), id, keys, values);
  }

  error(node: Record<string, unknown>, id: unknown, Type: ErrorConstructorLike): unknown {
    const present = errorFields.filter((field) => Object.hasOwn(node, field));
    const error = blankError(Type, present.includes("stack"));
    // The usual error needs no frame: no extra property, and fields that are their own value
    // (a message, a stack, "errors" as an array of primitives...).
    const final = (item: unknown) => !isObject(item) || (Array.isArray(item) && allPrimitive(item));
    if (node.v === undefined && present.every((field) => final(node[field]))) {
      this.define(id, error);
      for (const field of present) {
        hiddenField.value = node[field];
        Object.defineProperty(error, field, hiddenField);
      }
      hiddenField.value = undefined;
      return error;
    }
    const extra = node.v === undefined ? {} : this.dictOf(node, "v");
    const names = [...present, ...Object.keys(extra)];
    const nodes = names.map((name, i) => i < present.length ? node[name] : extra[name]);
    return this.entries(error, id, names, nodes, present.length);
  }

  /** Delivers a rebuilt value to the frame whose item it is. */
  put(frame: ReviveFrame, value: unknown): void {
    const index = frame.index - 1;
    switch (frame.kind) {
      case Revive.Array:
        if ((frame.source as unknown[])[index] !== value) {
          (frame.source as unknown[])[index] = value;
        }
        return;
      case Revive.Object: {
        const key = frame.keys![index];
        if ((frame.source as Record<string, unknown>)[key] !== value) {
          setData(frame.source, key, value);
        }
        return;
      }
      case Revive.Map:
        if ((index & 1) === 0) frame.pendingKey = value;
        else (frame.target as Map<unknown, unknown>).set(frame.pendingKey, value);
        return;
      case Revive.Set:
        (frame.target as Set<unknown>).add(value);
        return;
      // Assigning is 3 times faster than defining, and meets no setter here: a null-prototype
      // object inherits none, an array only __proto__'s, which setData does not call.
      case Revive.Assign:
        setData(frame.target as object, frame.names![index], value);
        return;
      case Revive.Entries:
        Object.defineProperty(frame.target, frame.names![index], {
          value,
          writable: true,
          enumerable: index >= frame.hidden,
          configurable: true,
        });
        return;
      default:
        frame.target = value;
    }
  }

  /** The value of a frame whose items are all rebuilt: its target, or restore() of a state. */
  finish(frame: ReviveFrame): unknown {
    if (frame.kind !== Revive.Custom) return frame.target;
    let value: unknown;
    try {
      value = frame.entry!.restore!(frame.target);
    } catch (error) {
      this.fail(
        `restore of class ${frame.entry!.name} failed: ${oneLine((error as Error)?.message)}`,
      );
    }
    this.define(frame.id, value);
    return value;
  }
}

/** Every item a primitive: a Map or Set is built in one step, without a frame. */
function allPrimitive(items: unknown[]): boolean {
  for (let i = 0; i < items.length; i++) {
    if (typeof items[i] === "object" && items[i] !== null) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Streams: one pickle per line. Framing by "\n" is safe because a pickle never holds a raw
// newline: JSON escapes control characters in strings and dumps writes no whitespace. It also
// escapes U+2028 and U+2029 (which JSON may leave raw, and which some line splitters, such as
// Python's str.splitlines, treat as line ends), and JSON.stringify escapes lone surrogates, so
// the UTF-8 bytes are valid and a reader in any language can split on the byte 0x0A.

const encoder = new TextEncoder();

/**
 * Writes values to a byte stream (a child's stdin, Deno.stdout.writable...) as pickles, one per
 * line. `send` encodes at once (a value that cannot be pickled throws there, with its path) and
 * queues the line; lines queued while a write is in flight go out together in the next write,
 * so a burst of small values costs few writes. Errors of the stream (the reader has gone:
 * BrokenPipe) are thrown by the next `send`, `flush` or `close`.
 */
export class PickleWriter {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queue: string[] = [];
  #writing: Promise<void> | null = null;
  #error: unknown = null;
  #options?: DumpsOptions;

  /** Writes to `stream` (e.g. a child's stdin), each value dumped with `options`. */
  constructor(stream: WritableStream<Uint8Array>, options?: DumpsOptions) {
    this.#writer = stream.getWriter();
    this.#options = options;
  }

  /** Pickles a value and queues its line for writing. */
  send(value: unknown): void {
    if (this.#error !== null) throw this.#error;
    this.#queue.push(dumps(value, this.#options) + "\n");
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const chunk = this.#queue.join("");
        this.#queue.length = 0;
        await this.#writer.write(encoder.encode(chunk));
      }
    } catch (error) {
      this.#error = error;
      this.#queue.length = 0;
    } finally {
      this.#writing = null;
    }
  }

  /** Waits until every queued line has been handed to the stream. */
  async flush(): Promise<void> {
    while (this.#writing !== null) await this.#writing;
    if (this.#error !== null) throw this.#error;
  }

  /** Flushes, then closes the stream: the reader sees EOF after the last value. */
  async close(): Promise<void> {
    await this.flush();
    await this.#writer.close();
  }
}

/**
 * Reads pickles from a byte stream, one per line, as an async iterable of values. Lines may
 * arrive cut anywhere (a pipe delivers what the writer's writes and the kernel buffer make of
 * them), and may be long. Throws a PickleError for a malformed line, a line longer than
 * `maxLength`, or a stream that ends in the middle of a line. Leaving the loop early cancels
 * the stream.
 */
export async function* readPickles(
  stream: ReadableStream<Uint8Array>,
  options?: LoadsOptions,
): AsyncGenerator<unknown> {
  const maxLength = options?.maxLength ?? DEFAULT_LIMITS.maxLength;
  const decoder = new TextDecoder("utf-8", { fatal: true }); // keeps split UTF-8 intact
  const reader = stream.getReader();
  let partial: string[] = []; // the start of a line whose "\n" has not arrived yet
  let partialLength = 0;
  let done = false;
  try {
    while (true) {
      const chunk = await reader.read();
      let text: string;
      try {
        text = chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
      } catch {
        throw new PickleError("the stream is not valid UTF-8");
      }
      let start = 0;
      for (let end = text.indexOf("\n"); end >= 0; end = text.indexOf("\n", start)) {
        let line = text.slice(start, end);
        start = end + 1;
        if (partial.length > 0) {
          partial.push(line);
          line = partial.join("");
          partial = [];
          partialLength = 0;
        }
        if (line !== "") yield loads(line, options);
      }
      if (start < text.length) {
        partial.push(text.slice(start));
        partialLength += text.length - start;
        if (partialLength > maxLength) {
          throw new PickleError(`a line is longer than maxLength (${maxLength})`);
        }
      }
      if (chunk.done) break;
    }
    done = true;
    if (partialLength > 0) {
      throw new PickleError("the stream ended in the middle of a pickle (no final newline)");
    }
  } finally {
    if (done) reader.releaseLock();
    else await reader.cancel().catch(() => {});
  }
}
