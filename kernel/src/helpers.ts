/**
 * Notebook helpers: `display`, `displayBundle`, `plot`, `plotSpteLevels`, `progress`.
 *
 * ```ts
 * import { display, plot, progress } from "@mmulab/kernel";
 * ```
 * Every bundle is checked before it is sent: mmulab payloads against the display schema, plotly
 * figures for shape. A bad payload throws in the cell (a clear `error` output), nothing is sent.
 */
import { randomUUID } from "node:crypto";
import { inspect } from "node:util";
import { InterruptedError } from "@mmulab/core";
import {
  escapeHtml,
  JUPYTER_DISPLAY,
  type MimeBundle,
  PAGETABLE_MIME,
  PLOTLY_MIME,
  type PlotlyFigure,
  pagetableBundle,
  plotlyBundle,
  validateDisplayPayload,
  WALK_MIME,
  WALK2D_MIME,
  walk2dBundle,
  walkBundle,
} from "@mmulab/core/display";
import { currentSession, type DisplayOptions } from "./session";

/** Thrown for a value or bundle that cannot be displayed. */
export class DisplayError extends TypeError {
  override name = "DisplayError";
}

/** MIME types whose data is checked before sending. */
const CHECKED = new Set([PAGETABLE_MIME, WALK_MIME, WALK2D_MIME, PLOTLY_MIME]);

/**
 * `util.inspect` of anything, never throwing: a value whose inspection throws (a custom inspect
 * method, a proxy whose traps throw) is named by its `Object.prototype.toString` tag instead.
 */
export function safeInspect(value: unknown, depth = 2): string {
  try {
    return inspect(value, { depth, maxArrayLength: 50 });
  } catch {
    try {
      return `${Object.prototype.toString.call(value)} (could not be inspected)`;
    } catch {
      return `${typeof value} (could not be inspected)`;
    }
  }
}

/** text/plain of an arbitrary value, as Node's REPL shows it; never throws. */
export function plainText(value: unknown): string {
  return typeof value === "string" ? value : safeInspect(value, 4);
}

/**
 * Checks a MIME bundle: an object of MIME type → data, text/plain a string, every mmulab payload
 * valid against the schema. Returns the bundle (with text/plain added when missing).
 * @throws DisplayError naming the MIME type, the JSON path and the bad value.
 */
export function checkBundle(bundle: unknown, what = "bundle"): MimeBundle {
  if (bundle === null || typeof bundle !== "object" || Array.isArray(bundle)) {
    throw new DisplayError(
      `${what} must be an object of MIME type -> data, got ${plainText(bundle)}`,
    );
  }
  const out: MimeBundle = { ...(bundle as MimeBundle) };
  const mimes = Object.keys(out);
  if (mimes.length === 0) throw new DisplayError(`${what} has no MIME type`);
  for (const mime of mimes) {
    if (!/^[a-z]+\/[-+.\w]+$/.test(mime)) {
      throw new DisplayError(
        `${what} has an invalid MIME type ${JSON.stringify(mime)} (expected type/subtype)`,
      );
    }
    const data = out[mime];
    if (CHECKED.has(mime)) {
      const r = validateDisplayPayload(mime, data);
      if (!r.ok) {
        const more = r.errors.length > 1 ? `\n  ${r.errors.join("\n  ")}` : "";
        throw new DisplayError(`cannot display: ${r.message}${more}`);
      }
    } else if (data === undefined || typeof data === "function" || typeof data === "bigint") {
      throw new DisplayError(
        `${what}[${JSON.stringify(mime)}] is ${typeof data}; expected a string or JSON data`,
      );
    } else if (typeof data === "object" && data !== null) {
      // The wire carries JSON: a cycle or a BigInt inside would fail while sending, as a
      // TypeError naming neither the bundle nor the MIME type.
      try {
        JSON.stringify(data);
      } catch (e) {
        throw new DisplayError(
          `${what}[${JSON.stringify(mime)}] is not JSON data: ${(e as Error).message.split("\n")[0]}`,
        );
      }
    }
  }
  if (out["text/plain"] === undefined) out["text/plain"] = `[${mimes.join(", ")}]`;
  else if (typeof out["text/plain"] !== "string") {
    throw new DisplayError(
      `${what}["text/plain"] must be a string, got ${plainText(out["text/plain"])}`,
    );
  }
  return out;
}

function isPayload(value: unknown, kind: string): boolean {
  return (
    value !== null &&
    typeof value === "object" &&
    (value as { kind?: unknown }).kind === kind &&
    "version" in value
  );
}

