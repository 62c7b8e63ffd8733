/**
 * The shadow MMU's side of paging_tmpl.ts that only shows in the sptes, not in the guest's view
 * (the property suite compares translations with the bare machine, which prefetch and sync do not
 * change): `FNAME(pte_prefetch)` / `FNAME(prefetch_gpte)` and `FNAME(sync_spte)`
 * (arch/x86/kvm/mmu/paging_tmpl.h). The expected sptes are written from those functions' rules:
 *
 * - pte_prefetch, after a 4K fault through an indirect level-1 page: the other entries of the
 *   aligned group of PTE_PREFETCH_NUM = 8 around the faulting one are tried in index order; a
 *   present spte is skipped; the first gpte that cannot be prefetched stops the loop (`break`):
 *   not present, A clear or a reserved bit (`prefetch_invalid_gpte`), a gfn outside every slot or
 *   in a read-only one, or a writable mapping in a dirty-logged slot
 *   (`gfn_to_memslot_dirty_bitmap`). A prefetched spte is writable only if the gpte is dirty
 *   (`protect_clean_gpte`).
 * - sync_spte, when an unsync page is synced (MOV CR3: `kvm_mmu_sync_roots`): an invalid gpte or
 *   one that now names another gfn drops the spte; changed rights rebuild it; a 32-bit guest's
 *   table is shadowed by two pages, quadrant q covering gptes 512q..512q+511.
 */
import { describe, expect, it } from "vitest";
import {
  createVm,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  MmuBugError,
  type Vcpu,
  type Vm,
} from "../src";
import { flushReasons } from "./flush-reasons";
import { EPT_A, EPT_D, EPT_W } from "./kvm-values";

const P = 1n;
const RW = 2n;
const US = 4n;
const A = 0x20n;
const D = 0x40n;
const PRU = P | RW | US;

const PT = 0x103; // the guest page table under test (4-level guests)
const DATA = 0x200; // PT[i] maps gfn DATA + i
const GVA = 0x400000; // PML4 0, PDPT 0, PD 2, PT 0
const WINDOW = 0x40001000; // gva of the guest's mapping of its own PT (PDPT 1 → PD 0x104 → PT 0x105)

/** A 4-level shadow-paging guest: PT[i] (i < 16) = DATA + i with `flags(i)`; CPL 3, WP on. */
function guest(flags: (i: number) => bigint, features: Record<string, unknown> = {}) {
  const vm = createVm({ mmu: "shadow", features });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
  vm.guestWrite64(0x100000, 0x101000n | PRU);
  vm.guestWrite64(0x101000, 0x102000n | PRU);
  vm.guestWrite64(0x102000 + 2 * 8, BigInt(PT * 4096) | PRU);
  for (let i = 0; i < 16; i++) {
    const f = flags(i);
    if (f !== 0n) vm.guestWrite64(PT * 4096 + i * 8, BigInt((DATA + i) * 4096) | f);
  }
  vm.guestWrite64(0x101000 + 8, 0x104000n | PRU);
  vm.guestWrite64(0x104000, 0x105000n | PRU);
  vm.guestWrite64(0x105008, BigInt(PT * 4096) | PRU); // WINDOW → the PT itself
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
  return { vm, vcpu };
}

/** The level-1 indirect shadow page of guest table `gfn` (quadrant `q`) and its spte words. */
function level1(vm: Vm, gfn: number, q = 0) {
  const pages = vm
    .shadowPages()
    .pages.filter(
      (p) =>
        p.gfn === gfn && p.level === 1 && !p.direct && !p.role.invalid && p.role.quadrant === q,
    );
  expect(pages).toHaveLength(1);
  const spt = vm.mmu!.store.spt[pages[0]!.id]!;
  return {
    info: pages[0]!,
    present: (i: number) => (spt[i * 2]! & 0x800) !== 0,
    writable: (i: number) => (spt[i * 2]! & EPT_W) !== 0,
    /** Spte `i`'s A bit (bit 8 with A/D on). */
    accessed: (i: number) => (spt[i * 2]! & EPT_A) !== 0,
    /** The frame spte `i` maps (bits 51:12). */
    pfn: (i: number) => (spt[i * 2 + 1]! & 0xfffff) * 2 ** 20 + (spt[i * 2]! >>> 12),
    /** Spte `i` is zero (neither present nor an MMIO spte). */
    zero: (i: number) => spt[i * 2] === 0 && spt[i * 2 + 1] === 0,
    /** Indices 0..n-1 with a present spte. */
    presentSet: (n = 512) => [...Array(n).keys()].filter((i) => (spt[i * 2]! & 0x800) !== 0),
  };
}

