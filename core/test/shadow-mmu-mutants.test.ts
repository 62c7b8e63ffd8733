/**
 * Directed tests for the shadow MMU's page bookkeeping in mmu.ts (`kvm_mmu_track_write`, the spte
 * sink, `mmu_set_spte`, `__direct_pte_prefetch`, aging, reclaim): each pins a rule of
 * arch/x86/kvm/mmu/mmu.c that a StrykerJS mutant broke while the broader suites still passed.
 * Expected values come from the kernel's rules, worked out in the comments.
 */
import { describe, expect, it } from "vitest";
import { createVm } from "../src";
import { flushReasons } from "./flush-reasons";
import { EPT_D, EPT_W, GPTE } from "./kvm-values";

const { A, D } = GPTE;
const PRU = GPTE.P | GPTE.RW | GPTE.US;

/**
 * A 4-level shadow-paging guest: PML4 0x100 → PDPT 0x101 → PD 0x102; PD[2] (gva 0x400000) → PT
 * 0x103, whose entries 0..7 map gfn 0x200 + i. vCPU 0 runs it at CPL 3.
 */
function guest4() {
  const vm = createVm({ mmu: "shadow" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
  vm.guestWrite64(0x100000, 0x101000n | PRU);
  vm.guestWrite64(0x101000, 0x102000n | PRU);
  vm.guestWrite64(0x102000 + 2 * 8, 0x103000n | PRU);
  for (let i = 0; i < 8; i++)
    vm.guestWrite64(0x103000 + i * 8, BigInt((0x200 + i) * 4096) | PRU | A | D);
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
  return { vm, vcpu };
}

/** The valid indirect shadow page of guest table `gfn` at `level`. */
function page(vm: ReturnType<typeof createVm>, gfn: number, level: number) {
  const pages = vm
    .shadowPages()
    .pages.filter((p) => p.gfn === gfn && p.level === level && !p.direct && !p.role.invalid);
  expect(pages).toHaveLength(1);
  const spt = vm.mmu!.store.spt[pages[0]!.id]!;
  return { info: pages[0]!, present: (i: number) => (spt[i * 2]! & 0x800) !== 0 };
}

const FLAT_HVA = 2 ** 33;
/** A legacy-TDP VM (no prefetch) over 64 pages of 4K host pages at {@link FLAT_HVA}, one vCPU. */
function flatLegacy(features: Record<string, unknown>) {
  const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false, ...features } });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 64 * 4096,
    flags: 0,
    backing: "4k",
    userspaceAddr: FLAT_HVA,
  });
  return { vm, vcpu: vm.createVcpu() };
}

