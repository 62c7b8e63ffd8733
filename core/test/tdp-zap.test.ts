/**
 * TDP MMU zapping, splitting, MMIO sptes and remote-TLB-flush accounting:
 * a flush is counted once per top-level operation that changed a translation, never for
 * faults that only add translations or for splits.
 */
import { describe, expect, it } from "vitest";
import { GuestPageTableBuilder } from "../src/guest/pgtable_builder";
import { createVm } from "../src/vm";
import {
  EPT_A as SPTE_A,
  EPT_D as SPTE_D,
  HI_MMU_WRITABLE as SPTE_HI_MMU_WRITABLE,
  EPT_W as SPTE_W,
} from "./kvm-values";
import { lastSpte } from "./tdp-helpers";

const PAGE = 4096;
const MIB = 2 ** 20;
const GIB = 2 ** 30;

function vmWith(backing: "4k" | "thp", size: number, flags = 0) {
  const vm = createVm({ features: { selfCheckGfns: true } });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: size,
    flags,
    backing,
    userspaceAddr: 8 * GIB,
  });
  const vcpu = vm.createVcpu();
  const mmu = vm.mmu!;
  return { vm, vcpu, mmu, s: vm.stats };
}

function touch(vcpu: ReturnType<typeof vmWith>["vcpu"], from: number, to: number, write = false) {
  for (let gpa = from; gpa < to; gpa += PAGE) vcpu.access(gpa, { write });
}

describe("kvm_zap_gfn_range / MMU-notifier invalidate", () => {
  it("zaps the leaves in range, keeps the tables, counts one flush; a second pass finds nothing", () => {
    const { vm, vcpu, s } = vmWith("4k", 4 * MIB);
    touch(vcpu, 0, 4 * MIB);
    const tables = s.tdp_mmu_pages;
    expect(s.pages_4k).toBe((4 * MIB) / PAGE);
    expect(vm.zapGfnRange(0, 512)).toBe(true);
    expect(s.pages_4k).toBe((4 * MIB) / PAGE - 512);
    expect(s.tdp_mmu_pages).toBe(tables); // leaf zaps leave empty tables linked
    expect(s.remote_tlb_flush_requests).toBe(1);
    expect(vm.zapGfnRange(0, 512)).toBe(false);
    expect(s.remote_tlb_flush_requests).toBe(1);
    expect(vm.mmuNotifierInvalidate(600, 700)).toBe(true);
    expect(s.pages_4k).toBe((4 * MIB) / PAGE - 512 - 100);
    expect(s.remote_tlb_flush_requests).toBe(2);
    expect(vm.audit()).toEqual([]);
    // Refault: the zapped gfns fault again, each once.
    const before = s.pf_fixed;
    touch(vcpu, 0, 4 * MIB);
    expect(s.pf_fixed - before).toBe(612);
    expect(s.remote_tlb_flush_requests).toBe(2);
  });

  it("a range partly covering a 2M leaf zaps the whole leaf", () => {
    const { vm, vcpu, s } = vmWith("thp", 4 * MIB);
    touch(vcpu, 0, 4 * MIB);
    expect(s.pages_2m).toBe(2);
    expect(vm.mmuNotifierInvalidate(511, 513)).toBe(true); // straddles both leaves
    expect(s.pages_2m).toBe(0);
    expect(s.remote_tlb_flush_requests).toBe(1);
    expect(vm.audit()).toEqual([]);
  });

  it("zapSpte: one atomic zap, one flush each", () => {
    const { vm, vcpu, s } = vmWith("4k", 2 * MIB);
    touch(vcpu, 0, 2 * MIB);
    expect(vm.zapSpte(7)).toBe(1);
    expect(vm.zapSpte(8)).toBe(1);
    expect(vm.zapSpte(7)).toBe(0);
    expect(s.pages_4k).toBe(510);
    expect(s.remote_tlb_flush_requests).toBe(2);
  });
});

