/**
 * `@mmulab/sweep`: a grid of simulated VMs run on every core (a worker-thread pool) or across
 * machines (BullMQ on Redis), results as Parquet, queried with DuckDB.
 */
export {
  canonicalJson,
  expandGrid,
  type Grid,
  type ParamValue,
  type Point,
  pointId,
  SIMULATOR_VERSION,
} from "./grid";
export {
  InterruptedError,
  type QueueRunnerOptions,
  QueueUnreachableError,
  queueRunner,
} from "./queue";
export {
  BUILTIN_TASKS,
  type BuiltinTask,
  checkTaskRef,
  resolveTask,
  runPoint,
  type SweepRecord,
  type TaskFn,
  type TaskRef,
  taskKey,
} from "./tasks";
export type { PointJob, PointOutcome, Runner, RunnerHooks, SweepProgress } from "./types";
