/**
 * @mmulab/kernel — the notebook-facing API. In a cell:
 * ```ts
 * import { display, plot, plotSpteLevels, progress, runDirtyLogPerf, runSweep } from "@mmulab/kernel";
 * ```
 * The kernel process itself starts from `bin/mmulab-kernel.js` (see cli.ts).
 */

// A sweep's results from a notebook in any folder: @mmulab/sweep comes with the kernel (its
// own package resolution covers @mmulab/core and @mmulab/kernel only).
export {
  type Grid,
  type QueryRow,
  queryRows,
  type SweepDb,
  type SweepOptions,
  type SweepProgress,
  type SweepResult,
  sweepResults,
  type TaskRef,
} from "@mmulab/sweep";
export {
  bundleOf,
  checkBundle,
  clearOutput,
  DisplayError,
  display,
  displayBundle,
  InterruptedError,
  Progress,
  plot,
  plotSpteLevels,
  progress,
  type SpteLevelCounts,
  type SpteLevelPlotOptions,
  SpteSeries,
  type SpteStep,
  spteLevelFigure,
} from "./helpers";
export type { DisplayOptions } from "./session";
export { runDirtyLogPerf, runSweep } from "./workloads";
