#!/usr/bin/env node
// `npm test`: set up what is missing, lint the whole tree (`npm run lint` = `biome check .`, which
// also enforces core/src's import layering and no import cycles, see biome.json), then run every
// workspace's own test script in order (unit before integration) and finish with one plain
// summary line. The lint counts as a suite like the workspaces.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { repo, setup } from "./setup.mjs";

const WORKSPACES = ["core", "kernel", "lab-extension", "notebooks", "test"];

await setup();
const results = [];
{
  console.log("\n=== lint: npm run lint (biome check .) ===");
  const t0 = Date.now();
  const r = spawnSync("npm", ["run", "lint"], { cwd: repo, stdio: "inherit", env: process.env });
  results.push({ name: "lint (biome check .)", ok: r.status === 0, s: (Date.now() - t0) / 1000 });
}
for (const ws of WORKSPACES) {
  const pkg = JSON.parse(readFileSync(path.join(repo, ws, "package.json"), "utf8"));
  if (!pkg.scripts?.test) {
    console.log(`\n=== ${pkg.name}: no test script yet (nothing to run in ${ws}/) ===`);
    continue;
  }
  console.log(`\n=== ${pkg.name}: npm test ===`);
  const t0 = Date.now();
  const r = spawnSync("npm", ["test", "-w", pkg.name], {
    cwd: repo,
    stdio: "inherit",
    env: process.env,
  });
  results.push({ name: pkg.name, ok: r.status === 0, s: (Date.now() - t0) / 1000 });
}
console.log("\n=== summary ===");
for (const r of results) console.log(`${r.ok ? "PASS" : "FAIL"}  ${r.name}  (${r.s.toFixed(1)} s)`);
const failed = results.filter((r) => !r.ok).length;
console.log(`suites: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 && results.length > 0 ? 0 : 1);
