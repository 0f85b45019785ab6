/**
 * End-to-end tests of scripts/subprocess_hangs.ts, run as a user runs it (a subprocess with the
 * header's flags), and of the facts its comments state, each checked on its own: a full pipe
 * blocks its writer, a killed child's grandchild keeps the pipe open until its group is killed,
 * `detached: true` makes no group, Deno.kill needs the whole --allow-run. Waits are on events (a
 * line, an exit, a state `ps` shows); a poll of `ps` stands in for an event no pipe carries.
 */
import assert from "node:assert/strict";
import {
  alive,
  assertHelp,
  assertUsageError,
  headerRunFlags,
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
  withTempDir,
} from "./helpers.ts";

const NAME = "subprocess_hangs.ts";
/** How this checkout's children show in `ps` (started from `import.meta.url`): other checkouts'
 * runs of the same lesson, at the same time, are not counted. */
const CHILD = `${new URL(`../scripts/${NAME}`, import.meta.url).href} --child`;
const decoder = new TextDecoder();
/** Only the measured times differ between runs; the deadline ("after 300 ms") is an option. */
const maskTimes = (text: string) => text.replace(/ in \d+ ms/g, " in <t> ms");

/** What `ps -o <field>= -p <pid>` shows, trimmed (with `-L`, a line for each thread). */
async function psField(pid: number, field: string, ...more: string[]): Promise<string> {
  const { stdout } = await new Deno.Command("ps", {
    args: [...more, "-o", `${field}=`, "-p", `${pid}`],
    stdout: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  return decoder.decode(stdout).trim();
}

/** Polls `check` until it holds (an event no pipe reports), failing after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Reads `wanted` bytes from a stream (not to EOF: the writer may still run), or what came. */
async function readBytes(stream: ReadableStream<Uint8Array>, wanted: number): Promise<number> {
  const reader = stream.getReader();
  let got = 0;
  while (got < wanted) {
    const chunk = await reader.read();
    if (chunk.done) break;
    got += chunk.value.length;
  }
  reader.releaseLock();
  return got;
}

Deno.test("the whole run prints what the header shows (times aside)", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: 60_000 });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(maskTimes(result.stdout), maskTimes(block.expected));
});

Deno.test("a child writing 1 MiB blocks in the kernel on the full pipe until it is read (hangs 2, 3)", async () => {
  await using child = spawnScript(NAME, ["--child", "write-both"], { timeoutMs: 20_000 });
  // Nobody reads: the child's first write fills the stderr pipe and waits there, in the kernel
  // (`wchan`: where a thread sleeps; Deno writes from a worker thread, so look at each thread).
  const blockedOnPipe = async () =>
    /pipe_write|pipe_wait/.test(await psField(child.pid, "wchan:40", "-L"));
  await until("the child to block writing", blockedOnPipe);
  assert.equal(await alive(child.pid), true);
  // Reading its 1 MiB from stderr frees it, and then it blocks on the stdout pipe, still alive.
  assert.equal(await readBytes(child.stderr, 1024 * 1024), 1024 * 1024);
  await until("the child to block on stdout", blockedOnPipe);
  assert.equal(await alive(child.pid), true);
  assert.equal((await child.stdout.bytes()).length, 1024 * 1024);
  assert.equal((await child.status).code, 0);
});

Deno.test("a killed child's grandchild keeps the pipe open; killing the group brings EOF (hang 5)", async () => {
  const args = ["run", "--allow-run=deno", scriptPath(NAME), "--child", "spawn"];
  await using child = spawnWithDeadline("setsid", {
    args: [Deno.execPath(), ...args],
    cwd: repoRoot,
    stdout: "piped",
  }, 20_000);
  const stdout = lineReader(child.stdout);
  assert.equal(await stdout.next(), "ready"); // written by the grandchild
  const [grandchild] = await processesMentioning(`${CHILD} grandchild`);
  assert.ok(grandchild, "no grandchild");
  assert.equal(await psField(child.pid, "pgid"), `${child.pid}`, "the child leads its group");
  child.kill("SIGTERM");
  assert.equal((await child.status).signal, "SIGTERM");
  // The child is gone, the grandchild is not, and it holds the pipe: no EOF yet.
  assert.equal((await processesMentioning(`${CHILD} grandchild`)).length, 1);
  const killed = await new Deno.Command("kill", { args: ["-TERM", "--", `-${child.pid}`] })
    .output();
  assert.equal(killed.code, 0);
  assert.equal(await stdout.next(), null); // EOF: no process holds the write end any more
  await until(
    "the grandchild to go",
    async () => (await processesMentioning(`${CHILD} grandchild`)).length === 0,
  );
});

