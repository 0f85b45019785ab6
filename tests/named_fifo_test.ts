/**
 * End-to-end tests of scripts/named_fifo.ts, run as a user runs it: with the header's flags,
 * as separate processes, with the shell's `echo` and `cat` as the other end, and with signals.
 * Every wait is on an event (a line printed, a process exit), never on a sleep.
 */
import assert from "node:assert/strict";
import {
  assertUsageError,
  exists,
  lineReader,
  mkfifo,
  openFifoForReading,
  processState,
  runDeno,
  runScript,
  SIGNAL_EXITS,
  spawnScript,
  spawnWithDeadline,
  wholeRunBlock,
  withTempDir,
} from "./helpers.ts";

const NAME = "named_fifo.ts";
const DEADLINE = 20_000;

const TEMP_PREFIX = "named_fifo_test_";

async function isFifo(path: string): Promise<boolean> {
  return (await Deno.lstat(path)).isFifo === true;
}

/** Runs `sh -c script` with a deadline. */
function shell(script: string): Deno.ChildProcess {
  return spawnWithDeadline(
    "sh",
    { args: ["-c", script], stdout: "piped", stderr: "piped" },
    DEADLINE,
  );
}

/** The internal writer role's command line: `count` lines to the FIFO at `path`, no pause. */
function writerArgs(path: string, count: number): string[] {
  return ["--role", "writer", "--path", path, "--count", `${count}`, "--interval", "0"];
}

/** True once a process is gone for good: exited and reaped, not even a zombie left. */
async function gone(pid: number): Promise<boolean> {
  return await processState(pid) === null;
}

function mask(text: string): string {
  return text
    .replace(/\d{10}\.\d{3}/g, "<time>")
    .replace(/(Parent|writer) \d+/g, "$1 <pid>")
    .replace(/\S*named_fifo_\w+\/fifo/g, "<dir>/fifo");
}

Deno.test("the whole run prints what the header shows, and leaves nothing behind", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: DEADLINE });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(mask(result.stdout), mask(block.expected));
  const fifo = result.stdout.match(/FIFO (\S+)\/fifo/)![1];
  assert.equal(await exists(fifo), false, "the temporary directory is gone");
});

Deno.test("usage: --help; a bad option is one line `error: ... (see --help)`, exit 2", async () => {
  const help = await runScript(NAME, ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: deno run [^\n]+ scripts\/named_fifo\.ts /);
  assert.match(help.stdout, /--role reader\|writer/);
  assert.match(help.stdout, /fifo_server\.ts/, "the lesson for a reader of many writers");
  const mistakes = [
    ["--bogus"],
    ["--role", "reader"],
    ["--count", "x"],
    ["--count", "-1"],
    ["--interval", "1.5"],
    ["--role", "both", "--path", "p"],
    ["--keep-open"], // gone: fifo_server.ts is the lesson for a reader that serves many writers
  ];
  const results = await Promise.all(mistakes.map((args) => runScript(NAME, args)));
  results.forEach((bad, i) => assertUsageError(bad, undefined, mistakes[i].join(" ")));
});

Deno.test("a closed stdout (like `| head -2`) ends the run quietly: exit 0, nothing left", async () => {
  await using parent = spawnScript(NAME, ["--count", "0", "--interval", "20"], {
    timeoutMs: DEADLINE,
  });
  const out = lineReader(parent.stdout);
  const [, dir, writerPid] = (await out.next())!.match(
    /FIFO (\S+)\/fifo and started writer (\d+)/,
  )!;
  assert.match((await out.next())!, /got "Number 000"/);
  await out.cancel(); // as `head` does when it has had enough: our stdout's read end closes
  assert.equal((await parent.status).code, 0);
  assert.equal(await new Response(parent.stderr).text(), "", "no stack trace, no message");
  assert.equal(await exists(dir), false);
  assert.ok(await gone(Number(writerPid)), "the writer is reaped");
});

