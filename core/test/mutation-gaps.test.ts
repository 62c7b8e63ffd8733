/**
 * Gaps one-line mutations slipped through (issue 16): each test here fails if that line of the
 * model is broken, with the expected values worked out from the x86 paging rules and KVM's
 * dirty-logging contract rather than read back from the model.
 */
import { describe, expect, it } from "vitest";
// @ts-expect-error -- plain JS module shared with the full-space script
import { xorshift32 } from "../scripts/access-space-lib.mjs";
import { createVm, GuestPageTableBuilder, KVM_DIRTY_LOG_INITIALLY_SET } from "../src";
import { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from "../src/kvm/kvm_main";

const PAGE = 4096;
const MIB = 2 ** 20;
const GIB = 2 ** 30;
const LOG = 1; // KVM_MEM_LOG_DIRTY_PAGES
const CR0_PE = 1;
const CR0_PG = 0x80000000;
const CR4_PSE = 1 << 4;
const CR4_PAE = 1 << 5;
const CR4_LA57 = 1 << 12;
const EFER_LME = 1 << 8;
const PTE_A = 1n << 5n;
const PTE_PS = 1n << 7n;
const PF_P = 1;
const PF_RSVD = 8;

/** Seeded subsets: the tests' shared xorshift32, so every subset is the same on every run. */
const rng = xorshift32;

/** The page numbers whose bit is set in a KVM dirty bitmap (32 pages per element). */
function pagesOf(bitmap: Uint32Array, npages: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < npages; p++) if ((bitmap[p >>> 5]! >>> (p & 31)) & 1) out.push(p);
  return out;
}

describe("a 2M leaf replacing a page table flushes (tdp_mmu_map_handle_target_level)", () => {
  it("with collapse off, the only flush is the one of the fault that installs the huge leaf", () => {
    const vm = createVm({ features: { collapseOnLogDisable: "none", eagerPageSplit: false } });
    const region = { slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, backing: "thp" as const };
    vm.setUserMemoryRegion({ ...region, flags: LOG, userspaceAddr: 8 * GIB });
    const vcpu = vm.createVcpu();
    for (let gpa = 0; gpa < MIB; gpa += PAGE) vcpu.access(gpa, {}); // 4K only while logging
    vm.setUserMemoryRegion({ ...region, flags: 0, userspaceAddr: 8 * GIB });
    const s = vm.stats;
    // Nothing changed a translation yet: the 256 4K leaves stay (no collapse).
    expect([s.pages_4k, s.pages_2m, s.remote_tlb_flush_requests]).toEqual([256, 0, 0]);
    vcpu.access(MIB, {}); // unmapped gfn: the fault maps the whole 2 MiB over the page table
    expect([s.pages_4k, s.pages_2m]).toEqual([0, 1]);
    // The CPU may still hold the 256 4K translations: exactly one flush.
    expect(s.remote_tlb_flush_requests).toBe(1);
    expect(vm.audit()).toEqual([]);
  });
});

