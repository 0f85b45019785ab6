/**
 * End-to-end tests of the lesson scripts/pickle_json.ts, run as a user runs it. The codec it
 * uses, lib/pickle_json.ts, is tested in pickle_codec_test.ts.
 */
import assert from "node:assert/strict";
import { dumps, PickleWriter, readPickles, register } from "../lib/pickle_json.ts";
import { demoValues, Point, viaJson } from "../scripts/pickle_json.ts";
import {
  alive,
  assertHelp,
  assertUsageError,
  lineReader,
  runDeno,
  runScript,
  spawnScript,
  wholeRunBlock,
} from "./helpers.ts";

const NAME = "pickle_json.ts";

Deno.test("the whole run prints what the header shows (pids aside)", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: 30_000 });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  const mask = (text: string) =>
    text.replace(/parent \d+/g, "parent PID").replace(/child \d+/g, "child PID");
  assert.equal(mask(result.stdout), mask(block.expected));
});

Deno.test("every value the parent sends comes back equal (the point moved), JSON loses each", async () => {
  // The lesson's own child, driven by the test: each value through the pipe and back.
  await using child = spawnScript(NAME, ["--child"], { stdin: true });
  const toChild = new PickleWriter(child.stdin);
  for (const value of demoValues()) toChild.send(value);
  await toChild.close();
  const back: unknown[] = [];
  for await (const value of readPickles(child.stdout)) back.push(value);
  assert.equal((await child.status).code, 0);
  const expected = demoValues();
  (expected.at(-1) as Point).move(10, 10);
  assert.equal(back.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.equal(dumps(back[i]), dumps(expected[i]), `value ${i}`);
    assert.notEqual(viaJson(expected[i]), Deno.inspect(expected[i], { breakLength: Infinity }));
  }
  assert.ok(back.at(-1) instanceof Point, "the class came back");
  const ring = back.at(-2) as { next: unknown };
  assert.equal(ring.next, ring, "the cycle came back");
  assert.ok(Object.is(back[2], -0));
});

Deno.test("one pickle per line: no pickle contains a raw newline, even of text with newlines", () => {
  for (const value of [...demoValues(), "a\nb\r\n\u2028\u2029", { "k\n": ["\n"] }]) {
    assert.ok(!dumps(value).includes("\n"), dumps(value));
  }
});

Deno.test("the child refuses a malformed pickle: one line, exit 1", async () => {
  const result = await runScript(NAME, ["--child"], {
    stdin: '{"pickle":1,"value":{"$":"Nope"}}\n',
  });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^error: child: [^\n]*Nope[^\n]*\n$/);
});

Deno.test("a class the reader has not registered is refused, not rebuilt as something else", async () => {
  class Secret {
    constructor(public code = 1) {}
  }
  register(Secret, { name: "test.Secret" });
  const result = await runScript(NAME, ["--child"], { stdin: dumps(new Secret()) + "\n" });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^error: child: [^\n]*test\.Secret[^\n]*\n$/);
});

Deno.test("the child ends by itself when its parent goes away (EOF on its stdin)", async () => {
  await using child = spawnScript(NAME, ["--child"], { stdin: true });
  const toChild = new PickleWriter(child.stdin);
  toChild.send(new Point(1, 1));
  const answers = lineReader(child.stdout);
  assert.equal(await answers.next(), dumps(new Point(11, 11))); // it runs and answers
  await toChild.close(); // what the parent's death does to the pipe
  assert.equal((await child.status).code, 0);
  assert.equal(await alive(child.pid), false);
});

Deno.test("usage errors: one line, exit 2; no --allow-run: one line, exit 1", async () => {
  assertUsageError(await runScript(NAME, ["--bogus"]), /--bogus/);
  const denied = await runDeno(["run", `scripts/${NAME}`]);
  assert.equal(denied.code, 1);
  assert.equal(denied.stdout, "");
  assert.match(denied.stderr, /^error: Requires run access to "deno"[^\n]*\n$/);
});

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME, /^usage: deno run --allow-run=deno scripts\/pickle_json.ts/);
});
