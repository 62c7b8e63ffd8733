// The tree diff when `before` and the current snapshot fold their runs differently: every table
// is described here entry by entry (one object per index), each side folded with its own cuts, and
// the expected marks and Δ counts come from comparing the unfolded entries index by index —
// never from the renderer's own unfolding. Cases: an unchanged run cut elsewhere, a run grown by
// one leaf, a run split by one changed leaf, a run shrunk (members removed), a remapped run, a
// run merged over a formerly dirty leaf, added and removed runs, singles, 2 MiB, 4 MiB and MMIO
// runs, and an added and a removed child table.
import assert from "node:assert/strict";
import { test } from "node:test";
import { rendererPageFixture, renderWidget, TIMEOUT } from "./helpers.mjs";
import { EPT, entryValue, PTE, tdpLeaf } from "./payloads.mjs";

const hex = (n) => `0x${BigInt(n).toString(16)}`;
const GUEST_BITS = [PTE.P, PTE.RW, PTE.US, PTE.A];
const GUEST_FLAGS = ["present", "writable", "user", "accessed"];

/** A guest leaf of `pageSize` bytes at `frame` (its first gfn); `dirty` sets D. */
function guestLeaf(index, frame, { dirty = false, pageSize = 4096 } = {}) {
  const huge = pageSize > 4096;
  return {
    index,
    value: entryValue(frame, [...GUEST_BITS, ...(dirty ? [PTE.D] : []), ...(huge ? [PTE.PS] : [])]),
    flags: [...GUEST_FLAGS, ...(dirty ? ["dirty"] : []), ...(huge ? ["huge"] : [])],
    leaf: true,
    target: hex(frame),
    pageSize,
  };
}

/** An MMIO spte for `gfn`: EPT misconfiguration W|X without R, the gfn in the address field. */
function mmioSpte(index, gfn) {
  return {
    index,
    value: entryValue(gfn, [EPT.W, EPT.X]),
    flags: ["mmio"],
    leaf: true,
    target: hex(gfn),
    note: "MMIO spte",
  };
}

/** A non-leaf entry pointing at table `child` (a description, see {@link table}). */
function pointer(index, frame, child, bits = GUEST_BITS) {
  return {
    index,
    value: entryValue(frame, bits),
    flags: ["present", "writable", "accessed"],
    leaf: false,
    target: hex(frame),
    child,
  };
}

const NAMES = { 1: "PT", 2: "PD", 3: "PDPT", 4: "PML4" };

/** A table description: its entries one per index, and which runs this side folds. */
function table(level, singles, folds = [], size = 512) {
  return { level, name: NAMES[level], size, singles, folds };
}

/** Indices `first .. first + n - 1` mapped by `make(index, k)`. */
const span = (first, n, make) => Array.from({ length: n }, (_, k) => make(first + k, k));

/**
 * The payload table of a description: each fold `[first, count]` becomes one entry with
 * `count`, after checking that its members are alike and continue the first member's frame
 * (display.v1's folding rule: member k points k page sizes further, 1 frame for MMIO sptes).
 */
function payloadTable(t) {
  const at = new Map(t.singles.map((e) => [e.index, e]));
  const folded = new Set();
  const heads = new Map();
  for (const [first, count] of t.folds) {
    const head = at.get(first);
    const frames = BigInt(head.pageSize ? head.pageSize / 4096 : 1);
    for (let k = 1; k < count; k++) {
      const m = at.get(first + k);
      assert.ok(m?.leaf && head.leaf, `fold [${first}, ${count}]: member ${first + k} missing`);
      assert.equal(m.flags.join(), head.flags.join());
      assert.equal(m.pageSize, head.pageSize);
      assert.equal(BigInt(m.value), BigInt(head.value) + BigInt(k) * frames * 4096n);
      assert.equal(BigInt(m.target), BigInt(head.target) + BigInt(k) * frames);
      folded.add(first + k);
    }
    heads.set(first, count);
  }
  const entries = t.singles
    .filter((e) => !folded.has(e.index))
    .map((e) => {
      const out = { ...e };
      if (heads.get(e.index) > 1) out.count = heads.get(e.index);
      if (e.child) out.child = payloadTable(e.child);
      return out;
    });
  const present = t.singles.filter((e) => e.flags[0] !== "mmio").length;
  return { level: t.level, name: t.name, size: t.size, present, entries };
}

