// End to end: start what `npm start` starts (mmulab's JupyterLab on Debian's jupyterlab_server,
// with the mmulab kernelspec), open a notebook in Chromium, run all cells with the mmulab kernel
// and check the DOM the renderers drew against the payloads the cells sent.
import assert from "node:assert/strict";
import { mkdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  activeNotebook,
  artifacts,
  assertCleanPage,
  budget,
  LIMITS,
  launchBrowser,
  newPage,
  openAndRunAll,
  prerequisite,
  publishScreenshots,
  shutDown,
  startTestLab,
  TIMEOUT,
  writeNotebook,
} from "./helpers.mjs";
import { PTE, pagetablePayload, plotlyFigure, walkPayload } from "./payloads.mjs";

const PT = pagetablePayload();
const WALK = walkPayload();
const FIG = plotlyFigure();
/** What the simulator cells map: gva 0x400000.. → gpa 0x100000.., 3 pages of 4 KiB; a walk at +0x1234. */
const SIM = { gva: 0x400000, gpa: 0x100000, pages: 3, walkOffset: 0x1234 };

/** The notebook: the mmulab kernel validates and sends each payload (displayBundle / plot). */
const CELLS = [
  { md: "# mmulab renderers — browser test notebook" },
  'import { displayBundle, plot } from "@mmulab/kernel";\nimport { pagetableBundle, walkBundle } from "@mmulab/core";',
  `const snapshot = ${JSON.stringify(PT)};\ndisplayBundle(pagetableBundle(snapshot as any));`,
  `displayBundle(walkBundle(${JSON.stringify(WALK)} as any));`,
  `plot(${JSON.stringify(FIG)} as any);`,
  // The simulator itself: guest page tables built through guest stores, a snapshot and a walk,
  // each shown through its [Symbol.for("Jupyter.display")]() bundle.
  [
    'import { display } from "@mmulab/kernel";',
    'import { createVm, GuestPageTableBuilder } from "@mmulab/core";',
    "const MiB = 2 ** 20;",
    'const vm = createVm({ mmu: "none" });',
    "vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });",
    'const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 32 * MiB, poolSize: 4 * MiB });',
    `b.map(${SIM.gva}, ${SIM.gpa}, ${SIM.pages} * 4096);`,
    "const vcpu = vm.createVcpu();",
    "vcpu.setSregs(b.sregs({ nx: true }));",
    'display(b.snapshot({ title: "simulated guest tables" }));',
  ].join("\n"),
  `display(vcpu.walk(${SIM.gva + SIM.walkOffset}, { write: true, user: true }));`,
];

/** dirty_log_perf_test in a cell: 2 vCPUs × 16 MiB, 1 iteration (5 phases). */
const DLP = { vcpus: 2, mib: 16, phases: 5 };
const DLP_CELLS = [
  'import { runDirtyLogPerf } from "@mmulab/kernel";',
  `await runDirtyLogPerf({ vcpus: ${DLP.vcpus}, bytesPerVcpu: ${DLP.mib} * 2 ** 20, iterations: 1 })`,
];

let lab;
let browser;
let page;
let pageErrors;
let consoleErrors;
let httpErrors;
let external;
const root = path.join(artifacts, "lab-root");
const ran = prerequisite("opening and running the notebook");

before(
  async () => {
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    // The root lies inside the repo so the kernel resolves @mmulab/* from the repo's node_modules.
    writeNotebook(path.join(root, "renderers.ipynb"), CELLS);
    writeNotebook(path.join(root, "dirty-log-perf.ipynb"), DLP_CELLS);
    lab = await startTestLab({ root, name: "lab" });
    browser = await launchBrowser();
    ({ page, pageErrors, consoleErrors, external, httpErrors } = await newPage(browser));
  },
  { timeout: TIMEOUT.setup },
);

after(() => shutDown(browser, lab), { timeout: LIMITS.action });

/** Output node of the `n`-th code cell (0-based among code cells) with a renderer's class. */
const out = (cls, n = 0) => page.locator(`.jp-OutputArea-output.mmulab-output .${cls}`).nth(n);

