/**
 * @title Named FIFO: a pipe with a name, between related and unrelated processes
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/named_fifo.ts
 * @resource {https://man7.org/linux/man-pages/man7/fifo.7.html} Man page: fifo(7)
 * @resource {https://docs.deno.com/api/deno/~/Deno.open} Doc: Deno.open
 *
 * The article's own program: a writer sends `Number 000`, `Number 001`, ... through a FIFO made
 * with `mkfifo`, and a reader prints each line. A FIFO has a name in the file system, so it also
 * joins processes with no common parent (claim 4), and its file stays until removed (claim 5).
 * Unix only. Read and write are unscoped as the FIFO lives in a fresh temporary directory; with
 * your own path P narrow them: `--allow-run=mkfifo --allow-read=P --allow-write=P`. Options
 * (`--help`): `--role reader|writer --path P` runs one side only; `cat P` may be the other.
 * Exit codes: 0 done (or stdout closed), 1 error, 2 usage, 130 Ctrl-C, 143 SIGTERM.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/named_fifo.ts --count 6 --interval 200
 * Parent 30395 made the FIFO /tmp/named_fifo_20f0c389837030d7/fifo and started writer 30403
 * Parent 30395 got "Number 000" at 1795703654.076
 * Parent 30395 got "Number 001" at 1795703654.277
 * Parent 30395 got "Number 002" at 1795703654.480
 * Parent 30395 got "Number 003" at 1795703654.683
 * Parent 30395 got "Number 004" at 1795703654.884
 * Parent 30395 got "Number 000" at 1795703655.086
 * Parent 30395 saw EOF: every writer has closed the FIFO
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const HELP = `usage: named_fifo.ts [--role reader|writer --path P] [options]
  (no --role)           make a FIFO in a temporary directory, start a writer, read it
  --role reader|writer  be one side only, on the FIFO at --path P (made if missing)
  --count N             lines the writer sends (default 10; 0: until Ctrl-C)
  --interval MS         milliseconds between lines (default 1000)
  --keep-open           reader: keep serving writer after writer, until Ctrl-C
  --help                show this help`;

/** A mistake on the command line: one line, exit 2. */
class UsageError extends Error {}
/** An expected failure the user can act on: one line, no stack trace, exit 1. */
class Refusal extends Error {}

// What to undo (stop the writer, remove the FIFO), run last-in first-out on every exit path.
const cleanups: (() => void | Promise<void>)[] = [];
let exiting = false;

/** Cleans up and exits. The first call wins: a signal may arrive while main is ending too. */
async function exitWith(code: number): Promise<never> {
  // A second call (a signal while main is ending, or the reverse) waits: the first one exits.
  if (exiting) return await new Promise<never>(() => {});
  exiting = true;
  for (const step of cleanups.reverse()) {
    try {
      await step();
    } catch { /* best effort: keep cleaning */ }
  }
  Deno.exit(code);
}

/** What is at `path`: lstat, so a symlink is itself, not the thing it points to. */
async function whatIsAt(path: string): Promise<string> {
  try {
    const info = await Deno.lstat(path);
    if (info.isFifo) return "a FIFO";
    if (info.isSymlink) return "a symlink";
    return info.isDirectory ? "a directory" : "a file";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "nothing";
    throw error;
  }
}

/**
 * Makes sure a FIFO is at `path`: an existing FIFO is used (returns false: not ours to remove),
 * nothing there means we create one (returns true), anything else is refused untouched.
 * Deno has no mkfifo call (calling libc's through FFI would need the far broader --allow-ffi),
 * so we run the `mkfifo` program; mode 600: only our user may open it.
 */
export async function ensureFifo(path: string): Promise<boolean> {
  const found = await whatIsAt(path);
  if (found === "a FIFO") return false;
  if (found !== "nothing") {
    throw new Refusal(`${path} is ${found}, not a FIFO: refusing to touch it`);
  }
  const mkfifo = new Deno.Command("mkfifo", { args: ["-m", "600", "--", path], stderr: "piped" });
  const made = await mkfifo.output();
  if (made.success) return true;
  // Two copies started at once may both try: if the other one won, its FIFO is fine for us.
  if (await whatIsAt(path) === "a FIFO") return false;
  throw new Refusal(new TextDecoder().decode(made.stderr).trim());
}

/**
 * The Deno binary to run the child with: this very binary. `--allow-run=deno` grants the `deno`
 * found on PATH; when that is a symlink to this binary (npm and Homebrew installs), Deno grants
 * the name but not the real path, so fall back to the name.
 */
