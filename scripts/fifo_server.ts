/**
 * @title FIFO server: one well-known FIFO for requests, one FIFO per client for answers
 * @difficulty advanced
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_server.ts
 * @resource {https://man7.org/tlpi/code/online/dist/pipes/fifo_seqnum_server.c.html} TLPI: fifo_seqnum_server.c
 *
 * TLPI's sequence-number server (ch. 44.8): clients send requests into one well-known FIFO; the
 * server answers each with the next number into the client's own FIFO (claim 4). The default run
 * starts 3 clients and kills the last mid-request; `--role` runs one side per terminal. Unix only.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_server.ts
 * Server 24585 made /tmp/fifo_server_3185d7fb61826f3e/seqnum and holds a spare write end
 * Server killed the last client after its request, then answered it: no wait
 * Server saw EOF after 9 requests: it closed its spare write end
 * Clients: 2 of 3 got all 4 answers
 * ```
 *
 * @module
 */

async function demo(clients = 3, requests = 4): Promise<number> { // the default run
  const dir = await Deno.makeTempDir({ prefix: "fifo_server_" }); // mode 700: private, not /tmp
  undo.push(() => Deno.remove(dir));
  const path = `${dir}/seqnum`;
  const server = await startServer(path);
  const args = ["run", "--allow-run=mkfifo", `--allow-read=${dir}`, `--allow-write=${dir}`];
  args.push(import.meta.url, "--role", "client", "--path", path);
  const stop = new AbortController(); // abort() SIGTERMs the clients: each removes its own FIFO
  const command = new Deno.Command(denoExecutable(), { args, stdout: "null", signal: stop.signal });
  const children = Array.from({ length: clients }, () => command.spawn());
  undo.push(() => Promise.all(children.map((child) => child.status)), () => stop.abort());
  const serving = serve(server, path, children.at(-1));
  const statuses = await Promise.all(children.map((child) => child.status));
  server.spare.close(); // no write end is left: the server sees EOF
  await serving;
  const answered = statuses.filter((status) => status.success).length;
  console.log(`Clients: ${answered} of ${clients} got all ${requests} answers`);
  return statuses.slice(0, -1).every((status) => status.success) ? 0 : 1;
}

// The server holds a spare write end, so it never sees EOF when the last client leaves. Each open
// waits for the other end (in a worker thread since Deno 2.8.0), so the two are opened together.
async function startServer(path: string) {
  await makeFifo(path);
  const ends = [openFifo(path, { read: true }), openFifo(path, { write: true })];
  const [requests, spare] = await Promise.all(ends);
  console.log(`Server ${Deno.pid} made ${path} and holds a spare write end`);
  return { requests, spare };
}

// A request is one line, the client's pid, in one write far below PIPE_BUF: requests never mix.
// The answer goes to `PATH.PID`, a name the server builds itself, never a file a request names.
async function serve(server: { requests: Deno.FsFile }, path: string, victim?: Deno.ChildProcess) {
  let next = 0;
  for await (const request of readLines(server.requests.readable)) {
    if (!/^\d{1,10}$/.test(request)) continue; // not a request (`echo hi > FIFO`): ignore it
    if (Number(request) === victim?.pid) { // the default run kills its last client: its FIFO stays
      victim.kill("SIGKILL");
      await victim.status; // so the server removes the FIFO the client made: in demo()'s private
      undo.push(() => Deno.remove(`${path}.${request}`)); // directory, nothing can have replaced it
      console.log("Server killed the last client after its request, then answered it: no wait");
    }
    // Opened for reading and writing, a FIFO never waits (Linux, macOS), where a write-only open
    // waits for a reader, forever if the client died; a dead client's answer is dropped.
    const answer = await openFifo(`${path}.${request}`, { read: true, write: true })
      .catch((error) => console.error(`Server cannot answer ${request}: ${error.message}`));
    answer?.writeSync(new TextEncoder().encode(`${next}\n`));
    answer?.close();
    next++;
  } // alone (`--role server`), it never gets here: its spare write end keeps EOF away
  console.log(`Server saw EOF after ${next} requests: it closed its spare write end`);
  return 0;
}

