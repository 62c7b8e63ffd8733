#!/usr/bin/env node
// `npm run soak`: the MMU property suite (test/property/) with 20 seeds × 1,000,000 commands.
// The worker (test/property/soak-main.ts) is bundled once with esbuild into test-artifacts/soak/
// and run in `--jobs` processes (default 1; the seeds are dealt round-robin), each printing
// progress lines; at the end one summary: commands, seeds, violations and wall time. Exits 1 on
// any violation (each prints its seed and the shrunk program as a ready-to-paste test).
//
// Options: --seeds N (count, from --first, default 20) or --seeds 3,7 (a list); --first 1000;
// --ops 1000000; --jobs 1; --every (progress interval, default ops / 10); --shrink-budget
// (commands the shrinker may run for a failure, default 10,000,000).
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const core = path.resolve(here, "..");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const first = Number(arg("first", "1000"));
const seedsArg = arg("seeds", "20");
const seeds = seedsArg.includes(",")
  ? seedsArg
      .split(",")
      .filter((x) => x !== "")
      .map(Number)
  : Array.from({ length: Number(seedsArg) }, (_, i) => first + i);
const ops = Number(arg("ops", "1000000"));
const jobs = Math.max(1, Math.min(seeds.length, Number(arg("jobs", "1"))));
const every = arg("every", String(Math.max(1, Math.floor(ops / 10))));
const shrinkBudget = Number(arg("shrink-budget", "10000000"));
for (const [k, v] of [
  ["ops", ops],
  ["jobs", jobs],
  ["every", Number(every)],
  ["shrink-budget", shrinkBudget + 1],
]) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`soak: --${k} must be a positive integer (got ${v})`);
    process.exit(2);
  }
}
if (seeds.some((s) => !Number.isInteger(s) || s < 0)) {
  console.error(
    `soak: --seeds must be a count or a list of non-negative integers (got ${seedsArg})`,
  );
  process.exit(2);
}

const outDir = path.join(core, "test-artifacts", "soak");
mkdirSync(outDir, { recursive: true });
const bundle = path.join(outDir, "soak-main.cjs");
await build({
  entryPoints: [path.join(core, "test", "property", "soak-main.ts")],
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  // Constants inlined across modules, as the dist build does (scripts/build.mjs).
  minifySyntax: true,
  outfile: bundle,
  logLevel: "warning",
});

const t0 = Date.now();
console.log(
  `[soak] ${seeds.length} seeds × ${ops} commands, ${jobs} job${jobs > 1 ? "s" : ""} (seeds ${seeds.join(", ")})`,
);
const results = [];
await Promise.all(
  Array.from({ length: jobs }, (_, j) => {
    const mine = seeds.filter((_, i) => i % jobs === j);
    return new Promise((resolve) => {
      const child = spawn(
        process.execPath,
        [
          "--max-old-space-size=8192",
          bundle,
          "--seeds",
          mine.join(","),
          "--ops",
          String(ops),
          "--every",
          every,
          "--shrink-budget",
          String(shrinkBudget),
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      createInterface({ input: child.stdout }).on("line", (line) => {
        if (line.startsWith('{"seed"')) results.push(JSON.parse(line));
        else console.log(line);
      });
      child.on("close", (code) => {
        if (code !== 0) console.log(`[soak] job ${j} exited with code ${code}`);
        resolve();
      });
    });
  }),
);
const seconds = (Date.now() - t0) / 1000;
const violations = results.filter((r) => !r.ok).length;
const missing = seeds.length - results.length;
const total = results.reduce((a, r) => a + (r.ok ? r.ops : 0), 0);
console.log("\n=== soak summary ===");
for (const r of results.sort((a, b) => a.seed - b.seed))
  console.log(
    `${r.ok ? "ok  " : "FAIL"}  seed ${r.seed}  ${r.ops} commands  ${r.seconds.toFixed(0)} s  ${r.config}`,
  );
console.log(
  `commands: ${total}; seeds: ${results.length} of ${seeds.length}; violations: ${violations}${missing > 0 ? `; seeds that did not finish: ${missing}` : ""}; wall time: ${seconds.toFixed(0)} s`,
);
process.exit(violations === 0 && missing === 0 ? 0 : 1);
