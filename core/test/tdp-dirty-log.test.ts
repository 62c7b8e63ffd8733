/**
 * Dirty-log cycles, S2 (TDP MMU, v6.12 defaults) and S3 (legacy direct MMU): enable logging on a
 * 1 GiB guest mapped with 2M pages, write every page, GET_DIRTY_LOG, disable; and S11 (manual
 * protect with KVM_DIRTY_LOG_INITIALLY_SET). Expected counts derived from the geometry.
 */
import { describe, expect, it } from "vitest";
import { createVm } from "../src/vm";
import { GIB, PAGE, pagesPerEntry, popcount, tablesFor, thpGibGuest } from "./tdp-helpers";

const PAGES = GIB / PAGE; // 262 144 4K pages
const HUGE = PAGES / pagesPerEntry(2); // 512 2M regions
const LOG = 1; // KVM_MEM_LOG_DIRTY_PAGES

function guest(features: Record<string, unknown>) {
  const vm = createVm({ features });
  const { region, pass } = thpGibGuest(vm);
  pass(false); // S1 2M row: 512 huge leaves
  return { vm, s: vm.stats, region, pass };
}

/** Snapshot the counters that the steps change. */
const snap = (s: ReturnType<typeof guest>["s"]) => ({ ...s.toJSON() });

describe("S2: dirty-log cycle, TDP MMU (eager split, no PML, collapse by zap)", () => {
  it("enable / write / GET / write+GET / disable / touch", () => {
    const { vm, s, region, pass } = guest({});
    expect(s.pages_2m).toBe(HUGE);
    const sps2m = tablesFor(PAGES, 2, 4); // 3
    const sps4k = tablesFor(PAGES, 1, 4); // 515

    let b = snap(s);
    region(LOG); // enable
    expect(s.huge_splits - b.huge_splits!).toBe(HUGE);
    expect([s.pages_2m, s.pages_4k]).toEqual([0, PAGES]);
    expect([s.spt_pages_live, s.tdp_mmu_pages]).toEqual([sps4k, sps4k - 1]);
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
    // Every leaf lost W but kept MMU-writable (so writes can be fixed by the fast path).
    const w = vm.walkGpa(12345 * PAGE).steps.at(-1)!.flags;
    expect(w).toContain("mmu-writable");
    expect(w).not.toContain("writable");
    expect(vm.audit()).toEqual([]);

    for (let round = 0; round < 2; round++) {
      b = snap(s);
      pass(true); // write every 4K page: all fast faults
      expect(s.pf_taken - b.pf_taken!).toBe(PAGES);
      expect(s.pf_fast - b.pf_fast!).toBe(PAGES);
      expect(s.pf_fixed - b.pf_fixed!).toBe(PAGES);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(0);
      expect(s.spt_pages_live).toBe(sps4k);
      b = snap(s);
      const bits = vm.getDirtyLog(0);
      expect(popcount(bits)).toBe(PAGES);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
      // The bitmap was cleared: a second GET finds nothing and does not flush.
      expect(popcount(vm.getDirtyLog(0))).toBe(0);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
      expect(vm.audit()).toEqual([]);
    }

    b = snap(s);
    region(0); // disable: zap every collapsible PD entry, one flush per atomic zap
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(HUGE);
    expect([s.spt_pages_live, s.tdp_mmu_pages, s.pages_4k]).toEqual([sps2m, sps2m - 1, 0]);
    // One zapped PD entry and one freed PT per 2M region.
    expect(s.collapse_sptes_zapped - b.collapse_sptes_zapped!).toBe(HUGE);
    expect(s.collapse_tables_freed - b.collapse_tables_freed!).toBe(HUGE);
    b = snap(s);
    pass(false);
    expect(s.pf_fixed - b.pf_fixed!).toBe(HUGE);
    expect(s.refaults_after_disable - b.refaults_after_disable!).toBe(HUGE);
    expect(s.pf_fast - b.pf_fast!).toBe(0);
    expect(s.pages_2m).toBe(HUGE);
    expect(vm.audit()).toEqual([]);
  });

  it("eager split off: the first write to each 2M region splits on fault, no flush", () => {
    const { vm, s, region, pass } = guest({ eagerPageSplit: false });
    let b = snap(s);
    region(LOG);
    expect(s.pages_2m).toBe(HUGE); // huge leaves only lost W
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
    b = snap(s);
    pass(true);
    expect(s.huge_splits - b.huge_splits!).toBe(HUGE);
    expect(s.pf_fast - b.pf_fast!).toBe(PAGES - HUGE); // the 511 siblings of each split
    expect(s.pf_fixed - b.pf_fixed!).toBe(PAGES);
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(0);
    expect([s.pages_4k, s.spt_pages_live]).toEqual([PAGES, tablesFor(PAGES, 1, 4)]);
    expect(vm.audit()).toEqual([]);
  });

  it("collapse 'none' (before v4.1): 4K mappings stay; reads do not fault, writes are fast", () => {
    const { vm, s, region, pass } = guest({ collapseOnLogDisable: "none" });
    region(LOG);
    pass(true);
    vm.getDirtyLog(0);
    let b = snap(s);
    region(0);
    expect([s.pages_4k, s.spt_pages_live]).toEqual([PAGES, tablesFor(PAGES, 1, 4)]);
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(0);
    pass(false);
    expect(s.pf_taken - b.pf_taken!).toBe(0);
    b = snap(s);
    pass(true);
    expect(s.pf_fast - b.pf_fast!).toBe(PAGES);
    expect(vm.audit()).toEqual([]);
  });

  it("GET_DIRTY_LOG refuses a slot without logging, naming it", () => {
    const { vm } = guest({});
    expect(() => vm.getDirtyLog(0)).toThrow(/KVM_MEM_LOG_DIRTY_PAGES/);
    expect(() => vm.getDirtyLog(7)).toThrow(/existing memslot/);
  });
});