/**
 * What the diff must show, from the unfolded entries: per drawn table path, the status of each
 * index ("i:same", "i:added", "i:changed", "i:removed"); per path, the Δ count of its subtree
 * (entries differing in value, flags or frame, plus all entries of added or removed tables).
 */
function expectedDiff(now, old, path, out) {
  const a = new Map((now?.singles ?? []).map((e) => [e.index, e]));
  const b = new Map((old?.singles ?? []).map((e) => [e.index, e]));
  const marks = [];
  let n = 0;
  for (const i of [...new Set([...a.keys(), ...b.keys()])].sort((x, y) => x - y)) {
    const e = a.get(i);
    const o = b.get(i);
    const status = !o
      ? "added"
      : !e
        ? "removed"
        : e.value === o.value && e.flags.join() === o.flags.join() && e.target === o.target
          ? "same"
          : "changed";
    marks.push(`${i}:${status}`);
    if (status !== "same") n++;
    if (e?.child || o?.child) n += expectedDiff(e?.child, o?.child, `${path}.${i}`, out).count;
  }
  const result = { count: n, marks, was: new Map([...b].map(([i, o]) => [i, o.value])) };
  // Tables drawn by the renderer: those of the current snapshot (a removed table is one row).
  if (now) out.set(path, result);
  return result;
}

// --- the snapshots -------------------------------------------------------------------------

/** The guest PT under PD[1], with the run cases; `late` is the snapshot after the change. */
function guestPt(late) {
  const s = [
    // A: unchanged; before folds [0..2], after [0..1] + [2].
    ...span(0, 3, (i, k) => guestLeaf(i, 0x100 + k)),
    // B: a run grown by index 20.
    ...span(10, late ? 11 : 10, (i, k) => guestLeaf(i, 0x110 + k)),
    // C: index 34 becomes dirty inside a run of ten.
    ...span(30, 10, (i, k) => guestLeaf(i, 0x130 + k, { dirty: late && i === 34 })),
    // D: a run of five shrinks to two (62..64 removed).
    ...span(60, late ? 2 : 5, (i, k) => guestLeaf(i, 0x160 + k)),
    // E: a run remapped to other frames (all ten changed).
    ...span(70, 10, (i, k) => guestLeaf(i, (late ? 0x600 : 0x500) + k)),
    // F: index 83 was dirty (so before folds around it); now clean, one run of seven.
    ...span(80, 7, (i, k) => guestLeaf(i, 0x180 + k, { dirty: !late && i === 83 })),
    // G: a run added.
    ...(late ? span(100, 10, (i, k) => guestLeaf(i, 0x1a0 + k)) : []),
    // H: a single removed, a single kept.
    ...(late ? [] : [guestLeaf(120, 0x1c0)]),
    guestLeaf(121, 0x1c1),
    // I: unchanged, cut at another place.
    ...span(130, 3, (i, k) => guestLeaf(i, 0x1d0 + k)),
    // J: unchanged; two runs before, one after.
    ...span(140, 10, (i, k) => guestLeaf(i, 0x1e0 + k)),
    // K: a single changed (dirty now).
    guestLeaf(150, 0x1f0, { dirty: late }),
  ];
  const folds = late
    ? [
        [0, 2],
        [10, 11],
        [30, 4],
        [35, 5],
        [60, 2],
        [70, 10],
        [80, 7],
        [100, 10],
        [131, 2],
        [140, 10],
      ]
    : [
        [0, 3],
        [10, 10],
        [30, 10],
        [60, 5],
        [70, 10],
        [80, 3],
        [84, 3],
        [130, 3],
        [140, 5],
        [145, 5],
      ];
  return table(1, s, folds);
}

