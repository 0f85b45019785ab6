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
 * Unix only. Read and write are unscoped because the FIFO lives in a fresh temporary directory
 * whose place depends on the system; with your own path you can narrow them, e.g.
 * `--allow-run=mkfifo --allow-read=/tmp/demo.fifo --allow-write=/tmp/demo.fifo`.
 * Options: `--role reader|writer --path P` runs one side only (two terminals, either order, or
 * `echo hi > P` / `cat P` as the other side); `--count N` lines (0: no end), `--interval MS`;
 * `--keep-open` (reader) serves writer after writer until Ctrl-C. A FIFO the script created is
 * removed on every exit; an existing FIFO is used and left; anything else at P is refused.
 * Exit codes: 0 done, 1 error (the writer's reader went away, P is not a FIFO), 2 usage,
 * 130 Ctrl-C, 143 SIGTERM.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo --allow-read --allow-write scripts/named_fifo.ts --count 6 --interval 200
 * Parent 8845 made the FIFO /tmp/named_fifo_1b290426f3a92b44/fifo and started writer 8853
 * Parent 8845 got "Number 000" at 1795702977.413
 * Parent 8845 got "Number 001" at 1795702977.615
 * Parent 8845 got "Number 002" at 1795702977.818
 * Parent 8845 got "Number 003" at 1795702978.019
 * Parent 8845 got "Number 004" at 1795702978.222
 * Parent 8845 got "Number 000" at 1795702978.423
 * Parent 8845 saw EOF: every writer has closed the FIFO
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const USAGE = "usage: named_fifo.ts [--role reader|writer --path P] " +
  "[--count N] [--interval MS] [--keep-open] [--help]";
const HELP = `${USAGE}
  (no --role)           make a FIFO in a temporary directory, start a writer, read it
  --role reader|writer  be one side only, on the FIFO at --path P (made if missing)
  --count N             lines the writer sends (default 10; 0: until Ctrl-C)
  --interval MS         milliseconds between lines (default 1000)
  --keep-open           reader: keep serving writer after writer, until Ctrl-C`;

/** A one-line failure the user can act on (no stack trace): exit 1. */
class Refusal extends Error {}
/** A mistake on the command line: exit 2 with the usage line. */
class UsageError extends Error {}

/** Cleanup steps, run last-in first-out by {@link exitWith} on every exit path. */
const cleanups: (() => void | Promise<void>)[] = [];

async function cleanUp(): Promise<void> {
  for (const step of cleanups.splice(0).reverse()) {
    try {
      await step();
    } catch { /* best effort: keep cleaning */ }
  }
}

let exiting = false;

/** Cleans up and exits. The first call wins: a signal may arrive while main is ending too. */
async function exitWith(code: number): Promise<never> {
  if (exiting) return await new Promise<never>(() => {});
  exiting = true;
  await cleanUp();
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
  const made = await new Deno.Command("mkfifo", {
    args: ["-m", "600", "--", path],
    stderr: "piped",
  }).output();
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

/**
 * Prints every line read from the FIFO until EOF. One reader over the whole stream, and we split
 * lines ourselves: a chunk may hold many lines, or end in the middle of one.
 */
async function printLines(fifo: Deno.FsFile, who: string): Promise<void> {
  const decoder = new TextDecoder();
  let partial = "";
  const show = (line: string) => `${who} got "${line}" at ${(Date.now() / 1000).toFixed(3)}`;
  for await (const chunk of fifo.readable) {
    const lines = (partial + decoder.decode(chunk, { stream: true })).split(
      "\n",
    );
    partial = lines.pop()!;
    if (lines.length > 0) console.log(lines.map(show).join("\n"));
  }
  if (partial !== "") console.log(show(partial));
  console.log(`${who} saw EOF: every writer has closed the FIFO`);
}

/**
 * Sends `Number 000` ... (counter mod 5), one line per interval. `writeSync` is one system call
 * per line, no worker-thread round trip, and a write of at most PIPE_BUF bytes (4096 on Linux)
 * to a pipe is atomic: whole, never mixed with another writer's bytes. A reader that goes away
 * would kill a C program with SIGPIPE; Deno ignores that signal, so the write throws BrokenPipe.
 */
async function sendLines(fifo: Deno.FsFile, count: number, interval: number) {
  const encoder = new TextEncoder();
  for (let sent = 0; count === 0 || sent < count; sent++) {
    if (sent > 0) await new Promise((wake) => setTimeout(wake, interval));
    const line = `Number ${String(sent % 5).padStart(3, "0")}\n`;
    try {
      fifo.writeSync(encoder.encode(line));
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      throw new Refusal(
        `the reader closed the FIFO after ${sent} lines (broken pipe)`,
      );
    }
  }
  fifo.close(); // the reader sees EOF once every writer has closed
}

const OPTIONS = {
  role: { type: "string" },
  path: { type: "string" },
  count: { type: "string", default: "10" },
  interval: { type: "string", default: "1000" },
  "keep-open": { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

async function main(args: string[]): Promise<void> {
  const { values: opts } = (() => {
    try {
      return parseArgs({ args, options: OPTIONS, strict: true });
    } catch (error) {
      throw new UsageError((error as Error).message.split("\n")[0]); // one line
    }
  })();
  if (opts.help) return console.log(HELP);
  const count = Number(opts.count), interval = Number(opts.interval);
  if (!Number.isInteger(count) || count < 0) {
    throw new UsageError("--count wants N >= 0");
  }
  if (!Number.isInteger(interval) || interval < 0) {
    throw new UsageError("--interval wants MS >= 0");
  }
  if (opts.role && !["reader", "writer"].includes(opts.role)) {
    throw new UsageError("--role is reader or writer");
  }
  if ((opts.role === undefined) !== (opts.path === undefined)) {
    throw new UsageError("--role and --path go together");
  }
  if (opts["keep-open"] && opts.role !== "reader") {
    throw new UsageError("--keep-open is for --role reader");
  }
  if (Deno.build.os === "windows") {
    throw new Refusal(
      "FIFOs are POSIX-only (Windows named pipes are another API): use Linux or macOS",
    );
  }
  // Opening a FIFO blocks until the other end opens. Deno.open waits in a worker thread, so the
  // event loop still runs these listeners, and Ctrl-C removes the FIFO even while we wait.
  Deno.addSignalListener("SIGINT", () => exitWith(130));
  Deno.addSignalListener("SIGTERM", () => exitWith(143));

  if (opts.role) {
    const path = opts.path!;
    if (await ensureFifo(path)) cleanups.push(() => Deno.remove(path));
    const who = `${opts.role === "reader" ? "Reader" : "Writer"} ${Deno.pid}`;
    if (opts.role === "writer") {
      console.error(`${who}: waiting for a reader on ${path}`);
      await sendLines(await Deno.open(path, { write: true }), count, interval);
      return console.error(`${who}: done, closed ${path}`);
    }
    console.log(`${who}: waiting for a writer on ${path}`);
    const fifo = await Deno.open(path, { read: true });
    // The server pattern: our own spare write end means "every writer has closed" never
    // happens, so there is no EOF between one writer leaving and the next one arriving.
    if (opts["keep-open"]) await Deno.open(path, { write: true });
    return await printLines(fifo, who);
  }

  // Default run, like the article: make the FIFO, start the writer as a second copy of this
  // script (Deno has no fork), and read. The child may only open the FIFO, nothing else.
  const dir = await Deno.makeTempDir({ prefix: "named_fifo_" });
  cleanups.push(() => Deno.remove(dir));
  const path = `${dir}/fifo`;
  await ensureFifo(path);
  cleanups.push(() => Deno.remove(path));
  const command = new Deno.Command(denoExecutable(), {
    args: [
      "run",
      `--allow-read=${path}`,
      `--allow-write=${path}`,
      import.meta.filename!,
      "--role",
      "writer",
      "--path",
      path,
      "--count",
      `${count}`,
      "--interval",
      `${interval}`,
    ],
    stdout: "null",
    stderr: "piped", // its "waiting" chatter; shown only if it fails
  });
  let writer: Deno.ChildProcess;
  try {
    writer = command.spawn();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    throw new Refusal("starting the writer needs --allow-run=deno");
  }
  cleanups.push(async () => {
    writer.kill("SIGTERM");
    await writer.status; // no child outlives us
  });
  const writerSays = new Response(writer.stderr).text();
  console.log(
    `Parent ${Deno.pid} made the FIFO ${path} and started writer ${writer.pid}`,
  );
  // If the writer dies before it opens the FIFO, our open would wait forever: race them.
  const opening = Deno.open(path, { read: true });
  const early = await Promise.race([opening.then(() => null), writer.status]);
  if (early && !early.success) {
    throw new Refusal(`writer failed: ${(await writerSays).trim()}`);
  }
  await printLines(await opening, `Parent ${Deno.pid}`);
  const status = await writer.status;
  if (!status.success) {
    throw new Refusal(`writer failed: ${(await writerSays).trim()}`);
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
    await exitWith(0);
  } catch (error) {
    if (exiting) await exitWith(1); // a signal is ending the run: a writer it killed is no news
    const usage = error instanceof UsageError;
    const expected = usage || error instanceof Refusal ||
      error instanceof Deno.errors.NotCapable ||
      error instanceof Deno.errors.PermissionDenied ||
      error instanceof Deno.errors.NotFound;
    if (!expected) {
      await cleanUp(); // a bug: still remove what we made, then show the stack trace
      throw error;
    }
    console.error(`error: ${error.message}${usage ? `\n${USAGE}` : ""}`);
    await exitWith(usage ? 2 : 1);
  }
}
