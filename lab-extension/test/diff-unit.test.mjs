// src/diff.ts without a browser (bundled by esbuild): 64-bit value arithmetic of run members
// (carries across bit 32, wrap at 2^64), 1 GiB and 4 MiB runs, and the row pieces of a run cut
// by a changed member. Expected values are computed here with BigInt from the x86 layout: member
// k of a run maps k pages further, so its value is the first value + k · page size.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { artifacts, extDir } from "./helpers.mjs";
import { entryValue, PTE } from "./payloads.mjs";

const out = path.join(artifacts, "diff-unit", "diff.mjs");
mkdirSync(path.dirname(out), { recursive: true });
await build({
  entryPoints: [path.join(extDir, "src", "diff.ts")],
  bundle: true,
  format: "esm",
  platform: "node",
  outfile: out,
  logLevel: "warning",
});
const { Differ, frameStep, hexPlus } = await import(pathToFileURL(out).href);

const hex = (n) => `0x${BigInt(n).toString(16)}`;
const GiB_FRAMES = 2 ** 18;

/** A 1 GiB guest leaf (PDPT entry with PS) at gfn `frame`; `dirty` sets D. */
function gigLeaf(index, frame, dirty = false) {
  const flags = ["present", "writable", "accessed", ...(dirty ? ["dirty"] : []), "huge"];
  return {
    index,
    value: entryValue(frame, [PTE.P, PTE.RW, PTE.A, PTE.PS, ...(dirty ? [PTE.D] : [])]),
    flags,
    leaf: true,
    target: hex(frame),
    pageSize: 2 ** 30,
  };
}

test("hexPlus carries across bit 32 and wraps at 2^64", () => {
  assert.equal(hexPlus("0xffffffff", 1), "0x100000000");
  assert.equal(hexPlus("0x1fffff000", 0x1000), "0x200000000");
  assert.equal(hexPlus("0xffffffffffffffff", 1), "0x0");
  assert.equal(hexPlus("0x8000000000000000", 2 ** 40), hex(2n ** 63n + 2n ** 40n));
});

test("frameStep: a leaf's page size in frames; 1 for MMIO sptes and table pointers", () => {
  const e = { index: 0, value: "0x1", flags: ["present"], leaf: true };
  assert.equal(frameStep("4-level", 3, { ...e, pageSize: 2 ** 30 }), GiB_FRAMES);
  assert.equal(frameStep("32-bit", 2, e), 1024); // a 4 MiB PSE page: 10 index bits per level
  assert.equal(frameStep("tdp-4", 2, e), 512);
  assert.equal(frameStep("tdp-4", 1, { ...e, flags: ["mmio"] }), 1);
  assert.equal(frameStep("4-level", 2, { ...e, leaf: false }), 1);
});

test("1 GiB runs whose values cross bit 32: compared per member, cut at a changed one", () => {
  // gfn 0x3ffc0000 is address 0x3ff_c000_0000: the low 32 bits overflow from member 1 on.
  const first = 0x3ffc0000;
  const leaves = [0, 1, 2, 3].map((k) => gigLeaf(k, first + k * GiB_FRAMES));
  assert.ok(BigInt(leaves[1].value) >> 32n > BigInt(leaves[0].value) >> 32n);
  const run = { ...leaves[0], count: 4 };
  const pdpt = (entries) => ({ level: 3, name: "PDPT", size: 512, entries });
  const d = new Differ("4-level");
  assert.equal(d.count(pdpt([run]), pdpt(leaves)), 0);
  assert.equal(d.count(pdpt(leaves), pdpt([run])), 0);
  // Member 2 was dirty before and is clean in the run now: one change, drawn as [0..1] same,
  // [2] changed (was the dirty value), [3] same.
  const dirtied = leaves.map((e, k) => (k === 2 ? gigLeaf(2, first + 2 * GiB_FRAMES, true) : e));
  assert.equal(new Differ("4-level").count(pdpt(dirtied), pdpt([run])), 1);
  const { rows, removed } = new Differ("4-level").pieces(pdpt([run]), pdpt(dirtied));
  assert.deepEqual(
    rows.map((p) => [p.entry.index, p.entry.count ?? 1, p.status]),
    [
      [0, 2, "same"],
      [2, 1, "changed"],
      [3, 1, "same"],
    ],
  );
  // Each piece carries its members' own value and frame (the run's first + k pages).
  for (const p of rows) {
    assert.equal(BigInt(p.entry.value), BigInt(leaves[p.entry.index].value));
    assert.equal(p.entry.target, leaves[p.entry.index].target);
  }
  assert.equal(rows[1].old.value, dirtied[2].value);
  assert.deepEqual(removed, []);
});

test("a 4 MiB run (32-bit PSE) that grew and lost members: added and removed per index", () => {
  const leaf = (index) => ({
    index,
    value: hex((BigInt(0x400 + index * 1024) << 12n) | 0xe7n), // P RW U A D PS
    flags: ["present", "writable", "user", "accessed", "dirty", "huge"],
    leaf: true,
    target: hex(0x400 + index * 1024),
    pageSize: 2 ** 22,
  });
  const pd = (entries) => ({ level: 2, name: "PD", size: 1024, entries });
  // before: [0..5] as one run; now: [2..8] as one run. Added 6, 7, 8; removed 0, 1.
  const before = pd([{ ...leaf(0), count: 6 }]);
  const now = pd([{ ...leaf(2), count: 7 }]);
  assert.equal(new Differ("32-bit").count(now, before), 5);
  const { rows, removed } = new Differ("32-bit").pieces(now, before);
  assert.deepEqual(
    rows.map((p) => [p.entry.index, p.entry.count ?? 1, p.status]),
    [
      [2, 4, "same"],
      [6, 3, "added"],
    ],
  );
  assert.equal(rows[1].entry.value, leaf(6).value);
  assert.deepEqual(
    removed.map((p) => [p.entry.index, p.entry.count ?? 1, p.entry.value]),
    [[0, 2, leaf(0).value]],
  );
});