function guestTree(late) {
  const MiB2 = 512; // frames per 2 MiB page
  const pd = table(
    2,
    [
      pointer(1, 0x40, guestPt(late)),
      // 2 MiB leaves: PD[6] loses D (dirty logging cleared it); before one run of four.
      ...span(4, 4, (i, k) =>
        guestLeaf(i, 0x800 + k * MiB2, { pageSize: 2 ** 21, dirty: !(late && i === 6) }),
      ),
      // A full PT, unchanged: one run of 512 before, two of 256 now.
      pointer(
        9,
        0x41,
        table(
          1,
          span(0, 512, (i, k) => guestLeaf(i, 0x2000 + k)),
          late
            ? [
                [0, 256],
                [256, 256],
              ]
            : [[0, 512]],
        ),
      ),
    ],
    late ? [[4, 2]] : [[4, 4]],
  );
  return table(4, [pointer(0, 0x20, table(3, [pointer(0, 0x30, pd)]))]);
}

function tdpTree(late) {
  const EPT_PTR = [EPT.R, EPT.W, EPT.X, EPT.A, EPT.MMU_P];
  const pd = [
    // The tour's case: a full PT whose entries did not change, folded differently.
    pointer(
      8,
      0x7008,
      table(
        1,
        span(0, 512, (i, k) => tdpLeaf(i, 0x9000 + k)),
        late
          ? [[0, 512]]
          : [
              [0, 3],
              [5, 507],
            ],
      ),
      EPT_PTR,
    ),
    // MMIO sptes (one gfn each): unchanged, cut differently.
    pointer(
      12,
      0x700c,
      table(
        1,
        span(0, 6, (i, k) => mmioSpte(i, 0xfee00 + k)),
        late
          ? [
              [0, 2],
              [2, 4],
            ]
          : [[0, 6]],
      ),
      EPT_PTR,
    ),
  ];
  // PD[9] and its PT of five appear; PD[10] and its PT of three disappear.
  if (late)
    pd.push(
      pointer(
        9,
        0x7009,
        table(
          1,
          span(0, 5, (i, k) => tdpLeaf(i, 0xa000 + k)),
          [[0, 5]],
        ),
        EPT_PTR,
      ),
    );
  else
    pd.push(
      pointer(
        10,
        0x700a,
        table(
          1,
          span(0, 3, (i, k) => tdpLeaf(i, 0xb000 + k)),
          [[0, 3]],
        ),
        EPT_PTR,
      ),
    );
  return table(4, [
    pointer(
      0,
      0x7001,
      table(
        3,
        [
          pointer(
            0,
            0x7002,
            table(
              2,
              pd.sort((x, y) => x.index - y.index),
            ),
          ),
        ],
        [],
        512,
      ),
      EPT_PTR,
    ),
  ]);
}

/** 32-bit paging: a PD of 1024 entries with 4 MiB leaves (1024 frames each); PD[6] added. */
function pse32Tree(late) {
  const leaves = span(0, late ? 7 : 6, (i, k) =>
    guestLeaf(i, 0x400 + k * 1024, { pageSize: 2 ** 22 }),
  );
  return table(
    2,
    leaves,
    late
      ? [
          [0, 3],
          [3, 4],
        ]
      : [[0, 6]],
    1024,
  );
}

const TREES = [
  { kind: "guest", format: "4-level", build: guestTree },
  { kind: "tdp", format: "tdp-4", build: tdpTree },
  { kind: "guest", format: "32-bit", build: pse32Tree },
];

// --- the test ------------------------------------------------------------------------------

const fx = rendererPageFixture();

