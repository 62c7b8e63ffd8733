/**
 * Fidelity checks for five behaviours that were fixed recently. Each block names the kernel
 * function whose rule it checks; every expected value is derived in the test from that rule
 * (the comment next to it gives the count), not copied from a run of the simulator.
 *
 *  1. kvm_write_guest (virt/kvm/kvm_main.c): host writes involve no vCPU and no MMU.
 *  2. Under TDP, #PF and INVLPG are not intercepted (vmx.c: no #PF / INVLPG exiting with EPT).
 *  3. kvm_flush_remote_tlbs / kvm_make_all_cpus_request: requests vs. kicks, and tlb_flush.
 *  4. kvm_swap_active_memslots / kvm_invalidate_memslot: the memslot generation, and the MMIO
 *     sptes of handle_mmio_page_fault that it makes stale.
 *  5. The CPU's EPT walk uses the sptes as KVM last set them (write protection for dirty logging,
 *     zaps, MMU-notifier invalidations), however often it used the old ones.
 */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder, type Vcpu, type Vm } from "../src";

const PAGE = 4096;
const MIB = 2 ** 20;
const GIB = 2 ** 30;

/** KVM_MEM_* flags (include/uapi/linux/kvm.h). */
const KVM_MEM_LOG_DIRTY_PAGES = 1;
const KVM_MEM_READONLY = 2;

/** PFERR_* bits of the x86 #PF error code (x86 architecture). */
const PFERR_PRESENT = 1;
const PFERR_WRITE = 2;
const PFERR_USER = 4;
const PFERR_RSVD = 8;

/** Guest PTE bits. */
const PTE_P = 1n;
const PTE_RW = 2n;
const PTE_US = 4n;

/**
 * The guest layout used by several tests: a 4-level guest whose tables come from a pool at
 * 0x100000 (gfn 0x100...), mapping gva 0x400000 → gpa 0x2000000 (4K, user, writable).
 * The builder allocates the PML4 first (gfn 0x100), then PDPT, PD, PT (gfns 0x101..0x103) as
 * map() descends; gva 0x400000 has indices PML4 0, PDPT 0, PD 2, PT 0.
 */
const POOL = 0x100000;
const GVA = 0x400000;
const DATA_GPA = 0x2000000;
const TABLE_GFNS = [0x100, 0x101, 0x102, 0x103];

function buildGuest(vm: Vm): GuestPageTableBuilder {
  const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: POOL, poolSize: MIB });
  tables.map(GVA, DATA_GPA, PAGE, { user: true });
  return tables;
}

function snapshotStats(vm: Vm) {
  return { ...vm.stats.toJSON() };
}

// ---------------------------------------------------------------------------------------------
// 1. kvm_write_guest
// ---------------------------------------------------------------------------------------------

