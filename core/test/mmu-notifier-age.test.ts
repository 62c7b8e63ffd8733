/**
 * The MMU notifier's aging calls (virt/kvm/kvm_main.c: kvm_mmu_notifier_clear_flush_young,
 * _clear_young, _test_young → kvm_age_gfn / kvm_test_age_gfn). Expected values come from the
 * rules: a leaf is young when its A bit is set; KVM sets A when it maps a page for a fault and
 * leaves it clear on prefetched sptes (make_spte), the CPU sets it on every access; aging clears
 * it; clear_flush_young flushes when anything was young, clear_young never flushes; sptes without
 * A/D bits (EPT with eptad=0) are always young and aging zaps them (kvm_age_hva before v4.10).
 */
import { describe, expect, it } from "vitest";
import { createVm } from "../src";

const PAGE = 4096;
const MIB = 2 ** 20;
const HVA = 2 ** 33; // the slot's host address: 8 GiB

/** A non-paging guest over one 2 MiB slot of 4 KiB host pages at HVA. */
function flatVm(features: Record<string, unknown>) {
  const vm = createVm({ features: { prefetch: false, ...features } });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 2 * MIB,
    flags: 0,
    backing: "4k",
    userspaceAddr: HVA,
  });
  for (let i = 0; i < 512; i++) vm.guestWrite64(i * PAGE, BigInt(1000 + i));
  return { vm, vcpu: vm.createVcpu() };
}

/** Pages (by index in the slot) that test_young reports young, probing one page at a time. */
function youngPages(vm: ReturnType<typeof createVm>, pages: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < pages; i++)
    if (vm.mmuNotifierTestYoung(HVA + i * PAGE, HVA + (i + 1) * PAGE)) out.push(i);
  return out;
}

