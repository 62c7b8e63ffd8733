#!/usr/bin/env node
// `npm test`: set up what is missing, lint the whole tree (`npm run lint` = `biome check .`, which
// also enforces core/src's import layering and no import cycles, see biome.json), then run every
// workspace's own test script in order (unit before integration) and finish with one plain
// summary line. The lint counts as a suite like the workspaces.
import { spawn, spawnSync } from "node:child_process";
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

/**
 * Runs `npm ...args` with its output passed through as it comes and also kept, so that a failed
 * suite's failures can be repeated beside the summary (CI logs are often read from the end).
 */
function run(args) {
  return new Promise((resolve) => {
    const child = spawn("npm", args, {
      cwd: repo,
      env: process.env,
      stdio: ["inherit", "pipe", "pipe"],
    });
    const chunks = [];
    child.stdout.on("data", (b) => {
      process.stdout.write(b);
      chunks.push(b);
    });
    child.stderr.on("data", (b) => {
      process.stderr.write(b);
      chunks.push(b);
    });
    child.on("close", (code) =>
      resolve({ ok: code === 0, out: Buffer.concat(chunks).toString("utf8") }),
    );
  });
}

/**
 * The part of a failed suite's output that says what failed: vitest's "Failed Tests" section (or
 * its failed-file lines), else the output's last lines. At most `max` lines.
 */
function failureDigest(out, max = 150) {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes are control characters.
  const lines = out.replace(/\x1b\[[0-9;]*m/g, "").split("\n");
  const start = lines.findIndex((l) => /Failed Tests \d+/.test(l) || /Failed Suites \d+/.test(l));
  let picked = lines.slice(-60);
  if (start >= 0) {
    const end = lines.findIndex((l, i) => i > start && /^\s*Test Files\s/.test(l));
    picked = lines.slice(start, end < 0 ? undefined : end);
  }
  const failedFiles = lines.filter((l) => /^\s*(FAIL|❯|×|✗)\s/.test(l));
  const all = [...new Set(failedFiles), "", ...picked];
  return all.length > max
    ? [...all.slice(0, max), `... (${all.length - max} more lines above in the log)`]
    : all;
}

await setup();
const results = [];
// After setup (a fresh clone's first build writes only ignored files): what the tests may not change.
const statusBefore = gitStatus();
{
  console.log("\n=== lint: npm run lint (biome check .) ===");
  const t0 = Date.now();
  const r = await run(["run", "lint"]);
  results.push({ name: "lint (biome check .)", ok: r.ok, out: r.out, s: (Date.now() - t0) / 1000 });
}
for (const ws of WORKSPACES) {
  const pkg = JSON.parse(readFileSync(path.join(repo, ws, "package.json"), "utf8"));
  if (!pkg.scripts?.test) {
    console.log(`\n=== ${pkg.name}: no test script yet (nothing to run in ${ws}/) ===`);
    continue;
  }
  console.log(`\n=== ${pkg.name}: npm test ===`);
  const t0 = Date.now();
  const r = await run(["test", "-w", pkg.name]);
  results.push({ name: pkg.name, ok: r.ok, out: r.out, s: (Date.now() - t0) / 1000 });
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
for (const r of results.filter((x) => !x.ok && x.out !== undefined)) {
  console.log(`\n=== what failed in ${r.name} (repeated from above) ===`);
  console.log(failureDigest(r.out).join("\n"));
}
console.log("\n=== summary ===");
for (const r of results) console.log(`${r.ok ? "PASS" : "FAIL"}  ${r.name}  (${r.s.toFixed(1)} s)`);
const failed = results.filter((r) => !r.ok).length;
console.log(`suites: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 && results.length > 0 ? 0 : 1);