describe("kvm_write_guest (kvm_main.c): host writes take no vCPU path", () => {
  it("guestWrite64/32 and the page-table builder: no EPT violation, no root, no pf_*, no spte", () => {
    const vm = createVm(); // TDP MMU under EPT
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MIB, flags: 0 });
    expect(vm.guestWrite64(0x5000, 0x1122334455667788n)).toEqual({ mmio: false });
    expect(vm.guestWrite32(0x6004, 0xdeadbeef)).toEqual({ mmio: false });
    buildGuest(vm);
    // The bytes are in guest memory (the slot's host mapping).
    expect(vm.readPhys64(0x5000)).toBe(0x1122334455667788n);
    expect(vm.readPhys32(0x6004)).toBe(0xdeadbeef);
    const s = vm.stats;
    // No vCPU ran: kvm_mmu_page_fault was never entered, so nothing was taken or fixed …
    expect(s.pf_taken).toBe(0);
    expect(s.pf_fixed).toBe(0);
    expect(s.pf_emulate).toBe(0);
    // … no spte and no shadow page exist (not even a root: only kvm_mmu_load allocates one) …
    expect(s.pages_4k + s.pages_2m + s.pages_1g).toBe(0);
    expect(s.spt_pages_live).toBe(0);
    expect(vm.mmu!.roots.length).toBe(0);
    // … and nothing needed flushing.
    expect(s.remote_tlb_flush_requests).toBe(0);
    expect(vm.audit()).toEqual([]);
  });

  it("mark_page_dirty_in_slot: a host write sets the gfn's bit when the slot logs dirty pages", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 64 * MIB,
      flags: KVM_MEM_LOG_DIRTY_PAGES,
    });
    const slot = vm.memslots.get(0)!;
    vm.guestWrite64(0x5008, 1n); // gfn 5
    vm.guestWrite32(0x7ffc, 2); // gfn 7 (last word of the page)
    // The builder writes one entry into each of the four tables it creates (PML4[0], PDPT[0],
    // PD[2], PT[0]); the fresh pool pages are zero already, so zeroing stores nothing. The data
    // page itself is only referenced, never written.
    buildGuest(vm);
    const expected = new Set([5, 7, ...TABLE_GFNS]);
    for (let gfn = 0; gfn < 0x2100; gfn++) expect(slot.testDirty(gfn)).toBe(expected.has(gfn));
    // Still no MMU activity at all.
    expect(vm.stats.pf_taken).toBe(0);
    expect(vm.stats.spt_pages_live).toBe(0);
  });

  it("no memslot, or a KVM_MEM_READONLY slot: { mmio: true } and nothing stored", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 0 });
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 16 * MIB,
      memorySize: 2 * MIB,
      flags: KVM_MEM_READONLY,
    });
    const frames = vm.memory.framesAllocated;
    // gpa 8 MiB lies between the slots: __kvm_write_guest_page finds no hva (-EFAULT).
    expect(vm.guestWrite64(8 * MIB, 0x1234n)).toEqual({ mmio: true });
    expect(vm.guestWrite32(8 * MIB + 4, 0x1234)).toEqual({ mmio: true });
    // A read-only slot has no writable hva (__gfn_to_hva_many with write: KVM_HVA_ERR_RO_BAD).
    expect(vm.guestWrite64(16 * MIB + 0x1000, 0x1234n)).toEqual({ mmio: true });
    expect(vm.guestWrite32(16 * MIB + 0x2000, 0x1234)).toEqual({ mmio: true });
    // Nothing stored: no host frame was populated, and the read-only page still reads 0.
    expect(vm.memory.framesAllocated).toBe(frames);
    expect(vm.readPhys64(16 * MIB + 0x1000)).toBe(0n);
    expect(vm.readPhys32(16 * MIB + 0x2000)).toBe(0);
    expect(vm.stats.pf_taken).toBe(0);
  });

  it("kvm_mmu_zap_all_fast on slot delete after builder + one access (legacy rmap MMU)", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MIB, flags: 0 });
    const tables = buildGuest(vm);
    // Host writes pin no root and allocate no shadow page.
    expect(vm.mmu!.roots.length).toBe(0);
    expect(vm.stats.n_used_mmu_pages).toBe(0);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...tables.sregs({ nx: true }), cpl: 3 });
    expect(vcpu.access(GVA, { user: true })).toEqual({ fault: false, gpa: DATA_GPA });

    // The CPU's guest walk reads 4 tables (gfns 0x100..0x103), then the data page (gfn 0x2000):
    // 5 EPT violations, each fixed by one 4K spte (prefetch off, "4k" backing).
    let s = vm.stats;
    expect(s.pf_taken).toBe(5);
    expect(s.pf_fixed).toBe(5);
    expect(s.pages_4k).toBe(5);
    // Direct shadow pages (one per table on the paths): root (level 4) + level 3 + level 2 (all
    // 5 gfns are below 1 GiB) + 2 level-1 pages (2M regions 0 and 0x2000/512 = 16) = 5.
    const pagesBefore = 5;
    expect(s.n_used_mmu_pages).toBe(pagesBefore);
    expect(s.spt_pages_live).toBe(pagesBefore);
    // Exactly one root: the vCPU's (root_count 1).
    expect(vm.mmu!.roots).toEqual([vcpu.mmu.root]);
    expect(s.remote_tlb_flush_requests).toBe(0); // faults only added sptes

    // DELETE: kvm_invalidate_memslot → kvm_arch_flush_shadow_memslot → kvm_mmu_zap_all_fast:
    // mmu_valid_gen flips, every page becomes obsolete; kvm_zap_obsolete_pages prepares all 5
    // (mmu_shadow_zapped +5). The 4 non-root pages have root_count 0: they leave n_used and go
    // to the invalid list. The root has root_count 1 (the vCPU): it stays, counted in n_used,
    // until the vCPU handles KVM_REQ_MMU_FREE_OBSOLETE_ROOTS. kvm_mmu_commit_zap_page with a
    // non-empty list calls kvm_flush_remote_tlbs once.
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0, flags: 0 });
    s = vm.stats;
    const rootsPinned = 1;
    expect(s.n_used_mmu_pages).toBe(rootsPinned);
    expect(s.spt_pages_live).toBe(rootsPinned);
    expect(s.mmu_shadow_zapped).toBe(pagesBefore);
    expect(s.pages_4k).toBe(0); // every leaf was in a zapped level-1 page
    expect(s.remote_tlb_flush_requests).toBe(1);
    // The vCPU ran and was not paused, and the ioctl is not its CPU: the flush kicked it.
    expect(s.remote_tlb_flush).toBe(1);
    expect(vm.mmu!.roots).toEqual([vcpu.mmu.root]);
    expect(vm.mmu!.isInvalidRoot(vcpu.mmu.root)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

/**
 * The legacy-MMU delete scenario continued: the slot is re-created on the same host memory (the
 * guest tables are still there) and the vCPU makes the same access again. At its entry,
 * vcpu_enter_guest services KVM_REQ_MMU_FREE_OBSOLETE_ROOTS (kvm_mmu_free_obsolete_roots →
 * mmu_free_root_page: root_count 1 → 0 on an invalid root → kvm_mmu_prepare_zap_page, then
 * kvm_mmu_commit_zap_page with a non-empty list → one kvm_flush_remote_tlbs), then
 * kvm_mmu_reload allocates a new root and the same 5 EPT violations rebuild the same 5 pages.
 */
describe("kvm_mmu_free_obsolete_roots (mmu.c) at vcpu_enter_guest, legacy rmap MMU", () => {
  function reloadScenario() {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    const region = {
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 64 * MIB,
      flags: 0,
      userspaceAddr: 8 * GIB,
    };
    vm.setUserMemoryRegion(region);
    const tables = buildGuest(vm);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...tables.sregs({ nx: true }), cpl: 3 });
    vcpu.access(GVA, { user: true });
    vm.setUserMemoryRegion({ ...region, memorySize: 0 });
    vm.setUserMemoryRegion(region);
    const before = { ...vm.stats.toJSON() };
    const tlb0 = vcpu.stat.tlb_flush;
    expect(vcpu.access(GVA, { user: true })).toEqual({ fault: false, gpa: DATA_GPA });
    const s = vm.stats;
    return {
      vm,
      vcpu,
      requests: s.remote_tlb_flush_requests - before.remote_tlb_flush_requests!,
      kicks: s.remote_tlb_flush - before.remote_tlb_flush!,
      tlbFlush: vcpu.stat.tlb_flush - tlb0,
    };
  }

  it("the pinned obsolete root is freed when its vCPU reloads: one flush request, 5 pages again", () => {
    const { vm, vcpu, requests } = reloadScenario();
    expect(requests).toBe(1);
    expect(vm.mmu!.roots).toEqual([vcpu.mmu.root]);
    expect(vm.mmu!.isInvalidRoot(vcpu.mmu.root)).toBe(false);
    expect(vm.stats.n_used_mmu_pages).toBe(5);
    expect(vm.stats.spt_pages_live).toBe(5);
    expect(vm.audit()).toEqual([]);
  });

  // That flush is made by the only vCPU itself, in vcpu_enter_guest before it sets
  // vcpu->mode = IN_GUEST_MODE: kvm_make_vcpu_request skips the current CPU and
  // kvm_request_needs_ipi is false (OUTSIDE_GUEST_MODE) → no IPI → remote_tlb_flush +0.
  it("kvm_flush_remote_tlbs from the vCPU's own request handling kicks nobody (+0)", () => {
    expect(reloadScenario().kicks).toBe(0);
  });

  // In vcpu_enter_guest, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS is serviced before KVM_REQ_TLB_FLUSH is
  // checked, so the request that flush sets on the vCPU itself merges with the one pending from
  // the delete: one kvm_vcpu_flush_tlb_all → +1.
  it("the KVM_REQ_TLB_FLUSH raised while servicing requests is serviced in the same entry (+1)", () => {
    expect(reloadScenario().tlbFlush).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. #PF and INVLPG are not intercepted under EPT
// ---------------------------------------------------------------------------------------------

describe("vmx.c with EPT: #PF and INVLPG are not intercepted (pf_guest, invlpg stay 0)", () => {
  for (const mmu of ["tdp", "none"] as const) {
    it(`mmu "${mmu}": guest walk faults are the CPU's; KVM counts no pf_guest / invlpg`, () => {
      const vm = createVm({ mmu });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MIB, flags: 0 });
      const tables = buildGuest(vm);
      // gva 0x402000: a read-only user page (PT[2]); gva 0x403000: a PTE with bit 51 set, above
      // MAXPHYADDR 46 → reserved. gva 0x401000 (PT[1]) stays not present.
      tables.map(GVA + 2 * PAGE, DATA_GPA + 2 * PAGE, PAGE, { user: true, writable: false });
      tables.setEntry(
        GVA + 3 * PAGE,
        1,
        BigInt(DATA_GPA + 3 * PAGE) | PTE_P | PTE_RW | PTE_US | (1n << 51n),
      );
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ ...tables.sregs({ nx: true }), cpl: 3 });
      // Warm up: the walk's tables and the data page are mapped by EPT (under TDP).
      expect(vcpu.access(GVA, { user: true })).toEqual({ fault: false, gpa: DATA_GPA });
      const taken = vm.stats.pf_taken;

      // Not present at the PT level: error code U (0x4), a read.
      expect(vcpu.access(GVA + PAGE, { user: true })).toEqual({
        fault: true,
        vector: 14,
        errorCode: PFERR_USER,
      });
      // User write to a read-only page with CR0.WP: P|W|U (0x7).
      expect(vcpu.access(GVA + 2 * PAGE, { user: true, write: true })).toEqual({
        fault: true,
        vector: 14,
        errorCode: PFERR_PRESENT | PFERR_WRITE | PFERR_USER,
      });
      // Reserved bit in a present PTE: P|U|RSVD (0xd).
      expect(vcpu.access(GVA + 3 * PAGE, { user: true })).toEqual({
        fault: true,
        vector: 14,
        errorCode: PFERR_PRESENT | PFERR_USER | PFERR_RSVD,
      });
      vcpu.invlpg(GVA);
      vcpu.invlpg(GVA + PAGE);

      // KVM saw none of it: no #PF injected, no INVLPG emulated, and (same tables, already in
      // EPT) not even an EPT violation.
      expect(vcpu.stat.pf_guest).toBe(0);
      expect(vcpu.stat.invlpg).toBe(0);
      expect(vm.stats.pf_guest).toBe(0);
      expect(vm.stats.invlpg).toBe(0);
      expect(vm.stats.pf_taken - taken).toBe(0);
      // The simulator's own walk counters see the 3 faulting walks, one of each kind.
      expect(vcpu.stat.walk_faults).toBe(3);
      expect(vcpu.stat.walk_not_present).toBe(1);
      expect(vcpu.stat.walk_access_error).toBe(1);
      expect(vcpu.stat.walk_rsvd).toBe(1);
      expect(vm.stats.walk_not_present).toBe(1);
      expect(vm.stats.walk_access_error).toBe(1);
      if (mmu === "none") expect(vm.stats.pf_taken).toBe(0); // no KVM MMU at all
      expect(vm.audit()).toEqual([]);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// 3. kvm_flush_remote_tlbs
// ---------------------------------------------------------------------------------------------

function flushDelta(vm: Vm, fn: () => void): [number, number] {
  const r0 = vm.stats.remote_tlb_flush_requests;
  const k0 = vm.stats.remote_tlb_flush;
  fn();
  return [vm.stats.remote_tlb_flush_requests - r0, vm.stats.remote_tlb_flush - k0];
}

/** A TDP VM with a 4 MiB "4k" slot at gpa 0 (paging off: gva = gpa). */
function flushVm(features: Record<string, unknown> = {}) {
  const vm = createVm({ features });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 4 * MIB, flags: 0 });
  return vm;
}

describe("kvm_flush_remote_tlbs (kvm_main.c): requests count calls, remote_tlb_flush counts kicks", () => {
  it("(a) ioctl flush, no vCPU ever ran: +1 request, no kick", () => {
    const vm = flushVm();
    vm.createVcpu(); // exists, never entered the guest (OUTSIDE_GUEST_MODE)
    // kvm_mmu_slot_apply_flags flushes unconditionally when logging is turned on.
    expect(
      flushDelta(vm, () =>
        vm.setUserMemoryRegion({
          slot: 0,
          guestPhysAddr: 0,
          memorySize: 4 * MIB,
          flags: KVM_MEM_LOG_DIRTY_PAGES,
        }),
      ),
    ).toEqual([1, 0]);
  });

  it("(b) after a vCPU ran: +1/+1; (c) after it was paused: +1/+0", () => {
    const vm = flushVm();
    const vcpu = vm.createVcpu();
    vcpu.access(0x1000, {}); // maps gfn 1; the vCPU is now in guest mode
    vcpu.access(0x2000, {}); // maps gfn 2
    // kvm_zap_gfn_range over a mapped page zaps a leaf → one flush; the ioctl's CPU is not the
    // vCPU's, and the vCPU is in guest mode → an IPI.
    expect(flushDelta(vm, () => vm.zapGfnRange(1, 2))).toEqual([1, 1]);
    vcpu.pause(); // OUTSIDE_GUEST_MODE: kvm_request_needs_ipi is false
    expect(flushDelta(vm, () => vm.zapGfnRange(2, 3))).toEqual([1, 0]);
    // Running again puts it back in guest mode: kicked again.
    vcpu.access(0x3000, {});
    expect(flushDelta(vm, () => vm.zapGfnRange(3, 4))).toEqual([1, 1]);
  });

  it("(b') dirty-logging enable after a vCPU ran: +1/+1", () => {
    const vm = flushVm();
    const vcpu = vm.createVcpu();
    vcpu.access(0x1000, {});
    expect(
      flushDelta(vm, () =>
        vm.setUserMemoryRegion({
          slot: 0,
          guestPhysAddr: 0,
          memorySize: 4 * MIB,
          flags: KVM_MEM_LOG_DIRTY_PAGES,
        }),
      ),
    ).toEqual([1, 1]);
  });

  /**
   * Legacy rmap MMU, a THP-backed slot (hva 1 GiB-aligned so 2M host pages line up): a read maps
   * a 2M leaf. Turning on dirty logging write-protects it (levels 4K..1G). A write in that 2M
   * region: fast_page_fault refuses to make a huge spte writable in a logged slot; the slow path
   * (kvm_mmu_hugepage_adjust: logging → 4K) walks to level 1, kvm_mmu_get_child_sp finds a large
   * spte, __link_shadow_page → drop_large_spte(flush=true) → one kvm_flush_remote_tlbs from the
   * vCPU's own fault. The new 4K leaf was not present before: no further flush.
   */
  function hugeLeafVm() {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    const region = {
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * MIB,
      flags: 0,
      backing: "thp" as const,
      userspaceAddr: 4 * GIB,
    };
    vm.setUserMemoryRegion(region);
    const v0 = vm.createVcpu();
    v0.access(0, {});
    expect(vm.stats.pages_2m).toBe(1);
    vm.setUserMemoryRegion({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    return vm;
  }

  it("(d) drop_large_spte from the vCPU's own fault, only that vCPU: +1/+0", () => {
    const vm = hugeLeafVm();
    const v0 = vm.vcpus[0]!;
    expect(flushDelta(vm, () => v0.access(0x1000, { write: true }))).toEqual([1, 0]);
    expect(vm.stats.pages_2m).toBe(0);
    expect(vm.stats.pages_4k).toBe(1);
    expect(vm.audit()).toEqual([]);
  });

  it("(d) drop_large_spte with a second vCPU that ran and is not paused: +1/+1", () => {
    const vm = hugeLeafVm();
    const v0 = vm.vcpus[0]!;
    const v1 = vm.createVcpu();
    v1.access(3 * MIB, {}); // the other 2M region: v1 is in guest mode
    expect(flushDelta(vm, () => v0.access(0x1000, { write: true }))).toEqual([1, 1]);
    // A second 4K write in the same 2M region: the level-1 table is linked now and the new 4K
    // spte replaces nothing → no flush at all.
    expect(flushDelta(vm, () => v0.access(0x2000, { write: true }))).toEqual([0, 0]);
  });

  /**
   * TDP MMU: kvm_tdp_mmu_map installs a 2M leaf where a (present) page table is; the old
   * translations below must go: kvm_flush_remote_tlbs_gfn → one kvm_flush_remote_tlbs.
   */
  it("(d, TDP MMU) huge leaf installed over a table from the vCPU's own fault: +1/+0, then +1/+1", () => {
    for (const second of [false, true]) {
      const vm = createVm({ features: { collapseOnLogDisable: "none" } });
      const region = {
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 4 * MIB,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
        backing: "thp" as const,
        userspaceAddr: 4 * GIB,
      };
      vm.setUserMemoryRegion(region);
      const v0 = vm.createVcpu();
      v0.access(0, {}); // logging: a 4K leaf under a level-1 table
      expect(vm.stats.pages_4k).toBe(1);
      vm.setUserMemoryRegion({ ...region, flags: 0 }); // "none": the 4K mapping stays
      vm.zapGfnRange(0, 1); // the leaf goes, its table stays linked
      if (second) vm.createVcpu().access(3 * MIB, {});
      expect(flushDelta(vm, () => v0.access(0, {}))).toEqual([1, second ? 1 : 0]);
      expect(vm.stats.pages_2m).toBe(second ? 2 : 1);
      expect(vm.audit()).toEqual([]);
    }
  });

  it("tlb_flush: every vCPU counts KVM_REQ_TLB_FLUSH once, at its next entry; vm.stats sums", () => {
    const vm = flushVm();
    const a = vm.createVcpu();
    const b = vm.createVcpu();
    a.access(0x1000, {});
    b.access(0x2000, {});
    // Deltas from here (real KVM also flushes on a vCPU's first load onto a pCPU,
    // vmx_vcpu_load_vmcs; the model does not, so absolute values are not compared).
    const a0 = a.stat.tlb_flush;
    const b0 = b.stat.tlb_flush;
    const d = () => [a.stat.tlb_flush - a0, b.stat.tlb_flush - b0];
    vm.zapGfnRange(1, 2); // ioctl flush: KVM_REQ_TLB_FLUSH on both
    expect(d()).toEqual([0, 0]); // pending until each vCPU's next entry
    a.access(0x3000, {}); // a enters: kvm_vcpu_flush_tlb_all
    expect(d()).toEqual([1, 0]);
    a.access(0x3000, {}); // no new request
    expect(d()).toEqual([1, 0]);
    b.access(0x2000, {});
    expect(d()).toEqual([1, 1]);
    expect(vm.stats.tlb_flush).toBe(a.stat.tlb_flush + b.stat.tlb_flush);
    // Two flushes before the next entries set the same request bit twice: one local flush each.
    vm.zapGfnRange(2, 3);
    vm.zapGfnRange(3, 4);
    b.access(0x2000, {});
    a.access(0x3000, {});
    expect(d()).toEqual([2, 2]);
    expect(vm.stats.tlb_flush).toBe(a.stat.tlb_flush + b.stat.tlb_flush);
  });

  // kvm_make_all_cpus_request sets the request on every vCPU, running or not. (Real KVM would
  // also set KVM_REQ_TLB_FLUSH at the first vcpu_load; both bits merge into the one flush.)
  it("tlb_flush: a vCPU that never ran still gets the request and counts it at its first entry", () => {
    const vm = flushVm();
    const v = vm.createVcpu();
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * MIB,
      flags: KVM_MEM_LOG_DIRTY_PAGES,
    });
    expect(v.stat.tlb_flush).toBe(0);
    v.access(0x1000, {});
    expect(v.stat.tlb_flush).toBe(1);
    expect(vm.stats.tlb_flush).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. memslot generation and MMIO sptes
// ---------------------------------------------------------------------------------------------

describe("kvm_swap_active_memslots / kvm_invalidate_memslot: memslot generation", () => {
  for (const mmu of ["tdp", "none"] as const) {
    it(`mmu "${mmu}": +2 per swap (2 address spaces); DELETE/MOVE swap twice; no-op +0`, () => {
      const vm = createVm({ mmu });
      const AS = 2; // kvm_arch_nr_memslot_as_ids on x86 (SMM)
      let gen = 0;
      expect(vm.memslotGeneration).toBe(gen);
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 0 });
      gen += AS; // CREATE: kvm_create_memslot → one swap
      expect(vm.memslotGeneration).toBe(gen);
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 8 * MIB, memorySize: 2 * MIB, flags: 0 });
      gen += AS; // CREATE
      expect(vm.memslotGeneration).toBe(gen);
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 1 });
      gen += AS; // FLAGS_ONLY: kvm_update_flags_memslot → one swap
      expect(vm.memslotGeneration).toBe(gen);
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MIB, memorySize: 2 * MIB, flags: 0 });
      gen += 2 * AS; // MOVE: kvm_invalidate_memslot swap + kvm_move_memslot swap
      expect(vm.memslotGeneration).toBe(gen);
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0, flags: 0 });
      gen += 2 * AS; // DELETE: kvm_invalidate_memslot swap + kvm_delete_memslot swap
      expect(vm.memslotGeneration).toBe(gen);
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 16 * MIB, memorySize: 2 * MIB, flags: 0 });
      // Identical request: __kvm_set_memory_region returns 0 before any swap.
      expect(vm.memslotGeneration).toBe(gen);
      expect(gen).toBe(14);
    });
  }
});