describe("FNAME(pte_prefetch): the aligned group of 8 around a 4K fault", () => {
  it("maps every prefetchable neighbour of the group and nothing outside it; W only where the gpte is dirty", () => {
    // Entries 0..15 P|RW|US|A, the odd ones also D. Fault on entry 11: group 8..15.
    const { vm, vcpu } = guest((i) => PRU | A | (i % 2 === 1 ? D : 0n));
    expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
    const pt = level1(vm, PT);
    expect(pt.presentSet(16)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    for (const i of [8, 10, 12, 14]) expect(pt.writable(i)).toBe(false); // clean: protect_clean_gpte
    for (const i of [9, 13, 15]) expect(pt.writable(i)).toBe(true);
    // Each prefetched entry maps its own gfn: the guest reads what the host wrote there.
    for (let i = 8; i < 16; i++) vm.guestWrite64((DATA + i) * 4096, BigInt(0x5a00 + i));
    const faults = vm.stats.pf_fixed;
    for (let i = 8; i < 16; i++)
      expect(vcpu.read(GVA + i * 4096, { size: 8 })).toMatchObject({ value: BigInt(0x5a00 + i) });
    expect(vm.stats.pf_fixed).toBe(faults); // no fault: they were all prefetched
    expect(vm.audit()).toEqual([]);
  });

  it("stops at the first neighbour that cannot be prefetched, in index order (A clear, then not present, then a reserved bit)", () => {
    for (const [bad, flags] of [
      [9, PRU], // A clear
      [13, 0n], // not present
      [10, PRU | A | (1n << 51n)], // bit 51: reserved below MAXPHYADDR 52
    ] as const) {
      const { vm, vcpu } = guest((i) => (i === bad ? flags : PRU | A | D));
      expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
      // Tried 8, 9, 10, (11 is the fault), 12, ...: everything before `bad` is mapped.
      const expected = [...Array(16).keys()].filter((i) => (i >= 8 && i < bad) || i === 11);
      expect(level1(vm, PT).presentSet(16), `bad entry ${bad}`).toEqual(expected);
    }
  });

  it("a reserved bit outside the address bits stops it too: NX without EFER.NXE, with and without PAT (bit 7)", () => {
    const NXBIT = 1n << 63n;
    for (const pat of [0n, 0x80n]) {
      const { vm, vcpu } = guest((i) => (i === 10 ? PRU | A | D | pat | NXBIT : PRU | A | D));
      // EFER.LME without NXE: bit 63 of every gpte is reserved (the faulting one has it clear).
      vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x100, cpl: 3 });
      expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
      expect(level1(vm, PT).presentSet(16), `PAT ${pat}`).toEqual([8, 9, 11]);
    }
  });

  it("skips a neighbour whose spte is already present and goes on past it", () => {
    // Entry 9 has A clear: a fault on 10 maps 8 and stops at 9.
    const { vm, vcpu } = guest((i) => (i === 9 ? PRU : PRU | A | D));
    expect(vcpu.access(GVA + 10 * 4096).fault).toBe(false);
    expect(level1(vm, PT).presentSet(16)).toEqual([8, 10]);
    // The guest's access to 9 sets A in its gpte (the walk) and maps it; the prefetch skips the
    // present 8 and 10 and maps 11..15.
    expect(vcpu.access(GVA + 9 * 4096).fault).toBe(false);
    expect(level1(vm, PT).presentSet(16)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    // Prefetch off: the fault alone.
    const off = guest(() => PRU | A | D, { prefetch: false });
    expect(off.vcpu.access(GVA + 12 * 4096).fault).toBe(false);
    expect(level1(off.vm, PT).presentSet(16)).toEqual([12]);
  });

  it("stops at a gfn outside every slot, in a read-only slot, or writable in a dirty-logged slot", () => {
    const cases: [string, (vm: Vm) => void, bigint, number[]][] = [
      // gfn DATA + 10 moved outside every slot: PT[10] names gfn 0x100000.
      ["no slot", () => {}, 0x100000n * 4096n, [8, 9, 11]],
      ["read-only slot", (vm) => readOnlySlot(vm), 0x2000n * 4096n, [8, 9, 11]],
      ["dirty-logged, dirty gpte", (vm) => logged(vm), 0x3000n * 4096n, [8, 9, 11]],
    ];
    function logged(vm: Vm) {
      vm.setUserMemoryRegion({
        slot: 2,
        guestPhysAddr: 0x3000 * 4096,
        memorySize: 16 * 4096,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
      });
    }
    for (const [label, setup, target, expected] of cases) {
      const { vm, vcpu } = guest(() => PRU | A | D);
      setup(vm);
      vm.guestWrite64(PT * 4096 + 10 * 8, target | PRU | A | D);
      expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
      expect(level1(vm, PT).presentSet(16), label).toEqual(expected);
    }
    // A clean gpte in the dirty-logged slot is mapped read-only, and the loop goes on.
    const { vm, vcpu } = guest(() => PRU | A | D);
    logged(vm);
    vm.guestWrite64(PT * 4096 + 10 * 8, (0x3000n * 4096n) | PRU | A);
    expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
    const pt = level1(vm, PT);
    expect(pt.presentSet(16)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(pt.writable(10)).toBe(false);
  });

  it("a guest 2M page on 4K host pages: the direct page's group of 8 is prefetched (__direct_pte_prefetch)", () => {
    const { vm, vcpu } = guest(() => 0n);
    // PD[2] maps gva 0x400000 as one 2M guest page at gfn 0x200; the host backs it with 4K pages.
    vm.guestWrite64(0x102000 + 2 * 8, 0x200000n | PRU | A | D | 0x80n);
    expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
    const direct = vm
      .shadowPages()
      .pages.filter((p) => p.gfn === 0x200 && p.level === 1 && p.direct && !p.role.invalid);
    expect(direct).toHaveLength(1);
    const spt = vm.mmu!.store.spt[direct[0]!.id]!;
    const present = [...Array(32).keys()].filter((i) => (spt[i * 2]! & 0x800) !== 0);
    expect(present).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
  });

  it("32-bit guest: the group is 8 four-byte gptes, gfn = gpte >> 12", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    // PD 0x100: PDE 1 (gva 0x400000) → PT 0x103; PT[i] → DATA + i for i < 16.
    vm.guestWrite32(0x100000 + 4, PT * 4096 + 7);
    for (let i = 0; i < 16; i++) vm.guestWrite32(PT * 4096 + i * 4, (DATA + i) * 4096 + 0x67);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0, efer: 0, cpl: 3 });
    for (let i = 0; i < 16; i++) vm.guestWrite32((DATA + i) * 4096, 0x700 + i);
    expect(vcpu.access(GVA + 3 * 4096).fault).toBe(false);
    expect(level1(vm, PT).presentSet(16)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (let i = 0; i < 8; i++)
      expect(vcpu.read(GVA + i * 4096, { size: 4 })).toMatchObject({ value: BigInt(0x700 + i) });
  });

  it("a neighbour above 4 GiB maps its own frame (gfn from both gpte halves)", () => {
    const { vm, vcpu } = guest(() => PRU | A | D);
    const high = 0x100000 + 5; // gfn 4 GiB + 5 pages
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 0x100000 * 4096,
      memorySize: 64 * 4096,
      flags: 0,
    });
    vm.guestWrite64(PT * 4096 + 9 * 8, (BigInt(high) * 4096n) | PRU | A | D);
    vm.guestWrite64(high * 4096, 0xabcdn);
    expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
    expect(level1(vm, PT).present(9)).toBe(true);
    const faults = vm.stats.pf_fixed;
    expect(vcpu.read(GVA + 9 * 4096, { size: 8 })).toMatchObject({ value: 0xabcdn });
    expect(vm.stats.pf_fixed).toBe(faults);
  });
});

/** Slot 1: 16 read-only pages at gfn 0x2000. */
function readOnlySlot(vm: Vm) {
  vm.setUserMemoryRegion({
    slot: 1,
    guestPhysAddr: 0x2000 * 4096,
    memorySize: 16 * 4096,
    flags: KVM_MEM_READONLY,
  });
}

/** `unsync_children` of the valid pages of the guest's PML4, PDPT and PD (0x100..0x102). */
function unsyncChildCounts(vm: Vm): number[] {
  return [0x100, 0x101, 0x102].map(
    (g) => vm.shadowPages().pages.find((p) => p.gfn === g && !p.role.invalid)!.unsyncChildren,
  );
}

/** Make PT unsync: map entries 0..7, then a guest write through WINDOW (a write fault on PT). */
function unsyncPt(vm: Vm, vcpu: Vcpu, entry: number, gpte: bigint) {
  expect(vcpu.write(WINDOW + entry * 8, gpte).fault).toBe(false);
  expect(level1(vm, PT).info.unsync).toBe(true);
}

/**
 * MOV CR3 to the same value asks for KVM_REQ_MMU_SYNC (`kvm_set_cr3` → `kvm_invalidate_pcid`),
 * served at the next guest entry (`kvm_mmu_sync_roots`): enter through a read of `gva`, which
 * is mapped through another table.
 */
function syncAtEntry(vm: Vm, vcpu: Vcpu, gva: number) {
  vcpu.movCr3(0x100000);
  expect(vcpu.read(gva, { size: 4 }).fault).toBe(false);
  // Dropped sptes left no rmap entry or count behind (drop_spte, not a bare clear).
  expect(vm.audit()).toEqual([]);
}

