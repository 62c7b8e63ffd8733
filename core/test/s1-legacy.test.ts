/**
 * S1 (fault in a 1 GiB guest, one access per 4 KiB page) on the legacy direct MMU (`tdp_mmu=0`)
 * and S9 (reclaim order under KVM_SET_NR_MMU_PAGES 64), with counts
 * derived from the geometry and KVM's accounting rules (hash lookup misses allocate, every page
 * counts in n_used, reclaim zaps 25 − available pages from the tail of active_mmu_pages).
 */
import { describe, expect, it } from "vitest";
import { kvmPageTableHashfn } from "../src/mmu/mmu";
import type { SlotArch } from "../src/mmu/mmu_internal";
import { createVm } from "../src/vm";
import { addS1Slot, GIB, PAGE, pagesPerEntry, tablesFor } from "./tdp-helpers";

const GUEST_PAGES = GIB / PAGE;

function legacyVm(features: Record<string, unknown>, backing: "4k" | "thp") {
  const vm = createVm({ mmu: "tdp", features: { mmuFlavor: "legacy_direct", ...features } });
  addS1Slot(vm, backing);
  return vm;
}

describe("hash_64(gfn, 12) without BigInt", () => {
  it("matches the 64-bit multiplicative hash for the S5 table gfns and random gfns", () => {
    const ref = (gfn: number) =>
      Number(((BigInt(gfn) * 0x61c8864680b583ebn) & ((1n << 64n) - 1n)) >> 52n);
    expect([0x100, 0x101, 0x102, 0x103].map(kvmPageTableHashfn)).toEqual([3208, 676, 2241, 3805]);
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const gfn = x * 256 + (i % 256); // up to 2^40
      expect(kvmPageTableHashfn(gfn)).toBe(ref(gfn));
    }
  });
});

