#!/usr/bin/env node
// A 200-point populate sweep on one worker thread, then on the default pool (one thread per
// core): both wall times and their ratio (issue 14's target: pool ≤ 0.6 × one worker). Printed,
// never asserted: the figures depend on the machine. Results go to a temporary folder, and
// `force` makes both runs compute every point.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expandGrid, poolSize, sweep } from "../dist/index.js";

const MiB = 2 ** 20;
// 4 × 5 × 2 × 5 = 200 points; 4 KiB backing at 1 GiB a vCPU is the largest (~0.4 s alone).
const grid = {
  vcpus: [1, 2, 3, 4],
  bytesPerVcpu: [256, 512, 768, 1024, 1280].map((m) => m * MiB),
  backing: ["4k", "thp"],
  seed: [1, 2, 3, 4, 5],
};
const points = expandGrid(grid).length;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mmulab-sweep-bench-"));

async function timed(workers) {
  const t0 = performance.now();
  const r = await sweep(grid, "populate", { dir, workers, force: true });
  const ms = performance.now() - t0;
  if (r.done !== points) throw new Error(`${r.failed.length} points failed: ${r.failed[0]?.error}`);
  return { ms, parquet: fs.readFileSync(r.parquet) };
}

try {
  const pool = poolSize(undefined);
  console.log(`sweep bench: ${points}-point populate sweep, os.availableParallelism() = ${pool}`);
  const one = await timed(1);
  console.log(`  1 worker:   ${(one.ms / 1000).toFixed(1)} s`);
  const many = await timed(undefined);
  console.log(`  ${pool} workers:  ${(many.ms / 1000).toFixed(1)} s`);
  console.log(`  ratio pool / one worker: ${(many.ms / one.ms).toFixed(2)} (target ≤ 0.60)`);
  console.log(`  same Parquet bytes: ${one.parquet.equals(many.parquet)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
