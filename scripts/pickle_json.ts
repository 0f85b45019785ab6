/**
 * @title Pickles through a pipe: rich values to a child and back
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno scripts/pickle_json.ts
 * @resource {https://docs.python.org/3/library/pickle.html} Python: pickle
 * @resource {https://pymotw.com/3/pickle/} PyMOTW: pickle (streams, and the class problem)
 *
 * The article's claim 6: a pipe carries bytes, so objects must be serialized to travel through
 * it. `JSON.stringify` is not enough: it drops `undefined`, turns NaN into null and -0 into 0,
 * makes a Date a string and a Map or Set `{}`, loses an instance's class, and throws on a BigInt
 * or a cycle. The parent sends such values to a child copy of this script, one pickle a line
 * (`dumps` of lib/pickle_json.ts), while it reads the child's answers, and prints what came back
 * beside what a JSON round trip makes of each. scripts/pickle_by_hand.ts shows how it is done.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/pickle_json.ts
 * parent 4242 sent child 4243 these lines, a pickle each:
 *   {"note":"two\nlines","nothing":{"$":"undefined"}}
 *   {"$":"NaN"}
 *   {"$":"-0"}
 *   {"$":"BigInt","v":"0x10000000000000000"}
 *   {"$":"Date","v":-4861728000000}
 *   {"$":"Map","v":[["en","native"]]}
 *   {"$":"Set","v":[2,3]}
 *   {"$":"Object","id":0,"v":{"name":"ring","next":{"$":"ref","id":0}}}
 *   {"$":"class","name":"Point","v":{"x":1,"y":2}}
 * what came back (the child moved the point)       | a JSON round trip
 *   { note: "two\nlines", nothing: undefined }     | { note: "two\nlines" }
 *   NaN                                            | null
 *   -0                                             | 0
 *   18446744073709551616n                          | throws: Do not know how to serialize a BigInt
 *   1815-12-10T00:00:00.000Z                       | "1815-12-10T00:00:00.000Z"
 *   Map(1) { "en" => "native" }                    | {}
 *   Set(2) { 2, 3 }                                | {}
 *   <ref *1> { name: "ring", next: [Circular *1] } | throws: Converting circular structure to JSON
 *   Point { x: 11, y: 12 }                         | { x: 1, y: 2 }
 * ```
 *
 * @module
 */
import { dumps, PickleError, PickleWriter, readPickles, register } from "../lib/pickle_json.ts";

// The parent starts the child with two pipes: it writes pickles into the child's stdin and reads
// the answers from the child's stdout. The child is this same file, `import.meta.url` (a file:
// URL or a server's), run with no permissions at all: reading a pickle runs no code from it.
async function parent(): Promise<number> {
  // `await using` kills and reaps the child however this function ends.
  await using child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();

  // Write while reading. The child answers each value as it reads it. A parent that wrote all
  // its values before reading would, with enough of them, fill the answer pipe (the child waits
  // to write, so it stops reading), then the question pipe (we wait to write): a deadlock. So
  // the sending runs on its own while we read. Closing the child's stdin is its EOF.
  const values = demoValues();
  const sending = (async () => {
    const toChild = new PickleWriter(child.stdin);
    for (const value of values) toChild.send(value);
    await toChild.close();
  })();
  const stoppedReading = sending.then(() => false, () => true); // true: a write failed
  const answers: unknown[] = [];
  try {
    for await (const answer of readPickles(child.stdout)) answers.push(answer);
  } catch (error) {
    if (!(error instanceof PickleError)) throw error;
    console.error(`error: the child's answer: ${error.message}`);
    return 1;
  }
  // Only after EOF ask how the child ended: a child that stopped reading early (it crashed, or
  // closed its stdin) broke the pipe under our writes (BrokenPipe) or left values unanswered.
  const status = await child.status;
  if (!status.success) {
    console.error(`error: the child failed (${status.signal ?? `exit code ${status.code}`})`);
    return 1;
  }
  if (await stoppedReading || answers.length !== values.length) {
    console.error(`error: the child stopped reading; it answered ${answers.length} values`);
    return 1;
  }
  // console.log ignores a closed stdout (`... | head -3`): the parent then ends quietly.
  console.log(`parent ${Deno.pid} sent child ${child.pid} these lines, a pickle each:`);
  for (const value of values) console.log(`  ${dumps(value)}`);
  console.log(`${"what came back (the child moved the point)".padEnd(48)} | a JSON round trip`);
  answers.forEach((back, i) => console.log(`  ${show(back).padEnd(46)} | ${viaJson(values[i])}`));
  return 0;
}

