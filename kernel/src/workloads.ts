/**
 * Workload runners for cells: the core's stepwise workloads driven with a progress display,
 * turning the event loop between slices so that the display updates and an interrupt stops the
 * run between two slices.
 *
 * ```ts
 * import { runDirtyLogPerf } from "@mmulab/kernel";
 * await runDirtyLogPerf({ vcpus: 16, bytesPerVcpu: 2 ** 30, iterations: 2 })
 * ```
 */
import { type DirtyLogPerfResult, dirtyLogPerfSteps, type MemstressOptions } from "@mmulab/core";
import { displayBundle, Progress } from "./helpers";

/** Progress steps per phase (the bar's resolution within a phase). */
const STEPS_PER_PHASE = 1000;
/** Longest stretch of simulation between two turns of the event loop. */
const TURN_MS = 50;

/**
 * `dirtyLogPerf(opts)` with a progress bar that advances through every phase (named in the
 * bar), stoppable by the kernel's interrupt. At the end it displays the per-phase table and
 * resolves to the result (which displays as the plotly figure); rejects with `InterruptedError`
 * when interrupted.
 */
export async function runDirtyLogPerf(opts: MemstressOptions = {}): Promise<DirtyLogPerfResult> {
  const steps = dirtyLogPerfSteps(opts);
  let bar: Progress | undefined;
  let turned = Date.now();
  try {
    for (;;) {
      const r = steps.next();
      if (r.done) {
        bar?.finish("done");
        // The table as an output of its own: in JupyterLab the result itself shows as the
        // plotly figure, whose renderer outranks the HTML that also carries the table.
        displayBundle(r.value.tableBundle());
        return r.value;
      }
      const s = r.value;
      const what = `${s.phase} (${s.index + 1}/${s.count})`;
      bar ??= new Progress(s.count * STEPS_PER_PHASE, "dirty_log_perf_test", what);
      bar.update(
        s.index * STEPS_PER_PHASE + Math.floor((STEPS_PER_PHASE * s.done) / s.total),
        what,
      );
      if (Date.now() - turned >= TURN_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        turned = Date.now();
      }
    }
  } catch (e) {
    bar?.finish("failed");
    throw e;
  }
}
