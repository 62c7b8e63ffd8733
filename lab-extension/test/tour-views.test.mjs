// The tour's page-table views and 2-D walk made by the real simulator (core/dist), in the
// standalone renderer page at the notebook width of 1,400 px: sideBySide() fits without clipping a tree, Find
// translates a gva through the guest tree and then its gpa through the TDP tree, and changes()
// after touching 8 MiB is a few screens (a folded change list, "show all" expands it), not the
// 2,048 rows it used to be. Expected numbers come from the guest program (pages touched, frames
// mapped) and the x86 index bits.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { test } from "node:test";
import { rendererPageFixture, renderWidget, repo, TIMEOUT } from "./helpers.mjs";
import { HOSTILE_STRINGS } from "./payloads.mjs";

const core = createRequire(import.meta.url)(path.join(repo, "core", "dist", "cjs", "index.js"));
const MiB = 2 ** 20;
const GVA = 0x40000000;
const GPA = 16 * MiB;
const hex = (n) => `0x${n.toString(16)}`;

/**
 * The tour's guest: a TDP VM with 1 GiB of `backing` at gpa 0, guest tables in the pool at 1 MiB,
 * `bytes` of 4 KiB user pages from GVA to GPA.
 */
function tourGuest({ backing = "4k", mode = "4-level", bytes = 8 * MiB } = {}) {
  const vm = core.createVm({ mmu: "tdp" });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 2 ** 30,
    flags: 0,
    backing,
  });
  const tables = new core.GuestPageTableBuilder(vm, { mode, poolBase: MiB, poolSize: MiB });
  tables.map(GVA, GPA, bytes, { user: true, writable: true });
  return { vm, tables };
}

/** notebooks/src/00-tour.nb.txt up to its changes() cell. */
function tour() {
  const { vm, tables } = tourGuest();
  tables.map(0xffff800000000000n, 32 * MiB, 2 * MiB, {
    user: false,
    writable: true,
    pageSize: 2 * MiB,
  });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...tables.sregs({ nx: true }), cpl: 3 });
  vcpu.access(GVA + 0x3123, { write: true, user: true });
  const before = [tables.snapshot(), vm.snapshot()];
  const sbs = core.sideBySide(...before).payload;
  for (let gva = GVA; gva < GVA + 8 * MiB; gva += 4096) vcpu.access(gva, { user: true });
  const diff = core.changes(
    before,
    [tables.snapshot(), vm.snapshot()],
    "after touching 8 MiB",
  ).payload;
  return { sbs, diff };
}

const WALK2D = "application/vnd.mmulab.walk2d+json";

/**
 * The tour's 2-D walk section (a fresh VM, the same guest mapping 2 MiB, 4 KiB backing), with
 * `backing` and `mode` varied: the payloads of a cold and a warm walk of the tour's address.
 */
function walk2d(backing = "4k", mode = "4-level") {
  const { vm, tables } = tourGuest({ backing, mode, bytes: 2 * MiB });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...tables.sregs({ nx: true }), cpl: 3 });
  const cold = vcpu.walk2d(GVA + 0x3123, { write: true, user: true }).toPayload();
  const warm = vcpu.walk2d(GVA + 0x3123, { write: true, user: true }).toPayload();
  return { cold, warm };
}

const fx = rendererPageFixture();
const views = tour();

/** Each tree's box and whether its content fits it. */
const treeBoxes = (w) =>
  w.locator(".mmulab-pt-tree").evaluateAll((els) =>
    els.map((t) => {
      const r = t.getBoundingClientRect();
      return { top: r.top, left: r.left, width: r.width, fits: t.scrollWidth <= t.clientWidth };
    }),
  );

/** Two trees stand side by side: same top, the second to the right of the first. */
function assertSideBySide(t, where) {
  assert.equal(t.length, 2, where);
  assert.equal(t[0].top, t[1].top, `${where}: ${JSON.stringify(t)}`);
  assert.ok(t[1].left >= t[0].left + t[0].width, `${where}: ${JSON.stringify(t)}`);
  for (const [i, b] of t.entries()) assert.ok(b.fits, `${where}: tree ${i} is clipped`);
}

test("sideBySide: side by side without clipping in a 1,000 px output and on a wide page; stacked when narrow", {
  timeout: TIMEOUT.page,
}, async () => {
  await fx.page.setViewportSize({ width: 1400, height: 1000 });
  const w = await renderWidget(fx.page, views.sbs);
  // A notebook's output area in a 1,400 px JupyterLab window with the file browser open.
  const within = async (px) => {
    await w.evaluate((el, width) => {
      el.style.width = `${width}px`;
    }, px);
    return treeBoxes(w);
  };
  try {
    assertSideBySide(await within(1000), "1,000 px");
    const outer = await w.evaluate((el) => el.scrollWidth <= el.clientWidth);
    assert.ok(outer, "the output scrolls sideways");
    // Narrow trees name flags by letter; the chip's text stays the flag's name.
    const chip = w.locator(".mmulab-pt-row .mmulab-flag-present").first();
    assert.equal(await chip.textContent(), "present");
    assert.equal(await chip.evaluate((el) => getComputedStyle(el, "::after").content), '"P"');
    assertSideBySide(await within(2600), "2,600 px");
    const stacked = await within(700);
    assert.ok(stacked[1].top > stacked[0].top, JSON.stringify(stacked));
    for (const b of stacked) assert.ok(b.fits, "a stacked tree is clipped");
  } finally {
    await w.evaluate((el) => {
      el.style.width = "";
    });
  }
});

