/**
 * End-to-end tests of scripts/pipe_channel.ts: the lesson run as a user runs it, and its Channel
 * used directly, each with a real worker (a child copy of the lesson), synchronized on events.
 */
import assert from "node:assert/strict";
import { Channel, WINDOW } from "../scripts/pipe_channel.ts";
import { alive, assertHelp, assertUsageError, lineReader, runDeno, runScript } from "./helpers.ts";
import { spawnScript, wholeRunBlock } from "./helpers.ts";

const NAME = "pipe_channel.ts";
const maskPids = (text: string) => text.replaceAll(/worker \d+/g, "worker N");

/** A channel to a real worker, closed (or its worker reaped) however the test ends. */
async function withChannel(body: (channel: Channel) => Promise<void>): Promise<void> {
  const channel = new Channel();
  const deadline = setTimeout(() => channel.child.kill("SIGKILL"), 30_000);
  try {
    await body(channel);
  } finally {
    await channel.close();
    clearTimeout(deadline);
  }
}

Deno.test("the whole run prints what the header shows (pids aside)", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs);
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(maskPids(result.stdout), maskPids(block.expected));
  const [first, second] = [...result.stdout.matchAll(/worker (\d+)/g)].map((match) => match[1]);
  assert.notEqual(first, second, "the worker that dies is a second one");
});

Deno.test("a throw in the worker is rethrown here: class, message and cause", async () => {
  await withChannel(async (channel) => {
    const error = await channel.call("divide", 1, 0).then(() => null, (error) => error);
    assert.ok(error instanceof RangeError);
    assert.equal(error.message, "division by zero");
    assert.deepEqual(error.cause, { dividend: 1 });
    await assert.rejects(channel.call("nothing"), { message: 'no function "nothing"' });
    await assert.rejects(channel.call("__proto__"), { message: 'no function "__proto__"' });
    assert.throws(() => channel.call("add", () => 1), /cannot pickle|function/i);
    assert.equal(await channel.call("divide", 6, 3), 2, "the channel still works");
  });
});

Deno.test("a killed worker rejects every pending call with one clear error", async () => {
  const channel = new Channel();
  const pending = [channel.call("gate"), channel.call("sleep", 60_000), channel.call("gate")];
  assert.equal(await channel.call("add", 1, 1), 2); // the calls above have reached the worker
  channel.child.kill("SIGKILL");
  const errors = await Promise.all(pending.map((call) => call.then(() => null, (error) => error)));
  const expected = `worker ${channel.child.pid} was killed by SIGKILL`;
  assert.deepEqual(errors.map((error) => error?.message), [expected, expected, expected]);
  assert.ok(errors.every((error) => error === errors[0]), "one error for all");
  await assert.rejects(channel.call("add", 1, 2), { message: expected }, "and every later call");
  assert.equal((await channel.close()).signal, "SIGKILL");
});

Deno.test("an AbortSignal rejects its call at once; the late answer is dropped", async () => {
  await withChannel(async (channel) => {
    const controller = new AbortController();
    const gated = channel.callWith({ signal: controller.signal }, "gate");
    const reason = new Error("no longer wanted");
    controller.abort(reason);
    await assert.rejects(gated, (error) => error === reason);
    await channel.call("open"); // the worker now answers the gate: that answer is dropped
    assert.equal(await channel.call("add", 2, 2), 4, "later answers still match their calls");
    const early = channel.callWith({ signal: AbortSignal.abort() }, "add", 1, 1);
    await assert.rejects(early, { name: "AbortError" });
  });
});

Deno.test("10,000 calls at once: each answered exactly once, with its own answer", async () => {
  await withChannel(async (channel) => {
    let settled = 0;
    const calls = Array.from(
      { length: 10_000 },
      (_, i) => channel.call("add", i, 1).finally(() => settled++),
    );
    const answers = await Promise.all(calls);
    assert.equal(settled, 10_000);
    assert.deepEqual(answers, Array.from({ length: 10_000 }, (_, i) => i + 1));
    assert.equal(WINDOW, 64);
  });
});

Deno.test("answers come back out of order, each to its own call", async () => {
  await withChannel(async (channel) => {
    // "gate" is sent first and answered last: it waits in the worker until "open" has run.
    const order: unknown[] = [];
    const gate = channel.call("gate").then(() => order.push("gate"));
    const sum = channel.call("add", 20, 22).then((value) => order.push(value));
    const open = channel.call("open").then(() => order.push("open"));
    await Promise.all([gate, sum, open]);
    assert.deepEqual(order, [42, "open", "gate"]);
  });
});

Deno.test("close(): the worker answers what it has, then exits with code 0", async () => {
  const channel = new Channel();
  const sleeping = channel.call("sleep", 100);
  const status = await channel.close();
  assert.equal(status.code, 0);
  assert.equal(await sleeping, 100, "the call in flight was answered before the exit");
  await assert.rejects(channel.call("add", 1, 1), { message: "the channel is closed" });
});

Deno.test("Ctrl-C (SIGINT to the parent): exit 130, and no worker is left", async () => {
  await using parent = spawnScript(NAME, [], { timeoutMs: 30_000 });
  const stdout = lineReader(parent.stdout);
  const first = await stdout.next();
  const workerPid = Number(first?.match(/^worker (\d+):/)?.[1]);
  assert.ok(workerPid > 0, `${first}`);
  parent.kill("SIGINT");
  // The workers share the parent's stderr: its EOF comes once every one of them has exited.
  assert.equal(await lineReader(parent.stderr).rest(), "");
  await stdout.rest();
  const status = await parent.status;
  assert.equal(status.code, 130);
  assert.equal(await alive(workerPid), false);
});

Deno.test("usage error for an unknown argument: one line, exit 2", async () => {
  assertUsageError(await runScript(NAME, ["--workers", "3"]), /unknown argument "--workers"/);
});

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME);
});