describe("FNAME(sync_spte): an unsync page brought in line with its gptes at MOV CR3", () => {
  it("dropped rights, a not-present gpte and another gfn: each entry follows its gpte", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA + 0 * 4096, { write: true }).fault).toBe(false);
    let pt = level1(vm, PT);
    expect(pt.presentSet(16)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(pt.writable(1)).toBe(true);
    // Through the window (the page goes unsync on the first write, then the others are plain
    // stores): entry 1 read-only, entry 2 not present, entry 3 names gfn DATA + 9.
    unsyncPt(vm, vcpu, 1, BigInt((DATA + 1) * 4096) | P | US | A | D);
    expect(vcpu.write(WINDOW + 2 * 8, 0n).fault).toBe(false);
    expect(vcpu.write(WINDOW + 3 * 8, BigInt((DATA + 9) * 4096) | PRU | A | D).fault).toBe(false);
    // Unsync: the sptes still hold the old translations until the sync.
    pt = level1(vm, PT);
    expect(pt.writable(1)).toBe(true);
    expect(pt.present(2)).toBe(true);
    syncAtEntry(vm, vcpu, WINDOW);
    pt = level1(vm, PT);
    expect(pt.info.unsync).toBe(false);
    expect(pt.present(1) && !pt.writable(1)).toBe(true); // rights rebuilt without W
    expect(pt.present(2)).toBe(false); // not present: dropped
    expect(pt.present(3)).toBe(false); // another gfn: dropped (refaulted later)
    for (const i of [0, 4, 5, 6, 7]) expect(pt.present(i) && pt.writable(i)).toBe(true);
    // And the guest sees its new tables.
    vm.guestWrite64((DATA + 9) * 4096, 0x99n);
    expect(vcpu.read(GVA + 3 * 4096, { size: 8 })).toMatchObject({ value: 0x99n });
    expect(vcpu.write(GVA + 1 * 4096, 1n).fault).toBe(true);
    expect(vcpu.read(GVA + 2 * 4096).fault).toBe(true);
  });

  it("a gpte made clean loses W at the sync; a gpte given W back (and D) gets it", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? (i === 5 ? P | US | A | D : PRU | A | D) : 0n));
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 4, BigInt((DATA + 4) * 4096) | PRU | A); // D cleared
    expect(vcpu.write(WINDOW + 5 * 8, BigInt((DATA + 5) * 4096) | PRU | A | D).fault).toBe(false);
    syncAtEntry(vm, vcpu, WINDOW);
    const pt = level1(vm, PT);
    expect(pt.present(4) && !pt.writable(4)).toBe(true); // protect_clean_gpte
    expect(pt.present(5)).toBe(true);
    expect(pt.writable(5)).toBe(true);
  });

  it("W at the sync: granted for a data page, withheld for a gfn the shadow MMU write-protects (a PD it shadows)", () => {
    // Entries 4 and 5 read-only at first: 4 names the guest's PD (gfn 0x102), 5 a data page.
    const { vm, vcpu } = guest((i) =>
      i >= 8 ? 0n : i === 4 || i === 5 ? P | US | A | D : PRU | A | D,
    );
    vm.guestWrite64(PT * 4096 + 4 * 8, 0x102000n | P | US | A | D);
    expect(vcpu.access(GVA).fault).toBe(false);
    let pt = level1(vm, PT);
    expect(pt.present(4) && pt.present(5)).toBe(true);
    unsyncPt(vm, vcpu, 4, 0x102000n | PRU | A | D);
    expect(vcpu.write(WINDOW + 5 * 8, BigInt((DATA + 5) * 4096) | PRU | A | D).fault).toBe(false);
    syncAtEntry(vm, vcpu, WINDOW);
    pt = level1(vm, PT);
    // gfn 0x102 is shadowed by a level-2 page, which cannot go unsync (mmu_try_to_unsync_pages):
    // make_spte withholds W. The data page gets it.
    expect(pt.present(4) && !pt.writable(4)).toBe(true);
    expect(pt.present(5) && pt.writable(5)).toBe(true);
  });

  it("a page in a read-only slot gets no W at the sync, even when its gpte becomes writable", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    readOnlySlot(vm);
    vm.guestWrite64(PT * 4096 + 4 * 8, 0x2000000n | P | US | A | D); // read-only gpte
    expect(vcpu.access(GVA + 4 * 4096).fault).toBe(false);
    expect(level1(vm, PT).present(4)).toBe(true);
    unsyncPt(vm, vcpu, 4, 0x2000000n | PRU | A | D); // now writable in the guest's eyes
    syncAtEntry(vm, vcpu, WINDOW);
    const pt = level1(vm, PT);
    expect(pt.present(4)).toBe(true);
    expect(pt.writable(4)).toBe(false); // host page not writable: make_spte withholds W
  });

  it("an MMIO spte: cleared when its gpte names another gfn, kept when the gfn is the same", () => {
    // Entries 5, 6 and 7 name gfns outside every slot: their accesses are MMIO.
    const { vm, vcpu } = guest((i) => (i < 5 ? PRU | A | D : 0n));
    for (const i of [5, 6, 7])
      vm.guestWrite64(PT * 4096 + i * 8, (0x100000000n + BigInt(i) * 4096n) | PRU | A | D);
    expect(vcpu.access(GVA).fault).toBe(false);
    for (const i of [5, 6, 7])
      expect(vcpu.access(GVA + i * 4096)).toMatchObject({ fault: false, mmio: true });
    let pt = level1(vm, PT);
    for (const i of [5, 6, 7]) expect(pt.present(i) || pt.zero(i)).toBe(false); // MMIO sptes
    unsyncPt(vm, vcpu, 6, BigInt((DATA + 6) * 4096) | PRU | A | D);
    expect(vcpu.write(WINDOW + 5 * 8, 0n).fault).toBe(false); // gpte 5 not present
    syncAtEntry(vm, vcpu, WINDOW);
    pt = level1(vm, PT);
    expect(pt.zero(5)).toBe(true); // prefetch_invalid_gpte: cleared
    expect(pt.zero(6)).toBe(true); // sync_mmio_spte: another gfn
    expect(pt.present(7) || pt.zero(7)).toBe(false); // the same gfn: still the MMIO spte
  });

  it("MMIO sptes of gfns below 4 GiB (their high word zero) are synced too", () => {
    const { vm, vcpu } = guest((i) => (i < 5 ? PRU | A | D : 0n));
    // Entries 6 and 24 name gfns 0x3000 and 0x3018, outside every slot.
    vm.guestWrite64(PT * 4096 + 6 * 8, 0x3000000n | PRU | A | D);
    vm.guestWrite64(PT * 4096 + 24 * 8, 0x3018000n | PRU | A | D);
    expect(vcpu.access(GVA).fault).toBe(false);
    for (const i of [6, 24]) {
      expect(vcpu.access(GVA + i * 4096)).toMatchObject({ fault: false, mmio: true });
      expect(level1(vm, PT).present(i) || level1(vm, PT).zero(i)).toBe(false);
    }
    unsyncPt(vm, vcpu, 6, BigInt((DATA + 6) * 4096) | PRU | A | D);
    expect(vcpu.write(WINDOW + 24 * 8, 0n).fault).toBe(false);
    syncAtEntry(vm, vcpu, WINDOW);
    expect(level1(vm, PT).zero(6)).toBe(true); // sync_mmio_spte: another gfn
    expect(level1(vm, PT).zero(24)).toBe(true); // prefetch_invalid_gpte: not present
  });

  it("FNAME(fetch) syncs the unsync children of a page before linking it on another path", () => {
    // The guest's PD (gfn 0x102) also sits under PDPT entry 2: gva 0x80400000 reaches PT 0x103
    // through it, as GVA does through PDPT entry 0.
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(0x101000 + 2 * 8, 0x102000n | PRU);
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n); // gpte 3 not present; the PT is unsync, the PD has an unsync child
    const pd = vm.shadowPages().pages.find((p) => p.gfn === 0x102 && p.level === 2)!;
    expect(pd.unsyncChildren).toBe(1);
    expect(level1(vm, PT).present(3)).toBe(true); // stale until synced
    // The new path links the existing PD page: mmu_sync_children first (no MOV CR3, no INVLPG).
    expect(vcpu.access(0x80400000).fault).toBe(false);
    const pt = level1(vm, PT);
    expect(pt.info.unsync).toBe(false);
    expect(pt.present(3)).toBe(false);
    expect(vm.audit()).toEqual([]);
  });

  it("32-bit guest: quadrant 1's entry i is gpte 512 + i of the guest table", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    // PD 0x100: PDE 1 (gva 0x400000..0x7fffff) → PT 0x103; PDE 2 (gva 0x800000) → PT 0x105,
    // whose entry 0 maps the PT 0x103 itself (the window).
    vm.guestWrite32(0x100000 + 4, PT * 4096 + 7);
    vm.guestWrite32(0x100000 + 8, 0x105000 + 7);
    vm.guestWrite32(0x105000, PT * 4096 + 7);
    for (let i = 512; i < 520; i++) vm.guestWrite32(PT * 4096 + i * 4, (DATA + i) * 4096 + 0x67);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0, efer: 0, cpl: 3 });
    const g = (i: number) => 0x400000 + i * 4096;
    expect(vcpu.access(g(512)).fault).toBe(false);
    let q1 = level1(vm, PT, 1);
    expect(q1.presentSet(16)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // Clear gpte 514 through the window (byte 514 * 4 of the table): quadrant 1's entry 2.
    expect(vcpu.write(0x800000 + 514 * 4, 0, { size: 4 }).fault).toBe(false);
    q1 = level1(vm, PT, 1);
    expect(q1.info.unsync).toBe(true);
    syncAtEntry(vm, vcpu, 0x800000);
    q1 = level1(vm, PT, 1);
    expect(q1.presentSet(16)).toEqual([0, 1, 3, 4, 5, 6, 7]);
  });
});

describe("FNAME(page_fault) with CR0.WP=0: W without U only for a supervisor write to a read-only gpte", () => {
  /** The 4-level guest with CR0.WP clear, at CPL 0. */
  function noWp(flags: bigint) {
    const g = guest((i) => (i < 8 ? flags : 0n));
    g.vcpu.setSregs({ cr0: 0x80000001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 0 });
    return g;
  }

  it("a writable user gpte keeps U: the user read after the supervisor write takes no fault", () => {
    const { vm, vcpu } = noWp(PRU | A | D);
    const before = vm.stats.pf_fixed;
    expect(vcpu.write(GVA, 1n).fault).toBe(false);
    expect(vm.stats.pf_fixed).toBe(before + 1);
    vcpu.setCpl(3);
    expect(vcpu.read(GVA).fault).toBe(false);
    expect(vm.stats.pf_fixed).toBe(before + 1); // the spte allowed it: no second fault
  });

  it("without SMEP the W-without-U spte keeps X: a supervisor fetch after the write takes no fault", () => {
    const { vm, vcpu } = noWp(P | US | A | D);
    const before = vm.stats.pf_fixed;
    expect(vcpu.write(GVA, 1n).fault).toBe(false); // allowed: WP=0
    expect(vm.stats.pf_fixed).toBe(before + 1);
    expect(vcpu.fetch(GVA).fault).toBe(false);
    expect(vm.stats.pf_fixed).toBe(before + 1);
  });
});