Deno.test("reader first, then an unrelated writer: the reader made the FIFO and removes it", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const path = `${dir}/fifo`;
    await using reader = spawnScript(
      NAME,
      ["--role", "reader", "--path", path],
      {
        timeoutMs: DEADLINE,
      },
    );
    const out = lineReader(reader.stdout);
    assert.match((await out.next())!, /^Reader \d+: waiting for the other end of /);
    assert.ok(await isFifo(path), "the reader created the FIFO");
    const writer = await runScript(NAME, writerArgs(path, 3), { timeoutMs: DEADLINE });
    assert.equal(writer.code, 0, writer.stderr);
    const rest = (await out.rest()).trimEnd().split("\n");
    assert.deepEqual(
      rest.map((line) => line.replace(/^.* got "(.*)" at .*$/, "$1")),
      [
        "Number 000",
        "Number 001",
        "Number 002",
        `Reader ${reader.pid} saw EOF: every writer has closed the FIFO`,
      ],
    );
    assert.equal((await reader.status).code, 0);
    assert.equal(await exists(path), false);
  });
});

Deno.test("writer first, then a reader: the writer made the FIFO and removes it", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const path = `${dir}/fifo`;
    await using writer = spawnScript(NAME, writerArgs(path, 2), { timeoutMs: DEADLINE });
    const says = lineReader(writer.stdout);
    assert.match((await says.next())!, /^Writer \d+: waiting for the other end of /);
    const reader = await runScript(NAME, ["--role", "reader", "--path", path], {
      timeoutMs: DEADLINE,
    });
    assert.equal(reader.code, 0, reader.stderr);
    assert.equal(reader.stdout.match(/got "Number 00\d"/g)?.length, 2);
    assert.match(reader.stdout, /saw EOF/);
    assert.equal((await writer.status).code, 0);
    assert.equal(await exists(path), false);
  });
});

Deno.test("the shell is the other end: echo > P, cat P; an existing FIFO is left in place", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const path = `${dir}/fifo`;
    await mkfifo(path);
    const echo = shell(`echo "hello from sh" > '${path}'`);
    const reader = await runScript(NAME, ["--role", "reader", "--path", path], {
      timeoutMs: DEADLINE,
    });
    assert.equal((await echo.status).code, 0);
    assert.equal(reader.code, 0, reader.stderr);
    assert.match(reader.stdout, /got "hello from sh" at \d+\.\d{3}\n.*saw EOF/);

    const cat = shell(`cat '${path}'`);
    const writer = await runScript(NAME, writerArgs(path, 3), { timeoutMs: DEADLINE });
    assert.equal(writer.code, 0, writer.stderr);
    const catOutput = await cat.output();
    assert.equal(
      new TextDecoder().decode(catOutput.stdout),
      "Number 000\nNumber 001\nNumber 002\n",
    );
    assert.ok(await isFifo(path), "a FIFO we did not create stays");
  });
});

Deno.test("a writer that stops inside a UTF-8 character: the reader shows U+FFFD, drops nothing", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const path = `${dir}/fifo`;
    await mkfifo(path);
    // "café" cut after the first byte of "é" (0xC3 0xA9), and no newline: a last, broken line.
    const printf = shell(`printf 'caf\\303' > '${path}'`);
    const reader = await runScript(NAME, ["--role", "reader", "--path", path], {
      timeoutMs: DEADLINE,
    });
    assert.equal((await printf.status).code, 0);
    assert.equal(reader.code, 0, reader.stderr);
    assert.match(reader.stdout, /got "caf\uFFFD" at \d+\.\d{3}\n.*saw EOF/);
  });
});

Deno.test("a regular file or a symlink at P is refused and left as it was", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const file = `${dir}/notes.txt`;
    const bytes = new TextEncoder().encode("precious data\n");
    await Deno.writeFile(file, bytes);
    await Deno.symlink(file, `${dir}/link`);
    for (
      const [path, kind] of [[file, "a file"], [`${dir}/link`, "a symlink"]]
    ) {
      for (const role of ["reader", "writer"]) {
        const result = await runScript(NAME, ["--role", role, "--path", path]);
        assert.equal(result.code, 1, `${kind}, ${role}`);
        assert.equal(result.stderr, `error: mkfifo could not make ${path}\n`);
        assert.equal(result.stdout, "");
      }
    }
    assert.deepEqual(await Deno.readFile(file), bytes);
    assert.ok((await Deno.lstat(`${dir}/link`)).isSymlink);
  });
});

