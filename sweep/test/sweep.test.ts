/**
 * sweep(): storage, resume, determinism across worker counts and orders, bad input. Expected
 * records come from running the same points one by one in this thread with runPoint, never from
 * what the sweep under test produced. The pool's threads load dist/: build before testing.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { InvalidArgumentError } from "@mmulab/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  expandGrid,
  type Grid,
  InterruptedError,
  type PointJob,
  pointId,
  poolRunner,
  type Runner,
  runPoint,
  type SweepProgress,
  sweep,
  sweepResults,
} from "../src";

const FIXTURES = path.join(__dirname, "fixtures", "tasks.cjs");
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mmulab-sweep-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** 12 small populate points (4 KiB backing only: every point is valid). */
const GRID: Grid = { vcpus: [1, 2, 3], bytesPerVcpu: [2 ** 20, 2 ** 21], seed: [1, 2] };

/** The same points run one by one here, in point-id order: what every sweep must equal. */
function sequentialRows(grid: Grid) {
  return expandGrid(grid)
    .map((p) => ({ point_id: pointId(p), ...p, ...runPoint("populate", p) }))
    .sort((a, b) => (a.point_id < b.point_id ? -1 : 1));
}

/** A runner in this thread that runs the jobs last to first: another completion order. */
const reverseRunner: Runner = async (jobs, task, { onStart, onDone }) => {
  for (const j of [...jobs].reverse()) {
    onStart(j.id);
    onDone({ id: j.id, ok: true, record: runPoint(task, j.point) });
  }
};

