/**
 * Directed walker tests for what access.c does not cover: SMAP/SMEP, 32-bit paging (4 MiB PSE
 * pages, PSE-36, no XD), PAE (PDPTE load, #GP, cached PDPTEs), LA57. Expected values come from
 * the x86 architecture's paging rules, written out by hand per case.
 */
import { describe, expect, it } from "vitest";
import { createVm, GeneralProtectionError, GuestPageTableBuilder } from "../src";

const MiB = 1024 * 1024;
const CR0_PE = 1;
const CR0_WP = 1 << 16;
const CR0_PG = 0x80000000;
const CR4_PSE = 1 << 4;
const CR4_PAE = 1 << 5;
const CR4_LA57 = 1 << 12;
const CR4_SMEP = 1 << 20;
const CR4_SMAP = 1 << 21;
const EFER_LME = 1 << 8;
const EFER_NX = 1 << 11;
const AC = 1 << 18;

function vm64(levels: 4 | 5 = 4) {
  const vm = createVm({ maxPhysAddrBits: 46 });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  const b = new GuestPageTableBuilder(vm, {
    mode: levels === 4 ? "4-level" : "5-level",
    poolBase: 16 * MiB,
    poolSize: 4 * MiB,
  });
  const vcpu = vm.createVcpu();
  return { vm, b, vcpu };
}

describe("SMAP (CR4.SMAP, RFLAGS.AC, implicit supervisor accesses)", () => {
  const setup = () => {
    const { vm, b, vcpu } = vm64();
    b.map(0x400000, 0x200000, 0x1000, { user: true, writable: true, dirty: true, accessed: true });
    b.map(0x401000, 0x201000, 0x1000, { user: false, writable: true });
    vcpu.setSregs({
      cr0: CR0_PE | CR0_PG | CR0_WP,
      cr3: b.root,
      cr4: CR4_PAE | CR4_SMAP,
      efer: EFER_LME | EFER_NX,
    });
    return { vm, vcpu };
  };
  it("supervisor read of a user page faults with P when AC=0", () => {
    const { vcpu } = setup();
    expect(vcpu.access(0x400000, { user: false })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x1,
    });
  });
  it("supervisor write of a user page faults with P|W, even with CR0.WP=0", () => {
    const { vcpu } = setup();
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG });
    expect(vcpu.access(0x400000, { write: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x3,
    });
  });
  it("RFLAGS.AC=1 lifts SMAP for explicit supervisor accesses at CPL 0", () => {
    const { vcpu } = setup();
    vcpu.setRflags(AC | 2);
    expect(vcpu.access(0x400000, { write: true })).toEqual({ fault: false, gpa: 0x200000 });
  });
  it("implicit supervisor accesses ignore AC", () => {
    const { vcpu } = setup();
    vcpu.setRflags(AC | 2);
    expect(vcpu.access(0x400000, { implicit: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x1,
    });
  });
  it("implicit supervisor access at CPL 3 is still a supervisor access (no U in the error code)", () => {
    const { vcpu } = setup();
    vcpu.setCpl(3);
    expect(vcpu.access(0x400000, { implicit: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x1,
    });
    expect(vcpu.access(0x400000)).toEqual({ fault: false, gpa: 0x200000 }); // default: user at CPL 3
  });
  it("a supervisor access at CPL 3 is implicit even without the flag (AC does not lift SMAP)", () => {
    const { vcpu } = setup();
    vcpu.setRflags(AC | 2);
    vcpu.setCpl(3);
    expect(vcpu.access(0x400000, { user: false })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x1,
    });
    vcpu.setCpl(0);
    expect(vcpu.access(0x400000, { user: false })).toEqual({ fault: false, gpa: 0x200000 });
  });
  it("does not apply to user accesses, supervisor pages or instruction fetches", () => {
    const { vcpu } = setup();
    expect(vcpu.access(0x400000, { user: true })).toEqual({ fault: false, gpa: 0x200000 });
    expect(vcpu.access(0x401000, { write: true })).toEqual({ fault: false, gpa: 0x201000 });
    expect(vcpu.access(0x400000, { fetch: true })).toEqual({ fault: false, gpa: 0x200000 });
  });
  it("SMEP: a supervisor fetch from a user page faults with P|I, I set even with EFER.NX=0", () => {
    const { vcpu } = setup();
    vcpu.setSregs({ cr4: CR4_PAE | CR4_SMEP, efer: EFER_LME });
    expect(vcpu.access(0x400000, { fetch: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x11,
    });
    expect(vcpu.access(0x401000, { fetch: true })).toEqual({ fault: false, gpa: 0x201000 });
  });
});