test("Find in a side-by-side view translates: gva in the guest tree, its gpa in the TDP tree", {
  timeout: TIMEOUT.page,
}, async () => {
  const w = await renderWidget(fx.page, views.sbs);
  const gva = GVA + 0x3123;
  const gpa = GPA + 0x3123; // the builder maps gva GVA + x to gpa GPA + x
  await w.locator(".mmulab-search-input").fill(hex(gva));
  await w.locator(".mmulab-search-go").click();
  const said = await w.locator(".mmulab-search-result").textContent();
  // gpa 0x1003123: PML4 index bits 47:39 = 0, PDPT 38:30 = 0, PD 29:21 = 8, PT 20:12 = 3.
  const pd = Math.floor(gpa / 2 ** 21) % 512;
  const pt = Math.floor(gpa / 4096) % 512;
  assert.ok(said.includes(`gva ${hex(gva)} → gpa ${hex(gpa)}`), said);
  assert.match(
    said,
    new RegExp(`gpa ${hex(gpa)}: PML4\\[0\\] → PDPT\\[0\\] → PD\\[${pd}\\] → PT\\[${pt}\\] → leaf`),
  );
  assert.doesNotMatch(said, /not mapped/);
  // A gva the guest does not map has no gpa: the TDP tree is not searched for the typed number.
  await w.locator(".mmulab-search-input").fill(hex(0x50000000));
  await w.locator(".mmulab-search-go").click();
  const miss = await w.locator(".mmulab-search-result").textContent();
  assert.match(miss, /absent: not mapped/);
  assert.match(miss, /not searched \(gva 0x50000000 has no gpa in the guest tree\)/);
});

test("changes() after touching 8 MiB: a short folded list with counts per level; show all expands it", {
  timeout: TIMEOUT.page,
}, async () => {
  const w = await renderWidget(fx.page, views.diff);
  const height = await w.evaluate((el) => el.getBoundingClientRect().height);
  // One row per entry made it 43,000 px or more; folded it is a few screens.
  assert.ok(height < 3000, `height ${height} px`);
  // From the program: 2,048 PTEs gain A except page 3 (A|D from the first write); the PDEs of
  // PTs 2..4 gain A. On the TDP side every data page but page 3 (mapped by the first access) and
  // the guest PTs 2..4 (read for the first time) get a leaf, under 3 new PD entries.
  const levels = await w.locator(".mmulab-change-level").allTextContents();
  assert.match(levels[0], /PD: 3 changed; PT: 2047 changed/);
  assert.match(levels[1], /PD: 3 added; PT: 2050 added/);
  const total = 2047 + 3 + 2050 + 3;
  assert.match(
    await w.locator(".mmulab-changes-title").textContent(),
    new RegExp(`^${total} entries`),
  );
  const runs = await w
    .locator(".mmulab-change-run")
    .evaluateAll((els) =>
      els.map((e) => ({ count: Number(e.dataset.count), text: e.textContent })),
    );
  assert.ok(runs.length < 20, `${runs.length} runs`);
  assert.equal(
    runs.reduce((n, r) => n + r.count, 0),
    total,
  );
  // The longest guest run: pages 4..2047 of the region, contiguous frames, +accessed.
  assert.ok(
    runs.some(
      (r) =>
        r.count === 2044 &&
        r.text.includes(`gva ${hex(GVA + 4 * 4096)}..${hex(GVA + 2047 * 4096)} +accessed`),
    ),
    JSON.stringify(runs),
  );
  assert.equal(await w.locator(".mmulab-change-member").count(), 0);
  await w.locator(".mmulab-change-showall").click();
  const members = await w.locator(".mmulab-change-member").allTextContents();
  assert.equal(
    members.length,
    runs.reduce((n, r) => n + (r.count > 1 ? r.count : 0), 0),
  );
  // Page 2047's PTE now: frame GPA + 2047 pages with P, R/W, U/S and A (bits 0, 1, 2, 5).
  const last = GPA + 2047 * 4096;
  assert.ok(
    members.includes(`${hex(GVA + 2047 * 4096)} ${hex(last | 0x7)} -> ${hex(last | 0x27)}`),
  );
  await w.locator(".mmulab-change-showall").click();
  assert.equal(await w.locator(".mmulab-change-member:visible").count(), 0);
  assert.deepEqual(fx.pageErrors, []);
});

