/**
 * End-to-end tests of scripts/pipe_select.ts, run as a user runs it, synchronized on events.
 */
import assert from "node:assert/strict";
import { type ChildLine, MergedLines } from "../scripts/pipe_select.ts";
import { assertHelp, assertUsageError, runDeno, runScript, wholeRunBlock } from "./helpers.ts";

const NAME = "pipe_select.ts";

Deno.test("the whole run prints what the header shows, and leaves no child", async () => {
  const block = wholeRunBlock(NAME);
  const result = await runDeno(block.denoArgs, { timeoutMs: 30_000 });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.equal(result.stdout, block.expected);
});

Deno.test("MergedLines: a stream that never ends does not hold up another's lines and EOF", async () => {
  const encoder = new TextEncoder();
  const quiet = new ReadableStream<Uint8Array>({
    start: (c) => c.enqueue(encoder.encode("first\n")),
  });
  const fast = ReadableStream.from(["a\nb", "\nc\n"].map((text) => encoder.encode(text)));
  const merged = new MergedLines();
  merged.add(1, quiet); // never closes
  merged.add(2, fast);
  const seen: ChildLine[] = [];
  for await (const event of merged) {
    seen.push(event);
    if (event.child === 2 && event.line === null) break;
  }
  assert.deepEqual(seen.filter((e) => e.child === 2).map((e) => e.line), ["a", "b", "c", null]);
  assert.deepEqual(seen.filter((e) => e.child === 1).map((e) => e.line), ["first"]);
});

Deno.test("| head -1: the parent stops quietly (exit 0, nothing on stderr)", async () => {
  const result = await runDeno([
    "eval",
    `
    const p = new Deno.Command(Deno.execPath(), { args: ["run", "--allow-run=deno", "scripts/pipe_select.ts"], stdout: "piped", stderr: "piped", signal: AbortSignal.timeout(20_000) }).spawn();
    const r = p.stdout.getReader(); await r.read(); await r.cancel();
    const s = await p.status; console.log(s.code, JSON.stringify(new TextDecoder().decode((await new Response(p.stderr).arrayBuffer()))));
  `,
  ], { timeoutMs: 30_000 });
  assert.equal(result.stdout.trim(), '0 ""', result.stderr);
});

Deno.test("usage error for an unknown argument: one line, exit 2", async () => {
  assertUsageError(await runScript(NAME, ["--lines", "3"]));
});

Deno.test("--help prints the usage and exits 0", async () => {
  await assertHelp(NAME, /two children/);
});