describe("dirty bitmaps: exactly the pages written, across every 32- and 64-bit word edge", () => {
  // 1000 pages: the last 64-bit word is partial; the slot base is not 64-page aligned.
  const NPAGES = 1000;
  const BASE_GFN = 0x1234;
  const setup = (manual: boolean) => {
    const vm = createVm({ features: { eagerPageSplit: false } });
    if (manual)
      vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
    vm.setUserMemoryRegion({
      slot: 3,
      guestPhysAddr: BASE_GFN * PAGE,
      memorySize: NPAGES * PAGE,
      flags: LOG,
    });
    const vcpu = vm.createVcpu();
    const write = (pages: Iterable<number>) => {
      for (const p of pages) vcpu.access((BASE_GFN + p) * PAGE, { write: true });
    };
    return { vm, write };
  };
  /** Pages around every word boundary plus a seeded random third of the rest. */
  const subset = (seed: number) => {
    const next = rng(seed);
    const set = new Set<number>();
    for (let p = 0; p < NPAGES; p++) if (next() % 3 === 0) set.add(p);
    for (const edge of [31, 32, 63, 64, 95, 96, 127, 128, 991, 992, 999]) {
      if (next() & 1) set.add(edge);
      else set.delete(edge);
    }
    return [...set].sort((a, b) => a - b);
  };

  it("KVM_GET_DIRTY_LOG returns the written pages and re-protects them; the next GET only the new writes", () => {
    const { vm, write } = setup(false);
    write(Array.from({ length: NPAGES }, (_, p) => p)); // map every page writable
    expect(pagesOf(vm.getDirtyLog(3), NPAGES)).toHaveLength(NPAGES);
    for (const seed of [1, 2, 3]) {
      const pages = subset(seed);
      write(pages);
      expect(pagesOf(vm.getDirtyLog(3), NPAGES)).toEqual(pages);
      expect(vm.audit()).toEqual([]);
    }
  });

  it("KVM_CLEAR_DIRTY_LOG clears exactly the masked bits; a write after CLEAR is logged again", () => {
    const { vm, write } = setup(true);
    write(Array.from({ length: NPAGES }, (_, p) => p));
    const next = rng(99);
    const mask = new Uint32Array(Math.ceil(NPAGES / 32));
    for (let p = 0; p < NPAGES; p++) if (next() & 1) mask[p >>> 5]! |= 1 << (p & 31);
    const clearedPages = pagesOf(mask, NPAGES);
    expect(vm.clearDirtyLog(3, 0, NPAGES, mask)).toBe(clearedPages.length);
    const kept = new Set(Array.from({ length: NPAGES }, (_, p) => p));
    for (const p of clearedPages) kept.delete(p);
    expect(pagesOf(vm.getDirtyLog(3), NPAGES)).toEqual([...kept]);
    expect(vm.audit()).toEqual([]);
    // Every cleared page was write-protected: writing a random half of them logs those again.
    const rewritten = clearedPages.filter(() => next() & 1);
    write(rewritten);
    expect(pagesOf(vm.getDirtyLog(3), NPAGES)).toEqual(
      [...kept, ...rewritten].sort((a, b) => a - b),
    );
    expect(vm.audit()).toEqual([]);
  });
});