describe("S1 fault-in, legacy direct MMU", () => {
  for (const before of [false, true]) {
    it(`4K, prefetch off, allocTranslationForDirect=${before}: 262144 faults, 515 pages all counted in n_used`, () => {
      const vm = legacyVm(
        { prefetch: false, allocTranslationForDirect: before, selfCheckGfns: true },
        "4k",
      );
      const vcpu = vm.createVcpu();
      for (let gfn = 0; gfn < GUEST_PAGES; gfn++) vcpu.access(gfn * PAGE, {});
      const s = vm.stats;
      const sps = tablesFor(GUEST_PAGES, 1, 4);
      expect(s.pf_fixed).toBe(GUEST_PAGES);
      expect(s.pages_4k).toBe(GUEST_PAGES);
      expect(s.spt_pages_live).toBe(sps);
      expect(s.n_used_mmu_pages).toBe(sps); // legacy pages, root included, are all accounted
      expect(s.mmu_cache_miss).toBe(sps); // every page came from a hash miss
      expect(s.tdp_mmu_pages).toBe(0);
      expect(s.mmu_data_pages_live).toBe(before ? 2 * sps : sps);
      expect(s.remote_tlb_flush_requests).toBe(0);
      expect(s.n_max_mmu_pages).toBe(Math.floor(GUEST_PAGES / 50)); // 5242: no reclaim needed
      expect(vm.audit()).toEqual([]);
    });
  }

  it("4K, prefetch on: one fault per aligned group of PTE_PREFETCH_NUM = 8", () => {
    const vm = legacyVm({}, "4k");
    const vcpu = vm.createVcpu();
    for (let gfn = 0; gfn < GUEST_PAGES; gfn++) vcpu.access(gfn * PAGE, {});
    const s = vm.stats;
    expect(s.pf_fixed).toBe(GUEST_PAGES / 8);
    expect(s.pages_4k).toBe(GUEST_PAGES);
    expect(s.spt_pages_live).toBe(tablesFor(GUEST_PAGES, 1, 4));
    expect(vm.audit()).toEqual([]);
  });

  it("2M THP: 512 faults, 512 non-empty level-2 rmap heads, 3 pages", () => {
    const vm = legacyVm({}, "thp");
    const vcpu = vm.createVcpu();
    for (let gfn = 0; gfn < GUEST_PAGES; gfn++) vcpu.access(gfn * PAGE, {});
    const s = vm.stats;
    const leaves = GUEST_PAGES / pagesPerEntry(2);
    expect(s.pf_fixed).toBe(leaves);
    expect(s.pages_2m).toBe(leaves);
    const rmap = (vm.memslots.get(0)!.arch as SlotArch).rmap!;
    expect(rmap.heads[1].filter((h) => h !== 0).length).toBe(leaves);
    expect(rmap.heads[0].filter((h) => h !== 0).length).toBe(0);
    // rmap head counts per level (262144 + 512 + 1 = 262657)
    expect(rmap.heads[0].length + rmap.heads[1].length + rmap.heads[2].length).toBe(
      GUEST_PAGES + GUEST_PAGES / 512 + 1,
    );
    const sps = tablesFor(GUEST_PAGES, 2, 4);
    expect([s.spt_pages_live, s.n_used_mmu_pages, s.mmu_cache_miss]).toEqual([sps, sps, sps]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("S9 reclaim order: KVM_SET_NR_MMU_PAGES 64, one touch per 2M region", () => {
  it("zaps 21 oldest non-root pages at fault 58 and again at fault 77", () => {
    const vm = legacyVm({ prefetch: false }, "4k");
    const mmu = vm.mmu!;
    expect(() => vm.setNrMmuPages(63)).toThrow(/nrMmuPages/);
    vm.setNrMmuPages(64);
    const vcpu = vm.createVcpu();
    const s = vm.stats;
    const MIN_FREE = 5;
    const REFILL = 25;
    const touch = (k: number) => vcpu.access(k * 512 * PAGE, {}); // k-th 2M region, k from 0
    // Root + L3 + L2 + one PT per region: n_used = 3 + k until available drops below 5.
    let k = 0;
    while (64 - (3 + k) >= MIN_FREE) {
      touch(k);
      k++;
      expect(s.n_used_mmu_pages).toBe(3 + k);
    }
    expect(k).toBe(57);
    expect(vm.audit()).toEqual([]);
    // Fault 58: available 4 → zap 25 − 4 = 21 from the tail (L3, L2, PT0..PT18), one flush.
    const zap = REFILL - (64 - s.n_used_mmu_pages);
    // Re-read region 20 (mapped: no fault) so that a cached translation of it would be fresh.
    const taken20 = s.pf_taken;
    touch(20);
    expect(s.pf_taken).toBe(taken20);
    touch(k++);
    expect(s.mmu_recycled).toBe(zap);
    expect(s.remote_tlb_flush_requests).toBe(1);
    // PT0..PT18 lost their leaf; PT19..PT56 survive as orphans with theirs; PT57 + L3 + L2 new.
    expect(s.pages_4k).toBe(58 - (zap - 2));
    expect(s.n_used_mmu_pages).toBe(60 - zap + 3);
    expect(s.mmu_cache_miss).toBe(1 + 3 * 1 + 56 + 3); // root, first L3/L2/PT0, PT1..PT56, L3/L2/PT57
    expect(mmu.orphanCount()).toBe(57 - (zap - 2));
    expect(vm.audit()).toEqual([]);
    // Region 20 is still mapped by the orphan PT20, but no path from the root reaches it: the
    // access faults, the hash finds PT20 (same gfn and role) and relinks it with its leaf.
    const taken = s.pf_taken;
    const leaves = s.pages_4k;
    const misses = s.mmu_cache_miss;
    touch(20);
    expect(s.pf_taken - taken).toBe(1);
    expect(s.pages_4k).toBe(leaves);
    expect(s.mmu_cache_miss - misses).toBe(0);
    expect(mmu.orphanCount()).toBe(57 - (zap - 2) - 1);
    expect(vm.audit()).toEqual([]);
    k = 58; // region 20 was not a new region: continue with region 58
    // Faults 59..76 add one PT each until n_used is 60 again; fault 77 zaps PT19..PT39.
    while (s.n_used_mmu_pages < 60) touch(k++);
    expect(k).toBe(76);
    const flushes = s.remote_tlb_flush_requests;
    touch(k++);
    expect(s.mmu_recycled).toBe(2 * zap);
    expect(s.remote_tlb_flush_requests - flushes).toBe(1);
    // The 21 oldest are PT19..PT39: PT20 keeps its old place on the list (a hash hit does not
    // move a page), so 20 of them were orphans. 38 − 1 (PT20 relinked) − 20 = 17 remain.
    expect(mmu.orphanCount()).toBe(57 - (zap - 2) - 1 - (zap - 1));
    expect(vm.audit()).toEqual([]);
  });
});

describe("legacy: a huge leaf over a page table orphans it (mmu_set_spte → drop_parent_pte)", () => {
  it("the orphan keeps its rmapped leaves; translations go through the new leaf only", () => {
    const MIB = 2 ** 20;
    // collapse "none": turning logging off keeps the 4K leaves (pre-4.1 behaviour), so the refault
    // below overwrites a PDE that still points at a populated PT.
    const vm = createVm({
      features: { mmuFlavor: "legacy_direct", prefetch: false, collapseOnLogDisable: "none" },
    });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 2 * MIB,
      flags: 1,
      backing: "thp",
      userspaceAddr: 4 * GIB,
    });
    const vcpu = vm.createVcpu();
    const s = vm.stats;
    for (let gfn = 0; gfn < 256; gfn++) vcpu.access(gfn * PAGE, {}); // logging: 4K only
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 0 });
    vcpu.access(0, {}); // mapped: no fault
    const taken = s.pf_taken;
    vcpu.access(300 * PAGE, {}); // unmapped: 2M leaf replaces the PDE → PT orphaned, one flush
    expect(s.pf_taken - taken).toBe(1);
    expect([s.pages_2m, s.pages_4k]).toEqual([1, 256]); // the orphan's leaves stay counted
    expect(vm.mmu!.orphanCount()).toBe(1);
    expect(s.remote_tlb_flush_requests).toBe(1);
    expect(vm.audit()).toEqual([]);
    // Zap the 2M leaf: gfn 0 must fault again even though the orphan still maps it.
    expect(vm.zapSpte(0)).toBe(1);
    vcpu.access(0, {});
    expect(s.pf_taken - taken).toBe(2);
    expect(s.pages_2m).toBe(1);
    expect(vm.audit()).toEqual([]);
  });
});