describe("kvm_mmu_track_write", () => {
  it("a 4-byte store by a 32-bit vCPU into the high half of an 8-byte gpte zaps that gpte's spte (get_written_sptes: page_offset / 8)", () => {
    const { vm, vcpu } = guest4();
    expect(vcpu.access(0x400000).fault).toBe(false);
    expect(page(vm, 0x102, 2).present(2)).toBe(true);
    // vCPU 1 runs 2-level paging: PD 0x300, PDE 1 (gva 0x400000) → PT 0x301, PTE 0 → gfn 0x102,
    // the 4-level guest's PD, which is write-protected (it is shadowed at level 2).
    vm.guestWrite32(0x300000 + 4, 0x301000 + 7);
    vm.guestWrite32(0x301000, 0x102000 + 0x67);
    const v32 = vm.createVcpu();
    v32.setSregs({ cr0: 0x80010001, cr3: 0x300000, cr4: 0, efer: 0, cpl: 0 });
    // PD[3]'s low half is not zero: a gentry read of 8 bytes at 0x102014 would not be 0.
    vm.guestWrite64(0x102000 + 3 * 8, 0x777000n);
    const writes = vm.stats.mmu_pte_write;
    // The high half of PD[2]: offset 0x14. !is_pae, so no widening; not misaligned
    // ((0x14 ^ 0x17) & ~7 = 0, bytes = 4); level 2, first write: not flooded. get_written_sptes
    // gives &spt[0x14 / 8] = entry 2, which is zapped: the link to PT 0x103 goes, with a flush.
    // The gentry read (4 bytes at 0x102014) is 0, so mmu_pde_zapped stays.
    const pdeZapped = vm.stats.mmu_pde_zapped;
    expect(flushReasons(vm, () => v32.write(0x400014, 0, { size: 4 }))).toContain("track_write");
    expect(vm.stats.mmu_pte_write).toBe(writes + 1);
    expect(vm.stats.mmu_flooded).toBe(0);
    expect(vm.stats.mmu_pde_zapped).toBe(pdeZapped);
    expect(page(vm, 0x102, 2).present(2)).toBe(false);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_track_write: the gentry, mmu_pde_zapped and the written sptes", () => {
  /** guest4 with gpte 0 mapped, and gva 0x40001000 mapping the PD 0x102 (write-tracked). */
  function pdWindow() {
    const g = guest4();
    g.vm.guestWrite64(0x101000 + 8, 0x104000n | PRU | A);
    g.vm.guestWrite64(0x104000, 0x105000n | PRU | A);
    g.vm.guestWrite64(0x105000 + 8, 0x102000n | PRU | A | D);
    expect(g.vcpu.access(0x400000).fault).toBe(false);
    expect(g.vcpu.read(0x40001000).fault).toBe(false);
    return { ...g, pd: () => page(g.vm, 0x102, 2) };
  }

  it("an 8-byte store of 0 into a PD entry: mmu_pte_write counts it, the gentry is 0 so mmu_pde_zapped does not", () => {
    const { vm, vcpu } = pdWindow();
    const s = vm.stats;
    const [writes, pde] = [s.mmu_pte_write, s.mmu_pde_zapped];
    expect(vcpu.write(0x40001000 + 5 * 8, 0n).fault).toBe(false);
    expect([s.mmu_pte_write - writes, s.mmu_pde_zapped - pde]).toEqual([1, 0]);
  });

  it("an 8-byte store whose low word is 0 still has a non-zero gentry (both halves are read)", () => {
    const { vm, vcpu } = pdWindow();
    const s = vm.stats;
    const pde = s.mmu_pde_zapped;
    expect(vcpu.write(0x40001000 + 5 * 8, 1n << 63n).fault).toBe(false);
    expect(s.mmu_pde_zapped - pde).toBe(1);
  });

  it("a 1-byte store at a gpte's first byte is not misaligned; no gentry is read for it", () => {
    const { vm, vcpu, pd } = pdWindow();
    const s = vm.stats;
    const [pde, flooded] = [s.mmu_pde_zapped, s.mmu_flooded];
    expect(pd().present(2)).toBe(true);
    // PD[2]'s low byte, rewritten with the value it has (0x27): the spte of entry 2 is zapped.
    expect(vcpu.write(0x40001000 + 2 * 8, 0x27n, { size: 1 }).fault).toBe(false);
    expect(pd().present(2)).toBe(false);
    expect([s.mmu_pde_zapped - pde, s.mmu_flooded - flooded]).toEqual([0, 0]);
  });

  it("a 4-byte store into a gpte's high half by a long-mode vCPU is widened to the whole gpte (is_pae)", () => {
    const { vm, vcpu, pd } = pdWindow();
    const s = vm.stats;
    const pde = s.mmu_pde_zapped;
    // The high half of PD[2] (0): widened to PD[2] at 0x102010, 8 bytes, whose gentry is the
    // whole gpte (0x103027, non-zero): entry 2 is zapped and counted in mmu_pde_zapped.
    expect(vcpu.write(0x40001000 + 2 * 8 + 4, 0, { size: 4 }).fault).toBe(false);
    expect(pd().present(2)).toBe(false);
    expect(s.mmu_pde_zapped - pde).toBe(1);
  });
});

describe("kvm_mmu_track_write: which pages of the hash bucket are written (for_each_gfn_valid_sp_with_gptes)", () => {
  it("not a page of another gfn in the same bucket (hash 'mask', 2^10 buckets: gfn 0x502 shares 0x102's)", () => {
    const vm = createVm({ mmu: "shadow", features: { hashFn: "mask", hashShift: 10 } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    vm.guestWrite64(0x100000, 0x101000n | PRU | A);
    vm.guestWrite64(0x101000, 0x102000n | PRU | A);
    vm.guestWrite64(0x102000 + 3 * 8, 0x502000n | PRU | A); // PD[3] → PT 0x502
    vm.guestWrite64(0x502000 + 2 * 8, 0x202000n | PRU | A | D);
    vm.guestWrite64(0x502000 + 3 * 8, 0x102000n | PRU | A | D); // gva 0x603000 → the PD
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 0 });
    expect(vcpu.read(0x602000).fault).toBe(false);
    expect(vcpu.read(0x603000).fault).toBe(false);
    expect(page(vm, 0x502, 1).present(2)).toBe(true);
    // PD[2] (not present in the guest) rewritten: PD 0x102's entry 2 is zapped, nothing of the
    // page for 0x502, whose gfn differs.
    expect(vcpu.write(0x603000 + 2 * 8, 0n).fault).toBe(false);
    expect(page(vm, 0x502, 1).present(2)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });

  it("not a direct page of the same gfn (a guest 2M page over the guest's own PD)", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    vm.guestWrite64(0x100000, 0x101000n | PRU | A);
    vm.guestWrite64(0x101000, 0x400000n | PRU | A); // the PD at gfn 0x400, 2M-aligned
    vm.guestWrite64(0x400000 + 8, 0x400000n | PRU | A | D | GPTE.PS); // PD[1]: 2M page at gfn 0x400
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 0 });
    expect(vcpu.read(2 ** 21 + 5 * 4096).fault).toBe(false);
    const direct = vm
      .shadowPages()
      .pages.filter((p) => p.gfn === 0x400 && p.direct && !p.role.invalid);
    expect(direct).toHaveLength(1);
    const spt = vm.mmu!.store.spt[direct[0]!.id]!;
    const present = (i: number) => (spt[i * 2]! & 0x800) !== 0;
    expect(present(2)).toBe(true); // prefetched with the group of 8
    // A store into PD[2] through the 2M mapping (the PD is write-tracked: emulated). Only the
    // pages shadowing the PD's gptes are written; the direct page keeps its entry 2.
    expect(vcpu.write(2 ** 21 + 2 * 8, 0n).fault).toBe(false);
    expect(present(2)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_track_write for a 32-bit guest (4-byte gptes, pages shadowed by quadrant)", () => {
  const DATA = 0x200;
  /**
   * PD 0x100; PDE 1 (gva 0x400000) → PT 0x101, whose gptes 0..7 and 512 map data pages, gpte 8
   * the PD (gva 0x408000) and gpte 9 the PT itself (gva 0x409000). Both halves of the 4 MiB
   * region are mapped, so the quadrant-0 root links both shadow PTs (entries 2 and 3).
   */
  function guest32() {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    vm.guestWrite32(0x100000 + 4, 0x101000 + 0x27);
    for (let i = 0; i < 8; i++) vm.guestWrite32(0x101000 + i * 4, (DATA + i) * 4096 + 0x67);
    vm.guestWrite32(0x101000 + 512 * 4, (DATA + 8) * 4096 + 0x67);
    vm.guestWrite32(0x101000 + 8 * 4, 0x100000 + 0x67);
    vm.guestWrite32(0x101000 + 9 * 4, 0x101000 + 0x67);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0, efer: 0, cpl: 0 });
    expect(vcpu.read(0x400000).fault).toBe(false);
    expect(vcpu.read(0x600000).fault).toBe(false);
    const sp = (gfn: number, level: number, quadrant: number) => {
      const p = vm
        .shadowPages()
        .pages.filter(
          (q) =>
            q.gfn === gfn &&
            q.level === level &&
            q.role.quadrant === quadrant &&
            !q.direct &&
            !q.role.invalid,
        );
      expect(p).toHaveLength(1);
      const spt = vm.mmu!.store.spt[p[0]!.id]!;
      return { info: p[0]!, present: (i: number) => (spt[i * 2]! & 0x800) !== 0 };
    };
    return { vm, vcpu, sp };
  }

  it("a PDE covers two shadow PDEs: a store into PDE 1 zaps entries 2 and 3 of the quadrant-0 page", () => {
    const { vm, vcpu, sp } = guest32();
    expect([sp(0x100, 2, 0).present(2), sp(0x100, 2, 0).present(3)]).toEqual([true, true]);
    expect(vcpu.read(0x408000).fault).toBe(false);
    // PDE 1 rewritten as it is (emulated: the PD is write-tracked). get_written_sptes: offset
    // 4 → 8 (64-bit sptes) → 16 (a 4 MiB PDE is two 2 MiB sptes), quadrant 0, entries 2 and 3.
    expect(vcpu.write(0x408000 + 4, 0x101000 + 0x27, { size: 4 }).fault).toBe(false);
    expect([sp(0x100, 2, 0).present(2), sp(0x100, 2, 0).present(3)]).toEqual([false, false]);
    expect(vm.audit()).toEqual([]);
  });

  it("a tracked store over a gpte whose spte is an MMIO spte clears it (mmu_page_zap_pte)", () => {
    const { vm, vcpu, sp } = guest32();
    expect(vcpu.write(0x409000 + 100 * 4, 0, { size: 4 }).fault).toBe(false); // the PT unsync
    // The guest points gpte 0 outside every slot and flushes it: INVLPG syncs the entry (the
    // spte goes), and the next access makes an MMIO spte.
    expect(vcpu.write(0x409000, 0x2000000 + 0x67, { size: 4 }).fault).toBe(false);
    vcpu.invlpg(0x400000);
    expect(vcpu.read(0x400000)).toMatchObject({ fault: false, mmio: true });
    const spt = vm.mmu!.store.spt[sp(0x101, 1, 0).info.id]!;
    expect([spt[0], spt[1]]).not.toEqual([0, 0]); // the MMIO spte
    expect(vcpu.read(0x408000).fault).toBe(false);
    // The crossing store (emulated: the PD is write-tracked) writes gpte 0 = a RAM page.
    const ram = BigInt(DATA * 4096 + 0x67);
    expect(vcpu.write(0x408ffc, ram << 32n).fault).toBe(false);
    expect([spt[0], spt[1]]).toEqual([0, 0]);
    expect(vcpu.read(0x400000)).toMatchObject({ fault: false, gpa: DATA * 4096 });
    expect(vm.audit()).toEqual([]);
  });

  it("a store crossing from the PD into an unsync PT: the PT's part zaps its spte, no flooding, no mmu_pde_zapped", () => {
    const { vm, vcpu, sp } = guest32();
    // The guest's own store into its PT (gpte 100) makes the PT's two shadow pages unsync.
    expect(vcpu.write(0x409000 + 100 * 4, 0, { size: 4 }).fault).toBe(false);
    expect(sp(0x101, 1, 0).info.unsync).toBe(true);
    expect(vcpu.read(0x408000).fault).toBe(false);
    expect([sp(0x101, 1, 0).present(0), sp(0x101, 1, 0).present(1)]).toEqual([true, true]);
    const s = vm.stats;
    const [writes, pde, flooded] = [s.mmu_pte_write, s.mmu_pde_zapped, s.mmu_flooded];
    // 8 bytes at 0x408ffc: 0 into PDE 1023, then gpte 0 of the PT rewritten as it is. Emulated
    // (the PD is write-tracked), each page's part tracked. The PT part: level 1, so neither
    // flooding nor mmu_pde_zapped (its gentry is not 0); offset 0 → gpte 0 → entry 0 of the
    // quadrant-0 page only.
    const gpte0 = BigInt(DATA * 4096 + 0x67);
    expect(vcpu.write(0x408ffc, gpte0 << 32n).fault).toBe(false);
    expect(s.mmu_pte_write - writes).toBe(2);
    expect([s.mmu_pde_zapped - pde, s.mmu_flooded - flooded]).toEqual([0, 0]);
    expect([sp(0x101, 1, 0).present(0), sp(0x101, 1, 0).present(1)]).toEqual([false, true]);
    expect(sp(0x101, 1, 1).present(0)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_change_mmu_pages (KVM_SET_NR_MMU_PAGES)", () => {
  /**
   * A 4-level guest over 256 MiB (n_max 1310 by default) whose PD maps 80 page tables, each
   * touched once: 83 shadow pages in use, none unsync.
   */
  function manyPts(reclaim: "modern" | "legacy") {
    const vm = createVm({ mmu: "shadow", features: { reclaim, prefetch: false } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x10000 * 4096, flags: 0 });
    vm.guestWrite64(0x100000, 0x101000n | PRU | A);
    vm.guestWrite64(0x101000, 0x102000n | PRU | A);
    for (let i = 0; i < 80; i++) {
      vm.guestWrite64(0x102000 + i * 8, BigInt((0x300 + i) * 4096) | PRU | A);
      vm.guestWrite64((0x300 + i) * 4096, BigInt((0x400 + i) * 4096) | PRU | A | D);
    }
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 0 });
    for (let i = 0; i < 80; i++) expect(vcpu.read(i * 2 ** 21).fault).toBe(false);
    expect(vm.stats.n_used_mmu_pages).toBe(83);
    return { vm, vcpu };
  }

  for (const reclaim of ["modern", "legacy"] as const) {
    it(`${reclaim}: a goal equal to n_used zaps nothing; a lower one zaps exactly down to it`, () => {
      const { vm } = manyPts(reclaim);
      const s = vm.stats;
      vm.setNrMmuPages(83);
      expect([s.n_used_mmu_pages, s.n_max_mmu_pages, s.mmu_shadow_zapped]).toEqual([83, 83, 0]);
      // The oldest pages go first (the tail of active_mmu_pages): root, PDPT, PD, then PTs. The
      // modern reclaim skips the pinned root; the legacy one zaps it too, but a pinned root stays
      // counted in n_used until its vCPU lets it go. Each zap counts itself only: the children
      // it orphans stay allocated. So 3 zaps, or 4 with the root.
      vm.setNrMmuPages(80);
      expect([s.n_used_mmu_pages, s.n_max_mmu_pages, s.mmu_shadow_zapped]).toEqual([
        80,
        80,
        reclaim === "modern" ? 3 : 4,
      ]);
      expect(vm.audit()).toEqual([]);
    });
  }
});

describe("more pinned roots than n_max_mmu_pages", () => {
  /**
   * A 4-level shadow-paging VM over 16 MiB (default n_max 4096 / 50 = 81) with `n` vCPUs. vCPU v
   * loads `perVcpu(v)` CR3s in turn, the empty PML4s at gfn 0x800 + 4v + k, and enters the guest
   * after each (the access finds nothing: a guest #PF, but the root is loaded). A vCPU keeps its
   * current root and, through fast_pgd_switch, up to 3 previous ones: every root stays pinned.
   * vCPU 0's last PML4 maps gva 0 → PDPT 0x101 → PD 0x102 → PT 0x103 → gfn 0x200 + i; vCPU 0
   * does not touch it yet.
   */
  function manyRoots(n: number, perVcpu: (v: number) => number, nrMmuPages?: number) {
    const vm = createVm({ mmu: "shadow", features: { prefetch: false } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    if (nrMmuPages !== undefined) vm.setNrMmuPages(nrMmuPages);
    vm.guestWrite64(0x803000, 0x101000n | PRU | A);
    vm.guestWrite64(0x101000, 0x102000n | PRU | A);
    vm.guestWrite64(0x102000, 0x103000n | PRU | A);
    for (let i = 0; i < 8; i++)
      vm.guestWrite64(0x103000 + i * 8, BigInt((0x200 + i) * 4096) | PRU | A | D);
    const vcpus = [];
    for (let v = 0; v < n; v++) {
      const vcpu = vm.createVcpu();
      for (let k = 0; k < perVcpu(v); k++) {
        const cr3 = (0x800 + 4 * v + k) * 4096;
        if (k === 0) vcpu.setSregs({ cr0: 0x80010001, cr3, cr4: 0x20, efer: 0x900, cpl: 0 });
        else vcpu.movCr3(cr3);
        expect(vcpu.read(2 ** 39).fault).toBe(true); // PML4[1]: not present
      }
      vcpus.push(vcpu);
    }
    return { vm, vcpus };
  }

  it("KVM_SET_NR_MMU_PAGES below the pinned roots: nothing can go, and n_max is what is in use (kvm_mmu_change_mmu_pages)", () => {
    // 17 vCPUs × 4 roots = 68 pages, all pinned, under the default n_max of 81.
    const { vm } = manyRoots(17, () => 4);
    const s = vm.stats;
    expect([s.n_used_mmu_pages, s.n_max_mmu_pages]).toEqual([68, 81]);
    // kvm_mmu_zap_oldest_mmu_pages(68 - 64) skips every page (root_count > 0); then
    // goal_nr_mmu_pages = n_used_mmu_pages: n_max is 68, not the 64 asked for.
    vm.setNrMmuPages(64);
    expect([s.n_used_mmu_pages, s.n_max_mmu_pages, s.mmu_shadow_zapped]).toEqual([68, 68, 0]);
    expect(vm.audit()).toEqual([]);
  });

  it("a fault with n_used above n_max counts no pages available, not fewer than none (kvm_mmu_available_pages)", () => {
    // n_max 64 from the start. 15 vCPUs × 4 roots + 3 for vCPU 15 = 63 pinned roots; each load's
    // make_mmu_pages_available finds nothing it may zap.
    const { vm, vcpus } = manyRoots(16, (v) => (v === 15 ? 3 : 4), 64);
    const s = vm.stats;
    expect([s.n_used_mmu_pages, s.n_max_mmu_pages]).toEqual([63, 64]);
    // vCPU 0's read of gva 0: one page is available (≥ 1, so no -ENOSPC), the fault shadows the
    // PDPT, PD and PT: n_used 66, two above n_max (the "intentionally soft" check).
    expect(vcpus[0]!.read(0).fault).toBe(false);
    expect(s.n_used_mmu_pages).toBe(66);
    // vCPUs 1 to 8 reset their MMU context (a CR4 change: kvm_mmu_unload frees the current and
    // previous roots). Their 32 roots stay valid and in use, now unpinned.
    for (let v = 1; v <= 8; v++)
      vcpus[v]!.setSregs({ cr0: 0x80010001, cr4: 0x20 | 0x80, efer: 0x900 });
    expect(s.n_used_mmu_pages).toBe(66);
    // vCPU 0 reads gva 0x1000 (same PT, a new leaf): make_mmu_pages_available sees
    // available = 0 (n_max ≤ n_used), so kvm_mmu_zap_oldest_mmu_pages(25 - 0) zaps the 25 oldest
    // unpinned pages (vCPU 1's roots first) and nothing else; the fault adds no page.
    const recycled = s.mmu_recycled;
    expect(vcpus[0]!.read(0x1000).fault).toBe(false);
    expect([s.mmu_recycled - recycled, s.n_used_mmu_pages]).toEqual([25, 41]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("zapping pages", () => {
  it("zapping an upper-level page zaps the unsync pages below it first (mmu_zap_unsync_children), traced", () => {
    const { vm, vcpu } = guest4();
    // gva 0x40001000 → the PD 0x102, 0x40002000 → the PT 0x103.
    vm.guestWrite64(0x101000 + 8, 0x104000n | PRU | A);
    vm.guestWrite64(0x104000, 0x105000n | PRU | A);
    vm.guestWrite64(0x105000 + 8, 0x102000n | PRU | A | D);
    vm.guestWrite64(0x105000 + 16, 0x103000n | PRU | A | D);
    expect(vcpu.access(0x400000).fault).toBe(false);
    expect(vcpu.write(0x40002000 + 100 * 8, 0n).fault).toBe(false); // the PT goes unsync
    expect(page(vm, 0x103, 1).info.unsync).toBe(true);
    const s = vm.stats;
    const [zapped, unsync] = [s.mmu_shadow_zapped, s.mmu_unsync];
    vm.startTrace(1000);
    // A 2-byte store into the PD is misaligned (detect_write_misaligned): the PD is zapped, and
    // with it the unsync PT below it.
    expect(vcpu.write(0x40001000 + 300 * 8, 0n, { size: 2 }).fault).toBe(false);
    const ev = vm.stopTrace().events.filter((e) => e.name === "kvm_mmu_prepare_zap_page");
    expect(new Set(ev.map((e) => e.fields.gfn))).toEqual(new Set(["0x102", "0x103"]));
    expect(s.mmu_shadow_zapped - zapped).toBe(2);
    expect(s.mmu_unsync - unsync).toBe(-1);
    expect(vm.shadowPages().pages.filter((p) => p.gfn === 0x103 && p.level === 1)).toEqual([]);
    expect(vm.audit()).toEqual([]);
  });

  it("an MMU-notifier invalidation zaps the leaves of its range only; an empty range flushes nothing", () => {
    const { vm, vcpu } = flatLegacy({});
    for (const p of [1, 2, 3, 40]) expect(vcpu.read(p * 4096).fault).toBe(false);
    const s = vm.stats;
    const [visited, flushes] = [s.sptes_visited, s.remote_tlb_flush_requests];
    expect(vm.mmuNotifierInvalidateHva(2 ** 33 + 10 * 4096, 2 ** 33 + 30 * 4096)).toBe(false);
    expect([s.sptes_visited - visited, s.remote_tlb_flush_requests - flushes]).toEqual([0, 0]);
    expect(vm.mmuNotifierInvalidateHva(2 ** 33, 2 ** 33 + 4 * 4096)).toBe(true);
    expect([s.sptes_visited - visited, s.remote_tlb_flush_requests - flushes, s.pages_4k]).toEqual([
      3, 1, 1,
    ]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("v4 statistics (statsStyle legacy): pf_fixed for every mapping a fault installed", () => {
  it("a RAM page and an MMIO spte each count (__direct_map: ++pf_fixed after mmu_set_spte)", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", statsStyle: "legacy" } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * 4096, flags: 0 });
    const vcpu = vm.createVcpu();
    expect(vcpu.read(0x3000).fault).toBe(false);
    expect(vm.stats.pf_fixed).toBe(1);
    expect(vcpu.read(0x100000)).toMatchObject({ fault: false, mmio: true });
    expect([vm.stats.pf_fixed, vm.stats.pf_mmio_spte_created]).toEqual([2, 1]);
  });
});

describe("__link_shadow_page over a huge leaf (legacy TDP)", () => {
  it("a 4K write fault under dirty logging drops the 2M leaf with its own flush, then links a page table", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct" } });
    const region = {
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * 2 ** 21,
      backing: "hugetlb-2m" as const,
    };
    vm.setUserMemoryRegion({ ...region, flags: 0 });
    const vcpu = vm.createVcpu();
    expect(vcpu.read(2 ** 21).fault).toBe(false);
    expect(vm.stats.pages_2m).toBe(1);
    vm.setUserMemoryRegion({ ...region, flags: 1 }); // KVM_MEM_LOG_DIRTY_PAGES
    expect(flushReasons(vm, () => vcpu.write(2 ** 21 + 5 * 4096, 1n))).toContain("drop_large_spte");
    expect([vm.stats.pages_2m, vm.stats.pages_4k > 0]).toEqual([0, true]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("validate_direct_spte", () => {
  it("a guest 2M page whose rights changed: the direct page with the old access is unlinked, with a flush; same rights keep it", () => {
    const { vm, vcpu } = guest4();
    vm.guestWrite64(0x102000 + 4 * 8, 0x400000n | PRU | A | D | GPTE.PS); // gva 8M: a 2M page
    expect(vcpu.read(0x800000 + 5 * 4096).fault).toBe(false);
    // Same rights: a fault elsewhere in the region reuses the direct page.
    expect(flushReasons(vm, () => vcpu.read(0x800000 + 100 * 4096))).not.toContain(
      "validate_direct_spte",
    );
    // The guest makes the 2M page read-only; a fault on a page not mapped yet finds the direct
    // page with ACC_WRITE in its role: unlinked (flush), and a new one is made.
    vm.guestWrite64(0x102000 + 4 * 8, 0x400000n | GPTE.P | GPTE.US | A | D | GPTE.PS);
    expect(flushReasons(vm, () => vcpu.read(0x800000 + 200 * 4096))).toContain(
      "validate_direct_spte",
    );
    const direct = vm
      .shadowPages()
      .pages.filter((p) => p.gfn === 0x400 && p.direct && !p.role.invalid);
    expect(direct.map((p) => p.parents.length).sort()).toEqual([0, 1]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("rmap_add: max_mmu_rmap_size and the recycle past RMAP_RECYCLE_THRESHOLD", () => {
  /**
   * guest4 plus a second PT (PD[3] → 0x104): all 1024 gptes of the two PTs map gfn 0x300, none
   * accessed yet (so nothing is prefetched: FNAME(prefetch_invalid_gpte) wants A).
   */
  function oneFrameEverywhere() {
    const g = guest4();
    g.vm.guestWrite64(0x102000 + 3 * 8, 0x104000n | PRU | A);
    for (let i = 0; i < 512; i++) {
      g.vm.guestWrite64(0x103000 + i * 8, 0x300000n | PRU);
      g.vm.guestWrite64(0x104000 + i * 8, 0x300000n | PRU);
    }
    const gva = (k: number) => 0x400000 + k * 4096; // k < 1024: PT 0x103, then PT 0x104
    return { ...g, gva };
  }

  it("pte_list_add returns the sptes already there: three on one frame make it 2, a lone one later does not lower it", () => {
    const { vm, vcpu, gva } = oneFrameEverywhere();
    for (let k = 0; k < 3; k++) expect(vcpu.read(gva(k)).fault).toBe(false);
    expect(vm.stats.max_mmu_rmap_size).toBe(2);
    vm.guestWrite64(0x103000 + 10 * 8, 0x301000n | PRU);
    expect(vcpu.read(gva(10)).fault).toBe(false);
    expect(vm.stats.max_mmu_rmap_size).toBe(2);
  });

  it("the mapping that finds 1001 sptes on the head zaps them all, with one flush", () => {
    const { vm, vcpu, gva } = oneFrameEverywhere();
    for (let k = 0; k < 1001; k++) expect(vcpu.read(gva(k)).fault).toBe(false);
    expect(vm.stats.pages_4k).toBe(1001);
    expect(flushReasons(vm, () => vcpu.read(gva(1001)))).toContain("rmap_recycle");
    // kvm_zap_all_rmap_sptes takes the new spte too. The access then faults again: its spte,
    // and gpte 1000's (accessed: FNAME(pte_prefetch) takes it, and stops at gpte 1002, not
    // accessed), are all that map the frame now.
    expect(vm.stats.pages_4k).toBe(2);
    expect(vm.stats.max_mmu_rmap_size).toBe(1001);
    expect(vm.audit()).toEqual([]);
  });
});

describe("roots", () => {
  it("a root rotated out of the previous roots leaves the roots list (mmu_free_root_page)", () => {
    const { vm, vcpu } = guest4();
    const cr3s = [0x100, 0x110, 0x120, 0x130, 0x140];
    for (const g of cr3s.slice(1)) vm.guestWrite64(g * 4096, 0x101000n | PRU);
    for (const g of cr3s) {
      vcpu.movCr3(g * 4096);
      expect(vcpu.access(0x400000).fault).toBe(false);
    }
    // The current root and KVM_MMU_NUM_PREV_ROOTS = 3 previous ones stay pinned; the first
    // root, rotated out at the fifth load, is unpinned and leaves the list (it stays allocated).
    const roots = vm.mmu!.roots.map((r) => vm.mmu!.store.gfn[r]).sort();
    expect(roots).toEqual([0x110, 0x120, 0x130, 0x140]);
    expect(vm.shadowPages().pages.filter((p) => p.level === 4)).toHaveLength(5);
  });
});

describe("direct_map on a gfn outside every memslot (legacy TDP)", () => {
  it("installs an MMIO spte (mark_mmio_spte: the access is ACC_ALL's W and U), which the next access reuses", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct" } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * 4096, flags: 0 });
    const vcpu = vm.createVcpu();
    vm.startTrace(100);
    expect(vcpu.access(0x100000)).toMatchObject({ fault: false, mmio: true });
    const mark = vm.stopTrace().events.filter((e) => e.name === "mark_mmio_spte");
    expect(mark).toHaveLength(1);
    expect(mark[0]!.fields.gfn).toBe("0x100");
    expect(mark[0]!.fields.access).toBe(6);
    expect(vm.stats.pf_mmio_spte_created).toBe(1);
    // The MMIO spte answers the next access (handle_mmio_page_fault): none is created.
    expect(vcpu.access(0x100000)).toMatchObject({ fault: false, mmio: true });
    expect(vm.stats.pf_mmio_spte_created).toBe(1);
    expect(vm.audit()).toEqual([]);
  });
});

describe("direct_pte_prefetch (legacy TDP)", () => {
  const HVA = 2 ** 33;
  /** A legacy-TDP VM over `slots` ([gfn, pages, flags]) of 4K host pages, one vCPU. */
  function legacy(slots: [number, number, number][], features: Record<string, unknown> = {}) {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", ...features } });
    for (const [i, [gfn, pages, flags]] of slots.entries())
      vm.setUserMemoryRegion({
        slot: i,
        guestPhysAddr: gfn * 4096,
        memorySize: pages * 4096,
        flags,
        backing: "4k",
        userspaceAddr: HVA + gfn * 4096,
      });
    return { vm, vcpu: vm.createVcpu() };
  }
  /** The gfns of the present 4K leaves among [from, to), and which of them are young. */
  function leaves(vm: ReturnType<typeof createVm>, from: number, to: number) {
    const mapped: number[] = [];
    const young: number[] = [];
    for (let g = from; g < to; g++) {
      const walk = vm.walkGpa(g * 4096);
      if (walk.steps.at(-1)?.flags.includes("present")) mapped.push(g);
      if (vm.mmuNotifierTestYoung(HVA + g * 4096, HVA + (g + 1) * 4096)) young.push(g);
    }
    return { mapped, young };
  }

  it("with A/D bits, the aligned group of 8 around the fault is mapped; only the faulting leaf is young", () => {
    for (const fault of [0x200, 0x203, 0x207]) {
      const { vm, vcpu } = legacy([[0, 0x1000, 0]]);
      expect(vcpu.access(fault * 4096).fault).toBe(false);
      expect(leaves(vm, 0x1f8, 0x210)).toEqual({
        mapped: [0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207],
        young: [fault],
      });
      expect(vm.audit()).toEqual([]);
    }
  });

  it("a present neighbour ends a run: it is not made again (its A bit stays)", () => {
    const { vm, vcpu } = legacy([[0, 0x1000, 0]]);
    expect(vcpu.access(0x200 * 4096).fault).toBe(false);
    expect(vm.zapSpte(0x203)).toBe(1);
    expect(vcpu.access(0x203 * 4096).fault).toBe(false);
    expect(leaves(vm, 0x200, 0x208).young).toEqual([0x200, 0x203]);
  });

  it("without A/D bits (role.ad_disabled), nothing is prefetched: an access could not be told from a prefetch", () => {
    const { vm, vcpu } = legacy([[0, 0x1000, 0]], { eptAccessDirty: false });
    expect(vcpu.access(0x203 * 4096).fault).toBe(false);
    expect(vm.stats.pages_4k).toBe(1);
  });

  it("not into a dirty-logged or a read-only slot, nor past the end of the slot (direct_pte_prefetch_many)", () => {
    for (const flags of [1, 2]) {
      const { vm, vcpu } = legacy([[0, 0x1000, flags]]);
      expect(vcpu.read(0x203 * 4096).fault).toBe(false);
      expect(vm.stats.pages_4k).toBe(1);
    }
    // The slot ends at 0x205: the run 0x204..0x207 does not fit; the run before the fault does.
    const { vm, vcpu } = legacy([[0, 0x205, 0]]);
    expect(vcpu.read(0x203 * 4096).fault).toBe(false);
    expect(leaves(vm, 0x1f8, 0x205).mapped).toEqual([0x200, 0x201, 0x202, 0x203]);
  });

  it("a run refused stops the prefetch: the runs after it are not tried", () => {
    // Slot 0 (logged) ends at 0x204, slot 1 (not logged) holds 0x204..: the fault at 0x205 has
    // the run 0x200..0x204 before it (its first gfn in the logged slot: refused, stop) and the
    // run 0x206..0x207 after it, in slot 1, which is then not tried.
    const { vm, vcpu } = legacy([
      [0, 0x204, 1],
      [0x204, 0x100, 0],
    ]);
    expect(vcpu.read(0x205 * 4096).fault).toBe(false);
    expect(leaves(vm, 0x200, 0x208).mapped).toEqual([0x205]);
  });

  it("a run that starts outside every slot stops it; so does one that runs past its slot's end", () => {
    // The slot's last gfn is 0x204: the run after the fault starts at 0x205, in no slot.
    const end = legacy([[0, 0x205, 0]]);
    expect(end.vcpu.read(0x204 * 4096).fault).toBe(false);
    expect(leaves(end.vm, 0x200, 0x208).mapped).toEqual([0x200, 0x201, 0x202, 0x203, 0x204]);
    // Slot 0 ends at 0x202, slot 1 holds 0x202..: the run 0x200..0x204 before the fault at 0x205
    // starts in slot 0 and does not fit in it (kvm_prefetch_pages): stop, 0x206.. not tried.
    const split = legacy([
      [0x100, 0x102, 0],
      [0x202, 0x100, 0],
    ]);
    expect(split.vcpu.read(0x205 * 4096).fault).toBe(false);
    expect(leaves(split.vm, 0x200, 0x208).mapped).toEqual([0x205]);
  });
});

describe("mmu notifier aging of the rmap MMU", () => {
  it("counts the heads scanned (levels 1 to 3) and the sptes visited; without A/D bits every leaf is young and aging zaps it", () => {
    for (const eptAccessDirty of [true, false]) {
      const { vm, vcpu } = flatLegacy({ eptAccessDirty });
      const HVA = FLAT_HVA;
      for (const p of [1, 2, 5]) expect(vcpu.read(p * 4096).fault).toBe(false);
      const s = vm.stats;
      const [heads, visited] = [s.rmap_heads_scanned, s.sptes_visited];
      // Pages 0..3: 4 level-1 heads, 1 level-2 head, 1 level-3 head; 2 leaves on them.
      expect(vm.mmuNotifierTestYoung(HVA, HVA + 4 * 4096)).toBe(true);
      expect([s.rmap_heads_scanned - heads, s.sptes_visited - visited]).toEqual([6, 2]);
      expect(s.pages_4k).toBe(3);
      expect(vm.mmuNotifierClearYoung(HVA, HVA + 4 * 4096)).toBe(true);
      // With A/D bits A is cleared and the leaves stay; without, they are zapped.
      expect(s.pages_4k).toBe(eptAccessDirty ? 3 : 1);
      expect(vm.mmuNotifierTestYoung(HVA, HVA + 4 * 4096)).toBe(false);
      expect(vm.audit()).toEqual([]);
    }
  });
});

describe("zapping one gfn's leaf (legacy TDP)", () => {
  it("drops the leaf with its own flush; a gfn with no leaf zaps and flushes nothing", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * 4096, flags: 0 });
    const vcpu = vm.createVcpu();
    expect(vcpu.read(5 * 4096).fault).toBe(false);
    expect(flushReasons(vm, () => expect(vm.zapSpte(6)).toBe(0))).toEqual([]);
    expect(flushReasons(vm, () => expect(vm.zapSpte(5)).toBe(1))).toEqual(["zap_spte"]);
    expect(vm.stats.pages_4k).toBe(0);
  });
});

describe("mmu_set_spte (shadow paging)", () => {
  it("a read through a writable gpte of a write-tracked table is fixed read-only, not emulated", () => {
    const { vm, vcpu } = guest4();
    vm.guestWrite64(0x101000 + 8, 0x104000n | PRU | A);
    vm.guestWrite64(0x104000, 0x105000n | PRU | A);
    vm.guestWrite64(0x105000 + 8, 0x102000n | PRU | A | D); // gva 0x40001000 → the PD
    expect(vcpu.access(0x400000).fault).toBe(false);
    const s = vm.stats;
    const [fixed, emulated] = [s.pf_fixed, s.pf_emulate];
    expect(vcpu.read(0x40001000).fault).toBe(false);
    expect([s.pf_fixed - fixed, s.pf_emulate - emulated]).toEqual([1, 0]);
  });

  it("a write whose own fault shadows the table it writes is emulated at once (mmu_set_spte: wrprot && write_fault)", () => {
    const { vm, vcpu } = guest4();
    // PT[0] (gva 0x400000) now maps the guest's PD, gfn 0x102. Only the root is shadowed before
    // the first access, so page_fault_handle_page_track finds 0x102 untracked. FNAME(fetch) then
    // shadows the PD at level 2 (which write-tracks 0x102) before it maps the leaf; make_spte's
    // mmu_try_to_unsync_pages refuses W for a tracked gfn, and a write fault with wrprot set
    // is emulated: one fault, pf_emulate 1, pf_fixed 0, and the store reaches the PD.
    vm.guestWrite64(0x103000, 0x102000n | PRU | A | D);
    const s = vm.stats;
    const before = [s.pf_taken, s.pf_fixed, s.pf_emulate];
    expect(vcpu.write(0x400000 + 5 * 8, 0x5, { size: 8 }).fault).toBe(false);
    expect([s.pf_taken - before[0]!, s.pf_fixed - before[1]!, s.pf_emulate - before[2]!]).toEqual([
      1, 0, 1,
    ]);
    expect(vm.readPhys64(0x102000 + 5 * 8)).toBe(0x5n);
    expect(page(vm, 0x102, 2).info.unsync).toBe(false);
  });

  it("a read-only gpte of a guest page table leaves that table in sync (make_spte asks to unsync only for W)", () => {
    const { vm, vcpu } = guest4();
    // PT[5] → the PT, read-only, and not accessed yet (so not prefetched: the read faults).
    vm.guestWrite64(0x103000 + 5 * 8, 0x103000n | GPTE.P | GPTE.US);
    expect(vcpu.access(0x400000).fault).toBe(false);
    expect(vcpu.read(0x400000 + 5 * 4096).fault).toBe(false);
    expect(page(vm, 0x103, 1).info.unsync).toBe(false);
    expect(vm.stats.mmu_unsync).toBe(0);
  });

  it("a gpte that now names another frame: the fault drops the old leaf (with a flush) and maps the new one", () => {
    const { vm, vcpu } = guest4();
    vm.guestWrite64(0x103000 + 3 * 8, 0x203000n | PRU | A); // clean: the spte is read-only
    vm.guestWrite64(0x300000, 0xbeefn);
    expect(vcpu.read(0x403000).fault).toBe(false);
    // The host moves gpte 3 to frame 0x300 (no write tracking: a host store), still clean.
    vm.guestWrite64(0x103000 + 3 * 8, 0x300000n | PRU | A);
    // A write faults on the read-only spte; FNAME(page_fault) walks the new gpte.
    expect(flushReasons(vm, () => vcpu.write(0x403008, 1n))).toContain("mmu_set_spte");
    expect(vcpu.read(0x403000).value).toBe(0xbeefn);
    expect(vm.audit()).toEqual([]);
  });

  it("rebuilding a writable leaf drops its D bit (make_spte: old spte writable), and mmu_spte_update flushes for that", () => {
    const { vm, vcpu } = guest4();
    vm.guestWrite64(0x103000 + 3 * 8, 0x203000n | PRU | A | D | GPTE.NX);
    expect(vcpu.write(0x403000, 1n).fault).toBe(false); // writable, accessed, dirty, NX
    const spte = () => {
      const pt = page(vm, 0x103, 1);
      return vm.mmu!.store.spt[pt.info.id]![3 * 2]!;
    };
    expect(spte() & EPT_D).toBe(EPT_D);
    // The guest allows execution. The fetch faults on NX and mmu_set_spte rebuilds the leaf
    // (same pfn) with X; W stays, D does not (make_spte jumps past the dirty mask when the old
    // spte was writable): D lost, so a flush (v6.11 and before).
    vm.guestWrite64(0x103000 + 3 * 8, 0x203000n | PRU | A | D);
    expect(flushReasons(vm, () => vcpu.fetch(0x403000))).toEqual(["mmu_set_spte"]);
    expect([spte() & EPT_W, spte() & EPT_D]).toEqual([EPT_W, 0]);
  });

  it("a rebuild that only takes W away flushes too (mmu_spte_update: MMU-writable, now not writable); one that keeps it does not", () => {
    for (const keepW of [false, true]) {
      const { vm, vcpu } = guest4();
      const gpte = (rights: bigint) =>
        vm.guestWrite64(0x103000 + 3 * 8, 0x203000n | rights | A | D);
      // A supervisor page: written at CPL 0 (W, A, D, NX), then made executable: the fetch
      // rebuilds it writable without D (flush for D).
      vcpu.setCpl(0);
      gpte(GPTE.P | GPTE.RW | GPTE.NX);
      expect(vcpu.write(0x403000, 1n).fault).toBe(false);
      gpte(GPTE.P | GPTE.RW);
      expect(flushReasons(vm, () => vcpu.fetch(0x403000))).toEqual(["mmu_set_spte"]);
      // Now a user page, read-only unless keepW: the user read faults (the spte has no U). The
      // rebuild loses W and nothing else (no D to lose, A set again by the fault): a flush; with
      // W kept it loses nothing: none.
      gpte(GPTE.P | GPTE.US | (keepW ? GPTE.RW : 0n));
      vcpu.setCpl(3);
      expect(flushReasons(vm, () => vcpu.read(0x403000))).toEqual(keepW ? [] : ["mmu_set_spte"]);
    }
  });

  it("FNAME(sync_spte) flushes for an accessed spte it rebuilds (A dropped), not for a prefetched one that gains X", () => {
    for (const touchAccessed of [true, false]) {
      const { vm, vcpu } = guest4();
      const RO_NX = GPTE.P | GPTE.US | A | GPTE.NX;
      vm.guestWrite64(0x103000 + 3 * 8, 0x203000n | RO_NX);
      vm.guestWrite64(0x103000 + 5 * 8, 0x205000n | RO_NX);
      // gva 0x40002000 → the PT itself.
      vm.guestWrite64(0x101000 + 8, 0x104000n | PRU | A);
      vm.guestWrite64(0x104000, 0x105000n | PRU | A);
      vm.guestWrite64(0x105000 + 2 * 8, 0x103000n | PRU | A | D);
      // Entry 3 is accessed (A in the spte); entry 5 only prefetched (no A). Both read-only, NX.
      expect(vcpu.read(0x403000).fault).toBe(false);
      // The guest's own stores into its PT (it goes unsync) make entry 5, and with touchAccessed
      // entry 3 too, executable.
      const gpte = (i: number) => BigInt((0x200 + i) * 4096) | GPTE.P | GPTE.US | A;
      expect(vcpu.write(0x40002000 + 5 * 8, gpte(5)).fault).toBe(false);
      if (touchAccessed) expect(vcpu.write(0x40002000 + 3 * 8, gpte(3)).fault).toBe(false);
      // MOV CR3: kvm_mmu_sync_roots write-protects the PT again (its writable mapping: one flush),
      // then rebuilds the changed entries: entry 5 loses nothing; entry 3 loses A (the rebuilt
      // spte is made as a prefetch), which mmu_spte_update flushes for (v6.11 and before).
      vcpu.movCr3(0x100000);
      expect(flushReasons(vm, () => vcpu.read(0x400000))).toEqual(
        touchAccessed ? ["sync_children", "sync_children"] : ["sync_children"],
      );
      expect(vm.audit()).toEqual([]);
    }
  });

  it("a gpte naming a gfn outside every slot gets an MMIO spte (mark_mmio_spte names it)", () => {
    const { vm, vcpu } = guest4();
    vm.guestWrite64(0x103000 + 3 * 8, 0x2000000n | PRU | A | D);
    expect(vcpu.access(0x400000).fault).toBe(false);
    const created = vm.stats.pf_mmio_spte_created;
    vm.startTrace(100);
    expect(vcpu.read(0x403000)).toMatchObject({ fault: false, mmio: true });
    const mark = vm.stopTrace().events.filter((e) => e.name === "mark_mmio_spte");
    expect(vm.stats.pf_mmio_spte_created - created).toBe(1);
    const pt = page(vm, 0x103, 1);
    expect(mark.map((e) => [e.fields.gfn, e.fields.sptep])).toEqual([
      ["0x2000", `0x${(pt.info.id * 512 + 3).toString(16)}`],
    ]);
  });
});

describe("account_shadowed write-protects the new table's gfn (kvm_mmu_slot_gfn_write_protect)", () => {
  /** PT[5] maps gfn 0x205 with `flags`; then PD[3] makes 0x205 a page table (gva 0x600000). */
  function tableLater(flags: bigint) {
    const g = guest4();
    g.vm.guestWrite64(0x103000 + 5 * 8, 0x205000n | flags);
    g.vm.guestWrite64(0x205000, 0x300000n | PRU | A | D);
    const shadowIt = () => {
      g.vm.guestWrite64(0x102000 + 3 * 8, 0x205000n | PRU);
      return flushReasons(g.vm, () => expect(g.vcpu.read(0x600000).fault).toBe(false));
    };
    return { ...g, shadowIt };
  }

  it("a writable leaf of the gfn loses W: one flush", () => {
    const { vcpu, shadowIt } = tableLater(PRU | A | D);
    expect(vcpu.write(0x405800, 1n).fault).toBe(false);
    expect(shadowIt()).toContain("account_shadowed");
  });

  it("a read-only leaf (neither W nor MMU-writable) is left as it is: no flush", () => {
    const { vcpu, shadowIt } = tableLater(GPTE.P | GPTE.US | A | D);
    expect(vcpu.read(0x405000).fault).toBe(false);
    expect(shadowIt()).toEqual([]);
  });

  it("a leaf that dirty logging made read-only but left MMU-writable loses MMU-writable: a flush", () => {
    const { vm, vcpu, shadowIt } = tableLater(PRU | A | D);
    expect(vcpu.write(0x405800, 1n).fault).toBe(false);
    // Logging on: rmap_write_protect(pt_protect = false) takes W and keeps MMU-writable.
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 1 });
    // pt_protect = true: MMU-writable goes too (so the fast path cannot give W back), and
    // mmu_spte_update flushes for an MMU-writable spte that is not writable after.
    expect(shadowIt()).toContain("account_shadowed");
  });
});

describe("make_spte marks a writable spte's page dirty, whatever the old spte was", () => {
  /**
   * A shadow-paging guest with the dirty ring, slot 0 logged: gva 0x400000 → gfn 0x200, a gpte
   * with RW, A, D and NX (upper gptes already accessed, so walks write nothing back).
   */
  function ringGuest() {
    const vm = createVm({ mmu: "shadow" });
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x400 * 4096, flags: 1 });
    vm.guestWrite64(0x100000, 0x101000n | PRU | A);
    vm.guestWrite64(0x101000, 0x102000n | PRU | A);
    vm.guestWrite64(0x102000 + 2 * 8, 0x103000n | PRU | A);
    vm.guestWrite64(0x103000, 0x200000n | PRU | A | D | GPTE.NX);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0xd00, cpl: 3 });
    return { vm, vcpu };
  }

  it("a fetch fault that rebuilds a writable spte with X pushes the page on the ring again (mmu_set_spte → make_spte)", () => {
    const { vm, vcpu } = ringGuest();
    expect(vcpu.write(0x400000, 1).fault).toBe(false);
    expect(vcpu.dirtyRing!.harvest()).toEqual([{ slot: 0, offset: 0x200 }]);
    // The gpte now allows execution (a host store: no write tracking, so the spte keeps NX). The
    // fetch faults and FNAME(page_fault) maps the same pfn with X; make_spte keeps W (the old
    // spte had it) and, the slot being logged, marks the page dirty again.
    vm.guestWrite64(0x103000, 0x200000n | PRU | A | D);
    expect(vcpu.fetch(0x400000).fault).toBe(false);
    expect(vcpu.dirtyRing!.harvest()).toEqual([{ slot: 0, offset: 0x200 }]);
  });

  it("syncing an unsync page whose gpte gained X keeps W and pushes the page again (FNAME(sync_spte) → make_spte)", () => {
    const { vm, vcpu } = ringGuest();
    // gva 0x40001000 maps the PT itself: PDPT[1] → PD 0x104 → PT 0x105, entry 1 → gfn 0x103.
    vm.guestWrite64(0x101000 + 8, 0x104000n | PRU | A);
    vm.guestWrite64(0x104000, 0x105000n | PRU | A);
    vm.guestWrite64(0x105000 + 8, 0x103000n | PRU | A | D);
    expect(vcpu.write(0x400000, 1).fault).toBe(false);
    expect(vcpu.dirtyRing!.harvest()).toEqual([{ slot: 0, offset: 0x200 }]);
    // The guest's own store into its PT (a level-1 page: it goes unsync, the store is not
    // emulated) clears NX in gpte 0; the writable spte of the PT's frame is the one marked.
    expect(vcpu.write(0x40001000, 0x200000n | PRU | A | D).fault).toBe(false);
    expect(vcpu.dirtyRing!.harvest()).toEqual([{ slot: 0, offset: 0x103 }]);
    // MOV CR3 syncs the page: gpte 0's access gained X, so sync_spte rebuilds the spte, still
    // writable (the old one was), and make_spte marks gfn 0x200 again.
    vcpu.movCr3(0x100000);
    expect(vcpu.fetch(0x400000).fault).toBe(false);
    expect(vcpu.dirtyRing!.harvest()).toEqual([{ slot: 0, offset: 0x200 }]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_free_roots: one kvm_mmu_commit_zap_page for all the roots it frees", () => {
  it("a vCPU holding a current and a previous obsolete root frees both with one flush", () => {
    const { vm, vcpu } = guest4();
    // A second address space: CR3 0x110 → PDPT 0x101 (shared below the root).
    vm.guestWrite64(0x110000, 0x101000n | PRU);
    expect(vcpu.access(0x400000).fault).toBe(false);
    vcpu.movCr3(0x110000);
    expect(vcpu.access(0x400000).fault).toBe(false);
    const roots = () => vm.shadowPages().pages.filter((p) => p.level === 4).length;
    expect(roots()).toBe(2); // current (0x110) and previous (0x100), both pinned
    // kvm_mmu_zap_all_fast: every page is obsolete; the pinned roots stay, marked invalid, and
    // every other page is freed with one commit.
    expect(flushReasons(vm, () => vm.zapAllFast())).toEqual(["commit_zap_page"]);
    expect(roots()).toBe(2);
    // The vCPU's next entry (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS → kvm_mmu_free_obsolete_roots)
    // puts both roots on one invalid list: one commit, one flush.
    expect(flushReasons(vm, () => vcpu.access(0x400000))).toEqual(["commit_zap_page"]);
    expect(vm.shadowPages().pages.filter((p) => p.level === 4 && p.role.invalid)).toEqual([]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_rmap_age_gfn_range: the rmaps of every mapping level", () => {
  it("legacy TDP: a 2M leaf is found through its level-2 rmap head, aged, and tested old afterwards", () => {
    const HVA = 2 ** 33;
    const vm = createVm({ features: { mmuFlavor: "legacy_direct" } });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * 2 ** 21,
      flags: 0,
      backing: "hugetlb-2m",
      userspaceAddr: HVA,
    });
    const vcpu = vm.createVcpu();
    expect(vcpu.read(2 ** 21 + 5 * 4096).fault).toBe(false);
    expect(vm.stats.pages_2m).toBe(1);
    // Any 4K host page of the second 2 MiB region reaches the 2M leaf; the first region is not
    // mapped.
    expect(vm.mmuNotifierTestYoung(HVA + 2 ** 21 + 300 * 4096, HVA + 2 ** 21 + 301 * 4096)).toBe(
      true,
    );
    expect(vm.mmuNotifierTestYoung(HVA, HVA + 2 ** 21)).toBe(false);
    // test_young changed nothing; clear_young clears A on the 2M leaf, which stays mapped.
    expect(vm.mmuNotifierTestYoung(HVA + 2 ** 21, HVA + 2 ** 21 + 4096)).toBe(true);
    expect(vm.mmuNotifierClearYoung(HVA + 2 ** 21 + 511 * 4096, HVA + 2 ** 22)).toBe(true);
    expect(vm.mmuNotifierTestYoung(HVA + 2 ** 21, HVA + 2 ** 22)).toBe(false);
    expect(vm.stats.pages_2m).toBe(1);
    expect(vm.audit()).toEqual([]);
  });
});

describe("an emulated store that crosses a page", () => {
  it("goes through emulator_write_phys once per page: both parts are tracked, even the page the CPU could write", () => {
    const { vm, vcpu } = guest4();
    // PT entry 8 maps the guest's PD 0x102 (write-tracked: it is shadowed at level 2).
    vm.guestWrite64(0x103000 + 8 * 8, 0x102000n | PRU | A | D);
    expect(vcpu.write(0x400000 + 7 * 4096, 0n).fault).toBe(false); // page 7 writable
    expect(vcpu.read(0x400000 + 8 * 4096).fault).toBe(false);
    const writes = vm.stats.mmu_pte_write;
    const emulated = vm.stats.pf_emulate;
    // 8 bytes from 4 before the end of page 7: the PD's part faults (write-protected), so KVM
    // emulates the whole store (x86_emulate_instruction); emulator_read_write splits it at the
    // page boundary and each part is a kvm_page_track_write: mmu_pte_write counts both.
    expect(vcpu.write(0x400000 + 8 * 4096 - 4, 0x1122334455667788n).fault).toBe(false);
    expect(vm.stats.pf_emulate).toBe(emulated + 1);
    expect(vm.stats.mmu_pte_write).toBe(writes + 2);
    expect(vm.readPhys64(0x207ff8) >> 32n).toBe(0x55667788n);
    expect(vm.readPhys64(0x102000) & 0xffffffffn).toBe(0x11223344n);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_rmap_zap_collapsible_sptes (the ~5.13 criterion, collapse 'zap')", () => {
  /**
   * A VM over two 2 MiB regions of THP-backed memory (1024 pages, gpa and hva 2 MiB-aligned),
   * logging from the start: every gfn may be mapped huge once logging is off
   * (kvm_mmu_max_mapping_level 2M).
   */
  function thp(mmu: "tdp" | "shadow", features: Record<string, unknown>) {
    const vm = createVm({ mmu, features: { collapseOnLogDisable: "zap", ...features } });
    const region = (flags: number) =>
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 1024 * 4096,
        flags,
        backing: "thp",
        userspaceAddr: FLAT_HVA,
      });
    region(1);
    return { vm, region, vcpu: vm.createVcpu() };
  }

  for (const collapseFlush of ["batched", "perSpte"] as const) {
    it(`legacy TDP, ${collapseFlush}: zaps the 4K sptes of direct pages, with ${collapseFlush === "batched" ? "one flush" : "one flush each"}; a pass that zaps nothing flushes nothing`, () => {
      const { vm, region, vcpu } = thp("tdp", {
        mmuFlavor: "legacy_direct",
        prefetch: false,
        collapseFlush,
      });
      // Logging on from the start: three 4K leaves in region 0, two in region 1.
      for (const g of [0, 7, 300, 512, 1000]) expect(vcpu.write(g * 4096, 1n).fault).toBe(false);
      expect(vm.stats.pages_4k).toBe(5);
      const s = vm.stats;
      const [heads, visited] = [s.rmap_heads_scanned, s.sptes_visited];
      const reasons = flushReasons(vm, () => region(0));
      // walk_slot_rmaps over levels 1 and 2: 1024 + 2 heads; 5 sptes on them, all in direct
      // PTs whose region may be huge.
      expect(s.collapse_sptes_zapped).toBe(5);
      expect([s.rmap_heads_scanned - heads, s.sptes_visited - visited]).toEqual([1026, 5]);
      expect(reasons).toEqual(
        collapseFlush === "batched"
          ? ["zap_collapsible_sptes"]
          : Array(5).fill("zap_collapsible_spte"),
      );
      // Logging on and off again over no 4K leaf: nothing zapped, no collapse flush.
      region(1);
      expect(flushReasons(vm, () => region(0))).toEqual([]);
      expect(vm.audit()).toEqual([]);
    });
  }

  it("shadow paging: the sptes of indirect pages (the guest's own 4K tables) are never collapsible", () => {
    const { vm: sh, region, vcpu } = thp("shadow", {});
    // Guest tables at gfns 0x100..0x103; PT 0x103 maps gva 0x400000 + i·4K → gfn 0x200 + i.
    sh.guestWrite64(0x100000, 0x101000n | PRU);
    sh.guestWrite64(0x101000, 0x102000n | PRU);
    sh.guestWrite64(0x102000 + 2 * 8, 0x103000n | PRU);
    for (let i = 0; i < 4; i++)
      sh.guestWrite64(0x103000 + i * 8, BigInt((0x200 + i) * 4096) | PRU | A | D);
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 0 });
    for (let i = 0; i < 4; i++) expect(vcpu.write(0x400000 + i * 4096, 1n).fault).toBe(false);
    const leaves = sh.stats.pages_4k;
    expect(leaves).toBe(4);
    region(0);
    // kvm_mmu_zap_collapsible_spte: sp->role.direct is false for every page here.
    expect([sh.stats.collapse_sptes_zapped, sh.stats.pages_4k]).toEqual([0, leaves]);
    expect(sh.audit()).toEqual([]);
  });
});

describe("dirty logging on the rmap MMU (legacy TDP)", () => {
  const ones = (n: number) => new Uint32Array(Math.ceil(n / 32)).fill(0xffffffff);

  it("PML: turning logging on clears D on the level-1 rmaps and takes W at levels 2 and 3 (4096 + 8 + 1 heads)", () => {
    const { vm, vcpu } = flatLegacy({ pml: true });
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 2 ** 30,
      memorySize: 4096 * 4096,
      flags: 0,
      backing: "4k",
      userspaceAddr: 2 * FLAT_HVA,
    });
    expect(vcpu.write(2 ** 30 + 7 * 4096, 1n).fault).toBe(false);
    const heads = vm.stats.rmap_heads_scanned;
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 2 ** 30,
      memorySize: 4096 * 4096,
      flags: 1,
      backing: "4k",
      userspaceAddr: 2 * FLAT_HVA,
    });
    // kvm_mmu_slot_leaf_clear_dirty: one head per 4K page; then
    // kvm_mmu_slot_remove_write_access from 2M: 4096 / 512 heads at level 2, one at level 3.
    expect(vm.stats.rmap_heads_scanned - heads).toBe(4096 + 8 + 1);
  });

  it("manual protect: CLEAR write-protects the pages of the mask's set bits only", () => {
    const { vm, vcpu } = flatLegacy({ manualDirtyLogProtect: true });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 64 * 4096,
      flags: 1,
      backing: "4k",
      userspaceAddr: FLAT_HVA,
    });
    for (const g of [0, 1, 33, 34]) expect(vcpu.write(g * 4096, 1n).fault).toBe(false);
    const bm = vm.getDirtyLog(0);
    expect(Array.from(bm)).toEqual([0b11, 0b110]);
    // Clear pages 0 and 34 only (one bit in each word): kvm_mmu_write_protect_pt_masked visits
    // those two rmap heads.
    const mask = new Uint32Array([0b1, 0b100]);
    expect(vm.clearDirtyLog(0, 0, 64, mask)).toBe(2);
    const taken = () => vm.stats.pf_taken;
    const before = taken();
    for (const g of [1, 33]) expect(vcpu.write(g * 4096, 2n).fault).toBe(false);
    expect(taken() - before).toBe(0); // still writable
    for (const g of [0, 34]) expect(vcpu.write(g * 4096, 2n).fault).toBe(false);
    expect(taken() - before).toBe(2); // write-protected by the CLEAR
  });

  it("manual protect with INITIALLY_SET: CLEAR write-protects the 1 GiB leaf over its first page (levels 2 and 3)", () => {
    const vm = createVm({
      features: {
        mmuFlavor: "legacy_direct",
        manualDirtyLogProtect: true,
        dirtyLogInitiallySet: true,
      },
    });
    const region = (flags: number) =>
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 2 ** 30,
        flags,
        backing: "hugetlb-1g",
        userspaceAddr: FLAT_HVA,
      });
    region(0);
    const vcpu = vm.createVcpu();
    expect(vcpu.write(0, 1n).fault).toBe(false);
    expect(vm.stats.pages_1g).toBe(1);
    region(1); // INITIALLY_SET: nothing is protected yet
    const before = vm.stats.pf_taken;
    expect(vcpu.write(100 * 4096, 1n).fault).toBe(false);
    expect(vm.stats.pf_taken).toBe(before);
    // kvm_arch_mmu_enable_log_dirty_pt_masked: kvm_mmu_slot_gfn_write_protect(gfn 0, from 2M)
    // reaches the 1G leaf through its level-3 rmap head.
    vm.clearDirtyLog(0, 0, 64, ones(64));
    expect(vcpu.write(100 * 4096, 2n).fault).toBe(false);
    expect(vm.stats.pf_taken).toBe(before + 1);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_new_pgd: the previous-roots cache (fast_pgd_switch)", () => {
  const [A, B, C, D, E] = [0x800, 0x801, 0x802, 0x803, 0x804];
  const [A_BIT, D_BIT] = [GPTE.A, GPTE.D];
  const X = 0x2000; // a CR3 frame outside every memslot: a dummy root
  /**
   * A 4-level shadow-paging guest over 16 MiB whose vCPU has loaded CR3 A, B, C and D in turn
   * (entering the guest after each, so each got a root). PML4 D maps gva 0 → PDPT 0x101 → PD
   * 0x102 → PT 0x103, whose entries map gfn 0x200 + i; entry 8 maps PT 0x103 itself, entries
   * 9, 10 and 11 map PML4s B, C and D. PML4 E shares PDPT 0x101; A, B and C are empty.
   */
  function fourRoots() {
    const vm = createVm({ mmu: "shadow", features: { prefetch: false } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    vm.guestWrite64(D * 4096, 0x101000n | PRU | A_BIT);
    vm.guestWrite64(0x101000, 0x102000n | PRU | A_BIT);
    vm.guestWrite64(0x102000, 0x103000n | PRU | A_BIT);
    for (let i = 0; i < 8; i++)
      vm.guestWrite64(0x103000 + i * 8, BigInt((0x200 + i) * 4096) | PRU | A_BIT | D_BIT);
    vm.guestWrite64(0x103000 + 8 * 8, 0x103000n | PRU | A_BIT | D_BIT);
    vm.guestWrite64(0x103000 + 9 * 8, BigInt(B * 4096) | PRU | A_BIT | D_BIT);
    vm.guestWrite64(0x103000 + 10 * 8, BigInt(C * 4096) | PRU | A_BIT | D_BIT);
    vm.guestWrite64(0x103000 + 11 * 8, BigInt(D * 4096) | PRU | A_BIT | D_BIT);
    vm.guestWrite64(E * 4096, 0x101000n | PRU | A_BIT);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: A * 4096, cr4: 0x20, efer: 0x900, cpl: 0 });
    const load = (pgd: number) => {
      vcpu.movCr3(pgd * 4096);
      vcpu.read(2 ** 39); // enter the guest: PML4[1] is empty (a guest #PF), the root is loaded
    };
    vcpu.read(2 ** 39);
    for (const pgd of [B, C, D]) load(pgd);
    /** The current root and the three previous ones, by guest frame (-1: none). */
    const cache = () => {
      const m = vcpu.mmu;
      const pgd = (sp: number) => (sp >= 0 ? vm.mmu!.store.gfn[sp]! : -1);
      return [pgd(m.root), ...Array.from(m.prevRootSp, pgd)];
    };
    const pinned = (pgd: number) =>
      vm.shadowPages().pages.find((p) => p.gfn === pgd && p.level === 4 && !p.role.invalid)
        ?.rootCount ?? 0;
    return { vm, vcpu, load, cache, pinned };
  }

  it("each new CR3 pushes the current root in front of the others; the fourth one back is let go", () => {
    const { load, cache, pinned } = fourRoots();
    // cached_root_find_and_keep_current swaps the current root through the three slots
    // (C 0 1 2 → 2 C 0 1) and frees what is left current when nothing fits.
    expect(cache()).toEqual([D, C, B, A]);
    load(E);
    expect(cache()).toEqual([E, D, C, B]);
    expect([pinned(A), pinned(B)]).toEqual([0, 1]); // A stays, valid and unpinned
    // Back to B: found in the last slot; the others move up one.
    load(B);
    expect(cache()).toEqual([B, E, D, C]);
  });

  it("a CR3 that differs only in PWT/PCD keeps the current root where it is", () => {
    const { vcpu, cache } = fourRoots();
    vcpu.movCr3(D * 4096 + 0x18);
    vcpu.read(2 ** 39);
    expect(cache()).toEqual([D, C, B, A]);
  });

  it("without a current root (a dummy root was dropped), a hit is taken out and the roots after it move up (cached_root_find_without_current)", () => {
    const { vm, load, cache, pinned } = fourRoots();
    load(X); // not in a memslot: nothing fits, A is let go, the vCPU gets the dummy root
    expect(cache()).toEqual([-1, D, C, B]);
    // fast_pgd_switch frees the dummy root (no shadow page), then finds C in slot 1: C becomes
    // current, B moves up into slot 1, slot 2 is empty.
    load(C);
    expect(cache()).toEqual([C, D, B, -1]);
    // A new CR3 then rotates C in and, finding nothing, frees only the empty slot's content:
    // every root stays pinned.
    load(E);
    expect(cache()).toEqual([E, C, D, B]);
    expect([pinned(B), pinned(C), pinned(D)]).toEqual([1, 1, 1]);
    expect(vm.audit()).toEqual([]);
  });

  it("from a dummy root to a CR3 that is not cached, a new root is loaded", () => {
    const { load, cache } = fourRoots();
    load(X);
    load(E);
    expect(cache()).toEqual([E, D, C, B]);
  });

  it("back to the first root the VM made (shadow page 0): found in the cache", () => {
    const { vm, load, cache } = fourRoots();
    expect(vm.shadowPages().pages.find((p) => p.id === 0)?.gfn).toBe(A);
    load(A);
    expect(cache()).toEqual([A, D, C, B]);
  });

  it("a root taken from the cache, or kept for a CR3 that differs in PWT/PCD only, has its flooding count cleared", () => {
    const { vm, vcpu, load } = fourRoots();
    const flood = (pgd: number) => {
      const p = vm.shadowPages().pages.find((q) => q.gfn === pgd && q.level === 4)!;
      return vm.mmu!.store.flood[p.id]!;
    };
    // An emulated write into PML4 C (gva 0xa000) through D's tables: C is not on the path.
    expect(vcpu.write(0xa000 + 100 * 8, 0n).fault).toBe(false);
    expect(flood(C)).toBe(1);
    load(C);
    expect(flood(C)).toBe(0);
    // A second vCPU on PML4 E (same tables below) writes into PML4 D: D is not on its path.
    load(D);
    const v2 = vm.createVcpu();
    v2.setSregs({ cr0: 0x80010001, cr3: E * 4096, cr4: 0x20, efer: 0x900, cpl: 0 });
    expect(v2.write(0xb000 + 100 * 8, 0n).fault).toBe(false);
    expect(flood(D)).toBe(1);
    vcpu.movCr3(D * 4096 + 0x18);
    expect(flood(D)).toBe(0);
  });

  it("kvm_mmu_free_obsolete_roots frees the invalid previous root only; the current one is kept (not reloaded, so not synced)", () => {
    const { vm, vcpu, cache, pinned } = fourRoots();
    const s = vm.stats;
    // PT 0x103 goes unsync (a write through its own mapping at gva 0x8000).
    expect(vcpu.write(0x8000 + 20 * 8, 0n).fault).toBe(false);
    const pt = () => vm.shadowPages().pages.find((p) => p.gfn === 0x103 && p.level === 1)!;
    expect(pt().unsync).toBe(true);
    // Three emulated writes into PML4 B (gva 0x9000), from a path that does not hold B's page:
    // detect_write_flooding zaps the pinned root B (mmu_flooded), which becomes invalid and asks
    // every vCPU to free obsolete roots.
    for (let k = 0; k < 3; k++) expect(vcpu.write(0x9000 + (100 + k) * 8, 0n).fault).toBe(false);
    expect(s.mmu_flooded).toBe(1);
    // The next entry: B's slot is emptied; D stays current (no kvm_mmu_load, so no
    // kvm_mmu_sync_roots: the PT stays unsync).
    vcpu.read(0);
    expect(cache()).toEqual([D, C, -1, A]);
    expect(pinned(B)).toBe(0);
    expect(pt().unsync).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_init_shadow_mmu's root role and the roots of kvm_mmu_load", () => {
  const MiB = 2 ** 20;
  /** The role word of the valid root page(s) of a shadow-paging vCPU with these registers. */
  function rootRole(cr0: number, cr4: number) {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0, cr3: 0x100000, cr4, efer: 0x900, cpl: 0 });
    vcpu.read(0);
    const roots = vm.shadowPages().pages.filter((p) => p.level === 4);
    expect(roots).toHaveLength(1);
    return Number(roots[0]!.role.word);
  }
  // union kvm_mmu_page_role: bit 13 cr0_wp, 14 smep_andnot_wp, 15 smap_andnot_wp.
  const wpBits = (word: number) => [(word >>> 13) & 1, (word >>> 14) & 1, (word >>> 15) & 1];
  const [PG_PE, WP] = [0x80000001, 0x10000];
  const [PAE, SMEP, SMAP] = [0x20, 1 << 20, 1 << 21];

  it("cr0_wp with CR0.WP; smep_andnot_wp and smap_andnot_wp only without it", () => {
    expect(wpBits(rootRole(PG_PE | WP, PAE | SMEP | SMAP))).toEqual([1, 0, 0]);
    expect(wpBits(rootRole(PG_PE, PAE | SMEP | SMAP))).toEqual([0, 1, 1]);
    expect(wpBits(rootRole(PG_PE, PAE | SMEP))).toEqual([0, 1, 0]);
    expect(wpBits(rootRole(PG_PE, PAE | SMAP))).toEqual([0, 0, 1]);
  });

  it("a 4-level guest whose PML4 is above 4 GiB gets its root for that frame", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 2 ** 32, memorySize: MiB, flags: 0 });
    const PML4 = 2 ** 32 + 0x3000;
    vm.guestWrite64(PML4, 0x101000n | PRU | A);
    vm.guestWrite64(0x101000, 0x102000n | PRU | A);
    vm.guestWrite64(0x102000, 0x103000n | PRU | A);
    vm.guestWrite64(0x103000, 0x200000n | PRU | A | D);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: PML4, cr4: 0x20, efer: 0x900, cpl: 0 });
    expect(vcpu.read(0x10).gpa).toBe(0x200010);
    const roots = vm.shadowPages().pages.filter((p) => p.level === 4);
    expect(roots.map((p) => p.gfn)).toEqual([PML4 / 4096]);
    expect(vm.audit()).toEqual([]);
  });

  /** A PAE guest whose PDPTE 0 names a page directory above 4 GiB (gva 0 → gpa 0x200000). */
  function paeHigh() {
    const vm = createVm({ mmu: "shadow", maxPhysAddrBits: 36 });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 2 ** 32, memorySize: MiB, flags: 0 });
    const PD = 2 ** 32 + 0x5000;
    vm.guestWrite64(0x100000, BigInt(PD) | 1n); // PDPTE 0: present
    vm.guestWrite64(PD, 0x103000n | PRU | A);
    vm.guestWrite64(0x103000, 0x200000n | PRU | A | D);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0, cpl: 0 });
    expect(vcpu.read(0x10).gpa).toBe(0x200010);
    return { vm, vcpu, PD };
  }

  it("a PAE guest's pae_root entry shadows the PDPTE's page directory, also above 4 GiB", () => {
    const { vm, PD } = paeHigh();
    const roots = vm.shadowPages().pages.filter((p) => p.level === 2 && p.rootCount > 0);
    expect(roots.map((p) => p.gfn)).toEqual([PD / 4096]);
  });

  it("after kvm_mmu_zap_all_fast a pae_root is obsolete (it has no shadow page of its own): its roots are freed and loaded again", () => {
    const { vm, vcpu, PD } = paeHigh();
    vm.zapAllFast();
    expect(vcpu.read(0x10).gpa).toBe(0x200010);
    const roots = vm.shadowPages().pages.filter((p) => p.level === 2 && p.rootCount > 0);
    expect(roots.map((p) => [p.gfn, p.role.invalid])).toEqual([[PD / 4096, false]]);
    expect(vm.shadowPages().pages.filter((p) => p.role.invalid)).toEqual([]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("seed 2010's gfn arrays and the self-check", () => {
  function directPages(features: Record<string, unknown>) {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", ...features } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * 4096, flags: 0 });
    const vcpu = vm.createVcpu();
    for (let g = 0; g < 16; g++) vcpu.access(g * 4096, { write: true });
    vm.zapAllFast();
    const store = vm.mmu!.store;
    const live = vm.shadowPages().pages.map((p) => p.id);
    return { vm, arrays: live.filter((id) => store.translation[id] !== null).length };
  }

  it("after the seed (v2.6.35+), direct pages have no gfn array and nothing is self-checked", () => {
    const { vm, arrays } = directPages({});
    expect([arrays, vm.stats.gfn_self_checks]).toEqual([0, 0]);
  });

  it("before the seed each direct page has its array, yet only selfCheckGfns checks it", () => {
    const before = directPages({ allocTranslationForDirect: true });
    expect(before.vm.stats.gfn_self_checks).toBe(0);
    const checked = directPages({ allocTranslationForDirect: true, selfCheckGfns: true });
    // kvm_mmu_zap_all_fast drops the 16 leaves: each removal reads its stored gfn once.
    expect(checked.vm.stats.gfn_self_checks).toBe(16);
  });
});

describe("vcpu_enter_guest services the requests its own root load raised", () => {
  it("a flush from kvm_mmu_sync_roots after a root load is done before entry, not left pending", () => {
    const { vm, vcpu } = guest4();
    // PT[8] maps PT 0x103 itself (gva 0x408000); a write through it makes the PT unsync.
    vm.guestWrite64(0x103000 + 8 * 8, 0x103000n | PRU | A | D);
    expect(vcpu.access(0x400000).fault).toBe(false);
    expect(vcpu.write(0x408000 + 20 * 8, 0n).fault).toBe(false);
    expect(page(vm, 0x103, 1).info.unsync).toBe(true);
    // The guest points PT[0] at another frame (no tracking: the page is unsync), then a CR4
    // change resets the MMU context: the root is let go, the unsync PT stays below it.
    vm.guestWrite64(0x103000, 0x300000n | PRU | A | D);
    vcpu.setSregs({ cr0: 0x80010001, cr4: 0x20 | 0x80, efer: 0x900 });
    // The next entry loads the root again and syncs it: the stale spte for PT[0] is dropped
    // and the remote flush asks every vCPU, this one included, to flush. KVM goes round
    // vcpu_enter_guest again and flushes before entering, so nothing is left for later.
    // (The access reads PT[1], whose spte the sync keeps: no fault, no second entry.)
    expect(vcpu.access(0x401000).fault).toBe(false);
    expect(page(vm, 0x103, 1).info.unsync).toBe(false);
    const flushes = vcpu.stat.tlb_flush;
    expect(vcpu.access(0x401000).fault).toBe(false);
    expect(vcpu.stat.tlb_flush).toBe(flushes);
  });
});

describe("the fault entry points (kvm_mmu_page_fault)", () => {
  it("a guest #PF under shadow paging is RET_PF_RETRY: pf_taken only, not spurious", () => {
    const { vm, vcpu } = guest4();
    const s = vm.stats;
    const before = [s.pf_taken, s.pf_fixed, s.pf_emulate, s.pf_spurious];
    expect(vcpu.read(0x800000).fault).toBe(true); // PD[4]: not present
    expect([
      s.pf_taken - before[0]!,
      s.pf_fixed - before[1]!,
      s.pf_emulate - before[2]!,
      s.pf_spurious - before[3]!,
    ]).toEqual([1, 0, 0, 0]);
  });
});

describe("nonpaging_page_fault (shadow paging, CR0.PG off)", () => {
  /** vCPU 0 runs guest4's 4-level tables (its PML4 0x100 is shadowed, so write-tracked); vCPU 1 has paging off. */
  function flat() {
    const g = guest4();
    expect(g.vcpu.access(0x400000).fault).toBe(false);
    const v1 = g.vm.createVcpu();
    v1.setSregs({ cr0: 0x11, cr3: 0, cr4: 0, efer: 0, cpl: 0 });
    return { ...g, v1 };
  }

  it("a write to a write-tracked gfn whose spte is present is emulated before any mapping (page_fault_handle_page_track)", () => {
    const { vm, v1 } = flat();
    expect(v1.write(0x100000 + 100 * 8, 0n).fault).toBe(false); // maps 0x100 read-only, emulated
    vm.startTrace(1000);
    const emulated = vm.stats.pf_emulate;
    expect(v1.write(0x100000 + 101 * 8, 0n).fault).toBe(false);
    const names = vm.stopTrace().events.map((e) => e.name);
    expect(vm.stats.pf_emulate - emulated).toBe(1);
    expect(names).not.toContain("kvm_mmu_spte_requested");
  });

  it("a write to a page that logging write-protected is fixed by the fast path", () => {
    const { vm, v1 } = flat();
    expect(v1.write(0x300000, 1n).fault).toBe(false);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 1 });
    const [taken, fast] = [vm.stats.pf_taken, vm.stats.pf_fast];
    expect(v1.write(0x300000, 2n).fault).toBe(false);
    expect([vm.stats.pf_taken - taken, vm.stats.pf_fast - fast]).toEqual([1, 1]);
    expect(vm.audit()).toEqual([]);
  });

  it("a write into a read-only slot is emulated (KVM_PFN_ERR_RO_FAULT), not mapped", () => {
    const { vm, v1 } = flat();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x2000000, memorySize: 16 * 4096, flags: 2 });
    const emulated = vm.stats.pf_emulate;
    expect(v1.write(0x2000000, 1n).fault).toBe(false);
    expect(vm.stats.pf_emulate - emulated).toBe(1);
    expect(vm.readPhys64(0x2000000)).toBe(0n);
  });
});

