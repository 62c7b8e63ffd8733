/** Helpers shared by the TDP MMU tests: a VM with KVM's MMU, geometry helpers. */
import type { VmMmu } from "../src/mmu/mmu";
import { LastSpte, walkToLastSpte } from "../src/mmu/mmu_internal";
import type { Vcpu } from "../src/vcpu";
import { createVm, type Vm } from "../src/vm";

export const PAGE = 4096;
export const GIB = 2 ** 30;
/** 4 KiB pages covered by one entry at level l (architecture: 9 bits per level). */
export const pagesPerEntry = (level: number): number => 512 ** (level - 1);

export interface TdpVm {
  vm: Vm;
  mmu: VmMmu;
}

/**
 * The S1 memslot (s1-fault-in.test.ts): slot 0, 1 GiB at gpa 0 with `backing`, at hva 4 GiB
 * (1 GiB-aligned, so every backing can map its largest page size).
 */
export function addS1Slot(vm: Vm, backing: "4k" | "thp" | "hugetlb-2m" | "hugetlb-1g"): void {
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: GIB,
    flags: 0,
    backing,
    userspaceAddr: 4 * GIB,
  });
}

/** A VM with KVM's MMU beneath (EPT), with the given switches. */
export function tdpVm(features: Record<string, unknown> = {}, maxPhysAddrBits = 46): TdpVm {
  const vm = createVm({ maxPhysAddrBits, features });
  return { vm, mmu: vm.mmu! };
}

/**
 * The last spte on `gfn`'s path under the vCPU's root (the entry the CPU would use), after the
 * vCPU has entered the guest at least once.
 */
export function lastSpte(vm: Vm, vcpu: Vcpu, gfn: number): LastSpte {
  const out = new LastSpte();
  walkToLastSpte(vm.mmu!.store, vcpu.mmu.root, vm.mmu!.rootLevel, gfn, out);
  return out;
}

/**
 * Shadow pages a fully populated direct TDP tree needs for `pages` contiguous 4 KiB pages from
 * gfn 0, with leaves at `leafLevel` and a root at `rootLevel`: at each level L ≥ leafLevel one
 * table per 512^L pages (at least one).
 */
export function tablesFor(pages: number, leafLevel: number, rootLevel: number): number {
  let n = 0;
  for (let l = leafLevel; l <= rootLevel; l++) n += Math.max(1, Math.ceil(pages / 512 ** l));
  return n;
}

/**
 * The dirty-log cycles' guest: 1 GiB of THP at gpa 0 (hva 4 GiB), one vCPU; `region(flags)`
 * re-registers the slot with new flags (KVM_MEM_LOG_DIRTY_PAGES on or off) and `pass(write)`
 * makes one access per 4 KiB page in ascending order.
 */
export function thpGibGuest(vm: Vm) {
  const region = (flags: number) =>
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: GIB,
      flags,
      backing: "thp",
      userspaceAddr: 4 * GIB,
    });
  region(0);
  const vcpu = vm.createVcpu();
  const pass = (write: boolean) => {
    for (let gfn = 0; gfn < GIB / PAGE; gfn++) vcpu.access(gfn * PAGE, { write });
  };
  return { region, pass, vcpu };
}

/** Set bits of a dirty bitmap. */
export function popcount(a: Uint32Array): number {
  let n = 0;
  for (let v of a) {
    v >>>= 0;
    while (v !== 0) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}
