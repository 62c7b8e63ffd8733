/**
 * @mmulab/kernel — the notebook-facing API. In a cell:
 * ```ts
 * import { display, plot, plotSpteLevels, progress, runDirtyLogPerf, runSweep } from "@mmulab/kernel";
 * ```
 * The kernel process itself starts from `bin/mmulab-kernel.js` (see cli.ts).
 */
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