Deno.test("a P it may not read: one line, exit 1, and mkfifo never made anything there", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const path = `${dir}/fifo`;
    const flags = ["--allow-run=mkfifo", "--allow-read=/nonexistent", `--allow-write=${dir}`];
    const result = await runDeno(
      ["run", ...flags, "scripts/named_fifo.ts", "--role", "reader", "--path", path],
      { timeoutMs: DEADLINE },
    );
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stdout, "");
    assert.match(result.stderr, /^error: [^\n]*read access[^\n]*\n$/, "one line, no stack trace");
    assert.equal(await exists(path), false, "nothing at P: mkfifo runs outside Deno's sandbox");
  });
});

for (const [signal, code] of SIGNAL_EXITS) {
  Deno.test(`${signal} mid-run: exit ${code}, FIFO and directory gone, writer gone`, async () => {
    await using parent = spawnScript(
      NAME,
      ["--count", "0", "--interval", "20"],
      {
        timeoutMs: DEADLINE,
      },
    );
    const out = lineReader(parent.stdout);
    const first = (await out.next())!;
    const [, dir, writerPid] = first.match(
      /FIFO (\S+)\/fifo and started writer (\d+)/,
    )!;
    assert.match((await out.next())!, /got "Number 000"/);
    parent.kill(signal);
    assert.equal((await parent.status).code, code);
    assert.equal(await exists(dir), false);
    assert.ok(await gone(Number(writerPid)), "the writer is reaped");
  });
}

Deno.test("a writer killed mid-run: one line naming how it died, exit 1, nothing left", async () => {
  await using parent = spawnScript(NAME, ["--count", "0", "--interval", "20"], {
    timeoutMs: DEADLINE,
  });
  const out = lineReader(parent.stdout);
  const [, dir, writerPid] = (await out.next())!.match(
    /FIFO (\S+)\/fifo and started writer (\d+)/,
  )!;
  assert.match((await out.next())!, /got "Number 000"/);
  Deno.kill(Number(writerPid), "SIGKILL");
  const [stderr, status] = await Promise.all([
    new Response(parent.stderr).text(),
    parent.status,
    out.rest(),
  ]);
  assert.equal(stderr, "error: the writer was killed by SIGKILL\n");
  assert.equal(status.code, 1);
  assert.equal(await exists(dir), false);
});

Deno.test("SIGINT while blocked opening the FIFO: exit 130, the FIFO it made is gone", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const path = `${dir}/fifo`;
    await using reader = spawnScript(
      NAME,
      ["--role", "reader", "--path", path],
      {
        timeoutMs: DEADLINE,
      },
    );
    assert.match(
      (await lineReader(reader.stdout).next())!,
      /waiting for the other end/,
    );
    reader.kill("SIGINT");
    assert.equal((await reader.status).code, 130);
    assert.equal(await exists(path), false);
  });
});

Deno.test("the writer stops quietly when its reader goes away, as `yes | head -1` does", async () => {
  await withTempDir(TEMP_PREFIX, async (dir) => {
    const path = `${dir}/fifo`;
    await mkfifo(path);
    const args = ["--role", "writer", "--path", path, "--count", "0", "--interval", "10"];
    await using writer = spawnScript(NAME, args, { timeoutMs: DEADLINE });
    const fifo = await openFifoForReading(path, writer);
    const first = new Uint8Array(64);
    assert.ok((await fifo.read(first))! > 0, "read a first line");
    fifo.close();
    const [status, stdout, stderr] = await Promise.all([
      writer.status,
      new Response(writer.stdout).text(),
      new Response(writer.stderr).text(),
    ]);
    assert.equal(status.code, 0);
    assert.equal(stderr, "", "no broken-pipe error, no stack trace");
    assert.match(stdout, /^Writer \d+: waiting for the other end of \S+\n$/);
    assert.ok(await isFifo(path), "a FIFO it did not make stays");
  });
});
