/**
 * Shadow paging (`createVm({ mmu: "shadow" })`, KVM with ept=0): the reference scenarios S4–S7
 * of the behavioural spec, with the expected numbers written from the spec's tables and the
 * geometry of the guest tables (not read back from the simulator first), plus the CR0.WP=0
 * "two sptes for one gpte" scheme, INVLPG and the cached previous roots.
 *
 * Guest of S5: 4-level, CR0.WP=1, EFER.NX=1, CPL 3; one slot gfn [0, 0x4000) with 4K backing;
 * PML4 gfn 0x100, PDPT 0x101, PD 0x102, PT 0x103; gva 0x400000 → indices (0, 0, 2, 0) → data
 * gfn 0x200; all gptes P|RW|US with A = D = 0. For S6/S7 the guest kernel also maps frames
 * 0x102 (its PD) and 0x103 (its PT) at gva 0x40000000 / 0x40001000 through PDPT entry 1 →
 * PD 0x104 → PT 0x105.
 */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder } from "../src";
import { PAGETABLE_MIME, validateDisplayPayload } from "../src/display";
import type { FeatureOptions } from "../src/era/features";
import { kvmPageTableHashfn } from "../src/mmu/mmu";
import { roleAccess, roleDirect, roleLevel } from "../src/mmu/mmu_internal";
import { gfnWriteTrackCount } from "../src/mmu/page_track";
import {
  HI_MMU_WRITABLE as SPTE_HI_MMU_WRITABLE,
  EPT_R as SPTE_R,
  EPT_W as SPTE_W,
} from "./kvm-values";

const PRU = 7n; // P | RW | US
const A = 0x20n;
const D = 0x40n;
const NX = 1n << 63n;

function s5(features: FeatureOptions = {}) {
  const vm = createVm({ mmu: "shadow", features });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
  vm.guestWrite64(0x100000, 0x101000n | PRU);
  vm.guestWrite64(0x101000, 0x102000n | PRU);
  vm.guestWrite64(0x102000 + 2 * 8, 0x103000n | PRU);
  vm.guestWrite64(0x103000, 0x200000n | PRU);
  // The kernel's window onto its own tables (S6, S7): PDPT[1] → PD 0x104 → PT 0x105.
  vm.guestWrite64(0x101000 + 8, 0x104000n | PRU);
  vm.guestWrite64(0x104000, 0x105000n | PRU);
  vm.guestWrite64(0x105000, 0x102000n | PRU); // gva 0x40000000 → gfn 0x102 (the PD)
  vm.guestWrite64(0x105008, 0x103000n | PRU); // gva 0x40001000 → gfn 0x103 (the PT)
  const vcpu = vm.createVcpu();
  // CR0 = PE|WP|PG, CR4 = PAE, EFER = LME|NXE (LMA follows), CPL 3.
  vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
  const mmu = vm.mmu!;
  const store = mmu.store;
  /** Live, valid indirect-or-direct pages by gfn (sp ids). */
  const spsAt = (gfn: number) =>
    vm
      .shadowPages()
      .pages.filter((p) => p.gfn === gfn && !p.role.invalid)
      .map((p) => p.id);
  const sp1 = (gfn: number) => {
    const l = spsAt(gfn);
    expect(l).toHaveLength(1);
    return l[0]!;
  };
  const tracked = (gfn: number) => gfnWriteTrackCount(vm.memslots.gfnToSlot(gfn)!, gfn);
  return { vm, vcpu, mmu, store, spsAt, sp1, tracked };
}

