/**
 * The TDP MMU's dirty-logging walks (tdp_mmu.c) on a small tree, each checked leaf by leaf with
 * the walker of mmu_internal (`walkToLastSpte`, not the tdp_iter the walks use):
 * `wrprot_gfn_range` clears W (keeps MMU-writable) on present leaves at or above its level,
 * `kvm_tdp_mmu_write_protect_gfn` clears W and MMU-writable on the leaves mapping one gfn,
 * `clear_dirty_pt_masked` clears W (or D) on the 4K leaves of the mask's set bits, and
 * `clear_dirty_gfn_range` clears D on 4K leaves. Invalid roots are skipped by all of them.
 * Bits: EPT W is bit 1, D bit 9; MMU-writable is spte bit 58 (hi-word bit 26).
 */
import { describe, expect, it } from "vitest";
import type { TdpMmu } from "../src/mmu/tdp_mmu";
import { GIB, lastSpte, PAGE, tdpVm } from "./tdp-helpers";

const W = 1 << 1;
const D = 1 << 9;
const MMU_W_HI = 1 << 26;
const HUGE_BASE = GIB / PAGE; // gfn of the THP slot: 2 MiB leaves

function setup() {
  const { vm } = tdpVm({ eagerPageSplit: false });
  const g = 4 * GIB;
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 4 * 2 ** 20,
    flags: 0,
    backing: "4k",
    userspaceAddr: g,
  });
  vm.setUserMemoryRegion({
    slot: 1,
    guestPhysAddr: GIB,
    memorySize: 4 * 2 ** 20,
    flags: 0,
    backing: "thp",
    userspaceAddr: 2 * g,
  });
  const vcpu = vm.createVcpu();
  // 4K leaves 0..99 and two 2 MiB leaves, all written: W, D and MMU-writable set.
  for (let gfn = 0; gfn < 100; gfn++) vcpu.access(gfn * PAGE, { write: true });
  for (const gfn of [HUGE_BASE, HUGE_BASE + 512]) vcpu.access(gfn * PAGE, { write: true });
  const tdp = vm.mmu!.tdp as TdpMmu;
  const leaf = (gfn: number) => {
    const l = lastSpte(vm, vcpu, gfn);
    return {
      level: l.level,
      w: (l.lo & W) !== 0,
      d: (l.lo & D) !== 0,
      mmuW: (l.hi & MMU_W_HI) !== 0,
    };
  };
  return { vm, vcpu, tdp, leaf };
}

const gfns4k = Array.from({ length: 100 }, (_, i) => i);