describe("MMU notifier aging, sptes with A/D bits", () => {
  for (const mmuFlavor of ["tdp_mmu", "legacy_direct"] as const) {
    it(`${mmuFlavor}: young = mapped since the last aging; clear_flush_young flushes once, clear_young never`, () => {
      const { vm, vcpu } = flatVm({ mmuFlavor });
      const touched = [0, 1, 2, 3, 9, 10, 11, 12, 40];
      for (const p of touched) vcpu.read(p * PAGE);
      expect(youngPages(vm, 64)).toEqual(touched);
      const s = vm.stats;
      const flushes = s.remote_tlb_flush_requests;
      // Pages 0..9 hold five young leaves: A cleared on those, one flush for the event.
      expect(vm.mmuNotifierClearFlushYoung(HVA, HVA + 10 * PAGE)).toBe(true);
      expect(s.remote_tlb_flush_requests).toBe(flushes + 1);
      expect(youngPages(vm, 64)).toEqual([10, 11, 12, 40]);
      // Nothing young in the range: no flush.
      expect(vm.mmuNotifierClearFlushYoung(HVA, HVA + 10 * PAGE)).toBe(false);
      expect(s.remote_tlb_flush_requests).toBe(flushes + 1);
      // The leaves stay: aging does not unmap, and an access sets A again without a fault.
      expect(s.pages_4k).toBe(touched.length);
      const faults = s.pf_fixed;
      expect(vcpu.read(2 * PAGE).value).toBe(1002n);
      expect(s.pf_fixed).toBe(faults);
      expect(youngPages(vm, 64)).toEqual([2, 10, 11, 12, 40]);
      // clear_young: the same aging without a flush.
      expect(vm.mmuNotifierClearYoung(HVA, HVA + 2 * MIB)).toBe(true);
      expect(s.remote_tlb_flush_requests).toBe(flushes + 1);
      expect(youngPages(vm, 64)).toEqual([]);
      expect(s.pages_4k).toBe(touched.length);
      // A partial host page counts whole; a range outside every slot finds nothing.
      vcpu.read(5 * PAGE);
      expect(vm.mmuNotifierTestYoung(HVA + 5 * PAGE + 4095, HVA + 5 * PAGE + 4096)).toBe(true);
      expect(vm.mmuNotifierTestYoung(0, PAGE)).toBe(false);
      expect(vm.audit()).toEqual([]);
    });
  }

  it("shadow paging: prefetched sptes are old, the guest's accesses make theirs young", () => {
    const PRUA = 0x27n; // P | RW | US | A: prefetchable gptes (FNAME(prefetch_invalid_gpte))
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * MIB,
      flags: 0,
      backing: "4k",
      userspaceAddr: HVA,
    });
    // gva page i → gfn 0x200 + i for i < 16, through PML4 0x100 → PDPT 0x101 → PD 0x102 → PT 0x103.
    vm.guestWrite64(0x100000, 0x101000n | PRUA);
    vm.guestWrite64(0x101000, 0x102000n | PRUA);
    vm.guestWrite64(0x102000, 0x103000n | PRUA);
    for (let i = 0; i < 16; i++)
      vm.guestWrite64(0x103000 + i * 8, BigInt((0x200 + i) * PAGE) | PRUA);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 0 });
    vcpu.read(0);
    vcpu.read(5 * PAGE);
    // pte_prefetch maps the aligned group of 8 around a fault: gfns 0x200..0x207 are mapped,
    // only 0x200 and 0x205 were accessed.
    const young = youngPages(vm, 0x210).filter((g) => g >= 0x200);
    expect(young).toEqual([0x200, 0x205]);
    expect(vm.stats.pages_4k).toBeGreaterThanOrEqual(8);
    expect(vm.mmuNotifierClearFlushYoung(HVA + 0x200 * PAGE, HVA + 0x210 * PAGE)).toBe(true);
    expect(youngPages(vm, 0x210).filter((g) => g >= 0x200)).toEqual([]);
    vcpu.read(7 * PAGE);
    expect(youngPages(vm, 0x210).filter((g) => g >= 0x200)).toEqual([0x207]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("MMU notifier aging, EPT without A/D bits (eptAccessDirty off)", () => {
  it("every mapped leaf is young; aging zaps the range's leaves, flushes, and the next access refaults", () => {
    const { vm, vcpu } = flatVm({ eptAccessDirty: false });
    for (let p = 0; p < 16; p++) vcpu.read(p * PAGE);
    const s = vm.stats;
    expect(s.pages_4k).toBe(16);
    expect(youngPages(vm, 32)).toEqual([...Array(16).keys()]);
    const flushes = s.remote_tlb_flush_requests;
    // clear_young zaps pages 0..7 and, unlike KVM, flushes (no CPU keeps a dropped translation).
    expect(vm.mmuNotifierClearYoung(HVA, HVA + 8 * PAGE)).toBe(true);
    expect(s.pages_4k).toBe(8);
    expect(s.remote_tlb_flush_requests).toBe(flushes + 1);
    expect(vm.mmuNotifierClearFlushYoung(HVA + 8 * PAGE, HVA + 12 * PAGE)).toBe(true);
    expect(s.pages_4k).toBe(4);
    expect(s.remote_tlb_flush_requests).toBe(flushes + 2);
    expect(youngPages(vm, 32)).toEqual([12, 13, 14, 15]);
    const faults = s.pf_fixed;
    expect(vcpu.read(3 * PAGE).value).toBe(1003n);
    expect(s.pf_fixed).toBe(faults + 1);
    expect(vm.audit()).toEqual([]);
  });

  it("rejects a bad range, naming it, and changes nothing", () => {
    const { vm } = flatVm({});
    expect(() => vm.mmuNotifierClearFlushYoung(HVA, HVA)).toThrow(/hvaEnd/);
    expect(() => vm.mmuNotifierTestYoung(-1, PAGE)).toThrow(/hvaStart/);
    expect(() => vm.mmuNotifierClearYoung(Number.NaN, PAGE)).toThrow(/hvaStart/);
  });
});
