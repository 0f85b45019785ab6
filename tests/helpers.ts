/**
 * Test helpers shared by the end-to-end tests (not a lesson: lessons stand alone, tests may share).
 *
 * Every lesson is run the way a user runs it: as a subprocess of the same Deno, from the
 * repository root, with exactly the permission flags its header's `@run` line shows, and with a
 * deadline after which it is killed, so no test can hang.
 *
 * @module
 */
import assert from "node:assert/strict";

/** The repository root, the directory every command in a header is run from. */
export const repoRoot: string = new URL("..", import.meta.url).pathname;

/** Path of a script under `scripts/`, relative to {@link repoRoot}. */
export function scriptPath(name: string): string {
  return `scripts/${name}`;
}

function readHeader(name: string): string {
  return Deno.readTextFileSync(`${repoRoot}${scriptPath(name)}`);
}

/** Splits a command line as written in a header (plain words, no quoting). */
function words(line: string): string[] {
  return line.trim().split(/\s+/).filter((word) => word.length > 0);
}

/**
 * The permission flags of a script's `@run deno run <flags> scripts/<name> ...` header line.
 * Throws when the header has no such line, so a test cannot silently run with other flags.
 */
export function headerRunFlags(name: string): string[] {
  const match = readHeader(name).match(/^\s*\*\s*@run\s+(.*)$/m);
  if (!match) throw new Error(`${name}: no @run line in the header`);
  const parts = words(match[1]);
  if (parts[0] !== "deno" || parts[1] !== "run") {
    throw new Error(
      `${name}: @run must read "deno run <flags> ${scriptPath(name)}"`,
    );
  }
  const scriptIndex = parts.indexOf(scriptPath(name));
  if (scriptIndex < 0) {
    throw new Error(`${name}: @run does not name ${scriptPath(name)}`);
  }
  const flags = parts.slice(2, scriptIndex);
  if (flags.includes("-A") || flags.includes("--allow-all")) {
    throw new Error(`${name}: @run uses -A`);
  }
  return flags;
}

/** The command and the output shown in a script's "The whole run prints:" block. */
export interface WholeRun {
  /** The words after `$ deno` on the block's first line, e.g. `["run", "--allow-run=deno", ...]`. */
  denoArgs: string[];
  /** The lines after the command, joined with "\n" and ending with "\n". */
  expected: string;
}

/**
 * Reads the "The whole run prints:" block of a script's header: a fenced block whose first line
 * is `$ deno run ...` and whose other lines are what that command prints.
 */
export function wholeRunBlock(name: string): WholeRun {
  const lines = readHeader(name).split("\n");
  const start = lines.findIndex((line) => line.includes("The whole run prints:"));
  if (start < 0) throw new Error(`${name}: no "The whole run prints:" block`);
  const body: string[] = [];
  let inFence = false;
  for (const rawLine of lines.slice(start + 1)) {
    const line = rawLine.replace(/^\s*\* ?/, "");
    if (line.startsWith("```")) {
      if (inFence) break;
      inFence = true;
      continue;
    }
    if (inFence) body.push(line);
  }
  const [commandLine, ...output] = body;
  if (!commandLine?.startsWith("$ deno ")) {
    throw new Error(`${name}: the block must start with a "$ deno ..." line`);
  }
  return {
    denoArgs: words(commandLine.slice("$ deno ".length)),
    expected: output.map((line) => line + "\n").join(""),
  };
}

