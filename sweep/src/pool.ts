/**
 * One machine: the points on a worker-thread pool (piscina), one thread per core by default.
 * The pool keeps exactly `workers` points in flight (no queue inside piscina), so "running" in
 * the progress is what really runs.
 */
import os from "node:os";
import path from "node:path";
import { InterruptedError, InvalidArgumentError } from "@mmulab/core";
import { Piscina } from "piscina";
import { errorText, type PoolTaskInput, type PoolTaskOutput } from "./pool_worker";
import type { PointOutcome, Runner } from "./types";

/** Options of {@link poolRunner}. */
export interface PoolRunnerOptions {
  /** Threads in the pool, an integer ≥ 1; default `os.availableParallelism()`. */
  workers?: number;
}

/** Thrown (rejected) when a sweep is aborted through its signal: the kernel's interrupt. */

/**
 * The worker's file. Always the built one in dist/, also when this module runs from src/ under
 * vitest: a worker thread cannot load TypeScript (so tests need `npm run build` first).
 */
const WORKER_FILE = path.join(__dirname, "..", "dist", "pool_worker.js");

/** Checks `workers` (undefined: one per core). */
export function poolSize(workers: unknown): number {
  if (workers === undefined) return os.availableParallelism();
  if (typeof workers !== "number" || !Number.isInteger(workers) || workers < 1)
    throw new InvalidArgumentError("workers", workers, "an integer ≥ 1 (threads in the pool)");
  return workers;
}

/**
 * A runner on a piscina pool of `opts.workers` threads, created per run and destroyed when the
 * run ends, fails or is aborted (no thread outlives the run). Abort rejects with
 * {@link InterruptedError}; points still running are dropped unfinished.
 */
export function poolRunner(opts: PoolRunnerOptions = {}): Runner {
  const size = poolSize(opts.workers);
  return async (jobs, task, { onStart, onDone, signal }) => {
    if (signal?.aborted) throw new InterruptedError("sweep interrupted before it started");
    const pool = new Piscina<PoolTaskInput, PoolTaskOutput>({
      filename: WORKER_FILE,
      minThreads: Math.min(size, jobs.length),
      maxThreads: size,
      // Idle threads stay until destroy(): the run hands them its next point at once.
      idleTimeout: Number.POSITIVE_INFINITY,
    });
    let aborted: () => void = () => {};
    const abortedP = new Promise<never>((_, reject) => {
      aborted = () => reject(new InterruptedError("sweep interrupted"));
    });
    // Nobody may await abortedP when the run ends normally: keep it from being "unhandled".
    abortedP.catch(() => {});
    signal?.addEventListener("abort", aborted, { once: true });
    try {
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < jobs.length && !signal?.aborted) {
          const job = jobs[next++]!;
          onStart(job.id);
          let outcome: PointOutcome;
          try {
            const out = await pool.run({ task, point: job.point });
            outcome = out.ok
              ? { id: job.id, ok: true, record: out.record }
              : { id: job.id, ok: false, error: out.error };
          } catch (e) {
            if (signal?.aborted) return;
            // The thread itself died (out of memory, process.exit in a task): that point failed.
            outcome = { id: job.id, ok: false, error: errorText(e) };
          }
          if (signal?.aborted) return;
          onDone(outcome);
        }
      };
      const lanes = Array.from({ length: Math.min(size, jobs.length) }, lane);
      await Promise.race([Promise.all(lanes), abortedP]);
      if (signal?.aborted) throw new InterruptedError("sweep interrupted");
    } finally {
      signal?.removeEventListener("abort", aborted);
      // Terminates every thread, also one in the middle of a point; its run() then rejects.
      await pool.destroy();
    }
  };
}
