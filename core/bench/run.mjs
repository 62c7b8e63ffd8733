#!/usr/bin/env node
// Runs every core/bench/*.bench.mjs in sequence, each in its own process (so RSS figures are
// per benchmark). Build first (`npm run bench -w @mmulab/core` does).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.mjs"))
  .sort();
let failed = 0;
for (const f of files) {
  console.log(`\n== ${f}`);
  const r = spawnSync(process.execPath, ["--expose-gc", join(here, f)], { stdio: "inherit" });
  if (r.status !== 0) {
    console.log(`!! ${f} exited with ${r.status}`);
    failed++;
  }
}
process.exit(failed === 0 ? 0 : 1);