describe("TDP MMU dirty-log walks", () => {
  it("the tree: 4K leaves below gfn 100, 2M leaves in the THP slot, all W, D, MMU-writable", () => {
    const { leaf } = setup();
    for (const gfn of [0, 99, HUGE_BASE, HUGE_BASE + 700])
      expect(leaf(gfn)).toEqual({ level: gfn < 100 ? 1 : 2, w: true, d: true, mmuW: true });
  });

  it("wrprot_gfn_range at level 1: W cleared in [start, end), MMU-writable kept", () => {
    const { tdp, leaf } = setup();
    expect(tdp.wrprotRange(10, 20, 1)).toBe(true);
    for (const gfn of gfns4k)
      expect([gfn, leaf(gfn)]).toEqual([
        gfn,
        { level: 1, w: gfn < 10 || gfn >= 20, d: true, mmuW: true },
      ]);
    expect(tdp.wrprotRange(10, 20, 1)).toBe(false); // nothing left to change
    expect(tdp.wrprotRange(HUGE_BASE, HUGE_BASE + 1024, 1)).toBe(true); // huge leaves too
    expect(leaf(HUGE_BASE + 600).w).toBe(false);
  });

  it("wrprot_gfn_range at level 2 leaves 4K leaves alone", () => {
    const { tdp, leaf } = setup();
    expect(tdp.wrprotRange(0, 100, 2)).toBe(false);
    expect(gfns4k.every((g) => leaf(g).w)).toBe(true);
    expect(tdp.wrprotRange(HUGE_BASE, HUGE_BASE + 512, 2)).toBe(true);
    expect([leaf(HUGE_BASE).w, leaf(HUGE_BASE + 512).w]).toEqual([false, true]);
  });

  it("write_protect_gfn: W and MMU-writable off for that gfn only; again once only MMU-writable was left", () => {
    const { tdp, leaf } = setup();
    expect(tdp.writeProtectGfn(42, 1)).toBe(true);
    expect(leaf(42)).toEqual({ level: 1, w: false, d: true, mmuW: false });
    expect([leaf(41), leaf(43)].every((l) => l.w && l.mmuW)).toBe(true);
    expect(tdp.writeProtectGfn(42, 1)).toBe(false);
    tdp.wrprotRange(43, 44, 1); // W off, MMU-writable still on
    expect(tdp.writeProtectGfn(43, 1)).toBe(true);
    expect(leaf(43).mmuW).toBe(false);
    expect(tdp.writeProtectGfn(44, 2)).toBe(false); // a 4K leaf is below level 2
    expect(tdp.writeProtectGfn(HUGE_BASE + 3, 2)).toBe(true);
    expect(leaf(HUGE_BASE).mmuW).toBe(false);
  });

  it("clear_dirty_pt_masked: the set bits of both mask words, 4K leaves only; or D", () => {
    const { vm, tdp, leaf } = setup();
    // base 0: bits 0, 31 (lo word) and 32, 40, 63 (hi word).
    tdp.wrprotMasked(0, (1 | (1 << 31)) >>> 0, (1 | (1 << 8) | (1 << 31)) >>> 0);
    const cleared = new Set([0, 31, 32, 40, 63]);
    for (const gfn of gfns4k) expect([gfn, leaf(gfn).w]).toEqual([gfn, !cleared.has(gfn)]);
    tdp.wrprotMasked(64, 0, 1 << 3, D); // bit 35: gfn 99, D cleared, W kept
    expect(leaf(99)).toEqual({ level: 1, w: true, d: false, mmuW: true });
    expect(leaf(98).d).toBe(true);
    // Leaves already without W are not written again (no spte change at all).
    const epoch = vm.mmu!.store.spteEpoch;
    tdp.wrprotMasked(0, 1, 0);
    expect(vm.mmu!.store.spteEpoch).toBe(epoch);
    tdp.wrprotMasked(HUGE_BASE, 0xffffffff, 0xffffffff);
    expect(leaf(HUGE_BASE).w).toBe(true);
  });

  it("clear_dirty_gfn_range: D off on the 4K leaves of the range", () => {
    const { tdp, leaf } = setup();
    expect(tdp.clearDirtyRange(50, 60)).toBe(true);
    for (const gfn of gfns4k)
      expect([gfn, leaf(gfn).d, leaf(gfn).w]).toEqual([gfn, gfn < 50 || gfn >= 60, true]);
    expect(tdp.clearDirtyRange(50, 60)).toBe(false);
    expect(tdp.clearDirtyRange(HUGE_BASE, HUGE_BASE + 1024)).toBe(false);
    expect(leaf(HUGE_BASE).d).toBe(true);
  });

  it("tdp_iter_steps counts every step of the walks (one root, 4 levels)", () => {
    const { vm, tdp } = setup();
    expect(vm.mmu!.rootLevel).toBe(4);
    const steps = (f: () => unknown) => {
      const before = vm.stats.tdp_iter_steps;
      f();
      return vm.stats.tdp_iter_steps - before;
    };
    // A walk over n 4K entries under one L2 table visits root, L3 and L2 entries plus the n
    // leaves, one step after each visit (the last one leaves the range).
    expect(steps(() => tdp.wrprotRange(10, 20, 1))).toBe(3 + 10);
    expect(steps(() => tdp.writeProtectGfn(42, 1))).toBe(3 + 1);
    expect(steps(() => tdp.wrprotMasked(0, 1, 0))).toBe(3 + 64);
    expect(steps(() => tdp.clearDirtyRange(50, 60))).toBe(3 + 10);
  });

  it("invalid roots are skipped", () => {
    const { tdp, leaf } = setup();
    tdp.invalidateAllRoots();
    expect(tdp.wrprotRange(0, 100, 1)).toBe(false);
    expect(tdp.writeProtectGfn(5, 1)).toBe(false);
    expect(tdp.clearDirtyRange(0, 100)).toBe(false);
    tdp.wrprotMasked(0, 0xffffffff, 0xffffffff);
    expect(gfns4k.every((g) => leaf(g).w && leaf(g).d && leaf(g).mmuW)).toBe(true);
  });
});