// The 2-D walk renderer on the simulator's payloads. Geometry: g guest reads of e + 1 references
// each and e for the data, (g + 1)(e + 1) - 1; e is 4 for 4-level EPT with 4 KiB leaves, 3 above
// a 2 MiB leaf (THP backing), and PAE reads 2 guest levels (its PDPTE is a register).
test("2-D walk: the tour's grid fits a 1,000 px output; one numbered cell per reference", {
  timeout: TIMEOUT.page,
}, async () => {
  await fx.page.setViewportSize({ width: 1400, height: 1000 });
  const { cold } = walk2d();
  const w = await renderWidget(fx.page, cold, WALK2D);
  // JupyterLab's fonts (light theme defaults), which the standalone page lacks, and the output
  // width of a 1,400 px window with the side bar open.
  await w.evaluate((el) => {
    el.style.setProperty("--jp-code-font-family", "'DejaVu Sans Mono', monospace");
    el.style.setProperty("--jp-code-font-size", "13px");
    el.style.setProperty("--jp-ui-font-family", "'DejaVu Sans', sans-serif");
    el.style.width = "1000px";
  });
  try {
    const grid = w.locator(".mmulab-w2d-scroll");
    assert.ok(await grid.evaluate((el) => el.scrollWidth <= el.clientWidth), "the grid scrolls");
    const refs = await w
      .locator("td[data-ref]")
      .evaluateAll((els) => els.map((e) => Number(e.dataset.ref)));
    assert.deepEqual(
      refs.sort((a, b) => a - b),
      Array.from({ length: 24 }, (_v, i) => i + 1),
    );
    // Hover text decodes the entry: an EPT leaf of a 4 KiB page maps with R, W, X and, after the
    // fault, A and D (make_spte with EPT A/D on).
    const leaf = w.locator("tr[data-level='1'] td[data-ref='4']");
    const title = await leaf.getAttribute("title");
    assert.match(title, /^EPT PT\[\d+\]/);
    for (const f of ["R (readable)", "W (writable)", "X (executable)", "A (accessed)", "D (dirty)"])
      assert.ok(title.includes(f), `${f} in ${title}`);
    // Cold: each column's first try stopped once (⚠ in one cell per column).
    assert.equal(await w.locator("td.mmulab-w2d-violation").count(), 5);
  } finally {
    await w.evaluate((el) => {
      el.style.width = "";
    });
  }
  assert.deepEqual(fx.pageErrors, []);
});

test("2-D walk: 2 MiB EPT leaves end each column at EPT PD; PAE's PDPTE is a register column", {
  timeout: TIMEOUT.page,
}, async () => {
  const thp = await renderWidget(fx.page, walk2d("thp").warm, WALK2D);
  assert.equal(
    await thp.locator(".mmulab-walk2d").getAttribute("data-references"),
    String(5 * 4 - 1),
  );
  // Below the huge leaf: one dotted cell per column, saying why.
  const below = thp.locator("tr[data-level='1'] td.mmulab-w2d-empty");
  assert.equal(await below.count(), 5);
  assert.match(await below.first().getAttribute("title"), /ended at a huge leaf \(EPT PD\)/);
  const pae = await renderWidget(fx.page, walk2d("4k", "pae").warm, WALK2D);
  assert.deepEqual(
    await pae.locator("th.mmulab-w2d-col").evaluateAll((els) => els.map((e) => e.dataset.kind)),
    ["pdptr", "gpte", "gpte", "data"],
  );
  assert.equal(
    await pae.locator(".mmulab-walk2d").getAttribute("data-references"),
    String(3 * 5 - 1),
  );
  assert.equal(await pae.locator(".mmulab-w2d-register").count(), 1);
  assert.match(
    await pae.locator(".mmulab-w2d-refs").textContent(),
    /^14 memory references = \(2 \+ 1\) × \(4 \+ 1\) − 1$/,
  );
  assert.deepEqual(fx.pageErrors, []);
});

test("2-D walk: markup in a reason or a note is drawn as text; nothing runs", {
  timeout: TIMEOUT.page,
}, async () => {
  const p = structuredClone(walk2d().cold);
  p.columns[0].violation.reason = HOSTILE_STRINGS[0];
  p.columns[1].note = HOSTILE_STRINGS[1];
  const w = await renderWidget(fx.page, p, WALK2D);
  assert.ok(
    (await w.locator("th.mmulab-w2d-col").first().getAttribute("title")).includes(
      HOSTILE_STRINGS[0],
    ),
  );
  assert.ok(
    (await w.locator("tr.mmulab-w2d-guestrow td").nth(1).getAttribute("title")).includes(
      HOSTILE_STRINGS[1],
    ),
  );
  assert.equal(await w.locator("script, img").count(), 0);
  assert.equal(await fx.page.evaluate(() => window.__mmulabPwned), undefined);
  // An invalid payload (a reference numbered 0) is an error box, not a grid.
  const bad = structuredClone(walk2d().cold);
  bad.columns[0].ept[0].ref = 0;
  const e = await renderWidget(fx.page, bad, WALK2D);
  assert.equal(await e.locator(".mmulab-error").count(), 1);
  assert.match(await e.locator(".mmulab-error").textContent(), /ref must be >= 1/);
  assert.deepEqual(fx.pageErrors, []);
});