// A pickle names a class; it does not carry the class's code (nor does Python's: PyMOTW's
// pickle_stream warns that the reader needs the class). So both sides register Point under one
// name: the parent to write it, the child to rebuild it. Both run this file, so this `register`
// runs on both sides; a reader without it refuses the line (`unknown class`).

/** A class whose instances travel as Points: the child calls a method of each one it gets. */
export class Point {
  /** A point at (x, y). */
  constructor(public x: number, public y: number) {}
  /** Moves the point; only a real Point, rebuilt with its prototype, has this method. */
  move(dx: number, dy: number): this {
    this.x += dx;
    this.y += dy;
    return this;
  }
}
register(Point, { name: "Point" });

/** What the parent sends: values that a JSON round trip loses, changes or refuses. */
export function demoValues(): unknown[] {
  const ring: { name: string; next?: unknown } = { name: "ring" };
  ring.next = ring; // a cycle
  const record = { note: "two\nlines", nothing: undefined };
  const date = new Date(Date.UTC(1815, 11, 10));
  const [map, set] = [new Map([["en", "native"]]), new Set([2, 3])];
  return [record, NaN, -0, 2n ** 64n, date, map, set, ring, new Point(1, 2)];
}

// The child reads pickles from its stdin and answers each at once on its stdout. One value a
// line is a safe framing: `dumps` writes JSON without whitespace, and JSON escapes every control
// character in a string ("two\nlines" travels as `"two\nlines"`), so a raw newline byte only
// ever ends a pickle. readPickles rebuilds the lines however the pipe cuts the bytes.
async function child(): Promise<void> {
  const toParent = new PickleWriter(Deno.stdout.writable);
  try {
    for await (const value of readPickles(Deno.stdin.readable)) {
      toParent.send(value instanceof Point ? value.move(10, 10) : value);
    }
    await toParent.close(); // EOF for the parent
  } catch (error) {
    // The parent has gone: nobody reads our answers, so stop. No signal handler is needed.
    if (error instanceof Deno.errors.BrokenPipe) return;
    if (!(error instanceof PickleError)) throw error;
    console.error(`error: child: ${error.message}`); // a malformed line: one line, exit 1
    Deno.exitCode = 1;
  }
}

/** A value as Deno prints it, on one line (strings quoted, a cycle shown as `[Circular *1]`). */
const show = (value: unknown) => Deno.inspect(value, { breakLength: Infinity });

/** What `JSON.parse(JSON.stringify(value))` gives, as Deno prints it, or what it throws. */
export function viaJson(value: unknown): string {
  try {
    return show(JSON.parse(JSON.stringify(value)));
  } catch (error) {
    return `throws: ${(error as Error).message.split("\n")[0]}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

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

/**
 * Runs the lesson and exits with its code. A missing permission is the user's mistake: one line
 * (Deno's message names the flag), code 1. Any other error is a bug and keeps its stack trace.
 */
async function exitWith(lesson: () => Promise<number>): Promise<never> {
  try {
    Deno.exit(await lesson());
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error(`error: ${error.message}`);
    Deno.exit(1);
  }
}

// The command line. The child needs no settings; `--child` alone makes it the child.
const USAGE = `usage: deno run --allow-run=deno scripts/pickle_json.ts [--help]
  Sends values that JSON loses to a child copy of this script, one pickle a line through its
  stdin pipe, and prints what comes back through its stdout pipe.
  --help  show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await child();
} else if (import.meta.main) {
  requireDeno();
  if (Deno.args[0] === "--help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (Deno.args.length > 0) usageError(`unknown argument "${Deno.args[0]}"`);
  await exitWith(parent);
}
