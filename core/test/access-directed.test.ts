/**
 * The six directed sub-tests of kvm-unit-tests x86/access.c, in every MMU mode ("none", "tdp",
 * "shadow"): hugepage corruption (`corrupt_hugepage_trigger`), the PFEC of a prefetched pte
 * (`check_pfec_on_prefetch_pte`), large-pte dirty without CR0.WP (`check_large_pte_dirty_for_nowp`),
 * SMEP and not WP (`check_smep_andnot_wp`), CR0.WP toggles (`check_toggle_cr0_wp`) and the
 * effective permissions of a shared page table reached through differently-permitted parents
 * (`check_effective_sp_permissions`).
 *
 * As in access.c the guest writes its page tables itself (through an identity map of low
 * memory, supervisor read/write) and runs INVLPG on the test addresses afterwards; the expected
 * outcomes are the x86 paging rules, written out per step.
 */
import { describe, expect, it } from "vitest";
import { createVm, type MmuMode } from "../src";

const MiB = 1024 * 1024;
const P = 1n;
const RW = 2n;
const US = 4n;
const A = 0x20n;
const D = 0x40n;
const PS = 0x80n;
const NX = 1n << 63n;
const CR0 = { PE: 1, WP: 1 << 16, PG: 0x80000000 };
const CR4_PAE = 1 << 5;
const CR4_SMEP = 1 << 20;
const EFER_LME = 1 << 8;
const EFER_NX = 1 << 11;

const idx = (gva: bigint, level: number) => Number((gva >> BigInt(12 + 9 * (level - 1))) & 511n);

/** A 4-level guest whose tables live in a pool from 16 MiB, identity-mapped below 64 MiB. */
function env(mmu: MmuMode) {
  const vm = createVm({ mmu, maxPhysAddrBits: 46 });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  let next = 16 * MiB;
  const alloc = () => {
    const p = next;
    next += 4096;
    return p;
  };
  const pml4 = alloc();
  const pdptId = alloc();
  const pdId = alloc();
  // Identity map of [0, 64 MiB): supervisor, writable, 2 MiB pages (A and D preset).
  vm.guestWrite64(pml4, BigInt(pdptId) | P | RW | A);
  vm.guestWrite64(pdptId, BigInt(pdId) | P | RW | A);
  for (let i = 0; i < 32; i++)
    vm.guestWrite64(pdId + i * 8, BigInt(i * 2 * MiB) | P | RW | PS | A | D);
  const vcpu = vm.createVcpu();
  const regs = (o: { wp?: boolean; smep?: boolean; nx?: boolean } = {}) =>
    vcpu.setSregs({
      cr0: (CR0.PE | CR0.PG | (o.wp === false ? 0 : CR0.WP)) >>> 0,
      cr3: pml4,
      cr4: CR4_PAE | (o.smep ? CR4_SMEP : 0),
      efer: EFER_LME | (o.nx === false ? 0 : EFER_NX),
      cpl: 0,
    });
  regs();
  /** The guest stores an entry (through its identity map, with CR0.WP as it is: RW pages). */
  const set = (gpa: number, v: bigint) => {
    const r = vcpu.write(gpa, v, { user: false });
    expect(r.fault || r.mmio === true).toBe(false);
  };
  /** Entry of `table` for `gva` at `level`. */
  const entry = (table: number, gva: bigint, level: number) => table + idx(gva, level) * 8;
  return { vm, vcpu, alloc, set, entry, pml4, regs };
}

const MODES: MmuMode[] = ["none", "tdp", "shadow"];

