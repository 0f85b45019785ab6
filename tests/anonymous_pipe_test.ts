/**
 * End-to-end tests of scripts/anonymous_pipe.ts, run as a user runs it: a subprocess with the
 * header's flags. Every wait is on an event (a line read, a process exit), never on a sleep.
 */
import assert from "node:assert/strict";
import { numberLine, readLines } from "../scripts/anonymous_pipe.ts";
import {
  alive,
  assertHelp,
  assertUsageError,
  childrenOf,
  headerRunFlags,
  lineReader,
  repoRoot,
  runDeno,
  runScript,
  scriptPath,
  SIGNAL_EXITS,
  spawnScript,
  spawnWithDeadline,
  wholeRunBlock,
} from "./helpers.ts";

const NAME = "anonymous_pipe.ts";
const LINE = /^Parent (\d+) got "(Number \d{3})" at (\d+\.\d{3})$/;

/** An endless run (--count 0), as the signal and pipe tests use it. */
const ENDLESS = ["--count", "0", "--interval", "5"];

/**
 * Waits for a run's first line, the event that proves both processes run (the child wrote it,
 * the parent printed it), and returns the reader and the child's pid, the parent's only child.
 */
async function firstLine(parent: Deno.ChildProcess) {
  const stdout = lineReader(parent.stdout);
  assert.match((await stdout.next())!, LINE);
  const children = await childrenOf(parent.pid);
  assert.equal(children.length, 1, `children: ${children}`);
  return { stdout, childPid: children[0] };
}

/** Waits for a process to exit, draining its output: returns the rest of it and the exit code. */
async function ending(process: Deno.ChildProcess, stdout?: ReturnType<typeof lineReader>) {
  const [stderr, status, rest] = await Promise.all([
    lineReader(process.stderr).rest(),
    process.status,
    stdout?.rest(),
  ]);
  return { stderr, code: status.code, stdout: rest ?? "" };
}

Deno.test("the whole run prints what the header shows (pids and times aside)", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs);
  const mask = (text: string) =>
    text.replace(/Parent \d+/g, "Parent <pid>").replace(
      /at \d+\.\d{3}/g,
      "at <time>",
    );
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(mask(result.stdout), mask(block.expected));
});

Deno.test("the parent prints the article's lines: its own pid, 000..004 wrapping, rising times", async () => {
  await using parent = spawnScript(NAME, ["--count", "12", "--interval", "0"]);
  const { stdout, stderr, code } = await ending(parent, lineReader(parent.stdout));
  assert.equal(stderr, "");
  assert.equal(code, 0);
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, 12);
  const times: number[] = [];
  lines.forEach((line, sequence) => {
    const match = line.match(LINE);
    assert.ok(match, `unexpected line: ${line}`);
    assert.equal(
      Number(match[1]),
      parent.pid,
      "the pid printed is the parent's",
    );
    assert.equal(match[2], `Number 00${sequence % 5}`);
    times.push(Number(match[3]));
  });
  for (let i = 1; i < times.length; i++) assert.ok(times[i] >= times[i - 1]);
  assert.ok(
    Math.abs(times[0] - Date.now() / 1000) < 60,
    "times are epoch seconds",
  );
});

Deno.test("numberLine counts modulo 5, as the article does", () => {
  assert.deepEqual([0, 1, 4, 5, 9, 10].map(numberLine), [
    "Number 000",
    "Number 001",
    "Number 004",
    "Number 000",
    "Number 004",
    "Number 000",
  ]);
});

Deno.test("readLines rebuilds lines cut anywhere: a 1 MiB line, split UTF-8, no final newline", async () => {
  const long = "x".repeat(1024 * 1024);
  const text = `short\n${long}\néè€😀\n\nlast without newline`;
  const bytes = new TextEncoder().encode(text);
  // Cut into chunks of odd, varying sizes, so lines and characters are split across reads.
  const chunks: Uint8Array[] = [];
  for (
    let start = 0, size = 1;
    start < bytes.length;
    size = (size * 7 + 3) % 70_001 + 1
  ) {
    chunks.push(bytes.subarray(start, start + size));
    start += size;
  }
  const stream = ReadableStream.from(chunks);
  const lines: string[] = [];
  for await (const line of readLines(stream)) lines.push(line);
  assert.deepEqual(lines, ["short", long, "éè€😀", "", "last without newline"]);
});

Deno.test("a child killed mid-run makes the parent fail with one clear line, no hang", async () => {
  await using parent = spawnScript(NAME, ["--count", "0", "--interval", "20"]);
  const { stdout, childPid } = await firstLine(parent);
  Deno.kill(childPid, "SIGKILL");
  const { stderr, code } = await ending(parent, stdout);
  assert.equal(stderr, "error: the child was killed by SIGKILL\n");
  assert.equal(code, 1);
});