describe("32-bit paging", () => {
  const setup = (cr4 = CR4_PSE) => {
    const vm = createVm({ maxPhysAddrBits: 46 });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
    const b = new GuestPageTableBuilder(vm, { mode: "32-bit", poolBase: 16 * MiB, poolSize: MiB });
    const vcpu = vm.createVcpu();
    return {
      vm,
      b,
      vcpu,
      load: () => vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: b.root, cr4 }),
    };
  };
  it("walks two levels of 4-byte entries with 10-bit indices", () => {
    const { vm, b, vcpu, load } = setup();
    b.map(0x12345000, 0x300000, 0x1000);
    load();
    const r = vcpu.walk(0x12345678, { write: true });
    expect(r.fault).toBe(false);
    expect(r.gpa).toBe(0x300678);
    const pd = b.root;
    // PD index = bits 31:22 = 0x48, PT index = bits 21:12 = 0x345; entries are 4 bytes.
    expect(r.levels.map((l) => [l.level, l.index])).toEqual([
      [2, 0x48],
      [1, 0x345],
    ]);
    expect(r.levels[0]!.pteGpa).toBe(pd + 0x48 * 4);
    const ptGpa = r.levels[1]!.tableGfn * 4096;
    expect(r.levels[1]!.pteGpa).toBe(ptGpa + 0x345 * 4);
    expect(vm.readPhys32(ptGpa + 0x345 * 4)).toBe(0x300000 | 0x67); // P|RW|US|A|D
  });
  it("maps a 4 MiB page with CR4.PSE (PDE bit 7)", () => {
    const { b, vcpu, load } = setup();
    b.map(0x800000, 0x1c00000, 4 * MiB, { pageSize: 4 * MiB });
    load();
    const r = vcpu.walk(0x9abcde);
    expect(r.gpa).toBe(0x1c00000 + 0x1abcde);
    expect(r.pageSize).toBe(4 * MiB);
    expect(r.levels).toHaveLength(1);
  });
  it("ignores PDE bit 7 without CR4.PSE (the entry points to a page table)", () => {
    const { vm, b, vcpu, load } = setup(0);
    // PDE 2 -> "table" at 0x1c00000 with bit 7 set; PTE 0 in that table -> 0x5000.
    vm.guestWrite32(b.root + 2 * 4, 0x1c00000 | 0x87);
    vm.guestWrite32(0x1c00000, 0x5000 | 0x7);
    load();
    expect(vcpu.access(0x800123)).toEqual({ fault: false, gpa: 0x5123 });
  });
  it("PSE-36: PDE bits 16:13 supply physical address bits 35:32", () => {
    const { vm, b, vcpu, load } = setup();
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 0x3_0000_0000,
      memorySize: 4 * MiB,
      flags: 0,
    });
    b.map(0xc00000, 0x3_0000_0000, 4 * MiB, { pageSize: 4 * MiB });
    load();
    expect(vm.readPhys32(b.root + 3 * 4)).toBe((0x3 << 13) | 0x87);
    expect(vcpu.access(0xc01234)).toEqual({ fault: false, gpa: 0x3_0000_1234 });
  });
  it("PSE-36: bit 21 of a 4 MiB PDE is reserved (RSVD fault)", () => {
    const { vm, b, vcpu, load } = setup();
    vm.guestWrite32(b.root + 3 * 4, 0x200000 | 0x87);
    load();
    expect(vcpu.access(0xc00000, { write: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0xb,
    });
  });
  it("has no XD: fetches succeed from any present page and the error code has no I without NX/SMEP", () => {
    const { b, vcpu, load } = setup();
    b.map(0x400000, 0x300000, 0x1000);
    load();
    expect(vcpu.access(0x400000, { fetch: true, user: true })).toEqual({
      fault: false,
      gpa: 0x300000,
    });
    expect(vcpu.access(0x401000, { fetch: true, user: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x4,
    });
  });
  it("refuses a gva above 4 GiB", () => {
    const { vcpu, load } = setup();
    load();
    expect(() => vcpu.access(2 ** 32)).toThrow(/gva.*0x100000000.*32-bit linear address/);
  });
});