describe("legacy statistics (v4 and before): pf_fixed counts the faults whose handler installed a leaf", () => {
  it("a mapped fault counts, a #PF injected to the guest does not", () => {
    const { vm, vcpu } = guest((i) => (i < 4 ? PRU | A | D : 0n), { statsStyle: "legacy" });
    expect(vm.stats.pf_fixed).toBe(0);
    expect(vcpu.access(GVA).fault).toBe(false);
    expect(vm.stats.pf_fixed).toBe(1);
    expect(vcpu.access(GVA + 9 * 4096).fault).toBe(true); // gpte 9 not present: the guest's #PF
    expect(vm.stats.pf_fixed).toBe(1);
  });
});

describe("FNAME(page_fault): a write through a present spte to a write-tracked table is emulated at once", () => {
  it("page_fault_handle_page_track: no fetch, no spte request (the guest's PD, which cannot go unsync)", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(0x105000, 0x102000n | PRU | A | D); // gva 0x40000000 → the guest's PD
    expect(vcpu.access(GVA).fault).toBe(false); // shadows the PD: gfn 0x102 write-tracked
    expect(vcpu.read(0x40000000).fault).toBe(false); // a read-only spte for the tracked PD
    vm.startTrace(1000);
    expect(vcpu.write(0x40000000 + 16, 0x103000n | PRU | A | D).fault).toBe(false);
    const names = vm.stopTrace().events.map((e) => e.name);
    const done = names.indexOf("mmulab_page_fault_done");
    expect(names.indexOf("kvm_page_fault")).toBeGreaterThanOrEqual(0);
    expect(done).toBeGreaterThan(names.indexOf("kvm_page_fault"));
    expect(names.slice(0, done)).not.toContain("kvm_mmu_spte_requested");
    expect(names.slice(0, done)).not.toContain("kvm_mmu_set_spte");
    expect(vm.audit()).toEqual([]);
  });
});

describe("FNAME(pte_prefetch) around neighbours it must leave alone", () => {
  it("an MMIO spte just past the group is not touched: the loop stops at the group's 8 entries", () => {
    const { vm, vcpu } = guest(() => PRU | A | D);
    vm.guestWrite64(PT * 4096 + 16 * 8, 0x100000000n | PRU | A | D); // gfn outside every slot
    expect(vcpu.access(GVA + 16 * 4096)).toMatchObject({ fault: false, mmio: true });
    let pt = level1(vm, PT);
    expect(pt.present(16) || pt.zero(16)).toBe(false); // the MMIO spte
    expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
    pt = level1(vm, PT);
    expect(pt.presentSet(16)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(pt.present(16) || pt.zero(16)).toBe(false); // still the MMIO spte
  });

  it("a present neighbour is skipped even when its gpte changed meanwhile (an unsync page keeps the stale spte)", () => {
    // Entry 10's A is clear: a fault on 9 maps 8 and 9 only.
    const { vm, vcpu } = guest((i) => (i === 10 ? PRU : PRU | A | D));
    expect(vcpu.access(GVA + 9 * 4096).fault).toBe(false);
    let pt = level1(vm, PT);
    expect(pt.presentSet(16)).toEqual([8, 9]);
    expect(pt.pfn(9)).toBe(pt.pfn(8) + 1);
    // The guest points gpte 9 at another frame (the PT goes unsync, no INVLPG) and fixes 10.
    unsyncPt(vm, vcpu, 9, BigInt((DATA + 100) * 4096) | PRU | A | D);
    expect(vcpu.write(WINDOW + 10 * 8, BigInt((DATA + 10) * 4096) | PRU | A | D).fault).toBe(false);
    // A fault on 11 prefetches 10 and 12..15; 8 and 9 are present and left as they are.
    expect(vcpu.access(GVA + 11 * 4096).fault).toBe(false);
    pt = level1(vm, PT);
    expect(pt.presentSet(16)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(pt.pfn(9)).toBe(pt.pfn(8) + 1);
    expect(pt.pfn(10)).toBe(pt.pfn(8) + 2);
  });
});

describe("FNAME(pte_prefetch) after faults that are not a 4K data page", () => {
  it("after an MMIO fault the rest of the group is prefetched; the faulting entry keeps its MMIO spte", () => {
    const { vm, vcpu } = guest(() => PRU | A | D);
    vm.guestWrite64(PT * 4096 + 11 * 8, 0x100000000n | PRU | A | D); // gfn outside every slot
    expect(vcpu.access(GVA + 11 * 4096)).toMatchObject({ fault: false, mmio: true });
    const pt = level1(vm, PT);
    expect(pt.presentSet(16)).toEqual([8, 9, 10, 12, 13, 14, 15]);
    expect(pt.present(11) || pt.zero(11)).toBe(false);
  });

  it("a guest 1G page on 2M host pages: a 2M leaf in a level-2 direct page, and no prefetch there", () => {
    const { vm, vcpu } = guest(() => 0n);
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 2 ** 30,
      memorySize: 16 * 2 ** 20,
      flags: 0,
      backing: "hugetlb-2m",
    });
    // PDPT[3]: gva 0xc0000000 is one 1G guest page at gpa 1 GiB.
    vm.guestWrite64(0x101000 + 3 * 8, 0x40000000n | PRU | A | D | 0x80n);
    expect(vcpu.access(0xc0000000 + 5 * 2 ** 21).fault).toBe(false);
    const direct = vm
      .shadowPages()
      .pages.filter((p) => p.gfn === 0x40000 && p.direct && !p.role.invalid);
    expect(direct.map((p) => p.level)).toEqual([2]);
    const spt = vm.mmu!.store.spt[direct[0]!.id]!;
    const present = [...Array(512).keys()].filter((i) => (spt[i * 2]! & 0x800) !== 0);
    expect(present).toEqual([5]);
    expect(spt[10]! & 0x80).toBe(0x80); // PS: a 2M leaf
    expect(vm.audit()).toEqual([]);
  });
});

describe("FNAME(fetch) on a dummy root (kvm_mmu_get_dummy_root)", () => {
  it("a CR3 outside every memslot gets the dummy root; once a memslot holds it, the fault loads a real root and retries", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    const CR3 = 0x2000000; // outside slot 0
    vcpu.setSregs({ cr0: 0x80010001, cr3: CR3, cr4: 0x20, efer: 0x900, cpl: 3 });
    // The guest's walk cannot read its PML4: a #PF for the guest.
    expect(vcpu.access(GVA).fault).toBe(true);
    expect(vm.shadowPages().pages.some((p) => p.gfn === CR3 / 4096)).toBe(false);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: CR3, memorySize: 4096, flags: 0 });
    vm.guestWrite64(CR3, 0x101000n | PRU); // the PML4: entry 0 → the PDPT of slot 0
    vm.startTrace(1000);
    expect(vcpu.access(GVA).fault).toBe(false);
    const ev = vm.stopTrace().events;
    // The first fault ran on the dummy root (RET_PF_RETRY); the retry, on the new root, maps it.
    const done = ev.filter((e) => e.name === "mmulab_page_fault_done");
    expect(done.map((e) => e.fields.ret)).toEqual(["retry", "fixed"]);
    expect(done[0]!.fields.retry_reason).toBe("root reload");
    const roots = vm.shadowPages().pages.filter((p) => p.gfn === CR3 / 4096 && p.level === 4);
    expect(roots).toHaveLength(1);
    expect(level1(vm, PT).present(0)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

describe("FNAME(fetch) on a pae_root entry left invalid", () => {
  it("a PDPTE naming a gfn outside every memslot at root load, made visible since: KVM_RUN's -EFAULT until MOV CR3", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    const PD = 0x2000000; // outside slot 0
    vm.guestWrite64(0x100000, BigInt(PD) | P); // PDPTE 0 → PD
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0, cpl: 0 });
    expect(vcpu.access(0x1000).fault).toBe(true); // the guest's walk cannot read the PD
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: PD, memorySize: 4096, flags: 0 });
    vm.guestWrite64(PD, BigInt(PT * 4096) | PRU);
    vm.guestWrite64(PT * 4096 + 8, BigInt(DATA * 4096) | PRU);
    // The walk succeeds now (the PDPTE registers and the PD are readable), but pae_root[0] has no
    // shadow page: FNAME(fetch)'s WARN.
    expect(() => vcpu.access(0x1000)).toThrow(MmuBugError);
    expect(() => vcpu.access(0x1000)).toThrow(/FNAME\(fetch\).*pae_root\[0\]/);
    // MOV CR3 loads the PDPTE registers and a new pae_root.
    vcpu.movCr3(0x100000);
    expect(vcpu.access(0x1000).fault).toBe(false);
    expect(vm.audit()).toEqual([]);
  });
});