Deno.test("`detached: true` does not give the child a process group of its own (Linux)", async () => {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", "echo $$ $(cut -d' ' -f5 /proc/$$/stat)"], // its pid and its group
    detached: true,
    signal: AbortSignal.timeout(10_000),
  }).output();
  const [pid, pgid] = decoder.decode(stdout).trim().split(" ");
  assert.notEqual(pid, pgid);
  assert.equal(pgid, await psField(Deno.pid, "pgid"), "it stays in our group");
});

Deno.test("Deno.kill needs the whole --allow-run: --allow-run=kill is not enough", async () => {
  await withTempDir("hangs_kill_", async (dir) => {
    await Deno.writeTextFile(
      `${dir}/k.ts`,
      `try { Deno.kill(-${Deno.pid}, "SIGCONT"); } catch (e) { console.log(e.name); }`,
    );
    const result = await runDeno(["run", "--allow-run=kill,setsid", `${dir}/k.ts`]);
    assert.equal(result.stdout, "NotCapable\n");
  });
});

Deno.test("without python3 on PATH, case 4 says so in one line and the rest still runs", async () => {
  await withTempDir("hangs_path_", async (dir) => {
    for (const program of ["setsid", "kill"]) {
      await Deno.symlink(`/usr/bin/${program}`, `${dir}/${program}`);
    }
    await Deno.symlink(Deno.execPath(), `${dir}/deno`);
    const result = await runScript(NAME, [], { env: { PATH: dir }, timeoutMs: 60_000 });
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 5);
    assert.equal(
      lines[3],
      "hang 4, python3 without -u: skipped, Failed to spawn 'python3': entity not found",
    );
    assert.match(lines[4], /^hang 5, .*: stuck, killed after 300 ms; its group killed: EOF in/);
  });
});

Deno.test("a longer deadline changes nothing: the bug still hangs, the fix does not", async () => {
  const result = await runScript(NAME, ["--deadline", "600"], { timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 5);
  for (const line of lines) {
    assert.match(line, /: stuck, killed after 600 ms; [^;]+: [^;]+ in \d+ ms$/);
  }
});

for (const [signal, exitCode] of SIGNAL_EXITS) {
  Deno.test(`${signal} during case 5: exit ${exitCode}, and the group the terminal cannot reach is ended too`, async () => {
    // A terminal's Ctrl-C signals its foreground group: `setsid` gives the lesson one to signal.
    await using lesson = spawnWithDeadline("setsid", {
      args: [Deno.execPath(), "run", ...headerRunFlags(NAME), scriptPath(NAME)],
      cwd: repoRoot,
      stdout: "piped",
      stderr: "piped",
    }, 30_000);
    const stdout = lineReader(lesson.stdout);
    assert.ok(await stdout.until("hang 4,"));
    await until(
      "case 5's grandchild",
      async () => (await processesMentioning(`${CHILD} grandchild`)).length > 0,
    );
    Deno.kill(signal === "SIGINT" ? -lesson.pid : lesson.pid, signal);
    // The grandchild inherited the lesson's stderr: this EOF comes once it has exited too.
    const [stderr, status] = await Promise.all([lineReader(lesson.stderr).rest(), lesson.status]);
    assert.equal(stderr, "");
    assert.equal(status.code, exitCode);
    assert.deepEqual(await processesMentioning(CHILD), []);
  });
}

Deno.test("a missing --allow-run entry: one line naming it, exit 1", async () => {
  const result = await runDeno(["run", "--allow-run=deno", scriptPath(NAME)], {
    timeoutMs: 60_000,
  });
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /^error: Requires run access to "python3", run again with the --allow-run flag\n$/,
  );
});

Deno.test("without kill allowed: one line, exit 1, and no grandchild left that nothing can stop", async () => {
  const result = await runDeno(["run", "--allow-run=deno,python3,setsid", scriptPath(NAME)], {
    timeoutMs: 30_000,
  });
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /^error: Requires run access to "kill", run again with the --allow-run flag\n$/,
  );
  assert.equal(result.stdout.trimEnd().split("\n").length, 4, "cases 1-4 ran");
  assert.deepEqual(await processesMentioning(CHILD), []);
});

// A deadline shorter than a child's start-up would report a hang that was never shown.
for (
  const args of [["--deadline", "soon"], ["--deadline=-1"], ["--deadline", "5"], ["--case", "1"]]
) {
  Deno.test(`usage error for ${args.join(" ")}: one line, exit code 2`, async () => {
    assertUsageError(await runScript(NAME, args));
  });
}

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME, /^usage: deno run --allow-run=deno,python3,setsid,kill/, /--deadline MS/);
});
