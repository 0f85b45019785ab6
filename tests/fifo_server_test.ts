/**
 * End-to-end tests of scripts/fifo_server.ts, run as a user runs it (the header's flags). Every
 * wait is on an event (a line, an exit, a thread waiting in a FIFO open), never on a sleep.
 */
import assert from "node:assert/strict";
import {
  assertHelp,
  assertUsageError,
  exists,
  lineReader,
  mkfifo,
  processesMentioning,
  runDeno,
  runScript,
  scriptPath,
  SIGNAL_EXITS,
  spawnScript,
  wholeRunBlock,
  withTempDir,
} from "./helpers.ts";

const NAME = "fifo_server.ts";
const READY = / and holds a spare write end\n/;

/** Starts `--role server` on `path` and waits for its first line: its FIFO is open. */
async function startServer(path: string) {
  const server = spawnScript(NAME, ["--role", "server", "--path", path], { timeoutMs: 20_000 });
  const stdout = lineReader(server.stdout);
  assert.match((await stdout.until("spare write end\n"))!, READY);
  return { server, stdout };
}

/** Runs a client to its end: its exit code and the numbers it got. */
async function runClient(path: string) {
  const result = await runScript(NAME, ["--role", "client", "--path", path], { timeoutMs: 20_000 });
  const numbers = [...result.stdout.matchAll(/^Client \d+ got (\d+)$/gm)].map((m) => Number(m[1]));
  return { ...result, numbers };
}

/** Ends a server with SIGTERM and returns its exit code and the rest of its output. */
async function stopServer({ server, stdout }: Awaited<ReturnType<typeof startServer>>) {
  server.kill("SIGTERM");
  const [status, rest, stderr] = await Promise.all([
    server.status,
    stdout.rest(),
    lineReader(server.stderr).rest(),
  ]);
  return { code: status.code, stdout: rest, stderr };
}

/** Resolves once a thread of `pid` waits in a FIFO open for the other end (Linux's wchan). */
async function waitingInFifoOpen(pid: number): Promise<void> {
  // Deno's permissions guard /proc, so `cat` reads it.
  const cat = ["-c", `cat /proc/${pid}/task/*/wchan`];
  for (let tries = 0; tries < 1000; tries++) {
    const output = await new Deno.Command("sh", { args: cat, stdout: "piped", stderr: "null" })
      .output();
    if (new TextDecoder().decode(output.stdout).includes("wait_for_partner")) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`${pid} never waited in a FIFO open`);
}

Deno.test("the whole run prints what the header shows, and leaves no FIFO, directory or child", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: 30_000 });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  const mask = (text: string) =>
    text.replace(/Server \d+/g, "Server <pid>").replace(/\/tmp\/fifo_server_\w+/g, "<dir>");
  assert.equal(mask(result.stdout), mask(block.expected));
  const dir = result.stdout.match(/\/tmp\/fifo_server_\w+/)![0];
  assert.equal(await exists(dir), false, "the temporary directory is gone");
  assert.deepEqual(await processesMentioning(dir), [], "no client is left");
});

Deno.test("many clients at once each get their own numbers; the server outlives them (spare write end)", async () => {
  await withTempDir("fifo_server_test_", async (dir) => {
    const path = `${dir}/seqnum`;
    const running = await startServer(path);
    const clients = await Promise.all([1, 2, 3, 4].map(() => runClient(path)));
    for (const client of clients) assert.equal(client.code, 0, client.stderr);
    const numbers = clients.flatMap((client) => client.numbers).sort((a, b) => a - b);
    assert.deepEqual(numbers, Array.from({ length: 16 }, (_, n) => n), "no number twice");
    // Every client has gone: a server without its spare write end would have seen EOF by now.
    const late = await runClient(path);
    assert.deepEqual(late.numbers, [16, 17, 18, 19]);
    const { code, stdout, stderr } = await stopServer(running);
    assert.equal(code, 143);
    assert.equal(stderr, "");
    assert.equal(stdout, "", "the server prints nothing per request, as TLPI's");
    assert.deepEqual(
      [...Deno.readDirSync(dir)],
      [],
      "the server and each client removed their FIFOs",
    );
  });
});

