/**
 * `@mmulab/sweep`: a grid of simulated VMs run on every core (a worker-thread pool) or across
 * machines (BullMQ on Redis), results as Parquet, queried with DuckDB.
 */
export { InterruptedError } from "@mmulab/core";
export {
  canonicalJson,
  expandGrid,
  type Grid,
  type ParamValue,
  type Point,
  pointId,
  SIMULATOR_VERSION,
} from "./grid";
export { type PoolRunnerOptions, poolRunner, poolSize } from "./pool";
export { type QueueRunnerOptions, QueueUnreachableError, queueRunner } from "./queue";
export {
  type QueryRow,
  queryRows,
  type SweepDb,
  type SweepResultsOptions,
  sweepResults,
} from "./results";
export {
  POINT_ID_COLUMN,
  type SweepFailure,
  type SweepOptions,
  type SweepResult,
  type SweepRow,
  sweep,
  sweepId,
} from "./sweep";
export {
  BUILTIN_TASKS,
  type BuiltinTask,
  checkPoint,
  checkTaskRef,
  resolveTask,
  runPoint,
  type SweepRecord,
  type TaskFn,
  type TaskRef,
  taskKey,
} from "./tasks";
export type { PointJob, PointOutcome, Runner, RunnerHooks, SweepProgress } from "./types";