describe("S5 — shadow-paging walk (seed 2007)", () => {
  it("kvm_mmu_load: indirect level-4 root for gfn 0x100, one cache miss, 0x100 write-tracked", () => {
    const { vm, vcpu, store, sp1, tracked } = s5();
    vcpu.invlpg(0); // any guest instruction enters the guest: the root is loaded
    const root = sp1(0x100);
    expect(roleLevel(store.role[root]!)).toBe(4);
    expect(roleDirect(store.role[root]!)).toBe(false);
    expect(vm.stats.mmu_cache_miss).toBe(1);
    expect(tracked(0x100)).toBe(1);
    // hash_64(gfn, 12) buckets of the four tables (spec S5).
    expect([0x100, 0x101, 0x102, 0x103].map(kvmPageTableHashfn)).toEqual([3208, 676, 2241, 3805]);
  });

  it("steps 1-4 (modern walker)", () => {
    const { vm, vcpu, store, sp1, tracked } = s5();
    const dataBefore = vm.stats.mmu_data_pages_live;
    // 1. user read.
    expect(vcpu.access(0x400000)).toEqual({ fault: false, gpa: 0x200000 });
    let st = vm.stats;
    expect(st.gpte_reads).toBe(4);
    expect(st.gpte_ad_writes).toBe(4);
    expect(st.pf_fixed).toBe(1);
    expect(st.indirect_shadow_pages).toBe(4);
    expect(st.mmu_cache_miss).toBe(4);
    expect(st.pages_4k).toBe(1);
    expect(st.mmu_data_pages_live - dataBefore).toBe(8); // 4 pages × (spt + gfn array)
    for (const [gfn, level] of [
      [0x101, 3],
      [0x102, 2],
      [0x103, 1],
    ] as const) {
      const sp = sp1(gfn);
      expect(roleLevel(store.role[sp]!)).toBe(level);
      expect(roleAccess(store.role[sp]!)).toBe(7);
      expect(roleDirect(store.role[sp]!)).toBe(false);
    }
    expect([0x100, 0x101, 0x102, 0x103].map(tracked)).toEqual([1, 1, 1, 0]);
    const lpage = vm.memslots.gfnToSlot(0)!.arch as { lpageInfo: Int32Array[] };
    // disallow_lpage = the slot's alignment start value (its end, gfn 0x4000, is 2M- but not
    // 1G-aligned) + the 4 shadowed gfns, all in the first 2 MiB and the first 1 GiB.
    const slotEnd = 0x4000;
    const startValue = (span: number) => (slotEnd % span === 0 ? 0 : 1);
    expect(lpage.lpageInfo[0]![0]).toBe(startValue(512) + 4);
    expect(lpage.lpageInfo[1]![0]).toBe(startValue(262144) + 4);
    const pt = sp1(0x103);
    const leafLo = store.spt[pt]![0]!;
    const leafHi = store.spt[pt]![1]!;
    expect(leafLo & SPTE_R).toBe(SPTE_R); // user
    expect(leafLo & SPTE_W).toBe(0); // protect_clean_gpte: no W before D
    expect(leafHi & SPTE_HI_MMU_WRITABLE).toBe(0);
    expect(vm.readPhys64(0x103000)).toBe(0x200000n | PRU | A);

    // 2. user write, same gva: one D write (leaf), same pages, leaf gains W, D, MMU-writable.
    const flushes = vm.stats.remote_tlb_flush_requests;
    expect(vcpu.write(0x400000, 0x1234n, { size: 2 })).toEqual({ fault: false, gpa: 0x200000 });
    st = vm.stats;
    expect(st.gpte_reads).toBe(8);
    expect(st.gpte_ad_writes).toBe(5);
    expect(st.pf_fixed).toBe(2);
    expect(st.mmu_cache_miss).toBe(4);
    expect(st.remote_tlb_flush_requests).toBe(flushes);
    expect(store.spt[pt]![0]! & SPTE_W).toBe(SPTE_W);
    expect(store.spt[pt]![1]! & SPTE_HI_MMU_WRITABLE).toBe(SPTE_HI_MMU_WRITABLE);
    expect(vm.readPhys64(0x103000)).toBe(0x200000n | PRU | A | D);
    expect(vm.readPhys64(0x200000)).toBe(0x1234n);

    // 3. user read of 0x401000 (PT entry 1 not present): #PF 0x4 injected.
    expect(vcpu.access(0x401000)).toEqual({ fault: true, vector: 14, errorCode: 0x4 });
    expect(vm.stats.gpte_reads).toBe(12);
    expect(vm.stats.gpte_ad_writes).toBe(5);
    expect(vm.stats.pf_guest).toBe(1);

    // 4. user write to a gva whose leaf has RW = 0 (A = 1): error 0x7.
    vm.guestWrite64(0x103010, 0x202000n | 5n | A); // PT entry 2: P|US|A
    expect(vcpu.access(0x402000, { write: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x7,
    });
    expect(vm.stats.gpte_reads).toBe(16);
    expect(vm.stats.gpte_ad_writes).toBe(5);
    expect(vm.stats.pf_guest).toBe(2);
    expect(vm.audit()).toEqual([]);
  });

  // Walker-flavour contrasts on fresh tables (spec S5 second table).
  const flavours = [
    { walker: "modern", np: [4, 0], us: [4, 0], ok: [4, 4] },
    { walker: "w07b", np: [4, 3], us: [3, 2], ok: [4, 5] },
    { walker: "w07a", np: [4, 3], us: [3, 2], ok: [4, 5] },
    { walker: "w07p", np: [4, 3], us: [3, 2], ok: [4, 5] },
  ] as const;
  for (const f of flavours) {
    it(`walker ${f.walker}: not present / PD without US / ok write`, () => {
      let t = s5({ guestWalker: f.walker });
      expect(t.vcpu.access(0x401000)).toEqual({ fault: true, vector: 14, errorCode: 0x4 });
      expect([t.vm.stats.gpte_reads, t.vm.stats.gpte_ad_writes]).toEqual(f.np);

      t = s5({ guestWalker: f.walker });
      t.vm.guestWrite64(0x102010, 0x103000n | 3n); // PD entry 2: P|RW, no US
      expect(t.vcpu.access(0x400000)).toEqual({ fault: true, vector: 14, errorCode: 0x5 });
      expect([t.vm.stats.gpte_reads, t.vm.stats.gpte_ad_writes]).toEqual(f.us);

      t = s5({ guestWalker: f.walker });
      expect(t.vcpu.write(0x400000, 1n).fault).toBe(false);
      expect([t.vm.stats.gpte_reads, t.vm.stats.gpte_ad_writes]).toEqual(f.ok);
      expect(t.vm.readPhys64(0x103000)).toBe(0x200000n | PRU | A | D);
      // The walkers that set D at the end of the walk (from c4fcc272 on: the parent of 42bf3f0a,
      // and 2.6.25) tell the MMU of their D write (kvm_mmu_pte_write).
      expect(t.vm.stats.mmu_pte_write).toBe(f.walker === "w07b" || f.walker === "w07p" ? 1 : 0);
      expect(t.vcpu.stat.gpte_d_writes_after_walk).toBe(f.walker === "w07a" ? 1 : 0);
      expect(t.vm.audit()).toEqual([]);
    });
  }
});

describe("S4 — seed 2010 memory accounting under shadow paging", () => {
  for (const before of [false, true]) {
    it(`allocTranslationForDirect ${before}: indirect pages keep their array, the direct page ${before ? "too" : "does not"}`, () => {
      const t = s5({ allocTranslationForDirect: before });
      const base = t.vm.stats.mmu_data_pages_live;
      t.vcpu.access(0x400000);
      expect(t.vm.stats.mmu_data_pages_live - base).toBe(8);
      // A guest 2 MiB page (PD entry 3 → gfn 0x600, PS) on 4K host pages: one direct level-1
      // page keyed by the 2M-aligned gfn with the leaf's rights (user read of a clean page:
      // U|X, W removed by protect_clean_gpte).
      t.vm.guestWrite64(0x102018, 0x600000n | 0x80n | PRU);
      const mid = t.vm.stats.mmu_data_pages_live;
      expect(t.vcpu.access(0x600000 + 0x3000).fault).toBe(false);
      expect(t.vm.stats.mmu_data_pages_live - mid).toBe(before ? 2 : 1);
      const d = t.sp1(0x600);
      expect(roleDirect(t.store.role[d]!)).toBe(true);
      expect(roleLevel(t.store.role[d]!)).toBe(1);
      expect(roleAccess(t.store.role[d]!)).toBe(5);
      expect(t.store.translationAccounted(d)).toBe(before);
      expect(t.store.translation[t.sp1(0x103)]).not.toBeNull();
      expect(t.vm.audit()).toEqual([]);
    });
  }
});

describe("S6 — write flooding and emulation", () => {
  it("three aligned 8-byte writes to PD entry 100 through the kernel's window", () => {
    const t = s5();
    t.vcpu.access(0x400000);
    t.vcpu.write(0x400000, 1n);
    t.vcpu.setCpl(0);
    const pd = t.sp1(0x102);
    const pt = t.sp1(0x103);
    const gva = 0x40000000 + 100 * 8;
    const flushes0 = t.vm.stats.remote_tlb_flush_requests;

    // Write 1: slow path builds 0x104 (L2) and 0x105 (L1); the leaf for 0x102 is read-only.
    expect(t.vcpu.write(gva, 0x300000n | PRU)).toEqual({ fault: false, gpa: 0x102000 + 800 });
    let st = t.vm.stats;
    expect(st.pf_emulate).toBe(1);
    expect(st.mmu_pte_write).toBe(1);
    expect(st.mmu_pde_zapped).toBe(1);
    expect(t.store.flood[pd]).toBe(1);
    expect(roleLevel(t.store.role[t.sp1(0x104)]!)).toBe(2);
    expect(roleLevel(t.store.role[t.sp1(0x105)]!)).toBe(1);
    expect(st.indirect_shadow_pages).toBe(6);
    expect(t.vm.readPhys64(0x102000 + 800)).toBe(0x300000n | PRU);

    // Write 2: present + write + tracked → emulated at once.
    t.vcpu.write(gva, 0x301000n | PRU);
    st = t.vm.stats;
    expect(st.pf_emulate).toBe(2);
    expect(st.mmu_pte_write).toBe(2);
    expect(st.mmu_pde_zapped).toBe(2);
    expect(t.store.flood[pd]).toBe(2);
    // The writer's own path had its counts cleared.
    for (const g of [0x100, 0x101, 0x104, 0x105]) expect(t.store.flood[t.sp1(g)]).toBe(0);
    expect(st.remote_tlb_flush_requests).toBe(flushes0);

    // Write 3: flooded — the PD page is zapped, its PT child orphaned, 0x102 untracked.
    t.vcpu.write(gva, 0x302000n | PRU);
    st = t.vm.stats;
    expect(st.mmu_flooded).toBe(1);
    expect(st.mmu_shadow_zapped).toBe(1);
    expect(st.mmu_pde_zapped).toBe(2);
    expect(st.indirect_shadow_pages).toBe(5);
    expect(st.remote_tlb_flush_requests).toBe(flushes0 + 1);
    expect(t.spsAt(0x102)).toEqual([]);
    expect(t.store.isLive(pt)).toBe(true);
    expect(t.store.parentPtes[pt]).toBe(0);
    expect(t.tracked(0x102)).toBe(0);
    expect(t.vm.readPhys64(0x102000 + 800)).toBe(0x302000n | PRU);
    expect(t.vm.audit()).toEqual([]);
  });

  it("a misaligned write zaps the page at once; a 1-byte write at a gpte start does not", () => {
    const t = s5();
    t.vcpu.access(0x400000);
    t.vcpu.setCpl(0);
    // 1 byte at the start of gpte 100: tolerated (no zap).
    t.vcpu.write(0x40000000 + 800, 0x07n, { size: 1 });
    expect(t.vm.stats.mmu_flooded).toBe(0);
    // 8 bytes at offset 4 of gpte 50: straddles two gptes.
    t.vcpu.write(0x40000000 + 50 * 8 + 4, 0n);
    expect(t.vm.stats.mmu_flooded).toBe(1);
    expect(t.spsAt(0x102)).toEqual([]);
    expect(t.vm.audit()).toEqual([]);
  });
});

describe("S7 — unsync", () => {
  it("a guest write to its level-1 table makes the page unsync; MOV CR3 syncs it", () => {
    const t = s5();
    t.vcpu.access(0x400000);
    t.vcpu.write(0x400000, 1n);
    t.vcpu.setCpl(0);
    const pt = t.sp1(0x103);
    const pd = t.sp1(0x102);
    const l3 = t.sp1(0x101);
    const root = t.sp1(0x100);
    const fixed = t.vm.stats.pf_fixed;
    expect(t.vcpu.write(0x40001000 + 5 * 8, 0x300000n | PRU).fault).toBe(false);
    const st = t.vm.stats;
    expect(st.pf_emulate).toBe(0);
    expect(st.pf_fixed).toBe(fixed + 1);
    expect(st.mmu_unsync).toBe(1);
    expect(t.store.unsync[pt]).toBe(1);
    expect(t.store.unsyncChildren[pd]).toBe(1);
    expect(t.store.unsyncBitmap[pd * 16]).toBe(1 << 2);
    expect(t.store.unsyncBitmap[l3 * 16]).toBe(1);
    expect(t.store.unsyncBitmap[root * 16]).toBe(1);
    expect(t.vm.audit()).toEqual([]);
    // Further writes to 0x103 do not fault.
    const taken = t.vm.stats.pf_taken;
    t.vcpu.write(0x40001000 + 6 * 8, 0x301000n | PRU);
    expect(t.vm.stats.pf_taken).toBe(taken);
    // MOV CR3 (same value): at the next entry the root is synced.
    const flushes = t.vm.stats.remote_tlb_flush_requests;
    t.vcpu.movCr3(0x100000);
    t.vcpu.access(0x400000);
    expect(t.vm.stats.mmu_unsync).toBe(0);
    expect(t.vm.stats.remote_tlb_flush_requests).toBe(flushes + 1); // re-write-protecting 0x103
    for (const sp of [pt, pd, l3, root]) {
      expect(t.store.unsyncChildren[sp]).toBe(0);
      expect(t.store.unsyncBitmap[sp * 16]).toBe(0);
    }
    // The window onto 0x103 lost W (and MMU-writable): the next write is emulated.
    expect(t.vcpu.write(0x40001000 + 7 * 8, 0n).fault).toBe(false);
    expect(t.vm.stats.pf_fixed + t.vm.stats.pf_emulate).toBeGreaterThan(fixed + 1);
    expect(t.vm.audit()).toEqual([]);
  });

  it("INVLPG re-syncs the one entry of an unsync page; without it the stale mapping stays", () => {
    const t = s5();
    t.vcpu.access(0x400000);
    t.vcpu.setCpl(0);
    t.vcpu.write(0x40001000, 0n, { size: 1 }); // PT 0x103 goes unsync (gpte 0 low byte → 0)
    // Guest rewrote PT entry 0's low byte to 0: not present now. Without INVLPG the shadow
    // entry may still be used (architecturally a stale TLB entry).
    expect(t.vcpu.access(0x400000).fault).toBe(false);
    t.vcpu.invlpg(0x400000);
    expect(t.vm.stats.invlpg).toBe(1);
    expect(t.vcpu.access(0x400000)).toEqual({ fault: true, vector: 14, errorCode: 0 });
    expect(t.vm.audit()).toEqual([]);
  });
});

describe("the shadow tree as a display payload", () => {
  it("root, indirect pages and leaves, in the x86 spte layout, validated against display.v1", () => {
    const t = s5();
    t.vcpu.access(0x400000);
    t.vcpu.setCpl(0);
    t.vcpu.write(0x40001000 + 5 * 8, 0x300000n | PRU); // PT 0x103 goes unsync
    const view = t.vm.snapshot({ maxTables: 16 });
    const payload = view.payload();
    expect(validateDisplayPayload(PAGETABLE_MIME, payload).ok).toBe(true);
    const tree = payload.trees[0]!;
    expect(tree.kind).toBe("shadow");
    expect(tree.format).toBe("shadow");
    expect(tree.label).toMatch(/indirect sp \d+, gfn 0x100, write-tracked \(1\)/);
    const root = tree.root;
    expect(root.level).toBe(4);
    expect(root.role?.direct).toBe(false);
    const e0 = root.entries.find((e) => e.index === 0)!;
    // x86 non-leaf spte: P | W | U | A | MMU-present (bit 11), no NX.
    expect(BigInt(e0.value) & 0xfffn).toBe(0x827n);
    expect(e0.note).toMatch(/indirect sp \d+, gfn 0x101, write-tracked \(1\), unsync children 1/);
    expect(e0.flags).toContain("unsync");
    const pd = e0.child!.entries.find((e) => e.index === 0)!.child!;
    const toPt = pd.entries.find((e) => e.index === 2)!;
    expect(toPt.note).toMatch(/indirect sp \d+, gfn 0x103, write-protected, unsync/);
    const leaf = toPt.child!.entries.find((e) => e.index === 0)!;
    // The user-read leaf: P | U | A | Host-writable | MMU-present, no W, no NX; frame of gfn 0x200.
    const slot = t.vm.memslots.gfnToSlot(0x200)!;
    const pfn = BigInt(slot.baseHvfn + 0x200);
    expect(BigInt(leaf.value)).toBe((pfn << 12n) | 0x1n | 0x4n | 0x20n | 0x200n | 0x800n);
    expect(leaf.va).toBe("0x400000");
    expect(leaf.note).toBe("gfn 0x200");
    // The list of pages shows parents and states.
    const pages = t.vm.shadowPages().pages;
    const ptInfo = pages.find((p) => p.gfn === 0x103)!;
    expect(ptInfo.unsync).toBe(true);
    expect(ptInfo.parents).toEqual([{ sp: t.sp1(0x102), index: 2 }]);
    expect(pages.find((p) => p.gfn === 0x102)!.writeTracked).toBe(1);
    expect(() => t.vm.walkGpa(0)).toThrow(/gva/);
  });
});

describe("shadow paging details", () => {
  it("CR0.WP=0: a supervisor write to a read-only gpte gets W without U; a user read gets U back", () => {
    const t = s5();
    t.vm.guestWrite64(0x103000, 0x200000n | 5n); // P|US, read-only
    t.vcpu.setSregs({ cr0: 0x80000001, cpl: 0 }); // WP = 0
    expect(t.vcpu.write(0x400000, 9n).fault).toBe(false);
    const pt = t.sp1(0x103);
    expect(t.store.spt[pt]![0]! & (SPTE_W | SPTE_R)).toBe(SPTE_W);
    expect(t.vcpu.read(0x400000, { user: true })).toMatchObject({ fault: false, value: 9n });
    expect(t.store.spt[pt]![0]! & (SPTE_W | SPTE_R)).toBe(SPTE_R);
    expect(t.vcpu.access(0x400000, { user: true, write: true })).toEqual({
      fault: true,
      vector: 14,
      errorCode: 0x7,
    });
    expect(t.vm.audit()).toEqual([]);
  });

  it("EFER.NX off: pages keep efer_nx = 1, so a gpte whose bit 63 became reserved keeps its spte", () => {
    // kvm_init_shadow_mmu forces efer_nx in the root role: the context reset finds the same
    // pages again. The bare machine faults RSVD at once; KVM only once the spte is rebuilt.
    const t = s5();
    t.vm.guestWrite64(0x103000, 0x200000n | PRU | A | D | NX);
    expect(t.vcpu.write(0x400000, 1n).fault).toBe(false);
    t.vcpu.setSregs({ efer: 0x100 }); // LME only: NX off (the MMU context is reset)
    const bare = createVm({ mmu: "none" });
    bare.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
    for (const g of [0x100000, 0x101000, 0x102010, 0x103000])
      bare.guestWrite64(g, t.vm.readPhys64(g));
    const bv = bare.createVcpu();
    bv.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x100, cpl: 3 });
    expect(bv.write(0x400000, 2n)).toEqual({ fault: true, vector: 14, errorCode: 0xf });
    expect(t.vcpu.write(0x400000, 2n)).toEqual({ fault: false, gpa: 0x200000 });
    expect(t.vm.stats.mmu_cache_miss).toBe(4); // the root was found again, nothing rebuilt
    // Once the spte is rebuilt (here after a zap of the gfn), KVM agrees.
    t.vm.zapGfnRange(0x200, 0x201);
    expect(t.vcpu.write(0x400000, 2n)).toEqual({ fault: true, vector: 14, errorCode: 0xf });
  });

  // kvm_set_cr3: kvm_mmu_new_pgd only when the value changes; every load then requests a sync
  // of the roots and a local flush (kvm_invalidate_pcid → KVM_REQ_TLB_FLUSH_CURRENT, counted in
  // tlb_flush by kvm_vcpu_flush_tlb_current).
  it("MOV CR3: one local flush per load; a reload of the same value keeps the root's flooding count", () => {
    const t = s5();
    t.vm.guestWrite64(0x105010, 0x100000n | PRU); // gva 0x40002000 → gfn 0x100 (the PML4)
    t.vcpu.access(0x400000);
    const root = t.sp1(0x100);
    const st0 = { ...t.vm.stats.toJSON() };
    // A reload with nothing unsync: no remote flush, no lookup, one local flush.
    t.vcpu.movCr3(0x100000);
    t.vcpu.access(0x400000);
    let st = t.vm.stats;
    expect(st.tlb_flush - st0.tlb_flush!).toBe(1);
    expect(st.remote_tlb_flush_requests).toBe(st0.remote_tlb_flush_requests);
    expect(st.mmu_cache_miss).toBe(st0.mmu_cache_miss);
    // An emulated write to the PML4 counts once against the root (its own fault cleared the
    // path first: shadow_page_table_clear_flood).
    t.vcpu.setCpl(0);
    t.vcpu.write(0x40002000 + 5 * 8, 0n);
    expect(t.store.flood[root]).toBe(1);
    t.vcpu.movCr3(0x100000);
    t.vcpu.access(0x400000, { user: true });
    expect(t.store.flood[root]).toBe(1); // no kvm_mmu_new_pgd for the same value
    st = t.vm.stats;
    expect(st.tlb_flush - st0.tlb_flush!).toBe(2);
    // Away and back: kvm_mmu_new_pgd finds the root in prev_roots and clears its count.
    t.vm.guestWrite64(0x110000, 0x101000n | PRU);
    t.vcpu.movCr3(0x110000);
    t.vcpu.movCr3(0x100000);
    t.vcpu.access(0x400000, { user: true });
    expect(t.vcpu.mmu.root).toBe(root);
    expect(t.store.flood[root]).toBe(0);
    expect(t.vm.audit()).toEqual([]);
  });

  it("MOV CR3 back to an earlier root reuses it from prev_roots (no cache miss)", () => {
    const t = s5();
    t.vcpu.access(0x400000);
    // A second address space: PML4 0x110 → the same PDPT.
    t.vm.guestWrite64(0x110000, 0x101000n | PRU);
    t.vcpu.movCr3(0x110000);
    t.vcpu.access(0x400000);
    const miss = t.vm.stats.mmu_cache_miss;
    t.vcpu.movCr3(0x100000);
    t.vcpu.access(0x400000);
    expect(t.vm.stats.mmu_cache_miss).toBe(miss);
    expect(t.vcpu.mmu.root).toBe(t.sp1(0x100));
    expect(Array.from(t.vcpu.mmu.prevRootSp)).toContain(t.sp1(0x110));
    expect(t.vm.audit()).toEqual([]);
  });
});

