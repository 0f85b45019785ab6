/**
 * Tests of the bench (tests/benchmarks.ts) and its peers (tests/peers.ts). No test asserts a
 * speed: they check that every peer program runs, checks what it receives and prints a rate, and
 * that a short bench run measures every row whose program is there.
 */
import assert from "node:assert/strict";
import { interpreters } from "./benchmarks.ts";
import * as peers from "./peers.ts";
import { runDeno, spawnWithDeadline } from "./helpers.ts";

const BENCH = ["run", "--allow-run", "--allow-read", "--allow-write", "tests/benchmarks.ts"];
const found = await interpreters();

const programs: Array<[string, "python" | "node"]> = [
  ["PY_PIPE_MESSAGES", "python"],
  ["PY_MP_MESSAGES", "python"],
  ["NODE_NDJSON_MESSAGES", "node"],
  ["NODE_IPC_MESSAGES", "node"],
  ["PY_MP_ROUND_TRIPS", "python"],
  ["PY_PIPE_ROUND_TRIPS", "python"],
  ["NODE_IPC_ROUND_TRIPS", "node"],
  ["NODE_NDJSON_ROUND_TRIPS", "node"],
];

for (const [name, language] of programs) {
  const interpreter = found[language];
  Deno.test({
    name: `peer ${name}: runs 500 messages, checks them, prints a rate`,
    ignore: interpreter === undefined, // not installed here
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "bench-peer-" });
      try {
        const file = `${dir}/peer.${language === "python" ? "py" : "js"}`;
        await Deno.writeTextFile(file, (peers as Record<string, string>)[name]);
        const args = language === "python" ? [file, "500"] : [file, "parent", "500"];
        await using child = spawnWithDeadline(interpreter!, {
          args,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        });
        const output = await child.output();
        const stderr = new TextDecoder().decode(output.stderr);
        assert.equal(output.code, 0, stderr);
        assert.match(new TextDecoder().decode(output.stdout), /^[1-9]\d*\n$/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test("bench: --help names --quick; a usage mistake is one line and exit code 2", async () => {
  const help = await runDeno([...BENCH, "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--quick/);
  const wrong = await runDeno([...BENCH, "--rounds", "0"]);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /^error: --rounds takes a whole number >= 1 \(see --help\)\n$/);
});

Deno.test("bench: a --quick round measures every row whose program is there", async () => {
  const result = await runDeno(
    [...BENCH, "--quick", "--rounds", "1", "--only", "unpinned", "--no-write"],
    { timeoutMs: 240_000 },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.doesNotMatch(result.stdout, /failed:/);
  assert.match(result.stdout, /### Targets\n\n\| target /);
  // The lessons the bench runs are all there, so none of their rows may say "not present".
  for (const lesson of ["pipe_speed.ts", "pipe_batching.ts", "pipe_duplex.ts", "anonymous_pipe"]) {
    const rows = result.stdout.split("\n").filter((line) => line.includes(`**Deno**: ${lesson}`));
    assert.ok(rows.length > 0, `no row for ${lesson}`);
    for (const row of rows) assert.doesNotMatch(row, /not present/, row);
  }
  for (const [peer, language] of [["Python", "python"], ["Node", "node"]] as const) {
    if (found[language] === undefined) continue;
    const rows = result.stdout.split("\n").filter((line) => line.includes(`peer: ${peer}`));
    assert.ok(rows.length > 0 && rows.every((row) => !row.includes("not installed")), peer);
  }
});
