/**
 * `sweep(grid, task, opts)`: every point of a grid run once, each result stored as soon as it
 * exists, the whole sweep written as one Parquet file plus a manifest.
 *
 * On disk, `<dir>/<sweep id>/`:
 *
 * | path                    | written                                  | holds                      |
 * |-------------------------|------------------------------------------|----------------------------|
 * | `points/<pointId>.json` | when the point finishes (temp + rename)  | `{ id, point, record }`    |
 * | `failures/<pointId>.json` | when its task threw; removed on success | `{ id, point, error }`     |
 * | `results.parquet`       | at the end, when any point has a record  | one row per point          |
 * | `manifest.json`         | at the end                               | id, task, version, counts  |
 *
 * A crash or an interrupt loses only the points that were running; the next call with the same
 * grid and task finds the rest in `points/` and skips them (failures are run again).
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { InvalidArgumentError } from "@mmulab/core";
import { htmlTableBundle, JUPYTER_DISPLAY, type MimeBundle } from "@mmulab/core/display";
import { parquetWriteBuffer } from "hyparquet-writer";
import {
  expandGrid,
  type Grid,
  type ParamValue,
  type Point,
  pointId,
  SIMULATOR_VERSION,
} from "./grid";
import { poolRunner } from "./pool";
import { queueRunner } from "./queue";
import {
  checkPoint,
  checkTaskRef,
  resolveTask,
  type SweepRecord,
  type TaskRef,
  taskKey,
} from "./tasks";
import type { PointJob, PointOutcome, Runner, SweepProgress } from "./types";

/** Options of {@link sweep}. */
export interface SweepOptions {
  /** Folder holding every sweep's folder; default `./sweeps` (relative to the process's cwd). */
  dir?: string;
  /** Recompute every point, also those with stored results. */
  force?: boolean;
  /** Threads of the default pool runner (an integer ≥ 1; default one per core). */
  workers?: number;
  /**
   * Run the points on BullMQ workers instead of this machine's threads: a `redis://` or
   * `rediss://` URL (see {@link queueRunner}; start workers with `npx mmulab-worker --queue URL`).
   */
  queue?: string;
  /** What runs the points; default {@link queueRunner} with `queue`, else {@link poolRunner}. */
  runner?: Runner;
  /** Called at the start, on every point's start and end, and at the end. */
  onProgress?: (progress: SweepProgress) => void;
  /** Aborting stops the run: the promise rejects, finished points stay on disk. */
  signal?: AbortSignal;
}

/** A point whose task threw. */
export interface SweepFailure {
  id: string;
  point: Point;
  error: string;
}

/** One result row: `point_id`, the point's parameters, then the record's columns. */
export type SweepRow = Record<string, ParamValue>;

/** Name of the point id column (so no parameter or record column may use it). */
export const POINT_ID_COLUMN = "point_id";
/** Rows {@link SweepResult}'s display shows. */
const DISPLAY_ROWS = 10;

/** What {@link sweep} resolves to; displays in a notebook as a table of its first rows. */
export interface SweepResult {
  /** 16 hex digits: sha256 of the task, the simulator version and the sorted point ids. */
  id: string;
  /** Absolute path of the sweep's folder. */
  dir: string;
  /** `taskKey` of the task. */
  task: string;
  /** Points in the grid. */
  points: number;
  /** Points that have a record now (run in this call or earlier). */
  done: number;
  /** Points whose task threw in this call, in point-id order. */
  failed: SweepFailure[];
  /** Points whose stored record was reused (not run in this call). */
  skipped: number;
  /** The records of every done point, in point-id order. */
  records: SweepRow[];
  /** Absolute path of `results.parquet` (undefined when no point has a record). */
  parquet: string | undefined;
  [JUPYTER_DISPLAY](): MimeBundle;
}

/** The sweep's id: the task, the simulator version and the point ids, in sorted order. */
export function sweepId(task: TaskRef, ids: readonly string[]): string {
  return createHash("sha256")
    .update(`${taskKey(task)}\n${SIMULATOR_VERSION}\n${[...ids].sort().join("\n")}`)
    .digest("hex")
    .slice(0, 16);
}