describe("guests not in long mode (pae_root)", () => {
  const MiB = 1024 * 1024;
  function legacy(mode: "32-bit" | "pae") {
    const vm = createVm({ mmu: "shadow", maxPhysAddrBits: 36 });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 32 * MiB, flags: 0 });
    const b = new GuestPageTableBuilder(vm, { mode, poolBase: 16 * MiB, poolSize: MiB });
    const big = mode === "32-bit" ? 4 * MiB : 2 * MiB;
    b.map(0, 0, 16 * MiB + big, { writable: true, pageSize: big, accessed: true, dirty: true });
    b.map(0x40000000, 20 * MiB, 4 * MiB, { writable: true, user: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...b.sregs({}), cpl: 0 });
    return { vm, vcpu, b };
  }
  const live = (vm: ReturnType<typeof createVm>) =>
    vm.shadowPages().pages.filter((p) => !p.role.invalid);

  it("32-bit: four level-2 roots (the quarters of the guest PD), level-1 pages for PT halves", () => {
    const { vm, vcpu, b } = legacy("32-bit");
    expect(vcpu.access(0x40000000).fault).toBe(false); // guest PDE 256, first half of its PT
    expect(vcpu.access(0x40200000).fault).toBe(false); // guest PDE 256, second half
    const pdGfn = b.root / 4096;
    const roots = live(vm).filter((p) => p.gfn === pdGfn);
    expect(roots.map((p) => [p.level, p.role.quadrant, p.role.hasFourByteGpte])).toEqual([
      [2, 0, true],
      [2, 1, true],
      [2, 2, true],
      [2, 3, true],
    ]);
    const ptGfn = b.entryAddress(0x40000000, 1)! >>> 12;
    const pts = live(vm).filter((p) => p.gfn === ptGfn);
    expect(pts.map((p) => [p.level, p.role.quadrant]).sort()).toEqual([
      [1, 0],
      [1, 1],
    ]);
    // A 4-byte store of a non-zero guest PDE zaps the two 2 MiB shadow entries that cover its
    // 4 MiB (get_written_sptes), both counted in mmu_pde_zapped.
    const pdeGpa = b.entryAddress(0x40000000, 2)!;
    const old = vm.readPhys64(pdeGpa) & 0xffffffffn;
    expect(vcpu.write(pdeGpa, old, { size: 4 }).fault).toBe(false);
    expect(vm.stats.mmu_pte_write).toBe(1);
    expect(vm.stats.mmu_pde_zapped).toBe(2);
    expect(vm.audit()).toEqual([]);
  });

  it("PAE: one root per present PDPTE register; 4-byte stores are widened to the 8-byte gpte", () => {
    const { vm, vcpu, b } = legacy("pae");
    expect(vcpu.access(0x40000000).fault).toBe(false);
    const roots = live(vm).filter((p) => p.root);
    // The builder's PDPT: entry 0 (the identity map) and 1 (the test region at 1 GiB).
    const present = [0, 1, 2, 3].filter((i) => (vm.readPhys64(b.root + i * 8) & 1n) !== 0n);
    expect(roots.length).toBe(present.length);
    expect(roots.every((p) => p.level === 2 && !p.role.hasFourByteGpte)).toBe(true);
    // A 4-byte store to the low half of a PDE: is_pae widens it to the aligned gpte (no
    // misaligned-write zap).
    const pdeGpa = b.entryAddress(0x40000000, 2)!;
    const low = vm.readPhys64(pdeGpa) & 0xffffffffn;
    expect(vcpu.write(pdeGpa, low, { size: 4 }).fault).toBe(false);
    expect(vm.stats.mmu_pte_write).toBe(1);
    expect(vm.stats.mmu_flooded).toBe(0);
    expect(vm.stats.mmu_pde_zapped).toBe(1);
    expect(vm.audit()).toEqual([]);
  });

  it("paging off: four direct level-2 roots for the four GiB; gva = gpa; 2 MiB mappings at most", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 8 * MiB,
      flags: 0,
      backing: "thp",
    });
    const vcpu = vm.createVcpu();
    expect(vcpu.write(0x201008, 0x55n)).toEqual({ fault: false, gpa: 0x201008 });
    expect(vcpu.read(0x201008)).toMatchObject({ fault: false, value: 0x55n });
    const roots = live(vm).filter((p) => p.root);
    expect(roots.map((p) => [p.gfn, p.level, p.direct])).toEqual([
      [0, 2, true],
      [0x40000, 2, true],
      [0x80000, 2, true],
      [0xc0000, 2, true],
    ]);
    expect(vm.stats.pages_2m).toBe(1); // THP backing: a 2 MiB spte (nonpaging max_level)
    expect(vm.stats.pf_guest).toBe(0);
    expect(vcpu.access(0x10000000)).toEqual({ fault: false, gpa: 0x10000000, mmio: true });
    expect(vm.audit()).toEqual([]);
  });
});

