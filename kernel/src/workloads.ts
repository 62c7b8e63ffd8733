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
import {
  type Grid,
  type Point,
  type SweepOptions,
  type SweepProgress,
  type SweepResult,
  sweep,
  type TaskRef,
} from "@mmulab/sweep";
import { display, displayBundle, InterruptedError, Progress } from "./helpers";

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

/** How often a sweep's cell looks for an interrupt while its points run in other threads. */
const SWEEP_POLL_MS = 50;

/** "3 s", "2 min 5 s": an ETA for the bar. */
function etaText(ms: number): string {
  const s = Math.ceil(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The bar's detail: what runs, what failed, what is left. */
function sweepDetail(p: SweepProgress): string {
  const parts = [`running ${p.running}`, `failed ${p.failed}`];
  if (p.skipped > 0) parts.push(`skipped ${p.skipped}`);
  if (p.etaMs !== undefined && p.done < p.total) parts.push(`ETA ${etaText(p.etaMs)}`);
  return parts.join(", ");
}

/**
 * `sweep(grid, task, opts)` (from `@mmulab/sweep`) with a progress bar, "sweep <id8>:
 * done/total · running r, failed f, ETA …", stoppable by the kernel's interrupt: the pool's
 * threads are terminated, points already finished stay stored (the next call skips them), and
 * the cell ends Interrupted. At the end it displays the result table and resolves to the
 * `SweepResult`. `opts.onProgress` and `opts.signal` are called/honoured as well.
 *
 * ```ts
 * const r = await runSweep({ vcpus: [1, 2], backing: ["4k", "thp"], bytesPerVcpu: [2 ** 22] }, "populate");
 * ```
 */
export async function runSweep(
  grid: Grid | readonly Point[],
  task: TaskRef,
  opts: SweepOptions = {},
): Promise<SweepResult> {
  const abort = new AbortController();
  const outer = opts.signal;
  const forward = () => abort.abort();
  outer?.addEventListener("abort", forward, { once: true });
  let bar: Progress | undefined;
  let last: SweepProgress | undefined;
  let interrupted = false;
  // Progress.update throws once the kernel got an interrupt (or closed the bar when the cell
  // was stopped while awaiting): that is the cue to stop the pool.
  const show = (p: SweepProgress | undefined): void => {
    if (p === undefined || interrupted) return;
    try {
      bar ??= new Progress(p.total, `sweep ${p.sweepId.slice(0, 8)}`, sweepDetail(p));
      bar.update(p.done, sweepDetail(p));
    } catch (e) {
      if (!(e instanceof InterruptedError)) throw e;
      interrupted = true;
      abort.abort();
    }
  };
  // Points run in other threads, so this thread idles in between: look for an interrupt.
  const poll = setInterval(() => show(last), SWEEP_POLL_MS);
  try {
    const result = await sweep(grid, task, {
      ...opts,
      signal: abort.signal,
      onProgress: (p) => {
        last = p;
        show(p);
        opts.onProgress?.(p);
      },
    });
    bar?.finish("done");
    display(result);
    return result;
  } catch (e) {
    if (interrupted) {
      bar?.finish("interrupted");
      throw new InterruptedError(
        `sweep interrupted at ${last?.done ?? 0}/${last?.total ?? "?"} points (finished points are stored)`,
      );
    }
    bar?.finish(outer?.aborted ? "interrupted" : "failed");
    throw e;
  } finally {
    clearInterval(poll);
    outer?.removeEventListener("abort", forward);
  }
}
