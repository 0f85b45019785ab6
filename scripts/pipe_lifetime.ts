/**
 * @title Where a pipe lives, and when it disappears
 * @difficulty intermediate
 * @tags cli
 * @run deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
 * @resource {https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html} Man page: /proc/pid/fd
 *
 * An anonymous pipe is a kernel object with no name: /proc/<pid>/fd shows each end as
 * `pipe:[inode]`, and once every process holding an end has closed it, no trace is left. A FIFO
 * has a name in the file system that outlives both processes until someone removes it. Proves
 * the article's claims 4 and 5. Linux only. Deno refuses to read /proc without -A, so the lesson
 * asks GNU `find` to read the links; it writes only in a temporary directory it makes and removes.
 *
 * The whole run prints:
 *
 * ```
 * $ deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts
 * Anonymous pipe: the child's stdout; the parent holds the read end.
 *   parent got: hello through the pipe
 *   while both run, pipe:[23843] has no path, only these ends:
 *     /proc/8577/fd/26 -> pipe:[23843] (parent)
 *     /proc/8584/fd/1 -> pipe:[23843] (child)
 *     /proc/8584/fd/19 -> pipe:[23843] (child)
 *   the child exited; the pipe lives on while the parent holds an end:
 *     /proc/8577/fd/26 -> pipe:[23843] (parent)
 *   the parent read EOF and closed its end; every process on the machine:
 *     no process holds it
 * FIFO: mkfifo made /tmp/pipe_lifetime_c6ca76b5cb45da02/lesson.fifo, inode 2146627.
 *   parent got: hello through the FIFO
 *   while both run, the ends point to the name:
 *     /proc/8577/fd/27 -> /tmp/pipe_lifetime_c6ca76b5cb45da02/lesson.fifo (parent)
 *     /proc/8609/fd/23 -> /tmp/pipe_lifetime_c6ca76b5cb45da02/lesson.fifo (child)
 *   both ends closed, the child exited; every process on the machine:
 *     no process holds it
 *   yet the name stays: isFifo true, inode 2146627
 *   until the lesson removes it (and its temporary directory).
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const usage =
  "usage: deno run --allow-run=deno,mkfifo,find --allow-read --allow-write scripts/pipe_lifetime.ts";
const children = new Set<Deno.ChildProcess>();
let tempDir: string | undefined;

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

/** Runs GNU find with `args` and returns its "path -> link" lines (it reads /proc for us). */
async function findLinks(args: string[]): Promise<string[]> {
  const { stdout } = await new Deno.Command("find", {
    args: [...args, "-printf", "%p -> %l\n"],
    stdout: "piped",
    stderr: "null", // processes we may not inspect, or that exit while find looks
  }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((line) => line);
}

/** What a /proc/<pid>/fd/<n> link points to: `pipe:[inode]`, a file's path... */
async function linkOf(fdPath: string): Promise<string> {
  const [line] = await findLinks([fdPath, "-maxdepth", "0"]);
  return line?.split(" -> ")[1] ?? "(nothing: not open)";
}

/**
 * The open file descriptors whose /proc link reads `target`, as "/proc/<pid>/fd/<n> -> target"
 * lines: in the processes `pids`, or in every process we may inspect when none are given.
 */
export function holders(
  target: string,
  pids: number[] = [],
): Promise<string[]> {
  const where = pids.length > 0
    ? [
      ...pids.map((pid) => `/proc/${pid}/fd`),
      "-mindepth",
      "1",
      "-maxdepth",
      "1",
    ]
    : [
      "/proc",
      "-mindepth",
      "3",
      "-maxdepth",
      "3",
      "-path",
      "/proc/[0-9]*/fd/*",
    ];
  const pattern = target.replace(/[[\]*?\\]/g, "\\$&"); // a find pattern: escape [ ] * ? \
  return findLinks([...where, "-lname", pattern]);
}

/** Runs this script as a child in `role`, given only `permissions`. */
function spawnChild(role: string, permissions: string[], ...args: string[]) {
  const child = new Deno.Command(denoExecutable(), {
    args: [
      "run",
      ...permissions,
      import.meta.filename!,
      "--role",
      role,
      ...args,
    ],
    stdin: "piped",
    stdout: args.length > 0 ? "null" : "piped", // the FIFO writer writes to its FIFO only
    stderr: "inherit",
  }).spawn();
  children.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

// Both children write a line, then keep their end open until their stdin reaches EOF: the parent
// decides when they exit, so it can look at /proc while the pipe is in use, with no sleeps.
async function childWrites(fifo: string | undefined): Promise<void> {
  const out = fifo ? await Deno.open(fifo, { write: true }) : Deno.stdout;
  const kind = fifo ? "FIFO" : "pipe";
  await out.write(new TextEncoder().encode(`hello through the ${kind}\n`));
  await new Response(Deno.stdin.readable).arrayBuffer();
  if (fifo) out.close();
}

/** Prints each holder line, naming the process it belongs to. */
function show(lines: string[], childPid: number): void {
  if (lines.length === 0) console.log("    no process holds it");
  for (const line of lines) {
    const who = line.startsWith(`/proc/${childPid}/`) ? "child" : "parent";
    console.log(`    ${line} (${who})`);
  }
}

/** Reads chunks with `read` until the text holds a newline (`untilEof`: until EOF). */
async function readText(
  read: () => Promise<Uint8Array | null>,
  untilEof = false,
): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  while (untilEof || !text.includes("\n")) {
    const bytes = await read();
    if (bytes === null) break;
    text += decoder.decode(bytes, { stream: true });
  }
  return text;
}

async function anonymousPipe(): Promise<void> {
  console.log(
    "Anonymous pipe: the child's stdout; the parent holds the read end.",
  );
  const child = spawnChild("pipe-writer", []);
  const reader = child.stdout.getReader();
  const readChunk = async () => (await reader.read()).value ?? null;
  // The child's line proves it is running and holds the write end: now look at /proc.
  console.log(`  parent got: ${(await readText(readChunk)).trim()}`);
  const pipe = await linkOf(`/proc/${child.pid}/fd/1`);
  // Expect two child lines: Deno keeps its own duplicate of the stdout it was given.
  console.log(`  while both run, ${pipe} has no path, only these ends:`);
  show(await holders(pipe, [Deno.pid, child.pid]), child.pid);
  // Closing the child's stdin lets it exit; its write end closes with it.
  await child.stdin.close();
  await child.status;
  console.log(
    `  the child exited; the pipe lives on while the parent holds an end:`,
  );
  show(await holders(pipe), child.pid);
  await readText(readChunk, true); // EOF: no write end is left, and Deno closes the read end
  console.log(
    `  the parent read EOF and closed its end; every process on the machine:`,
  );
  show(await holders(pipe), child.pid);
}

async function namedFifo(): Promise<void> {
  tempDir = await Deno.makeTempDir({ prefix: "pipe_lifetime_" });
  const fifo = `${tempDir}/lesson.fifo`;
  // Deno has no mkfifo call, so run the program (mode 600: only we may open it).
  const made = await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] })
    .output();
  if (!made.success) throw new Error(`mkfifo ${fifo} failed`);
  const { ino } = await Deno.lstat(fifo);
  console.log(`FIFO: mkfifo made ${fifo}, inode ${ino}.`);
  // Opening a FIFO to read waits for a writer, so start the open, then start the writer, which
  // finds the FIFO by its name and needs only the right to write to it.
  const opening = Deno.open(fifo, { read: true });
  const child = spawnChild(
    "fifo-writer",
    [`--allow-write=${fifo}`],
    "--fifo",
    fifo,
  );
  const file = await opening;
  const readChunk = async () => {
    const buffer = new Uint8Array(1024);
    const count = await file.read(buffer);
    return count === null ? null : buffer.subarray(0, count);
  };
  console.log(`  parent got: ${(await readText(readChunk)).trim()}`);
  console.log("  while both run, the ends point to the name:");
  show(await holders(fifo, [Deno.pid, child.pid]), child.pid);
  await child.stdin.close();
  await child.status;
  await readText(readChunk, true);
  file.close();
  const after = await Deno.lstat(fifo);
  console.log(
    `  both ends closed, the child exited; every process on the machine:`,
  );
  show(await holders(fifo), child.pid);
  console.log(
    `  yet the name stays: isFifo ${after.isFifo}, inode ${after.ino}`,
  );
  await Deno.remove(tempDir, { recursive: true });
  tempDir = undefined;
  console.log("  until the lesson removes it (and its temporary directory).");
}