/**
 * The MIME bundle of a value: its `[Symbol.for("Jupyter.display")]()` when it has one, a bundle
 * built from a bare pagetable/walk/walk2d payload, or text/plain otherwise. Always checked.
 */
export function bundleOf(value: unknown): MimeBundle {
  if (value !== null && (typeof value === "object" || typeof value === "function")) {
    const method = (value as { [JUPYTER_DISPLAY]?: unknown })[JUPYTER_DISPLAY];
    if (typeof method === "function") {
      const bundle = method.call(value) as unknown;
      return checkBundle(
        bundle,
        `[Symbol.for("Jupyter.display")]() of ${value.constructor?.name ?? "value"}`,
      );
    }
    if (isPayload(value, "pagetable")) return wrap(() => pagetableBundle(value as never));
    if (isPayload(value, "walk")) return wrap(() => walkBundle(value as never));
    if (isPayload(value, "walk2d")) return wrap(() => walk2dBundle(value as never));
  }
  return { "text/plain": plainText(value) };
}

function wrap(build: () => MimeBundle): MimeBundle {
  try {
    return checkBundle(build());
  } catch (e) {
    if (e instanceof DisplayError) throw e;
    throw new DisplayError(`cannot display: ${(e as Error).message}`);
  }
}

function publish(bundle: MimeBundle, options: DisplayOptions = {}): void {
  const session = currentSession();
  if (session === undefined) {
    // Outside a kernel (a plain Node script): the text form is the useful one.
    process.stdout.write(`${String(bundle["text/plain"])}\n`);
    return;
  }
  session.publishDisplay(bundle, options);
}

/**
 * Shows `value` as ONE display_data carrying every MIME type of its bundle (see {@link bundleOf}).
 * @throws DisplayError when the bundle or a payload in it is invalid (nothing is sent).
 */
export function display(value: unknown): void {
  publish(bundleOf(value));
}

/** Sends an explicit MIME bundle (checked like every other). */
export function displayBundle(bundle: MimeBundle, options: DisplayOptions = {}): void {
  publish(checkBundle(bundle), options);
}

/** Clears the cell's output (`wait`: when the next output arrives, avoiding flicker). */
export function clearOutput(wait = false): void {
  currentSession()?.publishClear(wait);
}

/**
 * Shows a plotly figure: `application/vnd.plotly.v1+json` plus an offline SVG fallback and text.
 * Nothing is fetched from a CDN. Returns nothing, so the cell does not echo the figure.
 */
export function plot(figure: PlotlyFigure): void {
  publish(wrap(() => plotlyBundle(figure)));
}

/**
 * The spte counts by level, as KVM's `pages_4k`/`pages_2m`/`pages_1g` stats. Any subset may be
 * given (a machine without 1 GiB pages has no `pages_1g` to report); a level missing from a step
 * is a gap in its line, and a level missing from every step has no line at all.
 */
export interface SpteLevelCounts {
  pages_4k?: number;
  pages_2m?: number;
  pages_1g?: number;
}

/** One step of an experiment: the counts, directly or under `stat`/`stats`, and an optional label. */
export type SpteStep =
  | (SpteLevelCounts & { label?: string | number; step?: string | number })
  | { label?: string | number; step?: string | number; stat: SpteLevelCounts }
  | { label?: string | number; step?: string | number; stats: SpteLevelCounts };

/** Options of {@link spteLevelFigure} and {@link plotSpteLevels}. */
export interface SpteLevelPlotOptions {
  /** Figure title; default "SPTEs by level" ("memory mapped by page size" for `view: "bytes"`). */
  title?: string;
  /** Name of the x axis (each step's `label`/`step`, or its index); default "step". */
  xTitle?: string;
  /**
   * `"log"` for a logarithmic y axis (counts of 4 KiB and 1 GiB leaves differ by orders of
   * magnitude); zeros are left out there, as log(0) has no place on the axis. Default `"linear"`.
   */
  yAxis?: "linear" | "log";
  /**
   * `"sptes"` (default): leaf counts per level. `"bytes"`: memory each page size maps,
   * pages_4k × 4 KiB, pages_2m × 2 MiB, pages_1g × 1 GiB.
   */
  view?: "sptes" | "bytes";
}

/** The three levels: stat name, bytes one leaf maps, the line's name in the bytes view. */
const LEVELS = [
  { key: "pages_4k", bytes: 2 ** 12, name: "4 KiB pages" },
  { key: "pages_2m", bytes: 2 ** 21, name: "2 MiB pages" },
  { key: "pages_1g", bytes: 2 ** 30, name: "1 GiB pages" },
] as const;

