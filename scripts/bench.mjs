#!/usr/bin/env node
// `npm run bench`: set up, then every workspace's benchmarks (core simulator, kernel round trip, sweep pool).
// Figures are machine-dependent; they are printed, never asserted.
import { spawnSync } from "node:child_process";
import { repo, setup } from "./setup.mjs";

await setup();
let failed = 0;
for (const ws of ["@mmulab/core", "@mmulab/kernel", "@mmulab/sweep"]) {
  console.log(`\n=== ${ws}: npm run bench ===`);
  const r = spawnSync("npm", ["run", "bench", "-w", ws], {
    cwd: repo,
    stdio: "inherit",
    env: process.env,
  });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
