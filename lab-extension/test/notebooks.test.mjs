// The shipped notebooks in the JupyterLab UI: start what `npm start` starts (notebooks/ as root,
// the repo-local JUPYTER_PATH), open 00-tour.ipynb and the teacher copy of the page-walk lab, run
// all cells with the mmulab kernel, and check the DOM against what the notebook computes. The
// expectations come from the notebook sources (addresses, sizes, keys) and the x86/KVM rules, and
// are also checked against the payloads the kernel sent over the websocket (not the renderer).
// Nothing is saved: autosave is off and the notebook files must be byte-identical afterwards.
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  activeNotebook,
  artifacts,
  assertCleanPage,
  budget,
  deleteSessions,
  LIMITS,
  launchBrowser,
  newPage,
  openAndRunAll,
  prerequisite,
  publishScreenshots,
  recordKernelOutputs,
  repo,
  startTestLab,
  TIMEOUT,
} from "./helpers.mjs";

const root = path.join(repo, "notebooks");
const TOUR = "00-tour.ipynb";
const LAB = "teacher/01-page-walk-lab.ipynb";
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const PAGETABLE = "application/vnd.mmulab.pagetable+json";
const WALK = "application/vnd.mmulab.walk+json";
const WALK2D = "application/vnd.mmulab.walk2d+json";
const PLOTLY = "application/vnd.plotly.v1+json";

/** Code cells of a notebook file, as source strings. */
function codeCells(file) {
  const nb = JSON.parse(readFileSync(path.join(root, file), "utf8"));
  return nb.cells
    .filter((c) => c.cell_type === "code")
    .map((c) => (Array.isArray(c.source) ? c.source.join("") : c.source));
}

/** The one code cell whose source matches `re`, and the match. */
function cellMatching(cells, re) {
  const hits = cells.filter((c) => re.test(c));
  assert.equal(hits.length, 1, `expected one cell matching ${re}, found ${hits.length}`);
  return { source: hits[0], index: cells.indexOf(hits[0]), match: hits[0].match(re) };
}

/** A number literal of the notebook source: 0x..., or `n * MiB` / `n * GiB` / `GiB`. */
function literal(s) {
  const t = s.trim();
  if (t === "GiB") return GiB;
  const m = t.match(/^(\d+) \* (MiB|GiB)$/);
  if (m) return Number(m[1]) * (m[2] === "MiB" ? MiB : GiB);
  assert.match(t, /^(0x[0-9a-f]+|\d+)$/, `unexpected literal ${t}`);
  return Number(t);
}

const tourCells = codeCells(TOUR);
const labCells = codeCells(LAB);
const untouched = [TOUR, LAB].map((f) => [f, readFileSync(path.join(root, f))]);

