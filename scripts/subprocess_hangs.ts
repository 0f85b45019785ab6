/**
 * @title Why does my subprocess hang?
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno,python3,setsid,kill scripts/subprocess_hangs.ts
 * @resource {https://docs.deno.com/api/deno/~/Deno.CommandOptions} Doc: Deno.CommandOptions
 *
 * Five hangs people report (deno#7727, #2505, #22767, #31288), each run as the bug under a
 * deadline, then fixed: the article's claims 2 and 3 (a reader of an empty pipe waits, a writer to
 * a full one waits) at work. `--deadline MS` (300). Case 4 needs python3, case 5 `setsid` (Linux).
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,python3,setsid,kill scripts/subprocess_hangs.ts
 * hang 1, stdin never closed: stuck, killed after 300 ms; stdin closed: "hello" in 39 ms
 * hang 2, status awaited first: stuck, killed after 300 ms; output read first: 1048576 + 1048576 bytes, exit 0 in 58 ms
 * hang 3, stdout read before stderr: stuck, killed after 300 ms; both read at once: 1048576 + 1048576 bytes, exit 0 in 54 ms
 * hang 4, python3 without -u: stuck, killed after 300 ms; python3 -u: "ready" in 204 ms
 * hang 5, a grandchild holds the pipe: stuck, killed after 300 ms; its group killed: EOF in 62 ms
 * ```
 *
 * @module
 */

// Each child is this same file, `--child <role>`, with no permission unless it needs one.
function spawnSelf(role: string, options: Deno.CommandOptions): Deno.ChildProcess {
  const args = ["run", import.meta.url, "--child", role];
  return new Deno.Command(denoExecutable(), { args, ...options }).spawn();
}

// Each case runs the bug under a deadline (>= 100 ms: a shorter one may fire before the child has
// started), Deno.Command's `signal` option: SIGTERM. If it fired, the bug hung. Then the fix.
async function parent(ms: number): Promise<number> { // Ctrl-C does not reach case 5's group
  Deno.addSignalListener("SIGINT", () => killGroup(group).finally(() => Deno.exit(130)));
  Deno.addSignalListener("SIGTERM", () => killGroup(group).finally(() => Deno.exit(143)));
  for (const [index, [name, fixName, run]] of CASES.entries()) {
    let line = `hang ${index + 1}, ${name}: `;
    try {
      const bug = AbortSignal.timeout(ms);
      await run(false, bug);
      const fix = AbortSignal.timeout(10_000);
      const start = performance.now();
      const result = await run(true, fix);
      const took = Math.round(performance.now() - start);
      line += `${bug.aborted ? `stuck, killed after ${ms} ms` : "no hang"}; ${fixName}: ` +
        `${fix.aborted ? "still stuck" : result} in ${took} ms`;
    } catch (error) { // the program is not installed: python3, setsid
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      line += `skipped, ${error.message}`;
    }
    console.log(line);
  }
  return 0;
}
const CASES = [
  ["stdin never closed", "stdin closed", stdinNeverClosed],
  ["status awaited first", "output read first", statusFirst],
  ["stdout read before stderr", "both read at once", stdoutFirst],
  ["python3 without -u", "python3 -u", pythonBuffers],
  ["a grandchild holds the pipe", "its group killed", grandchildHoldsThePipe],
] as const;
const io = { stdin: "piped", stdout: "piped" } as const;

// Hang 1 (deno#7727): the child copies its stdin to its stdout, as `cat` does, and ends at EOF.
// Its read waits (claim 2) for the EOF that comes only once the parent closes its write end.
async function stdinNeverClosed(fix: boolean, signal: AbortSignal): Promise<string> {
  const child = spawnSelf("cat", { ...io, signal });
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("hello\n"));
  if (fix) await writer.close();
  return `"${new TextDecoder().decode((await child.output()).stdout).trim()}"`;
}

