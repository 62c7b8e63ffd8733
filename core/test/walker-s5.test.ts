import { describe, expect, it } from "vitest";
import { createVm } from "../src";

// The S5 walk: 4-level guest, PML4 gfn 0x100, PDPT 0x101, PD 0x102,
// PT 0x103, gva 0x400000 -> indices (0, 0, 2, 0) -> data gfn 0x200, all gptes P|RW|US, A=D=0.
function setup() {
  const vm = createVm({ maxPhysAddrBits: 46 });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
  const PRU = 7n;
  vm.guestWrite64(0x100000, 0x101000n | PRU);
  vm.guestWrite64(0x101000, 0x102000n | PRU);
  vm.guestWrite64(0x102000 + 2 * 8, 0x103000n | PRU);
  vm.guestWrite64(0x103000, 0x200000n | PRU);
  const vcpu = vm.createVcpu();
  // CR0 = PE|WP|PG, CR4 = PAE, EFER = LME|NXE (LMA follows)
  vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900 });
  return { vm, vcpu };
}

describe("FNAME(walk_addr_generic) — scenario S5", () => {
  it("user read: 4 reads, A set on 4 levels, no D, W removed from pte_access by protect_clean_gpte", () => {
    const { vm, vcpu } = setup();
    const r = vcpu.walk(0x400000, { user: true });
    expect(r.fault).toBe(false);
    expect(r.gpa).toBe(0x200000);
    expect(r.levels.map((l) => l.pteGpa)).toEqual([0x100000, 0x101000, 0x102010, 0x103000]);
    expect(r.levels.map((l) => l.tableGfn)).toEqual([0x100, 0x101, 0x102, 0x103]);
    expect(r.levels.every((l) => l.aSet && !l.dSet)).toBe(true);
    expect(r.pteAccess).toBe(1 | 4); // exec | user; write removed because D = 0
    expect(vm.readPhys64(0x103000)).toBe(0x200000n | 7n | 0x20n);
  });
  it("user write: D on the leaf only", () => {
    const { vm, vcpu } = setup();
    vcpu.access(0x400000, { user: true });
    const r = vcpu.walk(0x400000, { user: true, write: true });
    expect(r.fault).toBe(false);
    expect(r.levels.map((l) => l.dSet)).toEqual([false, false, false, true]);
    expect(r.levels.map((l) => l.aSet)).toEqual([false, false, false, false]);
    expect(vm.readPhys64(0x103000)).toBe(0x200000n | 7n | 0x60n);
    expect(vm.readPhys64(0x102010)).toBe(0x103000n | 7n | 0x20n);
  });
  it("not-present PT entry: error 0x4 (user read), no A/D written", () => {
    const { vm, vcpu } = setup();
    expect(vcpu.access(0x401000, { user: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x4,
    });
    expect(vm.readPhys64(0x100000)).toBe(0x101000n | 7n);
  });
  it("user write to a read-only leaf: error 0x7", () => {
    const { vm, vcpu } = setup();
    vm.guestWrite64(0x103008, 0x201000n | 5n | 0x20n); // P|US|A, no RW
    expect(vcpu.access(0x401000, { user: true, write: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x7,
    });
  });
});

describe("FNAME(walk_addr_generic) accounting — S5 gpte reads and A/D writes", () => {
  it("step 1 (user read): 4 reads, 4 A writes; step 2 (user write): 4 reads, 1 D write; failing walks write nothing", () => {
    const { vm, vcpu } = setup();
    const w = vcpu.walker;
    const delta = (fn: () => void) => {
      const r0 = w.gpteReads;
      const a0 = w.gpteAdWrites;
      fn();
      return [w.gpteReads - r0, w.gpteAdWrites - a0];
    };
    expect(delta(() => vcpu.access(0x400000, { user: true }))).toEqual([4, 4]);
    expect(delta(() => vcpu.access(0x400000, { user: true, write: true }))).toEqual([4, 1]);
    expect(delta(() => vcpu.access(0x401000, { user: true }))).toEqual([4, 0]); // PT entry not present
    vm.guestWrite64(0x103008, 0x201000n | 5n | 0x20n);
    expect(delta(() => vcpu.access(0x401000, { user: true, write: true }))).toEqual([4, 0]); // RW=0
  });
  it("A/D write-backs mark the table pages dirty when the slot logs dirty pages", () => {
    const vm = createVm({ maxPhysAddrBits: 46, mmu: "none" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
    vm.guestWrite64(0x100000, 0x101000n | 7n);
    vm.guestWrite64(0x101000, 0x102000n | 7n);
    vm.guestWrite64(0x102000 + 2 * 8, 0x103000n | 7n);
    vm.guestWrite64(0x103000, 0x200000n | 7n);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 1 });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900 });
    vcpu.access(0x400000, { user: true, write: true });
    const slot = vm.memslots.get(0)!;
    const dirty = [0x100, 0x101, 0x102, 0x103, 0x200].filter((g) => slot.testDirty(g));
    // The walker dirties the four table pages (A, and D on the PT); the data page itself is only
    // written by the guest's store, which this access does not perform.
    expect(dirty).toEqual([0x100, 0x101, 0x102, 0x103]);
  });
});
