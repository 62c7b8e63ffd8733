/**
 * kvm_main.c's dirty-log section at the points a StrykerJS mutant of it broke while the other
 * dirty-log tests still passed: which pages `mark_page_dirty_in_slot` records and counts, the
 * ring's RESET against a slot that changed since the push (`kvm_reset_dirty_gfn`), the u64 range
 * of KVM_ENABLE_CAP's argument, the flush reasons the trace shows, and refusals that name what
 * was wrong. Expected values come from the kernel's rules, written out here.
 */
import { describe, expect, it } from "vitest";
import { createVm, InvalidArgumentError } from "../src";
import { flushReasons } from "./flush-reasons";

const PAGE = 4096;
const LOG = 1; // KVM_MEM_LOG_DIRTY_PAGES
const BASE = 0x100000;
const P = 1n;
const RW = 2n;
const US = 4n;
const PRU = P | RW | US;

/** The InvalidArgumentError `fn` throws. */
function refusal(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (e) {
    if (e instanceof InvalidArgumentError) return e;
    throw e;
  }
  throw new Error("accepted");
}

/** Set bits of a dirty bitmap, as page numbers. */
function pages(bm: Uint32Array): number[] {
  const out: number[] = [];
  bm.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if ((w >>> b) & 1) out.push(i * 32 + b);
  });
  return out;
}

/** A TDP VM with slot 1 (64 pages, logging) at {@link BASE}, the dirty ring if `ring`, and one vCPU. */
function loggedVm(ring: boolean) {
  const vm = createVm();
  if (ring) vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096);
  vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 64 * PAGE, flags: LOG });
  return { vm, v: vm.createVcpu() };
}

/**
 * A 4-level shadow-paging guest: PML4 0x100 → PDPT 0x101 → PD 0x102 → PT 0x103 → data 0x200,
 * all in slot 0 (`flags`); gva 0x400000 maps the data page.
 */
function shadowGuest(flags: number, ring = false) {
  const vm = createVm({ mmu: "shadow" });
  if (ring) vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096);
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x400 * PAGE, flags });
  vm.guestWrite64(0x100000, 0x101000n | PRU);
  vm.guestWrite64(0x101000, 0x102000n | PRU);
  vm.guestWrite64(0x102000 + 2 * 8, 0x103000n | PRU);
  vm.guestWrite64(0x103000, 0x200000n | PRU);
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
  return { vm, vcpu };
}

describe("mark_page_dirty_in_slot", () => {
  it("the guest walk's A-bit write-back dirties each table page it changed (kvm_vcpu_mark_page_dirty)", () => {
    const { vm, vcpu } = shadowGuest(LOG);
    // The setup's kvm_write_guest stores dirtied the four tables: take them out of the log.
    expect(pages(vm.getDirtyLog(0))).toEqual([0x100, 0x101, 0x102, 0x103]);
    const marked = vm.hostAccessStat.dirtyPagesMarked;
    expect(vcpu.read(0x400000).fault).toBe(false);
    // A read sets A in the PML4E, PDPTE, PDE and PTE: their four tables, not the data page.
    expect(pages(vm.getDirtyLog(0))).toEqual([0x100, 0x101, 0x102, 0x103]);
    expect(vm.hostAccessStat.dirtyPagesMarked - marked).toBe(4);
    // A second read changes no gpte: nothing new.
    expect(vcpu.read(0x400000).fault).toBe(false);
    expect(pages(vm.getDirtyLog(0))).toEqual([]);
    expect(vm.hostAccessStat.dirtyPagesMarked - marked).toBe(4);
  });

  it("with the dirty ring, a slot without KVM_MEM_LOG_DIRTY_PAGES pushes nothing (kvm_slot_dirty_track_enabled)", () => {
    const { vm, vcpu } = shadowGuest(0, true);
    expect(vcpu.read(0x400000).fault).toBe(false); // the walk sets four A bits
    expect(vcpu.write(0x400000, 1n).fault).toBe(false); // and D in the PTE
    expect(vcpu.dirtyRing!.harvest()).toEqual([]);
    expect(vm.hostAccessStat.dirtyPagesMarked).toBe(0);
  });

  it("with the dirty ring, a kvm_write_guest made with no vCPU running is dropped (no ring to push to)", () => {
    const { vm, v } = loggedVm(true);
    expect(vm.guestWrite64(BASE + 8 * PAGE, 5n)).toBeDefined();
    expect(vm.readPhys64(BASE + 8 * PAGE)).toBe(5n);
    expect(v.dirtyRing!.harvest()).toEqual([]);
    expect(vm.hostAccessStat.dirtyPagesMarked).toBe(0);
  });

  it("counts each page newly marked: a bit that goes from 0 to 1, or an entry pushed on a ring", () => {
    const { vm, v } = loggedVm(false);
    for (const p of [3, 9, 3, 40]) v.write(BASE + p * PAGE, 1n);
    expect(vm.hostAccessStat.dirtyPagesMarked).toBe(3);
    const { vm: ring, v: r } = loggedVm(true);
    for (const p of [3, 9]) r.write(BASE + p * PAGE, 1n);
    expect(ring.hostAccessStat.dirtyPagesMarked).toBe(2);
  });
});

