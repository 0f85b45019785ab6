/**
 * End-to-end tests of the lesson scripts/pickle_json.ts, run as a user runs it: a subprocess
 * with its header's flags, and its child as the parent starts it (`--child`, no permissions).
 * The codec itself, lib/pickle_json.ts, is tested in tests/pickle_codec_test.ts.
 */
import assert from "node:assert/strict";
import { dumps, loads } from "../lib/pickle_json.ts";
import { demoValues, Point, viaJson } from "../scripts/pickle_json.ts";
import {
  alive,
  assertHelp,
  assertUsageError,
  childrenOf,
  lineReader,
  repoRoot,
  runDeno,
  runScript,
  spawnScript,
  spawnWithDeadline,
  wholeRunBlock,
} from "./helpers.ts";

const NAME = "pickle_json.ts";
const encoder = new TextEncoder();

/** The child, started as the parent starts it: `deno run <lesson> --child`, no permissions. */
function spawnChild(): Deno.ChildProcess {
  return spawnWithDeadline(Deno.execPath(), {
    args: ["run", `scripts/${NAME}`, "--child"],
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }, 20_000);
}

Deno.test("the whole run prints what the header shows (pids aside)", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs);
  const mask = (text: string) =>
    text.replace(/^parent \d+ sent child \d+/, "parent P sent child C");
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(mask(result.stdout), mask(block.expected));
  // The pids printed are real: the parent's own, and a child's that is not its own.
  const [, parentPid, childPid] = result.stdout.match(/^parent (\d+) sent child (\d+)/)!;
  assert.notEqual(parentPid, childPid);
});

Deno.test("what JSON loses: each value's JSON round trip differs, or throws", () => {
  const [record, nan, minusZero, big, date, map, set, ring, point] = demoValues();
  assert.equal(viaJson(record), '{ note: "two\\nlines" }'); // undefined is dropped
  assert.equal(viaJson(nan), "null");
  assert.equal(viaJson(minusZero), "0");
  assert.match(viaJson(big), /^throws: .*BigInt/);
  assert.equal(viaJson(date), `"${(date as Date).toISOString()}"`); // a string, not a Date
  assert.equal(viaJson(map), "{}");
  assert.equal(viaJson(set), "{}");
  assert.match(viaJson(ring), /^throws: .*circular/);
  assert.equal(viaJson(point), "{ x: 1, y: 2 }"); // no class
});

Deno.test("the child rebuilds every value, answers it, and the answers come back whole", async () => {
  await using child = spawnChild();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(demoValues().map((value) => dumps(value) + "\n").join("")));
  await writer.close(); // EOF: the child's loop ends, and so does its stdout
  const lines = (await lineReader(child.stdout).rest()).trimEnd().split("\n");
  assert.equal((await child.status).code, 0);
  type Answers = [Record<string, unknown>, number, number, bigint, Date, Map<string, string>];
  const [record, nan, minusZero, big, date, map, set, ring, point] = lines.map((line) =>
    loads(line)
  ) as [...Answers, Set<number>, { next: unknown }, Point];
  assert.ok("nothing" in record && record.nothing === undefined && record.note === "two\nlines");
  assert.ok(Number.isNaN(nan) && Object.is(minusZero, -0) && big === 2n ** 64n);
  assert.equal(date.getTime(), Date.UTC(1815, 11, 10));
  assert.deepEqual([...map], [["en", "native"]]);
  assert.deepEqual([...set], [2, 3]);
  assert.equal((ring as { next: unknown }).next, ring); // the cycle is one object
  // The child called move() on it: only a Point rebuilt with its class has that method.
  assert.ok(point instanceof Point);
  assert.deepEqual({ ...point }, { x: 11, y: 12 });
});

Deno.test("one value a line: no pickle holds a raw newline, whatever its strings hold", async () => {
  const nasty = Array.from({ length: 32 }, (_, code) => String.fromCharCode(code)).join("") +
    "\u2028\u2029\r\n";
  const values = [nasty, { [nasty]: [nasty] }, new Map([[nasty, new Set([nasty])]])];
  for (const value of values) assert.ok(!dumps(value).includes("\n"));
  await using child = spawnChild();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(values.map((value) => dumps(value) + "\n").join("")));
  await writer.close();
  const answers = (await lineReader(child.stdout).rest()).split("\n");
  assert.equal(answers.length, values.length + 1); // three lines and the final newline's ""
  assert.deepEqual(answers.slice(0, -1).map((line) => loads(line)), values);
});

Deno.test("the child answers each value as it reads it, so the parent must read while writing", async () => {
  await using child = spawnChild();
  const writer = child.stdin.getWriter();
  const answers = lineReader(child.stdout);
  // Lockstep: each answer arrives while the child's stdin is still open and has no next value.
  for (let i = 0; i < 3; i++) {
    await writer.write(encoder.encode(dumps(new Point(i, i)) + "\n"));
    assert.deepEqual({ ...loads((await answers.next())!) as Point }, { x: i + 10, y: i + 10 });
  }
  await writer.close();
  assert.equal(await answers.next(), null);
  assert.equal((await child.status).code, 0);
});