for (const mode of MODES) {
  describe(`access.c directed sub-tests, mmu ${mode}`, () => {
    it("corrupt_hugepage_trigger: one huge PDE reached from two addresses changes from RO to RW", () => {
      const t = env(mode);
      const at1 = 0xffff923400000000n;
      const at2 = 0xffffe66600000000n;
      // Both addresses share the PDPT and PD pages: their PD index (0) names the same PDE.
      const pdpt = t.alloc();
      const pd = t.alloc();
      const page = 32 * MiB;
      t.set(t.entry(t.pml4, at1, 4), BigInt(pdpt) | P | RW | US);
      t.set(t.entry(t.pml4, at2, 4), BigInt(pdpt) | P | RW | US);
      t.set(t.entry(pdpt, at1, 3), BigInt(pd) | P | RW | US);
      t.set(t.entry(pdpt, at2, 3), BigInt(pd) | P | RW | US);
      const pde = t.entry(pd, at1, 2);
      expect(t.entry(pd, at2, 2)).toBe(pde);
      t.set(pde, BigInt(page) | P | PS);
      t.vcpu.invlpg(at1);
      t.vcpu.invlpg(at2);
      expect(t.vcpu.access(at2, { user: false })).toEqual({ fault: false, gpa: page });
      t.set(pde, BigInt(page) | P | PS | RW | A);
      t.vcpu.invlpg(at1);
      t.vcpu.invlpg(at2);
      expect(t.vcpu.access(at1, { user: false })).toEqual({ fault: false, gpa: page });
      expect(t.vcpu.write(at1, 0x11n, { user: false })).toEqual({ fault: false, gpa: page });
      expect(t.vcpu.write(at2 + 8n, 0x22n, { user: false })).toEqual({
        fault: false,
        gpa: page + 8,
      });
      expect(t.vm.readPhys64(pde)).toBe(BigInt(page) | P | PS | RW | A | D);
      expect(t.vm.readPhys64(page + 8)).toBe(0x22n);
      expect(t.vm.audit()).toEqual([]);
    });

    it("check_pfec_on_prefetch_pte: a neighbour pte with a reserved bit (NX without EFER.NX) still faults RSVD", () => {
      const t = env(mode);
      t.regs({ nx: false });
      const at1 = 0xffff923406001000n;
      const at2 = 0xffff923406003000n;
      const pdpt = t.alloc();
      const pd = t.alloc();
      const pt = t.alloc();
      t.set(t.entry(t.pml4, at1, 4), BigInt(pdpt) | P | RW | US);
      t.set(t.entry(pdpt, at1, 3), BigInt(pd) | P | RW | US);
      t.set(t.entry(pd, at1, 2), BigInt(pt) | P);
      // Same PT, entries 1 and 3 (one aligned group of 8), both accessed so that a prefetch
      // would look at entry 3; entry 3 sets bit 63, reserved while EFER.NX is clear.
      t.set(t.entry(pt, at1, 1), BigInt(30 * MiB) | P | A);
      t.set(t.entry(pt, at2, 1), BigInt(30 * MiB) | P | A | NX);
      t.vcpu.invlpg(at1);
      t.vcpu.invlpg(at2);
      expect(t.vcpu.access(at1, { user: false })).toEqual({ fault: false, gpa: 30 * MiB });
      expect(t.vcpu.access(at2, { user: false })).toEqual({
        fault: true,
        vector: 14,
        errorCode: 0x9, // P | RSVD, supervisor read
      });
      expect(t.vm.audit()).toEqual([]);
    });

    it("check_large_pte_dirty_for_nowp: with CR0.WP=0 supervisor writes through read-only 2M pages set D in each PDE", () => {
      const t = env(mode);
      t.regs({ wp: false });
      const at1 = 0xffff923403000000n;
      const at2 = 0xffffe66606000000n;
      const pdpt = t.alloc();
      const pd = t.alloc();
      const page = 34 * MiB;
      t.set(t.entry(t.pml4, at1, 4), BigInt(pdpt) | P | RW | US);
      t.set(t.entry(t.pml4, at2, 4), BigInt(pdpt) | P | RW | US);
      t.set(t.entry(pdpt, at1, 3), BigInt(pd) | P | RW | US);
      t.set(t.entry(pdpt, at2, 3), BigInt(pd) | P | RW | US);
      const pde1 = t.entry(pd, at1, 2);
      const pde2 = t.entry(pd, at2, 2);
      t.set(pde1, BigInt(page) | P | PS);
      t.set(pde2, BigInt(page) | P | PS);
      t.vcpu.invlpg(at1);
      t.vcpu.invlpg(at2);
      expect(t.vcpu.access(at2, { user: false })).toEqual({ fault: false, gpa: page });
      expect(t.vm.readPhys64(pde2)).toBe(BigInt(page) | P | PS | A);
      expect(t.vcpu.write(at1, 5n, { user: false })).toEqual({ fault: false, gpa: page });
      expect(t.vm.readPhys64(pde1)).toBe(BigInt(page) | P | PS | A | D);
      expect(t.vcpu.write(at2 + 16n, 6n, { user: false })).toEqual({
        fault: false,
        gpa: page + 16,
      });
      expect(t.vm.readPhys64(pde2)).toBe(BigInt(page) | P | PS | A | D);
      expect(t.vcpu.read(at2, { user: false })).toMatchObject({ fault: false, value: 5n });
      expect(t.vm.audit()).toEqual([]);
    });

    it("check_smep_andnot_wp: a supervisor write to a read-only user page with CR0.WP=0, then a supervisor fetch takes the SMEP fault", () => {
      const t = env(mode);
      t.regs({ wp: false, smep: true });
      const gva = 0xffff923406001000n;
      const pdpt = t.alloc();
      const pd = t.alloc();
      const pt = t.alloc();
      t.set(t.entry(t.pml4, gva, 4), BigInt(pdpt) | P | RW | US);
      t.set(t.entry(pdpt, gva, 3), BigInt(pd) | P | RW | US);
      t.set(t.entry(pd, gva, 2), BigInt(pt) | P | US | A);
      t.set(t.entry(pt, gva, 1), BigInt(36 * MiB) | P | US | A);
      t.vcpu.invlpg(gva);
      expect(t.vcpu.write(gva, 0x90n, { user: false, size: 1 })).toEqual({
        fault: false,
        gpa: 36 * MiB,
      });
      expect(t.vcpu.fetch(gva, { user: false })).toEqual({
        fault: true,
        vector: 14,
        errorCode: 0x11, // P | I: SMEP
      });
      expect(t.vm.audit()).toEqual([]);
    });

    it("check_toggle_cr0_wp: supervisor writes to a read-only supervisor page follow each CR0.WP toggle", () => {
      const t = env(mode);
      const gva = 0xffff923042007000n;
      const pdpt = t.alloc();
      const pd = t.alloc();
      const pt = t.alloc();
      t.set(t.entry(t.pml4, gva, 4), BigInt(pdpt) | P | RW);
      t.set(t.entry(pdpt, gva, 3), BigInt(pd) | P | RW);
      t.set(t.entry(pd, gva, 2), BigInt(pt) | P | A);
      t.set(t.entry(pt, gva, 1), BigInt(38 * MiB) | P | A);
      t.vcpu.invlpg(gva);
      for (const wp of [false, true, false, true]) {
        t.regs({ wp });
        const r = t.vcpu.write(gva, 1n, { user: false });
        if (wp) expect(r).toEqual({ fault: true, vector: 14, errorCode: 0x3 });
        else expect(r).toEqual({ fault: false, gpa: 38 * MiB });
      }
      expect(t.vm.audit()).toEqual([]);
    });

    it("check_effective_sp_permissions: one PMD page under a writable and a read-only PUD", () => {
      const t = env(mode);
      const ptr1 = 0xffff923480000000n;
      const ptr2 = ptr1 + 2n * BigInt(MiB);
      const ptr3 = ptr1 + 1024n * BigInt(MiB);
      const ptr4 = ptr3 + 2n * BigInt(MiB);
      const pdpt = t.alloc();
      const pmd = t.alloc();
      const pte1 = t.alloc();
      const pte2 = t.alloc();
      const page1 = 40 * MiB;
      const page2 = 40 * MiB + 4096;
      t.set(t.entry(t.pml4, ptr1, 4), BigInt(pdpt) | P | RW | US | A);
      t.set(t.entry(pdpt, ptr1, 3), BigInt(pmd) | P | RW | US | A); // pud1: u w
      t.set(t.entry(pdpt, ptr3, 3), BigInt(pmd) | P | US | A); // pud2: u -
      t.set(t.entry(pmd, ptr1, 2), BigInt(pte1) | P | US | A); // pmd1: u -
      t.set(t.entry(pmd, ptr2, 2), BigInt(pte2) | P | RW | US | A); // pmd2: u w
      t.set(t.entry(pte1, ptr1, 1), BigInt(page1) | P | RW | US | A);
      t.set(t.entry(pte2, ptr2, 1), BigInt(page2) | P | RW | US | A | D);
      for (const p of [ptr1, ptr2, ptr3, ptr4]) t.vcpu.invlpg(p);
      expect(t.vcpu.access(ptr1, { user: true })).toEqual({ fault: false, gpa: page1 });
      expect(t.vcpu.access(ptr2, { user: true, write: true })).toEqual({
        fault: false,
        gpa: page2,
      });
      expect(t.vcpu.access(ptr3, { user: true })).toEqual({ fault: false, gpa: page1 });
      expect(t.vcpu.access(ptr4, { user: true, write: true })).toEqual({
        fault: true,
        vector: 14,
        errorCode: 0x7,
      });
      if (mode === "shadow") {
        // KVM keeps the PMD shadowed twice: role.access 7 under pud1, 5 (no W) under pud2.
        const roles = t.vm
          .shadowPages()
          .pages.filter((p) => p.gfn === pmd / 4096 && !p.role.invalid)
          .map((p) => p.role.access)
          .sort();
        expect(roles).toEqual([5, 7]);
      }
      expect(t.vm.audit()).toEqual([]);
    });
  });
}
