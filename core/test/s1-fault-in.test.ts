/**
 * S1: fault in a 1 GiB guest, one access per 4 KiB page in ascending order,
 * with each host backing; counts derived from the paging geometry, with seed 2010 on and off.
 */
import { describe, expect, it } from "vitest";
import { addS1Slot, GIB, PAGE, pagesPerEntry, tablesFor, tdpVm } from "./tdp-helpers";

const GUEST_PAGES = GIB / PAGE; // 262 144

type Backing = "4k" | "thp" | "hugetlb-2m" | "hugetlb-1g";
/** Leaf level each backing yields for a 1 GiB-aligned slot whose hva is 1 GiB-aligned. */
const LEAF_LEVEL: Record<Backing, number> = { "4k": 1, thp: 2, "hugetlb-2m": 2, "hugetlb-1g": 3 };

function faultIn(backing: Backing, features: Record<string, unknown>) {
  const { vm, mmu } = tdpVm(features);
  addS1Slot(vm, backing);
  const vcpu = vm.createVcpu(); // CR0.PG = 0 after reset: gva = gpa
  for (let gfn = 0; gfn < GUEST_PAGES; gfn++) {
    const r = vcpu.access(gfn * PAGE, {});
    if (r.fault || r.gpa !== gfn * PAGE)
      throw new Error(`access to gfn ${gfn} failed: ${JSON.stringify(r)}`);
  }
  return { vm, mmu, stats: mmu.stats };
}

for (const seed2010Before of [false, true]) {
  describe(`S1 fault-in, TDP MMU, allocTranslationForDirect=${seed2010Before}`, () => {
    for (const backing of ["4k", "thp", "hugetlb-2m", "hugetlb-1g"] as Backing[]) {
      it(`${backing}: one fault per leaf, leaves and shadow pages match the geometry`, () => {
        const { stats } = faultIn(backing, {
          allocTranslationForDirect: seed2010Before,
          selfCheckGfns: true,
        });
        const level = LEAF_LEVEL[backing];
        // Every first touch of a leaf's range is one EPT violation fixed by one leaf.
        const leaves = GUEST_PAGES / pagesPerEntry(level);
        expect(stats.pf_taken).toBe(leaves);
        expect(stats.pf_fixed).toBe(leaves);
        expect(stats.pf_spurious + stats.pf_fast + stats.pf_emulate).toBe(0);
        expect([stats.pages_4k, stats.pages_2m, stats.pages_1g]).toEqual(
          [1, 2, 3].map((l) => (l === level ? leaves : 0)),
        );
        // Tables: root (level 4) + one per level down to the leaf level's table.
        const sps = tablesFor(GUEST_PAGES, level, 4);
        expect(stats.spt_pages_live).toBe(sps);
        // tdp_mmu_pages counts non-root pages only.
        expect(stats.tdp_mmu_pages).toBe(sps - 1);
        // Seed 2010: after the patch direct pages hold no gfn array; before, one page each.
        expect(stats.translation_pages_live).toBe(seed2010Before ? sps : 0);
        expect(stats.mmu_data_pages_live).toBe(seed2010Before ? 2 * sps : sps);
        // TDP MMU pages are not in n_used_mmu_pages; no flush during fault-in.
        expect(stats.n_used_mmu_pages).toBe(0);
        expect(stats.remote_tlb_flush_requests).toBe(0);
        expect(stats.mmu_cache_miss).toBe(0);
      });
    }
  });
}

describe("S1 numbers from the geometry", () => {
  it("4K backing: 515 shadow pages, 514 tdp_mmu_pages, 262 144 leaves; 515 vs 1030 data pages", () => {
    // 262144/512 PTs + PD + PDPT + root.
    expect(tablesFor(GUEST_PAGES, 1, 4)).toBe(GUEST_PAGES / 512 + 3);
    const after = faultIn("4k", {}).stats;
    const before = faultIn("4k", { allocTranslationForDirect: true }).stats;
    expect(after.pages_4k).toBe(GUEST_PAGES);
    expect(after.mmu_data_pages_live).toBe(GUEST_PAGES / 512 + 3);
    expect(before.mmu_data_pages_live).toBe(2 * (GUEST_PAGES / 512 + 3));
    // Saved memory: one 4 KiB page per shadow page.
    expect((before.mmu_data_pages_live - after.mmu_data_pages_live) * PAGE).toBe(
      (GUEST_PAGES / 512 + 3) * PAGE,
    );
  });

  it("5-level TDP adds exactly one table (the PML5 root)", () => {
    const { vm, mmu } = tdpVm({ tdpLevels: 5 });
    addS1Slot(vm, "thp");
    const vcpu = vm.createVcpu();
    for (let gfn = 0; gfn < GUEST_PAGES; gfn += 512) vcpu.access(gfn * PAGE, {});
    expect(mmu.stats.pages_2m).toBe(GUEST_PAGES / 512);
    expect(mmu.stats.spt_pages_live).toBe(tablesFor(GUEST_PAGES, 2, 5));
    expect(mmu.stats.tdp_mmu_pages).toBe(tablesFor(GUEST_PAGES, 2, 5) - 1);
  });
});
