/**
 * End-to-end tests of scripts/pipe_pool.ts: the lesson run as a user runs it, and its Pool used
 * directly, with real workers (child copies of the lesson), synchronized on events, never on time.
 */
import assert from "node:assert/strict";
import { Pool } from "../scripts/pipe_pool.ts";
import { assertHelp, assertUsageError, lineReader, runDeno, runScript } from "./helpers.ts";
import { spawnScript, wholeRunBlock } from "./helpers.ts";

const NAME = "pipe_pool.ts";
/** Times, the speed-up and pids differ from run to run; the rest of each line may not. */
const mask = (text: string) =>
  text.replaceAll(/\d+ ms/g, "T ms").replace(/\d+\.\d\dx/, "S").replaceAll(
    /worker \d+/g,
    "worker P",
  );

/** A pool of real workers, killed however the test ends, with a deadline. */
async function withPool(size: number, body: (pool: Pool) => Promise<void>): Promise<void> {
  const pool = new Pool(size);
  const deadline = setTimeout(() => pool.kill(), 30_000);
  try {
    await body(pool);
  } finally {
    await pool.kill();
    clearTimeout(deadline);
  }
}

Deno.test("the whole run prints what the header shows (times, speed-up and pids aside)", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: 60_000 });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(mask(result.stdout), mask(block.expected));
});

Deno.test("calls spread over the workers: each idle worker takes one", async () => {
  await withPool(3, async (pool) => {
    const pids = await Promise.all([pool.call("pid"), pool.call("pid"), pool.call("pid")]);
    assert.equal(new Set(pids).size, 3, `${pids}`);
    assert.ok(!pids.includes(Deno.pid));
  });
});

Deno.test("a crashed worker is replaced, and no call waiting in the pool is lost", async () => {
  await withPool(1, async (pool) => {
    const first = await pool.call("pid");
    const crash = pool.call("exit", 1);
    const waiting = Array.from({ length: 5 }, () => pool.call("pid"));
    await assert.rejects(crash, { message: `worker ${first} exited with code 1` });
    const pids = await Promise.all(waiting);
    assert.equal(new Set(pids).size, 1, "all five ran on the one new worker");
    assert.notEqual(pids[0], first);
  });
});

Deno.test("a worker killed mid-call: that call rejects with one clear error", async () => {
  await withPool(1, async (pool) => {
    const pid = await pool.call("pid") as number;
    const long = pool.call("primes", 0, 1e9); // minutes of work: it is killed long before
    Deno.kill(pid, "SIGKILL");
    await assert.rejects(long, { message: `worker ${pid} was killed by SIGKILL` });
    assert.notEqual(await pool.call("pid"), pid, "a new worker answers");
  });
});

Deno.test("errors: a throw comes back as an error, unpicklable arguments throw at once", async () => {
  await withPool(1, async (pool) => {
    await assert.rejects(pool.call("nothing"), { message: 'no function "nothing"' });
    assert.throws(() => pool.call("primes", () => 1), /pickle|function/i);
    assert.equal(await pool.call("primes", 0, 100), 25, "the worker still works");
  });
});

Deno.test("close(): calls in flight are answered, waiting ones reject, workers exit 0", async () => {
  const pool = new Pool(1);
  const inFlight = pool.call("primes", 0, 1000);
  const waiting = pool.call("primes", 0, 10).then(() => null, (error) => error.message);
  const statuses = await pool.close();
  assert.deepEqual(statuses.map((status) => status.code), [0]);
  assert.equal(await inFlight, 168);
  assert.equal(await waiting, "the pool is closed");
  await assert.rejects(pool.call("pid"), { message: "the pool is closed" });
});

Deno.test("Ctrl-C (SIGINT to the parent): exit 130, and no worker is left", async () => {
  await using parent = spawnScript(NAME, ["--workers", "2"], { timeoutMs: 30_000 });
  const stdout = lineReader(parent.stdout);
  assert.match(`${await stdout.next()}`, /^2 workers count the primes/); // they are busy now
  parent.kill("SIGINT");
  // The workers share the parent's stderr: its EOF comes once every one of them has exited.
  assert.equal(await lineReader(parent.stderr).rest(), "");
  assert.equal(await stdout.rest(), "");
  assert.equal((await parent.status).code, 130);
});

Deno.test("usage errors: one line, exit 2", async () => {
  for (const args of [["--workers", "0"], ["--workers"], ["--workers", "2", "x"], ["--fast"]]) {
    assertUsageError(await runScript(NAME, args), /--workers N/, args.join(" "));
  }
});

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME, /--workers N/);
});
