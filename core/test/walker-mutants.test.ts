/**
 * Guest-walker gaps one-line mutations of mmu/paging_tmpl.ts slipped through (issue 16). Every
 * expected value is worked out here from the x86 paging rules (Intel SDM vol. 3, "Paging") and
 * KVM's walker accounting (`FNAME(walk_addr_generic)`), never read back from the walker.
 *
 * The table-frame cache in front of the walk (`GuestTables`) is a simulator accelerator: a hit
 * must give exactly what guest memory holds. Its tests change the memory behind a cached frame
 * (a memslot re-created over fresh host memory) and check that the next walk sees the change.
 */
import { describe, expect, it } from "vitest";
import { createVm } from "../src";
import { GPTE } from "./kvm-values";

const KiB = 1024;
const MiB = 1024 * KiB;
const CR0_PE = 1;
const CR0_WP = 1 << 16;
const CR0_PG = 0x80000000;
const CR4_PSE = 1 << 4;
const CR4_PAE = 1 << 5;
const EFER_LME = 1 << 8;
const EFER_NX = 1 << 11;
const { P, RW, US, A, D, PS } = GPTE;
const PRU = P | RW | US;
const LONG = { cr0: CR0_PE | CR0_PG | CR0_WP, cr4: CR4_PAE, efer: EFER_LME | EFER_NX };
const NOT_PRESENT = { fault: true, vector: 14, errorCode: 0 };

/**
 * A 4-level guest on the bare machine (mmu "none": the walk reads guest memory straight over the
 * memslots, and only a memslot change drops cached table frames). PML4 gfn 0x100, PDPT 0x101,
 * PD 0x102; PD entry `i` maps gva i * 2 MiB.
 */
function bare(features: Record<string, unknown> = {}) {
  const vm = createVm({ maxPhysAddrBits: 46, mmu: "none", features });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
  return vm;
}
function tables4(vm: ReturnType<typeof bare>) {
  vm.guestWrite64(0x100000, 0x101000n | PRU);
  vm.guestWrite64(0x101000, 0x102000n | PRU);
  /** PD entry `i` (gva i * 2 MiB) points to the page table at gpa `pt`. */
  return (i: number, pt: number) => vm.guestWrite64(0x102000 + i * 8, BigInt(pt) | PRU);
}