describe("fast_page_fault on a write-protected 2M leaf (legacy TDP)", () => {
  for (const fastPageFault of ["modern", "v4"] as const) {
    it(`${fastPageFault}: ${fastPageFault === "v4" ? "4K sptes only (v3.6-v5.x): the slow path rebuilds it" : "the fast path gives W back in place"}`, () => {
      const vm = createVm({
        features: { mmuFlavor: "legacy_direct", prefetch: false, fastPageFault },
      });
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 1024 * 4096,
        flags: 0,
        backing: "thp",
        userspaceAddr: FLAT_HVA,
      });
      const vcpu = vm.createVcpu();
      expect(vcpu.write(0, 1n).fault).toBe(false);
      expect(vm.stats.pages_2m).toBe(1);
      // The RFC's write-protect pass: W goes, MMU-writable stays (no logging: the 2M leaf may
      // keep its size).
      expect(vm.writeProtectAllSps().changed).toBe(1);
      const [taken, fast] = [vm.stats.pf_taken, vm.stats.pf_fast];
      expect(vcpu.write(4096, 2n).fault).toBe(false);
      expect([vm.stats.pf_taken - taken, vm.stats.pf_fast - fast]).toEqual([
        1,
        fastPageFault === "v4" ? 0 : 1,
      ]);
      expect(vm.stats.pages_2m).toBe(1);
      expect(vm.audit()).toEqual([]);
    });
  }
});

