/**
 * @title A pipeline `a | b | c` without a shell
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno,grep,wc,sh scripts/pipeline.ts
 * @resource {https://developer.mozilla.org/en-US/docs/Web/API/ReadableStream/pipeTo} Doc: pipeTo
 *
 * Three `Deno.Command` children joined with `pipeTo`, as a shell joins `seq N | grep 7 | wc -l`.
 * Every exit status is checked, as `set -o pipefail` does: a failed stage is named with its code
 * or signal, the others are stopped. `sh -c` runs the same, prints the same; both are timed.
 * Options: `--lines N` (0: endless, till Ctrl-C), `--pattern P`. Unix only.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,grep,wc,sh scripts/pipeline.ts
 * Deno runs pipeline.ts --child 1000000 | grep -e 7 | wc -l (pids 12549 12550 12551)
 *   and prints 468559
 * sh -c runs the same pipeline and prints 468559
 * Deno pipeline: 0.09 s, sh -c: 0.07 s
 * Deno runs pipeline.ts --child 0 | sh -c 'kill -KILL $$' | wc -l (pids 12566 12567 12570)
 *   and fails, as under pipefail: stage 2 (sh -c 'kill -KILL $$') was killed by SIGKILL
 * ```
 *
 * @module
 */

/** A stage: its command line (program first) and the name we show. Stage 1 is this file again:
 * `--child N` prints 1 to N, as `seq` does. `-e` keeps a pattern such as `-1` a pattern. */
export type Stage = { name: string; argv: string[] };
const self = (lines: number) => [denoExecutable(), "run", import.meta.url, "--child", `${lines}`];
const numbers = (lines: number) => ({ name: `pipeline.ts --child ${lines}`, argv: self(lines) });
const grep = (pattern: string) => ({ name: `grep -e ${pattern}`, argv: ["grep", "-e", pattern] });
const countLines: Stage = { name: "wc -l", argv: ["wc", "-l"] };

/** Runs `stages` as `a | b | c`. `Deno.Command` cannot hand a child's stdout to the next child as
 * its stdin, as a shell does, so the parent stands in between: each `pipeTo` copies a stage's
 * stdout into the next one's stdin, with a shell pipe's backpressure: `pipeTo` awaits each write
 * into the slower reader before it reads on, so when `wc` lags, its stdin pipe fills, the parent
 * stops reading `grep`, that pipe fills and `grep` waits in its write, the article's claim 3. */
export async function runPipeline(stages: Stage[]): Promise<{ output: string; failure: string }> {
  // The stack stops (SIGTERM) and reaps every stage it holds, however this function ends: a
  // program not found (`spawn` throws NotFound), a failed stage, our own stdout closing.
  await using running = new AsyncDisposableStack();
  const children = stages.map(({ argv: [program, ...args] }, index) => {
    const stdin = index === 0 ? "null" : "piped"; // stderr is inherited, as in a shell
    return running.use(new Deno.Command(program, { args, stdin, stdout: "piped" }).spawn());
  });
  const pids = children.map((child) => child.pid).join(" ");
  const shown = stages.map((stage) => stage.name).join(" | ");
  writeAll(Deno.stdout, encoder.encode(`Deno runs ${shown} (pids ${pids})\n`));
  // A copy ends in BrokenPipe when the stage it feeds has exited; `pipeTo` then cancels its
  // source, and the stage before gets a broken pipe in turn. The stage's status says why it ended.
  const copies = children.slice(1).map((next, index) =>
    children[index].stdout.pipeTo(next.stdin).catch((error) => {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    })
  );
  const output = new Response(children.at(-1)!.stdout).text();
  // pipefail: the pipeline fails if any stage fails, even a grep that selects no line (exit 1).
  // The first to fail is the cause; the others are stopped at once, their ends are not reported.
  let failure = "";
  await Promise.all(children.map(async (child, index) => {
    const { success, code, signal } = await child.status;
    if (success || failure !== "") return;
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    failure = `stage ${index + 1} (${stages[index].name}) ${how}`;
    await running.disposeAsync();
  }));
  await Promise.all(copies);
  return { output: (await output).trim(), failure };
}

