/**
 * Sweep tasks: a named, exported experiment function that takes one point and returns a flat
 * record of numbers and strings. Built-in tasks are named by a string; a user's task is
 * `{ module, export }` (an absolute path or a package name, and the export's name), loaded in
 * whatever thread or process runs the point, so it must be importable there too.
 */
import path from "node:path";
import {
  dirtyLogPerf as coreDirtyLogPerf,
  type DirtyLogPhase,
  InvalidArgumentError,
  MEMSTRESS_OPTION_KEYS,
  type MemstressOptions,
  memstress,
} from "@mmulab/core";
import type { ParamValue, Point } from "./grid";

/** What a task returns for one point: column name → number, string or boolean. */
export type SweepRecord = Record<string, ParamValue>;
/** An experiment function of a sweep. */
export type TaskFn = (point: Point) => SweepRecord;
/** A built-in task by name, or a user's exported function. */
export type TaskRef = BuiltinTask | { module: string; export: string };

/**
 * memstress options a point may set: memstress's own keys but `features` (an object, which a
 * point's flat values cannot hold). The rest of a point is an error: a typo would be silent.
 */
const MEMSTRESS_KEYS: readonly string[] = MEMSTRESS_OPTION_KEYS.filter((k) => k !== "features");

function memstressOptions(task: string, point: Point): MemstressOptions {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(point)) {
    if (!MEMSTRESS_KEYS.includes(k))
      throw new InvalidArgumentError(`${task} parameter`, k, MEMSTRESS_KEYS.join(", "));
    o[k] = v;
  }
  return o as MemstressOptions;
}

/** KVM's statistics as columns (numbers only; wall time is not a result: it differs run to run). */
function statsRecord(stats: Record<string, number>): SweepRecord {
  const r: SweepRecord = {};
  for (const k of Object.keys(stats).sort()) r[k] = stats[k]!;
  return r;
}

/**
 * Built-in tasks. `populate`: memstress's guest touches every page once (dirty_log_perf_test's
 * populate phase); the record is KVM's statistics afterwards. `dirtyLogPerf`: the whole
 * dirty_log_perf_test cycle; per phase its simulated counts, as `<phase>_<count>` columns.
 */
export const BUILTIN_TASKS = {
  populate(point: Point): SweepRecord {
    const m = memstress({ ...memstressOptions("populate", point), iterations: 0 });
    m.pass();
    return statsRecord(m.vm.stats.toJSON());
  },
  dirtyLogPerf(point: Point): SweepRecord {
    const r = coreDirtyLogPerf(memstressOptions("dirtyLogPerf", point));
    const rec: SweepRecord = {};
    const counts: (keyof DirtyLogPhase)[] = [
      "faults",
      "fastFaults",
      "slowFaults",
      "splits",
      "zaps",
      "flushes",
      "wrprotSlotPasses",
      "wrprotMaskedCalls",
      "bitmapWords",
      "dirtyPages",
      "pages4k",
      "pages2m",
      "pages1g",
    ];
    for (const p of r.phases) {
      const prefix = p.name.replace(/[^A-Za-z0-9]+/g, "_");
      for (const c of counts) rec[`${prefix}_${c}`] = p[c] as number;
    }
    return rec;
  },
} satisfies Record<string, TaskFn>;

/** A built-in task's name. */
export type BuiltinTask = keyof typeof BUILTIN_TASKS;

/** Checks `task` and says what it names: a built-in, or a module path and export. */
export function checkTaskRef(task: unknown): TaskRef {
  if (typeof task === "string") {
    if (Object.hasOwn(BUILTIN_TASKS, task)) return task as BuiltinTask;
    throw new InvalidArgumentError(
      "task",
      task,
      `a built-in task (${Object.keys(BUILTIN_TASKS).join(", ")}) or { module, export }`,
    );
  }
  if (task !== null && typeof task === "object") {
    const t = task as Record<string, unknown>;
    const keys = Object.keys(t);
    if (
      keys.length === 2 &&
      typeof t.module === "string" &&
      t.module !== "" &&
      typeof t.export === "string" &&
      t.export !== ""
    )
      return { module: t.module, export: t.export };
  }
  throw new InvalidArgumentError(
    "task",
    task,
    `a built-in task (${Object.keys(BUILTIN_TASKS).join(", ")}) or { module: path, export: name }`,
  );
}

/** A stable text for a task reference (part of a sweep's id). */
export function taskKey(task: TaskRef): string {
  return typeof task === "string" ? task : `${path.resolve(task.module)}#${task.export}`;
}

/**
 * Checks a point's parameter names before anything runs, for built-in tasks (their names are
 * known: a typo fails the whole sweep up front, not at its first point). A user's task checks its
 * own points when they run.
 * @throws InvalidArgumentError naming the unknown parameter and the allowed ones.
 */
export function checkPoint(task: TaskRef, point: Point): void {
  if (typeof task === "string") memstressOptions(task, point);
}

/** The function `task` names; a module that is missing or lacks the export is a clear error. */
export function resolveTask(task: TaskRef): TaskFn {
  if (typeof task === "string") return BUILTIN_TASKS[task];
  let mod: Record<string, unknown>;
  const spec = task.module.startsWith(".") ? path.resolve(task.module) : task.module;
  try {
    mod = require(spec);
  } catch (e) {
    throw new InvalidArgumentError(
      "task.module",
      task.module,
      `a module that loads here (${(e as Error).message.split("\n")[0]})`,
    );
  }
  const fn = mod[task.export];
  if (typeof fn !== "function")
    throw new InvalidArgumentError(
      "task.export",
      task.export,
      `a function exported by ${task.module} (exports: ${Object.keys(mod).join(", ") || "none"})`,
    );
  return fn as TaskFn;
}

/**
 * Runs `task` on `point` and checks the record: a non-empty object of finite numbers, strings
 * and booleans whose names are not parameters of the point (the row holds both).
 */
export function runPoint(task: TaskRef, point: Point): SweepRecord {
  const rec = resolveTask(task)(point);
  const name = taskKey(task);
  if (
    rec === null ||
    typeof rec !== "object" ||
    Array.isArray(rec) ||
    Object.keys(rec).length === 0
  )
    throw new InvalidArgumentError(
      `${name}'s result`,
      rec,
      "a non-empty flat record of numbers, strings and booleans",
    );
  for (const [k, v] of Object.entries(rec)) {
    // point_id: the results' id column (sweep.ts).
    if (Object.hasOwn(point, k) || k === "point_id")
      throw new InvalidArgumentError(
        `${name}'s result column`,
        k,
        "a name that is not point_id nor a parameter of the point",
      );
    if (
      !(
        typeof v === "string" ||
        typeof v === "boolean" ||
        (typeof v === "number" && Number.isFinite(v))
      )
    )
      throw new InvalidArgumentError(
        `${name}'s result.${k}`,
        v,
        "a finite number, a string or a boolean",
      );
  }
  return rec;
}