/** The counts of step `i` (levels it does not give are undefined). */
function countsOf(step: SpteStep, i: number): SpteLevelCounts {
  const s = step as Record<string, unknown>;
  if (s === null || typeof s !== "object") {
    throw new DisplayError(`steps[${i}] must be an object of spte counts, got ${plainText(s)}`);
  }
  const src = (s.stat ?? s.stats ?? s) as Record<string, unknown>;
  const out: SpteLevelCounts = {};
  for (const { key } of LEVELS) {
    const v = src[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new DisplayError(
        `steps[${i}].${key} must be a non-negative integer count, got ${plainText(v)}`,
      );
    }
    out[key] = v;
  }
  if (Object.keys(out).length === 0) {
    throw new DisplayError(
      `steps[${i}] has none of pages_4k, pages_2m, pages_1g (directly or under stat/stats), got ${plainText(step)}`,
    );
  }
  return out;
}

/** A value for an error message, strings in quotes (a bare word reads like part of the sentence). */
function quoted(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : plainText(v);
}

/** Options from the old `(title, xTitle)` shape or an options object, checked. */
function plotOptions(
  titleOrOptions: string | SpteLevelPlotOptions | undefined,
  xTitle: string | undefined,
): SpteLevelPlotOptions {
  const o: SpteLevelPlotOptions =
    typeof titleOrOptions === "string" || titleOrOptions === undefined
      ? { title: titleOrOptions, xTitle }
      : { xTitle, ...titleOrOptions };
  if (titleOrOptions !== undefined && typeof titleOrOptions !== "string") {
    if (titleOrOptions === null || typeof titleOrOptions !== "object") {
      throw new DisplayError(
        `options must be a title string or { title?, xTitle?, yAxis?, view? }, got ${plainText(titleOrOptions)}`,
      );
    }
  }
  if (o.yAxis !== undefined && o.yAxis !== "linear" && o.yAxis !== "log") {
    throw new DisplayError(`yAxis must be "linear" or "log", got ${quoted(o.yAxis)}`);
  }
  if (o.view !== undefined && o.view !== "sptes" && o.view !== "bytes") {
    throw new DisplayError(`view must be "sptes" or "bytes", got ${quoted(o.view)}`);
  }
  return o;
}

/**
 * The plotly figure of spte counts by level (pages_4k, pages_2m, pages_1g) across the steps of an
 * experiment, or of the memory each page size maps (`view: "bytes"`); x is each step's
 * `label`/`step`, or its index. The old call shape `(steps, title, xTitle)` still works.
 * @throws DisplayError naming the step and field of a bad count, a step with no level, or a bad
 * option.
 */
export function spteLevelFigure(
  steps: ReadonlyArray<SpteStep>,
  titleOrOptions?: string | SpteLevelPlotOptions,
  xTitle?: string,
): PlotlyFigure {
  const o = plotOptions(titleOrOptions, xTitle);
  if (!Array.isArray(steps) || steps.length === 0) {
    throw new DisplayError(
      `steps must be a non-empty array of spte counts, got ${plainText(steps)}`,
    );
  }
  const counts = steps.map(countsOf);
  const x = steps.map((s, i) => {
    const r = s as { label?: string | number; step?: string | number };
    return r.label ?? r.step ?? i;
  });
  const bytes = o.view === "bytes";
  const log = o.yAxis === "log";
  const data = LEVELS.filter(({ key }) => counts.some((c) => c[key] !== undefined)).map(
    ({ key, bytes: size, name }) => ({
      type: "scatter",
      mode: "lines+markers",
      name: bytes ? name : key,
      x,
      // A missing level is a gap (null), as is a zero on a log axis.
      y: counts.map((c) => {
        const n = c[key];
        if (n === undefined || (log && n === 0)) return null;
        return bytes ? n * size : n;
      }),
    }),
  );
  return {
    data: data as PlotlyFigure["data"],
    layout: {
      title: { text: o.title ?? (bytes ? "memory mapped by page size" : "SPTEs by level") },
      xaxis: { title: { text: o.xTitle ?? "step" } },
      yaxis: { title: { text: bytes ? "bytes mapped" : "sptes" }, type: log ? "log" : "linear" },
    },
  };
}

/**
 * Records spte counts step by step. `vm.stats` is live (it keeps changing), so each
 * {@link SpteSeries.record} copies the pages_4k/2m/1g it has at the time of the call.
 *
 * ```ts
 * const series = new SpteSeries();
 * series.record("boot", vm.stats);
 * // ... faults, dirty logging, zaps ...
 * series.record("after dirty-log", vm.stats);
 * plotSpteLevels(series, { yAxis: "log" });
 * ```
 */