describe("sweep", () => {
  it("gives the records of sequential runPoint calls, in point-id order, with every file", async () => {
    const r = await sweep(GRID, "populate", { dir, workers: 2 });
    expect(r.points).toBe(12);
    expect(r.done).toBe(12);
    expect(r.failed).toEqual([]);
    expect(r.skipped).toBe(0);
    expect(r.records).toEqual(sequentialRows(GRID));
    expect(r.dir).toBe(path.join(dir, r.id));
    expect(fs.readdirSync(path.join(r.dir, "points")).sort()).toEqual(
      r.records.map((x) => `${x.point_id}.json`),
    );
    const manifest = JSON.parse(fs.readFileSync(path.join(r.dir, "manifest.json"), "utf8"));
    expect(manifest.id).toBe(r.id);
    expect(manifest.task).toBe("populate");
    expect(manifest.counts).toEqual({ points: 12, done: 12, failed: 0, skipped: 0 });
    expect(manifest.files.results).toBe("results.parquet");
    const bundle = r[Symbol.for("Jupyter.display") as never] as () => Record<string, string>;
    const shown = bundle();
    expect(shown["text/plain"]).toContain(`sweep ${r.id} (populate): 12 points, 12 done`);
    expect(shown["text/html"]).toContain("<table");
    // The first ten rows, each once.
    for (const row of r.records.slice(0, 10)) expect(shown["text/plain"]).toContain(row.point_id);
    expect(shown["text/plain"]).not.toContain(r.records[10]!.point_id);
  });

  it("writes byte-identical Parquet with 1 worker, 2 workers, reversed order, and after a resume", async () => {
    const one = await sweep(GRID, "populate", { dir: path.join(dir, "a"), workers: 1 });
    const two = await sweep(GRID, "populate", { dir: path.join(dir, "b"), workers: 2 });
    const rev = await sweep(GRID, "populate", { dir: path.join(dir, "c"), runner: reverseRunner });
    // A partial run: interrupted once 5 points are stored, then resumed.
    const ac = new AbortController();
    const partial = sweep(GRID, "populate", {
      dir: path.join(dir, "d"),
      workers: 1,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.done >= 5) ac.abort();
      },
    });
    await expect(partial).rejects.toBeInstanceOf(InterruptedError);
    const stored = fs.readdirSync(path.join(dir, "d", one.id, "points")).length;
    expect(stored).toBeGreaterThanOrEqual(5);
    expect(stored).toBeLessThan(12);
    const resumed = await sweep(GRID, "populate", { dir: path.join(dir, "d"), workers: 2 });
    expect(resumed.skipped).toBe(stored);
    const bytes = [one, two, rev, resumed].map((r) => fs.readFileSync(r.parquet!));
    expect(new Set([one.id, two.id, rev.id, resumed.id]).size).toBe(1);
    for (const b of bytes.slice(1)) expect(b.equals(bytes[0]!)).toBe(true);
    expect(resumed.records).toEqual(one.records);
  });

  it("skips stored points on a re-run and recomputes all with force", async () => {
    const runs: string[][] = [];
    const counting: Runner = async (jobs, task, hooks) => {
      runs.push(jobs.map((j) => j.id));
      await reverseRunner(jobs, task, hooks);
    };
    const first = await sweep(GRID, "populate", { dir, runner: counting });
    const again = await sweep(GRID, "populate", { dir, runner: counting });
    expect(again.skipped).toBe(12);
    expect(again.records).toEqual(first.records);
    expect(runs).toHaveLength(1); // nothing left to run: the runner is not called
    const forced = await sweep(GRID, "populate", { dir, runner: counting, force: true });
    expect(forced.skipped).toBe(0);
    expect(runs[1]).toHaveLength(12);
  });

  it("records a task that throws for one point; the others finish; the failure is re-run next time", async () => {
    const grid = { x: [1, 2, 3, 4] };
    const task = { module: FIXTURES, export: "powers" };
    const r = await sweep(grid, task, { dir, workers: 2 });
    const bad = pointId({ x: 3 });
    expect(r.failed).toEqual([
      { id: bad, point: { x: 3 }, error: "RangeError: x = 3 is not allowed here" },
    ]);
    expect(r.done).toBe(3);
    expect(r.records.map((row) => row.square as number).sort((a, b) => a - b)).toEqual([1, 4, 16]);
    const failure = JSON.parse(
      fs.readFileSync(path.join(r.dir, "failures", `${bad}.json`), "utf8"),
    );
    expect(failure.error).toContain("x = 3");
    const manifest = JSON.parse(fs.readFileSync(path.join(r.dir, "manifest.json"), "utf8"));
    expect(manifest.failures).toEqual(r.failed);
    let ran: PointJob[] = [];
    const again = await sweep(grid, task, {
      dir,
      runner: async (jobs, t, hooks) => {
        ran = [...jobs];
        await reverseRunner(jobs, t, hooks).catch(() => {});
      },
    });
    expect(ran.map((j) => j.point)).toEqual([{ x: 3 }]);
    expect(again.skipped).toBe(3);
  });

  it("reports progress: done/running/failed/skipped adding up, ETA once a point ended", async () => {
    const seen: SweepProgress[] = [];
    const r = await sweep(GRID, "populate", { dir, workers: 2, onProgress: (p) => seen.push(p) });
    expect(seen[0]).toMatchObject({ sweepId: r.id, total: 12, done: 0, running: 0, skipped: 0 });
    expect(seen[0]!.etaMs).toBeUndefined();
    expect(seen.at(-1)).toMatchObject({ total: 12, done: 12, running: 0, failed: 0 });
    for (const p of seen) {
      expect(p.running).toBeLessThanOrEqual(2);
      expect(p.done + p.running).toBeLessThanOrEqual(12);
    }
    expect(seen.filter((p) => p.etaMs !== undefined).length).toBeGreaterThan(0);
  });
});