describe("memslot delete/move: kvm_mmu_zap_all_fast", () => {
  it("invalidates and zaps every root, frees all tables, counts no flush", () => {
    const { vm, vcpu, s } = vmWith("4k", 4 * MIB);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: GIB, memorySize: 2 * MIB, flags: 0 });
    touch(vcpu, 0, 4 * MIB);
    touch(vcpu, GIB, GIB + 2 * MIB);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: GIB, memorySize: 0, flags: 0 });
    expect([s.pages_4k, s.pages_2m, s.pages_1g]).toEqual([0, 0, 0]);
    expect(s.tdp_mmu_pages).toBe(0);
    // The vCPU still pins its (now empty, invalid) root until it next enters the guest.
    expect(s.spt_pages_live).toBe(1);
    expect(s.remote_tlb_flush_requests).toBe(0);
    expect(vm.audit()).toEqual([]);
    vcpu.access(0, {});
    expect(s.spt_pages_live).toBe(4); // new root + PDPT + PD + PT
    expect(s.pages_4k).toBe(1);
    expect(vm.audit()).toEqual([]);
  });

  it("a moved slot maps its memory at the new gpa", () => {
    const { vm, vcpu, s } = vmWith("4k", 2 * MIB);
    touch(vcpu, 0, 2 * MIB);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: GIB, memorySize: 2 * MIB, flags: 0 });
    expect(s.pages_4k).toBe(0);
    expect(vcpu.access(0, {})).toMatchObject({ mmio: true });
    expect(vcpu.access(GIB, {})).toEqual({ fault: false, gpa: GIB });
    expect(vm.audit()).toEqual([]);
  });
});