describe("GuestTables: a table frame in a memslot that was never written reads as zeros", () => {
  // The first frame written is the first frame of the memory arena. Fill it with words that
  // read as present entries, so that a walk taking words from the arena instead of zeros sees
  // a present entry where the guest has none.
  const fillFirstFrame = (vm: ReturnType<typeof bare>, word: number) => {
    for (let off = 0; off < 4096; off += 4) vm.guestWrite32(0xf00000 + off, word);
  };
  it("4-level: a PT in guest RAM that was never written: not-present #PF at the PT", () => {
    const vm = bare();
    // Each 32-bit word P|RW|US|A|D, address bits 38:32 = 0x67: as a gpte, a present 4K leaf.
    fillFirstFrame(vm, 0x67);
    const pde = tables4(vm);
    pde(2, 0x103000); // PT gfn 0x103: inside slot 0, never written
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000 });
    // SDM: a PTE of zero is not present: #PF, error code 0 for a supervisor read.
    expect(vcpu.access(0x400000)).toEqual(NOT_PRESENT);
    expect(vcpu.walker.level).toBe(1);
    const r = vcpu.walk(0x400000);
    expect(r.fault).toBe(true);
    expect(r.levels.map((l) => l.level)).toEqual([4, 3, 2, 1]);
    expect(r.levels[3]!.after).toBe(0n);
    // KVM counts the read of the zero entry: PML4E, PDPTE, PDE, PTE.
    const before = vcpu.walker.gpteReads;
    vcpu.access(0x400000);
    expect(vcpu.walker.gpteReads - before).toBe(4);
  });
  it("32-bit: a PT in guest RAM that was never written: not-present #PF at the PT", () => {
    const vm = bare();
    fillFirstFrame(vm, 0x1067); // P|RW|US|A|D -> frame 0x1000: a present 4K leaf
    vm.guestWrite32(0x100000 + 1 * 4, 0x103000 | 7); // PDE 1 (gva 4 MiB) -> PT 0x103, unwritten
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: 0x100000, cr4: CR4_PSE });
    expect(vcpu.access(0x400000)).toEqual(NOT_PRESENT);
    expect(vcpu.walker.level).toBe(1);
  });
  for (const flavour of ["w07a", "w07p", "w07b"] as const) {
    it(`${flavour}: a PT outside every memslot and one never written both fail not-present at the PT`, () => {
      const vm = bare({ guestWalker: flavour });
      fillFirstFrame(vm, 0x67);
      const pde = tables4(vm);
      pde(2, 0x103000); // never written
      pde(3, 0x20000000); // 512 MiB: outside every memslot
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ ...LONG, cr3: 0x100000 });
      // PT index 5: a walk taking its words from the wrong place reads the filled frame's.
      for (const gva of [0x405000, 0x605000]) {
        const r0 = vcpu.walker.gpteReads;
        expect(vcpu.access(gva)).toEqual(NOT_PRESENT);
        expect(vcpu.walker.level).toBe(1);
        // The PTE read counts only where a table is there to read (KVM's walker fails before it
        // reads a gpte from a gfn without a memslot).
        expect(vcpu.walker.gpteReads - r0).toBe(gva === 0x405000 ? 4 : 3);
      }
      const r = vcpu.walk(0x605000);
      expect(r.levels.map((l) => l.level)).toEqual([4, 3, 2, 1]);
      expect(r.levels[3]!.note).toMatch(/outside memslots/);
      expect(r.levels[3]!.after).toBe(0n);
      expect(vcpu.walk(0x405000).levels[3]!.note).toBeUndefined();
    });
  }
  it("the trace of a walk whose PT is outside every memslot ends at the PT with a zero entry", () => {
    const vm = bare();
    fillFirstFrame(vm, 0x67);
    const pde = tables4(vm);
    pde(3, 0x20000000);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000 });
    const r = vcpu.walk(0x600000);
    expect(r.fault).toBe(true);
    expect(r.errorCode).toBe(0);
    expect(r.levels.map((l) => l.level)).toEqual([4, 3, 2, 1]);
    expect(r.levels[3]!.after).toBe(0n);
    expect(r.levels[3]!.note).toMatch(/outside memslots/);
  });
});

describe("GuestTables: a memslot change drops every cached table frame", () => {
  it("a root table re-created over fresh memory is read again (not-present at the PML4)", () => {
    const vm = createVm({ maxPhysAddrBits: 46, mmu: "none" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MiB, memorySize: MiB, flags: 0 });
    const R = 16 * MiB;
    vm.guestWrite64(R, BigInt(R + 0x1000) | PRU);
    vm.guestWrite64(R + 0x1000, BigInt(R + 0x2000) | PRU);
    vm.guestWrite64(R + 0x2000 + 2 * 8, BigInt(R + 0x3000) | PRU);
    vm.guestWrite64(R + 0x3000, 0x200000n | PRU);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: R });
    expect(vcpu.access(0x400123)).toEqual({ fault: false, gpa: 0x200123 });
    // The walk set A in every level (tables at 16 MiB: gfn >> 12 = 1, the cache's key 1).
    expect(vm.readPhys64(R)).toBe(BigInt(R + 0x1000) | PRU | A);
    expect(vm.readPhys64(R + 0x3000)).toBe(0x200000n | PRU | A);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MiB, memorySize: 0, flags: 0 });
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MiB, memorySize: MiB, flags: 0 });
    expect(vm.readPhys64(R)).toBe(0n); // fresh host memory
    expect(vcpu.access(0x400123)).toEqual(NOT_PRESENT);
    expect(vcpu.walker.level).toBe(4);
  });
  it("with all 4096 cache entries recorded (some twice), a frame cached after that is dropped too", () => {
    // PT T (gfn 0x103) and U (gfn 0x1103, never written) share the cache entry of their low 12
    // bits: every walk through U empties it, every walk through T fills it again. V (gfn 0x1800,
    // a slot of its own) is cached once the fill record is full.
    const vm = bare();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MiB, memorySize: 8 * MiB, flags: 0 });
    vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 24 * MiB, memorySize: 4096, flags: 0 });
    const pde = tables4(vm);
    pde(2, 0x103000);
    pde(3, 0x1103000);
    pde(4, 0x1800000);
    vm.guestWrite64(0x103000, 0x200000n | PRU);
    vm.guestWrite64(0x1800000, 0x201000n | PRU);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000 });
    for (let i = 0; i < 4100; i++) {
      expect(vcpu.access(0x400000).fault).toBe(false);
      expect(vcpu.access(0x600000)).toEqual(NOT_PRESENT);
    }
    expect(vcpu.access(0x800000)).toEqual({ fault: false, gpa: 0x201000 });
    vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 24 * MiB, memorySize: 0, flags: 0 });
    vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 24 * MiB, memorySize: 4096, flags: 0 });
    vm.guestWrite64(0x1800000, 0x202000n | PRU);
    expect(vcpu.access(0x800000)).toEqual({ fault: false, gpa: 0x202000 });
  });
});

