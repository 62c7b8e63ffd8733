/**
 * S8 — seed 2017, `possible_writable_spte_bitmap`: the cost of write protection on the legacy
 * direct MMU (4K backing, prefetch off). The guest writes one page in each of the first 100 2 MiB
 * regions (gfn 512·k, k < 100): shadow pages root + L3 + L2 + 100 PTs = 103; possibly-writable
 * entries root 1 + L3 1 + L2 100 + PT 100 = 202. Expected numbers from that geometry.
 */
import { describe, expect, it } from "vitest";
import { createVm } from "../src/vm";

const GIB = 2 ** 30;
const REGIONS = 100;
const SPS = 3 + REGIONS;
const PW = 1 + 1 + REGIONS + REGIONS;

function s8(bitmap: boolean) {
  const vm = createVm({
    features: { mmuFlavor: "legacy_direct", prefetch: false, possibleWritableBitmap: bitmap },
  });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GIB, flags: 0, backing: "4k" });
  const vcpu = vm.createVcpu();
  const writeAll = () => {
    for (let k = 0; k < REGIONS; k++)
      expect(vcpu.access(k * 512 * 4096, { write: true }).fault).toBe(false);
  };
  writeAll();
  expect(vm.stats.spt_pages_live).toBe(SPS);
  return { vm, vcpu, writeAll };
}

/** Leaves (4K) that carry W, by walking the EPT tables. */
function writableLeaves(vm: ReturnType<typeof createVm>): number {
  let n = 0;
  for (let k = 0; k < REGIONS; k++)
    if (
      vm
        .walkGpa(k * 512 * 4096)
        .steps.at(-1)!
        .flags.includes("writable")
    )
      n++;
  return n;
}