describe("kvm_page_fault and mmulab_page_fault_done under shadow paging", () => {
  it("a fix, a guest #PF, an MMIO fault and its reserved-bit repeat: the vCPU, address, error code, gfn, level and outcome of each", () => {
    const { vm, vcpu } = guest4();
    vm.guestWrite64(0x103000 + 6 * 8, 0x5000000n | PRU | A | D); // PT[6] → outside the slot
    vm.guestWrite64(0x103000 + 9 * 8, 0x209000n | PRU | A | D); // PT[9]: past the prefetch group
    vm.startTrace(1000);
    vcpu.read(0x400000);
    vcpu.read(0x800000); // PD[4] not present
    vcpu.read(0x406000);
    vcpu.read(0x409000);
    // Emulated as MMIO, not a #PF for the guest.
    expect(vcpu.read(0x406000)).toMatchObject({ fault: false, mmio: true });
    vm.zapAllFast(); // an ioctl: its events belong to no vCPU
    const all = vm.stopTrace().events;
    const lastDone = all.map((e) => e.name).lastIndexOf("mmulab_page_fault_done");
    const after = all.slice(lastDone + 1);
    expect(after.length).toBeGreaterThan(0);
    expect(after.filter((e) => e.vcpu !== -1)).toEqual([]);
    const ev = all
      .filter((e) => e.name === "kvm_page_fault" || e.name === "mmulab_page_fault_done")
      .map((e) => e.fields);
    // The repeat does not walk the guest's tables: no kvm_mmu_pagetable_walk after its start.
    const lastStart = all.map((e) => e.name).lastIndexOf("kvm_page_fault");
    expect(all.slice(lastStart).map((e) => e.name)).not.toContain("kvm_mmu_pagetable_walk");
    expect(all.slice(0, lastStart).map((e) => e.name)).toContain("kvm_mmu_pagetable_walk");
    // Error codes: U (0x4) for a user read of a not-present spte; P | U | RSVD (0xd) for the
    // MMIO spte's reserved bits. The MMIO repeat is handled from the spte
    // (handle_mmio_page_fault), which holds its gfn.
    expect(ev).toEqual([
      { vcpu_id: 0, fault_address: "0x400000", error_code: "0x4" },
      { vcpu_id: 0, gfn: "0x200", level: 1, ret: "fixed", retry_reason: "" },
      { vcpu_id: 0, fault_address: "0x800000", error_code: "0x4" },
      { vcpu_id: 0, gfn: "-", level: 0, ret: "retry", retry_reason: "guest #PF injected" },
      { vcpu_id: 0, fault_address: "0x406000", error_code: "0x4" },
      { vcpu_id: 0, gfn: "0x5000", level: 1, ret: "emulate", retry_reason: "" },
      { vcpu_id: 0, fault_address: "0x409000", error_code: "0x4" },
      { vcpu_id: 0, gfn: "0x209", level: 1, ret: "fixed", retry_reason: "" },
      { vcpu_id: 0, fault_address: "0x406000", error_code: "0xd" },
      { vcpu_id: 0, gfn: "0x5000", level: 1, ret: "emulate", retry_reason: "" },
    ]);
  });
});