describe("sweep: bad input", () => {
  const never: Runner = async () => {
    throw new Error("the runner must not be called");
  };
  const rejects = (p: Promise<unknown>, ...parts: string[]) =>
    expect(p).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof InvalidArgumentError && parts.every((s) => (e as Error).message.includes(s)),
    );

  it("an unknown parameter of a built-in task, before any point runs", async () => {
    await rejects(
      sweep({ vcpus: [1], bytesPerVcpuu: [4096] }, "populate", { dir, runner: never }),
      "bytesPerVcpuu",
      "bytesPerVcpu",
    );
    expect(fs.readdirSync(dir)).toEqual([]); // no sweep folder either
  });

  it("an empty grid", async () => {
    await rejects(sweep([], "populate", { dir, runner: never }), "grid");
    await rejects(sweep({}, "populate", { dir, runner: never }), "grid");
    await rejects(sweep({ vcpus: [] }, "populate", { dir, runner: never }), "grid.vcpus");
  });

  it("a task that is not exported, or not a function, or a module that does not load", async () => {
    await rejects(
      sweep({ x: [1] }, { module: FIXTURES, export: "cubes" }, { dir, runner: never }),
      "cubes",
      "powers",
    );
    await rejects(
      sweep({ x: [1] }, { module: FIXTURES, export: "notAFunction" }, { dir, runner: never }),
      "notAFunction",
    );
    await rejects(
      sweep({ x: [1] }, { module: path.join(dir, "none.js"), export: "f" }, { dir, runner: never }),
      "none.js",
    );
    await rejects(
      sweep({ x: [1] }, "popul8" as never, { dir, runner: never }),
      "popul8",
      "populate",
    );
  });

  it("a bad worker count", async () => {
    for (const workers of [0, -1, 1.5, Number.NaN])
      await rejects(sweep({ vcpus: [1] }, "populate", { dir, workers }), "workers", "integer");
  });

  it("a parameter named point_id (the id column)", async () => {
    await rejects(
      sweep({ point_id: [1] }, { module: FIXTURES, export: "powers" }, { dir, runner: never }),
      "point_id",
    );
  });

  it("a result column with numbers in some rows and strings in others, naming the column", async () => {
    await rejects(
      sweep({ x: [1, 2] }, { module: FIXTURES, export: "mixed" }, { dir, workers: 1 }),
      "column value",
      "number",
      "string",
    );
  });
});

describe("poolRunner", () => {
  it("abort terminates the threads in the middle of their points and rejects as interrupted", async () => {
    const markers = path.join(dir, "markers");
    fs.mkdirSync(markers);
    const task = { module: FIXTURES, export: "slow" };
    const jobs = [1, 2, 3, 4].map((x) => {
      const point = { x, ms: 1500, dir: markers };
      return { id: pointId(point), point };
    });
    const ac = new AbortController();
    const started: string[] = [];
    const done: string[] = [];
    const run = poolRunner({ workers: 2 })(jobs, task, {
      onStart: (id) => {
        started.push(id);
        // Both threads busy: stop them 300 ms into their points.
        if (started.length === 2) setTimeout(() => ac.abort(), 300);
      },
      onDone: (o) => done.push(o.id),
      signal: ac.signal,
    });
    await expect(run).rejects.toBeInstanceOf(InterruptedError);
    expect(started).toHaveLength(2);
    expect(done).toEqual([]);
    // Had a thread survived, it would finish its point and leave a marker by now.
    await new Promise((r) => setTimeout(r, 2000));
    expect(fs.readdirSync(markers)).toEqual([]);
  });
});

describe("sweepResults", () => {
  it("DuckDB's GROUP BY over the Parquet equals the same aggregate of sequential runPoint records", async () => {
    const r = await sweep(GRID, "populate", { dir, workers: 2 });
    const db = await sweepResults(r.id, { dir });
    try {
      const got = await db.query(
        "SELECT vcpus, sum(pages_4k) AS pages, count(*) AS n, max(pf_fixed) AS faults FROM results GROUP BY vcpus ORDER BY vcpus",
      );
      const want = new Map<number, { vcpus: number; pages: number; n: number; faults: number }>();
      for (const row of sequentialRows(GRID)) {
        const v = row.vcpus as number;
        const a = want.get(v) ?? { vcpus: v, pages: 0, n: 0, faults: 0 };
        a.pages += row.pages_4k as number;
        a.n += 1;
        a.faults = Math.max(a.faults, row.pf_fixed as number);
        want.set(v, a);
      }
      // sum/count are HUGEINT/BIGINT in DuckDB: they come back as plain numbers.
      expect(got).toEqual([...want.values()].sort((a, b) => a.vcpus - b.vcpus));
      const cols = await db.query("SELECT column_name, column_type FROM (DESCRIBE results)");
      expect(cols.slice(0, 4)).toEqual([
        { column_name: "point_id", column_type: "VARCHAR" },
        { column_name: "vcpus", column_type: "BIGINT" },
        { column_name: "bytesPerVcpu", column_type: "BIGINT" },
        { column_name: "seed", column_type: "BIGINT" },
      ]);
    } finally {
      db.close();
    }
  });

  it("names a sweep without results", async () => {
    await expect(sweepResults("0123456789abcdef", { dir })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});
