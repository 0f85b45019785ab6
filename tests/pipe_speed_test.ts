/**
 * End-to-end tests of scripts/pipe_speed.ts. No test asserts a speed (that is the bench's job):
 * they assert the table's shape against the header's whole-run block, that the child writes
 * exactly the bytes it is asked for, that a reading child counts what it got and stops at a byte
 * out of place, and the usage and Ctrl-C behaviour.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  alive,
  assertHelp,
  assertUsageError,
  childrenOf,
  lineReader,
  processesMentioning,
  repoRoot,
  runDeno,
  runScript,
  SIGNAL_EXITS,
  spawnScript,
  wholeRunBlock,
} from "./helpers.ts";

const SCRIPT = "pipe_speed.ts";

/** Numbers become N and runs of spaces one space: figures change, the table does not. */
function mask(text: string): string {
  return text.replace(/\d+(\.\d+)?/g, "N").replace(/ +/g, " ");
}

/** Runs the child role as the parent does (no permission flags, every flag given), feeding it `input`. */
async function runChildOn(flags: string[], input?: Uint8Array) {
  await using child = new Deno.Command(Deno.execPath(), {
    args: ["run", `scripts/${SCRIPT}`, "--child", ...flags],
    cwd: repoRoot,
    stdin: input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).spawn();
  if (input) await ReadableStream.from([input]).pipeTo(child.stdin).catch(() => {});
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    new Response(child.stdout).bytes(),
    new Response(child.stderr).text(),
  ]);
  return { code: status.code, stdout, stderr };
}

/** Runs the child role and returns its raw stdout, failing unless it exits 0. */
async function runChild(flags: string[], input?: Uint8Array): Promise<Uint8Array> {
  const output = await runChildOn(flags, input);
  assert.equal(output.code, 0, output.stderr);
  return output.stdout;
}

Deno.test("the whole run prints what the header shows, every row checked", async () => {
  const block = wholeRunBlock(SCRIPT);
  const result = await runDeno(block.denoArgs, { timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  assert.equal(mask(result.stdout), mask(block.expected));
  const rows = result.stdout.split("\n").filter((line) => /\/s /.test(line));
  assert.equal(rows.length, 4);
  assert.match(rows[3], /^parent await write 1 MiB, child readSync +\d+ MB\/s/);
  for (const row of rows) {
    const [rate, ratio] = row.match(/\d+(\.\d+)?/g)!.slice(-2).map(Number);
    assert.ok(rate > 0 && ratio > 0, row);
  }
});

Deno.test("a bulk child writes exactly --bytes, byte k being k % 251", async () => {
  for (const mode of ["sync", "async"]) {
    const bytes = 300_001; // Not a multiple of the chunk: the last write is short.
    const out = await runChild([mode, `${bytes}`, "4096"]);
    assert.equal(out.length, bytes, mode);
    assert.ok(out.every((byte, k) => byte === k % 251), mode);
  }
});

Deno.test("a reading child counts the bytes it got and stops at one out of place", async () => {
  const good = new Uint8Array(300_001).map((_, k) => k % 251);
  const report = new TextDecoder().decode(await runChild(["read", "300001", "65536"], good));
  assert.match(report, /^300001 \d+(\.\d+)?(e-\d+)?$/);
  // Fewer bytes than due: the child says how many came; the parent judges (the row fails).
  const short = new TextDecoder().decode(
    await runChild(["read", "300001", "65536"], good.subarray(0, 1000)),
  );
  assert.match(short, /^1000 /);
  // 255 is never due (k % 251 < 251), and 10000 bytes of it hold at least one whole 4 KiB read.
  const bad = good.slice().fill(255, 100_000, 110_000);
  const result = await runChildOn(["read", "300001", "4096"], bad);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /bytes \d+-\d+ are out of place/);
});

Deno.test("bad options: exactly one error line naming the problem, exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["--bytes", "lots"], /--bytes takes a size/],
    [["--bytes", "0"], /--bytes takes a size/],
    [["--bytes", "1.5M"], /--bytes takes a size/],
    [["--messages", "10"], /Unknown option '--messages'/],
    [["--nope"], /Unknown option '--nope'/],
    [["--bytes"], /'--bytes <value>' argument missing/],
    [["extra"], /Unexpected argument 'extra'/],
  ];
  for (const [args, problem] of cases) {
    const result = await runScript(SCRIPT, args, { timeoutMs: 10_000 });
    assertUsageError(result, problem, args.join(" "));
  }
});

Deno.test("--help prints the usage and the options on stdout, exit 0", async () => {
  await assertHelp(
    SCRIPT,
    /^usage: deno run --allow-run=deno scripts\/pipe_speed.ts /,
    /--bytes SIZE/,
  );
});

Deno.test("without --allow-run: one line saying which permission to give, exit 1", async () => {
  const result = await runDeno(["run", `scripts/${SCRIPT}`, "--bytes", "1M"], {
    timeoutMs: 10_000,
  });
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /^error: Requires run access to "deno", run again with the --allow-run flag\n$/,
  );
});

for (const [signal, exitCode] of SIGNAL_EXITS) {
  Deno.test(`${signal}: exit ${exitCode}, quietly, and the writing child ends at its next write`, async () => {
    // 99999M is far more than can be sent before the signal; its byte count names the child.
    const childFlag = `--child sync ${99999 * 1024 * 1024}`;
    await using parent = spawnScript(SCRIPT, ["--bytes", "99999M"], { timeoutMs: 20_000 });
    const lines = lineReader(parent.stdout);
    assert.match((await lines.next())!, /^writer, reader \(\d+ bytes a row\) +rate +x$/);
    // The first row's label is printed once the child's first bytes reached the parent: the
    // child runs now, and is the parent's only child.
    assert.equal(await lines.until("BYOB reader"), "child writeSync 64 KiB, parent BYOB reader");
    const children = await childrenOf(parent.pid);
    assert.equal(children.length, 1, `children: ${children}`);
    assert.equal((await processesMentioning(childFlag)).length, 1, "the writing child runs");
    parent.kill(signal);
    const status = await parent.status;
    assert.equal(status.code, exitCode);
    // The child inherited the parent's stderr: its EOF comes once the child has exited too, and
    // anything it printed (a stack trace) would be here. No signal handler: the child ends at
    // its next write, BrokenPipe, quietly.
    assert.equal(await new Response(parent.stderr).text(), "");
    assert.equal(
      await alive(children[0]),
      false,
      "the child is gone (a zombie only until init reaps it)",
    );
    assert.deepEqual(await processesMentioning(childFlag), []);
    await lines.rest();
  });
}