describe("walk_addr_generic: gpte reads counted per level read, whatever ends the walk", () => {
  // PML4 0x100, PDPT 0x101, PD 0x102, PT 0x103; gva 0x400000 = indices (0, 0, 2, 0).
  const ENTRY = { 4: 0x100000, 3: 0x101000, 2: 0x102010, 1: 0x103000 } as Record<number, number>;
  const NEXT = { 4: 0x101000, 3: 0x102000, 2: 0x103000, 1: 0x200000 } as Record<number, number>;
  const setup = (bad: number, how: "np" | "rsvd" | "notable") => {
    const vm = bare();
    for (const l of [4, 3, 2, 1]) {
      let e = BigInt(NEXT[l]!) | PRU;
      if (l === bad && how === "np") e = BigInt(NEXT[l]!) | RW | US;
      if (l === bad && how === "rsvd") e |= 1n << 51n; // bit 51 >= MAXPHYADDR 46: reserved
      if (l === bad && how === "notable") e = 0x20000000n | PRU; // 512 MiB: no memslot
      vm.guestWrite64(ENTRY[l]!, e);
    }
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000 });
    return vcpu;
  };
  for (const level of [4, 3, 2, 1]) {
    it(`not present at level ${level}: ${5 - level} reads, #PF 0x2 for a write`, () => {
      const vcpu = setup(level, "np");
      for (let round = 0; round < 2; round++) {
        const r0 = vcpu.walker.gpteReads;
        expect(vcpu.access(0x400000, { write: true })).toEqual({
          fault: true,
          vector: 14,
          errorCode: 2,
        });
        expect([vcpu.walker.level, vcpu.walker.gpteReads - r0]).toEqual([level, 5 - level]);
      }
    });
    it(`reserved bit at level ${level}: ${5 - level} reads, #PF P|RSVD`, () => {
      const vcpu = setup(level, "rsvd");
      for (let round = 0; round < 2; round++) {
        const r0 = vcpu.walker.gpteReads;
        expect(vcpu.access(0x400000)).toEqual({ fault: true, vector: 14, errorCode: 9 });
        expect([vcpu.walker.level, vcpu.walker.gpteReads - r0]).toEqual([level, 5 - level]);
      }
    });
    if (level > 1)
      it(`the table below level ${level} outside every memslot: ${5 - level} reads, not present`, () => {
        const vcpu = setup(level, "notable");
        for (let round = 0; round < 2; round++) {
          const r0 = vcpu.walker.gpteReads;
          expect(vcpu.access(0x400000, { user: true })).toEqual({
            fault: true,
            vector: 14,
            errorCode: 4,
          });
          expect([vcpu.walker.level, vcpu.walker.gpteReads - r0]).toEqual([level - 1, 5 - level]);
        }
      });
  }
});

