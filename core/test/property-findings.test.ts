/**
 * Bugs the MMU property suite (test/property/) found in the shadow MMU, each as a directed
 * scenario with its expected numbers taken from the x86 paging rules and KVM's accounting:
 *
 * - `mark_page_dirty_in_slot` pushes to the ring of `kvm_get_running_vcpu()`. While KVM handles a
 *   shadow-paging exit (`kvm_mmu_page_fault`, the emulator) that is the faulting vCPU, so the
 *   gpte A/D write-back and the leaf made writable reach its dirty ring (the simulator had no
 *   running vCPU there and dropped them).
 * - `kvm_sync_spte` syncs nothing where the spte is zero: an INVLPG of an unsync page's entry
 *   that a host zap had cleared must leave it clear (the simulator rebuilt it around pfn 0).
 * - `kvm_zap_obsolete_pages` and `kvm_mmu_zap_oldest_mmu_pages` walk `active_mmu_pages` from the
 *   tail and start again from the tail when `__kvm_mmu_prepare_zap_page` zapped unsync children
 *   too (`if (unstable) goto restart`): the page before the one zapped may be gone (the simulator
 *   stopped there and left pages of a deleted slot mapped).
 */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder, KVM_MEM_LOG_DIRTY_PAGES } from "../src";
import { GPTE } from "./kvm-values";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const { P, RW, US, A } = GPTE;

describe("mark_page_dirty_in_slot under shadow paging (the faulting vCPU's dirty ring)", () => {
  it("a first guest store logs its four table pages (A set) and its data page in the ring", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096);
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 16 * MiB,
      flags: KVM_MEM_LOG_DIRTY_PAGES,
    });
    // Four fresh tables (PML4, PDPT, PD, PT) at pool pages 0..3, entries without A.
    const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: 64 * KiB });
    b.map(4 * MiB, 8 * MiB, 4096, { writable: true, user: true });
    expect(b.tablesAllocated).toBe(4);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...b.sregs(), cpl: 0 });
    // The builder's host writes had no vCPU: nothing in the ring yet.
    expect(vcpu.dirtyRing!.harvest()).toEqual([]);
    expect(vcpu.write(4 * MiB, 1n, { user: false })).toEqual({ fault: false, gpa: 8 * MiB });
    // The walk set A in one entry of each table and D in the PTE: writes to pages 256..259
    // (1 MiB + 0..3 pages); the store itself dirtied page 2048 (8 MiB). Each is KVM's write
    // (FNAME(update_accessed_dirty_bits), the leaf made writable), made for this vCPU.
    const offsets = new Set(vcpu.dirtyRing!.harvest().map((e) => e.offset));
    expect([...offsets].sort((x, y) => x - y)).toEqual([256, 257, 258, 259, 2048]);
  });
});

/**
 * A PAE guest under shadow paging: pae_root holds two roots (PD0 for the identity map at
 * PDPT[0], PD1 for 1 GiB at PDPT[1]). Read at 1 GiB (PD1's child PT_t is made right after PD1),
 * then the guest edits PT_t through the identity map (its gfn mapped writable: PT_t goes unsync),
 * then reads 1 GiB + 2 MiB, a page of slot 2 (PT_u). Active list, oldest first:
 * PD0, PD1, PT_t, PT_id, PT_u.
 */
function paeGuest() {
  const vm = createVm({ mmu: "shadow" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 4 * MiB, flags: 0 });
  vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 8 * MiB, memorySize: 2 * MiB, flags: 0 });
  const b = new GuestPageTableBuilder(vm, { mode: "pae", poolBase: MiB, poolSize: 64 * KiB });
  b.map(0, 0, 2 * MiB, { writable: true, user: false, accessed: true, dirty: true });
  b.map(GiB, 2 * MiB, 4096, { writable: true, user: true });
  b.map(GiB + 2 * MiB, 8 * MiB, 4096, { writable: true, user: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...b.sregs({ nx: true }), cpl: 0 });
  expect(vcpu.read(GiB, { size: 8, user: false }).fault).toBe(false);
  const pte1 = b.entryAddress(GiB + 4096, 1)!;
  const w = vcpu.write(pte1, BigInt(2 * MiB + 4096) | P | RW | US, { user: false });
  expect(w.fault).toBe(false);
  expect(vcpu.read(GiB + 2 * MiB, { size: 8, user: false })).toMatchObject({ gpa: 8 * MiB });
  // Precondition of the scenario: PT_t is the one unsync page; five shadow pages in use.
  expect(vm.stats.mmu_unsync).toBe(1);
  expect(vm.stats.n_used_mmu_pages).toBe(5);
  return { vm, vcpu, b };
}