export class SpteSeries {
  readonly steps: (SpteLevelCounts & { label: string | number })[] = [];

  /** Copies the counts of `source` (stats, or anything with `stat`/`stats` holding them). */
  record(label: string | number, source: SpteStep | { stats: SpteLevelCounts }): this {
    const c = countsOf(source as SpteStep, this.steps.length);
    this.steps.push({ label, ...c });
    return this;
  }
}

/**
 * Plots {@link spteLevelFigure} of an array of steps or a {@link SpteSeries}:
 * `plotSpteLevels(steps, "title", "x title")` or
 * `plotSpteLevels(steps, { title, xTitle, yAxis: "log", view: "bytes" })`.
 */
export function plotSpteLevels(
  steps: ReadonlyArray<SpteStep> | SpteSeries,
  titleOrOptions?: string | SpteLevelPlotOptions,
  xTitle?: string,
): void {
  plot(spteLevelFigure(steps instanceof SpteSeries ? steps.steps : steps, titleOrOptions, xTitle));
}

/** Thrown by {@link Progress.update} after the user interrupted the kernel (core's class). */
export { InterruptedError };

/** Minimum time between two progress updates sent to the front end. */
const PROGRESS_INTERVAL_MS = 100;

/**
 * An updating progress display (display_data once, then update_display_data). Throttled: at most
 * one update per 100 ms, plus the final state. `update()` throws {@link InterruptedError} once the
 * kernel got an interrupt, so loops that report progress stop cleanly, even asynchronous ones.
 */
export class Progress {
  readonly total: number;
  readonly label: string;
  private readonly id = randomUUID();
  private doneCount = 0;
  private lastSent = 0;
  private finished: "" | "done" | "interrupted" | "failed" = "";
  private detail = "";

  constructor(total: number, label = "progress", detail = "") {
    if (!Number.isInteger(total) || total <= 0) {
      throw new RangeError(`progress total must be a positive integer, got ${plainText(total)}`);
    }
    this.total = total;
    this.label = label;
    this.detail = detail;
    currentSession()?.openProgress.add(this);
    this.send(false, "running");
  }

  /** Sets the number of steps done (0..total), and optionally what is being done now. */
  update(done: number, detail?: string): void {
    // A bar the kernel closed as interrupted (its cell was stopped while awaiting) stops the
    // loop still feeding it, even after the next cell has started.
    if (currentSession()?.interruptRequested || this.finished === "interrupted") {
      this.finish("interrupted");
      throw new InterruptedError(`interrupted at ${this.doneCount}/${this.total} (${this.label})`);
    }
    if (!Number.isFinite(done) || done < 0 || done > this.total) {
      throw new RangeError(`progress done must be within 0..${this.total}, got ${plainText(done)}`);
    }
    this.doneCount = done;
    if (detail !== undefined) this.detail = detail;
    const now = Date.now();
    if (now - this.lastSent >= PROGRESS_INTERVAL_MS) this.send(true, "running");
  }

  /** Adds `n` steps. */
  tick(n = 1): void {
    this.update(Math.min(this.total, this.doneCount + n));
  }

  /** Marks the display finished (done, interrupted or failed); later calls do nothing. */
  finish(state: "done" | "interrupted" | "failed" = "done"): void {
    if (this.finished !== "") return;
    this.finished = state;
    if (state === "done") this.doneCount = this.total;
    currentSession()?.openProgress.delete(this);
    this.send(true, state);
  }

  private send(update: boolean, state: string): void {
    this.lastSent = Date.now();
    const pct = Math.floor((100 * this.doneCount) / this.total);
    const text = `${this.label}: ${this.doneCount}/${this.total} (${pct}%)${state === "running" ? "" : ` ${state}`}${this.detail === "" ? "" : ` · ${this.detail}`}`;
    const colour = state === "interrupted" || state === "failed" ? "#d62728" : "#1f77b4";
    const html = `<div class="mmulab-progress" style="font-family:monospace;font-size:12px"><div style="display:inline-block;width:240px;height:10px;border:1px solid #999;vertical-align:middle"><div style="width:${pct}%;height:100%;background:${colour}"></div></div> ${escapeHtml(text)}</div>`;
    const session = currentSession();
    if (session === undefined) {
      if (state !== "running") process.stdout.write(`${text}\n`);
      return;
    }
    session.publishDisplay(
      { "text/html": html, "text/plain": text },
      { displayId: this.id, update },
    );
  }
}

/** Starts a {@link Progress} display of `total` steps. */
export function progress(total: number, label?: string): Progress {
  return new Progress(total, label);
}