// Hangs 2 (deno#2505) and 3: the child logs 1 MiB on stderr, then 1 MiB on stdout. Once a 64 KiB
// pipe is full, its write waits for a reader (claim 3): read both at once (`output()` does).
async function statusFirst(fix: boolean, signal: AbortSignal): Promise<string> {
  const child = spawnSelf("write-both", { stdout: "piped", stderr: "piped", signal });
  if (!fix) await child.status;
  return sizes(await child.output());
}
async function stdoutFirst(fix: boolean, signal: AbortSignal): Promise<string> {
  const child = spawnSelf("write-both", { stdout: "piped", stderr: "piped", signal });
  if (fix) return sizes(await child.output());
  await child.stdout.bytes(); // the EOF that a child blocked on stderr never sends
  return `${(await child.stderr.bytes()).length} bytes`;
}
const sizes = ({ stdout, stderr, code }: Deno.CommandOutput) =>
  `${stdout.length} + ${stderr.length} bytes, exit ${code}`;
// Hang 4 (deno#22767): python3 buffers what it prints into a pipe: "ready" stays in the child till
// it exits. `-u` sends it at once, as Deno does. Both runs clear PYTHONUNBUFFERED: only -u differs.
async function pythonBuffers(fix: boolean, signal: AbortSignal): Promise<string> {
  const args = [...(fix ? ["-u"] : []), "-c", 'import sys\nprint("ready")\nsys.stdin.read()'];
  const py = new Deno.Command("python3", { args, env: { PYTHONUNBUFFERED: "" }, ...io, signal });
  const child = py.spawn();
  const { value } = await child.stdout.getReader().read(); // one 6-byte write arrives whole
  await child.stdin.close(); // EOF ends the child
  await child.status;
  return `"${new TextDecoder().decode(value).trim()}"`;
}

// Hang 5 (deno#31288): the child starts a grandchild that inherits its stdout (`server &`). A
// deadline kills the child alone; the grandchild keeps the write end: no EOF. Start the child in
// a group of its own, `setsid` (`detached: true` does not), and kill the group (id: its pid).
let group = 0;
async function grandchildHoldsThePipe(fix: boolean, signal: AbortSignal): Promise<string> {
  await new Deno.Command("kill", { args: ["-0", `${Deno.pid}`] }).output(); // first: kill allowed?
  const args = [denoExecutable(), "run", "--allow-run=deno", import.meta.url, "--child", "spawn"];
  const child = new Deno.Command("setsid", { args, stdout: "piped" }).spawn();
  group = child.pid;
  const reader = child.stdout.getReader();
  await reader.read(); // "ready", written by the grandchild: both processes run
  if (fix) await killGroup(group);
  else await child[Symbol.asyncDispose](); // SIGTERM to the child alone, unless it is gone
  const eof = reader.read(); // resolves at EOF, or never while the grandchild lives
  const deadline = new Promise((done) => signal.addEventListener("abort", done));
  if (!signal.aborted) await Promise.race([eof, deadline]); // once fired, no "abort" event comes
  await killGroup(group); // the demo's own clean-up, when it hung
  return (await eof).done ? "EOF" : "more output";
}
// `Deno.kill(-group, "SIGTERM")` would do, but Deno.kill needs the whole --allow-run.
async function killGroup(pgid: number): Promise<void> {
  if (pgid) await new Deno.Command("kill", { args: ["-TERM", "--", `-${pgid}`] }).output();
}

// The children. Case 5's grandchild stands for a server; it lives a minute at most.
async function child(role: string): Promise<void> {
  const oneMiB = () => new Blob([new Uint8Array(1024 * 1024)]).stream();
  if (role === "cat") await Deno.stdin.readable.pipeTo(Deno.stdout.writable);
  if (role === "write-both") await oneMiB().pipeTo(Deno.stderr.writable); // stderr first
  if (role === "write-both") await oneMiB().pipeTo(Deno.stdout.writable);
  if (role === "spawn") await spawnSelf("grandchild", { stdin: "null" }).status;
  if (role === "grandchild") console.log("ready");
  if (role === "grandchild") await new Promise((done) => setTimeout(done, 60_000));
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

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

const USAGE = `usage: deno run --allow-run=deno,python3,setsid,kill scripts/subprocess_hangs.ts
  --deadline MS  how long a hang is given before the child is killed (default 300, >= 100)
  --help         show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Deno.args[1]);
} else if (import.meta.main) {
  requireDeno();
  const options = await readOptions(USAGE, { deadline: 300 });
  if (options.deadline < 100) usageError("--deadline must be at least 100 (ms)");
  await exitWith(() => parent(options.deadline));
}
