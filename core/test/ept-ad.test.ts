/**
 * EPT accessed/dirty bits on and off (`features.eptAccessDirty`, kvm_intel.eptad = EPTP bit 6).
 * Expected values from the architecture (Intel SDM, EPT A/D flags: the CPU sets EPT A on every
 * entry it uses and D on the leaf of a write only when EPTP bit 6 is set, and then its accesses
 * to guest paging structures count as writes for EPT) and from KVM (kvm_mmu_set_ept_masks:
 * without A/D, shadow_accessed_mask = shadow_dirty_mask = 0 and the root role has ad_disabled;
 * vmx hardware_setup: no PML without EPT A/D).
 */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder, InvalidArgumentError } from "../src";

const PAGE = 4096;
const GVA = 0x40000000;
const GPA = 0x2000000; // 32 MiB: data pages
const POOL = 0x100000; // guest page tables
const PAGES = 16;
const LOG = 1;

function guest(eptAccessDirty: boolean) {
  const vm = createVm({ features: { eptAccessDirty } });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * 2 ** 20, flags: 0 });
  const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: POOL, poolSize: 2 ** 20 });
  b.map(GVA, GPA, PAGES * PAGE, { writable: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...b.sregs({ nx: true }), cpl: 0 });
  // Table frames of the one walk every page takes: PML4, PDPT, PD, PT (from the builder's
  // entry addresses, i.e. the guest's own tables).
  const tableGfns = [4, 3, 2, 1].map((l) => Math.floor(b.entryAddress(GVA, l)! / PAGE));
  return { vm, b, vcpu, tableGfns };
}

const setBits = (bm: Uint32Array) => {
  const out: number[] = [];
  bm.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if ((w >>> b) & 1) out.push(i * 32 + b);
  });
  return out;
};

describe("EPT A/D bits (features.eptAccessDirty)", () => {
  for (const ad of [true, false]) {
    it(`${ad ? "on" : "off"}: the EPT leaf of a written page ${ad ? "gets A and D" : "gets neither"}, a read page's ${ad ? "A and D (make_spte)" : "nothing"}; the root role ${ad ? "has A/D" : "is ad_disabled"}`, () => {
      const { vm, vcpu } = guest(ad);
      expect(vcpu.access(GVA, { write: true }).fault).toBe(false);
      expect(vcpu.access(GVA + PAGE, { write: false }).fault).toBe(false);
      const written = vm.walkGpa(GPA).steps;
      const read = vm.walkGpa(GPA + PAGE).steps.at(-1)!.flags;
      const leafW = written.at(-1)!.flags;
      expect(leafW.includes("accessed")).toBe(ad);
      expect(leafW.includes("dirty")).toBe(ad);
      expect(read.includes("accessed")).toBe(ad);
      // make_spte grants W on a read fault of a writable slot, and with A/D it adds D with it.
      expect(read.includes("dirty")).toBe(ad);
      // Non-leaf entries: make_nonleaf_spte adds shadow_accessed_mask (0 without A/D).
      for (const s of written.slice(0, -1)) expect(s.flags.includes("accessed")).toBe(ad);
      // Every page's role (children inherit the root's ad_disabled).
      const pages = vm.shadowPages().pages;
      expect(pages.some((p) => p.root)).toBe(true);
      for (const p of pages) expect(p.role.adDisabled).toBe(!ad);
      expect(vm.audit()).toEqual([]);
    });

    it(`${ad ? "on" : "off"}: the guest walk dirties ${ad ? "every table it reads" : "only the table whose gpte gets A"} while logging`, () => {
      const { vm, b, vcpu, tableGfns } = guest(ad);
      for (let i = 0; i < PAGES; i++) vcpu.access(GVA + i * PAGE, { write: true });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * 2 ** 20, flags: LOG });
      // The guest clears A and D in page 1's PTE (a plain store into its page table).
      const pte = b.getEntry(GVA + PAGE, 1)!;
      b.setEntry(GVA + PAGE, 1, pte & ~0x60n);
      vm.getDirtyLog(0); // collect (and re-protect) what happened so far
      // A read of page 2: every gpte on the way has A already, nothing is written back.
      expect(vcpu.access(GVA + 2 * PAGE, { write: false }).fault).toBe(false);
      expect(setBits(vm.getDirtyLog(0))).toEqual(ad ? [...tableGfns].sort((x, y) => x - y) : []);
      // A read of page 1: the CPU sets A in its PTE, a write into the PT page.
      expect(vcpu.access(GVA + PAGE, { write: false }).fault).toBe(false);
      expect(b.getEntry(GVA + PAGE, 1)! & 0x60n).toBe(0x20n);
      const pt = tableGfns[3]!;
      expect(setBits(vm.getDirtyLog(0))).toEqual(ad ? [...tableGfns].sort((x, y) => x - y) : [pt]);
      expect(vm.audit()).toEqual([]);
    });
  }

  it("PML needs EPT A/D bits: refused by name, as vmx hardware_setup turns enable_pml off", () => {
    let err: unknown;
    try {
      createVm({ features: { pml: true, eptAccessDirty: false } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(String((err as Error).message)).toMatch(/features\.pml/);
    expect(String((err as Error).message)).toMatch(/eptAccessDirty/);
    expect(() => createVm({ features: { eptAccessDirty: "no" as unknown as boolean } })).toThrow(
      /eptAccessDirty/,
    );
  });
});
