// Renderer stress: a snapshot with 100,000 present 4 KiB leaves (196 full PTs under one PD).
// Times are printed (goal: first paint < 1 s), never asserted; the test checks what was drawn.
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { artifacts, rendererPageFixture, TIMEOUT } from "./helpers.mjs";

const LEAVES = 100000;
const fx = rendererPageFixture();

test(`renders ${LEAVES} present leaves and expands a table (times printed, not asserted)`, {
  timeout: TIMEOUT.page,
}, async () => {
  const { page, pageErrors } = fx;
  const t = await page.evaluate(async (n) => {
    const payload = window.mmulabTest.stressPayload(n);
    return window.mmulabTest.render(payload);
  }, LEAVES);
  console.log(
    `stress: ${LEAVES} leaves — validate+build ${t.built.toFixed(0)} ms, first paint ${t.painted.toFixed(0)} ms (goal < 1000 ms)`,
  );
  const pts = Math.ceil(LEAVES / 512);
  // The PD lists one row per PT (PD[0..pts-1]) and one absent row for the rest of its 512 slots.
  const pdRows = await page
    .locator(".mmulab-pt-table[data-path='0.0.0'] > .mmulab-pt-body > .mmulab-pt-entry")
    .count();
  assert.equal(pdRows, pts);
  // Only the tables that fit the first-paint budget were built; the rest wait for a click.
  const built = await page
    .locator(".mmulab-pt-table[data-level='1'] > .mmulab-pt-body > *")
    .count();
  console.log(`stress: rows built in PT tables at first paint: ${built}`);
  const target = page.locator(
    ".mmulab-pt-table[data-path='0.0.0.150'] > .mmulab-pt-table-head > .mmulab-toggle",
  );
  const expandMs = await target.evaluate((el) => window.mmulabTest.clickAndPaint(el));
  const ptRows = page.locator(".mmulab-pt-table[data-path='0.0.0.150'] > .mmulab-pt-body");
  assert.equal(await ptRows.isVisible(), true);
  // Leaves with index i where (150*512 + i) % 7 === 0 are dirty, so runs of alike leaves break there.
  let dirty = 0;
  for (let i = 0; i < 512; i++) if ((150 * 512 + i) % 7 === 0) dirty++;
  const covered = await ptRows.evaluate((body) => {
    let n = 0;
    n += body.querySelectorAll(":scope > .mmulab-pt-entry").length;
    for (const r of body.querySelectorAll(":scope > .mmulab-pt-runwrap > .mmulab-pt-run"))
      n += Number(r.dataset.count);
    return n;
  });
  assert.equal(covered, 512);
  assert.equal(
    await ptRows.locator(":scope > .mmulab-pt-entry[data-state='dirty']").count(),
    dirty,
  );
  const runToggle = ptRows.locator(".mmulab-run-toggle").first();
  const unfoldMs = await runToggle.evaluate((el) => window.mmulabTest.clickAndPaint(el));
  const collapseMs = await target.evaluate((el) => window.mmulabTest.clickAndPaint(el));
  assert.equal(await ptRows.isVisible(), false);
  // Search walks the whole tree to the last leaf.
  const lastVa = (LEAVES - 1) * 4096;
  const input = page.locator(".mmulab-search-input");
  await input.fill(`0x${lastVa.toString(16)}`);
  const searchMs = await page
    .locator(".mmulab-search-go")
    .evaluate((el) => window.mmulabTest.clickAndPaint(el));
  assert.match(
    await page.locator(".mmulab-detail-title").textContent(),
    new RegExp(`PT\\[${(LEAVES - 1) % 512}\\]`),
  );
  console.log(
    `stress: expand one PT ${expandMs.toFixed(0)} ms, unfold a run ${unfoldMs.toFixed(0)} ms, collapse ${collapseMs.toFixed(0)} ms, search to the last leaf ${searchMs.toFixed(0)} ms`,
  );
  assert.deepEqual(pageErrors, []);
  await page.screenshot({ path: path.join(artifacts, "stress.png") });
});

test(`diff of ${LEAVES} leaves against the same leaves folded into runs (time printed, not asserted)`, {
  timeout: TIMEOUT.page,
}, async () => {
  const { page, pageErrors } = fx;
  // One clean leaf of PT 150 becomes dirty (D set); `before` holds every leaf, folded into runs.
  let at = 0;
  while ((150 * 512 + at) % 7 === 0) at++;
  const t = await page.evaluate(
    async ([n, at]) => {
      const { stressPayload, foldLeafRuns, render } = window.mmulabTest;
      const now = stressPayload(n);
      const before = stressPayload(n);
      for (const pt of before.trees[0].root.entries[0].child.entries[0].child.entries)
        pt.child.entries = foldLeafRuns(pt.child.entries);
      const leaf =
        now.trees[0].root.entries[0].child.entries[0].child.entries[150].child.entries[at];
      leaf.value = `0x${(BigInt(leaf.value) | (1n << 6n)).toString(16)}`;
      leaf.flags = [...leaf.flags, "dirty"];
      return render({ ...now, before: before.trees });
    },
    [LEAVES, at],
  );
  console.log(
    `stress: diff against a folded before — validate+diff+build ${t.built.toFixed(0)} ms, first paint ${t.painted.toFixed(0)} ms`,
  );
  const w = page.locator(".mmulab-output").last();
  assert.match(await w.locator(".mmulab-pt-tree-title").textContent(), /Δ 1 changed$/);
  const changed = await w
    .locator(".mmulab-pt-entry.mmulab-diff-changed")
    .evaluateAll((els) => els.map((e) => e.dataset.path));
  assert.deepEqual(changed, [`0.0.0.150.${at}`]);
  assert.deepEqual(pageErrors, []);
});