describe("JupyterLab from npm start, mmulab kernel, mmulab renderers", () => {
  test("opens the notebook and runs all cells with the mmulab kernel", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    await openAndRunAll(page, lab, "renderers.ipynb");
    // The cells run in order; the first output includes the kernel's TypeScript start-up.
    const left = budget(LIMITS.run);
    await out("mmulab-pagetable").waitFor({ timeout: left() });
    await out("mmulab-walk").waitFor({ timeout: left() });
    await page.waitForSelector(".mmulab-plotly.js-plotly-plot .main-svg", { timeout: left() });
    await out("mmulab-walk", 1).waitFor({ timeout: left() });
    ran.done();
    // Every code cell ran (an execution count) and none produced an error output. A cell's output
    // arrives before its execute_reply, so the last prompt may still say [*] for a moment.
    const nCode = CELLS.filter((c) => typeof c === "string").length;
    await page
      .waitForFunction(
        (n) => {
          const prompts = [...document.querySelectorAll(".jp-CodeCell .jp-InputArea-prompt")];
          return prompts.length === n && prompts.every((e) => /\[\d+\]/.test(e.textContent));
        },
        nCode,
        { timeout: left(), polling: 250 },
      )
      .catch(() => {}); // the assertions below say which prompt is missing
    const counts = await page.locator(".jp-CodeCell .jp-InputArea-prompt").allTextContents();
    assert.equal(counts.length, nCode);
    for (const c of counts) assert.match(c, /\[\d+\]/, `a cell did not run: prompt ${c}`);
    assert.equal(
      await page
        .locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        .count(),
      0,
    );
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, "lab-notebook.png") });
  });

  test("the tree's nodes and labels match the payload", async () => {
    ran.check();
    const trees = out("mmulab-pagetable").locator(".mmulab-pt-tree");
    assert.equal(await trees.count(), PT.trees.length);
    for (let i = 0; i < PT.trees.length; i++) {
      const t = PT.trees[i];
      const tree = trees.nth(i);
      assert.equal(await tree.getAttribute("data-kind"), t.kind);
      assert.match(
        await tree.locator(".mmulab-pt-tree-title").textContent(),
        new RegExp(t.label.replace(/[()]/g, "\\$&")),
      );
      const rootHead = tree.locator(`.mmulab-pt-table[data-path='${i}'] > .mmulab-pt-table-head`);
      assert.equal(await rootHead.locator(".mmulab-pt-name").textContent(), t.root.name);
      if (t.root.addr)
        assert.equal(await rootHead.locator(".mmulab-pt-addr").textContent(), `@${t.root.addr}`);
    }
    // The guest PT (PML4[0] → PDPT[0] → PD[2]): every payload entry is covered by a row or a
    // folded run, and the absent rows account for the rest of the 512 slots.
    const ptPayload = PT.trees[0].root.entries[0].child.entries[0].child.entries[0].child;
    const pt = out("mmulab-pagetable").locator(".mmulab-pt-table[data-path='0.0.0.2']");
    await pt.waitFor();
    const body = pt.locator(":scope > .mmulab-pt-body");
    const absent = await body
      .locator(":scope > .mmulab-pt-absent")
      .evaluateAll((els) => els.map((e) => Number(e.dataset.count)));
    const covered = new Set();
    for (const r of await body
      .locator(":scope > .mmulab-pt-runwrap > .mmulab-pt-run")
      .evaluateAll((els) => els.map((e) => [Number(e.dataset.first), Number(e.dataset.count)]))) {
      for (let k = 0; k < r[1]; k++) covered.add(r[0] + k);
    }
    for (const idx of await body
      .locator(":scope > .mmulab-pt-entry")
      .evaluateAll((els) => els.map((e) => Number(e.dataset.index))))
      covered.add(idx);
    assert.deepEqual(
      [...covered].sort((a, b) => a - b),
      ptPayload.entries.map((e) => e.index).sort((a, b) => a - b),
    );
    assert.equal(
      absent.reduce((a, b) => a + b, 0),
      ptPayload.size - ptPayload.entries.length,
    );
    // Diff against `before`: PT[11] is new in this snapshot and is marked added.
    const beforePt = PT.before[0].root.entries[0].child.entries[0].child.entries[0].child;
    const added = ptPayload.entries
      .filter((e) => !beforePt.entries.some((b) => b.index === e.index))
      .map((e) => e.index);
    assert.deepEqual(added, [11]);
    const addedRows = await body
      .locator(".mmulab-diff-added")
      .evaluateAll((els) => els.map((e) => Number(e.dataset.index)));
    assert.deepEqual(addedRows, added);
    // Colour by state: the dirty leaf carries the dirty state class.
    assert.equal(
      await body.locator(".mmulab-pt-entry[data-index='10']").getAttribute("data-state"),
      "dirty",
    );
    await out("mmulab-pagetable").screenshot({ path: path.join(artifacts, "pagetable.png") });
  });

  test("a click expands and collapses a table", async () => {
    ran.check();
    const tdpPt = out("mmulab-pagetable").locator(".mmulab-pt-table[data-path='1.0.0.1']");
    const toggle = tdpPt.locator(":scope > .mmulab-pt-table-head > .mmulab-toggle");
    const body = tdpPt.locator(":scope > .mmulab-pt-body");
    const was = await toggle.getAttribute("aria-expanded");
    await toggle.click();
    assert.equal(await toggle.getAttribute("aria-expanded"), was === "true" ? "false" : "true");
    assert.equal(await body.isVisible(), was !== "true");
    await toggle.click();
    assert.equal(await toggle.getAttribute("aria-expanded"), was);
    assert.equal(await body.isVisible(), was === "true");
    // A folded run unfolds into its entries on click.
    const run = out("mmulab-pagetable")
      .locator(".mmulab-pt-table[data-path='0.0.0.2'] .mmulab-pt-run")
      .first();
    const n = Number(await run.getAttribute("data-count"));
    await run.locator(".mmulab-run-toggle").click();
    assert.equal(
      await run.locator("xpath=..").locator(".mmulab-pt-runbody > .mmulab-pt-entry").count(),
      n,
    );
  });

  test("a selected entry shows its decoded bits, frame and range", async () => {
    ran.check();
    const row = out("mmulab-pagetable").locator(
      ".mmulab-pt-table[data-path='0.0.0.2'] .mmulab-pt-entry[data-index='20']",
    );
    await row.click();
    const detail = out("mmulab-pagetable").locator(".mmulab-detail");
    const fields = await detail
      .locator("tr[data-field]")
      .evaluateAll((els) => els.map((e) => e.dataset.field));
    // PT[20] = frame 0x214 | P | U/S | A (built in payloads.mjs from the x86 PTE's bit numbers).
    const value = BigInt(
      PT.trees[0].root.entries[0].child.entries[0].child.entries[0].child.entries.find(
        (e) => e.index === 20,
      ).value,
    );
    const expect = [];
    if (value & (1n << BigInt(PTE.P))) expect.push("P");
    if (value & (1n << BigInt(PTE.RW))) expect.push("R/W");
    if (value & (1n << BigInt(PTE.US))) expect.push("U/S");
    if (value & (1n << BigInt(PTE.A))) expect.push("A");
    if (value & (1n << BigInt(PTE.D))) expect.push("D");
    for (const f of expect) assert.ok(fields.includes(f), `field ${f} missing from ${fields}`);
    assert.ok(!fields.includes("R/W"), "R/W shown for a read-only entry");
    // biome-ignore lint/performance/useDomNodeTextContent: the patterns need the breaks between fields
    const text = await detail.innerText();
    // The PT sits under PD[2]: it maps from 2 * 2 MiB; entry 20 maps 4 KiB at 20 * 4 KiB above that.
    const start = 2n * 0x200000n + 20n * 0x1000n;
    assert.match(text, new RegExp(`0x${start.toString(16)} – 0x${(start + 0xfffn).toString(16)}`));
    assert.match(text, /gfn\s+0x214/);
    // Text of a note stays text.
    assert.match(text, /read-only <b>text<\/b>/);
    await detail.screenshot({ path: path.join(artifacts, "pagetable-detail.png") });
  });

  test("search by address walks to the entry", async () => {
    ran.check();
    const pt = out("mmulab-pagetable");
    await pt.locator(".mmulab-search-input").fill("0x40b123");
    await pt.locator(".mmulab-search-go").click();
    const title = await pt.locator(".mmulab-detail-title").textContent();
    // 0x40b123: PD index (bits 29:21) = 2, PT index (bits 20:12) = 11.
    assert.match(title, new RegExp(`PT\\[${(0x40b123 >> 12) & 511}\\]`));
    assert.match(
      await pt.locator(".mmulab-search-result").textContent(),
      /PML4\[0\] → PDPT\[0\] → PD\[2\] → PT\[11\] → leaf/,
    );
  });

  test("the walk trace lists every level and decodes the fault", async () => {
    ran.check();
    const w = out("mmulab-walk");
    const levels = await w
      .locator(".mmulab-walk-level")
      .evaluateAll((els) => els.map((e) => e.dataset.name));
    assert.deepEqual(
      levels,
      WALK.levels.map((l) => l.name),
    );
    const bits = await w
      .locator(".mmulab-walk-bitfield")
      // biome-ignore lint/performance/useDomNodeTextContent: \b needs the breaks between name and value
      .evaluateAll((els) => els.map((e) => e.innerText));
    assert.equal(bits.length, WALK.indexBits.length);
    for (let i = 0; i < bits.length; i++)
      assert.match(bits[i], new RegExp(`\\b${WALK.indexBits[i].value}\\b`));
    // A/D: the walk set A on the three upper levels and nothing on the leaf.
    const ad = await w.locator(".mmulab-walk-ad").allInnerTexts();
    assert.deepEqual(
      ad,
      WALK.levels.map((l) => (l.aSet ? "A" : "—")),
    );
    // Error code 7 = P | W | U (x86: bit 0 present, bit 1 write, bit 2 user).
    const errs = await w
      .locator(".mmulab-walk-errbits li")
      .evaluateAll((els) => Object.fromEntries(els.map((e) => [e.dataset.bit, e.dataset.set])));
    assert.equal(errs.P, "true");
    assert.equal(errs.W, "true");
    assert.equal(errs.U, "true");
    assert.match(await w.textContent(), /protection violation/);
    await w.screenshot({ path: path.join(artifacts, "walk.png") });
  });

  test("the plotly plot has its traces", async () => {
    ran.check();
    const n = await page.locator(".mmulab-plotly.js-plotly-plot").evaluate((el) => el.data.length);
    assert.equal(n, FIG.data.length);
    assert.equal(
      await page.locator(".mmulab-plotly .scatterlayer .trace").count(),
      FIG.data.filter((t) => t.type === "scatter").length,
    );
    assert.equal(
      await page.locator(".mmulab-plotly .barlayer .trace").count(),
      FIG.data.filter((t) => t.type === "bar").length,
    );
    await page.locator(".mmulab-plotly").screenshot({ path: path.join(artifacts, "plotly.png") });
  });

  test("the simulator's own snapshot and walk render", async () => {
    ran.check();
    const tree = out("mmulab-pagetable", 1);
    await tree.locator(".mmulab-search-input").fill(`0x${(SIM.gva + SIM.walkOffset).toString(16)}`);
    await tree.locator(".mmulab-search-go").click();
    // 4-level paging: gva bits 20:12 index the PT; the leaf points at the frame mapped there.
    const va = SIM.gva + SIM.walkOffset;
    const ptIndex = Math.floor(va / 4096) % 512;
    const gfn = (SIM.gpa + (va - SIM.gva)) >>> 12;
    // The snapshot may fold the alike leaves into one run; the detail then names the entry in it.
    assert.match(
      await tree.locator(".mmulab-detail-title").textContent(),
      new RegExp(`PT\\[${ptIndex}\\]|PT\\[\\d+–\\d+\\] · entry \\[${ptIndex}\\]`),
    );
    assert.match(
      await tree.locator(".mmulab-detail").textContent(),
      new RegExp(`gfn0x${gfn.toString(16)}(?![0-9a-f])`),
    );
    // The PT holds exactly the mapped pages: a run or rows covering SIM.pages indices.
    const walk = out("mmulab-walk", 1);
    const levels = await walk
      .locator(".mmulab-walk-level")
      .evaluateAll((els) => els.map((e) => e.dataset.name));
    assert.deepEqual(levels, ["PML4", "PDPT", "PD", "PT"]);
    const gpa = SIM.gpa + SIM.walkOffset;
    assert.match(
      await walk.locator(".mmulab-walk-ok").textContent(),
      new RegExp(`gpa 0x${gpa.toString(16)}\\b`),
    );
    await tree.screenshot({ path: path.join(artifacts, "simulated-pagetable.png") });
  });

  test("runDirtyLogPerf in a cell: a finished bar named by phase, the per-phase table, the plotly figure", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    ran.check();
    await openAndRunAll(page, lab, "dirty-log-perf.ipynb");
    const nb = activeNotebook(page);
    const left = budget(LIMITS.run);
    const total = DLP.phases * 1000;
    await nb
      .locator(".mmulab-progress", {
        hasText: `dirty_log_perf_test: ${total}/${total} (100%) done · disable dirty logging (${DLP.phases}/${DLP.phases})`,
      })
      .waitFor({ timeout: left() });
    const table = nb.locator(".jp-OutputArea-output table", { hasText: "populate memory" });
    await table.waitFor({ timeout: left() });
    // One row per phase (plus the header row).
    assert.equal(await table.locator("tr").count(), DLP.phases + 1);
    const plot = nb.locator(".mmulab-plotly.js-plotly-plot");
    await plot.locator(".main-svg").first().waitFor({ timeout: left() });
    // faults, flushes, splits: one bar trace each.
    assert.equal(await plot.locator(".barlayer .trace").count(), 3);
    await nb.screenshot({ path: path.join(artifacts, "dirty-log-perf.png") });
  });

  test("File > New > Notebook starts the mmulab kernel without asking which", async () => {
    ran.check();
    await page.locator(".lm-MenuBar-itemLabel", { hasText: /^File$/ }).click();
    await page.locator(".lm-Menu-itemLabel", { hasText: /^New$/ }).click();
    await page.locator(".lm-Menu-itemLabel", { hasText: /^Notebook$/ }).click();
    await page
      .locator(".lm-TabBar-tab.lm-mod-current", { hasText: /Untitled\d*\.ipynb/ })
      .waitFor({ timeout: LIMITS.action });
    // The new notebook's session appears with the mmulab kernel, and no kernel dialog came first.
    let kernels = [];
    const deadline = Date.now() + LIMITS.action;
    while (Date.now() < deadline) {
      const r = await fetch(`${lab.base}/api/sessions?token=${lab.token}`);
      kernels = (await r.json()).map((x) => `${x.path}: ${x.kernel?.name}`);
      if (kernels.some((k) => /^Untitled\d*\.ipynb:/.test(k))) break;
      assert.equal(await page.locator(".jp-Dialog").count(), 0, "a kernel dialog was shown");
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(
      kernels.some((k) => /^Untitled\d*\.ipynb: mmulab$/.test(k)),
      `sessions: ${kernels.join(", ")}`,
    );
    assert.equal(await page.locator(".jp-Dialog").count(), 0, "a kernel dialog was shown");
  });

  test("no uncaught exception, no console error, nothing fetched from outside 127.0.0.1", () => {
    assertCleanPage({ pageErrors, httpErrors, consoleErrors, external });
  });

  test("screenshots saved; docs/img refreshed when MMULAB_UPDATE_DOCS_IMG=1", () => {
    const shots = [
      "pagetable.png",
      "walk.png",
      "plotly.png",
      "pagetable-detail.png",
      "simulated-pagetable.png",
    ];
    for (const f of shots)
      assert.ok(statSync(path.join(artifacts, f)).size > 1000, `${f} not written`);
    publishScreenshots(Object.fromEntries(shots.map((f) => [f, `lab-${f}`])));
  });
});
