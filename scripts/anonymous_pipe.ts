/**
 * @title Anonymous pipe: a child writes, its parent reads
 * @difficulty beginner
 * @tags cli
 * @run deno run --allow-run=deno scripts/anonymous_pipe.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.Command} Doc: Deno.Command
 *
 * The article's program in Deno: a child process writes `Number 000`, `Number 001` ... (the
 * counter wraps after 004) through a pipe, one line per interval, and its parent prints each line
 * with its own pid and the time it arrived. Deno has no `fork`, so the script starts a copy of
 * itself as the child, and the child's stdout is the pipe. It shows the article's claims 2 and 4:
 * a reader of an empty pipe waits for the writer, and an anonymous pipe connects related
 * processes. Options: `--count N` lines (default 10; 0 runs until Ctrl-C), `--interval MS`.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno scripts/anonymous_pipe.ts --count 6 --interval 200
 * Parent 15185 got "Number 000" at 1795705137.569
 * Parent 15185 got "Number 001" at 1795705137.780
 * Parent 15185 got "Number 002" at 1795705137.984
 * Parent 15185 got "Number 003" at 1795705138.183
 * Parent 15185 got "Number 004" at 1795705138.387
 * Parent 15185 got "Number 000" at 1795705138.589
 * ```
 *
 * @module
 */

// The parent is the article's `parent()`. `stdout: "piped"` does what os.pipe(), fork() and
// dup2() do there, in one step: Deno makes the pipe, gives its write end to the child as fd 1
// and keeps the read end as `child.stdout`. It also closes the ends each side does not use, the
// article's "close the connection you don't need": a write end left open in the parent would
// keep EOF from ever coming. The child is this same file, `import.meta.url`, which works for a
// checkout (a file: URL) and for a script run from a server alike.
async function parent(count: number, intervalMs: number): Promise<number> {
  // `await using` kills and reaps the child however this function ends (an error, our own
  // stdout closing), so no child outlives its parent.
  await using child = new Deno.Command(denoExecutable(), {
    args: ["run", import.meta.url, "--child", `${count}`, `${intervalMs}`],
    stdin: "null",
    stdout: "piped",
  }).spawn();

  // Each read waits while the pipe is empty (claim 2), and the stream ends (EOF) once the
  // child's write end is closed: when it exits, however it exits. Read to EOF first, then ask
  // how it ended: a child blocked writing into a full pipe that nobody reads never exits.
  try {
    for await (const line of readLines(child.stdout)) {
      const seconds = (Date.now() / 1000).toFixed(3);
      writeAll(Deno.stdout, encoder.encode(`Parent ${Deno.pid} got "${line}" at ${seconds}\n`));
    }
  } catch (error) {
    // Our own stdout was closed (`... | head -3`): stop quietly, as a Unix tool does.
    if (error instanceof Deno.errors.BrokenPipe) return 0;
    throw error;
  }
  const status = await child.status;
  if (status.success) return 0;
  const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
  console.error(`error: the child ${how}`);
  return 1;
}

/**
 * The article's message: `Number 000` ... `Number 004`, then `Number 000` again.
 * @param sequence how many lines were sent before this one
 */
export function numberLine(sequence: number): string {
  return `Number ${String(sequence % 5).padStart(3, "0")}`;
}

// The child is the article's `child()`; its stdout is the pipe's write end. The article sleeps
// before every line; we send the first one at once (a first timer delays a fresh Deno by ~10 ms).
async function child(count: number, intervalMs: number): Promise<void> {
  for (let sent = 0; count === 0 || sent < count; sent++) {
    if (sent > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
    try {
      writeAll(Deno.stdout, encoder.encode(numberLine(sent) + "\n"));
    } catch (error) {
      // The read end is closed: the parent exited or was killed. Nobody will read, so stop.
      // No signal handler is needed anywhere: this is how a killed parent's child ends.
      if (error instanceof Deno.errors.BrokenPipe) return;
      throw error;
    }
  }
  // Returning closes stdout, the write end: the parent's read then sees EOF.
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

const encoder = new TextEncoder();

/**
 * Writes all of `bytes` with `writeSync`, one system call and no await (an `await write()` per
 * small message is several times slower). Throws `Deno.errors.BrokenPipe` once nobody reads.
 */
function writeAll(file: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
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

/**
 * Reads the options in the shape of `defaults`: a number takes a whole number >= 0, a string any
 * text, a boolean is a flag. `--help` prints `usage` and exits 0.
 */
async function readOptions<T extends Record<string, number | string | boolean>>(
  usage: string,
  defaults: T,
): Promise<T> {
  const { parseArgs } = await import("node:util");
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name, value] of Object.entries(defaults)) {
    options[name] = { type: typeof value === "boolean" ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined> = {};
  try {
    values = parseArgs({ args: Deno.args, options }).values;
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  const result: Record<string, unknown> = { ...defaults, ...values };
  for (const name of Object.keys(values).filter((name) => typeof defaults[name] === "number")) {
    result[name] = Number(values[name]);
    if (!/^\d{1,15}$/.test(`${values[name]}`)) {
      usageError(`--${name} must be a whole number >= 0, got "${values[name]}"`);
    }
  }
  return result as T;
}

/** A mistake on the command line: one line naming it, and exit code 2, never a stack trace. */
function usageError(message: string): never {
  console.error(`error: ${message.replaceAll("\n", " ")} (see --help)`);
  Deno.exit(2);
}

/**
 * Runs the lesson and exits with its code. A missing permission is the user's mistake: one line
 * (Deno's message names the flag), code 1. Any other error is a bug and keeps its stack trace.
 */
async function exitWith(lesson: () => Promise<number>): Promise<never> {
  try {
    Deno.exit(await lesson());
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error(`error: ${error.message}`);
    Deno.exit(1);
  }
}

// The command line. The child gets its settings as plain words after `--child` and reads them
// itself: it need not load `node:util`, which would slow down every child's start.
const USAGE = `usage: deno run --allow-run=deno scripts/anonymous_pipe.ts [options]
  --count N      lines the child sends (default 10; 0 sends forever, until Ctrl-C)
  --interval MS  milliseconds between lines (default 1000)
  --help         show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Number(Deno.args[1]), Number(Deno.args[2]));
} else if (import.meta.main) {
  requireDeno();
  const options = await readOptions(USAGE, { count: 10, interval: 1000 });
  if (options.interval >= 2 ** 31) usageError("--interval must be below 2147483648 ms");
  await exitWith(() => parent(options.count, options.interval));
}