describe("PAE paging", () => {
  const setup = () => {
    const vm = createVm({ maxPhysAddrBits: 46 });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
    const b = new GuestPageTableBuilder(vm, { mode: "pae", poolBase: 16 * MiB, poolSize: MiB });
    const vcpu = vm.createVcpu();
    const load = () =>
      vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: b.root, cr4: CR4_PAE, efer: EFER_NX });
    return { vm, b, vcpu, load };
  };
  it("takes the PDPTE from the register loaded at CR3 load (3 levels in the trace, 2 memory reads)", () => {
    const { b, vcpu, load } = setup();
    b.map(0xc0200000, 0x400000, 2 * MiB, { pageSize: 2 * MiB });
    load();
    const before = vcpu.walker.gpteReads;
    const r = vcpu.walk(0xc0234567);
    expect(r.gpa).toBe(0x434567);
    expect(r.levels.map((l) => l.name)).toEqual(["PDPTR", "PD"]);
    expect(r.levels[0]!.index).toBe(3);
    expect(r.levels[1]!.index).toBe(1);
    expect(vcpu.walker.gpteReads - before).toBe(1);
  });
  it("keeps using the cached PDPTEs until CR3 is reloaded", () => {
    const { vm, b, vcpu, load } = setup();
    b.map(0x1000, 0x5000, 0x1000);
    load();
    vm.guestWrite64(b.root, 0n); // guest clears PDPTE 0 in memory
    expect(vcpu.access(0x1000)).toEqual({ fault: false, gpa: 0x5000 });
    vcpu.setCpl(3); // no control-register load: PDPTEs stay cached
    expect(vcpu.access(0x1000)).toEqual({ fault: false, gpa: 0x5000 });
    vcpu.setCpl(0);
    vcpu.movCr3(b.root);
    expect(vcpu.access(0x1000)).toEqual({ fault: true, vector: 14, errorCode: 0 });
    expect(vcpu.access(0x1000, { user: true, write: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 6,
    });
  });
  it("#GP at CR3 load when a present PDPTE sets a reserved bit; registers unchanged", () => {
    const { vm, b, vcpu, load } = setup();
    b.map(0x1000, 0x5000, 0x1000);
    load();
    const regs = vcpu.getSregs();
    vm.guestWrite64(b.root + 8, BigInt(0x7000 | 0x3)); // PDPTE 1: P|RW — R/W is reserved in a PDPTE
    let err: unknown;
    try {
      vcpu.movCr3(b.root);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GeneralProtectionError);
    expect(String(err)).toMatch(/PDPTE\[1\]/);
    expect(vcpu.getSregs()).toEqual(regs);
    expect(vcpu.access(0x1000)).toEqual({ fault: false, gpa: 0x5000 });
  });
  it("a non-present PDPTE may hold any bits", () => {
    const { vm, b, vcpu, load } = setup();
    vm.guestWrite64(b.root + 16, 0xfffffffffffffffen);
    load();
    expect(vcpu.access(0x80000000)).toEqual({ fault: true, vector: 14, errorCode: 0 });
  });
  it("checks bits 62:MAXPHYADDR of PD/PT entries and XD with NXE", () => {
    const { vm, b, vcpu, load } = setup();
    b.map(0x1000, 0x5000, 0x1000, { nx: true });
    b.map(0x2000, 0x6000, 0x1000);
    load();
    expect(vcpu.access(0x1000, { fetch: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x11,
    });
    const pte = b.entryAddress(0x2000, 1)!;
    vm.guestWrite64(pte, (1n << 50n) | 0x6007n); // bit 50 >= MAXPHYADDR 46: reserved
    expect(vcpu.access(0x2000, { write: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0xb,
    });
  });
  it("refuses a PDPT outside memslots at CR3 load with #GP", () => {
    const { vcpu } = setup();
    expect(() => vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: 0x8000000, cr4: CR4_PAE })).toThrow(
      GeneralProtectionError,
    );
    expect(vcpu.pagingMode).toBe("none");
  });
});

