/**
 * The worker-thread side of the pool (pool.ts): runs one point and returns its outcome. A task
 * that throws is an outcome (`ok: false`), so one bad point never takes the worker down.
 */
import type { Point } from "./grid";
import { runPoint, type TaskRef } from "./tasks";

/** What the pool posts to a worker. */
export interface PoolTaskInput {
  task: TaskRef;
  point: Point;
}

/** What a worker returns; the pool adds the point id to make a `PointOutcome`. */
export type PoolTaskOutput =
  | { ok: true; record: ReturnType<typeof runPoint> }
  | { ok: false; error: string };

/** Piscina's handler (the default export). */
export default function runPoolTask({ task, point }: PoolTaskInput): PoolTaskOutput {
  try {
    return { ok: true, record: runPoint(task, point) };
  } catch (e) {
    return { ok: false, error: errorText(e) };
  }
}

/** The error's name and message (the stack would differ by thread and path). */
export function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