describe("handle_mmio_page_fault (mmu.c): MMIO sptes carry the memslot generation", () => {
  it("created on the slow path; answered from the spte; stale after any memslot change", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 4 * MIB, flags: 0 });
    const vcpu: Vcpu = vm.createVcpu(); // paging off: gva = gpa
    const MMIO = 64 * MIB; // no memslot here
    let before = snapshotStats(vm);
    const delta = (k: string) => (vm.stats.toJSON()[k] ?? 0) - (before[k] ?? 0);

    // 1st access: EPT violation → kvm_mmu_do_page_fault (pf_taken), no slot → MMIO spte
    // (pf_mmio_spte_created), RET_PF_EMULATE (pf_emulate); the access exits to userspace.
    expect(vcpu.access(MMIO, { write: true })).toEqual({ fault: false, gpa: MMIO, mmio: true });
    expect(delta("pf_taken")).toBe(1);
    expect(delta("pf_mmio_spte_created")).toBe(1);
    expect(delta("pf_emulate")).toBe(1);
    expect(delta("pf_fixed")).toBe(0);

    // 2nd access: EPT misconfig (PFERR_RSVD) → handle_mmio_page_fault finds a current-generation
    // MMIO spte → emulate without kvm_mmu_do_page_fault: no pf_taken, no new spte.
    before = snapshotStats(vm);
    expect(vcpu.access(MMIO, {})).toEqual({ fault: false, gpa: MMIO, mmio: true });
    expect(delta("pf_taken")).toBe(0);
    expect(delta("pf_mmio_spte_created")).toBe(0);
    expect(delta("pf_emulate")).toBe(0);

    // Memslot changes that keep the root and leave MMIO unbacked: CREATE elsewhere, then
    // FLAGS_ONLY. Each changes the generation, so check_mmio_spte fails → RET_PF_INVALID → the
    // slow path again, which installs a new MMIO spte of the current generation.
    const changes = [
      () => vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 32 * MIB, memorySize: MIB, flags: 0 }),
      () => vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 32 * MIB, memorySize: MIB, flags: 1 }),
    ];
    for (const change of changes) {
      const gen = vm.memslotGeneration;
      change();
      expect(vm.memslotGeneration).not.toBe(gen);
      before = snapshotStats(vm);
      expect(vcpu.access(MMIO, {})).toEqual({ fault: false, gpa: MMIO, mmio: true });
      expect(delta("pf_taken")).toBe(1);
      expect(delta("pf_mmio_spte_created")).toBe(1);
      expect(delta("pf_emulate")).toBe(1);
      // … and the spte is current again.
      before = snapshotStats(vm);
      vcpu.access(MMIO, {});
      expect(delta("pf_taken")).toBe(0);
    }
    // An identical request changes nothing: the spte stays current.
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 32 * MIB, memorySize: MIB, flags: 1 });
    before = snapshotStats(vm);
    vcpu.access(MMIO, {});
    expect(delta("pf_taken")).toBe(0);
    expect(vm.audit()).toEqual([]);
  });

  it("legacy rmap MMU: the same rule", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct" } });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 4 * MIB, flags: 0 });
    const vcpu = vm.createVcpu();
    const MMIO = 64 * MIB;
    vcpu.access(MMIO, {});
    expect(vm.stats.pf_taken).toBe(1);
    expect(vm.stats.pf_mmio_spte_created).toBe(1);
    vcpu.access(MMIO, {});
    expect(vm.stats.pf_taken).toBe(1);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 32 * MIB, memorySize: MIB, flags: 0 });
    vcpu.access(MMIO, {});
    expect(vm.stats.pf_taken).toBe(2);
    expect(vm.stats.pf_mmio_spte_created).toBe(2);
    expect(vm.audit()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// 5. The CPU's EPT walk after a change of sptes (vmx.c: the CPU uses whatever KVM left in the
//    tables, and every change KVM makes goes through its spte setters)
// ---------------------------------------------------------------------------------------------

describe("EPT walk: an access uses the spte as it is now, however often the leaf was used before", () => {
  const X = 0x123; // a gfn inside the 4 MiB slot
  function used(flavor: "tdp_mmu" | "legacy_direct") {
    const vm = createVm({ features: { mmuFlavor: flavor } });
    const region = (flags: number) =>
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 4 * MIB, flags });
    region(0);
    const vcpu = vm.createVcpu();
    // One fault maps X writable with A and D; the next accesses use the leaf as it is.
    for (let i = 0; i < 4; i++) vcpu.access(X * PAGE, { write: true });
    expect(vm.stats.pf_taken).toBe(1);
    return { vm, vcpu, region };
  }

  for (const flavor of ["tdp_mmu", "legacy_direct"] as const) {
    it(`${flavor}: logging on and KVM_GET_DIRTY_LOG remove W, so the next write faults and marks X`, () => {
      const { vm, vcpu, region } = used(flavor);
      // kvm_mmu_slot_apply_flags → kvm_mmu_slot_remove_write_access: X's leaf loses W.
      region(KVM_MEM_LOG_DIRTY_PAGES);
      let before = vm.stats.pf_taken;
      vcpu.access(X * PAGE, { write: true });
      expect(vm.stats.pf_taken - before).toBe(1);
      expect(vm.memslots.get(0)!.testDirty(X)).toBe(true);
      for (let i = 0; i < 3; i++) vcpu.access(X * PAGE, { write: true });
      // KVM_GET_DIRTY_LOG clears the bit and write-protects the dirty page again.
      vm.getDirtyLog(0);
      expect(vm.memslots.get(0)!.testDirty(X)).toBe(false);
      before = vm.stats.pf_taken;
      vcpu.access(X * PAGE, { write: true });
      expect(vm.stats.pf_taken - before).toBe(1);
      expect(vm.memslots.get(0)!.testDirty(X)).toBe(true);
      // Reads never needed W: no fault.
      before = vm.stats.pf_taken;
      vcpu.access(X * PAGE, {});
      expect(vm.stats.pf_taken - before).toBe(0);
      expect(vm.audit()).toEqual([]);
    });

    it(`${flavor}: after kvm_zap_gfn_range or an MMU-notifier invalidation X faults again`, () => {
      const { vm, vcpu } = used(flavor);
      vm.zapGfnRange(X, X + 1);
      let before = vm.stats.pf_fixed;
      vcpu.access(X * PAGE, {});
      expect(vm.stats.pf_fixed - before).toBe(1);
      for (let i = 0; i < 3; i++) vcpu.access(X * PAGE, { write: true });
      vm.mmuNotifierInvalidate(X, X + 1);
      before = vm.stats.pf_fixed;
      vcpu.access(X * PAGE, { write: true });
      expect(vm.stats.pf_fixed - before).toBe(1);
      expect(vm.audit()).toEqual([]);
    });
  }
});
