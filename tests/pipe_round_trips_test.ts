/**
 * End-to-end tests of scripts/pipe_round_trips.ts, run as a user runs it. Rates differ from run
 * to run and are masked; no test asserts a speed. Each run gets a TMPDIR of its own, so that the
 * FIFO directories it makes (and must remove) can be seen.
 */
import assert from "node:assert/strict";
import { assertHelp, assertUsageError, lineReader, runDeno, runScript } from "./helpers.ts";
import { spawnScript, wholeRunBlock, withTempDir } from "./helpers.ts";

const NAME = "pipe_round_trips.ts";
const mask = (text: string) => text.replaceAll(/\d+ round trips\/s/g, "R round trips/s");
const leftIn = (dir: string) => [...Deno.readDirSync(dir)].map((entry) => entry.name);

Deno.test("the whole run prints what the header shows (rates aside), and leaves nothing", async () => {
  await withTempDir("round_trips_tmp_", async (tmp) => {
    const block = wholeRunBlock(NAME);
    const result = await runDeno(block.denoArgs, { env: { TMPDIR: tmp }, timeoutMs: 120_000 });
    assert.equal(result.stderr, "");
    assert.equal(result.code, 0);
    assert.equal(mask(result.stdout), mask(block.expected));
    assert.deepEqual(leftIn(tmp), [], "no FIFO directory is left");
  });
});

Deno.test("--round-trips N prints one line, for benchmarks", async () => {
  await withTempDir("round_trips_tmp_", async (tmp) => {
    const result = await runScript(NAME, ["--round-trips", "2000"], { env: { TMPDIR: tmp } });
    assert.equal(result.stderr, "");
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\d+ round trips\/s\n$/);
    assert.deepEqual(leftIn(tmp), []);
  });
});

Deno.test("Ctrl-C (SIGINT to the parent): exit 130, no worker and no FIFO left", async () => {
  await withTempDir("round_trips_tmp_", async (tmp) => {
    await using parent = spawnScript(NAME, [], { env: { TMPDIR: tmp }, timeoutMs: 60_000 });
    const stdout = lineReader(parent.stdout);
    assert.match(`${await stdout.next()}`, /^20000 strict round trips/);
    parent.kill("SIGINT");
    // The workers share the parent's stderr: its EOF comes once every one of them has exited.
    assert.equal(await lineReader(parent.stderr).rest(), "");
    await stdout.rest();
    assert.equal((await parent.status).code, 130);
    assert.deepEqual(leftIn(tmp), []);
  });
});

Deno.test("usage errors: one line, exit 2", async () => {
  for (
    const args of [["--round-trips", "0"], ["--round-trips"], ["--round-trips", "5", "6"], ["-x"]]
  ) {
    assertUsageError(await runScript(NAME, args), /--round-trips N/, args.join(" "));
  }
});

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME, /--round-trips N/);
});
