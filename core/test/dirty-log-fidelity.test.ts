/**
 * Dirty-logging details checked against the kernel functions that decide them:
 * - kvm_prepare_memory_region (virt/kvm/kvm_main.c): a bitmap allocated with
 *   KVM_DIRTY_LOG_INITIALLY_SET starts all ones — at CREATE with KVM_MEM_LOG_DIRTY_PAGES too,
 *   and for read-only slots;
 * - kvm_mmu_slot_apply_flags (x86.c): nothing happens to the mappings of a KVM_MEM_READONLY
 *   slot when logging is turned on or off;
 * - kvm_clear_dirty_log_protect (kvm_main.c): num_pages 0, and first_page == npages, are
 *   accepted (the check is first_page > npages) and do nothing;
 * - kvm_arch_mmu_enable_log_dirty_pt_masked (mmu.c): "Cross two large pages?" compares
 *   ALIGN(start) with ALIGN(end), rounding up;
 * - every rmap walk counts each head it visits, empty or not, in rmap_heads_scanned.
 */
import { describe, expect, it } from "vitest";
import { createVm } from "../src";
import { popcount } from "./tdp-helpers";

const MIB = 2 ** 20;
const LOG = 1;
const READONLY = 2;

describe("dirty logging fidelity", () => {
  it("INITIALLY_SET: a slot created already logging starts with every bit set (also read-only slots)", () => {
    for (const flags of [LOG, LOG | READONLY]) {
      const vm = createVm({
        features: { manualDirtyLogProtect: true, dirtyLogInitiallySet: true },
      });
      const npages = 262147; // not a multiple of 64: the tail bits too, and no more
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: npages * 4096, flags });
      expect(popcount(vm.getDirtyLog(0))).toBe(npages);
    }
  });

  it("a read-only slot keeps its mappings when logging goes on and off (kvm_mmu_slot_apply_flags)", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct" } });
    const region = (flags: number) =>
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 8 * MIB,
        flags,
        backing: "thp",
      });
    region(READONLY);
    const vcpu = vm.createVcpu();
    for (let g = 0; g < 2048; g++) vcpu.access(g * 4096);
    const before = { ...vm.stats.toJSON() };
    region(READONLY | LOG);
    region(READONLY);
    const after = vm.stats;
    expect([after.pages_2m, after.pages_4k]).toEqual([before.pages_2m, before.pages_4k]);
    expect(after.remote_tlb_flush_requests).toBe(before.remote_tlb_flush_requests);
    expect(after.collapse_sptes_zapped).toBe(0);
  });

  it("CLEAR_DIRTY_LOG: num_pages 0 and first_page == npages are accepted no-ops; first_page > npages is EINVAL", () => {
    const vm = createVm({ features: { manualDirtyLogProtect: true } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 128 * 4096, flags: LOG });
    expect(vm.clearDirtyLog(0, 0, 0, new Uint32Array(0))).toBe(0);
    expect(vm.clearDirtyLog(0, 128, 0, new Uint32Array(0))).toBe(0);
    expect(() => vm.clearDirtyLog(0, 192, 0, new Uint32Array(0))).toThrow(/firstPage.*192/);
    expect(vm.stats.remote_tlb_flush_requests).toBe(0);
  });

  it("INITIALLY_SET clear: a mask starting at a 2M boundary write-protects the end's huge page too (ALIGN rounds up)", () => {
    // Bits 0..63 of the second 2M region (gfn 512..575): start 512 is 2M-aligned, so
    // ALIGN(start) = 512·4K but ALIGN(end = 575) = 1024·4K: the kernel protects "end" as well.
    const vm = createVm({
      features: {
        manualDirtyLogProtect: true,
        dirtyLogInitiallySet: true,
        eagerPageSplit: false,
        mmuFlavor: "legacy_direct",
      },
    });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 8 * MIB,
      flags: LOG,
      backing: "thp",
    });
    const b = { ...vm.stats.toJSON() };
    vm.clearDirtyLog(0, 512, 64, new Uint32Array([0xffffffff, 0xffffffff]));
    // kvm_mmu_slot_gfn_write_protect(start, 2M) and (end, 2M): rmap heads of levels 2 and 3,
    // twice; then the 4K heads of the 64 gfns.
    expect(vm.stats.rmap_heads_scanned - b.rmap_heads_scanned!).toBe(2 * 2 + 64);
  });

  it("rmap_heads_scanned counts every head a walk visits, empty or not, in every walk", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    const region = (flags: number) =>
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 8 * MIB, flags });
    region(0);
    const vcpu = vm.createVcpu();
    vcpu.access(0x1000, { write: true }); // one leaf
    const heads = 2048 + 4 + 1; // levels 1..3 of an 8 MiB slot
    let b = vm.stats.rmap_heads_scanned;
    region(LOG); // write protection: levels 1..3
    expect(vm.stats.rmap_heads_scanned - b).toBe(heads);
    b = vm.stats.rmap_heads_scanned;
    region(0); // collapse (modern criterion): levels 1..2
    expect(vm.stats.rmap_heads_scanned - b).toBe(2048 + 4);
    b = vm.stats.rmap_heads_scanned;
    vm.zapGfnRange(0, 2048); // zap: levels 1..3
    expect(vm.stats.rmap_heads_scanned - b).toBe(heads);
  });
});
