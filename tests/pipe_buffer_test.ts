import assert from "node:assert/strict";
import { lineReader, runDeno, runScript, spawnScript, wholeRunBlock } from "./helpers.ts";

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

/** The value column of the figure table row whose name starts with `figure`. */
function figure(stdout: string, figure: string): number {
  const row = stdout.split("\n").find((line) => line.startsWith(`| ${figure}`));
  assert.ok(row, `no "${figure}" row in:\n${stdout}`);
  return Number(row.split("|")[2].trim());
}

/** Times in milliseconds vary from run to run; everything else must match exactly. */
function maskTimes(text: string): string {
  return text
    .replace(/resumed \d+ ms later/g, "resumed N ms later")
    .replace(/(\(ms\) *\| *)\d+/g, (_match, head: string) => `${head}N`);
}

Deno.test({
  name: "pipe_buffer: the capacity is the kernel's, the writer blocks, resumes, and EOF comes",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const delayMs = 300;
    const result = await runScript(name, [
      "--delay",
      String(delayMs),
      "--total",
      "196608",
    ]);
    assert.equal(result.stderr, "");
    assert.equal(result.code, 0);
    const capacity = kernelPipeSize();
    assert.equal(figure(result.stdout, "pipe capacity"), capacity);
    assert.match(
      result.stdout,
      new RegExp(
        `progress stopped at ${capacity} bytes \\(${capacity / 4096} steps\\)`,
      ),
    );
    // Resumed: the writer went on past the capacity to all it was asked to write, and the
    // parent read every byte of it (the lesson checks that count itself).
    assert.equal(figure(result.stdout, "bytes written in total"), 196608);
    assert.ok(196608 > capacity);
    // The reader's clock started before the parent was told to wait, so this is a lower bound
    // by causality, not a timing guess.
    assert.ok(figure(result.stdout, "empty-pipe reader waited") >= delayMs);
    assert.match(
      result.stdout,
      /the child got 6 bytes, then EOF \(null\), not an error/,
    );
  },
});

Deno.test({
  name: "pipe_buffer: the whole-run block in the header is what the command prints",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const block = wholeRunBlock(name);
    const result = await runDeno(block.denoArgs);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(maskTimes(result.stdout), maskTimes(block.expected));
  },
});

Deno.test("pipe_buffer: a bad option is one line on stderr and exit 2", async () => {
  for (const args of [["--bogus"], ["--total", "lots"]]) {
    const result = await runScript(name, args);
    assert.equal(result.code, 2);
    assert.equal(result.stdout, "");
    assert.match(
      result.stderr,
      /^error: .*\nusage: deno run --allow-run=deno scripts\/pipe_buffer\.ts/,
    );
    assert.equal(result.stderr.trimEnd().split("\n").length, 2);
  }
});

Deno.test({
  name: "pipe_buffer: Ctrl-C while the writer is blocked exits 130, quietly",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using lesson = spawnScript(name);
    const lines = lineReader(lesson.stdout);
    let line = await lines.next();
    while (line !== null && !line.includes("progress stopped")) {
      line = await lines.next();
    }
    assert.ok(line, "the lesson reported the blocked writer");
    lesson.kill("SIGINT");
    assert.equal((await lesson.status).code, 130);
    await lines.rest();
    assert.equal(await new Response(lesson.stderr).text(), "");
  },
});