// What the tour computes, from its source. The guest maps `tables.map(gva, gpa, size, {user})`
// with 4 KiB pages in 4-level mode; the walk cell walks one address of that region.
const mapCall = cellMatching(
  tourCells,
  /tables\.map\((0x[0-9a-f]+), ([^,]+), ([^,]+), \{ user: true, writable: true \}\)/,
).match;
const tour = {
  mode: cellMatching(tourCells, /new GuestPageTableBuilder\(vm, \{ mode: "([\w-]+)"/).match[1],
  mapGva: literal(mapCall[1]),
  mapGpa: literal(mapCall[2]),
  mapSize: literal(mapCall[3]),
  walkGva: literal(cellMatching(tourCells, /^vcpu\.walk\((0x[0-9a-f]+),/m).match[1]),
};
// The sweep cell: `for (let gpa = 0; gpa < REGION; gpa += 4096)`, a step every `STEP`, and the
// stats keys it records per step.
const sweepCell = cellMatching(tourCells, /function sweep\(/).source;
const sweep = {
  region: literal(sweepCell.match(/gpa < ([^;]+);/)[1]),
  step: literal(sweepCell.match(/% \(([^)]+)\) === 0/)[1]),
  keys: [...sweepCell.matchAll(/(pages_\w+): s\.pages_\w+/g)].map((m) => m[1]),
};

/** x86 4-level paging: the index of each level (9 bits each above the 12-bit offset). */
function indices4(va) {
  const b = BigInt(va);
  const at = (lo) => Number((b >> BigInt(lo)) & 511n);
  return { PML4: at(39), PDPT: at(30), PD: at(21), PT: at(12), offset: Number(b & 4095n) };
}

/**
 * Leaf SPTEs KVM's TDP MMU holds after a guest with paging off touched `bytes` from gpa 0, one
 * EPT violation per missing leaf: 4 KiB backing allows only 4 KiB leaves; THP backing lets
 * kvm_mmu_max_mapping_level pick 2 MiB for every 2 MiB-aligned run inside the memslot; 1 GiB
 * leaves would need 1 GiB host pages (hugetlbfs), which neither has.
 */
function expectedLeaves(backing, bytes) {
  if (backing === "4k") return { pages_4k: bytes / 4096, pages_2m: 0, pages_1g: 0 };
  return { pages_4k: 0, pages_2m: bytes / (2 * MiB), pages_1g: 0 };
}

let lab;
let browser;
let ctx;
/** Output bundles the kernel sent, by the code of the execute_request they answer. */
let kernelOutputs;
const t0 = performance.now();
const tourRan = prerequisite("opening and running 00-tour.ipynb");

before(
  async () => {
    // Autosave off: running the cells must not write outputs into notebooks/ (owned by the lead).
    lab = await startTestLab({
      root,
      name: "notebooks",
      userSettings: { "@jupyterlab/docmanager-extension:plugin": { autosave: false } },
    });
    browser = await launchBrowser();
    ctx = await newPage(browser, { width: 1200, height: 900 });
    kernelOutputs = recordKernelOutputs(ctx.page);
  },
  { timeout: TIMEOUT.setup },
);

after(
  async () => {
    // Each step runs even if the one before failed: sessions (kernels) first, then the server.
    try {
      if (lab) await deleteSessions(lab);
      await browser?.close();
    } finally {
      await lab?.stop();
      console.log(`# notebooks test: ${Math.round(performance.now() - t0)} ms`);
    }
  },
  { timeout: 2 * LIMITS.action },
);

/** The payloads of `mime` the kernel sent for the cell with source `code`. */
function sent(code, mime) {
  return (kernelOutputs.get(code) ?? []).filter((d) => d[mime] !== undefined).map((d) => d[mime]);
}

/** The notebook panel in front (the one opened last). */
const panel = () => activeNotebook(ctx.page);
/** Output area of the `n`-th code cell of the active notebook. */
const cellOutput = (n) => panel().locator(".jp-CodeCell").nth(n).locator(".jp-OutputArea");

/**
 * Saves the top of an output (at most `maxHeight` px) as a PNG. The left sidebar is collapsed so
 * the output gets the width. The notebook scrolls inside its panel,
 * so the output is scrolled to the top of that view and the shot clipped to it (a plain element
 * shot of a tall output would take in the menus around it).
 */
async function shootOutput(loc, file, maxHeight) {
  const leftTab = ctx.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current");
  if ((await leftTab.count()) > 0) await leftTab.click();
  const scroller = panel().locator(".jp-WindowedPanel-outer");
  await loc.scrollIntoViewIfNeeded();
  const view = await scroller.boundingBox();
  // The windowed notebook re-measures cells as they paint, so positions move for a few frames
  // (many more on a loaded machine): scroll until the output's top stays at the view's top.
  let box = await loc.boundingBox();
  for (const left = budget(LIMITS.action); Math.abs(box.y - view.y) >= 1 && !left.over(); ) {
    await scroller.evaluate((el, dy) => {
      el.scrollTop += dy;
    }, box.y - view.y);
    await ctx.page.waitForTimeout(50);
    box = await loc.boundingBox();
  }
  assert.ok(
    Math.abs(box.y - view.y) < 1,
    `output not at the top of the view (${box.y}, ${view.y})`,
  );
  await ctx.page.screenshot({
    path: path.join(artifacts, file),
    clip: { ...box, height: Math.min(box.height, maxHeight, view.y + view.height - box.y) },
  });
}

/** Waits until every code cell of the active notebook shows an execution count. */
async function waitAllRan(nCode, timeout = LIMITS.run) {
  await ctx.page.waitForFunction(
    (n) => {
      const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
      const prompts = [...(p?.querySelectorAll(".jp-CodeCell .jp-InputArea-prompt") ?? [])];
      return prompts.length === n && prompts.every((e) => /\[\d+\]/.test(e.textContent));
    },
    nCode,
    { timeout, polling: 250 },
  );
  assert.equal(
    await panel()
      .locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
      .count(),
    0,
    "a cell wrote to stderr (an error)",
  );
}

describe("00-tour.ipynb in JupyterLab", () => {
  test("opens and runs all cells with the mmulab kernel", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    await openAndRunAll(ctx.page, lab, TOUR);
    await waitAllRan(tourCells.length);
    tourRan.done();
  });

  test("the walk trace lists the 4 levels and the gpa of the tour's walk", async () => {
    tourRan.check();
    const cell = cellMatching(tourCells, /^vcpu\.walk\(/m);
    assert.equal(tour.mode, "4-level");
    const idx = indices4(tour.walkGva);
    const names = ["PML4", "PDPT", "PD", "PT"];
    const w = cellOutput(cell.index).locator(".mmulab-walk");
    assert.deepEqual(
      await w.locator(".mmulab-walk-level").evaluateAll((els) => els.map((e) => e.dataset.name)),
      names,
    );
    // (textContent: JupyterLab leaves cells outside the viewport unpainted, so innerText is empty.)
    const bits = await w
      .locator(".mmulab-walk-bitfield")
      .evaluateAll((els) =>
        els.map((e) => [e.dataset.name, e.querySelector(".mmulab-walk-bitvalue")?.textContent]),
      );
    assert.deepEqual(
      bits.map((b) => b[0]),
      [...names, "offset"],
    );
    for (const [name, text] of bits)
      assert.match(text, new RegExp(`^${idx[name]} \\(0x${idx[name].toString(16)}\\)$`), name);
    // A 4 KiB page of the mapped region: gpa = mapGpa + (gva - mapGva).
    const gpa = tour.mapGpa + (tour.walkGva - tour.mapGva);
    assert.ok(tour.walkGva - tour.mapGva < tour.mapSize);
    assert.match(
      await w.locator(".mmulab-walk-ok").textContent(),
      new RegExp(`gpa 0x${gpa.toString(16)}\\b`),
    );
    // The kernel's payload says the same.
    const [payload] = sent(cell.source, WALK);
    assert.ok(payload, "the kernel sent no walk payload");
    assert.deepEqual(
      payload.levels.map((l) => l.name),
      names,
    );
    assert.deepEqual(
      payload.indexBits.map((b) => b.value),
      [...names, "offset"].map((n) => idx[n]),
    );
  });

  // The 2-D walk section: a fresh VM (4 KiB backing, MAXPHYADDR 46: 4-level EPT with 4 KiB
  // leaves) and the same 4-level guest, walked cold then warm. Geometry: 4 guest reads of 4 EPT
  // references + 1 each, then 4 for the data: (4 + 1)(4 + 1) - 1 = 24 references both times.
  // Cold, every guest-physical page is touched for the first time: the 4 table pages on the
  // address's path and the data page, one EPT violation each; warm, none.
  test("the 2-D walk: a grid of 4 EPT levels by 5 guest accesses, 24 numbered references, cold and warm", async () => {
    tourRan.check();
    const cases = [
      { cell: cellMatching(tourCells, /^const cold = vcpu2\.walk2d\(/m), violations: 5 },
      { cell: cellMatching(tourCells, /^const warm = vcpu2\.walk2d\(/m), violations: 0 },
    ];
    const refs = (4 + 1) * (4 + 1) - 1;
    for (const { cell, violations } of cases) {
      const out = cellOutput(cell.index).locator(".mmulab-walk2d");
      await out.waitFor({ state: "attached" });
      assert.equal(await out.getAttribute("data-references"), String(refs));
      assert.deepEqual(
        await out.locator("th.mmulab-w2d-col").evaluateAll((els) => els.map((e) => e.dataset.name)),
        ["PML4", "PDPT", "PD", "PT", "data"],
      );
      assert.deepEqual(
        await out
          .locator("tr.mmulab-w2d-row[data-level]")
          .evaluateAll((els) => els.map((e) => e.dataset.level)),
        ["4", "3", "2", "1"],
      );
      // Every reference drawn once, numbered 1..24; per column 4 EPT cells then the guest entry.
      const drawn = await out
        .locator("td[data-ref]")
        .evaluateAll((els) => els.map((e) => Number(e.dataset.ref)));
      assert.deepEqual(
        [...drawn].sort((a, b) => a - b),
        Array.from({ length: refs }, (_v, i) => i + 1),
      );
      assert.equal(await out.locator("td.mmulab-w2d-violation").count(), violations);
      assert.equal(await out.getAttribute("data-violations"), String(violations));
      assert.match(
        await out.locator(".mmulab-w2d-refs").textContent(),
        new RegExp(`^${refs} memory references = \\(4 \\+ 1\\) × \\(4 \\+ 1\\) − 1$`),
      );
      const [payload] = sent(cell.source, WALK2D);
      assert.ok(payload, "the kernel sent no walk2d payload");
      assert.equal(payload.references, refs);
      assert.equal(payload.violations, violations);
    }
    const cold = cellOutput(cases[0].cell.index).locator(".mmulab-walk2d");
    // Cold: everything on the EPT side was installed by KVM's faults.
    assert.equal((await cold.locator("td .mmulab-w2d-new").count()) > 0, true);
    await shootOutput(cold, "lab-walk2d.png", 560);
  });

  test("the side-by-side view shows a guest tree and a TDP tree", async () => {
    tourRan.check();
    const cell = cellMatching(tourCells, /^sideBySide\(/m);
    const out = cellOutput(cell.index).locator(".mmulab-pagetable");
    const kinds = await out
      .locator(".mmulab-pt-tree")
      .evaluateAll((els) => els.map((e) => e.dataset.kind));
    // sideBySide(tables.snapshot(), vm.snapshot()): the guest's tables, then KVM's TDP tables.
    assert.deepEqual(kinds, ["guest", "tdp"]);
    const [payload] = sent(cell.source, PAGETABLE);
    assert.ok(payload, "the kernel sent no pagetable payload");
    assert.deepEqual(
      payload.trees.map((t) => t.kind),
      kinds,
    );
    for (let i = 0; i < kinds.length; i++) {
      assert.equal(
        await out.locator(".mmulab-pt-tree").nth(i).locator(".mmulab-pt-tree-title").count(),
        1,
      );
    }
    await shootOutput(out, "tour-trees.png", 460);
    // With the side bar collapsed (as shootOutput leaves it) at 1,400 px, the trees stand side by
    // side and neither is clipped (a row too long for its tree wraps).
    const boxes = await out.locator(".mmulab-pt-tree").evaluateAll((els) =>
      els.map((t) => {
        const r = t.getBoundingClientRect();
        return { top: r.top, left: r.left, right: r.right, fits: t.scrollWidth <= t.clientWidth };
      }),
    );
    assert.equal(boxes[0].top, boxes[1].top, JSON.stringify(boxes));
    assert.ok(boxes[1].left >= boxes[0].right, JSON.stringify(boxes));
    for (const b of boxes) assert.ok(b.fits, JSON.stringify(boxes));
  });

  // What the 8 MiB read sweep changes, by the x86 and KVM rules: in the guest tables the walker
  // sets A on every PTE of the region and on every PDE above them, except those the earlier walk
  // of walkGva already set; on the TDP side every page of the region gets a new leaf (one EPT
  // violation each) and every 2 MiB of it a new PD entry, except the page (and PD entry) the
  // earlier access already faulted in. PML4/PDPT entries were accessed or present before. The
  // TDP side also gains a leaf for each guest page-table page the sweep reads for the first time:
  // one guest PT per 2 MiB of the region, minus the one the earlier walk read (the builder's
  // writes are host writes, kvm_write_guest, which map nothing in EPT). The guest's table pool is
  // one 2 MiB region the earlier walk already mapped, so those leaves add no EPT table.
  const pdOf = (a) => Math.floor(a / (2 * MiB)) % 512;
  const region = () => {
    const pds = [];
    for (let a = tour.mapGva; a < tour.mapGva + tour.mapSize; a += 2 * MiB) pds.push(a);
    const walkGpa = tour.mapGpa + (tour.walkGva - tour.mapGva);
    const idx = indices4(tour.mapGva);
    return {
      guestPdPaths: pds
        .filter((a) => pdOf(a) !== pdOf(tour.walkGva))
        .map((a) => `0.${idx.PML4}.${idx.PDPT}.${pdOf(a)}`),
      tdpPdPaths: pds
        .map((a) => tour.mapGpa + (a - tour.mapGva))
        .filter((g) => pdOf(g) !== pdOf(walkGpa))
        .map((g) => `1.0.0.${pdOf(g)}`),
      changed: tour.mapSize / 4096 - 1 + (pds.length - 1),
      tdpChanged: tour.mapSize / 4096 - 1 + (pds.length - 1) + (pds.length - 1),
    };
  };

  test("the changes(...) view marks what the 8 MiB sweep changed", async () => {
    tourRan.check();
    const cell = cellMatching(tourCells, /^changes\(/m);
    const out = cellOutput(cell.index).locator(".mmulab-pagetable");
    const [payload] = sent(cell.source, PAGETABLE);
    assert.ok(payload?.before, "the kernel sent no pagetable payload with `before`");
    assert.deepEqual(
      payload.trees.map((t) => t.kind),
      ["guest", "tdp"],
    );
    // Rows of PD entries (path tree.PML4.PDPT.PD) carrying a diff mark, by kind of mark.
    const pdMarks = async (cls) =>
      (
        await out
          .locator(`.mmulab-pt-entry.${cls}`)
          .evaluateAll((els) => els.map((e) => e.dataset.path))
      )
        .filter((p) => p.split(".").length === 4)
        .sort();
    const want = region();
    assert.equal(tour.mapGpa % (2 * MiB), tour.mapGva % (2 * MiB));
    assert.deepEqual(await pdMarks("mmulab-diff-changed"), [...want.guestPdPaths].sort());
    assert.deepEqual(await pdMarks("mmulab-diff-added"), [...want.tdpPdPaths].sort());
    const guestTitle = await out
      .locator(".mmulab-pt-tree[data-kind='guest'] .mmulab-pt-tree-title")
      .textContent();
    assert.match(guestTitle, new RegExp(`Δ ${want.changed} changed`));
  });

  test("the TDP tree's Δ count matches the entries that changed", async () => {
    tourRan.check();
    const cell = cellMatching(tourCells, /^changes\(/m);
    const title = await cellOutput(cell.index)
      .locator(".mmulab-pt-tree[data-kind='tdp'] .mmulab-pt-tree-title")
      .textContent();
    assert.match(title, new RegExp(`Δ ${region().tdpChanged} changed`));
  });

  test("each plot has the three leaf-size traces with KVM's counts", async () => {
    tourRan.check();
    const cells = tourCells
      .map((source, index) => ({ source, index }))
      .filter((c) => /plotSpteLevels\(/.test(c.source));
    assert.equal(cells.length, 2);
    assert.deepEqual(sweep.keys, ["pages_4k", "pages_2m", "pages_1g"]);
    const xs = [];
    for (let b = sweep.step; b <= sweep.region; b += sweep.step) xs.push(b / MiB);
    for (const c of cells) {
      const backing = c.source.match(/sweep\("(4k|thp)"\)/)[1];
      const want = sweep.keys.map((k) => ({
        name: k,
        y: xs.map((x) => expectedLeaves(backing, x * MiB)[k]),
      }));
      const plot = cellOutput(c.index).locator(".mmulab-plotly.js-plotly-plot");
      await plot.locator(".main-svg").first().waitFor({ timeout: LIMITS.run });
      // What plotly drew: one trace group per series and a legend entry per name.
      assert.equal(await plot.locator(".scatterlayer .trace, .barlayer .trace").count(), 3);
      assert.deepEqual(
        (await plot.locator(".legend .traces .legendtext").allTextContents()).sort(),
        [...sweep.keys].sort(),
      );
      const drawn = await plot.evaluate((el) =>
        el.data.map((t) => ({ name: t.name, x: [...t.x].map(Number), y: [...t.y] })),
      );
      const [fig] = sent(c.source, PLOTLY);
      assert.ok(fig, "the kernel sent no plotly figure");
      for (const series of [drawn, fig.data]) {
        const byName = Object.fromEntries(series.map((t) => [t.name, t]));
        assert.deepEqual(Object.keys(byName).sort(), [...sweep.keys].sort());
        for (const w of want) {
          assert.deepEqual([...byName[w.name].x].map(Number), xs, `${backing} ${w.name} x`);
          assert.deepEqual([...byName[w.name].y], w.y, `${backing} ${w.name} y`);
        }
      }
      if (backing === "thp")
        await shootOutput(plot.locator(".main-svg").first(), "tour-plot.png", 500);
    }
  });

  test("the summary cell gives KVM's fault and shadow-page counts", async () => {
    tourRan.check();
    const cell = cellMatching(tourCells, /faults: small\.vm\.stats\.pf_fixed/);
    const text = await cellOutput(cell.index).textContent();
    // One EPT violation per leaf; TDP pages: a PML4 root, one PDPT, one PD for the 1 GiB region,
    // and one PT per 2 MiB only when the leaves are 4 KiB.
    const pages4k = sweep.region / 4096;
    const pages2m = sweep.region / (2 * MiB);
    const want = {
      "4k": { faults: pages4k, shadow_pages: 3 + pages2m },
      thp: { faults: pages2m, shadow_pages: 3 },
    };
    for (const [k, w] of Object.entries(want)) {
      const m = text.match(new RegExp(`'?${k}'?: \\{ faults: (\\d+), shadow_pages: (\\d+) \\}`));
      assert.ok(m, `no ${k} line in ${text}`);
      assert.deepEqual({ faults: Number(m[1]), shadow_pages: Number(m[2]) }, w, k);
    }
  });
});

describe("teacher/01-page-walk-lab.ipynb in JupyterLab", () => {
  test("every check(...) says Right", { timeout: TIMEOUT.notebook }, async () => {
    const checks = labCells.filter((c) => /^check\("ex\d+", ex\d+\)$/m.test(c)).length;
    assert.equal(checks, 10);
    await openAndRunAll(ctx.page, lab, LAB);
    await waitAllRan(labCells.length);
    const boxes = panel().locator(".mmulab-check");
    assert.equal(await boxes.count(), checks);
    const heads = await boxes.locator("b").allTextContents();
    assert.deepEqual(
      heads,
      heads.map(() => "✔ Right"),
      (await boxes.allTextContents()).join("\n"),
    );
  });
});

describe("afterwards", () => {
  test("no uncaught exception or console error; the notebook files are unchanged", async () => {
    assertCleanPage(ctx);
    for (const [f, bytes] of untouched)
      assert.ok(readFileSync(path.join(root, f)).equals(bytes), `${f} was modified by the run`);
  });

  test("screenshots saved; docs/img refreshed when MMULAB_UPDATE_DOCS_IMG=1", () => {
    const shots = {
      "tour-trees.png": "tour-trees.png",
      "tour-plot.png": "tour-plot.png",
      "lab-walk2d.png": "lab-walk2d.png",
    };
    for (const f of Object.keys(shots))
      assert.ok(statSync(path.join(artifacts, f)).size > 1000, `${f} not written`);
    publishScreenshots(shots);
  });
});