/** Per-index statuses drawn in a table body, and the rows marked changed. */
function drawnMarks(body) {
  const rows = [];
  for (const r of body.children) {
    const row = r.classList.contains("mmulab-pt-runwrap")
      ? r.querySelector(":scope > .mmulab-pt-run")
      : r.classList.contains("mmulab-pt-entry")
        ? r
        : null;
    if (!row) continue;
    rows.push({
      first: Number(row.dataset.first ?? row.dataset.index),
      count: Number(row.dataset.count),
      status: row.className.match(/mmulab-diff-(\w+)/)?.[1] ?? "same",
      was: row.querySelector(":scope > .mmulab-pt-diff")?.textContent ?? null,
    });
  }
  return rows;
}

test("diff: runs folded differently before and after are compared index by index", {
  timeout: TIMEOUT.page,
}, async () => {
  const payload = {
    version: 1,
    kind: "pagetable",
    trees: TREES.map((t) => ({
      kind: t.kind,
      format: t.format,
      root: payloadTable(t.build(true)),
    })),
    before: TREES.map((t) => ({
      kind: t.kind,
      format: t.format,
      root: payloadTable(t.build(false)),
    })),
  };
  const w = await renderWidget(fx.page, payload);
  for (let t = 0; t < TREES.length; t++) {
    const want = new Map();
    const total = expectedDiff(TREES[t].build(true), TREES[t].build(false), String(t), want);
    const title = await w
      .locator(`.mmulab-pt-tree[data-tree='${t}'] .mmulab-pt-tree-title`)
      .textContent();
    assert.match(title, new RegExp(`Δ ${total.count} changed$`), `tree ${t}: ${title}`);
    // Parents before children: a child table's view exists once its parent is built.
    for (const [path, exp] of [...want].sort((x, y) => x[0].length - y[0].length)) {
      const tbl = w.locator(`.mmulab-pt-table[data-path='${path}']`);
      const toggle = tbl.locator(":scope > .mmulab-pt-table-head > .mmulab-toggle");
      if ((await toggle.getAttribute("aria-expanded")) !== "true") await toggle.click();
      const head = await tbl
        .locator(":scope > .mmulab-pt-table-head > .mmulab-pt-changes")
        .allTextContents();
      assert.deepEqual(head, exp.count > 0 ? [`Δ ${exp.count}`] : [], `table ${path}`);
      const rows = await tbl.locator(":scope > .mmulab-pt-body").evaluate(drawnMarks);
      const drawn = [];
      for (const r of rows)
        for (let k = 0; k < r.count; k++) drawn.push(`${r.first + k}:${r.status}`);
      const at = (m) => Number(m.split(":")[0]);
      drawn.sort((x, y) => at(x) - at(y));
      assert.deepEqual(drawn, exp.marks, `table ${path}`);
      // A changed row says what its first entry replaced; several changed entries share a row
      // only when they replaced entries of one `before` run (so the old values follow too).
      for (const r of rows.filter((r) => r.status === "changed")) {
        assert.equal(r.was, `was ${exp.was.get(r.first)}`, `table ${path} [${r.first}]`);
        for (let k = 1; k < r.count; k++) {
          const step = BigInt(exp.was.get(r.first + 1)) - BigInt(exp.was.get(r.first));
          assert.equal(
            BigInt(exp.was.get(r.first + k)),
            BigInt(exp.was.get(r.first)) + BigInt(k) * step,
            `table ${path}: changed row [${r.first}] x${r.count} member ${k}`,
          );
        }
      }
    }
  }
  // Inside a run the renderer cut (B: [10..19] unchanged, [20] added), one member decodes to its
  // own frame: search the gva of PT[15] under PD[1].
  const gva = 1 * 2 ** 21 + 15 * 4096;
  await w.locator(".mmulab-search-input").fill(hex(gva));
  await w.locator(".mmulab-search-go").click();
  const detail = await w.locator(".mmulab-detail").textContent();
  assert.match(detail, /PT\[10–19\] · entry \[15\]/);
  assert.match(detail, new RegExp(`\\[15\\] gfn${hex(0x110 + 5)}`));
  assert.deepEqual(fx.pageErrors, []);
});
