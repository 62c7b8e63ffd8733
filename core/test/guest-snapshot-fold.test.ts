/**
 * Run folding of the guest page-table snapshot (display.v1 `entry.count`): alike leaves with
 * consecutive frames fold into one entry; a different permission, a frame gap, a different pkey
 * or an absent entry ends the run. Expected runs are computed from the mapping (page counts,
 * table geometry), and every payload validates against the schema.
 */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder } from "../src";
import type { Entry, PagetablePayload, Table } from "../src/display";
import { validateDisplayPayload } from "../src/display";

const PT_MIME = "application/vnd.mmulab.pagetable+json";
const KiB4 = 4096;
const MiB = 2 ** 20;
const P = 1;
const US = 4;

function machine(mode: "32-bit" | "4-level" = "4-level") {
  const vm = createVm({ mmu: "none" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  const b = new GuestPageTableBuilder(vm, { mode, poolBase: 48 * MiB, poolSize: 4 * MiB });
  return { vm, b };
}

function valid(p: PagetablePayload): void {
  const v = validateDisplayPayload(PT_MIME, p);
  expect(v.ok ? [] : v.errors).toEqual([]);
}

/** The table reached by following the entry at each index of `path` from the root. */
function tableAt(p: PagetablePayload, path: number[]): Table {
  let t = p.trees[0]!.root;
  for (const i of path) {
    const e = t.entries.find((x) => x.index === i);
    if (e?.child === undefined) throw new Error(`no child table at index ${i} of ${t.name}`);
    t = e.child;
  }
  return t;
}

/** [index, count] of each entry. */
const runs = (t: Table): [number, number][] => t.entries.map((e) => [e.index, e.count ?? 1]);

describe("guest snapshot folds runs of alike leaves", () => {
  // 4-level paging, gva 1 GiB: PML4[0] -> PDPT[1] -> PD[0..3] -> four PTs of 512 4 KiB pages.
  const gva = 2 ** 30;
  const gpa = 8 * MiB;
  const size = 8 * MiB;
  const perPt = (2 * MiB) / KiB4; // entries one PT covers
  const pts = size / (2 * MiB);

  it("8 MiB of 4 KiB pages: each PT is one run of 512 with consecutive targets", () => {
    const { b } = machine();
    b.map(gva, gpa, size);
    const p = b.snapshot({ maxEntries: 64 }).payload;
    valid(p);
    expect(p.truncated).toBeUndefined();
    const pd = tableAt(p, [0, 1]);
    expect(pd.entries.map((e) => e.index)).toEqual(Array.from({ length: pts }, (_v, i) => i));
    for (let k = 0; k < pts; k++) {
      const pt = tableAt(p, [0, 1, k]);
      expect(pt.present).toBe(perPt);
      expect(runs(pt)).toEqual([[0, perPt]]);
      const e = pt.entries[0]!;
      expect(e.leaf).toBe(true);
      expect(e.pageSize).toBe(KiB4);
      expect(Number(e.target)).toBe((gpa + k * 2 * MiB) / KiB4);
      expect(BigInt(e.va!)).toBe(BigInt(gva + k * 2 * MiB));
    }
    // Non-leaf entries never fold: four PD entries, each with its own table.
    expect(pd.entries.every((e) => !e.leaf && e.count === undefined)).toBe(true);
  });

  it("a permission change in the middle splits the run into three", () => {
    const { b } = machine();
    b.map(gva, gpa, size);
    const mid = 300; // PT index of the changed page in the second PT
    const va = gva + 2 * MiB + mid * KiB4;
    const pa = gpa + 2 * MiB + mid * KiB4;
    b.setEntry(va, 1, pa | P | US); // R/W cleared
    const p = b.snapshot().payload;
    valid(p);
    const pt = tableAt(p, [0, 1, 1]);
    expect(runs(pt)).toEqual([
      [0, mid],
      [mid, 1],
      [mid + 1, perPt - mid - 1],
    ]);
    expect(pt.entries[1]!.count).toBeUndefined(); // a single entry carries no count
    expect(pt.entries[1]!.flags).not.toContain("writable");
    expect(pt.entries[0]!.flags).toContain("writable");
    expect(Number(pt.entries[2]!.target)).toBe(pa / KiB4 + 1);
    // The other PTs are untouched: still one run each.
    for (const k of [0, 2, 3]) expect(runs(tableAt(p, [0, 1, k]))).toEqual([[0, perPt]]);
  });

  it("a frame gap, an absent entry and a different pkey end runs", () => {
    const { b } = machine();
    b.map(gva, gpa, 16 * KiB4); // indices 0..15, frames gpa..
    b.map(gva + 16 * KiB4, gpa + 64 * KiB4, 8 * KiB4); // 16..23, frames jump
    b.map(gva + 25 * KiB4, gpa + 73 * KiB4, 4 * KiB4); // 25..28 after an absent 24
    b.map(gva + 29 * KiB4, gpa + 77 * KiB4, 4 * KiB4, { pkey: 5 }); // 29..32, other pkey
    const p = b.snapshot().payload;
    valid(p);
    const pt = tableAt(p, [0, 1, 0]);
    expect(runs(pt)).toEqual([
      [0, 16],
      [16, 8],
      [25, 4],
      [29, 4],
    ]);
    expect(pt.entries[3]!.pkey).toBe(5);
    expect(pt.present).toBe(16 + 8 + 4 + 4);
  });

  it("bits no flag names (PWT, PCD, available bits) end runs too: members differ only by k pages", () => {
    const { b } = machine();
    b.map(gva, gpa, 16 * KiB4);
    const pte = (i: number) => (gpa + i * KiB4) | P | US | 2; // P|RW|US
    b.setEntry(gva + 5 * KiB4, 1, pte(5) | (1 << 3)); // PWT
    b.setEntry(gva + 9 * KiB4, 1, pte(9) | (1 << 9)); // an available (ignored) bit
    const p = b.snapshot().payload;
    valid(p);
    const pt = tableAt(p, [0, 1, 0]);
    expect(runs(pt)).toEqual([
      [0, 5],
      [5, 1],
      [6, 3],
      [9, 1],
      [10, 6],
    ]);
    // Every member of every run is its first value plus k pages.
    for (const e of pt.entries) {
      for (let k = 0; k < (e.count ?? 1); k++) {
        expect(BigInt(e.value) + BigInt(k * KiB4)).toBe(
          BigInt(pte(e.index + k) | (e.index + k === 5 ? 8 : 0) | (e.index + k === 9 ? 512 : 0)),
        );
      }
    }
  });

  it("large leaves fold too: 8 MiB of 2 MiB pages is one PD run of 4", () => {
    const { b } = machine();
    b.map(gva, gpa, size, { pageSize: 2 * MiB });
    const p = b.snapshot().payload;
    valid(p);
    const pd = tableAt(p, [0, 1]);
    expect(runs(pd)).toEqual([[0, size / (2 * MiB)]]);
    expect(pd.entries[0]!.pageSize).toBe(2 * MiB);
    expect(Number(pd.entries[0]!.target)).toBe(gpa / KiB4);
  });

  it("32-bit paging: a full PT of 1024 pages is one run (the schema's largest count)", () => {
    const { b } = machine("32-bit");
    b.map(4 * MiB, 8 * MiB, 4 * MiB);
    const p = b.snapshot().payload;
    valid(p);
    const pt = tableAt(p, [1]);
    expect(pt.size).toBe(1024);
    expect(runs(pt)).toEqual([[0, 1024]]);
  });

  it("maxEntries bounds listed entries after folding; left-out entries are counted", () => {
    const { b } = machine();
    // 40 single pages with every other frame skipped: nothing folds.
    for (let i = 0; i < 40; i++) b.map(gva + i * KiB4, gpa + 2 * i * KiB4, KiB4);
    const max = 10; // PML4, PDPT, PD entries + 7 PT entries
    const p = b.snapshot({ maxEntries: max }).payload;
    valid(p);
    expect(p.truncated).toBe(true);
    const pt = tableAt(p, [0, 1, 0]);
    expect(pt.entries.length).toBe(max - 3);
    expect(pt.omitted).toBe(40 - (max - 3));
    expect(pt.entries.every((e: Entry) => e.count === undefined)).toBe(true);
  });
});
