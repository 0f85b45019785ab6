/**
 * End-to-end tests of scripts/pipeline.ts, run as a user runs it: a subprocess with the header's
 * flags. Every wait is on an event (a line read, an exit, an EOF), never on a sleep.
 *
 * The stages inherit the parent's stderr, which is a pipe to the test: its EOF comes only once
 * the parent and every stage have exited. So a run whose stderr has ended has left no stage
 * running, and each test checks the stage pids the first line names as well.
 */
import assert from "node:assert/strict";
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
  withTempDir,
} from "./helpers.ts";

const NAME = "pipeline.ts";
const START = /^Deno runs (.*) \(pids (\d+) (\d+) (\d+)\)$/;

/** Pids and wall times differ from run to run: `(pids P P P)`, `T s`. */
function mask(text: string): string {
  return text.replace(/\(pids \d+ \d+ \d+\)/g, "(pids P P P)").replace(/\b\d+\.\d{2} s\b/g, "T s");
}

/** How many of the numbers 1 to `lines` contain `digit`: what `grep -e <digit> | wc -l` counts. */
function expectedCount(lines: number, digit: string): number {
  let count = 0;
  for (let n = 1; n <= lines; n++) if (`${n}`.includes(digit)) count++;
  return count;
}

/** The stage pids of a `Deno runs ...` line. */
function stagePids(line: string): number[] {
  const match = line.match(START);
  assert.ok(match, `not a start line: ${line}`);
  return match.slice(2).map(Number);
}

/**
 * Waits for a process to exit and for its stderr to end (every stage has exited then, see the
 * top), and returns what is left of its output and its exit code.
 */
async function ending(process: Deno.ChildProcess, stdout: ReturnType<typeof lineReader>) {
  const [stderr, status, rest] = await Promise.all([
    lineReader(process.stderr).rest(),
    process.status,
    stdout.rest(),
  ]);
  return { stderr, code: status.code, stdout: rest };
}

/** What `sh -c <script>` prints, trimmed: for reading /proc, which Deno's permissions guard. */
async function shOutput(script: string): Promise<string> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "null",
    signal: AbortSignal.timeout(10_000),
  }).output();
  return new TextDecoder().decode(stdout).trim();
}

async function assertAllGone(pids: number[]): Promise<void> {
  for (const pid of pids) assert.equal(await alive(pid), false, `stage ${pid} still runs`);
}

/**
 * Starts an endless pipeline (stage 1 writes forever) and waits for its first line, the event
 * that proves the three stages run; checks that they are the parent's own children, no shell in
 * between, and returns the reader and their pids.
 */
async function endlessRunning(parent: Deno.ChildProcess) {
  const stdout = lineReader(parent.stdout);
  const pids = stagePids((await stdout.next())!);
  assert.deepEqual((await childrenOf(parent.pid)).sort(), [...pids].sort());
  return { stdout, pids };
}

Deno.test("the whole run prints what the header shows (pids and times aside)", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: 60_000 });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(mask(result.stdout), mask(block.expected));
  for (const line of result.stdout.split("\n").filter((line) => START.test(line))) {
    await assertAllGone(stagePids(line));
  }
});

// `7'*` (a 7, then any number of quotes) selects what `7` does, and sh must get the quote whole.
for (
  const [lines, pattern, digit] of [
    [1, "1", "1"],
    [6, "6", "6"],
    [12_345, "7'*", "7"],
    [200_000, "0", "0"],
  ] as const
) {
  Deno.test(`--lines ${lines} --pattern ${pattern}: Deno and sh -c print the same, the right count`, async () => {
    const result = await runScript(NAME, ["--lines", `${lines}`, "--pattern", pattern], {
      timeoutMs: 60_000,
    });
    assert.equal(result.stderr, "");
    assert.equal(result.code, 0);
    const count = expectedCount(lines, digit);
    const output = result.stdout.split("\n");
    assert.equal(
      output[0].replace(START, "$1"),
      `pipeline.ts --child ${lines} | grep -e ${pattern} | wc -l`,
    );
    assert.equal(output[1], `  and prints ${count}`);
    assert.equal(output[2], `sh -c runs the same pipeline and prints ${count}`);
    assert.match(output[3], /^Deno pipeline: \d+\.\d{2} s, sh -c: \d+\.\d{2} s$/);
  });
}

Deno.test("a middle stage that fails (a bad pattern): named with its code, exit 1, no stage left", async () => {
  // Stage 1 writes forever: the run ends only because the failure stops it.
  await using parent = spawnScript(NAME, ["--lines", "0", "--pattern", "["], { timeoutMs: 20_000 });
  const stdout = lineReader(parent.stdout);
  const pids = stagePids((await stdout.next())!);
  const { stderr, code, stdout: rest } = await ending(parent, stdout);
  const lines = stderr.trimEnd().split("\n");
  assert.match(lines[0], /grep: /, "grep's own complaint, on the inherited stderr");
  assert.deepEqual(lines.slice(1), ["error: stage 2 (grep -e [) exited with code 2"]);
  assert.equal(code, 1);
  assert.equal(rest, "");
  await assertAllGone(pids);
});