/** Writes a file whole or not at all: a reader never sees half a file, even after a crash. */
function writeAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/** A stored record, or undefined when absent or not one of this point's (then it is rerun). */
function readStored(file: string, id: string): SweepRecord | undefined {
  let stored: { id?: unknown; record?: unknown };
  try {
    stored = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
  if (stored?.id !== id || stored.record === null || typeof stored.record !== "object")
    return undefined;
  return stored.record as SweepRecord;
}

/**
 * Runs `task` on every point of `grid` (see {@link expandGrid}) and stores the results under
 * `opts.dir/<sweep id>/`. Points with stored records are skipped unless `opts.force`; a point
 * whose task throws is recorded in `failed` (and `failures/`) while the others finish.
 *
 * Everything that can be checked before the pool starts is, in this thread: the grid, the task
 * (a `{ module, export }` must load and export a function), and for built-in tasks every point's
 * parameter names.
 * @throws InvalidArgumentError for an empty or malformed grid, an unknown task or parameter, a
 * bad `workers`; rejects with `InterruptedError` when `opts.signal` aborts.
 */
export async function sweep(
  grid: Grid | readonly Point[],
  task: TaskRef,
  opts: SweepOptions = {},
): Promise<SweepResult> {
  const ref = checkTaskRef(task);
  const points = expandGrid(grid);
  resolveTask(ref);
  for (const p of points) {
    if (Object.hasOwn(p, POINT_ID_COLUMN))
      throw new InvalidArgumentError(
        "grid parameter",
        POINT_ID_COLUMN,
        "a name other than point_id (the results' id column)",
      );
    checkPoint(ref, p);
  }
  if (opts.queue !== undefined && (opts.runner !== undefined || opts.workers !== undefined))
    throw new InvalidArgumentError(
      "queue",
      opts.queue,
      "a queue alone (workers and runner choose this machine's pool instead)",
    );
  const runner =
    opts.runner ??
    (opts.queue !== undefined
      ? queueRunner({ url: opts.queue })
      : poolRunner({ workers: opts.workers }));

  // Point-id order: the order of rows, files and the Parquet, whatever order points finish in.
  const jobs: PointJob[] = points
    .map((point) => ({ id: pointId(point), point }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const id = sweepId(
    ref,
    jobs.map((j) => j.id),
  );
  const dir = path.resolve(opts.dir ?? "sweeps", id);
  const pointsDir = path.join(dir, "points");
  const failuresDir = path.join(dir, "failures");
  fs.mkdirSync(pointsDir, { recursive: true });
  fs.mkdirSync(failuresDir, { recursive: true });

  const records = new Map<string, SweepRecord>();
  if (!opts.force)
    for (const j of jobs) {
      const r = readStored(path.join(pointsDir, `${j.id}.json`), j.id);
      if (r !== undefined) records.set(j.id, r);
    }
  const skipped = records.size;
  const todo = jobs.filter((j) => !records.has(j.id));
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const errors = new Map<string, string>();
  const running = new Set<string>();
  const t0 = Date.now();

  const report = (): void => {
    if (opts.onProgress === undefined) return;
    const ran = records.size - skipped + errors.size;
    const done = records.size + errors.size;
    opts.onProgress({
      sweepId: id,
      total: jobs.length,
      done,
      running: running.size,
      failed: errors.size,
      skipped,
      // Throughput so far in this call (it already counts the parallelism), times what is left.
      etaMs: ran > 0 ? Math.round(((Date.now() - t0) / ran) * (jobs.length - done)) : undefined,
    });
  };
  const onDone = (o: PointOutcome): void => {
    const job = byId.get(o.id);
    if (job === undefined) return; // not ours (a runner's bug); nothing to store it under
    running.delete(o.id);
    const failureFile = path.join(failuresDir, `${o.id}.json`);
    if (o.ok) {
      records.set(o.id, o.record);
      writeAtomic(
        path.join(pointsDir, `${o.id}.json`),
        JSON.stringify({ id: o.id, point: job.point, record: o.record }),
      );
      fs.rmSync(failureFile, { force: true });
    } else {
      errors.set(o.id, o.error);
      writeAtomic(failureFile, JSON.stringify({ id: o.id, point: job.point, error: o.error }));
    }
    report();
  };

  report();
  if (todo.length > 0)
    await runner(todo, ref, {
      onStart: (pid) => {
        running.add(pid);
        report();
      },
      onDone,
      signal: opts.signal,
    });

  const rows: SweepRow[] = [];
  for (const j of jobs) {
    const r = records.get(j.id);
    if (r !== undefined) rows.push({ [POINT_ID_COLUMN]: j.id, ...j.point, ...r });
  }
  const failed = jobs
    .filter((j) => errors.has(j.id))
    .map((j) => ({ id: j.id, point: j.point, error: errors.get(j.id)! }));
  const parquet = rows.length > 0 ? path.join(dir, "results.parquet") : undefined;
  if (parquet !== undefined)
    writeAtomic(parquet, parquetBytes(rows, jobs, { id, task: taskKey(ref) }));
  const manifest = {
    id,
    task: taskKey(ref),
    simulatorVersion: SIMULATOR_VERSION,
    points: jobs.map((j) => ({ id: j.id, point: j.point })),
    counts: { points: jobs.length, done: rows.length, failed: failed.length, skipped },
    failures: failed,
    files: {
      results: parquet === undefined ? null : "results.parquet",
      points: "points/<point id>.json",
      failures: "failures/<point id>.json",
    },
  };
  writeAtomic(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);

  const result: SweepResult = {
    id,
    dir,
    task: taskKey(ref),
    points: jobs.length,
    done: rows.length,
    failed,
    skipped,
    records: rows,
    parquet,
    [JUPYTER_DISPLAY]: () => resultBundle(result),
  };
  return result;
}

/** The first rows as a table, headed by the counts (no path or time: outputs stay reproducible). */
function resultBundle(r: SweepResult): MimeBundle {
  const more = r.records.length > DISPLAY_ROWS ? `, first ${DISPLAY_ROWS} rows` : "";
  const title =
    `sweep ${r.id} (${r.task}): ${r.points} points, ${r.done} done, ` +
    `${r.failed.length} failed, ${r.skipped} skipped${more}`;
  return htmlTableBundle(title, r.records.slice(0, DISPLAY_ROWS));
}

type ColumnType = "BOOLEAN" | "STRING" | "INT64" | "DOUBLE";

/**
 * One column's Parquet type from all its values: booleans, strings, integers (INT64, when all
 * are safe integers) or numbers (DOUBLE). A column mixing kinds is an error naming it.
 */
function columnType(name: string, rows: readonly SweepRow[]): ColumnType {
  let kind: string | undefined;
  let firstAt = "";
  let integers = true;
  for (const row of rows) {
    const v = row[name];
    if (v === undefined) continue;
    const k = typeof v;
    if (kind === undefined) {
      kind = k;
      firstAt = String(row[POINT_ID_COLUMN]);
    } else if (k !== kind)
      throw new InvalidArgumentError(
        `column ${name}`,
        v,
        `values of one type in every row (${kind} at point ${firstAt}, ${k} at point ${row[POINT_ID_COLUMN]})`,
      );
    if (k === "number" && !Number.isSafeInteger(v)) integers = false;
  }
  if (kind === "boolean") return "BOOLEAN";
  if (kind === "string") return "STRING";
  return integers ? "INT64" : "DOUBLE";
}

/**
 * The Parquet file of `rows` (already in point-id order): `point_id`, the parameters in the order
 * they first appear in the points, then the record columns in the order they first appear.
 * A value a row lacks is null. The bytes depend on the rows only, so any worker count or order
 * gives the same file.
 */
function parquetBytes(
  rows: readonly SweepRow[],
  jobs: readonly PointJob[],
  meta: { id: string; task: string },
): Uint8Array {
  const params: string[] = [];
  for (const j of jobs)
    for (const k of Object.keys(j.point)) if (!params.includes(k)) params.push(k);
  const names = [POINT_ID_COLUMN, ...params];
  for (const row of rows) for (const k of Object.keys(row)) if (!names.includes(k)) names.push(k);
  const columnData = names.map((name) => {
    const type = columnType(name, rows);
    const data = rows.map((row) => {
      const v = row[name];
      if (v === undefined) return null;
      return type === "INT64" ? BigInt(v as number) : v;
    });
    return { name, type, data };
  });
  const buf = parquetWriteBuffer({
    columnData,
    createdBy: "@mmulab/sweep",
    kvMetadata: [
      { key: "mmulab.sweep.id", value: meta.id },
      { key: "mmulab.sweep.task", value: meta.task },
      { key: "mmulab.simulator", value: SIMULATOR_VERSION },
    ],
  });
  return new Uint8Array(buf);
}