describe("LA57 (5-level paging)", () => {
  it("walks five levels; the PML5 index is gva bits 56:48", () => {
    const { b, vcpu } = vm64(5);
    const gva = 0x00ab_4567_8000_0000n; // bits 63:56 = 0, PML5 index 0xab: canonical only with LA57
    b.map(gva, 0x300000, 0x1000);
    vcpu.setSregs({
      cr0: CR0_PE | CR0_PG | CR0_WP,
      cr3: b.root,
      cr4: CR4_PAE | CR4_LA57,
      efer: EFER_LME,
    });
    const r = vcpu.walk(gva + 0x10n);
    expect(r.fault).toBe(false);
    expect(r.gpa).toBe(0x300010);
    expect(r.levels.map((l) => l.name)).toEqual(["PML5", "PML4", "PDPT", "PD", "PT"]);
    expect(r.levels.map((l) => l.index)).toEqual([
      Number((gva >> 48n) & 511n),
      Number((gva >> 39n) & 511n),
      Number((gva >> 30n) & 511n),
      Number((gva >> 21n) & 511n),
      Number((gva >> 12n) & 511n),
    ]);
  });
  it("canonical means bits 63:56 equal with LA57 and 63:47 without", () => {
    const { vcpu, b } = vm64(5);
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PAE | CR4_LA57, efer: EFER_LME });
    const gp = { fault: true, vector: 13, errorCode: 0 };
    expect(vcpu.access(0x0000_8000_0000_0000n)).toEqual({ fault: true, vector: 14, errorCode: 0 }); // canonical in 5-level
    expect(vcpu.access(0x0100_0000_0000_0000n)).toEqual(gp);
    expect(vcpu.access(0xff00_0000_0000_0000n)).toEqual({ fault: true, vector: 14, errorCode: 0 });
    vcpu.setSregs({ cr4: CR4_PAE });
    expect(vcpu.access(0x0000_8000_0000_0000n)).toEqual(gp);
    expect(vcpu.access(0xffff_8000_0000_0000n)).toEqual({ fault: true, vector: 14, errorCode: 0 });
  });
  it("PS in a PML5E or PML4E is a reserved-bit fault; 1 GiB pages end at the PDPTE", () => {
    const { vm, b, vcpu } = vm64(4);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x40000000, memorySize: 2 ** 30, flags: 0 });
    b.map(0x40000000, 0x40000000, 2 ** 30, { pageSize: 2 ** 30 });
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PAE, efer: EFER_LME });
    const r = vcpu.walk(0x7fedcba9);
    expect(r.gpa).toBe(0x7fedcba9);
    expect(r.levels.map((l) => l.name)).toEqual(["PML4", "PDPT"]);
    vm.guestWrite64(b.root, vm.readPhys64(b.root) | 0x80n);
    expect(vcpu.access(0x7fedcba9)).toEqual({ fault: true, vector: 14, errorCode: 0x9 });
  });
});

describe("access API edges", () => {
  it("a gpa without a memslot is an MMIO exit reported to the caller", () => {
    const { b, vcpu } = vm64();
    b.map(0x400000, 0x10000000, 0x1000); // 256 MiB: beyond slot 0
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PAE, efer: EFER_LME });
    expect(vcpu.access(0x400008, { write: true })).toEqual({
      fault: false,
      gpa: 0x10000008,
      mmio: true,
    });
  });
  it("a page table outside memslots gives a not-present #PF", () => {
    const { vm, b, vcpu } = vm64();
    b.map(0x400000, 0x100000, 0x1000);
    const pde = b.entryAddress(0x400000, 2)!;
    vm.guestWrite64(pde, 0x20000000n | 7n); // PT at 512 MiB: no memslot
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PAE, efer: EFER_LME });
    expect(vcpu.access(0x400000, { user: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 4,
    });
    expect(vcpu.walk(0x400000).levels.at(-1)!.note).toMatch(/outside memslots/);
  });
  it("with paging off the gva is the gpa", () => {
    const { vcpu } = vm64();
    vcpu.setSregs({ cr0: CR0_PE });
    expect(vcpu.access(0x123456)).toEqual({ fault: false, gpa: 0x123456 });
  });
  for (const mmu of ["none", "tdp"] as const) {
    it(`A/D are not written into page tables in a read-only slot, and the walk still succeeds (mmu ${mmu})`, () => {
      // FNAME(update_accessed_dirty_bits) skips levels whose table is not writable.
      const vm = createVm({ mmu });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MiB, memorySize: MiB, flags: 0 });
      const b = new GuestPageTableBuilder(vm, {
        mode: "4-level",
        poolBase: 16 * MiB,
        poolSize: MiB,
      });
      b.map(0x400000, 0x100000, 0x1000);
      const pte = b.entryAddress(0x400000, 1)!;
      const before = vm.readPhys64(pte);
      // Re-create slot 1 read-only over the same host memory: the tables stay (data lives at the hva).
      const hva = vm.memslots.get(1)!.userspaceAddr;
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MiB, memorySize: 0, flags: 0 });
      vm.setUserMemoryRegion({
        slot: 1,
        guestPhysAddr: 16 * MiB,
        memorySize: MiB,
        flags: 2,
        userspaceAddr: hva,
      });
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ cr0: CR0_PE | CR0_PG, cr3: b.root, cr4: CR4_PAE, efer: EFER_LME });
      expect(vcpu.access(0x400000, { write: true })).toEqual({ fault: false, gpa: 0x100000 });
      expect(vm.readPhys64(pte)).toBe(before); // no A, no D written back
      expect(before & 0x60n).toBe(0n);
    });
  }
});