describe("FNAME(page_fault) before the fetch", () => {
  it("a write to a page of a read-only slot is emulated (kvm_faultin_pfn): an MMIO exit, no spte, the host page unchanged", () => {
    const { vm, vcpu } = guest((i) => (i < 4 ? PRU | A | D : 0n));
    readOnlySlot(vm);
    vm.guestWrite64(PT * 4096 + 5 * 8, 0x2000000n | PRU | A | D); // a writable gpte
    expect(vcpu.access(GVA).fault).toBe(false);
    expect(level1(vm, PT).present(5)).toBe(false); // the prefetch stops at a read-only slot
    const emulated = vm.stats.pf_emulate;
    expect(vcpu.write(GVA + 5 * 4096, 0x77n)).toEqual({ fault: false, gpa: 0x2000000, mmio: true });
    expect(vm.stats.pf_emulate).toBe(emulated + 1);
    expect(level1(vm, PT).present(5)).toBe(false);
    expect(vm.readPhys64(0x2000000)).toBe(0n);
    // A read maps it, without W.
    expect(vcpu.read(GVA + 5 * 4096).fault).toBe(false);
    const pt = level1(vm, PT);
    expect(pt.present(5) && !pt.writable(5)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });

  it("CR0.WP=0: a supervisor write to a read-only gpte naming MMIO keeps the gpte's rights in the MMIO spte (no W-without-U)", () => {
    const { vm, vcpu } = guest((i) => (i < 4 ? PRU | A | D : 0n));
    vm.guestWrite64(PT * 4096 + 5 * 8, 0x100000000n | P | US | A | D); // read-only, user, MMIO
    vcpu.setSregs({ cr0: 0x80000001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 0 });
    vm.startTrace(1000);
    expect(vcpu.write(GVA + 5 * 4096, 1n)).toMatchObject({ fault: false, mmio: true });
    const mark = vm.stopTrace().events.filter((e) => e.name === "mark_mmio_spte");
    expect(mark).toHaveLength(1);
    // mark_mmio_spte keeps access & (ACC_WRITE_MASK | ACC_USER_MASK): U (4), not W (2).
    expect(Number(mark[0]!.fields.access)).toBe(4);
  });
});

describe("FNAME(sync_spte): the spte it rebuilds", () => {
  it("is made as a prefetch: A clear (make_spte with prefetch, before v6.13's 'synchronizing')", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA + 4 * 4096).fault).toBe(false);
    expect(level1(vm, PT).accessed(4)).toBe(true); // the faulting access's spte
    unsyncPt(vm, vcpu, 4, BigInt((DATA + 4) * 4096) | P | US | A | D); // drop W
    syncAtEntry(vm, vcpu, WINDOW);
    const pt = level1(vm, PT);
    expect(pt.present(4) && !pt.writable(4)).toBe(true);
    expect(pt.accessed(4)).toBe(false);
  });

  it("withholds W for a gfn that an unsync level-1 page shadows: a sync may not unsync (can_unsync false)", () => {
    // gpte 6 maps the guest table 0x105 (WINDOW's PT) writable; gpte 4 maps it read-only.
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(PT * 4096 + 6 * 8, 0x105000n | PRU | A | D);
    vm.guestWrite64(PT * 4096 + 4 * 8, 0x105000n | P | US | A | D);
    expect(vcpu.access(GVA).fault).toBe(false);
    expect(vcpu.read(WINDOW).fault).toBe(false); // shadows 0x105 at level 1
    // A write through gpte 6 to an unused entry of 0x105: its page goes unsync.
    expect(vcpu.write(GVA + 6 * 4096 + 0x800, 0n).fault).toBe(false);
    expect(level1(vm, 0x105).info.unsync).toBe(true);
    unsyncPt(vm, vcpu, 4, 0x105000n | PRU | A | D); // gpte 4 now writable
    syncAtEntry(vm, vcpu, WINDOW);
    const pt = level1(vm, PT);
    expect(pt.present(4)).toBe(true);
    expect(pt.writable(4)).toBe(false);
  });
});

describe("kvm_mmu_find_shadow_page on a gfn with an unsync page", () => {
  it("another path to the unsync guest PT: the lookup syncs it (kvm_sync_page) and leaves it unsync", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(0x102000 + 3 * 8, BigInt(PT * 4096) | PRU); // PD[3] → the same PT
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n); // gpte 3 not present; spte 3 stale
    expect(level1(vm, PT).present(3)).toBe(true);
    vm.startTrace(1000);
    expect(vcpu.access(0x600000).fault).toBe(false); // through PD[3]: links the same page
    const reasons = vm
      .stopTrace()
      .events.filter((e) => e.name === "mmulab_flush_remote_tlbs")
      .map((e) => e.fields.reason);
    const pt = level1(vm, PT);
    expect(pt.present(3)).toBe(false); // synced from its gpte
    expect(pt.info.unsync).toBe(true); // but not write-protected or marked synced
    expect(reasons).toContain("sync_page"); // the dropped spte is flushed
    expect(vm.audit()).toEqual([]);
  });

  it("a lookup with nothing to change in the unsync page flushes nothing", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(0x102000 + 3 * 8, BigInt(PT * 4096) | PRU);
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 12, BigInt((DATA + 12) * 4096) | PRU | A | D); // a new gpte, no spte yet
    vm.startTrace(1000);
    expect(vcpu.access(0x600000).fault).toBe(false);
    const reasons = vm
      .stopTrace()
      .events.filter((e) => e.name === "mmulab_flush_remote_tlbs")
      .map((e) => e.fields.reason);
    expect(reasons).not.toContain("sync_page");
    expect(level1(vm, PT).info.unsync).toBe(true);
  });

  it("a guest table used as a PD zaps the unsync level-1 page of the same gfn (a level > 1 page cannot share it)", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    // PDPT[3] uses the PT as a PD: its entry 0 (gpte 0, → DATA) as a PDE points at a PT at DATA,
    // whose entry 0 maps DATA + 1.
    vm.guestWrite64(0x101000 + 3 * 8, BigInt(PT * 4096) | PRU);
    vm.guestWrite64(DATA * 4096, BigInt((DATA + 1) * 4096) | PRU | A | D);
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 5, BigInt((DATA + 5) * 4096) | P | US | A | D);
    expect(vcpu.access(0xc0000000).fault).toBe(false);
    const pages = vm.shadowPages().pages.filter((p) => p.gfn === PT && !p.role.invalid);
    expect(pages.map((p) => p.level)).toEqual([2]); // the unsync level-1 page is gone
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_find_shadow_page: max_mmu_page_hash_collisions", () => {
  const MASK64 = 0xffffffffffffffffn;
  /** hash_64(gfn, 12) (include/linux/hash.h), in 64-bit arithmetic. */
  const hash64 = (gfn: number) => Number(((BigInt(gfn) * 0x61c8864680b583ebn) & MASK64) >> 52n);
  const eras = [
    ["hash_64(gfn, 12)", {}, hash64],
    ["gfn & 1023 (before ~v4.13)", { hashFn: "mask", hashShift: 10 }, (g: number) => g % 1024],
  ] as const;

  for (const [name, features, bucket] of eras)
    it(`${name}: the lookup of a new gfn walks the pages of other gfns in its bucket`, () => {
      const tables = [0x100, 0x101, 0x102]; // PML4, PDPT, PD
      expect(new Set(tables.map(bucket)).size).toBe(3);
      // Two free gfns that share a bucket no table uses, and a third alone in its bucket.
      const taken = new Set(tables.map(bucket));
      const first = new Map<number, number>();
      let pair: [number, number] | null = null;
      for (let g = 0x300; g < 0x1000 && pair === null; g++) {
        const b = bucket(g);
        if (taken.has(b)) continue;
        const f = first.get(b);
        if (f !== undefined) pair = [f, g];
        else first.set(b, g);
      }
      const [ga, gb] = pair!;
      let gc = 0x300;
      while (taken.has(bucket(gc)) || bucket(gc) === bucket(ga)) gc++;
      const { vm, vcpu } = guest(() => 0n, features);
      // PD[4], PD[5] and PD[6] → guest PTs at ga, gb and gc, each mapping DATA at entry 0.
      [ga, gb, gc].forEach((g, k) => {
        vm.guestWrite64(0x102000 + (4 + k) * 8, BigInt(g * 4096) | PRU);
        vm.guestWrite64(g * 4096, BigInt(DATA * 4096) | PRU | A | D);
      });
      expect(vcpu.access(0x800000).fault).toBe(false); // ga: alone in its bucket
      expect(vm.stats.max_mmu_page_hash_collisions).toBe(0);
      expect(vcpu.access(0xa00000).fault).toBe(false); // gb: walks ga's page
      expect(vm.stats.max_mmu_page_hash_collisions).toBe(1);
      expect(vcpu.access(0xc00000).fault).toBe(false); // gc: no collision; the maximum stays
      expect(vm.stats.max_mmu_page_hash_collisions).toBe(1);
    });
});

