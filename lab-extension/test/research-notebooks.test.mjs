// The write-ups, labs and research notebooks (03 and up) in the JupyterLab `npm start` serves, on a workspace
// prepared as `npm start` prepares workspace/: each runs top to bottom with the mmulab kernel, every
// plotly figure in it is drawn by the renderer, no cell shows an error, and the page has
// no console errors. Their numbers are checked in test/src (nbconvert); this is the browser side.
import assert from "node:assert/strict";
import { readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { prepareWorkspace, SHIPPED } from "../../scripts/workspace.mjs";
import {
  activeNotebook,
  artifacts,
  assertCleanPage,
  deleteSessions,
  LIMITS,
  launchBrowser,
  newPage,
  openAndRunAll,
  publishScreenshots,
  startTestLab,
  TIMEOUT,
} from "./helpers.mjs";

/** Every shipped notebook numbered 03 and up (00-02 have browser tests of their own). */
const NOTEBOOKS = readdirSync(SHIPPED)
  .filter((f) => /^(0[3-9]|[1-9]\d)-.*\.ipynb$/.test(f))
  .sort();

const ws = path.join(artifacts, "research-workspace");
const SEED_PLOT = "seed-2015-plot.png";
let lab;
let browser;
let ctx;

before(
  async () => {
    rmSync(ws, { recursive: true, force: true });
    prepareWorkspace(ws);
    lab = await startTestLab({ root: ws, name: "research" });
    browser = await launchBrowser();
    ctx = await newPage(browser);
  },
  { timeout: TIMEOUT.setup },
);

after(
  async () => {
    await browser?.close();
    await lab?.stop();
  },
  { timeout: LIMITS.action },
);

describe("research notebooks in JupyterLab", () => {
  test("there are research notebooks to open", () => {
    assert.ok(NOTEBOOKS.length >= 4, NOTEBOOKS.join(", "));
  });

  for (const name of NOTEBOOKS) {
    test(`${name}: runs with the mmulab kernel; its renderers and plots are drawn; no error output`, {
      timeout: TIMEOUT.notebook,
    }, async () => {
      const { page } = ctx;
      // One kernel at a time on 2 cores: the previous notebook's session goes first.
      await deleteSessions(lab);
      await openAndRunAll(page, lab, name);
      const nb = activeNotebook(page);
      const nCode = await nb.locator(".jp-CodeCell").count();
      await page.waitForFunction(
        (n) => {
          const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
          const prompts = [...(p?.querySelectorAll(".jp-CodeCell .jp-InputArea-prompt") ?? [])];
          return prompts.length === n && prompts.every((e) => /\[\d+\]/.test(e.textContent));
        },
        nCode,
        { timeout: LIMITS.run, polling: 250 },
      );
      assert.equal(
        await nb
          .locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
          .count(),
        0,
        `${name}: a cell shows an error`,
      );
      // Every notebook shows at least one of our renderers' outputs (tree, walk or plot); a lab
      // may have no plot, every write-up has at least one.
      const isLab = /-lab\.ipynb$/.test(name);
      const drawn = nb.locator(".mmulab-plotly.js-plotly-plot");
      if (!isLab) await drawn.first().locator(".main-svg").first().waitFor({ timeout: LIMITS.run });
      assert.ok((await nb.locator(".mmulab-output").count()) >= 1, `${name}: no mmulab output`);
      const nDrawn = await drawn.count();
      for (let i = 0; i < nDrawn; i++)
        await drawn.nth(i).locator(".main-svg").first().waitFor({ timeout: LIMITS.action });
      await page.screenshot({ path: path.join(artifacts, `research-${name}.png`) });
      // The README's seed plot: the 2015 write-up's comparison of the four collapse behaviours,
      // cropped to the figure.
      if (name.startsWith("04-")) {
        const fig = drawn.filter({ hasText: "pages_2m over the cancelled migration" }).first();
        await fig.scrollIntoViewIfNeeded();
        await fig.screenshot({ path: path.join(artifacts, SEED_PLOT) });
      }
    });
  }

  test("no uncaught exception, no console error, nothing fetched from outside 127.0.0.1", () => {
    assertCleanPage(ctx);
  });

  test("seed plot screenshot saved; docs/img refreshed when MMULAB_UPDATE_DOCS_IMG=1", () => {
    assert.ok(statSync(path.join(artifacts, SEED_PLOT)).size > 1000, `${SEED_PLOT} not written`);
    publishScreenshots({ [SEED_PLOT]: SEED_PLOT });
  });
});
