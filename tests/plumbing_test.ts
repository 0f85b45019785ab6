/**
 * The plumbing block is the same text in every lesson that needs it: anonymous_pipe.ts
 * introduces it, and any other lesson's copy of a piece (a function or constant of the same
 * name) must match it to the letter, JSDoc included, so that the copies cannot drift apart.
 * Pieces that only some lessons need (the FIFO ones) are held to the same rule: every top-level
 * declaration after the banner that two lessons share by name is the same text in both.
 */
import assert from "node:assert/strict";
import {
  allLessons,
  BANNER,
  headerRunFlags,
  lessons,
  repoRoot,
  runDeno,
  type RunResult,
} from "./helpers.ts";

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

Deno.test("every lesson has the plumbing banner", () => {
  for (const lesson of allLessons()) {
    const source = Deno.readTextFileSync(`${repoRoot}scripts/${lesson}`);
    assert.ok(BANNER.test(source), `${lesson}: not in the shape`);
  }
});

/**
 * The text of the top-level declaration of `name` in `source`, with the comment block right
 * above it, or null when the file does not declare it. A function ends at the first line that
 * is a lone `}`; a constant at its first line ending in `;`.
 */
function piece(source: string, name: string): string | null {
  const lines = source.split("\n");
  const start = lines.findIndex((line) =>
    new RegExp(`^(export )?(async )?(function\\*? |const |let )${name}\\b`).test(line)
  );
  if (start < 0) return null;
  let first = start;
  while (first > 0 && /^(\/\*\*| \*|\/\/)/.test(lines[first - 1])) first--;
  const isConst = !lines[start].includes("function");
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

/** The names declared at the top level after the plumbing banner. */
function plumbingNames(source: string): string[] {
  const banner = source.match(BANNER);
  if (!banner) return [];
  // The plumbing runs from the banner to the command line (`const USAGE`), which is the lesson's own.
  const after = source.slice(banner.index! + banner[0].length).split(/^const USAGE\b/m)[0];
  return [...after.matchAll(/^(?:export )?(?:async )?(?:function\*? |const |let )(\w+)/gm)]
    .map((match) => match[1]);
}

Deno.test("a plumbing piece that several lessons carry is the same text in each", () => {
  const firstSeen = new Map<string, { lesson: string; text: string }>();
  for (const lesson of [REFERENCE, ...lessons().filter((name) => name !== REFERENCE)]) {
    const source = Deno.readTextFileSync(`${repoRoot}scripts/${lesson}`);
    for (const name of plumbingNames(source)) {
      const text = piece(source, name)!;
      const first = firstSeen.get(name);
      if (!first) firstSeen.set(name, { lesson, text });
      else assert.equal(text, first.text, `${name}: ${lesson} differs from ${first.lesson}`);
    }
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
    const outsideTheHelper = source.replace(piece(source, "denoExecutable") ?? "", "");
    assert.ok(
      !outsideTheHelper.includes("Deno.execPath()"),
      "Deno.execPath() outside denoExecutable()",
    );
    if (source.includes("import.meta.main")) {
      assert.ok(source.includes("requireDeno();"), "no requireDeno() call");
    }
  });
}

// The shape every lesson has: the story first, and short enough to read in one sitting.
const MAX_LINES = 220;
const FIRST_SCREEN = 45; // lines after the header within which the story's first step appears

for (const lesson of lessons()) {
  Deno.test(`${lesson}: at most ${MAX_LINES} lines, header pragmas, story first`, () => {
    const source = Deno.readTextFileSync(`${repoRoot}scripts/${lesson}`);
    const lines = source.split("\n");
    assert.ok(lines.length - 1 <= MAX_LINES, `${lines.length - 1} lines`);
    for (const pragma of ["@title", "@difficulty", "@tags", "@run deno run ", "@module"]) {
      assert.ok(source.includes(` * ${pragma}`), `no ${pragma} in the header`);
    }
    const headerEnd = lines.findIndex((line) => line === " */");
    const firstStep = lines.findIndex((line) => /new Deno\.Command\(|Deno\.open\(/.test(line));
    if (firstStep >= 0) {
      assert.ok(
        firstStep - headerEnd <= FIRST_SCREEN,
        `the first Deno.Command or Deno.open is ${firstStep - headerEnd} lines after the header`,
      );
    }
  });
}

// The oldest Deno the lessons run on: each lesson checks it first, in one line. An older Deno
// is faked by a preload module that shows the lesson another `Deno.version`.
const MINIMUM_DENO = "2.8.3";

async function helpAsIf(version: string, lesson: string): Promise<RunResult> {
  const preload = await Deno.makeTempFile({ prefix: "fake_version_", suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      preload,
      `const real = Deno;
const version = { ...real.version, deno: ${JSON.stringify(version)} };
const get = (target: typeof Deno, key: string | symbol) =>
  key === "version" ? version : Reflect.get(target, key);
Object.defineProperty(globalThis, "Deno", { value: new Proxy(real, { get }) });
`,
    );
    return await runDeno([
      "run",
      "--preload",
      preload,
      ...headerRunFlags(lesson),
      `scripts/${lesson}`,
      "--help",
    ]);
  } finally {
    await Deno.remove(preload);
  }
}

for (const lesson of lessons()) {
  const source = Deno.readTextFileSync(`${repoRoot}scripts/${lesson}`);
  if (!source.includes("import.meta.main")) continue;
  Deno.test(`${lesson}: on a Deno older than ${MINIMUM_DENO}, one line and exit 1`, async () => {
    for (const old of ["2.8.2", "2.0.0", "1.46.3"]) {
      const result = await helpAsIf(old, lesson);
      assert.equal(result.code, 1, `${old}: ${result.stderr}`);
      assert.equal(result.stdout, "");
      assert.equal(
        result.stderr,
        `error: this lesson needs Deno ${MINIMUM_DENO} or newer, not ${old}\n`,
      );
    }
    for (const recent of [MINIMUM_DENO, "2.10.0", "3.0.0"]) {
      const result = await helpAsIf(recent, lesson);
      assert.equal(result.code, 0, `${recent}: ${result.stderr}`);
      assert.match(result.stdout, /^usage: /);
    }
  });
}

Deno.test(`the README states the same minimum Deno, ${MINIMUM_DENO}`, () => {
  const readme = Deno.readTextFileSync(`${repoRoot}README.md`);
  assert.match(readme, new RegExp(`Deno ${MINIMUM_DENO.replaceAll(".", "\\.")} or newer`));
});