describe("S3: the same cycle on the legacy direct MMU", () => {
  // Collapse by the modern rmap criterion ("zap", ~5.13) or by seed 2015 itself ("rmap2015"),
  // with the walk's flushes batched (the patch) or one per spte.
  for (const [collapse, flush] of [
    ["zap", "batched"],
    ["rmap2015", "batched"],
    ["rmap2015", "perSpte"],
  ] as const) {
    it(`enable / write / GET / disable (${collapse}, ${flush} flushes) / touch`, () => {
      const { vm, s, region, pass } = guest({
        mmuFlavor: "legacy_direct",
        collapseOnLogDisable: collapse,
        collapseFlush: flush,
      });
      const sps2m = tablesFor(PAGES, 2, 4);
      let b = snap(s);
      region(LOG);
      // rmap walk of levels 1..3 over the slot: 262144 + 512 + 1 heads.
      expect(s.rmap_heads_scanned - b.rmap_heads_scanned!).toBe(PAGES + HUGE + 1);
      expect(s.pages_2m).toBe(HUGE);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
      b = snap(s);
      pass(true);
      // Per region: the fast path refuses the huge leaf, the slow path drops it (flush) under a
      // new PT and maps 4K; the 511 others are not-present faults (no prefetch while logging).
      expect(s.pf_taken - b.pf_taken!).toBe(PAGES);
      expect(s.pf_fast - b.pf_fast!).toBe(0);
      expect(s.mmu_cache_miss - b.mmu_cache_miss!).toBe(HUGE);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(HUGE);
      expect([s.pages_2m, s.pages_4k, s.n_used_mmu_pages]).toEqual([0, PAGES, sps2m + HUGE]);
      b = snap(s);
      expect(popcount(vm.getDirtyLog(0))).toBe(PAGES);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
      expect(vm.audit()).toEqual([]);
      b = snap(s);
      region(0); // every 4K leaf zapped (all in direct PTs over THP), PTs stay linked
      expect(s.pages_4k).toBe(0);
      expect(s.collapse_sptes_zapped - b.collapse_sptes_zapped!).toBe(PAGES);
      expect(s.collapse_tables_freed - b.collapse_tables_freed!).toBe(0);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(
        flush === "batched" ? 1 : PAGES,
      );
      expect(s.n_used_mmu_pages).toBe(sps2m + HUGE);
      b = snap(s);
      pass(false);
      // Each refault replaces a PDE pointing at an empty PT by a 2M leaf: PT orphaned, one flush.
      expect(s.pf_fixed - b.pf_fixed!).toBe(HUGE);
      expect(s.refaults_after_disable - b.refaults_after_disable!).toBe(HUGE);
      expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(HUGE);
      expect(s.pages_2m).toBe(HUGE);
      expect(vm.stats.orphan_sps).toBe(HUGE); // a recounted gauge: read through the getter
      expect(s.n_used_mmu_pages).toBe(sps2m + HUGE); // no reclaim: far below n_max
      expect(vm.audit()).toEqual([]);
    });
  }

  it("before seed 2015 (collapse 'none'): every 4K spte stays; reads refault nothing", () => {
    const { vm, s, region, pass } = guest({
      mmuFlavor: "legacy_direct",
      collapseOnLogDisable: "none",
    });
    region(LOG);
    pass(true);
    vm.getDirtyLog(0);
    let b = snap(s);
    region(0);
    expect([s.pages_4k, s.pages_2m]).toEqual([PAGES, 0]);
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(0);
    b = snap(s);
    pass(false);
    expect(s.pf_taken - b.pf_taken!).toBe(0);
    expect(s.refaults_after_disable).toBe(0);
    expect(vm.audit()).toEqual([]);
  });

  it("rmap2015 zaps wherever the host page is huge; the ~5.13 criterion also asks lpage_info", () => {
    // A slot whose hva is one page off its gpa modulo 2 MiB: kvm_alloc_memslot_metadata
    // disallows every huge mapping (disallow_lpage 1 everywhere), yet THP backs the host side
    // wherever a whole 2 MiB host page lies inside the mapping: hva [4 GiB + 4 KiB, + 8 MiB)
    // holds the three host pages at 4 GiB + 2, 4 and 6 MiB, i.e. 3 × 512 gfns.
    const npages = 4 * 512;
    const zapped: Record<string, number> = {};
    for (const collapse of ["rmap2015", "zap"] as const) {
      const vm = createVm({
        features: { mmuFlavor: "legacy_direct", collapseOnLogDisable: collapse },
      });
      const region = (flags: number) =>
        vm.setUserMemoryRegion({
          slot: 0,
          guestPhysAddr: 0,
          memorySize: npages * PAGE,
          flags,
          backing: "thp",
          userspaceAddr: 4 * GIB + PAGE,
        });
      region(0);
      const vcpu = vm.createVcpu();
      region(LOG);
      for (let g = 0; g < npages; g++) vcpu.access(g * PAGE, { write: true });
      expect(vm.stats.pages_4k).toBe(npages);
      region(0);
      zapped[collapse] = vm.stats.collapse_sptes_zapped;
      // Refaults map 4K again: the slot never allows a huge mapping.
      for (let g = 0; g < npages; g++) vcpu.access(g * PAGE);
      expect([vm.stats.pages_4k, vm.stats.pages_2m]).toEqual([npages, 0]);
      expect(vm.audit()).toEqual([]);
    }
    expect(zapped).toEqual({ rmap2015: 3 * 512, zap: 0 });
  });
});