function denoExecutable(): string {
  const self = Deno.execPath();
  const status = Deno.permissions.querySync({ name: "run", command: self });
  return status.state === "granted" ? self : "deno";
}

const encoder = new TextEncoder();

/**
 * Writes to our stdout with `writeSync`, looping because a write may take only part of the bytes.
 * Not `console.log`: it silently ignores a closed stdout, so `... | head -3` would never end.
 * This throws BrokenPipe instead, and the caller stops.
 */
function writeOut(text: string): void {
  const bytes = encoder.encode(text);
  for (let written = 0; written < bytes.length;) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

/**
 * Prints every line read from the FIFO until EOF. One reader over the whole stream, and we split
 * lines ourselves: a chunk may hold many lines, or end in the middle of one.
 */
async function printLines(fifo: Deno.FsFile, who: string): Promise<void> {
  const got = (line: string) => `${who} got "${line}" at ${(Date.now() / 1000).toFixed(3)}\n`;
  const decoder = new TextDecoder();
  let partial = ""; // the start of a line whose end has not arrived yet
  for await (const chunk of fifo.readable) {
    const text = decoder.decode(chunk, { stream: true });
    const lastNewline = text.lastIndexOf("\n");
    if (lastNewline < 0) {
      partial += text; // a long line: only look for its end in what arrives next
      continue;
    }
    const lines = (partial + text.slice(0, lastNewline)).split("\n");
    partial = text.slice(lastNewline + 1);
    writeOut(lines.map(got).join(""));
  }
  // EOF: a writer that stopped inside a UTF-8 character left bytes the decoder kept for the next
  // chunk; flushing shows them as U+FFFD instead of dropping them without a word.
  partial += decoder.decode();
  if (partial !== "") writeOut(got(partial));
  writeOut(`${who} saw EOF: every writer has closed the FIFO\n`);
}

/**
 * Sends `Number 000` ... (counter mod 5), one line per interval. `writeSync` is one system call
 * per line, no worker-thread round trip, and a write of at most PIPE_BUF bytes (4096 on Linux)
 * to a pipe is atomic: whole, never mixed with another writer's bytes. A reader that goes away
 * would kill a C program with SIGPIPE; Deno ignores that signal, so the write throws BrokenPipe.
 */
async function sendLines(fifo: Deno.FsFile, count: number, interval: number) {
  for (let sent = 0; count === 0 || sent < count; sent++) {
    if (sent > 0) await new Promise((wake) => setTimeout(wake, interval));
    try {
      fifo.writeSync(encoder.encode(`Number ${String(sent % 5).padStart(3, "0")}\n`));
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      throw new Refusal(`the reader closed the FIFO after ${sent} lines (broken pipe)`);
    }
  }
  fifo.close(); // the reader sees EOF once every writer has closed
}

/** The options, as parseArgs returns them; any mistake is a one-line UsageError. */
function parseCommandLine(args: string[]) {
  try {
    return parseArgs({
      args,
      strict: true,
      options: {
        role: { type: "string" },
        path: { type: "string" },
        count: { type: "string", default: "10" },
        interval: { type: "string", default: "1000" },
        "keep-open": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }).values;
  } catch (error) {
    throw new UsageError((error as Error).message.replaceAll("\n", " "));
  }
}

/** A whole number >= 0 from option `--name`, or a UsageError naming it. */
function wholeNumber(name: string, text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--${name} wants a whole number >= 0, got "${text}"`);
  }
  return Number(text);
}

/**
 * Opens the FIFO at `path`, then checks that what it opened is a FIFO still: the path was checked
 * before, but it may have been swapped for a regular file since, and writing would destroy it.
 */
async function openFifo(path: string, options: Deno.OpenOptions): Promise<Deno.FsFile> {
  const file = await Deno.open(path, options);
  if ((await file.stat()).isFifo) return file;
  file.close();
  throw new Refusal(`${path} is no longer a FIFO: refusing to touch it`);
}

/** The one line that says how the writer child failed, and why, if it said so. */
async function writerFailed(status: Deno.CommandStatus, says: Promise<string>): Promise<Refusal> {
  const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
  // Of what the writer printed, only its own error line says why; the rest is its chatter.
  const reason = (await says).split("\n").find((line) => line.startsWith("error: "));
  return new Refusal(`the writer ${how}${reason ? ` (${reason})` : ""}`);
}

async function main(args: string[]): Promise<void> {
  const opts = parseCommandLine(args);
  if (opts.help) {
    console.log(HELP);
    return;
  }
  const count = wholeNumber("count", opts.count);
  const interval = wholeNumber("interval", opts.interval);
  const { role, path } = opts;
  if (role !== undefined && role !== "reader" && role !== "writer") {
    throw new UsageError(`--role is reader or writer, not "${role}"`);
  }
  if ((role === undefined) !== (path === undefined)) throw new UsageError("use --role with --path");
  if (opts["keep-open"] && role !== "reader") throw new UsageError("--keep-open is for readers");
  if (Deno.build.os === "windows") throw new Refusal("FIFOs are Unix only: use Linux or macOS");
  // Opening a FIFO blocks until the other end opens. Deno.open waits in a worker thread, so the
  // event loop still runs these listeners, and Ctrl-C removes the FIFO even while we wait.
  Deno.addSignalListener("SIGINT", () => exitWith(130));
  Deno.addSignalListener("SIGTERM", () => exitWith(143));

  if (role !== undefined && path !== undefined) {
    if (await ensureFifo(path)) cleanups.push(() => Deno.remove(path));
    if (role === "writer") {
      const who = `Writer ${Deno.pid}`;
      console.error(`${who}: waiting for a reader on ${path}`);
      await sendLines(await openFifo(path, { write: true }), count, interval);
      console.error(`${who}: done, closed ${path}`);
      return;
    }
    const who = `Reader ${Deno.pid}`;
    console.log(`${who}: waiting for a writer on ${path}`);
    const fifo = await openFifo(path, { read: true });
    // The server pattern: our own spare write end means "every writer has closed" never
    // happens, so there is no EOF between one writer leaving and the next one arriving.
    if (opts["keep-open"]) await openFifo(path, { write: true });
    await printLines(fifo, who);
    return;
  }

  // Default run, like the article: make the FIFO, start the writer as a second copy of this
  // script (Deno has no fork), and read.
  const dir = await Deno.makeTempDir({ prefix: "named_fifo_" });
  cleanups.push(() => Deno.remove(dir));
  const fifoPath = `${dir}/fifo`;
  await ensureFifo(fifoPath);
  cleanups.push(() => Deno.remove(fifoPath));
  const permissions = [`--allow-read=${fifoPath}`, `--allow-write=${fifoPath}`]; // nothing else
  const asWriter = ["--role", "writer", "--path", fifoPath];
  const lines = ["--count", opts.count, "--interval", opts.interval];
  const command = new Deno.Command(denoExecutable(), {
    args: ["run", ...permissions, import.meta.filename!, ...asWriter, ...lines],
    stdout: "null",
    stderr: "piped", // its "waiting" chatter; shown only if it fails
  });
  let writer: Deno.ChildProcess;
  try {
    writer = command.spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new Refusal("starting the writer needs --allow-run=deno");
    }
    throw error;
  }
  cleanups.push(async () => {
    writer.kill("SIGTERM"); // throws if it has ended already: then there is nothing to wait for
    await writer.status; // no child outlives us
  });
  const writerSays = new Response(writer.stderr).text();
  console.log(`Parent ${Deno.pid} made the FIFO ${fifoPath} and started writer ${writer.pid}`);
  // If the writer dies before it opens the FIFO, our open would wait forever: race them.
  const opening = openFifo(fifoPath, { read: true });
  const early = await Promise.race([opening.then(() => null), writer.status]);
  if (early && !early.success) throw await writerFailed(early, writerSays);
  await printLines(await opening, `Parent ${Deno.pid}`);
  const status = await writer.status;
  if (!status.success) throw await writerFailed(status, writerSays);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
    await exitWith(0);
  } catch (error) {
    // A signal is ending the run: the exit code is the signal's, and a writer it killed is no news.
    if (exiting) await exitWith(1);
    if (error instanceof UsageError) {
      console.error(`error: ${error.message} (see --help)`);
      await exitWith(2);
    }
    // Our stdout was closed (`... | head -3`): stop quietly, as a Unix tool does.
    if (error instanceof Deno.errors.BrokenPipe) await exitWith(0);
    const expected = error instanceof Refusal || error instanceof Deno.errors.NotCapable ||
      error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotFound;
    // An expected failure is one line; anything else is a bug, shown with its stack trace.
    console.error(expected ? `error: ${(error as Error).message}` : error);
    await exitWith(1);
  }
}