// No signal handler: Ctrl-C reaches every stage (a terminal signals its foreground group), and if
// the parent alone is killed, its pipe ends close: stage 1 gets a broken pipe, the others EOF.
async function parent(lines: number, pattern: string): Promise<number> {
  const say = (text: string) => writeAll(Deno.stdout, encoder.encode(text + "\n"));
  const seconds = (since: number) => ((performance.now() - since) / 1000).toFixed(2);
  const stages = [numbers(lines), grep(pattern), countLines];
  try {
    const denoStart = performance.now();
    const ours = await runPipeline(stages);
    const denoSeconds = seconds(denoStart);
    if (ours.failure !== "") return fail(ours.failure);
    say(`  and prints ${ours.output}`);
    // The same words through `sh -c`, where the kernel joins the stages: no copies in between, so
    // sh is a little faster. Each word is single-quoted (a `'` as `'\''`): sh takes it as it is.
    const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;
    const script = stages.map((stage) => stage.argv.map(quote).join(" ")).join(" | ");
    const shStart = performance.now();
    const sh = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
    const shSeconds = seconds(shStart), shOut = new TextDecoder().decode(sh.stdout).trim();
    if (!sh.success || shOut !== ours.output) return fail(`sh printed ${shOut}, code ${sh.code}`);
    say(`sh -c runs the same pipeline and prints ${shOut}`);
    say(`Deno pipeline: ${denoSeconds} s, sh -c: ${shSeconds} s`);
    // A middle stage that crashes while stage 1 would write forever: the run ends all the same
    // and names the stage and the signal. The failure is the demo's, so the run succeeds.
    const crash = { name: "sh -c 'kill -KILL $$'", argv: ["sh", "-c", "kill -KILL $$"] };
    const theirs = await runPipeline([numbers(0), crash, countLines]);
    if (!theirs.failure.startsWith("stage 2")) return fail(`the crash demo: ${theirs.failure}`);
    say(`  and fails, as under pipefail: ${theirs.failure}`);
    return 0;
  } catch (error) {
    // Our stdout was closed (`... | head -1`): stop quietly, as a Unix tool does. A program not
    // installed or not allowed (the message names the flag) is the user's to fix: one line.
    if (error instanceof Deno.errors.BrokenPipe) return 0;
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) {
      return fail(error.message);
    }
    throw error;
  }
}

function fail(message: string): number {
  console.error(`error: ${message}`);
  return 1;
}

// Stage 1: the numbers 1 to N (forever for 0), 10,000 lines per writeSync, one system call per
// 60 KiB rather than one per line. A broken pipe means the reader is gone: stop quietly.
function child(lines: number): void {
  try {
    for (let next = 1; lines === 0 || next <= lines;) {
      const last = lines === 0 ? next + 9_999 : Math.min(lines, next + 9_999);
      let batch = "";
      for (; next <= last; next++) batch += `${next}\n`;
      writeAll(Deno.stdout, encoder.encode(batch));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// The plumbing. Every lesson that needs one of these pieces carries the same text, so each can
// be copied alone (tests/plumbing_test.ts keeps the copies identical).
// ---------------------------------------------------------------------------------------------

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

// The command line. Stage 1 reads its count itself, without the slower `node:util`.
const USAGE = `usage: deno run --allow-run=deno,grep,wc,sh scripts/pipeline.ts [options]
  --lines N    numbers stage 1 writes (default 1000000; 0 writes forever, until Ctrl-C)
  --pattern P  what grep selects (default 7)
  --help       show this help`;

if (import.meta.main && Deno.args[0] === "--child") {
  child(Number(Deno.args[1]));
} else if (import.meta.main) {
  requireDeno();
  if (Deno.build.os === "windows") Deno.exit(fail("needs sh, grep, wc: use Linux or macOS"));
  const options = await readOptions(USAGE, { lines: 1_000_000, pattern: "7" });
  Deno.exit(await parent(options.lines, options.pattern));
}
