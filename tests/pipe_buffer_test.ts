import assert from "node:assert/strict";
import {
  alive,
  assertHelp,
  assertUsageError,
  childrenOf,
  lineReader,
  runDeno,
  runScript,
  SIGNAL_EXITS,
  spawnScript,
  wholeRunBlock,
} from "./helpers.ts";

const name = "pipe_buffer.ts";

/** The kernel's own answer: fcntl(F_GETPIPE_SZ) on a brand-new pipe, asked through Deno's FFI. */
function kernelPipeSize(): number {
  const F_GETPIPE_SZ = 1032; // Linux, <fcntl.h>
  const libc = Deno.dlopen("libc.so.6", {
    pipe: { parameters: ["buffer"], result: "i32" },
    fcntl: { parameters: ["i32", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  });
  try {
    const fds = new Int32Array(2);
    assert.equal(libc.symbols.pipe(fds), 0, "pipe() failed");
    const size = libc.symbols.fcntl(fds[0], F_GETPIPE_SZ);
    libc.symbols.close(fds[0]);
    libc.symbols.close(fds[1]);
    return size;
  } finally {
    libc.close();
  }
}

/** The number that `pattern`'s first group captures in `stdout`. */
function figure(stdout: string, pattern: RegExp): number {
  const match = stdout.match(pattern);
  assert.ok(match, `no ${pattern} in:\n${stdout}`);
  return Number(match[1]);
}

/**
 * Times vary from run to run, and so does the capacity the default --settle finds if the machine
 * stalls the writer for 300 ms; the first test checks the capacity exactly, with a generous
 * --settle. Everything else must match exactly.
 */
function mask(text: string): string {
  return text
    .replace(/\d+ ms/g, "T ms")
    .replace(/stopped at \d+ bytes \(\d+ steps\)/, "stopped at C bytes (S steps)")
    .replace(/the parent read \d+ bytes/, "the parent read R bytes");
}

Deno.test({
  name: "pipe_buffer: the capacity is the kernel's, the writer blocks, resumes, and EOF comes",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // --settle 2000: only a writer stalled for 2 s by a loaded machine could look blocked early.
    const args = ["--settle", "2000", "--delay", "300", "--total", "196608"];
    const result = await runScript(name, args);
    assert.equal(result.stderr, "");
    assert.equal(result.code, 0);
    const capacity = kernelPipeSize();
    assert.equal(figure(result.stdout, /progress stopped at (\d+) bytes/), capacity);
    assert.equal(figure(result.stdout, /bytes \((\d+) steps\)/), capacity / 4096);
    const firstRead = figure(result.stdout, /the parent read (\d+) bytes/);
    assert.ok(firstRead > 0 && firstRead <= capacity, `first read ${firstRead}`);
    // The silence lasted at least --settle (1 ms of slack for the timer's clock).
    assert.ok(figure(result.stdout, /after (\d+) ms without progress/) >= 1999);
    // Resumed: the writer went on past the capacity to all it was asked to write, and the
    // parent read every byte of it (the lesson checks that count itself).
    assert.match(result.stdout, /\n {2}the writer resumed \d+ ms later\n/);
    assert.match(result.stdout, /it wrote all 196608 bytes, and the parent read every one/);
    // The reader's clock started before the parent was told to wait, so this is a lower bound
    // by causality, not a timing guess.
    assert.ok(figure(result.stdout, /the child waited (\d+) ms/) >= 300);
    assert.match(result.stdout, /got 6 bytes, then EOF \(null\), not an error\n$/);
  },
});

Deno.test({
  name: "pipe_buffer: --total not a multiple of 4096: the writer writes exactly --total bytes",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // 100,000 = 24 steps of 4096 and 1696 bytes: the last write is short, not a 25th full step.
    const result = await runScript(name, ["--total", "100000", "--delay", "10"]);
    assert.equal(result.stderr, "");
    assert.equal(result.code, 0);
    assert.match(result.stdout, /it wrote all 100000 bytes, and the parent read every one/);
  },
});

Deno.test({
  name: "pipe_buffer: the whole-run block in the header is what the command prints",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const block = wholeRunBlock(name);
    const result = await runDeno(block.denoArgs);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(mask(result.stdout), mask(block.expected));
  },
});

Deno.test("pipe_buffer: a bad option is one line on stderr and exit 2", async () => {
  for (const args of [["--bogus"], ["--total", "lots"], ["--settle", "0"], ["--role", "x"]]) {
    const result = await runScript(name, args);
    assertUsageError(result, undefined, args.join(" "));
  }
});

Deno.test("pipe_buffer: --help prints the usage on stdout and exits 0", async () => {
  await assertHelp(
    name,
    /^usage: deno run --allow-run=deno scripts\/pipe_buffer\.ts /,
    /--settle MS/,
  );
});

Deno.test({
  name: "pipe_buffer: Ctrl-C (130) or SIGTERM (143) while the writer is blocked, quietly",
  ignore: Deno.build.os !== "linux",
  async fn() {
    for (const [signal, code] of SIGNAL_EXITS) {
      await using lesson = spawnScript(name);
      const lines = lineReader(lesson.stdout);
      let line = await lines.next();
      while (line !== null && !line.includes("progress stopped")) {
        line = await lines.next();
      }
      assert.ok(line, "the lesson reported the blocked writer");
      lesson.kill(signal);
      assert.equal((await lesson.status).code, code);
      await lines.rest();
      assert.equal(await new Response(lesson.stderr).text(), "");
    }
  },
});

Deno.test({
  name: "pipe_buffer: the writer child, blocked on a full pipe, ends quietly once its reader goes",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // The test plays the parent, and goes as a killed parent goes: its read end just closes. The
    // child writes a progress byte per 4096-byte step; once the pipe is full, they stop.
    const capacity = kernelPipeSize();
    await using child = spawnScript(name, ["--child", "writer", `${4 * capacity}`]);
    const progress = child.stderr.getReader();
    let steps = 0;
    while (steps < capacity / 4096) {
      const chunk = await progress.read();
      assert.ok(!chunk.done, `the writer ended after ${steps} steps`);
      steps += chunk.value.length;
    }
    assert.equal(steps, capacity / 4096, "no step beyond the capacity while nobody reads");
    await child.stdout.cancel(); // close the read end: the blocked write fails with BrokenPipe
    progress.releaseLock();
    // Its stderr ends once it has exited; anything but progress bytes (a stack trace) shows here.
    assert.equal(await lineReader(child.stderr).rest(), "");
    assert.equal((await child.status).code, 0);
  },
});

Deno.test({
  name: "pipe_buffer: a killed parent leaves no child: the reader of the empty pipe gets EOF",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // --delay 60000: the parent sleeps while its reader child waits in its read of the empty pipe.
    await using parent = spawnScript(name, ["--delay", "60000"]);
    const lines = lineReader(parent.stdout);
    let line = await lines.next();
    while (line !== null && !line.startsWith("An empty pipe:")) line = await lines.next();
    assert.ok(line, "the reader child started");
    const children = await childrenOf(parent.pid);
    assert.equal(children.length, 1, `children: ${children}`);
    parent.kill("SIGKILL"); // no handler could run: the kernel just closes the parent's ends
    assert.equal((await parent.status).signal, "SIGKILL");
    // The reader child inherited the parent's stderr: this EOF comes once it has exited too, and
    // anything it printed (a stack trace) would be here.
    assert.equal(await new Response(parent.stderr).text(), "");
    assert.equal(await alive(children[0]), false, "the reader child is gone");
    await lines.rest();
  },
});