describe("mmu_sync_children: batches of KVM_PAGE_ARRAY_NR = 16 pages, the walk's parent included", () => {
  /**
   * `n` guest PTs at gfns 0x300 + k under PD entries 8 + k, each mapping DATA at entry 0, all
   * made unsync through writable mappings of them in a PT at 0x3ff (PD[100]).
   */
  function unsyncMany(n: number) {
    const { vm, vcpu } = guest(() => 0n);
    const WPT = 0x3ff;
    vm.guestWrite64(0x102000 + 100 * 8, BigInt(WPT * 4096) | PRU);
    for (let k = 0; k < n; k++) {
      vm.guestWrite64(0x102000 + (8 + k) * 8, BigInt((0x300 + k) * 4096) | PRU);
      vm.guestWrite64((0x300 + k) * 4096, BigInt(DATA * 4096) | PRU | A | D);
      vm.guestWrite64(WPT * 4096 + k * 8, BigInt((0x300 + k) * 4096) | PRU | A | D);
    }
    for (let k = 0; k < n; k++) expect(vcpu.read((8 + k) * 2 ** 21).fault).toBe(false);
    for (let k = 0; k < n; k++) {
      // gpte 1 of PT k: a new gpte (no spte to sync); the write makes the PT unsync.
      const gva = 100 * 2 ** 21 + k * 4096 + 8;
      expect(vcpu.write(gva, BigInt(DATA * 4096) | PRU | A | D).fault).toBe(false);
    }
    const unsync = vm.shadowPages().pages.filter((p) => p.level === 1 && p.unsync);
    expect(unsync).toHaveLength(n);
    return { vm, vcpu };
  }

  for (const [n, batches] of [
    [13, 1],
    [14, 2],
    [26, 2],
    [27, 3],
  ] as const)
    it(`${n} unsync PTs under one PD of a 4-level guest: ${batches} batch(es) of at most 13 (16 − root, PDPT, PD), one flush each`, () => {
      const { vm, vcpu } = unsyncMany(n);
      vm.startTrace(10000);
      vcpu.movCr3(0x100000);
      expect(vcpu.read(GVA).fault).toBe(true); // entry: kvm_mmu_sync_roots (PD[2] is not present)
      const reasons = vm
        .stopTrace()
        .events.filter((e) => e.name === "mmulab_flush_remote_tlbs")
        .map((e) => e.fields.reason);
      // Each batch write-protects its PTs' gfns (writable through the PT at 0x3ff): one flush.
      expect(reasons.filter((r) => r === "sync_children")).toHaveLength(batches);
      expect(vm.shadowPages().pages.filter((p) => p.unsync)).toHaveLength(0);
      expect(vm.audit()).toEqual([]);
    });
});

describe("mmu_unsync_walk over two upper-level branches", () => {
  it("unsync PTs under two PML4 entries are found in one walk: one batch", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    // PML4[1] → PDPT 0x130 → PD 0x120 → PT 0x121 (gva 2^39), written through WINDOW's PT 0x105
    // entry 3: an unsync PT below each of two PML4 entries.
    vm.guestWrite64(0x100000 + 8, 0x130000n | PRU);
    vm.guestWrite64(0x130000, 0x120000n | PRU);
    vm.guestWrite64(0x120000, 0x121000n | PRU);
    vm.guestWrite64(0x121000, BigInt(DATA * 4096) | PRU | A | D);
    vm.guestWrite64(0x105000 + 3 * 8, 0x121000n | PRU | A | D);
    expect(vcpu.access(GVA).fault).toBe(false);
    expect(vcpu.access(2 ** 39).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n);
    expect(vcpu.write(0x40003000 + 8, BigInt(DATA * 4096) | PRU | A | D).fault).toBe(false);
    expect(
      vm
        .shadowPages()
        .pages.filter((p) => p.unsync)
        .map((p) => p.gfn)
        .sort(),
    ).toEqual([PT, 0x121]);
    vm.startTrace(1000);
    syncAtEntry(vm, vcpu, WINDOW);
    const ev = vm
      .stopTrace()
      .events.filter((e) => e.name === "mmulab_flush_remote_tlbs" || e.name === "kvm_mmu_sync_page")
      .map((e) => (e.name === "kvm_mmu_sync_page" ? `sync ${e.fields.gfn}` : "flush"));
    // One batch: both PTs write-protected (one flush), both synced, then the flush for PT's
    // dropped spte 3.
    expect(ev).toEqual(["flush", "sync 0x103", "sync 0x121", "flush"]);
    expect(vm.shadowPages().pages.filter((p) => p.unsync)).toEqual([]);
  });
});

describe("INVLPG on an unsync page (__kvm_mmu_invalidate_addr)", () => {
  it("re-syncs the gva's entry: a changed gpte drops the spte with one flush; an unchanged one flushes nothing", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n);
    const flushes = () =>
      vm
        .stopTrace()
        .events.filter((e) => e.name === "mmulab_flush_remote_tlbs")
        .map((e) => e.fields.reason);
    vm.startTrace(1000);
    vcpu.invlpg(GVA + 5 * 4096); // gpte 5 unchanged
    expect(flushes()).toEqual([]);
    expect(level1(vm, PT).present(3)).toBe(true);
    vm.startTrace(1000);
    vcpu.invlpg(GVA + 3 * 4096);
    expect(flushes()).toEqual(["invalidate_addr"]);
    const pt = level1(vm, PT);
    expect(pt.present(3)).toBe(false);
    expect(pt.info.unsync).toBe(true); // INVLPG syncs one entry, the page stays unsync
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_sync_roots under PAE: each pae_root entry", () => {
  it("MOV CR3 syncs the unsync PT below PDPTE 0 (the first shadow page made)", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x1000 * 4096, flags: 0 });
    // PDPTE 0 → PD 0x101; PD[2] → PT 0x103 (gva 0x400000); PD[3] → PT 0x105 whose entry 0 maps
    // PT 0x103 (gva 0x600000: the window).
    vm.guestWrite64(0x100000, 0x101000n | P);
    vm.guestWrite64(0x101000 + 2 * 8, 0x103000n | PRU);
    vm.guestWrite64(0x101000 + 3 * 8, 0x105000n | PRU);
    vm.guestWrite64(0x105000, 0x103000n | PRU | A | D);
    for (let i = 0; i < 8; i++)
      vm.guestWrite64(0x103000 + i * 8, BigInt((DATA + i) * 4096) | PRU | A | D);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0, cpl: 3 });
    expect(vcpu.access(0x400000).fault).toBe(false);
    const roots = vm.shadowPages().pages.filter((p) => p.gfn === 0x101 && p.level === 2);
    expect(roots.map((p) => p.id)).toEqual([0]);
    expect(vcpu.write(0x600000 + 3 * 8, 0n).fault).toBe(false); // gpte 3 cleared: PT unsync
    const pt = () => vm.shadowPages().pages.find((p) => p.gfn === 0x103 && p.level === 1)!;
    expect(pt().unsync).toBe(true);
    vcpu.movCr3(0x100000);
    expect(vcpu.read(0x600000).fault).toBe(false);
    expect(pt().unsync).toBe(false);
    const spt = vm.mmu!.store.spt[pt().id]!;
    expect(spt[3 * 2]! & 0x800).toBe(0); // spte 3 dropped at the sync
    expect(vm.audit()).toEqual([]);
  });
});

