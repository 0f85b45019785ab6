/**
 * @title Anonymous pipe: a child writes, its parent reads
 * @difficulty beginner
 * @tags cli
 * @run deno run --allow-run=deno scripts/anonymous_pipe.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.Command} Doc: Deno.Command
 *
 * The article's program in Deno. A child process writes `Number 000`, `Number 001` ...
 * (the counter wraps after 004) through a pipe, one line per interval, and its parent prints
 * each line with its own pid and the time it arrived. Deno has no `fork`, so the script starts a
 * second copy of itself as the child, and the child's stdout is the pipe. It proves the
 * article's claims that a pipe connects related processes and that a reader of an empty pipe
 * waits for the writer; its reader sees EOF once the child has exited. (That the pipe itself
 * goes away with the processes is shown by pipe_lifetime.ts.)
 *
 * Options: `--count N` lines (default 10; `--count 0` runs forever, like the article, until
 * Ctrl-C), `--interval MS` between lines (default 1000, as in the article), `--help`.
 * Permissions: the parent needs to run `deno` (this same binary); the child needs none.
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
const USAGE = `usage: deno run --allow-run=deno scripts/anonymous_pipe.ts [options]
  --count N      lines the child sends (default 10; 0 sends forever, until Ctrl-C)
  --interval MS  milliseconds between lines (default 1000)
  --help         show this help`;

/**
 * The article's message: `Number 000` ... `Number 004`, then `Number 000` again.
 * @param sequence how many lines were sent before this one
 */
export function numberLine(sequence: number): string {
  return `Number ${String(sequence % 5).padStart(3, "0")}`;
}

/**
 * Splits a byte stream into lines (without their "\n"), however the bytes were cut into
 * chunks: a pipe delivers whatever the writer's writes and the kernel buffer make of them,
 * so one read may hold half a line, several lines, or one piece of a 1 MiB line.
 */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let partial = ""; // the start of a line whose "\n" has not arrived yet
  // TextDecoderStream also keeps a UTF-8 character that is split between two chunks intact.
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const pieces = text.split("\n");
    if (pieces.length === 1) {
      partial += text; // still inside one line
      continue;
    }
    yield partial + pieces[0];
    for (let i = 1; i < pieces.length - 1; i++) yield pieces[i];
    partial = pieces[pieces.length - 1];
  }
  // EOF: every write end is closed. A last line without "\n" is still a line.
  if (partial !== "") yield partial;
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
 * Writes one line to stdout with `writeSync`: one system call, no round trip to a worker thread.
 * A write may take only part of the bytes, so it loops until all are written. Unlike
 * `console.log`, which ignores a closed stdout, it throws `BrokenPipe` when nobody reads.
 */
