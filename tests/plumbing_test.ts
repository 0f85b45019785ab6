/**
 * The plumbing block is the same text in every lesson that needs it: anonymous_pipe.ts
 * introduces it, and any other lesson's copy of a piece (a function or constant of the same
 * name) must match it to the letter, JSDoc included, so that the copies cannot drift apart.
 */
import assert from "node:assert/strict";
import { repoRoot } from "./helpers.ts";

const REFERENCE = "anonymous_pipe.ts";

/** The pieces of the plumbing block, by the name each declares. */
const PIECES = [
  "readLines",
  "encoder",
  "writeAll",
  "denoExecutable",
  "requireDeno",
  "readOptions",
  "usageError",
  "exitWith",
];

const BANNER = /^\/\/ -{20,}\n\/\/ The plumbing\.[^]*?\n\/\/ -{20,}\n/m;

function lessons(): string[] {
  return [...Deno.readDirSync(`${repoRoot}scripts`)]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts"))
    .map((entry) => entry.name)
    .sort();
}

/**
 * The text of the top-level declaration of `name` in `source`, with the comment block right
 * above it, or null when the file does not declare it. A function ends at the first line that
 * is a lone `}`; a constant at its first line ending in `;`.
 */
function piece(source: string, name: string): string | null {
  const lines = source.split("\n");
  const start = lines.findIndex((line) =>
    new RegExp(`^(export )?(async )?(function\\*? |const )${name}\\b`).test(line)
  );
  if (start < 0) return null;
  let first = start;
  while (first > 0 && /^(\/\*\*| \*|\/\/)/.test(lines[first - 1])) first--;
  const isConst = lines[start].includes(`const ${name}`);
  let last = start;
  while (last < lines.length && !(isConst ? lines[last].endsWith(";") : lines[last] === "}")) {
    last++;
  }
  return lines.slice(first, last + 1).join("\n");
}

const reference = Deno.readTextFileSync(`${repoRoot}scripts/${REFERENCE}`);

Deno.test(`${REFERENCE} holds every piece of the plumbing, after its banner`, () => {
  const banner = reference.match(BANNER);
  assert.ok(banner, "no plumbing banner");
  for (const name of PIECES) {
    const text = piece(reference, name);
    assert.ok(text, `${name} is missing`);
    assert.ok(reference.indexOf(text) > banner.index!, `${name} stands before the banner`);
  }
});

for (const lesson of lessons().filter((name) => name !== REFERENCE)) {
  Deno.test(`${lesson}: its plumbing is the same text as ${REFERENCE}'s`, () => {
    const source = Deno.readTextFileSync(`${repoRoot}scripts/${lesson}`);
    const copied = PIECES.filter((name) => piece(source, name) !== null);
    if (copied.length > 0) {
      assert.equal(source.match(BANNER)?.[0], reference.match(BANNER)![0], "the banner");
    }
    for (const name of copied) {
      assert.equal(piece(source, name), piece(reference, name), `${lesson}: ${name}`);
    }
    // A lesson that starts a Deno child does it through denoExecutable(), and every lesson with
    // a command line checks the Deno version first.
    if (source.includes("Deno.execPath()")) {
      assert.ok(copied.includes("denoExecutable"), "Deno.execPath() outside denoExecutable()");
      assert.equal(source.split("Deno.execPath()").length, 2, "Deno.execPath() used elsewhere");
    }
    if (source.includes("import.meta.main")) {
      assert.ok(source.includes("requireDeno();"), "no requireDeno() call");
    }
  });
}
