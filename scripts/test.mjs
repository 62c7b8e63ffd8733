#!/usr/bin/env node
// `npm test`: set up what is missing, lint the whole tree (`npm run lint` = `biome check .`, which
// also enforces core/src's import layering and no import cycles, see biome.json), then run every
// workspace's own test script in order (unit before integration) and finish with one plain
// summary line. The lint counts as a suite like the workspaces.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { repo, setup } from "./setup.mjs";

const WORKSPACES = ["core", "kernel", "sweep", "lab-extension", "notebooks", "test"];

/** `git status` of the checkout, or undefined outside a git checkout (e.g. an npm tarball). */
function gitStatus() {
  const r = spawnSync("git", ["status", "--porcelain", "--untracked-files=all"], {
    cwd: repo,
    encoding: "utf8",
  });
  return r.status === 0 ? r.stdout : undefined;
}

await setup();
const results = [];
// After setup (a fresh clone's first build writes only ignored files): what the tests may not change.
const statusBefore = gitStatus();
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
{
  // Tests, the lab and the kernel write only ignored files (test-artifacts/, workspace/, builds).
  const after = gitStatus();
  if (after === undefined || statusBefore === undefined) {
    console.log("\n=== repository unchanged: not checked (not a git checkout) ===");
  } else {
    const changed = after !== statusBefore;
    if (changed)
      console.log(
        `\n=== git status changed during the tests ===\nbefore:\n${statusBefore}\nafter:\n${after}`,
      );
    results.push({ name: "repository unchanged by the tests (git status)", ok: !changed, s: 0 });
  }
}
console.log("\n=== summary ===");
for (const r of results) console.log(`${r.ok ? "PASS" : "FAIL"}  ${r.name}  (${r.s.toFixed(1)} s)`);
const failed = results.filter((r) => !r.ok).length;
console.log(`suites: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 && results.length > 0 ? 0 : 1);