describe("seed 2015 under shadow paging: only direct pages collapse", () => {
  for (const collapse of ["rmap2015", "zap"] as const) {
    it(`${collapse}: a guest 2 MiB page mapped with 4K sptes while logging collapses; guest 4K pages (indirect level-1 pages) never do`, () => {
      const MiB = 1024 * 1024;
      const vm = createVm({ mmu: "shadow", features: { collapseOnLogDisable: collapse } });
      const region = (flags: number) =>
        vm.setUserMemoryRegion({
          slot: 0,
          guestPhysAddr: 0,
          memorySize: 64 * MiB,
          flags,
          backing: "thp",
        });
      region(0);
      const b = new GuestPageTableBuilder(vm, {
        mode: "4-level",
        poolBase: 16 * MiB,
        poolSize: MiB,
      });
      b.map(0x40000000, 32 * MiB, 2 * MiB, { writable: true }); // 512 guest 4K pages
      b.map(0x40200000, 34 * MiB, 2 * MiB, { writable: true, pageSize: 2 * MiB }); // one 2M page
      const vcpu = vm.createVcpu();
      vcpu.setSregs({ ...b.sregs({}), cpl: 0 });
      region(1); // KVM_MEM_LOG_DIRTY_PAGES
      for (let k = 0; k < 1024; k++) vcpu.write(0x40000000 + k * 4096, 1n);
      expect(vm.stats.pages_4k).toBe(1024);
      const before = vm.stats.collapse_sptes_zapped;
      region(0);
      expect(vm.stats.collapse_sptes_zapped - before).toBe(512);
      expect(vm.stats.pages_4k).toBe(512); // the indirect level-1 page keeps its 512 sptes
      const direct = vm.shadowPages().pages.filter((p) => p.direct && !p.role.invalid);
      expect(direct.map((p) => [p.gfn, p.level, p.leaves])).toEqual([[(34 * MiB) / 4096, 1, 0]]);
      // The next touch maps the guest's 2M page with one 2M spte.
      const faults = vm.stats.pf_taken;
      vcpu.read(0x40200000 + 0x1000);
      expect(vm.stats.pf_taken - faults).toBe(1);
      expect(vm.stats.pages_2m).toBe(1);
      expect(vm.audit()).toEqual([]);
    });
  }
});
