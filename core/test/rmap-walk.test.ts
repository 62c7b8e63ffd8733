/**
 * SlotRmapWalkIterator (`for_each_slot_rmap_range` over the memslots) against a brute-force
 * oracle: for every slot with rmaps, every level in [minLevel, maxLevel] and every gfn of the
 * slot inside [start, end), the head index floor(gfn / 512^(level-1)) - floor(base / 512^(level-1)),
 * each index once, in slot, level, index order.
 */
import { describe, expect, it } from "vitest";
import { MemSlot } from "../src/kvm/memslot";
import { SlotRmapWalkIterator } from "../src/mmu/mmu";
import { SlotRmap, slotArch } from "../src/mmu/mmu_internal";

const GB_PAGES = 512 * 512;

function slot(id: number, base: number, npages: number, withRmap: boolean): MemSlot {
  const s = new MemSlot(id, base, npages, 0, base * 4096, "4k");
  if (withRmap) slotArch(s).rmap = new SlotRmap(base, npages);
  return s;
}

// Sorted by base gfn, as MemSlots.list() returns them; slot 2 has no rmaps yet.
const SLOTS = [
  slot(1, 0x1ff, 0x403, true), // unaligned at both ends at level 2
  slot(2, 0x1000, 0x400, false),
  slot(3, GB_PAGES - 3, 10, true), // crosses a 1 GiB boundary
  slot(4, GB_PAGES + 0x800, 1, true),
];

type Visit = [slotId: number, level: number, index: number];

function oracle(start: number, end: number, minLevel: number, maxLevel: number): Visit[] {
  const out: Visit[] = [];
  for (const s of SLOTS) {
    if ((s.arch as { rmap: SlotRmap | null } | undefined)?.rmap == null) continue;
    for (let level = minLevel; level <= maxLevel; level++) {
      const span = 512 ** (level - 1);
      let last = -1;
      for (let gfn = s.baseGfn; gfn < s.baseGfn + s.npages; gfn++) {
        if (gfn < start || gfn >= end) continue;
        const index = Math.floor(gfn / span) - Math.floor(s.baseGfn / span);
        if (index !== last) out.push([s.id, level, index]);
        last = index;
      }
    }
  }
  return out;
}

function walk(start: number, end: number, minLevel: number, maxLevel: number): Visit[] {
  const out: Visit[] = [];
  const w = new SlotRmapWalkIterator();
  for (w.init(SLOTS, start, end, minLevel, maxLevel); w.valid; w.next()) {
    const rmap = slotArch(w.slot!).rmap!;
    expect(w.heads).toBe(rmap.heads[w.level - 1]);
    expect(w.index).toBeLessThan(w.heads.length);
    out.push([w.slot!.id, w.level, w.index]);
  }
  return out;
}

describe("SlotRmapWalkIterator", () => {
  const ranges: [number, number][] = [
    [0, 2 * GB_PAGES], // everything
    [0x200, 0x201], // one gfn
    [0x3ff, 0x401], // across a 2 MiB boundary
    [0x500, 0x700], // past slot 1's end
    [0x1000, 0x1400], // only the slot without rmaps
    [GB_PAGES - 1, GB_PAGES + 1], // across 1 GiB inside slot 3
    [GB_PAGES + 0x800, GB_PAGES + 0x801], // the one-page slot
    [5 * GB_PAGES, 6 * GB_PAGES], // no slot
    [0x300, 0x300], // empty range
  ];
  for (const [start, end] of ranges) {
    for (const [minLevel, maxLevel] of [
      [1, 3],
      [1, 2],
      [2, 3],
      [3, 3],
      [2, 1], // no level: nothing visited
    ] as const) {
      it(`[0x${start.toString(16)}, 0x${end.toString(16)}) levels ${minLevel}..${maxLevel}`, () => {
        expect(walk(start, end, minLevel, maxLevel)).toEqual(
          oracle(start, end, minLevel, maxLevel),
        );
      });
    }
  }

  it("the oracle is not vacuous: the full range visits every slot with rmaps at every level", () => {
    const v = oracle(0, 2 * GB_PAGES, 1, 3);
    expect(new Set(v.map((x) => x[0]))).toEqual(new Set([1, 3, 4]));
    // slot 1 spans gfns 0x1ff..0x601: level 2 indices 0..3 (0x1ff, 0x200-0x3ff, 0x400-0x5ff, 0x600-0x601)
    expect(v.filter((x) => x[0] === 1 && x[1] === 2).map((x) => x[2])).toEqual([0, 1, 2, 3]);
    expect(v.filter((x) => x[0] === 3 && x[1] === 3).map((x) => x[2])).toEqual([0, 1]);
  });
});