Deno.test("a last stage that crashes while grep has nothing to write: the kill stops grep and stage 1", async () => {
  // grep never writes, so it never meets the broken pipe the crash left: it would read the
  // endless stage 1 forever. Only the lesson's stopping of the other stages ends this run.
  const code = `
    import { runPipeline } from "./scripts/pipeline.ts";
    const endless = { name: "endless", argv: [Deno.execPath(), "run", "scripts/pipeline.ts", "--child", "0"] };
    const grep = { name: "grep", argv: ["grep", "-e", "x"] };
    const crash = { name: "crash", argv: ["sh", "-c", "kill -KILL $$"] };
    console.log(JSON.stringify(await runPipeline([endless, grep, crash])));
  `;
  const result = await runDeno(["eval", code], { timeoutMs: 20_000 });
  assert.equal(result.stderr, "");
  const [start, json] = result.stdout.trimEnd().split("\n");
  assert.deepEqual(JSON.parse(json), {
    output: "",
    failure: "stage 3 (crash) was killed by SIGKILL",
  });
  await assertAllGone(stagePids(start));
});

Deno.test("backpressure: a stage that stops reading stops stage 1 in its write, nothing piles up", async () => {
  // Stage 2 never reads its stdin. Once the pipe into it is full, the parent's copy waits, the
  // pipe out of stage 1 fills, and stage 1 sleeps in the kernel in its write (`wchan`, one line
  // per thread), having written about two pipes' worth, not more and more into our memory.
  const code = `
    import { runPipeline } from "./scripts/pipeline.ts";
    const endless = { name: "endless", argv: [Deno.execPath(), "run", "scripts/pipeline.ts", "--child", "0"] };
    const stall = { name: "stall", argv: ["sleep", "30"] };
    console.log(JSON.stringify(await runPipeline([endless, stall])));
  `;
  await using parent = spawnWithDeadline(Deno.execPath(), {
    args: ["eval", code],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }, 20_000);
  const stdout = lineReader(parent.stdout);
  const [writer, stall] = (await stdout.next())!.match(/\(pids (\d+) (\d+)\)$/)!.slice(1);
  try {
    const end = Date.now() + 15_000;
    while (!/pipe_write|pipe_wait/.test(await shOutput(`cat /proc/${writer}/task/*/wchan`))) {
      if (Date.now() > end) throw new Error("stage 1 never blocked in a pipe write");
      await new Promise((resolve) => setTimeout(resolve, 10)); // a poll: no pipe reports this
    }
    const written = Number((await shOutput(`cat /proc/${writer}/io`)).match(/wchar: (\d+)/)![1]);
    assert.ok(written < 1024 * 1024, `stage 1 wrote ${written} bytes before it blocked`);
  } finally {
    Deno.kill(Number(stall), "SIGKILL"); // the stall "crashes": the pipeline ends
  }
  const { stderr, code: exitCode, stdout: rest } = await ending(parent, stdout);
  assert.equal(stderr, "");
  assert.equal(exitCode, 0);
  assert.deepEqual(JSON.parse(rest), {
    output: "",
    failure: "stage 2 (stall) was killed by SIGKILL",
  });
  await assertAllGone([Number(writer), Number(stall)]);
});

Deno.test("pipefail's surprise: a grep that selects no line exits 1, and the pipeline fails", async () => {
  const result = await runScript(NAME, ["--lines", "6", "--pattern", "7"]);
  assert.equal(result.stderr, "error: stage 2 (grep -e 7) exited with code 1\n");
  assert.equal(result.code, 1);
  await assertAllGone(stagePids(result.stdout.trimEnd())); // the start line, and no more
});