function writeLine(text: string): void {
  const bytes = encoder.encode(text + "\n");
  let written = 0;
  while (written < bytes.length) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

// The child: the article's `child()`. Its stdout is the write end of the pipe.
async function runChild(count: number, intervalMs: number): Promise<void> {
  for (let sent = 0; count === 0 || sent < count; sent++) {
    // The article sleeps before every line; we send the first at once, then one per interval.
    // (Measured here: a first setTimeout delays a freshly started Deno by some 10 ms.)
    if (sent > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
    try {
      writeLine(numberLine(sent));
    } catch (error) {
      // The parent closed its read end (it exited): nobody will read, so stop quietly.
      if (error instanceof Deno.errors.BrokenPipe) return;
      throw error;
    }
  }
  // Returning closes stdout: the parent's read then returns EOF.
}

// The parent: the article's `parent()`. It holds the read end, `child.stdout`.
async function runParent(count: number, intervalMs: number): Promise<number> {
  // The child's settings travel as plain arguments after `--child`: see the end of the file.
  const args = [import.meta.filename!, "--child", `${count}`, `${intervalMs}`];
  let child: Deno.ChildProcess;
  try {
    // `stdout: "piped"` is os.pipe() + fork + dup2 in one step: Deno creates the pipe, gives the
    // write end to the child as its fd 1 and keeps the read end. The runtime closes the ends each
    // side does not use (the article's "close the connection you don't need"); an extra write
    // end left open in the parent would mean the parent never sees EOF.
    child = new Deno.Command(denoExecutable(), {
      args: ["run", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    console.error("error: cannot start the child: run with --allow-run=deno");
    return 1;
  }

  // Ctrl-C sends SIGINT to every process of the terminal's foreground group, child included;
  // `kill` sends it to the parent alone. Either way: stop the child, read to EOF, exit 128+n.
  let stoppedBy: "SIGINT" | "SIGTERM" | null = null;
  const stopChild = (signal: "SIGINT" | "SIGTERM") => {
    stoppedBy = signal;
    try {
      child.kill("SIGTERM");
    } catch { /* it has already exited */ }
  };
  const onInterrupt = () => stopChild("SIGINT");
  const onTerminate = () => stopChild("SIGTERM");
  const unix = Deno.build.os !== "windows"; // Windows has no SIGTERM to listen for
  Deno.addSignalListener("SIGINT", onInterrupt);
  if (unix) Deno.addSignalListener("SIGTERM", onTerminate);

  try {
    // Each read waits while the pipe is empty, and ends (EOF) when the child's write end closes:
    // when it exits, normally or not. Drain to EOF first, then ask how the child ended: a child
    // that blocks writing into a full pipe nobody reads would never exit.
    for await (const line of readLines(child.stdout)) {
      writeLine(
        `Parent ${Deno.pid} got "${line}" at ${(Date.now() / 1000).toFixed(3)}`,
      );
    }
    const status = await child.status;
    // Ctrl-C reaches both processes at once, so the child may die of SIGINT before our own
    // listener has run: that is an interrupt as well, not a failure (as shells treat it).
    if (stoppedBy === "SIGTERM") return 143;
    if (stoppedBy === "SIGINT" || status.signal === "SIGINT") return 130;
    if (status.signal) {
      console.error(`error: the child was killed by ${status.signal}`);
      return 1;
    }
    if (status.code !== 0) {
      console.error(`error: the child exited with code ${status.code}`);
      return 1;
    }
    return 0;
  } catch (error) {
    // Our own stdout was closed (`... | head -3`): stop like a Unix tool does.
    if (error instanceof Deno.errors.BrokenPipe) return 0;
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    if (unix) Deno.removeSignalListener("SIGTERM", onTerminate);
    try {
      child.kill("SIGTERM"); // no child outlives its parent, whatever happened above
    } catch { /* it has already exited */ }
    await child.status;
  }
}

/** Reads a whole number >= 0 from an option, or throws a one-line message naming it. */
function wholeNumber(name: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value)) {
    throw new Error(`--${name} must be a whole number >= 0, got "${text}"`);
  }
  return value;
}

// The command line. The child is started as `anonymous_pipe.ts --child COUNT INTERVAL` and
// reads those itself: importing `node:util` loads Node's compatibility layer, which would add
// some 30 ms to every child's start; only the parent, facing the user, parses options.
if (import.meta.main && Deno.args[0] === "--child") {
  await runChild(Number(Deno.args[1]), Number(Deno.args[2]));
} else if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  let count: number, interval: number, help: boolean | undefined;
  try {
    const { values } = parseArgs({
      options: {
        count: { type: "string", default: "10" },
        interval: { type: "string", default: "1000" },
        help: { type: "boolean" },
      },
    });
    count = wholeNumber("count", values.count);
    interval = wholeNumber("interval", values.interval);
    help = values.help;
  } catch (error) {
    // A user's mistake: one line and exit code 2, no stack trace.
    const message = (error as Error).message.replaceAll("\n", " ");
    console.error(`error: ${message} (see --help)`);
    Deno.exit(2);
  }
  if (help) console.log(USAGE);
  else Deno.exit(await runParent(count, interval));
}