describe("S8: write-protect cost, scan vs possible-writable bitmap", () => {
  it("the bitmap holds 202 entries: root 1, L3 1, L2 100, PTs 100", () => {
    const { vm } = s8(true);
    const counts = vm.mmu!.store.pwCount;
    const total = Array.from({ length: SPS }, (_, sp) => counts[sp]!).reduce((a, b) => a + b, 0);
    expect(total).toBe(PW);
    expect(vm.audit()).toEqual([]);
  });

  it("write-protect every page, scan mode: 103 × 512 entries examined, 100 leaves (or 202 entries) changed", () => {
    let { vm } = s8(false);
    expect(vm.writeProtectAllSps({ mode: "scan" })).toEqual({
      examined: SPS * 512,
      changed: REGIONS,
      skipped: 0,
    });
    expect(writableLeaves(vm)).toBe(0);
    ({ vm } = s8(false));
    expect(vm.writeProtectAllSps({ mode: "scan", nonLeaf: true }).changed).toBe(PW);
  });

  it("the same with the bitmap: 202 entries examined, the same changes", () => {
    let { vm } = s8(true);
    expect(vm.writeProtectAllSps({ mode: "bitmap" })).toEqual({
      examined: PW,
      changed: REGIONS,
      skipped: 0,
    });
    expect(writableLeaves(vm)).toBe(0);
    expect(vm.audit()).toEqual([]);
    ({ vm } = s8(true));
    expect(vm.writeProtectAllSps({ nonLeaf: true }).changed).toBe(PW);
    expect(vm.audit()).toEqual([]);
  });

  it("the upstream rmap slot pass (kvm_mmu_slot_remove_write_access from 4K): 262,657 heads, 100 sptes", () => {
    const { vm } = s8(true);
    const b = { ...vm.stats.toJSON() };
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GIB, flags: 1, backing: "4k" });
    const s = vm.stats;
    expect(s.rmap_heads_scanned - b.rmap_heads_scanned!).toBe(GIB / 4096 + 512 + 1);
    expect(s.sptes_visited - b.sptes_visited!).toBe(REGIONS);
    expect(writableLeaves(vm)).toBe(0);
    expect(vm.audit()).toEqual([]);
  });

  it("a second pass after a dirty-log-style first pass: the leaves stay in the bitmap (MMU-writable), 202 examined, 0 changed, no flush", () => {
    const { vm } = s8(true);
    vm.writeProtectAllSps();
    const flushes = vm.stats.remote_tlb_flush_requests;
    expect(vm.writeProtectAllSps()).toEqual({ examined: PW, changed: 0, skipped: 0 });
    expect(vm.stats.remote_tlb_flush_requests).toBe(flushes);
  });

  it("a page-table-style pass after a dirty-log-style one still takes MMU-writable from the 100 leaves (W is gone already); writes are then slow faults", () => {
    for (const bitmap of [true, false]) {
      const { vm, writeAll } = s8(bitmap);
      vm.writeProtectAllSps({ mode: bitmap ? "bitmap" : "scan" });
      expect(
        vm.writeProtectAllSps({ mode: bitmap ? "bitmap" : "scan", clearMmuWritable: true }).changed,
      ).toBe(REGIONS);
      const b = { ...vm.stats.toJSON() };
      writeAll();
      // Not MMU-writable: fast_page_fault cannot make them writable; each write takes the slow
      // path.
      expect([vm.stats.pf_taken - b.pf_taken!, vm.stats.pf_fast - b.pf_fast!]).toEqual([
        REGIONS,
        0,
      ]);
      expect(vm.audit()).toEqual([]);
    }
  });

  it("scan mode leaves an MMIO spte alone (not shadow-present: its W bit is part of the EPT misconfiguration)", () => {
    const { vm, vcpu } = s8(false);
    // A gpa past the slot: an MMIO spte in a new PT.
    expect(vcpu.access(GIB + 5 * 4096, { write: false }).mmio).toBe(true);
    expect(vm.stats.pf_mmio_spte_created).toBe(1);
    expect(vm.writeProtectAllSps({ mode: "scan" }).changed).toBe(REGIONS);
    // The MMIO spte still works: the next access is a fast MMIO exit, no new spte.
    expect(vcpu.access(GIB + 5 * 4096, { write: false }).mmio).toBe(true);
    expect(vm.stats.pf_mmio_spte_created).toBe(1);
    expect(vm.audit()).toEqual([]);
  });

  it("a second pass after a page-table-style first pass (MMU-writable cleared): 102 examined, 0 changed", () => {
    const { vm } = s8(true);
    vm.writeProtectAllSps({ clearMmuWritable: true });
    // The 100 PTs now have count 0 and are skipped; nothing changes, so nothing is flushed.
    const flushes = vm.stats.remote_tlb_flush_requests;
    expect(vm.writeProtectAllSps()).toEqual({
      examined: PW - REGIONS,
      changed: 0,
      skipped: REGIONS,
    });
    expect(vm.stats.remote_tlb_flush_requests).toBe(flushes);
    expect(vm.audit()).toEqual([]);
  });

  for (const bitmap of [true, false]) {
    it(`RFC fast write-protect-all, then one write per page (${bitmap ? "bitmap" : "scan"})`, () => {
      const { vm, writeAll } = s8(bitmap);
      const b = { ...vm.stats.toJSON() };
      expect(vm.fastWriteProtectAll()).toEqual({
        examined: bitmap ? 1 : 512,
        changed: 1,
        skipped: 0,
      });
      expect(vm.stats.remote_tlb_flush_requests - b.remote_tlb_flush_requests!).toBe(1);
      const afterAll = { ...vm.stats.toJSON() };
      writeAll(); // every write faults and pushes the protection down its path
      const s = vm.stats;
      // Lazily: L3 once, L2 once, each PT once.
      const lazy = bitmap ? 1 + REGIONS + REGIONS : 512 + 512 + REGIONS * 512;
      expect(s.wp_entries_examined - afterAll.wp_entries_examined!).toBe(lazy);
      expect(s.wp_entries_examined - b.wp_entries_examined!).toBe(bitmap ? PW : SPS * 512);
      // Changed: root 1 (at wp-all) + L3 1 + L2 100 + 100 leaves.
      expect(s.wp_entries_changed - b.wp_entries_changed!).toBe(1 + 1 + REGIONS + REGIONS);
      // Each write took one fault, fixed by the fast path after the push-down.
      expect(s.pf_taken - afterAll.pf_taken!).toBe(REGIONS);
      expect(s.pf_fast - afterAll.pf_fast!).toBe(REGIONS);
      expect(writableLeaves(vm)).toBe(REGIONS);
      expect(vm.audit()).toEqual([]);
    });
  }

  it("after write-protect-all, reads do not open the path for writes: EPT rights combine across levels", () => {
    // The root entry lost W, so a write to any page is an EPT violation however the page was
    // read since (SDM: the access rights of a translation are the AND over the whole walk).
    const { vm, vcpu, writeAll } = s8(true);
    vm.fastWriteProtectAll();
    const b = vm.stats.pf_taken;
    for (let k = 0; k < REGIONS; k++)
      expect(vcpu.access(k * 512 * 4096, { write: false }).fault).toBe(false);
    expect(vm.stats.pf_taken - b).toBe(0);
    writeAll();
    expect(vm.stats.pf_taken - b).toBe(REGIONS);
    expect(vm.audit()).toEqual([]);
  });

  it("refuses the bitmap mode without the switch, and the TDP MMU", () => {
    const { vm } = s8(false);
    expect(() => vm.writeProtectAllSps({ mode: "bitmap" })).toThrow(/possibleWritableBitmap/);
    const tdp = createVm();
    expect(() => tdp.fastWriteProtectAll()).toThrow(/legacy_direct/);
  });
});