describe("write flooding (detect_write_flooding, shadow_page_table_clear_flood)", () => {
  /** The guest PD 0x102, writable at gva 0x800000 through PT 0x106 (PD[4]) and at 0x40002000 (PDPT[1] → PD 0x104 → PT 0x105 entry 2). */
  function pdWindows() {
    const g = guest((i) => (i < 8 ? PRU | A | D : 0n));
    g.vm.guestWrite64(0x102000 + 4 * 8, 0x106000n | PRU);
    g.vm.guestWrite64(0x106000, 0x102000n | PRU | A | D);
    g.vm.guestWrite64(0x105000 + 2 * 8, 0x102000n | PRU | A | D);
    expect(g.vcpu.access(GVA).fault).toBe(false);
    return g;
  }
  const pdPage = (vm: Vm) =>
    vm.shadowPages().pages.filter((p) => p.gfn === 0x102 && p.level === 2 && !p.role.invalid);

  it("the third write in a row through another path zaps the guest's PD page (mmu_flooded)", () => {
    const { vm, vcpu } = pdWindows();
    for (let k = 0; k < 3; k++) {
      expect(pdPage(vm)).toHaveLength(1);
      expect(vcpu.write(0x40002000 + (20 + k) * 8, 0n).fault).toBe(false);
    }
    expect(pdPage(vm)).toHaveLength(0);
    expect(vm.stats.mmu_flooded).toBe(1);
  });

  it("a level-1 page of the same table is exempt: the PD page floods, the PT page stays", () => {
    const { vm, vcpu } = pdWindows();
    // PD[5] → PD 0x102 itself, used as a page table (gva 0xa00000): a level-1 page of 0x102 as
    // well. It is made sync and stays so (the level-2 page write-tracks 0x102).
    vm.guestWrite64(0x102000 + 5 * 8, 0x102000n | PRU);
    expect(vcpu.read(0xa00000 + 2 * 4096).fault).toBe(false);
    const pt = () =>
      vm.shadowPages().pages.filter((p) => p.gfn === 0x102 && p.level === 1 && !p.role.invalid);
    expect(pt()).toHaveLength(1);
    // Three writes through PT 0x105: each reaches both pages (for_each_gfn_valid_sp_with_gptes);
    // detect_write_flooding counts for the level-2 page only (a level-1 page may go unsync
    // instead), so the third zaps the PD page alone: mmu_flooded 1.
    for (let k = 0; k < 3; k++) expect(vcpu.write(0x40002000 + (20 + k) * 8, 0n).fault).toBe(false);
    expect(pdPage(vm)).toHaveLength(0);
    expect(pt()).toHaveLength(1);
    expect(vm.stats.mmu_flooded).toBe(1);
  });

  it("the same for a PD reached through an odd PDPT index (the whole path is reset)", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    // PDPT[1] → PD 0x104 → PT 0x105, whose entry 5 maps PD 0x104 itself at gva 0x40005000.
    vm.guestWrite64(0x105000 + 5 * 8, 0x104000n | PRU | A | D);
    expect(vcpu.access(GVA).fault).toBe(false);
    const pd = () =>
      vm.shadowPages().pages.filter((p) => p.gfn === 0x104 && p.level === 2 && !p.role.invalid);
    expect(vcpu.read(0x40005000).fault).toBe(false);
    expect(pd()).toHaveLength(1);
    for (let k = 0; k < 6; k++) expect(vcpu.write(0x40005000 + (20 + k) * 8, 0n).fault).toBe(false);
    expect(pd()).toHaveLength(1);
    expect(vm.stats.mmu_flooded).toBe(0);
  });

  it("writes whose own translation goes through the PD reset its count first: never flooded", () => {
    const { vm, vcpu } = pdWindows();
    for (let k = 0; k < 6; k++) expect(vcpu.write(0x800000 + (20 + k) * 8, 0n).fault).toBe(false);
    expect(pdPage(vm)).toHaveLength(1);
    expect(vm.stats.mmu_flooded).toBe(0);
  });
});

describe("the shadow MMU's tracepoints for unsync and sync (kvm_mmu_unsync_page, kvm_mmu_sync_page)", () => {
  it("each names the page: its gfn, and unsync as it was at the event", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA).fault).toBe(false);
    vm.startTrace(1000);
    unsyncPt(vm, vcpu, 3, 0n);
    syncAtEntry(vm, vcpu, WINDOW);
    const ev = vm
      .stopTrace()
      .events.filter((e) => e.name === "kvm_mmu_unsync_page" || e.name === "kvm_mmu_sync_page");
    expect(ev.map((e) => [e.name, e.fields.gfn, e.fields.unsync])).toEqual([
      ["kvm_mmu_unsync_page", `0x${PT.toString(16)}`, false],
      ["kvm_mmu_sync_page", `0x${PT.toString(16)}`, true],
    ]);
  });
});

describe("FNAME(sync_spte) for a page of a read-only slot (an spte without Host-writable)", () => {
  it("a gpte made not present drops it at the sync", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    readOnlySlot(vm);
    vm.guestWrite64(PT * 4096 + 4 * 8, 0x2000000n | P | US | A | D);
    expect(vcpu.access(GVA + 4 * 4096).fault).toBe(false);
    expect(level1(vm, PT).present(4)).toBe(true);
    unsyncPt(vm, vcpu, 4, 0n);
    syncAtEntry(vm, vcpu, WINDOW);
    expect(level1(vm, PT).zero(4)).toBe(true);
  });
});