/** What a finished process left behind. */
export interface RunResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** Options for {@link runDeno} and {@link runScript}. */
export interface RunOptions {
  /** Kill the process (SIGKILL) after this many milliseconds; the test then fails. */
  timeoutMs?: number;
  /** Text written to the process's stdin, which is then closed. */
  stdin?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** Runs `deno <args>` from the repository root and collects its output, with a deadline. */
export async function runDeno(
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: repoRoot,
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  try {
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin));
      await writer.close();
    }
    const output = await child.output();
    if (timedOut) {
      throw new Error(`deno ${args.join(" ")}: killed after ${timeoutMs} ms`);
    }
    const decoder = new TextDecoder();
    return {
      code: output.code,
      signal: output.signal,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `deno run <header flags> scripts/<name> <args>`, exactly as the header says. */
export function runScript(
  name: string,
  args: string[] = [],
  options: RunOptions = {},
): Promise<RunResult> {
  return runDeno(
    ["run", ...headerRunFlags(name), scriptPath(name), ...args],
    options,
  );
}

/**
 * Spawns `program` with `options` and a deadline: after `timeoutMs` (default 30 s) it is killed
 * with SIGKILL, so no test can hang on it. For programs other than a lesson (`sh`, `setsid`,
 * `deno eval`); the caller ends it, best with `await using`, which kills and reaps it.
 */
export function spawnWithDeadline(
  program: string,
  options: Deno.CommandOptions,
  timeoutMs = 30_000,
): Deno.ChildProcess {
  const child = new Deno.Command(program, options).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  child.status.finally(() => clearTimeout(timer));
  return child;
}

/**
 * Spawns `deno run <header flags> scripts/<name> <args>` with piped stdio and returns the
 * process, for tests that talk to it while it runs. The caller must end it; a deadline kills it
 * with SIGKILL after `timeoutMs` in any case. Dispose it (`await using`) to kill and reap it.
 */
export function spawnScript(
  name: string,
  args: string[] = [],
  options: {
    timeoutMs?: number;
    env?: Record<string, string>;
    stdin?: boolean;
  } = {},
): Deno.ChildProcess {
  return spawnWithDeadline(Deno.execPath(), {
    args: ["run", ...headerRunFlags(name), scriptPath(name), ...args],
    cwd: repoRoot,
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }, options.timeoutMs);
}

/**
 * Reads lines from a byte stream one at a time, for tests that wait for a given line (an
 * event) instead of sleeping. `next()` resolves to the next line, or null at EOF; `until(text)`
 * to all up to and including `text` once it has arrived, a line's end or not, or null at EOF;
 * `rest()` to all that is left; `cancel()` closes the stream (for a pipe, its read end).
 */
export function lineReader(stream: ReadableStream<Uint8Array>): {
  next: () => Promise<string | null>;
  until: (text: string) => Promise<string | null>;
  rest: () => Promise<string>;
  cancel: () => Promise<void>;
} {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let done = false;
  return {
    async next() {
      while (true) {
        const newline = buffered.indexOf("\n");
        if (newline >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          return line;
        }
        if (done) {
          if (buffered === "") return null;
          const last = buffered;
          buffered = "";
          return last;
        }
        const chunk = await reader.read();
        if (chunk.done) done = true;
        else buffered += chunk.value;
      }
    },
    async until(text: string) {
      while (true) {
        const found = buffered.indexOf(text);
        if (found >= 0) {
          const upTo = buffered.slice(0, found + text.length);
          buffered = buffered.slice(found + text.length);
          return upTo;
        }
        if (done) return null;
        const chunk = await reader.read();
        if (chunk.done) done = true;
        else buffered += chunk.value;
      }
    },
    async rest() {
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) done = true;
        else buffered += chunk.value;
      }
      const all = buffered;
      buffered = "";
      return all;
    },
    /** Stops reading and closes the stream: for a pipe, its read end. */
    async cancel() {
      done = true;
      await reader.cancel();
    },
  };
}

/** The exit code a lesson ends with after each signal a test sends it (128 + the number). */
export const SIGNAL_EXITS = [["SIGINT", 130], ["SIGTERM", 143]] as const;

/**
 * Asserts a usage error as every lesson reports one: exit 2, nothing on stdout, exactly one line
 * `error: ... (see --help)` on stderr, and that line matching `problem` when given.
 */
