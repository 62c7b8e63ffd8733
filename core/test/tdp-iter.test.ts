/**
 * `struct tdp_iter` (tdp_iter.c) against a recursive oracle of the walk it must make: a pre-order
 * visit of one root's tables, starting at the root entry covering the start gfn, entering the
 * child of every present non-leaf entry above the minimum level (at the entry covering the start
 * gfn the first time, at the child's first entry afterwards), and ending at the first entry
 * reached by a step whose gfn is at or past the end (`tdp_iter_next`). Entry geometry is the
 * x86 one: 9 bits of gfn per level, entry index = (gfn / 512^(level-1)) mod 512.
 */
import { describe, expect, it } from "vitest";
import type { MmuPageStore } from "../src/mmu/mmu_internal";
import { isLastSpte, isShadowPresent, sptePfn } from "../src/mmu/spte";
import { TdpIter } from "../src/mmu/tdp_iter";
import { addS1Slot, tdpVm } from "./tdp-helpers";

type Visit = [level: number, gfn: number, lo: number, hi: number];
const span = (level: number) => 512 ** (level - 1);

function oracle(
  store: MmuPageStore,
  root: number,
  rootLevel: number,
  minLevel: number,
  start: number,
  end: number,
): Visit[] {
  const out: Visit[] = [];
  let first = true; // the start entry itself is not checked against the end
  // Returns false once the walk has ended.
  const table = (sp: number, level: number, base: number, from: number): boolean => {
    const spt = store.spt[sp]!;
    for (let idx = Math.floor((from - base) / span(level)); idx < 512; idx++) {
      const gfn = base + idx * span(level);
      if (!first && gfn >= end) return false;
      first = false;
      const lo = spt[idx * 2]!;
      const hi = spt[idx * 2 + 1]!;
      out.push([level, gfn, lo, hi]);
      if (level > minLevel && isShadowPresent(lo) && !isLastSpte(lo, level)) {
        const child = store.pfnToSp(sptePfn(lo, hi));
        if (!table(child, level - 1, gfn, Math.max(gfn, from))) return false;
      }
    }
    return true;
  };
  const rootSpan = span(rootLevel) * 512;
  table(root, rootLevel, start - (start % rootSpan), start);
  return out;
}

function walk(
  store: MmuPageStore,
  root: number,
  rootLevel: number,
  minLevel: number,
  start: number,
  end: number,
): Visit[] {
  const it = new TdpIter(store);
  const out: Visit[] = [];
  for (it.start(root, rootLevel, minLevel, start, end); it.valid; it.next())
    out.push([it.level, it.gfn, it.oldLo, it.oldHi]);
  return out;
}

describe("tdp_iter: the pre-order walk of one root over a gfn range", () => {
  const { vm, mmu } = tdpVm();
  addS1Slot(vm, "4k");
  const vcpu = vm.createVcpu();
  // 4K leaves on both sides of a 2 MiB boundary, at the slot's last page and in its middle.
  for (const gfn of [0, 1, 0x1ff, 0x200, 0x3ffff, 0x12345]) vcpu.access(gfn * 4096, {});
  const root = vcpu.mmu.root;
  const rootLevel = mmu.rootLevel;

  const cases: [minLevel: number, start: number, end: number][] = [
    [1, 0, 0x400],
    [1, 0x1fe, 0x201],
    [1, 0x1ff, 0x200],
    [1, 0x12345, 0x12346],
    [1, 0, 2 ** 36],
    [2, 0, 2 ** 36],
    [3, 0x100, 2 ** 36],
    [1, 0x3fe00, 0x40000],
    // Past the root's last entry: the walk ends there (no step up from the root).
    [3, 0, 2 ** 40],
  ];
  for (const [minLevel, start, end] of cases) {
    it(`min level ${minLevel}, gfns [0x${start.toString(16)}, 0x${end.toString(16)})`, () => {
      const want = oracle(mmu.store, root, rootLevel, minLevel, start, end);
      expect(want.length).toBeGreaterThan(1);
      expect(walk(mmu.store, root, rootLevel, minLevel, start, end)).toEqual(want);
    });
  }

  it("before start nothing is valid; stepping down and back up re-reads the parent entry", () => {
    const it = new TdpIter(mmu.store);
    expect(it.valid).toBe(false);
    // gfn 0x12345: entry 0x91 at level 2, so a parent entry's index is not 0.
    it.start(root, rootLevel, 1, 0x12345, 0x12346);
    const path: Visit[] = [[it.level, it.gfn, it.oldLo, it.oldHi]];
    while (it.stepDown()) path.push([it.level, it.gfn, it.oldLo, it.oldHi]);
    expect(path.map((v) => v[0])).toEqual(
      Array.from({ length: rootLevel }, (_, i) => rootLevel - i),
    );
    for (let k = path.length - 2; k >= 0; k--) {
      expect(it.stepUp()).toBe(true);
      expect([it.level, it.gfn, it.oldLo, it.oldHi]).toEqual(path[k]);
    }
    expect(it.stepUp()).toBe(false);
  });

  it("counts a step per next() and write() stores both words of the current entry", () => {
    const it = new TdpIter(mmu.store);
    it.start(root, rootLevel, 1, 0, 2 ** 36);
    let n = 0;
    while (it.valid) {
      it.next();
      n++;
    }
    expect(it.steps).toBe(n);
    it.start(root, rootLevel, 1, 0x1ff, 0x200);
    while (it.level > 1) it.next();
    const [lo, hi] = [it.oldLo, it.oldHi];
    it.write(0x1234, 0x5678);
    const spt = mmu.store.spt[it.sp]!;
    expect([spt[it.index * 2], spt[it.index * 2 + 1], it.oldLo, it.oldHi]).toEqual([
      0x1234, 0x5678, 0x1234, 0x5678,
    ]);
    expect(it.index).toBe(0x1ff);
    it.write(lo, hi);
  });
});
