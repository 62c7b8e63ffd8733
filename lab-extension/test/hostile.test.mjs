// Hostile payloads in the real JupyterLab: an untrusted notebook whose saved outputs carry
// <script>, <img onerror>, javascript: strings, wrong types, missing fields, a future version and
// 10 MB payloads. Each must render as text or as an error box, with no uncaught exception and
// nothing executed (the strings would set window.__mmulabPwned if they ever ran).
import assert from "node:assert/strict";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  artifacts,
  budget,
  displayOutput,
  LIMITS,
  launchBrowser,
  newPage,
  openLab,
  prerequisite,
  shutDown,
  startTestLab,
  TIMEOUT,
  writeNotebook,
} from "./helpers.mjs";
import { HOSTILE_STRINGS, hostilePayloads } from "./payloads.mjs";

const CASES = hostilePayloads();
const root = path.join(artifacts, "hostile-root");
let lab;
let browser;
let page;
let pageErrors;
let external;
const drawn = prerequisite("drawing the hostile notebook");

before(
  async () => {
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    // One code cell per case with the payload as a saved output; never run, never trusted.
    writeNotebook(
      path.join(root, "hostile.ipynb"),
      CASES.map((c) => ({ code: `// ${c.name}`, outputs: [displayOutput(c.mime, c.data)] })),
    );
    lab = await startTestLab({ root, name: "hostile" });
    browser = await launchBrowser();
    ({ page, pageErrors, external } = await newPage(browser));
  },
  { timeout: TIMEOUT.setup },
);

after(() => shutDown(browser, lab), { timeout: LIMITS.action });

test("hostile payloads render as text or an error box; nothing runs", {
  timeout: TIMEOUT.notebook,
}, async () => {
  const t0 = Date.now();
  const opening = budget(LIMITS.open);
  await openLab(page, lab, "hostile.ipynb", opening);
  const cells = page.locator(".jp-Notebook .jp-CodeCell");
  await page.waitForFunction(
    (n) => document.querySelectorAll(".jp-Notebook .jp-CodeCell").length === n,
    CASES.length,
    { timeout: opening() },
  );
  // Every output settles into our view or our error box (two of them validate about 10 MB).
  const drawing = budget(LIMITS.run);
  await page.waitForFunction(
    (n) =>
      document.querySelectorAll(".mmulab-output .mmulab-view, .mmulab-output .mmulab-error")
        .length >= n,
    CASES.length,
    { timeout: drawing() },
  );
  drawn.done();
  console.log(
    `hostile notebook (${CASES.length} outputs, two of about 10 MB) drawn in ${Date.now() - t0} ms`,
  );
  for (let i = 0; i < CASES.length; i++) {
    const c = CASES[i];
    const outNode = cells.nth(i).locator(".jp-OutputArea-output.mmulab-output");
    assert.equal(await outNode.count(), 1, `${c.name}: not drawn by the mmulab renderer`);
    const errorBoxes = await outNode.locator(".mmulab-error").count();
    const text = await outNode.textContent();
    if (c.expect === "plot") {
      await outNode.locator(".main-svg").first().waitFor({ timeout: drawing() });
      assert.equal(errorBoxes, 0, `${c.name}: error box for a valid figure: ${text.slice(0, 300)}`);
      // Plotly's own SVG is expected here; what must not exist is anything live from the labels.
      const live = await outNode
        .locator(
          "script, img, iframe, object, embed, [onerror], [onload], a[href^='javascript'], a[*|href^='javascript']",
        )
        .count();
      assert.equal(live, 0, `${c.name}: live elements from plotly labels`);
      const links = await outNode
        .locator("a")
        .evaluateAll((els) =>
          els.map((a) => a.getAttribute("href") ?? a.getAttribute("xlink:href")),
        );
      console.log(`${c.name}: plotly drew ${links.length} link(s): ${JSON.stringify(links)}`);
      continue;
    }
    if (c.expect === "render") {
      assert.equal(
        errorBoxes,
        0,
        `${c.name}: error box for a valid payload: ${text.slice(0, 300)}`,
      );
      for (const s of c.texts) assert.ok(text.includes(s), `${c.name}: ${s} not shown as text`);
    } else {
      assert.equal(errorBoxes, 1, `${c.name}: expected an error box, got: ${text.slice(0, 300)}`);
      const msg = await outNode.locator(".mmulab-error-message").textContent();
      assert.ok(
        msg.length > 20 && msg.length < 2000,
        `${c.name}: unreadable message (${msg.length} chars)`,
      );
      if (c.message) assert.match(msg, c.message, `${c.name}: ${msg}`);
      console.log(`${c.name}: ${msg.slice(0, 160)}`);
    }
    // No element that could run or load anything came from a payload.
    const active = await outNode
      .locator("script, img, iframe, object, embed, a, svg, [onerror], [onload]")
      .count();
    assert.equal(active, 0, `${c.name}: active elements inside the output`);
  }
  assert.equal(
    await page.evaluate(() => window.__mmulabPwned),
    undefined,
    "a hostile string was executed",
  );
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(external, []);
  await page.screenshot({ path: path.join(artifacts, "hostile.png") });
});

test("the future-version payload is rejected with a clear message", async () => {
  drawn.check();
  const i = CASES.findIndex((c) => c.name === "future version");
  const msg = await page
    .locator(".jp-Notebook .jp-CodeCell")
    .nth(i)
    .locator(".mmulab-error-message")
    .textContent();
  // Says which version it got, which it supports, and what to do.
  assert.match(msg, /version 2/);
  assert.match(msg, /supported version 1/);
  assert.match(msg, /update/i);
  assert.ok(HOSTILE_STRINGS.length > 0);
});