describe("kvm_page_fault and mmulab_page_fault_done under TDP", () => {
  it("an EPT violation, then the EPT misconfiguration of its MMIO spte", () => {
    const vm = createVm({});
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * 4096, flags: 0 });
    const vcpu = vm.createVcpu();
    vm.startTrace(1000);
    vcpu.read(0x5000);
    vcpu.read(0x800000); // outside the slot: MMIO
    vcpu.read(0x6000);
    vcpu.read(0x800000);
    const ev = vm
      .stopTrace()
      .events.filter((e) => e.name === "kvm_page_fault" || e.name === "mmulab_page_fault_done")
      .map((e) => [e.name, e.fields.fault_address ?? e.fields.gfn, e.fields.ret ?? ""]);
    expect(ev).toEqual([
      ["kvm_page_fault", "0x5000", ""],
      ["mmulab_page_fault_done", "0x5", "fixed"],
      ["kvm_page_fault", "0x800000", ""],
      ["mmulab_page_fault_done", "0x800", "emulate"],
      ["kvm_page_fault", "0x6000", ""],
      ["mmulab_page_fault_done", "0x6", "fixed"],
      ["kvm_page_fault", "0x800000", ""],
      ["mmulab_page_fault_done", "0x800", "emulate"],
    ]);
  });
});