describe("the shadow MMU's bookkeeping around zaps and syncs", () => {
  it("a root zapped while another vCPU still holds it is not found again: the reload builds a new one", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(0x105000 + 2 * 8, 0x100000n | PRU | A | D); // 0x40002000 → the PML4
    const other = vm.createVcpu();
    other.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
    expect(vcpu.access(GVA).fault).toBe(false);
    expect(other.access(GVA).fault).toBe(false);
    const roots = () => vm.shadowPages().pages.filter((p) => p.gfn === 0x100 && p.level === 4);
    expect(roots()).toHaveLength(1);
    // A 2-byte write inside an unused PML4 entry (detect_write_misaligned) zaps the root page:
    // invalid, kept while a vCPU holds it.
    expect(vcpu.write(0x40002000 + 300 * 8 + 1, 0n, { size: 2 }).fault).toBe(false);
    expect(vm.stats.mmu_flooded).toBe(1);
    expect(vcpu.access(GVA).fault).toBe(false); // drops its reference, looks up, builds anew
    expect(
      roots()
        .map((p) => p.role.invalid)
        .sort(),
    ).toEqual([false, true]);
    expect(other.access(GVA).fault).toBe(false); // the other vCPU moves to the new root too
    expect(roots().map((p) => p.role.invalid)).toEqual([false]);
    expect(vm.audit()).toEqual([]);
  });

  it("shadowing a table mapped writable flushes once: account_shadowed for a PT, write_track_add_gfn for a PD", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    // gpte 6 maps a future PT (0x107) writable, gpte 7 a future PD (0x108).
    vm.guestWrite64(PT * 4096 + 6 * 8, 0x107000n | PRU | A | D);
    vm.guestWrite64(PT * 4096 + 7 * 8, 0x108000n | PRU | A | D);
    vm.guestWrite64(0x108000, 0x107000n | PRU); // PD 0x108[0] → PT 0x107
    vm.guestWrite64(0x107000, BigInt(DATA * 4096) | PRU | A | D);
    expect(vcpu.write(GVA + 6 * 4096 + 0x800, 0n).fault).toBe(false); // writable sptes
    expect(vcpu.write(GVA + 7 * 4096 + 0x800, 0n).fault).toBe(false);
    vm.guestWrite64(0x102000 + 9 * 8, 0x107000n | PRU); // PD[9] → PT 0x107
    expect(flushReasons(vm, () => vcpu.read(9 * 2 ** 21))).toEqual(["account_shadowed"]);
    vm.guestWrite64(0x101000 + 4 * 8, 0x108000n | PRU); // PDPT[4] → PD 0x108
    // (Then PT 0x107's entry 0, writable with D, is made again without D through the new path:
    // make_spte keeps no D when the old spte was writable, and mmu_spte_update flushes.)
    expect(flushReasons(vm, () => vcpu.read(4 * 2 ** 30))).toEqual([
      "write_track_add_gfn",
      "mmu_set_spte",
    ]);
  });

  it("after a sync, no parent keeps an unsync-child bit for it (mmu_pages_clear_parents up to the root)", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n);
    const counts = () => unsyncChildCounts(vm);
    expect(counts()).toEqual([1, 1, 1]);
    syncAtEntry(vm, vcpu, WINDOW);
    expect(counts()).toEqual([0, 0, 0]);
  });

  it("an unsync PT zapped for an upper-level page of its gfn leaves stale bits; the next sync clears them up to the root", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n);
    const counts = () => unsyncChildCounts(vm);
    expect(counts()).toEqual([1, 1, 1]);
    // PDPT[3] names the PT's frame as a PD: the level-2 page made for it zaps the unsync PT
    // (__kvm_mmu_find_shadow_page). kvm_unlink_unsync_page and drop_parent_pte clear no
    // unsync-child bit: PD 0x102 keeps one for an entry that is no longer present. (gva 3 GiB +
    // 2 MiB: PDPT[3] → the PT's frame as a PD, its gpte 1 → page DATA + 1 as a PT → 0x300.)
    vm.guestWrite64(0x101000 + 3 * 8, BigInt(PT * 4096) | PRU);
    vm.guestWrite64((DATA + 1) * 4096, 0x300000n | PRU | A | D);
    expect(vcpu.read(3 * 2 ** 30 + 2 ** 21).fault).toBe(false);
    expect(vm.shadowPages().pages.filter((p) => p.gfn === PT && p.level === 1)).toEqual([]);
    expect(counts()).toEqual([1, 1, 1]);
    // MOV CR3 (KVM_REQ_MMU_SYNC at the next entry; a read through WINDOW takes no fault):
    // mmu_sync_children(root) walks down to PD 0x102 and clears the stale bit there; each level
    // whose walk found nothing clears its own bit above (mmu_unsync_walk's `ret == 0` case).
    const unsync = vm.stats.mmu_unsync;
    const faults = vm.stats.pf_taken;
    vcpu.movCr3(0x100000);
    expect(vcpu.read(WINDOW).fault).toBe(false);
    expect(vm.stats.pf_taken).toBe(faults);
    expect(counts()).toEqual([0, 0, 0]);
    expect(vm.stats.mmu_unsync).toBe(unsync);
    expect(vm.audit()).toEqual([]);
  });

  it("a sync that write-protects nothing flushes only if it changed an spte", () => {
    // An MMU-notifier invalidation of the PT's host page zaps its writable mapping (WINDOW)
    // before the sync: nothing is left to write-protect.
    const setup = (gpte3: bigint) => {
      const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
      expect(vcpu.access(GVA).fault).toBe(false);
      unsyncPt(vm, vcpu, 3, gpte3);
      const pt = level1(vm, PT);
      const hva = (pt.pfn(0) - DATA + PT) * 4096; // the slot maps gfns to consecutive host frames
      expect(vm.mmuNotifierInvalidateHva(hva, hva + 4096)).toBe(true);
      expect(pt.info.unsync).toBe(true);
      return { vm, vcpu };
    };
    const same = setup(BigInt((DATA + 3) * 4096) | PRU | A | D); // gpte 3 rewritten as it was
    expect(flushReasons(same.vm, () => syncAtEntry(same.vm, same.vcpu, GVA))).toEqual([]);
    const cleared = setup(0n);
    expect(flushReasons(cleared.vm, () => syncAtEntry(cleared.vm, cleared.vcpu, GVA))).toEqual([
      "sync_children",
    ]);
  });

  it("INVLPG also syncs the gva's entry below the previous roots (KVM_MMU_ROOTS_ALL)", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n);
    // Another address space: PML4 0x110 → PDPT 0x111 → PD 0x112 → PT 0x113 → DATA at gva 0.
    vm.guestWrite64(0x110000, 0x111000n | PRU);
    vm.guestWrite64(0x111000, 0x112000n | PRU);
    vm.guestWrite64(0x112000, 0x113000n | PRU);
    vm.guestWrite64(0x113000, BigInt(DATA * 4096) | PRU | A | D);
    vcpu.movCr3(0x110000);
    expect(vcpu.read(0).fault).toBe(false);
    expect(level1(vm, PT).present(3)).toBe(true); // below the previous root, still stale
    vcpu.invlpg(GVA + 3 * 4096);
    expect(level1(vm, PT).present(3)).toBe(false);
    expect(vm.audit()).toEqual([]);
  });

  it("deleting the memslot of the shadowed tables zaps every page (unaccount_shadowed without a slot)", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0, flags: 0 });
    expect(vm.shadowPages().pages.filter((p) => !p.role.invalid)).toEqual([]);
    expect(vm.stats.mmu_unsync).toBe(0);
    expect(vm.audit()).toEqual([]);
  });
});

describe("two shadow pages of one guest PT with different rights", () => {
  it("a lookup for the other role leaves the unsync one alone (only an upper-level page zaps it)", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(0x102000 + 3 * 8, BigInt(PT * 4096) | P | US); // PD[3]: the PT, read-only
    expect(vcpu.access(GVA).fault).toBe(false);
    unsyncPt(vm, vcpu, 3, 0n);
    expect(vcpu.read(0x600000).fault).toBe(false); // a second level-1 page for the PT (no W)
    const pages = vm
      .shadowPages()
      .pages.filter((p) => p.gfn === PT && p.level === 1 && !p.role.invalid);
    expect(pages).toHaveLength(2);
    expect(pages.filter((p) => p.unsync)).toHaveLength(1);
    expect(vm.audit()).toEqual([]);
  });
});

const EPT_A_BIG = BigInt(EPT_A);
const EPT_D_BIG = BigInt(EPT_D);

describe("sptes without A/D bits when EPT A/D is off (ad_disabled roots)", () => {
  it("the rmap MMU's leaves carry neither A nor D; with A/D on they do", () => {
    const leaf = (eptAccessDirty: boolean) => {
      const vm = createVm({ features: { mmuFlavor: "legacy_direct", eptAccessDirty } });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x100 * 4096, flags: 0 });
      const vcpu = vm.createVcpu();
      vm.startTrace(100);
      expect(vcpu.write(0x5000, 1n).fault).toBe(false);
      // The faulting gfn's leaf (the prefetched neighbours are made without A in any case).
      const set = vm
        .stopTrace()
        .events.filter((e) => e.name === "kvm_mmu_set_spte" && e.fields.gfn === "0x5");
      expect(set).toHaveLength(1);
      return BigInt(String(set[0]!.fields.spte));
    };
    expect(leaf(false) & (EPT_A_BIG | EPT_D_BIG)).toBe(0n);
    expect(leaf(true) & (EPT_A_BIG | EPT_D_BIG)).toBe(EPT_A_BIG | EPT_D_BIG);
  });
});

describe("which MMU made a page (sp->tdp_mmu_page)", () => {
  it("the shadow MMU's pages, indirect or direct, are not TDP MMU pages; the TDP MMU's are", () => {
    const { vm, vcpu } = guest((i) => (i < 8 ? PRU | A | D : 0n));
    vm.guestWrite64(0x102000 + 5 * 8, 0x200000n | PRU | A | D | 0x80n); // a 2M guest page
    expect(vcpu.access(GVA).fault).toBe(false);
    expect(vcpu.access(5 * 2 ** 21).fault).toBe(false);
    const pages = vm.shadowPages().pages;
    expect(pages.some((p) => p.direct)).toBe(true);
    expect(pages.filter((p) => p.tdp)).toEqual([]);
    const legacy = createVm({ features: { mmuFlavor: "legacy_direct" } });
    legacy.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x100 * 4096, flags: 0 });
    expect(legacy.createVcpu().read(0x5000).fault).toBe(false);
    expect(legacy.shadowPages().pages.filter((p) => p.tdp)).toEqual([]);
    const tdp = createVm();
    tdp.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x100 * 4096, flags: 0 });
    expect(tdp.createVcpu().read(0x5000).fault).toBe(false);
    const tdpPages = tdp.shadowPages().pages;
    expect(tdpPages.length).toBeGreaterThan(0);
    expect(tdpPages.every((p) => p.tdp)).toBe(true);
  });
});
