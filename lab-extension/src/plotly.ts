/**
 * Plotly figures (`application/vnd.plotly.v1+json`) drawn with plotly.js-dist-min, imported on
 * the first figure only (a separate bundle chunk, about 4 MB, never fetched from a CDN) so notebooks
 * without plots pay nothing. The figure is handed to Plotly as data; Plotly draws labels as SVG text.
 */

/** The part of Plotly's API used here. */
interface PlotlyApi {
  newPlot(el: HTMLElement, data: unknown[], layout?: unknown, config?: unknown): Promise<unknown>;
  purge(el: HTMLElement): void;
  Plots?: { resize(el: HTMLElement): void };
}

let plotly: Promise<PlotlyApi> | undefined;

/** Loads plotly once, memoised; a failed load is forgotten so a later render can retry. */
export function loadPlotly(): Promise<PlotlyApi> {
  if (!plotly) {
    plotly = import(/* webpackChunkName: "plotly" */ "plotly.js-dist-min").then(
      (m: { default?: PlotlyApi } & Partial<PlotlyApi>) => m.default ?? (m as PlotlyApi),
    );
    plotly.catch(() => {
      plotly = undefined;
    });
  }
  return plotly;
}

/** Figure fields passed to Plotly: traces, layout and a restricted config (no edits, no links out). */
export interface Figure {
  data: unknown[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/** Draws `figure` into `el`. */
export async function renderPlotly(el: HTMLElement, figure: Figure): Promise<void> {
  const api = await loadPlotly();
  const layout = { autosize: true, ...(figure.layout ?? {}) };
  // Only display options are taken from the payload; editing and "edit in chart studio" links are off.
  const config = {
    responsive: true,
    displaylogo: false,
    editable: false,
    showLink: false,
    showEditInChartStudio: false,
    staticPlot: figure.config?.staticPlot === true,
  };
  await api.newPlot(el, figure.data, layout, config);
}

/** Releases plotly's listeners on `el` if plotly was loaded. */
export function purgePlotly(el: HTMLElement): void {
  if (!plotly) return;
  void plotly.then((api) => api.purge(el)).catch(() => undefined);
}
