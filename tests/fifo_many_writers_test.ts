/**
 * End-to-end tests of scripts/fifo_many_writers.ts, run with the header's flags. Short lines
 * (under PIPE_BUF) must all arrive whole; for long lines only the counts are checked, since
 * whether a given run tears any of them is up to the scheduler.
 */
import assert from "node:assert/strict";
import {
  assertUsageError,
  childrenOf,
  exists,
  lineReader,
  mkfifo,
  openFifoForReading,
  processesMentioning,
  processState,
  runDeno,
  runScript,
  spawnScript,
  wholeRunBlock,
  withTempDir,
} from "./helpers.ts";
import { isIntact, makeLine } from "../scripts/fifo_many_writers.ts";

const NAME = "fifo_many_writers.ts";
const DEADLINE = 30_000;

interface Row {
  bytes: number;
  sent: number;
  received: number;
  intact: number;
  torn: number;
}

function rows(stdout: string): Row[] {
  return [...stdout.matchAll(
    /^(\d+)-byte lines: sent (\d+), received (\d+), intact (\d+), torn (\d+) \(in \d+ ms\)$/gm,
  )].map(([, bytes, sent, received, intact, torn]) => ({
    bytes: Number(bytes),
    sent: Number(sent),
    received: Number(received),
    intact: Number(intact),
    torn: Number(torn),
  }));
}

/** Masks what varies between runs: pid, temporary path, times, the long-line tear counts. */
function mask(text: string): string {
  return text
    .replace(/Parent \d+/g, "Parent <pid>")
    .replace(/\S*fifo_many_writers_\w+\/fifo/g, "<dir>/fifo")
    .replace(/\(in \d+ ms\)/g, "(in <ms> ms)")
    .replace(
      /^(100000-byte .*)intact \d+, torn \d+/gm,
      "$1intact <n>, torn <n>",
    );
}

Deno.test("the whole run: 4 writers x 10,000 short lines arrive with zero torn lines", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: DEADLINE });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(mask(result.stdout), mask(block.expected));
  const [short, long] = rows(result.stdout);
  assert.deepEqual(short, {
    bytes: 100,
    sent: 40000,
    received: 40000,
    intact: 40000,
    torn: 0,
  });
  assert.equal(long.received, long.sent);
  assert.equal(long.intact + long.torn, long.received);
  const dir = result.stdout.match(/FIFO (\S+)\/fifo/)![1];
  assert.equal(await exists(dir), false, "the temporary directory is gone");
});

Deno.test("long lines: every line is counted, torn or not", async () => {
  const result = await runScript(NAME, [
    "--writers",
    "3",
    "--lines",
    "0",
    "--long-lines",
    "20",
  ], { timeoutMs: DEADLINE });
  assert.equal(result.code, 0, result.stderr);
  const [long] = rows(result.stdout);
  assert.equal(long.bytes, 100000);
  assert.equal(long.sent, 60);
  assert.equal(long.received, 60, "no newline is lost, even in torn lines");
  assert.equal(long.intact + long.torn, 60);
});

Deno.test("usage errors: one line `error: ... (see --help)`, exit 2", async () => {
  const mistakes = [
    ["--bogus"],
    ["--writers", "0"],
    ["--writers", "65"],
    ["--lines", "-1"],
    ["--long-lines", "1e3"],
    ["--role", "writer"],
  ];
  const results = await Promise.all(mistakes.map((args) => runScript(NAME, args)));
  results.forEach((result, i) => assertUsageError(result, undefined, mistakes[i].join(" ")));
  const help = await runScript(NAME, ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: deno run [^\n]+ scripts\/fifo_many_writers\.ts /);
});

Deno.test("SIGINT mid-run: exit 130, writers killed and reaped, FIFO and directory gone", async () => {
  await using parent = spawnScript(NAME, [
    "--writers",
    "2",
    "--lines",
    "10000000",
    "--long-lines",
    "0",
  ], { timeoutMs: DEADLINE });
  const out = lineReader(parent.stdout);
  const dir = (await out.next())!.match(/FIFO (\S+)\/fifo/)![1];
  // The round's label is printed once both writers are started: they run now (their command
  // lines name the FIFO), and they are the parent's only children.
  assert.equal(await out.until("100-byte lines: "), "100-byte lines: ");
  const writers = await childrenOf(parent.pid);
  assert.equal(writers.length, 2, `children: ${writers}`);
  assert.equal((await processesMentioning(`${dir}/fifo`)).length, 2, "both writers run");
  parent.kill("SIGINT");
  assert.equal((await parent.status).code, 130);
  assert.equal(await new Response(parent.stderr).text(), "");
  assert.equal(await out.rest(), "");
  assert.equal(await exists(dir), false);
  // The parent reaps its writers before it exits: no process is left, not even a zombie.
  for (const pid of writers) assert.equal(await processState(pid), null);
  assert.deepEqual(await processesMentioning(dir), []);
});

Deno.test("a closed stdout (like `| head -1`): exit 0, quietly, directory gone", async () => {
  await using parent = spawnScript(
    NAME,
    ["--writers", "2", "--lines", "2000", "--long-lines", "2"],
    {
      timeoutMs: DEADLINE,
    },
  );
  const out = lineReader(parent.stdout);
  const dir = (await out.next())!.match(/FIFO (\S+)\/fifo/)![1];
  await out.cancel(); // as `head` does: the labels and figures to come meet a closed pipe
  assert.equal((await parent.status).code, 0);
  assert.equal(await new Response(parent.stderr).text(), "", "no stack trace, no message");
  assert.equal(await exists(dir), false);
});

Deno.test("a writer whose reader goes away stops quietly: exit 0, no message, no stack trace", async () => {
  await withTempDir("fifo_many_writers_test_", async (dir) => {
    const path = `${dir}/fifo`;
    await mkfifo(path);
    // A writer as the parent starts it (--child PATH ID LINES BYTES); this test is its reader.
    const args = ["--child", path, "1", "10000000", "100"];
    await using writer = spawnScript(NAME, args, { timeoutMs: DEADLINE });
    const fifo = await openFifoForReading(path, writer);
    const first = new Uint8Array(100);
    assert.ok((await fifo.read(first))! > 0, "read the start of a line");
    assert.match(new TextDecoder().decode(first), /^w1 000000 b/);
    fifo.close();
    assert.equal((await writer.status).code, 0);
    assert.equal(await new Response(writer.stderr).text(), "");
  });
});

Deno.test("isIntact: a whole line is intact; a line with another writer's bytes is torn", () => {
  const line = makeLine(2, 17, 100).slice(0, -1);
  assert.equal(line.length, 99);
  assert.ok(isIntact(line, 100));
  assert.ok(!isIntact(line.slice(0, 50) + makeLine(3, 4, 100), 100), "bytes of w3 inside w2's");
  assert.ok(!isIntact(line.slice(0, 50), 100), "a piece of a line");
});