describe("huge leaves replacing tables and tables replacing huge leaves", () => {
  it("a 2M leaf installed over a page table frees it and flushes once (kvm_flush_remote_tlbs_gfn)", () => {
    const { vm, vcpu, s } = vmWith("thp", 2 * MIB, 1 /* LOG_DIRTY_PAGES: 4K only */);
    touch(vcpu, 0, MIB); // 256 4K leaves in one PT
    expect(s.pages_4k).toBe(256);
    const tables = s.tdp_mmu_pages;
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 0 });
    vcpu.access(MIB, {}); // not mapped yet: faults at goal level 2
    expect(s.pages_4k).toBe(0);
    expect(s.pages_2m).toBe(1);
    expect(s.tdp_mmu_pages).toBe(tables - 1);
    expect(s.remote_tlb_flush_requests).toBe(1);
    expect(vm.audit()).toEqual([]);
  });

  it("eager split off: a write to a 2M leaf in a dirty-logged slot splits it in place, no flush", () => {
    const vm = createVm({ features: { eagerPageSplit: false, selfCheckGfns: true } });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 2 * MIB,
      flags: 0,
      backing: "thp",
      userspaceAddr: 8 * GIB,
    });
    const vcpu = vm.createVcpu();
    const s = vm.stats;
    vcpu.access(0, { write: true });
    expect(s.pages_2m).toBe(1);
    // Enabling logging without eager split only removes W from the huge leaf (+1 flush).
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 1 });
    expect([s.pages_2m, s.remote_tlb_flush_requests, s.huge_splits]).toEqual([1, 1, 0]);
    const tables = s.tdp_mmu_pages;
    vcpu.access(5 * PAGE, { write: true });
    expect(s.pages_2m).toBe(0);
    expect(s.pages_4k).toBe(512);
    expect(s.huge_splits).toBe(1);
    expect(s.tdp_mmu_pages).toBe(tables + 1);
    expect(s.remote_tlb_flush_requests).toBe(1); // the split itself does not flush
    expect(s.pf_fast).toBe(0); // the fast path refuses a huge leaf while logging
    // Only the written page became writable; its siblings inherited the protected leaf.
    expect(lastSpte(vm, vcpu, 5).lo & SPTE_W).toBe(SPTE_W);
    const six = lastSpte(vm, vcpu, 6);
    expect(six.lo & SPTE_W).toBe(0);
    expect(six.hi & SPTE_HI_MMU_WRITABLE).toBe(SPTE_HI_MMU_WRITABLE);
    expect(vm.memslots.get(0)!.testDirty(5)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

describe("fast page fault, A/D and spurious faults", () => {
  it("a write to an MMU-writable but write-protected leaf is fixed by the fast path", () => {
    const { vm, vcpu, mmu, s } = vmWith("4k", 2 * MIB, 1);
    vcpu.access(0, {});
    const leaf = lastSpte(vm, vcpu, 0);
    mmu.store.spt[leaf.sp]![leaf.idx * 2]! &= ~SPTE_W; // dirty-log style: W only
    const taken = s.pf_taken;
    vcpu.access(0, { write: true });
    expect(s.pf_taken - taken).toBe(1);
    expect(s.pf_fast).toBe(1);
    expect(s.pf_fixed).toBe(2);
    expect(vm.memslots.get(0)!.testDirty(0)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });

  it("a fault on a leaf that already allows the access is spurious and changes nothing", () => {
    // Two vCPUs fault on the same gfn; the second handler finds the first one's leaf.
    const { vm, vcpu, mmu, s } = vmWith("4k", 2 * MIB);
    vcpu.access(3 * PAGE, { write: true });
    const leaf = lastSpte(vm, vcpu, 3);
    const before = [leaf.lo, leaf.hi];
    const taken = s.pf_taken;
    const RET_PF_SPURIOUS = 5;
    expect(mmu.pageFault(vcpu.mmu, 0, 3 * PAGE, 0x4 /* read: USER */)).toBe(RET_PF_SPURIOUS);
    expect(mmu.pageFault(vcpu.mmu, 0, 3 * PAGE, 0x2 /* write */)).toBe(RET_PF_SPURIOUS);
    expect([s.pf_taken - taken, s.pf_spurious, s.pf_fixed]).toEqual([2, 2, 1]);
    const after = lastSpte(vm, vcpu, 3);
    expect([after.lo, after.hi]).toEqual(before);
    expect(vm.audit()).toEqual([]);
  });

  it("the CPU sets EPT A on access and D on write", () => {
    const { vm, vcpu, mmu } = vmWith("4k", 2 * MIB);
    vcpu.access(PAGE, {});
    const leaf = lastSpte(vm, vcpu, 1);
    const idx = leaf.idx;
    const spt = mmu.store.spt[leaf.sp]!;
    // make_spte gives a writable leaf A and D already; clear them to watch the CPU set them.
    spt[idx * 2]! &= ~(SPTE_A | SPTE_D);
    vcpu.access(PAGE, {});
    expect(spt[idx * 2]! & (SPTE_A | SPTE_D)).toBe(SPTE_A);
    vcpu.access(PAGE, { write: true });
    expect(spt[idx * 2]! & (SPTE_A | SPTE_D)).toBe(SPTE_A | SPTE_D);
  });
});

describe("MMIO sptes and read-only slots", () => {
  it("no memslot: MMIO spte created once, then emulated without pf_taken; rebuilt after a slot change", () => {
    const vm = createVm();
    const vcpu = vm.createVcpu();
    const s = vm.stats;
    expect(vcpu.access(GIB, {})).toEqual({ fault: false, gpa: GIB, mmio: true });
    expect([s.pf_taken, s.pf_emulate, s.pf_mmio_spte_created]).toEqual([1, 1, 1]);
    expect(vcpu.access(GIB, {})).toMatchObject({ mmio: true });
    expect([s.pf_taken, s.pf_emulate, s.pf_mmio_spte_created]).toEqual([1, 1, 1]);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: GIB, memorySize: 2 * MIB, flags: 0 });
    // The stale-generation MMIO spte sends the access down the slow path, which maps RAM.
    expect(vcpu.access(GIB, {})).toEqual({ fault: false, gpa: GIB });
    expect([s.pf_taken, s.pf_fixed, s.pages_4k]).toEqual([2, 1, 1]);
    expect(vm.audit()).toEqual([]);
  });

  it("read-only slot: reads map a read-only leaf, writes exit to userspace (emulate)", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 2 });
    const vcpu = vm.createVcpu();
    const s = vm.stats;
    expect(vcpu.access(0, {})).toEqual({ fault: false, gpa: 0 });
    expect(vcpu.access(0, { write: true })).toMatchObject({ mmio: true });
    expect([s.pf_taken, s.pf_fixed, s.pf_emulate, s.pf_fast]).toEqual([2, 1, 1, 0]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("guest page tables in a read-only slot", () => {
  it("the walker's table reads map read-only (no MMIO exit), data writes there exit", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 2 });
    const vcpu = vm.createVcpu();
    vcpu.enterGuest();
    // A walker table access is a write with final = false (PFERR_GUEST_PAGE).
    const hvfn = vcpu.cpu.stage2(3, 0x2, false);
    expect(hvfn).toBeGreaterThan(0);
    expect(vcpu.cpu.writable).toBe(false);
    expect(vcpu.cpu.stage2(3, 0x2, true)).toBe(-1);
    expect(vm.audit()).toEqual([]);
  });
});

