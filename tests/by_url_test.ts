/**
 * Every lesson runs from a URL, the way Deno by Example is used: the repository is served over
 * http on 127.0.0.1, and each lesson's "The whole run prints:" command is run with the URL in
 * place of the path. The lesson must start its child from `import.meta.url` (a remote module has
 * no `import.meta.filename`) and print what its header shows. The lessons' own tests compare the
 * output exactly; here numbers, temporary paths and column padding are masked, since rates,
 * pids and times differ from run to run.
 */
import assert from "node:assert/strict";
import { lessons, repoRoot, runDeno, wholeRunBlock } from "./helpers.ts";

/** Serves the repository's files on 127.0.0.1 (a free port) as TypeScript modules. */
function serveRepository(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    if (path.includes("..")) return new Response("no", { status: 403 });
    try {
      const body = await Deno.readFile(`${repoRoot}${path.slice(1)}`);
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

const mask = (text: string) =>
  text.replace(/\/tmp\/[^\s/"]+/g, "<tmp>").replace(/\d+(\.\d+)?/g, "N").replace(/[ \t]+/g, " ");

Deno.test("every lesson, run by URL from a server, prints its whole-run block", async (t) => {
  await using server = serveRepository();
  const base = `http://127.0.0.1:${server.addr.port}/`;
  // A cache of its own, so the downloads neither use nor fill the user's.
  const cache = await Deno.makeTempDir({ prefix: "by_url_cache_" });
  try {
    for (const lesson of lessons()) {
      await t.step(lesson, async () => {
        const block = wholeRunBlock(lesson);
        const args = block.denoArgs.map((word) =>
          word === `scripts/${lesson}` ? `${base}scripts/${lesson}` : word
        );
        assert.ok(args.includes(`${base}scripts/${lesson}`), "the block runs the lesson");
        const result = await runDeno(args, { env: { DENO_DIR: cache }, timeoutMs: 60_000 });
        const stderr = result.stderr.split("\n").filter((line) => !line.startsWith("Download "))
          .join("\n");
        assert.equal(result.code, 0, stderr);
        assert.equal(mask(result.stdout), mask(block.expected));
      });
    }
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