// The client opens its own FIFO for reading and writing before its request, so the answer finds a
// reader however early it comes. Holding a write end, it would never see EOF: a deadline does.
async function client(path: string, requests = 4): Promise<number> {
  const own = await makeFifo(`${path}.${Deno.pid}`);
  const answers = readLines((await openFifo(own, { read: true, write: true })).readable);
  const late = setTimeout(() => {
    console.error("error: no server answers");
    cleanUpAndExit(1);
  }, 5e3);
  const server = await openFifo(path, { write: true }); // waits for the server's read end
  for (let sent = 0; sent < requests; sent++) {
    try {
      server.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
    } catch (error) { // the server is gone: say so, not the quiet end of a closed stdout
      throw error instanceof Deno.errors.BrokenPipe ? new Refusal("the server is gone") : error;
    }
    console.log(`Client ${Deno.pid} got ${(await answers.next()).value}`);
  }
  clearTimeout(late);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

/** Splits a byte stream into lines (without "\n"), however the pipe cut it into chunks. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let partial = ""; // the start of a line whose "\n" has not arrived yet
  // TextDecoderStream keeps a UTF-8 character split between two chunks whole.
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    if (!text.includes("\n")) { // a piece of a long line: split nothing until its end comes
      partial += text;
      continue;
    }
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    yield* lines;
  }
  if (partial !== "") yield partial; // a last line without "\n" is still a line
}

/**
 * This Deno, to start a child with. `--allow-run=deno` grants the `deno` on PATH; when that is a
 * symlink (npm, Homebrew), the real path `Deno.execPath()` is not granted, so run it by name.
 */
function denoExecutable(): string {
  const self = Deno.execPath();
  const status = Deno.permissions.querySync({ name: "run", command: self });
  return status.state === "granted" ? self : "deno";
}

/** Exits with one line, code 1, on a Deno older than the lessons need (2.8.3). */
function requireDeno(): void {
  const [major, minor, patch] = Deno.version.deno.split(/[.-]/).map(Number);
  if (major * 1e6 + minor * 1e3 + patch >= 2_008_003) return;
  console.error(`error: this lesson needs Deno 2.8.3 or newer, not ${Deno.version.deno}`);
  Deno.exit(1);
}

/** A mistake on the command line: one line naming it, and exit code 2, never a stack trace. */
function usageError(message: string): never {
  console.error(`error: ${message.replaceAll("\n", " ")} (see --help)`);
  Deno.exit(2);
}

// The FIFO pieces. What to undo on every way out (the end, an error, Ctrl-C, SIGTERM), last
// first: only what this process made, and a FIFO only while its inode is still the one it made.
const undo: (() => unknown)[] = [];
let exiting = false; // set by the first call of cleanUpAndExit, which ends the run

/** Undoes what this process made, last first, then exits. A later call waits for the first. */
async function cleanUpAndExit(code: number): Promise<never> {
  if (exiting) await new Promise(() => {}); // never resolves: the first call exits for both
  exiting = true;
  for (const step of undo.reverse()) await Promise.try(step).catch(() => {}); // gone already?
  Deno.exit(code);
}

/** Makes a FIFO with `mkfifo` (Deno has no call for it), mode 600: only our user may open it.
 * mkfifo runs outside Deno's sandbox: first make sure we may check and remove what it makes. */
async function makeFifo(path: string): Promise<string> {
  const state = (name: "read" | "write") => Deno.permissions.querySync({ name, path }).state;
  if (state("read") !== "granted" || state("write") !== "granted") {
    throw new Refusal(`--allow-read and --allow-write must both cover ${path}`);
  }
  const made = await new Deno.Command("mkfifo", { args: ["-m", "600", "--", path] }).output();
  if (!made.success) throw new Refusal(`mkfifo could not make ${path}`); // something is there
  const { ino } = await Deno.lstat(path);
  undo.push(() => { // only while the path still holds our FIFO, never what took its place
    const now = Deno.lstatSync(path);
    if (now.isFifo && now.ino === ino) Deno.removeSync(path);
  });
  return path;
}

/** Opens a FIFO, then checks that it is one: the path may have been swapped before the open. */
async function openFifo(path: string, options: Deno.OpenOptions): Promise<Deno.FsFile> {
  const file = await Deno.open(path, options);
  if ((await file.stat()).isFifo) return file;
  file.close();
  throw new Refusal(`${path} is not a FIFO: refusing to touch it`);
}

/** A failure the user can act on: one line, exit code 1. A bug keeps its stack trace. */
class Refusal extends Error {}

/** Runs a FIFO lesson, then undoes what it made and exits; so do Ctrl-C (130) and SIGTERM (143). */
async function runFifoLesson(lesson: () => Promise<number>): Promise<never> {
  let code = 1;
  try {
    if (Deno.build.os === "windows") throw new Refusal("FIFOs are Unix only: use Linux or macOS");
    Deno.addSignalListener("SIGINT", () => cleanUpAndExit(130));
    Deno.addSignalListener("SIGTERM", () => cleanUpAndExit(143));
    code = await lesson();
  } catch (error) {
    const expected = [Refusal, Deno.errors.NotFound, Deno.errors.NotCapable];
    const oneLine = expected.some((kind) => error instanceof kind);
    // A closed stdout (`| head`) ends the run quietly; after a signal, how it ended is no news.
    if (error instanceof Deno.errors.BrokenPipe) code = 0;
    else if (!exiting) console.error(oneLine ? `error: ${(error as Error).message}` : error);
  }
  return await cleanUpAndExit(code);
}

const USAGE =
  `usage: deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/fifo_server.ts
  [--role server|client --path DIR/NAME]  one side only, in its own terminal (a client's FIFO
  is DIR/NAME.PID; either side needs only --allow-run=mkfifo --allow-read=DIR --allow-write=DIR)`;

if (import.meta.main) {
  requireDeno();
  const [roleFlag, role, pathFlag, path] = Deno.args;
  const oneSide = Deno.args.length === 4 && roleFlag === "--role" && pathFlag === "--path";
  const serveAlone = async () => serve(await startServer(path), path);
  if (Deno.args.length === 0) await runFifoLesson(demo);
  else if (Deno.args.length === 1 && roleFlag === "--help") console.log(USAGE);
  else if (oneSide && role === "server") await runFifoLesson(serveAlone);
  else if (oneSide && role === "client") await runFifoLesson(() => client(path));
  else usageError("use --role server or --role client, then --path DIR/NAME");
}
