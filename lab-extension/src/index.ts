/**
 * `@mmulab/lab-extension`: JupyterLab 4 mime renderers for mmulab's display payloads.
 *
 * Every payload is checked with core's `validateDisplayPayload` (the same schema file the kernel
 * validates with) before anything is drawn; a payload that fails, or a renderer that throws, is
 * drawn as a readable error box inside the output instead of disappearing (JupyterLab drops
 * render errors on update_display_data). All renderers are `safe`: they build DOM with
 * textContent only, so they may run on untrusted notebooks.
 */

import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { Widget } from "@lumino/widgets";
import {
  PAGETABLE_MIME,
  type PagetablePayload,
  PLOTLY_MIME,
  validateDisplayPayload,
  WALK_MIME,
  WALK2D_MIME,
  type Walk2dPayload,
  type WalkPayload,
} from "@mmulab/core/display";
import { errorBox, h } from "./dom";
import { renderPagetable } from "./pagetable";
import { type Figure, purgePlotly, renderPlotly } from "./plotly";
import { renderWalk } from "./walk";
import { renderWalk2d } from "./walk2d";

export { decodePfErrorCode } from "./walk";
export { PAGETABLE_MIME, PLOTLY_MIME, WALK_MIME, WALK2D_MIME };

/** Rank below 50 (text/html's) so our view wins over the HTML fallback the kernel also sends. */
const RANK = 20;

const TITLES: Record<string, string> = {
  [PAGETABLE_MIME]: "mmulab page-table payload",
  [WALK_MIME]: "mmulab walk payload",
  [WALK2D_MIME]: "mmulab 2-D walk payload",
  [PLOTLY_MIME]: "plotly figure",
};

/** One output's widget; the same class draws every MIME type below. */
export class MmulabRenderer extends Widget implements IRenderMime.IRenderer {
  private readonly mimeType: string;

  constructor(options: IRenderMime.IRendererOptions) {
    super();
    this.mimeType = options.mimeType;
    this.addClass("mmulab-output");
    this.node.dataset.mime = this.mimeType;
  }

  /** Draws the model's payload, or an error box saying why it cannot be drawn. */
  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[this.mimeType] as unknown;
    if (this.mimeType === PLOTLY_MIME) purgePlotly(this.node);
    this.node.replaceChildren();
    try {
      const check = validateDisplayPayload(this.mimeType, data);
      if (!check.ok) {
        this.node.appendChild(
          errorBox(
            `Cannot show this ${TITLES[this.mimeType] ?? this.mimeType}`,
            check.message,
            check.errors,
          ),
        );
        return;
      }
      const host = h("div", { cls: "mmulab-view" });
      this.node.appendChild(host);
      if (this.mimeType === PAGETABLE_MIME) {
        host.classList.add("mmulab-pagetable");
        renderPagetable(host, data as PagetablePayload);
      } else if (this.mimeType === WALK_MIME) {
        host.classList.add("mmulab-walk");
        renderWalk(host, data as WalkPayload);
      } else if (this.mimeType === WALK2D_MIME) {
        host.classList.add("mmulab-walk2d");
        renderWalk2d(host, data as Walk2dPayload);
      } else {
        host.classList.add("mmulab-plotly");
        await renderPlotly(host, data as Figure);
      }
    } catch (err) {
      this.node.replaceChildren(
        errorBox(
          `mmulab renderer failed on this ${TITLES[this.mimeType] ?? this.mimeType}`,
          err instanceof Error ? err.message : String(err),
        ),
      );
    }
  }

  protected override onBeforeDetach(): void {
    if (this.mimeType === PLOTLY_MIME) purgePlotly(this.node);
  }
}

/** Renderer factory for mmulab's MIME types and plotly's. */
export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [PAGETABLE_MIME, WALK_MIME, WALK2D_MIME, PLOTLY_MIME],
  defaultRank: RANK,
  createRenderer: (options) => new MmulabRenderer(options),
};

/** The mime extension JupyterLab loads. */
const extension: IRenderMime.IExtension = {
  id: "@mmulab/lab-extension:renderers",
  rendererFactory,
  rank: RANK,
  dataType: "json",
};

export default extension;
