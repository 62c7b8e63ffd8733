/**
 * Issue 14's acceptance end to end: `sweep(grid, task, { queue })` on a real Redis with two
 * mmulab-worker processes (each in its own process group), one SIGKILLed mid-run; the Parquet it
 * writes is byte-identical to the same sweep run in this process with 1 worker and with every
 * core, and DuckDB's aggregate over it equals the same aggregate computed here from the points run
 * one after another with runPoint.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { expandGrid, runPoint, sweep, sweepResults } from "../src";
import { killAll, killGroup, startRedis, startWorker } from "./queue_harness";

afterEach(killAll);
const dir = mkdtempSync(path.join(os.tmpdir(), "mmulab-scale-out-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MIB = 2 ** 20;
// 2 × 5 × 5 = 50 points; populate takes ~20–130 ms each at these sizes.
const GRID = {
  vcpus: [1, 2],
  bytesPerVcpu: [256 * MIB, 384 * MIB, 512 * MIB, 768 * MIB, 1024 * MIB],
  seed: [1, 2, 3, 4, 5],
};

it("a 50-point sweep on two workers, one killed: each point once, the same Parquet as in-process, DuckDB's GROUP BY as computed here", async () => {
  const { url } = await startRedis();
  const victim = await startWorker(url);
  await startWorker(url);
  let killedAtDone = -1;
  const viaQueue = await sweep(GRID, "populate", {
    queue: url,
    dir: path.join(dir, "queue"),
    onProgress: (p) => {
      if (killedAtDone < 0 && p.done >= 10) {
        killGroup(victim.proc);
        killedAtDone = p.done;
      }
    },
  });
  expect(killedAtDone).toBeGreaterThanOrEqual(10);
  expect(await victim.exited).toBe("SIGKILL");
  expect(viaQueue.failed).toEqual([]);
  expect(viaQueue.done).toBe(50);
  // Every point exactly once in the results.
  const ids = viaQueue.records.map((r) => r.point_id);
  expect(new Set(ids).size).toBe(50);

  const oneWorker = await sweep(GRID, "populate", { workers: 1, dir: path.join(dir, "one") });
  const allCores = await sweep(GRID, "populate", { dir: path.join(dir, "all") });
  const bytes = (r: { parquet: string }) => readFileSync(r.parquet);
  expect(bytes(viaQueue).equals(bytes(oneWorker))).toBe(true);
  expect(bytes(viaQueue).equals(bytes(allCores))).toBe(true);

  // The aggregate from the points run here one after another.
  const want = new Map<number, { vcpus: number; n: number; faults: number; pages: number }>();
  for (const point of expandGrid(GRID)) {
    const rec = runPoint("populate", point);
    const v = point.vcpus as number;
    const a = want.get(v) ?? { vcpus: v, n: 0, faults: 0, pages: 0 };
    a.n += 1;
    a.faults += rec.pf_taken as number;
    a.pages += rec.pages_4k as number;
    want.set(v, a);
  }
  const db = await sweepResults(viaQueue);
  try {
    const got = await db.query(
      "SELECT vcpus, count(*) AS n, sum(pf_taken) AS faults, sum(pages_4k) AS pages FROM results GROUP BY vcpus ORDER BY vcpus",
    );
    expect(got).toEqual([...want.values()].sort((a, b) => a.vcpus - b.vcpus));
  } finally {
    db.close();
  }
}, 240_000);