/** Kills the children this lesson started and removes its temporary directory. */
function cleanUp(): void {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* it has exited already */ }
  }
  if (tempDir) Deno.removeSync(tempDir, { recursive: true });
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      options: { role: { type: "string" }, fifo: { type: "string" } },
      strict: true,
    }).values;
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n${usage}`);
    return 2;
  }
  try {
    if (values.role) {
      await childWrites(values.fifo);
      return 0;
    }
    if (Deno.build.os !== "linux") {
      console.error(
        "error: this lesson reads Linux's /proc; it runs on Linux only",
      );
      return 1;
    }
    await anonymousPipe();
    await namedFifo();
    return 0;
  } catch (error) {
    // A child whose parent went away meets a closed pipe: an ending, not a bug.
    if (values.role && error instanceof Deno.errors.BrokenPipe) return 1;
    if (error instanceof Deno.errors.NotCapable) {
      console.error(
        `error: ${(error as Error).message.split(",")[0]}; run it as the header shows`,
      );
    } else console.error(`error: ${(error as Error).message}`);
    return 1;
  } finally {
    cleanUp();
  }
}

if (import.meta.main) {
  // Ctrl-C or SIGTERM: clean up what this lesson made, then exit 130 / 143.
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, () => {
      cleanUp();
      Deno.exit(code);
    });
  }
  Deno.exit(await main());
}
