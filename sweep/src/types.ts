/**
 * The contract between a sweep and what runs its points: the in-process worker-thread pool
 * (pool.ts) or the BullMQ queue across machines (queue.ts). Both take the points still to do
 * and report each point's start and outcome; the sweep orders, stores and counts.
 */
import type { Point } from "./grid";
import type { SweepRecord, TaskRef } from "./tasks";

/** A point to run, with its stable id. */
export interface PointJob {
  id: string;
  point: Point;
}

/** How one point ended: its record, or the error its task threw (recorded; the others go on). */
export type PointOutcome =
  | { id: string; ok: true; record: SweepRecord }
  | { id: string; ok: false; error: string };

/** Callbacks of a runner; `signal` aborts the run (interrupt): the runner stops and rejects. */
export interface RunnerHooks {
  onStart(id: string): void;
  onDone(outcome: PointOutcome): void;
  signal?: AbortSignal;
}

/** Runs every job once (a failing task is an outcome, not a rejection); resolves when all ended. */
export type Runner = (
  jobs: readonly PointJob[],
  task: TaskRef,
  hooks: RunnerHooks,
) => Promise<void>;

/** Progress of a sweep, for bars: points done, running, failed, skipped (had results), ETA. */
export interface SweepProgress {
  /** The sweep's id (its folder's name). */
  sweepId: string;
  total: number;
  /** Points that ended: with a record or a failure, stored ones (skipped) included. */
  done: number;
  running: number;
  failed: number;
  skipped: number;
  /** Estimated milliseconds to go (undefined until a point finished in this run). */
  etaMs?: number;
}