describe("walk_addr_generic: tables above 4 GiB (address bits 51:32 in the entry's high word)", () => {
  const G4 = 2 ** 32;
  it("4-level, CR3 and every table above 4 GiB: walk, trace and A/D write-back", () => {
    const vm = bare();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: G4, memorySize: MiB, flags: 0 });
    vm.guestWrite64(G4, BigInt(G4 + 0x1000) | PRU);
    vm.guestWrite64(G4 + 0x1000, BigInt(G4 + 0x2000) | PRU);
    vm.guestWrite64(G4 + 0x2000 + 2 * 8, BigInt(G4 + 0x3000) | PRU);
    vm.guestWrite64(G4 + 0x3000 + 5 * 8, BigInt(G4 + 0x9000) | PRU);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: G4 });
    expect(vcpu.access(0x405678, { write: true })).toEqual({ fault: false, gpa: G4 + 0x9678 });
    const r = vcpu.walk(0x405678, { write: true });
    const gfn4 = G4 / 4096;
    expect(r.levels.map((l) => l.tableGfn)).toEqual([gfn4, gfn4 + 1, gfn4 + 2, gfn4 + 3]);
    // A on every level, D on the leaf (SDM: the processor sets them on the first access).
    expect(vm.readPhys64(G4)).toBe(BigInt(G4 + 0x1000) | PRU | A);
    expect(vm.readPhys64(G4 + 0x1000)).toBe(BigInt(G4 + 0x2000) | PRU | A);
    expect(vm.readPhys64(G4 + 0x2010)).toBe(BigInt(G4 + 0x3000) | PRU | A);
    expect(vm.readPhys64(G4 + 0x3028)).toBe(BigInt(G4 + 0x9000) | PRU | A | D);
  });
  it("PAE: PD and PT above 4 GiB behind the PDPTE register; A/D written there", () => {
    const vm = bare();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: G4, memorySize: MiB, flags: 0 });
    vm.guestWrite64(0x100000 + 1 * 8, BigInt(G4 + 0x2000) | P); // PDPTE 1: gva 1 GiB..2 GiB
    vm.guestWrite64(G4 + 0x2000 + 3 * 8, BigInt(G4 + 0x3000) | PRU); // PDE 3
    vm.guestWrite64(G4 + 0x3000 + 4 * 8, 0x205000n | PRU); // PTE 4
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: 0x100000, cr4: CR4_PAE, efer: EFER_NX });
    const gva = 0x40000000 + 3 * 2 * MiB + 4 * 4096 + 0x321;
    expect(vcpu.access(gva, { write: true })).toEqual({ fault: false, gpa: 0x205321 });
    expect(vm.readPhys64(G4 + 0x2018)).toBe(BigInt(G4 + 0x3000) | PRU | A);
    expect(vm.readPhys64(G4 + 0x3020)).toBe(0x205000n | PRU | A | D);
    const r = vcpu.walk(gva);
    expect(r.levels.map((l) => [l.name, l.tableGfn, l.pteGpa])).toEqual([
      ["PDPTR", 0x100, 0x100008],
      ["PD", G4 / 4096 + 2, G4 + 0x2018],
      ["PT", G4 / 4096 + 3, G4 + 0x3020],
    ]);
  });
});

describe("PAE: a not-present PDPTE register ends the walk, whatever its other bits", () => {
  it("no read of the table its address bits name; the trace shows the register only", () => {
    const vm = bare();
    vm.guestWrite64(0x100000 + 3 * 8, 0x102000n); // PDPTE 3: not present, address bits of a PD
    vm.guestWrite64(0x102000, 0x103000n | PRU); // which has present entries
    vm.guestWrite64(0x102000 + 3 * 8, 0x103000n | PRU);
    vm.guestWrite64(0x103000, 0x5000n | PRU);
    vm.guestWrite64(0x103000 + 3 * 8, 0x5000n | PRU);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: 0x100000, cr4: CR4_PAE });
    const gva = 0xc0000000 + 0x603000; // PDPTE 3, PDE 3, PTE 3
    const r0 = vcpu.walker.gpteReads;
    expect(vcpu.access(gva, { write: true })).toEqual({ fault: true, vector: 14, errorCode: 2 });
    expect([vcpu.walker.level, vcpu.walker.gpteReads - r0]).toEqual([3, 0]);
    const r = vcpu.walk(gva);
    expect(r.levels.map((l) => [l.name, l.tableGfn, l.pteGpa, l.after])).toEqual([
      ["PDPTR", 0x100, 0x100018, 0x102000n],
    ]);
    expect(vm.readPhys64(0x102018)).toBe(0x103000n | PRU); // no A written below
  });
});