Deno.test("a client that died mid-request, a missing FIFO, a file, junk: the server goes on", async () => {
  await withTempDir("fifo_server_test_", async (dir) => {
    const path = `${dir}/seqnum`;
    const running = await startServer(path);
    await mkfifo(`${path}.4000000`); // a dead client's FIFO: its request sent, nobody reads
    await Deno.writeTextFile(`${path}.4000002`, "keep me");
    const requests = await Deno.open(path, { write: true });
    requests.writeSync(new TextEncoder().encode("4000000\njunk\n4000001\n4000002\n"));
    const client = await runClient(path); // answered after all of those: none blocked the server
    assert.equal(client.code, 0, client.stderr);
    assert.deepEqual(client.numbers, [3, 4, 5, 6]);
    requests.close();
    const { code, stderr } = await stopServer(running);
    assert.equal(code, 143);
    assert.match(stderr, /^Server cannot answer 4000001: No such file/m);
    assert.match(stderr, /^Server cannot answer 4000002: .* is not a FIFO: refusing to touch it$/m);
    assert.equal(await Deno.readTextFile(`${path}.4000002`), "keep me", "the file is untouched");
    assert.ok((await Deno.lstat(`${path}.4000000`)).isFifo, "not the server's to remove");
    assert.equal(await exists(path), false, "the server removed its own FIFO");
  });
});

for (const [signal, exitCode] of SIGNAL_EXITS) {
  Deno.test(`${signal} to a client waiting in open for a server: it removes its FIFO, exit ${exitCode}`, async () => {
    await withTempDir("fifo_server_test_", async (dir) => {
      const path = `${dir}/seqnum`;
      await mkfifo(path); // a FIFO nobody reads: the client's open for writing waits
      await using client = spawnScript(NAME, ["--role", "client", "--path", path]);
      await waitingInFifoOpen(client.pid); // the event loop still runs: the handler will too
      client.kill(signal);
      const [status, stderr] = await Promise.all([client.status, lineReader(client.stderr).rest()]);
      assert.equal(stderr, "");
      assert.equal(status.code, exitCode);
      assert.deepEqual([...Deno.readDirSync(dir)].map((entry) => entry.name), ["seqnum"]);
    });
  });
}

Deno.test("a client whose server never answers gives up after 5 s, and removes its FIFO", async () => {
  await withTempDir("fifo_server_test_", async (dir) => {
    const path = `${dir}/seqnum`;
    await mkfifo(path);
    await using client = spawnScript(NAME, ["--role", "client", "--path", path]);
    const fakeServer = await Deno.open(path, { read: true }); // reads nothing, answers nothing
    const [status, stderr] = await Promise.all([client.status, lineReader(client.stderr).rest()]);
    fakeServer.close();
    assert.equal(stderr, "error: no server answers\n");
    assert.equal(status.code, 1);
    assert.deepEqual([...Deno.readDirSync(dir)].map((entry) => entry.name), ["seqnum"]);
  });
});

Deno.test("SIGTERM to the default run mid-run: clients stopped, FIFOs and directory removed, 143", async () => {
  await using parent = spawnScript(NAME, [], { timeoutMs: 20_000 });
  const stdout = lineReader(parent.stdout);
  const dir = (await stdout.next())!.match(/\/tmp\/fifo_server_\w+/)![0];
  // Stopped, the server answers no one, so the run cannot end before the signal lands.
  parent.kill("SIGSTOP");
  parent.kill("SIGTERM");
  parent.kill("SIGCONT");
  const [status, stderr] = await Promise.all([parent.status, lineReader(parent.stderr).rest()]);
  assert.equal(status.code, 143, stderr);
  assert.equal(await exists(dir), false);
  assert.deepEqual(await processesMentioning(dir), []);
});

Deno.test("never touches what it did not make: an existing file or symlink at --path is refused", async () => {
  await withTempDir("fifo_server_test_", async (dir) => {
    await Deno.writeTextFile(`${dir}/precious`, "data");
    await Deno.symlink(`${dir}/precious`, `${dir}/link`);
    for (const name of ["precious", "link"]) {
      const result = await runScript(NAME, ["--role", "server", "--path", `${dir}/${name}`]);
      assert.equal(result.code, 1);
      assert.equal(result.stderr, `error: mkfifo could not make ${dir}/${name}\n`);
    }
    assert.equal(await Deno.readTextFile(`${dir}/precious`), "data");
    assert.ok((await Deno.lstat(`${dir}/link`)).isSymlink);
  });
});

Deno.test("a client with no server FIFO there: one line, exit 1, nothing left", async () => {
  await withTempDir("fifo_server_test_", async (dir) => {
    const result = await runScript(NAME, ["--role", "client", "--path", `${dir}/none`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^error: No such file or directory[^\n]*\n$/);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("without --allow-run: one line naming the permission, exit 1", async () => {
  const result = await runDeno(["run", "--allow-read", "--allow-write", scriptPath(NAME)]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^error: Requires run access to "mkfifo"[^\n]*\n$/);
});

for (
  const args of [
    ["--role", "server"],
    ["--path", "/tmp/x"],
    ["--role", "boss", "--path", "/x"],
    ["--role", "client", "--path", "/x", "extra"],
    ["--clients", "3"],
  ]
) {
  Deno.test(`usage error for ${args.join(" ")}: one line, exit 2`, async () => {
    assertUsageError(await runScript(NAME, args));
  });
}

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME, /--role server\|client/, /--path DIR\/NAME/);
});