describe("KVM_CLEAR_DIRTY_LOG with INITIALLY_SET write-protects the huge page of the mask's last bit", () => {
  it("a slot starting 32 pages below a 2 MiB boundary: the write after CLEAR is logged", () => {
    // kvm_arch_mmu_enable_log_dirty_pt_masked: the huge pages holding the first and the last set
    // bit are write-protected, since under INITIALLY_SET they may still be writable 2M leaves.
    const vm = createVm({ features: { eagerPageSplit: false } });
    vm.enableCap(
      "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2",
      KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET,
    );
    const baseGfn = 512 - 32;
    // The host address is congruent to the gfn modulo 2 MiB, so gfns 512..1023 may map huge.
    const region = {
      slot: 0,
      guestPhysAddr: baseGfn * PAGE,
      memorySize: 4 * MIB,
      backing: "thp" as const,
      userspaceAddr: 8 * GIB + baseGfn * PAGE,
    };
    vm.setUserMemoryRegion({ ...region, flags: 0 });
    const vcpu = vm.createVcpu();
    vcpu.access(600 * PAGE, { write: true });
    expect(vm.stats.pages_2m).toBe(1); // gfns 512..1023, writable
    vm.setUserMemoryRegion({ ...region, flags: LOG }); // INITIALLY_SET: nothing protected
    // Clear slot pages 0..63 = gfns 480..543: the first bit is in the 2 MiB below gfn 512 (not
    // mapped), the last in the huge page at 512.
    const all = new Uint32Array([0xffffffff, 0xffffffff]);
    expect(vm.clearDirtyLog(0, 0, 64, all)).toBe(64);
    const pf = vm.stats.pf_taken;
    vcpu.access(520 * PAGE, { write: true }); // slot page 40, whose bit CLEAR just cleared
    expect(vm.stats.pf_taken - pf).toBe(1); // the 2M leaf no longer allows the write
    const bitmap = vm.getDirtyLog(0);
    expect(pagesOf(bitmap, 64)).toEqual([40]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("guest paging-structure bits the walker must honour", () => {
  const vm64 = (levels: 4 | 5) => {
    const vm = createVm({ maxPhysAddrBits: 46, mmu: "none" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MIB, flags: 0 });
    const b = new GuestPageTableBuilder(vm, {
      mode: levels === 4 ? "4-level" : "5-level",
      poolBase: 16 * MIB,
      poolSize: 4 * MIB,
    });
    return { vm, b, vcpu: vm.createVcpu() };
  };

  it("5-level paging sets A in the PML5E as in every other entry it uses", () => {
    const { vm, b, vcpu } = vm64(5);
    const gva = 0x00ab_4567_8000_0000n;
    b.map(gva, 0x300000, 0x1000);
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PAE | CR4_LA57, efer: EFER_LME });
    // Clear A in each entry of the path, found by following the tables by hand.
    const entries: number[] = [];
    let table = b.root;
    for (let level = 5; level >= 1; level--) {
      const gpa = table + Number((gva >> BigInt(12 + 9 * (level - 1))) & 511n) * 8;
      entries.push(gpa);
      const e = vm.readPhys64(gpa);
      vm.guestWrite64(gpa, e & ~PTE_A);
      table = Number(e & 0x000f_ffff_ffff_f000n);
    }
    expect(vcpu.access(gva)).toEqual({ fault: false, gpa: 0x300000 });
    expect(entries.map((gpa) => (vm.readPhys64(gpa) & PTE_A) !== 0n)).toEqual([
      true,
      true,
      true,
      true,
      true,
    ]);
  });

  it("a 1 GiB PDPTE with any of bits 29:13 set is a reserved-bit fault; bit 12 (PAT) is not", () => {
    const { vm, b, vcpu } = vm64(4);
    b.map(0x4000_0000, 0x4000_0000, GIB, { pageSize: GIB });
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PAE, efer: EFER_LME });
    // PML4 index 0, PDPT index 1 for gva 1 GiB.
    const pdpt = Number(vm.readPhys64(b.root) & 0x000f_ffff_ffff_f000n);
    const pdpte = vm.readPhys64(pdpt + 8);
    expect(pdpte & PTE_PS).toBe(PTE_PS);
    for (let bit = 12; bit <= 29; bit++) {
      vm.guestWrite64(pdpt + 8, pdpte | (1n << BigInt(bit)));
      const want =
        bit === 12
          ? { fault: false, gpa: 0x4000_1234, mmio: true } // no memslot there
          : { fault: true, vector: 14, errorCode: PF_P | PF_RSVD };
      expect([bit, vcpu.access(0x4000_1234)]).toEqual([bit, want]);
    }
  });

  it("PSE-36: PDE bits 16:13 of a 4 MiB page supply address bits 35:32; bits 21:17 are reserved", () => {
    // KVM's PSE-36 is 36 bits whatever MAXPHYADDR says (mmu.c: pse36_gfn_delta takes 4 bits,
    // __reset_rsvds_bits_mask reserves bits 21:17), though the SDM lets a CPU with a wider
    // MAXPHYADDR use bits up to 20:13.
    const vm = createVm({ maxPhysAddrBits: 40, mmu: "none" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MIB, flags: 0 });
    const b = new GuestPageTableBuilder(vm, { mode: "32-bit", poolBase: 16 * MIB, poolSize: MIB });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PSE });
    for (let bit = 13; bit <= 21; bit++) {
      // PDE 3: a present, writable 4 MiB page at 0x00c0_0000 with one high-address bit.
      vm.guestWrite32(b.root + 3 * 4, 0x00c0_0000 | (1 << bit) | 0x83);
      const want =
        bit <= 16
          ? { fault: false, gpa: 2 ** (32 + bit - 13) + 0x00c0_0000 + 0x1234, mmio: true }
          : { fault: true, vector: 14, errorCode: PF_P | PF_RSVD };
      expect([bit, vcpu.access(0xc0_1234)]).toEqual([bit, want]);
    }
  });
});

describe("tdp_iter_steps counts every step of the TDP iterator", () => {
  // A 2 MiB slot mapped with 512 4K leaves under one 4-level root. An iteration over its gfns
  // steps down three times (PDPT, PD, PT), sideways 511 times through the PT, then once more to
  // leave the range (up to the PD and sideways past the end): 515 steps.
  const STEPS = 3 + 511 + 1;
  const mapped = () => {
    const vm = createVm({ features: { eagerPageSplit: false } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 0 });
    const vcpu = vm.createVcpu();
    for (let gpa = 0; gpa < 2 * MIB; gpa += PAGE) vcpu.access(gpa, { write: true });
    expect(vm.stats.pages_4k).toBe(512);
    return { vm };
  };
  it("kvm_tdp_mmu_unmap_gfn_range (zap of the slot's gfns)", () => {
    const { vm } = mapped();
    const before = vm.stats.tdp_iter_steps;
    vm.zapGfnRange(0, 512);
    expect(vm.stats.tdp_iter_steps - before).toBe(STEPS);
  });
  it("wrprot_gfn_range (enabling dirty logging without eager split)", () => {
    const { vm } = mapped();
    const before = vm.stats.tdp_iter_steps;
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: LOG });
    expect(vm.stats.tdp_iter_steps - before).toBe(STEPS);
  });
});