describe("kvm_zap_obsolete_pages", () => {
  it("starts again from the tail when a zap took unsync children: nothing of a deleted slot stays", () => {
    const { vm } = paeGuest();
    // DELETE zaps everything (kvm_mmu_zap_all_fast). Zapping PD1 zaps its unsync child PT_t,
    // the page the walk was to visit next. What must stay: the two roots the vCPU still pins
    // (invalid, freed at its next entry), which stay counted in n_used_mmu_pages.
    vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 8 * MiB, memorySize: 0, flags: 0 });
    expect(vm.audit()).toEqual([]);
    expect(vm.stats.n_used_mmu_pages).toBe(2);
  });
});

describe("kvm_mmu_zap_oldest_mmu_pages", () => {
  it("zaps the asked number of non-root pages when one zap took an unsync child", () => {
    const { vm, vcpu, b } = paeGuest();
    // A second PDPT whose PDEs point at copies of PD0 and PD1: MOV CR3 to it unpins PD0 and
    // PD1 (pae_root is freed and loaded again), the new roots PD0' and PD1' are the newest.
    const pdpt2 = 3 * MiB;
    const pdCopies = [3 * MiB + 4096, 3 * MiB + 8192];
    for (let i = 0; i < 2; i++) {
      const pde = vm.readPhys64(b.root + i * 8);
      const pd = Number(pde & ~0xfffn);
      for (let off = 0; off < 4096; off += 8)
        vm.guestWrite64(pdCopies[i]! + off, vm.readPhys64(pd + off));
      vm.guestWrite64(pdpt2 + i * 8, BigInt(pdCopies[i]!) | P);
    }
    vcpu.movCr3(pdpt2);
    expect(vcpu.read(0, { size: 8, user: false }).fault).toBe(false);
    // Oldest first: PD0, PD1, PT_t (unsync), PT_id, PT_u, PD0', PD1'; the last two are roots.
    expect(vm.stats.n_used_mmu_pages).toBe(7);
    // Four from the tail: PD0; PD1, which takes its unsync child PT_t with it (3 so far);
    // then, from the tail again, PT_id. Left: PT_u and the two roots.
    const zapped = vm.mmu!.shadow!.zapOldestMmuPages(4);
    expect(zapped).toBe(4);
    expect(vm.stats.n_used_mmu_pages).toBe(3);
    const ptU = b.entryAddress(GiB + 2 * MiB, 1)! & ~0xfff;
    const left = vm
      .shadowPages()
      .pages.map((p) => p.gfn * 4096)
      .sort((x, y) => x - y);
    expect(left).toEqual([ptU, ...pdCopies]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_sync_spte", () => {
  it("an INVLPG leaves a zapped entry of an unsync page zero; the next access maps the frame again", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
    const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: 64 * KiB });
    b.map(0, 0, 2 * MiB, { writable: true, user: false, accessed: true, dirty: true });
    b.map(4 * MiB, 8 * MiB, 4096, { writable: true, user: true });
    vm.guestWrite64(8 * MiB, 0x1234n);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...b.sregs(), cpl: 0 });
    expect(vcpu.read(4 * MiB, { user: false })).toMatchObject({ gpa: 8 * MiB });
    // The host zaps the page's leaf (kvm_zap_gfn_range): its spte is zero now.
    vm.zapGfnRange((8 * MiB) / 4096, (8 * MiB) / 4096 + 1);
    // The guest changes the page's rights (same frame, now supervisor-only) through the
    // identity map: the table's gfn is mapped writable for the store and its shadow page goes
    // unsync. Then it invalidates the page, as the architecture requires. The zero spte stays
    // zero: there is no pfn to rebuild it around.
    const pte = b.entryAddress(4 * MiB, 1)!;
    expect(vcpu.write(pte, BigInt(8 * MiB) | P | RW | A, { user: false }).fault).toBe(false);
    expect(vm.stats.mmu_unsync).toBe(1);
    vcpu.invlpg(4 * MiB);
    expect(vm.audit()).toEqual([]);
    // The next access faults the page in again: the frame at 8 MiB, its contents.
    expect(vcpu.read(4 * MiB, { user: false })).toEqual({
      fault: false,
      gpa: 8 * MiB,
      value: 0x1234n,
    });
    expect(vm.audit()).toEqual([]);
  });
});