describe("S2 variant: disable with collapse 'recover' (v6.13+)", () => {
  it("huge leaves installed in place: pages_4k 0, pages_2m 512, SPs 3, one flush, no refault", () => {
    const { vm, s, region, pass } = guest({ collapseOnLogDisable: "recover" });
    region(LOG);
    pass(true);
    vm.getDirtyLog(0);
    let b = snap(s);
    region(0);
    expect([s.pages_4k, s.pages_2m]).toEqual([0, HUGE]);
    expect([s.spt_pages_live, s.tdp_mmu_pages]).toEqual([
      tablesFor(PAGES, 2, 4),
      tablesFor(PAGES, 2, 4) - 1,
    ]);
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
    expect(s.collapse_hugepages_installed - b.collapse_hugepages_installed!).toBe(HUGE);
    expect(s.collapse_tables_freed - b.collapse_tables_freed!).toBe(HUGE);
    expect(vm.audit()).toEqual([]);
    // The recovered leaves map the same frames: a read pass takes no fault.
    b = snap(s);
    pass(false);
    expect(s.pf_taken - b.pf_taken!).toBe(0);
    expect(vm.walkGpa(777 * PAGE).pfn).toBe((4 * GIB) / PAGE + 777);
  });
});

describe("S11: manual protect with KVM_DIRTY_LOG_INITIALLY_SET, CLEAR_DIRTY_LOG", () => {
  const ones = (n: number) => new Uint32Array(Math.ceil(n / 32)).fill(0xffffffff);

  it("enabling logging changes nothing; the bitmap starts all ones; new faults map 4K", () => {
    const { vm, s, region } = guest({
      manualDirtyLogProtect: true,
      dirtyLogInitiallySet: true,
    });
    const b = snap(s);
    region(LOG);
    expect([
      s.pages_2m,
      s.huge_splits,
      s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!,
    ]).toEqual([HUGE, 0, 0]);
    expect(vm.walkGpa(0).steps.at(-1)!.flags).toContain("writable");
    expect(popcount(vm.getDirtyLog(0))).toBe(PAGES);
    expect(popcount(vm.getDirtyLog(0))).toBe(PAGES); // GET neither clears nor protects
    vm.zapGfnRange(0, 512);
    vm.vcpus[0]!.access(0, {});
    expect([s.pages_2m, s.pages_4k]).toEqual([HUGE - 1, 1]);
    expect(vm.audit()).toEqual([]);
  });

  it("CLEAR(0, 64) with eager split: the 2M leaf splits, the 64 pages lose W, one flush", () => {
    const { vm, s, region } = guest({
      manualDirtyLogProtect: true,
      dirtyLogInitiallySet: true,
    });
    region(LOG);
    const b = snap(s);
    expect(vm.clearDirtyLog(0, 0, 64, ones(64))).toBe(64);
    expect([s.pages_2m, s.pages_4k, s.huge_splits - b.huge_splits!]).toEqual([HUGE - 1, 512, 1]);
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
    expect(vm.walkGpa(63 * PAGE).steps.at(-1)!.flags).not.toContain("writable");
    expect(vm.walkGpa(64 * PAGE).steps.at(-1)!.flags).toContain("writable");
    expect(popcount(vm.getDirtyLog(0))).toBe(PAGES - 64);
    // Clearing the same bits again clears nothing and does not flush.
    expect(vm.clearDirtyLog(0, 0, 64, ones(64))).toBe(0);
    expect(s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
    expect(vm.audit()).toEqual([]);
  });

  it("CLEAR(0, 64) without eager split: W and MMU-writable go, every later write is a slow fault", () => {
    const { vm, s, region } = guest({
      manualDirtyLogProtect: true,
      dirtyLogInitiallySet: true,
      eagerPageSplit: false,
    });
    region(LOG);
    vm.clearDirtyLog(0, 0, 64, ones(64));
    expect(s.pages_2m).toBe(HUGE);
    const f = vm.walkGpa(0).steps.at(-1)!.flags;
    expect(f).not.toContain("writable");
    expect(f).not.toContain("mmu-writable");
    const b = snap(s);
    const vcpu = vm.vcpus[0]!;
    vcpu.access(0, { write: true }); // split on fault
    vcpu.access(PAGE, { write: true }); // a sibling: inherited no MMU-writable → slow too
    vcpu.access(100 * PAGE, { write: true });
    expect([
      s.pf_taken - b.pf_taken!,
      s.pf_fast - b.pf_fast!,
      s.huge_splits - b.huge_splits!,
    ]).toEqual([3, 0, 1]);
    expect(vm.audit()).toEqual([]);
  });

  it("validates its arguments like the ioctl (-EINVAL), changing nothing", () => {
    const { vm, s, region } = guest({ manualDirtyLogProtect: true, dirtyLogInitiallySet: true });
    expect(() => vm.clearDirtyLog(0, 0, 64, ones(64))).toThrow(/KVM_MEM_LOG_DIRTY_PAGES/);
    region(LOG);
    const b = snap(s);
    expect(() => vm.clearDirtyLog(0, 3, 64, ones(64))).toThrow(/invalid firstPage: 3/);
    expect(() => vm.clearDirtyLog(0, 0, 10, ones(64))).toThrow(/invalid numPages: 10/);
    expect(() => vm.clearDirtyLog(0, 0, 128, new Uint32Array(2))).toThrow(/invalid bitmap/);
    expect(() => createVm({ features: { dirtyLogInitiallySet: true } })).toThrow(
      /dirtyLogInitiallySet/,
    );
    expect(snap(s)).toEqual(b);
    expect(popcount(vm.getDirtyLog(0))).toBe(PAGES);
  });
});