export function assertUsageError(result: RunResult, problem?: RegExp, what = ""): void {
  assert.equal(result.code, 2, `${what}: exit code\n${result.stderr}`);
  assert.equal(result.stdout, "", `${what}: stdout`);
  assert.match(result.stderr, /^error: [^\n]+ \(see --help\)\n$/, what);
  if (problem) assert.match(result.stderr, problem, what);
}

/** What `ps <args>` prints; `ps` because Deno's permissions guard /proc. */
async function ps(args: string[]): Promise<string> {
  const output = await new Deno.Command("ps", {
    args,
    stdout: "piped",
    stderr: "null",
    signal: AbortSignal.timeout(10_000),
  }).output();
  return new TextDecoder().decode(output.stdout);
}

/** The pids of a process's children, from `ps --ppid` (Linux `ps`). */
export async function childrenOf(pid: number): Promise<number[]> {
  const text = await ps(["-o", "pid=", "--ppid", `${pid}`]);
  return text.split(/\s+/).filter(Boolean).map(Number);
}

/**
 * A process's state as `ps` shows it (`S`, `R`, `Z` for a zombie...), or null when there is no
 * such process at all: it has exited and been reaped.
 */
export async function processState(pid: number): Promise<string | null> {
  const state = (await ps(["-o", "stat=", "-p", `${pid}`])).trim();
  return state === "" ? null : state;
}

/** True while a process with this pid runs (a zombie, exited but not yet reaped, does not). */
export async function alive(pid: number): Promise<boolean> {
  const state = await processState(pid);
  return state !== null && !state.startsWith("Z");
}

/** The command lines of the live (not zombie) processes that contain `text`. */
export async function processesMentioning(text: string): Promise<string[]> {
  return (await ps(["-eo", "stat=,args="])).split("\n")
    .filter((line) => !line.trimStart().startsWith("Z") && line.includes(text));
}

/** Whether anything (a file, a FIFO, a dangling symlink...) is at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Runs `body` with a fresh temporary directory, removed afterwards with all it holds. */
export async function withTempDir(
  prefix: string,
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs `scripts/<name> --help` with its header's flags and checks what every lesson promises:
 * exit 0, nothing on stderr, a usage line on stdout, and each of `expected` in the text.
 */
export async function assertHelp(name: string, ...expected: RegExp[]): Promise<void> {
  const result = await runScript(name, ["--help"], { timeoutMs: 10_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  assert.match(result.stdout, /^usage: /);
  for (const pattern of expected) assert.match(result.stdout, pattern);
}

/** Makes a FIFO at `path` with the `mkfifo` program (Deno has no call for it). */
export async function mkfifo(path: string): Promise<void> {
  const made = await new Deno.Command("mkfifo", {
    args: [path],
    signal: AbortSignal.timeout(10_000),
  }).output();
  if (!made.success) throw new Error(`mkfifo ${path} failed`);
}

/**
 * Opens the read end of the FIFO at `path`, where `writer` is to open the write end. Opening a
 * FIFO waits for the other end, and a waiting open cannot be cancelled: if the writer dies first,
 * open the write end here to release it, then fail, rather than hang the test run.
 */
export async function openFifoForReading(
  path: string,
  writer: Deno.ChildProcess,
): Promise<Deno.FsFile> {
  const opening = Deno.open(path, { read: true });
  const writerExitedFirst = await Promise.race([
    opening.then(() => false),
    writer.status.then(() => true),
  ]);
  if (writerExitedFirst) {
    (await Deno.open(path, { write: true })).close();
    (await opening).close();
    throw new Error(`the writer exited before it opened ${path}`);
  }
  return await opening;
}

/** The banner that opens a lesson's plumbing block. */
export const BANNER = /^\/\/ -{20,}\n\/\/ The plumbing\.[^]*?\n\/\/ -{20,}\n/m;

export function allLessons(): string[] {
  return [...Deno.readDirSync(`${repoRoot}scripts`)]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts"))
    .map((entry) => entry.name)
    .sort();
}

/** The lessons: every one is in the shape, and the checks hold each to it. */
export function lessons(): string[] {
  return allLessons();
}