Deno.test("a program that is not installed: one line, exit 1, stage 1 stopped", async () => {
  // A PATH with deno, wc and sh, but no grep. Deno says it cannot resolve `grep` for
  // --allow-run (its own "Info" line); the lesson then prints one line. runDeno returns only
  // once stderr has ended, so stage 1, already started, has been stopped.
  await withTempDir("pipeline_path_", async (dir) => {
    for (const program of ["wc", "sh"]) {
      await Deno.symlink(await shOutput(`command -v ${program}`), `${dir}/${program}`);
    }
    await Deno.symlink(Deno.execPath(), `${dir}/deno`);
    const result = await runScript(NAME, ["--lines", "0"], { env: { PATH: dir } });
    const lines = result.stderr.trimEnd().split("\n").filter((line) => !line.startsWith("Info "));
    assert.deepEqual(lines, ["error: Failed to spawn 'grep': entity not found"]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
  });
});

Deno.test("without --allow-run for grep: one line naming the flag, exit 1, no stack trace", async () => {
  const result = await runDeno(["run", "--allow-run=deno", scriptPath(NAME), "--lines", "0"]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.match(
    result.stderr,
    /^error: Requires run access to "grep", run again with the --allow-run flag\n$/,
  );
});

Deno.test("| head -1: the parent stops quietly (exit 0, nothing on stderr), no stage left", async () => {
  // A long first pipeline, so that our stdout closes while it runs.
  await using parent = spawnScript(NAME, ["--lines", "10000000"], { timeoutMs: 60_000 });
  const stdout = lineReader(parent.stdout);
  const pids = stagePids((await stdout.next())!);
  await stdout.cancel(); // what `head -1` does once it has its line
  const [stderr, status] = await Promise.all([lineReader(parent.stderr).rest(), parent.status]);
  assert.equal(stderr, "");
  assert.equal(status.code, 0);
  await assertAllGone(pids);
});

Deno.test("Ctrl-C stops the pipeline: exit 130, no stage left, no trace", async () => {
  // A terminal's Ctrl-C sends SIGINT to the whole foreground process group. `setsid` gives the
  // parent a group of its own (its pid is the group id), which the test then signals.
  await using parent = spawnWithDeadline("setsid", {
    args: [Deno.execPath(), "run", ...headerRunFlags(NAME), scriptPath(NAME), "--lines", "0"],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }, 20_000);
  const { stdout, pids } = await endlessRunning(parent);
  Deno.kill(-parent.pid, "SIGINT");
  const { stderr, code } = await ending(parent, stdout);
  assert.equal(stderr, "");
  assert.equal(code, 130);
  await assertAllGone(pids);
});

for (const [signal, exitCode] of [...SIGNAL_EXITS, ["SIGKILL", 137] as const]) {
  Deno.test(`${signal} to the parent alone: it dies of it (${exitCode}), and the stages end by EOF and broken pipe, with no signal handler`, async () => {
    await using parent = spawnScript(NAME, ["--lines", "0"], { timeoutMs: 20_000 });
    const { stdout, pids } = await endlessRunning(parent);
    parent.kill(signal);
    const { stderr, code } = await ending(parent, stdout);
    assert.equal(stderr, "");
    assert.equal(code, exitCode);
    await assertAllGone(pids);
  });
}

Deno.test("stage 1 alone prints 1 to N in batches, and stops quietly when its reader leaves", async () => {
  const result = await runScript(NAME, ["--child", "25000"]);
  assert.equal(result.code, 0);
  const numbers = result.stdout.trimEnd().split("\n").map(Number);
  assert.deepEqual(numbers, Array.from({ length: 25_000 }, (_, i) => i + 1));
  await using child = spawnScript(NAME, ["--child", "0"]);
  const stdout = lineReader(child.stdout);
  assert.equal(await stdout.next(), "1");
  await stdout.cancel();
  const [stderr, status] = await Promise.all([lineReader(child.stderr).rest(), child.status]);
  assert.equal(stderr, "");
  assert.equal(status.code, 0);
});

Deno.test("on Windows (faked): one line, exit 1, nothing started", async () => {
  // A preload module shows the lesson another `Deno.build.os`, as tests/plumbing_test.ts fakes
  // an old Deno.
  const preload = await Deno.makeTempFile({ prefix: "fake_os_", suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      preload,
      `const real = Deno;
const build = { ...real.build, os: "windows" };
const get = (target: typeof Deno, key: string | symbol) =>
  key === "build" ? build : Reflect.get(target, key);
Object.defineProperty(globalThis, "Deno", { value: new Proxy(real, { get }) });
`,
    );
    const args = ["run", "--preload", preload, ...headerRunFlags(NAME), scriptPath(NAME)];
    const result = await runDeno(args);
    assert.equal(result.stderr, "error: needs sh, grep, wc: use Linux or macOS\n");
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
  } finally {
    await Deno.remove(preload);
  }
});

for (
  const [args, problem] of [
    [["--lines", "-1"], /--lines/],
    [["--lines", "abc"], /--lines must be a whole number/],
    [["--lines=1.5"], /--lines must be a whole number/],
    [["--pattern"], /--pattern/],
    [["--verbose"], /Unknown option '--verbose'/],
  ] as const
) {
  Deno.test(`usage error for ${args.join(" ")}: one line, exit code 2`, async () => {
    assertUsageError(await runScript(NAME, [...args]), problem);
  });
}

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(
    NAME,
    /^usage: deno run --allow-run=deno,grep,wc,sh scripts\/pipeline.ts/,
    /--lines N/,
    /--pattern P/,
  );
});