describe("large leaves: gfn, page size and address bits above 4 GiB", () => {
  const G4 = 2 ** 32;
  const setup = () => {
    const vm = bare();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: G4, memorySize: 2 * 2 ** 30, flags: 0 });
    tables4(vm);
    // PDPTE 1 (gva 1 GiB): a 1 GiB page at 5 GiB; PDE 2 (gva 4 MiB): a 2 MiB page at 4 GiB + 6 MiB.
    vm.guestWrite64(0x101008, BigInt(G4 + 2 ** 30) | PRU | PS);
    vm.guestWrite64(0x102000 + 2 * 8, BigInt(G4 + 6 * MiB) | PRU | PS);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000 });
    return { vm, vcpu };
  };
  it("a 2 MiB PDE leaf: gpa = page base + gva bits 20:0, page size 2 MiB", () => {
    const { vcpu } = setup();
    const r = vcpu.walk(0x400000 + 0x1abcde);
    expect(r.fault).toBe(false);
    expect(r.gpa).toBe(G4 + 6 * MiB + 0x1abcde);
    expect(r.pageSize).toBe(2 * MiB);
    expect(r.levels.map((l) => l.level)).toEqual([4, 3, 2]);
  });
  it("a 1 GiB PDPTE leaf: gpa = page base + gva bits 29:0, page size 1 GiB", () => {
    const { vcpu } = setup();
    const r = vcpu.walk(2 ** 30 + 0x2345_6789);
    expect(r.fault).toBe(false);
    expect(r.gpa).toBe(G4 + 2 ** 30 + 0x2345_6789);
    expect(r.pageSize).toBe(2 ** 30);
    expect(r.levels.map((l) => l.level)).toEqual([4, 3]);
  });
});

describe("protect_clean_gpte: only a read through a clean leaf loses W", () => {
  const setup = (leaf: bigint) => {
    const vm = bare();
    tables4(vm)(2, 0x103000);
    vm.guestWrite64(0x102010, 0x103000n | PRU | A);
    vm.guestWrite64(0x100000, 0x101000n | PRU | A);
    vm.guestWrite64(0x101000, 0x102000n | PRU | A);
    vm.guestWrite64(0x103000, 0x200000n | leaf);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000, cpl: 3 });
    return vcpu;
  };
  // pteAccess in ACC bits: 1 exec (no NX), 2 write, 4 user.
  it("read, clean leaf: exec|user", () => {
    expect(setup(PRU | A).walk(0x400000, { user: true }).pteAccess).toBe(5);
  });
  it("write, clean leaf: exec|write|user (the walk sets D)", () => {
    expect(setup(PRU | A).walk(0x400000, { user: true, write: true }).pteAccess).toBe(7);
  });
  it("read, dirty leaf: exec|write|user", () => {
    expect(setup(PRU | A | D).walk(0x400000, { user: true }).pteAccess).toBe(7);
  });
});

describe("update_accessed_dirty_bits: an entry the walk read twice is written once", () => {
  it("a self-referencing PML4 entry read as PML4E and PDPTE: A once, then the lower levels", () => {
    // gva 0x200000 = indices (0, 0, 1, 0): PML4[0] -> the PML4 itself, read again as the PDPTE;
    // PML4[1] read as the PDE -> PT 0x103; PT[0] -> 0x200000.
    const vm = bare();
    vm.guestWrite64(0x100000, 0x100000n | PRU);
    vm.guestWrite64(0x100008, 0x103000n | PRU);
    vm.guestWrite64(0x103000, 0x200000n | PRU);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000 });
    const w0 = vcpu.walker.gpteAdWrites;
    expect(vcpu.access(0x200123, { write: true })).toEqual({ fault: false, gpa: 0x200123 });
    // Written: PML4[0] (A), PML4[1] (A), PT[0] (A|D). The second write of PML4[0] would be a
    // cmpxchg against the value read before the first one: it fails (KVM retries the walk,
    // which finds A set), so three writes in all.
    expect(vcpu.walker.gpteAdWrites - w0).toBe(3);
    expect(vm.readPhys64(0x100000)).toBe(0x100000n | PRU | A);
    expect(vm.readPhys64(0x100008)).toBe(0x103000n | PRU | A);
    expect(vm.readPhys64(0x103000)).toBe(0x200000n | PRU | A | D);
  });
});

