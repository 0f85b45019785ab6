/**
 * End-to-end tests of scripts/pipe_batching.ts. No test asserts a speed (that is the bench's
 * job): they assert the table's shape against the header's whole-run block, that the child writes
 * exactly the messages it is asked for, that the Batcher flushes a lone message while its
 * producer is still alive, and the usage and Ctrl-C behaviour.
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
  scriptPath,
  SIGNAL_EXITS,
  spawnScript,
  spawnWithDeadline,
  wholeRunBlock,
} from "./helpers.ts";

const SCRIPT = "pipe_batching.ts";

/** Numbers become N and runs of spaces one space: figures change, the table does not. */
function mask(text: string): string {
  return text.replace(/\d+(\.\d+)?/g, "N").replace(/ +/g, " ");
}

/** Runs the child role as the parent does (no permission flags, every flag given); its stdout. */
async function runChild(flags: string[]): Promise<string> {
  const result = await runDeno(["run", scriptPath(SCRIPT), "--child", ...flags], {
    timeoutMs: 20_000,
  });
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

Deno.test("the whole run prints what the header shows, every row checked", async () => {
  const block = wholeRunBlock(SCRIPT);
  const result = await runDeno(block.denoArgs, { timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  assert.equal(mask(result.stdout), mask(block.expected));
  const rows = result.stdout.split("\n").filter((line) => /\/s /.test(line));
  assert.equal(rows.length, 3);
  for (const row of rows) {
    const [rate, ratio] = row.match(/\d+(\.\d+)?/g)!.slice(-2).map(Number);
    assert.ok(rate > 0 && ratio > 0, row);
  }
});

Deno.test("a message child writes every JSON line once, in order", async () => {
  for (const mode of ["each-await", "each-sync", "batched"]) {
    const count = mode === "batched" ? 20_000 : 2_000; // batched: several full batches.
    const text = await runChild([mode, `${count}`]);
    const lines = text.split("\n");
    assert.equal(lines.pop(), "", `${mode}: the output ends with a newline`);
    assert.equal(lines.length, count, mode);
    lines.forEach((line, seq) => {
      assert.deepEqual(JSON.parse(line), { seq, text: `Number ${seq}` });
    });
  }
});

Deno.test("the Batcher sends a lone message when the loop goes idle, not at exit", async () => {
  // The producer sends one message, then waits for its stdin: only the idle flush can
  // deliver the line while it is still alive.
  const code = `import { Batcher } from "./scripts/${SCRIPT}";
    await new Batcher().send("lone message\\n");
    await Deno.stdin.read(new Uint8Array(1));`;
  await using child = spawnWithDeadline(Deno.execPath(), {
    args: ["eval", code],
    cwd: repoRoot,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }, 20_000);
  const lines = lineReader(child.stdout);
  assert.equal(await lines.next(), "lone message");
  await child.stdin.close(); // Now let it finish.
  assert.equal(await lines.next(), null);
  assert.equal((await child.status).code, 0);
});

Deno.test("bad options: exactly one error line naming the problem, exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["--messages", "0"], /--messages must be a whole number >= 1/],
    [["--messages", "lots"], /--messages must be a whole number >= 1/],
    [["--messages", "1.5"], /--messages must be a whole number >= 1/],
    [["--bytes", "64M"], /Unknown option '--bytes'/],
    [["--nope"], /Unknown option '--nope'/],
    [["--messages"], /'--messages <value>' argument missing/],
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
    /^usage: deno run --allow-run=deno scripts\/pipe_batching.ts /,
    /--messages N/,
  );
});

Deno.test("without --allow-run: one line saying which permission to give, exit 1", async () => {
  const result = await runDeno(["run", `scripts/${SCRIPT}`, "--messages", "10"], {
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
    // Far more messages than can be sent before the signal; the count names the child.
    const childFlag = "--child each-await 987654321";
    await using parent = spawnScript(SCRIPT, ["--messages", "987654321"], { timeoutMs: 20_000 });
    const lines = lineReader(parent.stdout);
    assert.match((await lines.next())!, /^987654321 JSON lines a row, each parsed by the parent$/);
    assert.match((await lines.next())!, /^child writes, parent reads/);
    // The first row's label is printed once the child's first bytes reached the parent: the
    // child runs now, and is the parent's only child.
    assert.equal(await lines.until("per message"), "await write per message");
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