describe("KVM_RESET_DIRTY_RINGS (kvm_reset_dirty_gfn)", () => {
  it("a run whose highest page lies past the end of a slot that shrank since the push is ignored", () => {
    const { vm, v } = loggedVm(true);
    v.write(BASE, 1n);
    v.write(BASE + 40 * PAGE, 1n);
    expect(v.dirtyRing!.harvest()).toEqual([
      { slot: 1, offset: 0 },
      { slot: 1, offset: 40 },
    ]);
    // Slot 1 again, 40 pages: offset 40 is just past its end.
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 0, flags: 0 });
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 40 * PAGE, flags: LOG });
    v.write(BASE, 2n); // maps page 0 of the new slot writable (and pushes it, not harvested)
    // The two harvested entries coalesce into one run (offset 0, bits 0 and 40): 0 + 40 >= 40.
    expect(vm.resetDirtyRings()).toBe(2);
    // Page 0 was not write-protected again: a new write takes no fault and pushes nothing.
    v.write(BASE, 3n);
    expect(v.dirtyRing!.harvest()).toEqual([{ slot: 1, offset: 0 }]);
  });
});

describe("KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)", () => {
  it("an argument past 32 bits is refused even when its low 32 bits are allowed (args is a u64)", () => {
    const vm = createVm();
    for (const bad of [2 ** 32 + 1, 2 ** 32 + 3, 2 ** 40]) {
      const e = refusal(() => vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", bad));
      expect([e.argument, e.value, e.errno]).toEqual(["args", bad, "EINVAL"]);
    }
    expect(vm.dirtyLogInitiallySet).toBe(false);
  });
});

describe("the dirty-log ioctls' flushes and refusals", () => {
  it("GET, CLEAR and RESET each flush once, under their own reason", () => {
    const vm = createVm();
    vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", 1);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 64 * PAGE, flags: LOG });
    const v = vm.createVcpu();
    v.write(BASE, 1n);
    const get = createVm();
    get.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 64 * PAGE, flags: LOG });
    get.createVcpu().write(BASE, 1n);
    const { vm: ring, v: r } = loggedVm(true);
    r.write(BASE, 1n);
    r.dirtyRing!.harvest();
    expect(flushReasons(get, () => get.getDirtyLog(1))).toEqual(["get_dirty_log"]);
    expect(flushReasons(vm, () => vm.clearDirtyLog(1, 0, 64, new Uint32Array([1, 0])))).toEqual([
      "clear_dirty_log",
    ]);
    expect(flushReasons(ring, () => ring.resetDirtyRings())).toEqual(["reset_dirty_rings"]);
  });

  it("a frozen VM refuses every dirty-log ioctl, naming the vm", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 64 * PAGE, flags: LOG });
    Object.freeze(vm);
    for (const call of [
      () => vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", 1),
      () => vm.resetDirtyRings(),
      () => vm.getDirtyLog(1),
      () => vm.clearDirtyLog(1, 0, 64, new Uint32Array(2)),
    ])
      expect(refusal(call).argument).toBe("vm");
  });

  it("RESET without a ring and GET with one say what is missing", () => {
    const none = refusal(() => createVm().resetDirtyRings());
    expect([none.argument, none.value, none.errno]).toEqual([
      "KVM_RESET_DIRTY_RINGS",
      "no dirty ring",
      "EINVAL",
    ]);
    const vm = createVm();
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 64 * PAGE, flags: LOG });
    const get = refusal(() => vm.getDirtyLog(1));
    expect([get.argument, get.value, get.errno]).toEqual(["KVM_GET_DIRTY_LOG", 1, "ENXIO"]);
    expect(get.allowed).toMatch(/without the dirty ring.*KVM_CAP_DIRTY_LOG_RING/);
  });
});