describe("the 2007 walkers (features.guestWalker)", () => {
  const W07 = ["w07a", "w07p", "w07b"] as const;
  for (const flavour of W07) {
    it(`${flavour}: a not-present PDPTE register ends a PAE walk with no gpte read`, () => {
      const vm = bare({ guestWalker: flavour });
      vm.guestWrite64(0x100000 + 3 * 8, 0x102000n); // PDPTE 3: not present, address of a PD
      vm.guestWrite64(0x102000 + 3 * 8, 0x103000n | PRU);
      vm.guestWrite64(0x103000 + 3 * 8, 0x5000n | PRU);
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: 0x100000, cr4: CR4_PAE });
      const r0 = vcpu.walker.gpteReads;
      // The 2007 error code: W and U of the access (the `err:` label).
      expect(vcpu.access(0xc0603000, { write: true })).toEqual({
        fault: true,
        vector: 14,
        errorCode: 2,
      });
      expect([vcpu.walker.level, vcpu.walker.gpteReads - r0]).toEqual([3, 0]);
      expect(vm.readPhys64(0x102018)).toBe(0x103000n | PRU); // no A below
    });
    it(`${flavour}: PS ends a walk only in a PDE (no 1 GiB pages in 2.6.25)`, () => {
      const vm = bare({ guestWalker: flavour });
      const pde = tables4(vm);
      vm.guestWrite64(0x101000, 0x102000n | PRU | PS); // PDPTE with PS: still a table pointer
      pde(2, 0x103000);
      vm.guestWrite64(0x103000, 0x200000n | PRU);
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ ...LONG, cr3: 0x100000 });
      expect(vcpu.access(0x400123)).toEqual({ fault: false, gpa: 0x200123 });
      expect(vcpu.walker.level).toBe(1);
    });
    it(`${flavour}: 32-bit without CR4.PSE, PDE bit 7 is ignored (the PDE points to a PT)`, () => {
      const vm = bare({ guestWalker: flavour });
      vm.guestWrite32(0x100000 + 2 * 4, 0xc00000 | 0x87);
      vm.guestWrite32(0xc00000, 0x5000 | 7);
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: 0x100000, cr4: 0 });
      expect(vcpu.access(0x800123)).toEqual({ fault: false, gpa: 0x5123 });
      expect(vcpu.walker.level).toBe(1);
    });
    it(`${flavour}: a write through an already dirty leaf writes no gpte`, () => {
      const vm = bare({ guestWalker: flavour });
      tables4(vm)(2, 0x103000);
      vm.guestWrite64(0x100000, 0x101000n | PRU | A);
      vm.guestWrite64(0x101000, 0x102000n | PRU | A);
      vm.guestWrite64(0x102010, 0x103000n | PRU | A);
      vm.guestWrite64(0x103000, 0x200000n | PRU | A | D);
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ ...LONG, cr3: 0x100000 });
      const s0 = { ...vm.stats.toJSON() };
      expect(vcpu.access(0x400000, { write: true })).toEqual({ fault: false, gpa: 0x200000 });
      const s = vm.stats;
      expect([s.gpte_ad_writes - s0.gpte_ad_writes, s.gpte_reads - s0.gpte_reads]).toEqual([0, 4]);
      expect(vcpu.stat.gpte_d_writes_after_walk).toBe(0);
    });
    it(`${flavour}: tables in a read-only slot keep their A/D bits`, () => {
      const vm = createVm({ maxPhysAddrBits: 46, mmu: "none", features: { guestWalker: flavour } });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MiB, memorySize: MiB, flags: 0 });
      const R = 16 * MiB;
      vm.guestWrite64(R, BigInt(R + 0x1000) | PRU);
      vm.guestWrite64(R + 0x1000, BigInt(R + 0x2000) | PRU);
      vm.guestWrite64(R + 0x2010, BigInt(R + 0x3000) | PRU);
      vm.guestWrite64(R + 0x3000, 0x200000n | PRU);
      const hva = vm.memslots.get(1)!.userspaceAddr;
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: R, memorySize: 0, flags: 0 });
      // KVM_MEM_READONLY over the same host memory: the tables stay.
      vm.setUserMemoryRegion({
        slot: 1,
        guestPhysAddr: R,
        memorySize: MiB,
        flags: 2,
        userspaceAddr: hva,
      });
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ ...LONG, cr3: R });
      expect(vcpu.access(0x400000, { write: true })).toEqual({ fault: false, gpa: 0x200000 });
      expect([vm.readPhys64(R), vm.readPhys64(R + 0x3000)]).toEqual([
        BigInt(R + 0x1000) | PRU,
        0x200000n | PRU,
      ]);
      expect(vm.stats.gpte_ad_writes).toBe(0);
    });
  }
  for (const flavour of ["w07p", "w07b"] as const)
    it(`${flavour} under shadow paging, 32-bit guest: D set by the walk is a 4-byte gpte write (kvm_mmu_pte_write)`, () => {
      const vm = createVm({
        maxPhysAddrBits: 46,
        mmu: "shadow",
        features: { guestWalker: flavour },
      });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
      vm.guestWrite32(0x100000 + 1 * 4, 0x103000 | 0x27); // PDE 1: P|RW|US|A -> PT 0x103
      vm.guestWrite32(0x103000 + 5 * 4, 0x200000 | 0x27); // PTE 5: P|RW|US|A, clean
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: 0x100000, cr4: 0 });
      expect(vcpu.access(0x405000)).toEqual({ fault: false, gpa: 0x200000 });
      const s0 = { ...vm.stats.toJSON() };
      expect(vcpu.access(0x405000, { write: true })).toEqual({ fault: false, gpa: 0x200000 });
      expect(vm.readPhys32(0x103014)).toBe(0x200000 | 0x67);
      const s = vm.stats;
      // One gpte write told to the MMU, 4 bytes at the PTE: aligned for a 4-byte-gpte shadow page
      // (detect_write_misaligned), so the PT's shadow page is not zapped as flooded; the
      // read-only spte the read made is present, so zapping it flushes remote TLBs.
      expect(s.mmu_pte_write - s0.mmu_pte_write).toBe(1);
      expect(s.mmu_flooded - s0.mmu_flooded).toBe(0);
      expect(s.remote_tlb_flush_requests - s0.remote_tlb_flush_requests).toBe(1);
    });
});

describe("FNAME(page_fault): the walker's tracepoints fire only while tracing", () => {
  it("no kvm_mmu_pagetable_walk counted with tracing off; one per fault with it on", () => {
    const vm = createVm({ maxPhysAddrBits: 46, mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
    tables4(vm)(2, 0x103000);
    vm.guestWrite64(0x103000, 0x200000n | PRU);
    vm.guestWrite64(0x103008, 0x201000n | PRU);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...LONG, cr3: 0x100000 });
    expect(vcpu.access(0x400000)).toEqual({ fault: false, gpa: 0x200000 });
    expect(vm.tracepointCounts("kvmmmu").kvm_mmu_pagetable_walk).toBe(0);
    vm.startTrace(100);
    expect(vcpu.access(0x401000)).toEqual({ fault: false, gpa: 0x201000 });
    const names = vm.stopTrace().events.map((e) => e.name);
    expect(names.filter((n) => n === "kvm_mmu_pagetable_walk")).toHaveLength(1);
    expect(names.filter((n) => n === "kvm_mmu_paging_element")).toHaveLength(4);
    expect(vm.tracepointCounts("kvmmmu").kvm_mmu_pagetable_walk).toBe(1);
  });
});