describe("bad input to the zap entry points", () => {
  it("names the bad value and leaves every mapping in place", () => {
    const { vm, vcpu, s } = vmWith("4k", 2 * MIB);
    touch(vcpu, 0, 2 * MIB);
    const before = JSON.stringify(s);
    expect(() => vm.zapGfnRange(-1, 5)).toThrow(/invalid start: -1/);
    expect(() => vm.zapGfnRange(10, 10)).toThrow(/invalid end: 10/);
    expect(() => vm.zapGfnRange(0.5, 10)).toThrow(/invalid start/);
    expect(() => vm.mmuNotifierInvalidate(0, 2 ** 40)).toThrow(/invalid end/); // beyond MAXPHYADDR 46
    expect(() => vm.zapSpte(Number.NaN)).toThrow(/invalid gfn: NaN/);
    expect(() => vm.setNrMmuPages(10)).toThrow(/invalid nrMmuPages: 10/);
    expect(() => createVm({ features: { tdpLevels: 3 as 4 } })).toThrow(/features.tdpLevels/);
    expect(() => createVm({ features: { mmuFlavor: "shadow" as "tdp_mmu" } })).toThrow(
      /features.mmuFlavor/,
    );
    expect(() => createVm({ maxPhysAddrBits: 52, features: { tdpLevels: 4 } })).toThrow(
      /tdpLevels/,
    );
    expect(() => createVm({ mmu: "ept" as "tdp" })).toThrow(/invalid mmu/);
    expect(JSON.stringify(s)).toBe(before);
    expect(vm.audit()).toEqual([]);
  });
});

describe("TDP level follows guest MAXPHYADDR (kvm_mmu_get_tdp_level)", () => {
  it("4-level up to 48 bits, 5-level above", () => {
    expect(createVm({ maxPhysAddrBits: 48 }).mmu!.rootLevel).toBe(4);
    const vm = createVm({ maxPhysAddrBits: 52 });
    expect(vm.mmu!.rootLevel).toBe(5);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 2 ** 50, memorySize: 2 * MIB, flags: 0 });
    const vcpu = vm.createVcpu();
    // Non-paging guests cannot reach 2^50: map it through the stage 2 directly.
    vcpu.enterGuest();
    expect(vcpu.cpu.stage2(2 ** 38 + 1, 0, true)).toBeGreaterThan(0);
    expect(vm.walkGpa(2 ** 50 + PAGE).steps.map((x) => x.level)).toEqual([5, 4, 3, 2, 1]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("MMU notifier on host virtual addresses (kvm_handle_hva_range)", () => {
  for (const flavor of ["tdp_mmu", "legacy_direct"] as const) {
    it(`${flavor}: zaps the gfns backed by the hva range in every overlapping slot, one flush`, () => {
      const vm = createVm({ features: { mmuFlavor: flavor, prefetch: false } });
      // Two slots backed by adjacent host ranges: the hva range straddles both.
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 2 * MIB,
        flags: 0,
        userspaceAddr: 8 * GIB,
      });
      vm.setUserMemoryRegion({
        slot: 1,
        guestPhysAddr: GIB,
        memorySize: 2 * MIB,
        flags: 0,
        userspaceAddr: 8 * GIB + 2 * MIB,
      });
      const vcpu = vm.createVcpu();
      touch(vcpu, 0, 2 * MIB);
      touch(vcpu, GIB, GIB + 2 * MIB);
      const s = vm.stats;
      // Last 3 pages of slot 0 and first 2 pages of slot 1 (a partial page counts whole).
      expect(
        vm.mmuNotifierInvalidateHva(8 * GIB + 2 * MIB - 3 * PAGE, 8 * GIB + 2 * MIB + PAGE + 1),
      ).toBe(true);
      expect(s.pages_4k).toBe(1024 - 5);
      expect(s.remote_tlb_flush_requests).toBe(1);
      expect(vm.mmuNotifierInvalidateHva(0, PAGE)).toBe(false); // no slot there
      expect(s.remote_tlb_flush_requests).toBe(1);
      expect(() => vm.mmuNotifierInvalidateHva(5, 5)).toThrow(/hvaEnd/);
      expect(vm.audit()).toEqual([]);
    });
  }
});

describe("the CPU's cached guest-table frames follow the EPT root", () => {
  it("after kvm_mmu_zap_all_fast the next access faults in every frame it touches again", () => {
    const vm = createVm({});
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MIB, flags: 0 });
    const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MIB, poolSize: MIB });
    b.map(0x40000000, 32 * MIB, 4 * PAGE, { writable: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...b.sregs({ nx: true }), cpl: 0 });
    // A 4-level walk reads 4 table frames, then the data page: 5 EPT violations on an empty root.
    let before = vm.stats.pf_taken;
    expect(vcpu.access(0x40000000, { write: true }).fault).toBe(false);
    expect(vm.stats.pf_taken - before).toBe(5);
    before = vm.stats.pf_taken;
    expect(vcpu.access(0x40000000, { write: true }).fault).toBe(false);
    expect(vm.stats.pf_taken - before).toBe(0);
    // New, empty root: the same five frames fault again.
    vm.zapAllFast();
    before = vm.stats.pf_taken;
    expect(vcpu.access(0x40000000, { write: true }).fault).toBe(false);
    expect(vm.stats.pf_taken - before).toBe(5);
    expect(vm.audit()).toEqual([]);
  });
});
