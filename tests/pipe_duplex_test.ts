import assert from "node:assert/strict";
import {
  alive,
  assertHelp,
  assertUsageError,
  lineReader,
  runDeno,
  runScript,
  SIGNAL_EXITS,
  spawnScript,
  wholeRunBlock,
} from "./helpers.ts";

const name = "pipe_duplex.ts";
/** The final line's format, which benchmarks parse. */
const rateLine = /^Answered (\d+) of (\d+) requests, in order, in \d+ ms: (\d+) round trips\/s$/m;

function mask(text: string): string {
  return text
    .replace(/Parent \d+ talks to child \d+/g, "Parent P talks to child C")
    .replace(/in \d+ ms: \d+ round trips\/s/g, "in T ms: R round trips/s");
}

Deno.test("pipe_duplex: the whole-run block in the header is what the command prints", async () => {
  const block = wholeRunBlock(name);
  const result = await runDeno(block.denoArgs);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(mask(result.stdout), mask(block.expected));
});

for (const kind of ["fast", "naive"]) {
  Deno.test(`pipe_duplex: the ${kind} child answers 10,000 requests, each by its own answer, in order`, async () => {
    // Talk to the child directly, so this checks the answers themselves, not the lesson's own
    // report of them. Requests are written while answers are read, as the lesson teaches; one
    // batch without an end marker: the child answers as its buffer fills, and at EOF.
    await using child = spawnScript(name, ["--child", kind], { stdin: true });
    const answers = lineReader(child.stdout);
    assert.equal(await answers.next(), '{"ready":true}');
    const count = 10_000;
    const writing = (async () => {
      const stdin = child.stdin.getWriter();
      let batch = "";
      for (let id = 1; id <= count; id++) {
        batch += JSON.stringify({ id, text: `request ${id} é` }) + "\n";
      }
      await stdin.write(new TextEncoder().encode(batch));
      await stdin.close();
    })();
    for (let id = 1; id <= count; id++) {
      assert.deepEqual(JSON.parse((await answers.next())!), {
        id,
        text: `REQUEST ${id} É`,
      });
    }
    await writing;
    assert.equal(await answers.next(), null, "nothing after the last answer");
    assert.equal((await child.status).code, 0);
    assert.equal(await new Response(child.stderr).text(), "");
  });
}

Deno.test("pipe_duplex: the fast child answers a batch at its end marker, an empty line, at once", async () => {
  // stdin stays open: the answers come because the batch ended, not because the input did. A
  // child that waited for more would hang here until the deadline kills it, and the test fails.
  await using child = spawnScript(name, ["--child", "fast"], { stdin: true, timeoutMs: 20_000 });
  const answers = lineReader(child.stdout);
  assert.equal(await answers.next(), '{"ready":true}');
  const stdin = child.stdin.getWriter();
  const batch = [1, 2, 3].map((id) => JSON.stringify({ id, text: `t${id}` }) + "\n").join("");
  await stdin.write(new TextEncoder().encode(batch + "\n"));
  for (const id of [1, 2, 3]) {
    assert.equal(await answers.next(), JSON.stringify({ id, text: `T${id}` }));
  }
  await stdin.close();
  assert.equal(await answers.next(), null);
  assert.equal((await child.status).code, 0);
});

Deno.test("pipe_duplex: the lesson reports 10,000 round trips in a line a benchmark can parse", async () => {
  for (
    const args of [["--requests", "10000"], [
      "--requests",
      "3000",
      "--naive-child",
    ]]
  ) {
    const result = await runScript(name, args);
    assert.equal(result.code, 0, result.stderr);
    const match = result.stdout.match(rateLine);
    assert.ok(match, result.stdout);
    assert.equal(match[1], args[1]);
    assert.equal(match[2], args[1]);
    assert.ok(Number(match[3]) > 0);
    assert.equal(result.stdout.trimEnd().split("\n").at(-1), match[0]);
  }
});

Deno.test("pipe_duplex: 1 MiB requests and 1 MiB answers both ways, no deadlock", async () => {
  // Several 1 MiB requests are in flight while the child writes 1 MiB answers: both pipes fill.
  // A deadlock would hang here until the deadline kills the run and fails the test.
  const result = await runScript(
    name,
    ["--requests", "6", "--size", "1048576"],
    {
      timeoutMs: 30_000,
    },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /\(1048594 chars\)/);
  assert.match(result.stdout, /Answered 6 of 6 requests, in order/);
});

Deno.test("pipe_duplex: a bad option is one line on stderr and exit 2", async () => {
  for (
    const args of [["--bogus"], ["--requests", "0"], ["--size", "x"], ["--role", "x"], ["extra"]]
  ) {
    const result = await runScript(name, args);
    assertUsageError(result, undefined, args.join(" "));
  }
});

Deno.test("pipe_duplex: --help prints the usage on stdout and exits 0", async () => {
  await assertHelp(
    name,
    /^usage: deno run --allow-run=deno scripts\/pipe_duplex\.ts /,
    /--naive-child/,
  );
});

Deno.test("pipe_duplex: Ctrl-C (130) or SIGTERM (143) mid-conversation, quietly", async () => {
  for (const [signal, code] of SIGNAL_EXITS) {
    await using lesson = spawnScript(name, ["--requests", "1000000000"]);
    const lines = lineReader(lesson.stdout);
    let line = await lines.next();
    while (line !== null && !line.startsWith("answer ")) {
      line = await lines.next();
    }
    assert.ok(line, "the conversation started");
    lesson.kill(signal);
    assert.equal((await lesson.status).code, code);
    await lines.rest();
    assert.equal(await new Response(lesson.stderr).text(), "");
  }
});

Deno.test("pipe_duplex: a killed parent leaves no child: it ends at EOF or BrokenPipe", async () => {
  await using parent = spawnScript(name, ["--requests", "1000000000"]);
  const lines = lineReader(parent.stdout);
  const childPid = Number((await lines.next())?.match(/ child (\d+):/)?.[1]);
  assert.ok(childPid > 0, "the first line names the child's pid");
  let line = await lines.next();
  while (line !== null && !line.startsWith("answer ")) line = await lines.next();
  assert.ok(line, "the conversation started");
  parent.kill("SIGKILL"); // no handler could run: the kernel just closes the parent's ends
  assert.equal((await parent.status).signal, "SIGKILL");
  // The child inherited the parent's stderr: this EOF comes once it has exited too, and anything
  // it printed (a stack trace) would be here.
  assert.equal(await new Response(parent.stderr).text(), "");
  assert.equal(await alive(childPid), false, "the child is gone");
  await lines.rest();
});

Deno.test("pipe_duplex: a child killed mid-conversation is one error line and exit 1, no hang", async () => {
  await using lesson = spawnScript(name, ["--requests", "1000000000", "--window", "4"], {
    timeoutMs: 10_000,
  });
  const lines = lineReader(lesson.stdout);
  const childPid = Number((await lines.next())?.match(/ child (\d+):/)?.[1]);
  assert.ok(childPid > 0, "the first line names the child's pid");
  let line = await lines.next();
  while (line !== null && !line.startsWith("answer ")) line = await lines.next();
  assert.ok(line, "the conversation started");
  Deno.kill(childPid, "SIGKILL");
  // A parent that waited for room in its window, or for its own writes, would wait forever:
  // spawnScript's deadline would kill it, and this would fail.
  assert.equal((await lesson.status).code, 1);
  await lines.rest();
  assert.match(await new Response(lesson.stderr).text(), /^error: [^\n]+\n$/);
});