Deno.test("the child exits quietly when its reader goes away (parent killed)", async () => {
  await using parent = spawnScript(NAME, ENDLESS);
  const { childPid } = await firstLine(parent);
  parent.kill("SIGKILL"); // the parent cannot clean up: the pipe's read end just closes
  await parent.status;
  // The child inherited the parent's stderr, so this EOF comes only once the child has exited
  // too, and anything it printed (a stack trace) would be here.
  assert.equal(await lineReader(parent.stderr).rest(), "");
  assert.equal(await alive(childPid), false);
});

Deno.test("the child alone stops quietly with code 0 when its stdout is closed", async () => {
  await using child = spawnScript(NAME, ["--child", "0", "0"]); // what the parent runs
  const stdout = lineReader(child.stdout);
  assert.equal(await stdout.next(), "Number 000");
  await stdout.cancel(); // close the read end
  const { stderr, code } = await ending(child);
  assert.equal(stderr, "");
  assert.equal(code, 0);
});

Deno.test("the parent stops quietly, and stops its child, when its own stdout closes (| head)", async () => {
  await using parent = spawnScript(NAME, ENDLESS);
  const { stdout, childPid } = await firstLine(parent);
  await stdout.cancel(); // what `head` does when it has read enough
  const { stderr, code } = await ending(parent);
  assert.equal(stderr, "");
  assert.equal(code, 0);
  assert.equal(await alive(childPid), false);
});

Deno.test("Ctrl-C stops both processes: exit 130, no child left, no trace", async () => {
  // A terminal's Ctrl-C sends SIGINT to the whole foreground process group. `setsid` gives the
  // parent a group of its own (its pid is the group id), which the test then signals.
  await using parent = spawnWithDeadline("setsid", {
    args: [Deno.execPath(), "run", ...headerRunFlags(NAME), scriptPath(NAME), ...ENDLESS],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }, 20_000);
  const { stdout, childPid } = await firstLine(parent); // both processes are running
  Deno.kill(-parent.pid, "SIGINT");
  const { stderr, code } = await ending(parent, stdout);
  assert.equal(stderr, "");
  assert.equal(code, 130);
  assert.equal(await alive(childPid), false);
});

for (const [signal, exitCode] of SIGNAL_EXITS) {
  Deno.test(`${signal} to the parent alone (kill): the parent dies of it (${exitCode}), and its child ends at its next write, with no signal handler`, async () => {
    await using parent = spawnScript(NAME, ENDLESS);
    const { stdout, childPid } = await firstLine(parent);
    parent.kill(signal);
    // The child inherited the parent's stderr: its EOF comes once the child has exited too.
    const { stderr, code } = await ending(parent, stdout);
    assert.equal(stderr, "");
    assert.equal(code, exitCode);
    assert.equal(await alive(childPid), false);
  });
}

Deno.test("a child killed by SIGINT alone is a failure of the child: one line, exit 1", async () => {
  await using parent = spawnScript(NAME, ENDLESS);
  const { stdout, childPid } = await firstLine(parent);
  Deno.kill(childPid, "SIGINT");
  const { stderr, code } = await ending(parent, stdout);
  assert.equal(stderr, "error: the child was killed by SIGINT\n");
  assert.equal(code, 1);
});

Deno.test("without --allow-run: one line naming the flag, exit 1, no stack trace", async () => {
  const result = await runDeno(["run", scriptPath(NAME), "--count", "1"]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.match(
    result.stderr,
    /^error: Requires run access to "deno", run again with the --allow-run flag\n$/,
  );
});

for (
  const [args, problem] of [
    [["--count", "-1"], "--count"],
    [["--count=-1"], "--count must be a whole number"],
    [["--count", "abc"], "--count must be a whole number"],
    [["--count", "1.5"], "--count must be a whole number"],
    [["--interval", "soon"], "--interval must be a whole number"],
    [["--interval=-5"], "--interval must be a whole number"],
    [["--interval", "3000000000"], "--interval must be below 2147483648 ms"],
    [["--verbose"], "Unknown option '--verbose'"],
    [["--role", "child"], "Unknown option '--role'"],
  ] as const
) {
  Deno.test(`usage error for ${args.join(" ")}: one line, exit code 2`, async () => {
    const result = await runScript(NAME, [...args]);
    assertUsageError(result);
    assert.ok(result.stderr.includes(problem), result.stderr);
  });
}

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(
    NAME,
    /^usage: deno run --allow-run=deno scripts\/anonymous_pipe.ts/,
    /--count N/,
    /--interval MS/,
  );
});
