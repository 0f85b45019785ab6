import assert from "node:assert/strict";
import {
  assertHelp,
  assertUsageError,
  exists,
  lineReader,
  processesMentioning,
  runDeno,
  runScript,
  SIGNAL_EXITS,
  spawnScript,
  wholeRunBlock,
} from "./helpers.ts";

const name = "pipe_lifetime.ts";
const linux = Deno.build.os === "linux";

/** Pids, fd numbers, inodes and the temporary directory change from run to run. */
function mask(text: string): string {
  return text
    .replace(/\/proc\/\d+\/fd\/\d+/g, "/proc/PID/fd/N")
    .replace(/pipe:\[\d+\]/g, "pipe:[INODE]")
    .replace(/inode \d+/g, "inode INODE")
    .replace(/\S*\/pipe_lifetime_\w+\//g, "TMP/");
}

Deno.test({
  name: "pipe_lifetime: the whole-run block in the header is what the command prints",
  ignore: !linux,
  async fn() {
    const block = wholeRunBlock(name);
    const result = await runDeno(block.denoArgs);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(mask(result.stdout), mask(block.expected));
  },
});

Deno.test({
  name: "pipe_lifetime: one pipe inode until no end is left; the FIFO's name outlives its users",
  ignore: !linux,
  async fn() {
    const result = await runScript(name);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "");
    const [anonymous, named] = result.stdout.split(/^FIFO: /m);
    // Every end the parent and the child held is the same kernel object, and it has no path.
    const inodes = new Set(anonymous.match(/pipe:\[\d+\]/g));
    assert.equal(inodes.size, 1, anonymous);
    assert.match(
      anonymous,
      /\/fd\/\d+ -> pipe:\[\d+\] \(parent\)\n.*\/fd\/1 -> pipe:\[\d+\] \(child\)/,
    );
    // After the child exited, the parent's read end alone keeps the pipe alive.
    assert.match(
      anonymous,
      /keeps it alive:\n {4}\/proc\/\d+\/fd\/\d+ -> pipe:\[\d+\] \(parent\)\n {2}the parent read EOF/,
    );
    assert.match(anonymous, /closed its end; in every process: no process holds it\n$/);
    // Both ends of the FIFO point to its name, and the parent's alone outlives the child.
    assert.match(named, /the name:\n {4}\S+ -> (\S+\.fifo) \(parent\)\n {4}\S+ -> \1 \(child\)\n/);
    assert.match(
      named,
      /keeps it alive:\n {4}\/proc\/\d+\/fd\/\d+ -> \S+\.fifo \(parent\)\n {2}the parent/,
    );
    // The FIFO keeps its inode (and its name) after both processes closed it.
    const fifoInodes = new Set(named.match(/inode \d+/g));
    assert.equal(fifoInodes.size, 1, named);
    assert.match(
      named,
      /closed its end; in every process: no process holds it\n {2}yet the name stays: isFifo true/,
    );
    // And the lesson removed what it made.
    const fifo = named.match(/^mkfifo made (\S+), inode/)![1];
    assert.equal(await exists(fifo), false);
    assert.equal(await exists(fifo.slice(0, fifo.lastIndexOf("/"))), false);
  },
});

Deno.test({
  name:
    "pipe_lifetime: Ctrl-C (130) or SIGTERM (143) mid-lesson removes the FIFO and its directory",
  ignore: !linux,
  async fn() {
    for (const [signal, code] of SIGNAL_EXITS) {
      await using lesson = spawnScript(name);
      const lines = lineReader(lesson.stdout);
      let fifo = "";
      let line = await lines.next();
      while (line !== null && !line.startsWith(`  parent got "hello through the FIFO"`)) {
        fifo = line.match(/^FIFO: mkfifo made (\S+), inode/)?.[1] ?? fifo;
        line = await lines.next();
      }
      assert.ok(fifo && await exists(fifo), "the lesson made its FIFO");
      lesson.kill(signal);
      assert.equal((await lesson.status).code, code);
      await lines.rest();
      assert.equal(await new Response(lesson.stderr).text(), "");
      const dir = fifo.slice(0, fifo.lastIndexOf("/"));
      assert.equal(await exists(dir), false);
      assert.deepEqual(await processesMentioning(dir), [], "no child is left");
    }
  },
});

Deno.test("pipe_lifetime: a bad option is one line on stderr and exit 2", async () => {
  for (const args of [["--bogus"], ["--role", "x"], ["extra"]]) {
    const result = await runScript(name, args);
    assertUsageError(result, undefined, args.join(" "));
  }
});

Deno.test("pipe_lifetime: --help prints the usage on stdout and exits 0", async () => {
  await assertHelp(name, /^usage: deno run [^\n]+ scripts\/pipe_lifetime\.ts\n/);
});
