/**
 * The soak's worker (scripts/soak.mjs bundles it and runs one or more): the property suite's
 * seeds with many more commands. Prints one progress line per `--every` commands and one JSON
 * line per seed (`{"seed":...}`) that the runner sums up; a failure prints its report (seed and
 * the shrunk program as a ready-to-paste test) and writes it to
 * test-artifacts/soak/seed-N.failure.txt.
 *
 * Usage: node soak.mjs --seeds 1000,1001 --ops 1000000 [--every 100000] [--shrink-budget N]
 * (the shrinker's budget in commands, default 10,000,000: a failure deep in a long program
 * needs many long candidate runs).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { failureReport, runSeed } from "./program";
import { configForSeed, configName } from "./world";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

const seeds = arg("seeds", "1000")
  .split(",")
  .map((s) => Number(s));
const ops = Number(arg("ops", "1000000"));
const every = Number(arg("every", String(Math.max(1, Math.floor(ops / 10)))));
const shrinkBudget = Number(arg("shrink-budget", "10000000"));

for (const seed of seeds) {
  const t0 = Date.now();
  const name = configName(configForSeed(seed));
  console.log(`[soak] seed ${seed} (${name}): ${ops} commands`);
  const r = runSeed(seed, {
    ops,
    shrinkBudget,
    progressEvery: every,
    onFailure: (msg) => console.log(`[soak] seed ${seed} failed (shrinking next): ${msg}`),
    onProgress: (done) =>
      console.log(
        `[soak] seed ${seed}: ${done}/${ops} commands, ${((Date.now() - t0) / 1000).toFixed(0)} s`,
      ),
  });
  const seconds = (Date.now() - t0) / 1000;
  if (!r.ok) {
    // The whole report goes to a file; the console gets it too unless the program is long.
    const report = failureReport(r);
    const file = path.resolve("test-artifacts", "soak", `seed-${seed}.failure.txt`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `${report}\n`);
    if (r.shrunk.length <= 200) console.log(report);
    else console.log(`${report.split("\n").slice(0, 3).join("\n")}\n(the test: ${file})`);
  }
  console.log(
    JSON.stringify({
      seed,
      config: name,
      ok: r.ok,
      ops: r.ok ? r.stats.ops : r.generated,
      accesses: r.ok ? r.stats.accesses : undefined,
      seconds,
    }),
  );
}