Deno.test("a reader that has not registered the class refuses it rather than guess", async () => {
  const pickle = dumps(new Point(1, 2));
  const code = `import { loads } from ${JSON.stringify(`${repoRoot}lib/pickle_json.ts`)};
try { loads(${JSON.stringify(pickle)}); console.log("built"); }
catch (error) { console.log(error.name, error.message); }`;
  const result = await runDeno(["eval", code]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^PickleError .*class.*"Point"/);
});

Deno.test("the child: a malformed line is one line and exit 1; a closed stdout or EOF ends it quietly", async () => {
  const bad = await runDeno(["run", `scripts/${NAME}`, "--child"], { stdin: "{not json\n" });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^error: child: [^\n]+\n$/);
  // Its parent gone (the read end of its stdout closed): the next answer breaks the pipe.
  await using child = spawnChild();
  await child.stdout.cancel();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(dumps(1) + "\n"));
  await writer.close().catch(() => {}); // the child may have gone already
  assert.equal((await child.status).code, 0);
  assert.equal(await lineReader(child.stderr).rest(), "");
});

Deno.test("Ctrl-C: the child dies of it (130), with nothing on stderr", async () => {
  await using child = spawnChild();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(dumps(new Point(1, 1)) + "\n"));
  const lines = lineReader(child.stdout);
  assert.equal(await lines.next(), dumps(new Point(11, 11))); // it is running and waiting
  child.kill("SIGINT");
  assert.equal((await child.status).code, 130);
  await writer.close().catch(() => {});
  assert.equal(await lineReader(child.stderr).rest(), "");
});

Deno.test("the parent's stdout closed before it prints (| head): exit 0, quiet, no child left", async () => {
  await using parent = spawnScript(NAME);
  await parent.stdout.cancel(); // the read end is closed before the parent writes a byte
  const [status, stderr] = await Promise.all([parent.status, lineReader(parent.stderr).rest()]);
  assert.equal(stderr, "");
  assert.equal(status.code, 0);
  assert.deepEqual(await childrenOf(parent.pid), []);
});

Deno.test({
  name: "a child that stops reading, fails or is killed: one error line and exit 1, never 0",
  ignore: Deno.build.os === "windows",
  async fn() {
    // A `deno` first on PATH: `--allow-run=deno` grants it, not the real binary, so the lesson
    // falls back to running `deno` by name and starts this one. It closes its stdin and ends
    // at once or later; whether the parent's write meets the closed pipe varies from run to
    // run, so each is tried a few times. The last one exits 0 having answered nothing.
    const dir = await Deno.makeTempDir({ prefix: "pickle_json_test_" });
    try {
      const env = { PATH: `${dir}:${Deno.env.get("PATH")}` };
      for (
        const [script, message] of [
          ["exec 0<&-\nexit 3", /^error: the child failed \(exit code 3\)\n$/],
          ["exec 0<&-\nsleep 0.2\nexit 3", /^error: the child failed \(exit code 3\)\n$/],
          ["kill -9 $$", /^error: the child failed \(SIGKILL\)\n$/],
          ["exec 0<&-\nexit 0", /^error: the child stopped reading; it answered 0 values\n$/],
        ] as const
      ) {
        await Deno.writeTextFile(`${dir}/deno`, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
        for (let attempt = 0; attempt < 2; attempt++) {
          const result = await runScript(NAME, [], { env });
          assert.equal(result.code, 1, `${script}: ${result.stderr}`);
          assert.match(result.stderr, message, script);
          assert.equal(result.stdout, "");
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("usage errors exit 2 with one line; without --allow-run, one line and exit 1", async () => {
  assertUsageError(await runScript(NAME, ["--bogus"]), /unknown argument "--bogus"/);
  assertUsageError(await runScript(NAME, ["values"]), /unknown argument "values"/);
  const denied = await runDeno(["run", `scripts/${NAME}`]);
  assert.equal(denied.code, 1);
  assert.equal(denied.stdout, "");
  assert.match(denied.stderr, /^error: Requires run access to "deno"[^\n]*--allow-run[^\n]*\n$/);
});

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME, /^usage: deno run --allow-run=deno scripts\/pickle_json.ts/, /--help/);
});

Deno.test("no child outlives a whole run", async () => {
  await using parent = spawnScript(NAME);
  const out = lineReader(parent.stdout);
  const childPid = Number((await out.next())!.match(/^parent \d+ sent child (\d+)/)![1]);
  await out.rest();
  assert.equal((await parent.status).code, 0);
  assert.equal(await alive(childPid), false);
});
