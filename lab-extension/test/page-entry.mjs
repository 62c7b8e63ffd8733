// Bundled by esbuild into a standalone test page: the renderer exactly as JupyterLab loads it
// (lib/ + style), plus the payload generators, so the stress test measures the renderer alone.
import { Widget } from "@lumino/widgets";
import "../style/base.css";
import { MmulabRenderer, PAGETABLE_MIME } from "../lib/index.js";
import * as payloads from "./payloads.mjs";

/** The widgets rendered so far, for {@link window.mmulabTest.disposeAll}. */
const widgets = [];

window.mmulabTest = {
  ...payloads,
  /** Renders `payload` into a new widget attached to the page; resolves with timings (ms). */
  async render(payload, mime = PAGETABLE_MIME) {
    const r = new MmulabRenderer({
      mimeType: mime,
      sanitizer: null,
      resolver: null,
      linkHandler: null,
      latexTypesetter: null,
    });
    Widget.attach(r, document.body);
    widgets.push(r);
    r.node.dataset.testId = String(document.querySelectorAll(".mmulab-output").length - 1);
    const t0 = performance.now();
    await r.renderModel({ data: { [mime]: payload }, metadata: {}, trusted: false, setData() {} });
    const built = performance.now() - t0;
    // First paint: the frame after the DOM was built has been painted once the next task runs.
    await new Promise((res) => requestAnimationFrame(() => setTimeout(res, 0)));
    return { built, painted: performance.now() - t0 };
  },
  /** Detaches and disposes every rendered widget (the fuzz renders a thousand, one at a time). */
  disposeAll() {
    for (const w of widgets.splice(0)) w.dispose();
  },
  /** Clicks `el` and resolves with the time until the next frame has been painted. */
  async clickAndPaint(el) {
    const t0 = performance.now();
    el.click();
    await new Promise((res) => requestAnimationFrame(() => setTimeout(res, 0)));
    return performance.now() - t0;
  },
};
