/**
 * Mapping level (`kvm_mmu_max_mapping_level`, `kvm_mmu_hugepage_adjust`): KVM's
 * dirty_log_page_splitting_test first assertion and scenario S10 (memslot edges).
 */
import { describe, expect, it } from "vitest";
import { gfnToIndex, SlotArch } from "../src/mmu/mmu_internal";
import { GIB, PAGE, pagesPerEntry, tdpVm } from "./tdp-helpers";

const MIB = 2 ** 20;

describe("dirty_log_page_splitting_test: populated stats", () => {
  for (const backing of ["hugetlb-2m", "hugetlb-1g"] as const) {
    it(`2 vCPUs, 2 memslots, 2 GiB of ${backing}: pages_2m*512 + pages_1g*262144 == host 4K pages`, () => {
      const { vm, mmu } = tdpVm();
      const perVcpu = GIB;
      // memstress: one slot per vCPU's share, both 1 GiB-aligned in gpa and hva.
      for (let i = 0; i < 2; i++) {
        vm.setUserMemoryRegion({
          slot: i + 1,
          guestPhysAddr: GIB * (1 + i),
          memorySize: perVcpu,
          flags: 0,
          backing,
          userspaceAddr: GIB * (8 + i),
        });
      }
      const vcpus = [vm.createVcpu(), vm.createVcpu()];
      // Each vCPU writes every 4K page of its own GiB (guest code of memstress).
      for (let i = 0; i < 2; i++) {
        const base = GIB * (1 + i);
        for (let off = 0; off < perVcpu; off += PAGE) {
          const r = vcpus[i]!.access(base + off, { write: true });
          if (r.fault) throw new Error("unexpected fault");
        }
      }
      const s = mmu.stats;
      const hostPages = (2 * perVcpu) / PAGE;
      expect(s.pages_4k).toBe(0);
      expect(s.pages_2m * pagesPerEntry(2) + s.pages_1g * pagesPerEntry(3)).toBe(hostPages);
      // One fault per leaf: the huge page size of the backing decides the leaf level.
      const leafPages = backing === "hugetlb-2m" ? pagesPerEntry(2) : pagesPerEntry(3);
      expect(s.pf_fixed).toBe(hostPages / leafPages);
    });
  }
});

describe("S10: memslot edges that are not huge-page aligned", () => {
  const base = MIB; // gfn 0x100
  const size = GIB - MIB; // npages 0x3FF00, ends at gfn 0x40000

  it("lpage_info: L2 512 entries, first disallowed, last allowed; L3 one entry, disallowed", () => {
    const { vm } = tdpVm();
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: base,
      memorySize: size,
      flags: 0,
      userspaceAddr: 16 * GIB + base,
    });
    const slot = vm.memslots.get(0)!;
    const arch = slot.arch as SlotArch;
    expect(arch).toBeInstanceOf(SlotArch);
    // Entries at level 2: gfns 0x100..0x3FFFF cover 2M regions 0..511.
    expect(arch.lpageInfo[0].length).toBe(0x40000 / 512);
    expect(arch.lpageInfo[0][0]).toBe(1); // base 0x100 not 2M-aligned
    expect(arch.lpageInfo[0][arch.lpageInfo[0].length - 1]).toBe(0); // end 0x40000 aligned
    expect(arch.lpageInfo[0].slice(1).every((v) => v === 0)).toBe(true);
    expect(Array.from(arch.lpageInfo[1])).toEqual([1]); // base not 1G-aligned
    expect(gfnToIndex(0x200, 0x100, 2)).toBe(1);
  });

  for (const backing of ["hugetlb-2m", "hugetlb-1g", "thp"] as const) {
    it(`${backing}: gfns 0x100-0x1FF map 4K, the rest 2M, never 1G`, () => {
      const { vm, mmu } = tdpVm();
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: base,
        memorySize: size,
        flags: 0,
        backing,
        userspaceAddr: 16 * GIB + base,
      });
      const vcpu = vm.createVcpu();
      for (let gpa = base; gpa < base + size; gpa += PAGE) vcpu.access(gpa, {});
      const s = mmu.stats;
      const headPages = (2 * MIB - base) / PAGE; // 256 pages before the first 2M boundary
      expect(s.pages_4k).toBe(headPages);
      expect(s.pages_2m).toBe((size - (2 * MIB - base)) / (2 * MIB));
      expect(s.pages_1g).toBe(0);
    });
  }

  it("hva not congruent to gpa modulo 2M: every entry disallowed, 4K only", () => {
    const { vm, mmu } = tdpVm();
    // hva offset by 4 KiB relative to gpa modulo 2 MiB.
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 64 * MIB,
      flags: 0,
      backing: "hugetlb-2m",
      userspaceAddr: 16 * GIB + PAGE,
    });
    const arch = vm.memslots.get(0)!.arch as SlotArch;
    expect(Array.from(arch.lpageInfo[0]).every((v) => v === 1)).toBe(true);
    const vcpu = vm.createVcpu();
    for (let gpa = 0; gpa < 64 * MIB; gpa += PAGE) vcpu.access(gpa, {});
    expect(mmu.stats.pages_4k).toBe((64 * MIB) / PAGE);
    expect(mmu.stats.pages_2m + mmu.stats.pages_1g).toBe(0);
  });

  it("a dirty-logged slot maps 4K only (hugepage_adjust)", () => {
    const { vm, mmu } = tdpVm();
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * MIB,
      flags: 1,
      backing: "hugetlb-2m",
      userspaceAddr: 16 * GIB,
    });
    const vcpu = vm.createVcpu();
    for (let gpa = 0; gpa < 4 * MIB; gpa += PAGE) vcpu.access(gpa, {});
    expect(mmu.stats.pages_4k).toBe((4 * MIB) / PAGE);
    expect(mmu.stats.pages_2m).toBe(0);
  });
});
