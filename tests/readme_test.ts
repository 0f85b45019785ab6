/**
 * The README's map of the article's claims stays true: every lesson line it links to speaks of
 * that claim, and every test it names exists in the test file it names.
 */
import assert from "node:assert/strict";
import { allLessons, headerRunFlags, repoRoot } from "./helpers.ts";

const readme = Deno.readTextFileSync(`${repoRoot}README.md`);
const claimRows = readme.split("\n").filter((line) => /^\| [1-6] \|/.test(line));

Deno.test("the README maps each of the article's six claims", () => {
  assert.deepEqual(claimRows.map((row) => row.split("|")[1].trim()), [
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
  ]);
});

for (const row of claimRows) {
  const claim = row.split("|")[1].trim();
  Deno.test(`claim ${claim}: the lesson lines it links speak of it, the test it names exists`, () => {
    const links = [...row.matchAll(/\]\((scripts\/\w+\.ts)#L(\d+)\)/g)];
    assert.ok(links.length > 0, "no lesson line linked");
    for (const [, path, line] of links) {
      const text = Deno.readTextFileSync(`${repoRoot}${path}`).split("\n")[Number(line) - 1];
      assert.match(text, /claims? [\d ,and-]+/, `${path}:${line}`);
      const numbers = text.match(/claims? ([\d ,and-]+)/)![1];
      const named = numbers.includes("-")
        ? (() => {
          const [from, to] = numbers.split("-").map(Number);
          return Array.from({ length: to - from + 1 }, (_, i) => `${from + i}`);
        })()
        : numbers.match(/\d/g)!;
      assert.ok(named.includes(claim), `${path}:${line} names claims ${numbers}`);
    }
    const test = row.match(/(tests\/\w+\.ts): "([^"]+)"/);
    assert.ok(test, "no test named");
    const source = Deno.readTextFileSync(`${repoRoot}${test[1]}`);
    assert.ok(source.includes(`"${test[2]}"`), `${test[1]} has no test "${test[2]}"`);
  });
}

// `deno task demo` is the tour the README opens with: every lesson, run with its header's flags.
const demo: string = JSON.parse(Deno.readTextFileSync(`${repoRoot}deno.json`)).tasks.demo.command;

for (const lesson of allLessons()) {
  Deno.test(`${lesson}: the demo tours it with its header's flags, the README lists it`, () => {
    const runs = demo.split("&&").map((step) => step.trim())
      .filter((step) => step.startsWith("deno run ") && step.includes(` scripts/${lesson}`));
    assert.ok(runs.length > 0, "not in deno.json's demo task");
    const flags = headerRunFlags(lesson).join(" ");
    for (const run of runs) {
      assert.ok(run.startsWith(`deno run ${flags} scripts/${lesson}`.replace("  ", " ")), run);
    }
    assert.ok(readme.includes(`| [${lesson}](scripts/${lesson})`), "no row in the README's table");
  });
}
