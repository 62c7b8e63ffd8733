/**
 * The TDP MMU (tdp_mmu.c): roots found by role and refcounted, children created on demand by
 * `kvm_tdp_mmu_map`, huge leaves split in place, leaves zapped by range, roots invalidated and
 * zapped by the fast zap. Every spte change goes through {@link TdpMmu.handleChangedSpte}, the
 * one place that updates pages_4k/2m/1g and tdp_mmu_pages, tears down child tables and runs the
 * seed-2010 self-check.
 *
 * A TLB flush is a returned boolean; only the operations at the top (mmu.ts) count them, except
 * the flushes KVM performs inside the fault path itself (replacing a non-leaf by a huge leaf),
 * which are counted through the `flushRemoteTlbs` callback.
 */

import { ACC_ALL, PFERR_FETCH_MASK, PFERR_WRITE_MASK } from "./constants";
import { type DirectMmu, DirectMmuBase, type DirectMmuOptions } from "./direct_mmu";
import type { MemSlot } from "./memslot";
import {
  kvmMmuPageGetGfn,
  kvmMmuPageSetGfn,
  type MmuPageStore,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_SPURIOUS,
  SP_ROOT_ZAPPED,
} from "./mmu_page";
import { childRole, ROLE_INVALID, roleLevel } from "./role";
import {
  GFN_SPAN,
  isAccessAllowed,
  isLastSpte,
  isShadowPresent,
  makeMmioSpte,
  makeNonleafSpte,
  makeSplitSpte,
  makeSpte,
  pfnHi,
  pfnLo,
  SPTE_HI_MMU_WRITABLE,
  SPTE_HI_PFN_MASK,
  SPTE_PS,
  SPTE_W,
  sptePfn,
} from "./spte";
import { type KvmStats, updatePageStats } from "./stats";
import { TdpIter } from "./tdp_iter";

/** Construction options of the TDP MMU (the common ones). */
export type TdpMmuOptions = DirectMmuOptions;

/** Violation found by the seed-2010 self-check. */
export class GfnSelfCheckError extends Error {}

/** `roots` is `kvm->arch.tdp_mmu_roots`: root sp ids, valid and invalid. */
export class TdpMmu extends DirectMmuBase<TdpMmuOptions> implements DirectMmu {
  private readonly it: TdpIter;

  constructor(store: MmuPageStore, stats: KvmStats, opts: TdpMmuOptions) {
    super(store, stats, opts);
    this.it = new TdpIter(store);
  }

  private allocSp(role: number, gfn: number): number {
    return this.allocDirectSp(role, gfn, true);
  }

  /**
   * `kvm_tdp_mmu_get_vcpu_root_hpa`: a valid root with the role gets one more reference; else a
   * new root with two (the vCPU's and the MMU's own, dropped when the root is invalidated).
   */
  getVcpuRoot(): number {
    for (const r of this.roots) {
      if (this.store.role[r] === this.opts.rootRole) {
        this.store.rootCount[r]!++;
        return r;
      }
    }
    const r = this.allocSp(this.opts.rootRole, 0);
    this.store.rootCount[r] = 2;
    this.roots.push(r);
    return r;
  }

  /** `kvm_tdp_mmu_put_root`: drop a reference; the last one zaps and frees the root. */
  putRoot(root: number): void {
    if (--this.store.rootCount[root]! > 0) return;
    this.zapRoot(root);
    const i = this.roots.indexOf(root);
    if (i >= 0) this.roots.splice(i, 1);
    this.store.free(root);
  }

  /** Whether a root was invalidated (`root->role.invalid`). */
  isInvalidRoot(root: number): boolean {
    return (this.store.role[root]! & ROLE_INVALID) !== 0;
  }

  /**
   * `handle_changed_spte`: bookkeeping for one spte transition at `level` mapping `gfn`, found
   * at entry `idx` of `sp`. Forbids replacing a present leaf by a present leaf of another pfn.
   */
  handleChangedSpte(
    sp: number,
    idx: number,
    gfn: number,
    oldLo: number,
    oldHi: number,
    newLo: number,
    newHi: number,
    level: number,
  ): void {
    const wasPresent = isShadowPresent(oldLo);
    const isPresent = isShadowPresent(newLo);
    const wasLeaf = wasPresent && isLastSpte(oldLo, level);
    const isLeaf = isPresent && isLastSpte(newLo, level);
    const pfnChanged = sptePfn(oldLo, oldHi) !== sptePfn(newLo, newHi);
    if (wasLeaf && isLeaf && pfnChanged) {
      throw new Error(
        `handle_changed_spte: present leaf for gfn 0x${gfn.toString(16)} at level ${level} replaced by another pfn`,
      );
    }
    if (wasLeaf !== isLeaf) {
      updatePageStats(this.stats, level, isLeaf ? 1 : -1);
      if (this.store.translation[sp]) {
        if (wasLeaf) this.checkGfn(sp, idx, gfn);
        else kvmMmuPageSetGfn(this.store, sp, idx, gfn);
      }
    }
    if (wasPresent && !wasLeaf && (isLeaf || !isPresent || pfnChanged)) {
      this.handleRemovedPt(this.store.pfnToSp(sptePfn(oldLo, oldHi)));
    }
  }

  /** Seed-2010 self-check: stored gfn (set at install) equals the direct-page formula. */
  private checkGfn(sp: number, idx: number, gfn: number): void {
    if (!this.opts.selfCheckGfns) return;
    this.selfCheckCount++;
    const stored = kvmMmuPageGetGfn(this.store, sp, idx, true);
    const computed = kvmMmuPageGetGfn(this.store, sp, idx, false);
    if (stored !== computed || stored !== gfn) {
      throw new GfnSelfCheckError(
        `seed-2010 self-check: sp ${sp} entry ${idx}: stored gfn 0x${stored.toString(16)}, formula 0x${computed.toString(16)}, walk 0x${gfn.toString(16)}`,
      );
    }
  }

  /** `handle_removed_pt`: zero every entry of an unlinked table (recursively) and free it. */
  private handleRemovedPt(sp: number): void {
    const store = this.store;
    const level = roleLevel(store.role[sp]!);
    const base = store.gfn[sp]!;
    const span = GFN_SPAN[level]!;
    const spt = store.spt[sp]!;
    this.stats.tdp_mmu_pages--;
    for (let i = 0; i < 512; i++) {
      const lo = spt[i * 2]!;
      if (lo === 0) continue;
      const hi = spt[i * 2 + 1]!;
      spt[i * 2] = 0;
      spt[i * 2 + 1] = 0;
      this.handleChangedSpte(sp, i, base + i * span, lo, hi, 0, 0, level);
    }
    store.free(sp);
  }

  /** Write entry `idx` of `sp` and run the bookkeeping (`tdp_mmu_set_spte`). */
  setSpte(sp: number, idx: number, level: number, gfn: number, lo: number, hi: number): void {
    const spt = this.store.spt[sp]!;
    const oldLo = spt[idx * 2]!;
    const oldHi = spt[idx * 2 + 1]!;
    spt[idx * 2] = lo;
    spt[idx * 2 + 1] = hi;
    this.handleChangedSpte(sp, idx, gfn, oldLo, oldHi, lo, hi, level);
  }

  private iterSet(lo: number, hi: number): void {
    const it = this.it;
    const oldLo = it.oldLo;
    const oldHi = it.oldHi;
    it.write(lo, hi);
    this.handleChangedSpte(it.sp, it.index, it.gfn, oldLo, oldHi, lo, hi, it.level);
  }

  /** `tdp_mmu_link_sp`: point the current entry at a new child table. */
  private linkSp(child: number): void {
    makeNonleafSpte(this.out, this.store.spPfn(child));
    this.store.parentSp[child] = this.it.sp;
    this.store.parentIdx[child] = this.it.index;
    this.iterSet(this.out.lo, this.out.hi);
    this.stats.tdp_mmu_pages++;
  }

  /**
   * `tdp_mmu_split_huge_page`: fill `child` with the 512 pieces of the huge leaf at the
   * iterator and link it in its place; no flush (the translation does not change).
   */
  private splitHugePage(child: number): void {
    const it = this.it;
    const level = it.level;
    const spt = this.store.spt[child]!;
    const out = this.out;
    const span = GFN_SPAN[level - 1]!;
    for (let i = 0; i < 512; i++) {
      makeSplitSpte(out, it.oldLo, it.oldHi, level, i);
      spt[i * 2] = out.lo;
      spt[i * 2 + 1] = out.hi;
      if (this.store.translation[child]) kvmMmuPageSetGfn(this.store, child, i, it.gfn + i * span);
    }
    this.linkSp(child);
    updatePageStats(this.stats, level - 1, 512);
    this.stats.huge_splits++;
  }

  /**
   * `kvm_tdp_mmu_map`: descend along `gfn` creating (or splitting into) child tables down to
   * `goalLevel`, then install the leaf (`tdp_mmu_map_handle_target_level`).
   * @param slot the gfn's memslot, or null for an MMIO spte
   * @returns RET_PF_FIXED, RET_PF_SPURIOUS or RET_PF_EMULATE
   */
  map(
    root: number,
    gfn: number,
    goalLevel: number,
    pfn: number,
    slot: MemSlot | null,
    err: number,
    mmioGen: number,
  ): number {
    const write = (err & PFERR_WRITE_MASK) !== 0;
    const it = this.it;
    const store = this.store;
    it.start(root, this.opts.rootLevel, goalLevel, gfn, gfn + 1);
    while (it.level > goalLevel) {
      const lo = it.oldLo;
      if (!isShadowPresent(lo) || isLastSpte(lo, it.level)) {
        const child = this.allocSp(childRole(store.role[it.sp]!, true, ACC_ALL), it.gfn);
        if (isShadowPresent(lo)) this.splitHugePage(child);
        else this.linkSp(child);
      }
      it.stepDown();
    }
    const out = this.out;
    const oldLo = it.oldLo;
    const oldHi = it.oldHi;
    // A leaf that already allows the access (another vCPU fixed it first) is left alone.
    if (
      isShadowPresent(oldLo) &&
      isLastSpte(oldLo, it.level) &&
      isAccessAllowed(oldLo, write, (err & PFERR_FETCH_MASK) !== 0)
    ) {
      return RET_PF_SPURIOUS;
    }
    if (slot === null) makeMmioSpte(out, it.gfn, mmioGen);
    else makeSpte(out, it.level, ACC_ALL, pfn, oldLo, false, !slot.readonly, true);
    let ret = RET_PF_FIXED;
    if (out.lo === oldLo && out.hi === oldHi) {
      ret = RET_PF_SPURIOUS;
    } else {
      this.iterSet(out.lo, out.hi);
      // A huge leaf replacing a table: the old translations must go (kvm_flush_remote_tlbs_gfn).
      if (isShadowPresent(oldLo) && !isLastSpte(oldLo, it.level))
        this.flushRemoteTlbs("huge_leaf_over_table");
    }
    if (out.wrprot && write) ret = RET_PF_EMULATE;
    if (slot === null) {
      this.stats.pf_mmio_spte_created++;
      ret = RET_PF_EMULATE;
    } else if ((out.lo & SPTE_W) !== 0 && slot.dirtyBitmap !== null) {
      slot.markDirty(gfn);
    }
    return ret;
  }

  /** `tdp_mmu_zap_leafs` over every root: zero every present leaf in [start, end). */
  zapLeafs(start: number, end: number): boolean {
    let flush = false;
    const it = this.it;
    for (const root of this.roots) {
      for (it.start(root, this.opts.rootLevel, 1, start, end); it.valid; it.next()) {
        if (!isShadowPresent(it.oldLo) || !isLastSpte(it.oldLo, it.level)) continue;
        this.iterSet(0, 0);
        flush = true;
      }
      this.stats.tdp_iter_steps += it.steps;
    }
    return flush;
  }

  /**
   * Zap the one leaf mapping `gfn` in each root, each as an atomic zap followed by its own
   * `kvm_flush_remote_tlbs_gfn` (`tdp_mmu_zap_spte_atomic`). Returns the number zapped.
   */
  zapSpte(gfn: number): number {
    let n = 0;
    for (const root of this.roots) {
      this.walkToLast(root, gfn);
      if (!isShadowPresent(this.lastLo)) continue;
      const level = this.lastLevel;
      const base = gfn - (gfn % GFN_SPAN[level]!);
      this.setSpte(this.lastSp, this.lastIdx, level, base, 0, 0);
      this.flushRemoteTlbs("zap_spte_atomic");
      n++;
    }
    return n;
  }

  /** `tdp_mmu_zap_root`: zero every top-level entry (tearing the tree down); no flush. */
  private zapRoot(root: number): void {
    const level = this.opts.rootLevel;
    const spt = this.store.spt[root]!;
    for (let i = 0; i < 512; i++) {
      if (spt[i * 2] === 0) continue;
      this.setSpte(root, i, level, i * GFN_SPAN[level]!, 0, 0);
    }
  }

  // ---- dirty logging (tdp_mmu.c) ------------------------------------------------------------

  /**
   * `kvm_tdp_mmu_try_split_huge_pages`: split every huge leaf overlapping [start, end) down to
   * `targetLevel` in every valid root (a 1G leaf becomes 512 2M leaves, which are then split in
   * turn as the walk steps into the new table). No flush. Returns the number of splits.
   */
  splitHugePages(start: number, end: number, targetLevel: number): number {
    const it = this.it;
    let n = 0;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.opts.rootLevel, targetLevel + 1, start, end); it.valid; it.next()) {
        if (
          it.level <= targetLevel ||
          !isShadowPresent(it.oldLo) ||
          !isLastSpte(it.oldLo, it.level)
        )
          continue;
        const child = this.allocSp(childRole(this.store.role[it.sp]!, true, ACC_ALL), it.gfn);
        this.splitHugePage(child);
        n++;
      }
      this.stats.tdp_iter_steps += it.steps;
    }
    return n;
  }

  /**
   * `wrprot_gfn_range` over every valid root: clear W (keep MMU-writable) on present leaves at
   * level ≥ `minLevel` in [start, end). Returns whether any spte changed.
   */
  wrprotRange(start: number, end: number, minLevel: number): boolean {
    const it = this.it;
    let changed = false;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.opts.rootLevel, minLevel, start, end); it.valid; it.next()) {
        const lo = it.oldLo;
        if (!isShadowPresent(lo) || !isLastSpte(lo, it.level) || (lo & SPTE_W) === 0) continue;
        this.iterSet((lo & ~SPTE_W) >>> 0, it.oldHi);
        changed = true;
      }
    }
    return changed;
  }

  /**
   * `kvm_tdp_mmu_write_protect_gfn`: clear W and MMU-writable (page-table style protection) on
   * every leaf at level ≥ `minLevel` that maps `gfn`. Returns whether one changed.
   */
  writeProtectGfn(gfn: number, minLevel: number): boolean {
    const it = this.it;
    let changed = false;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.opts.rootLevel, minLevel, gfn, gfn + 1); it.valid; it.next()) {
        const lo = it.oldLo;
        if (!isShadowPresent(lo) || !isLastSpte(lo, it.level)) continue;
        const hi = it.oldHi;
        if ((lo & SPTE_W) === 0 && (hi & SPTE_HI_MMU_WRITABLE) === 0) continue;
        this.iterSet((lo & ~SPTE_W) >>> 0, (hi & ~SPTE_HI_MMU_WRITABLE) >>> 0);
        changed = true;
      }
    }
    return changed;
  }

  /**
   * `clear_dirty_pt_masked` with wrprot (no PML): for each set bit of the 64-bit mask (lo, hi
   * words) clear W on the 4K leaf of gfn `base + bit`; huge leaves are skipped.
   */
  wrprotMasked(base: number, maskLo: number, maskHi: number): void {
    const it = this.it;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.opts.rootLevel, 1, base, base + 64); it.valid; it.next()) {
        const lo = it.oldLo;
        if (it.level > 1 || !isShadowPresent(lo) || !isLastSpte(lo, 1)) continue;
        const bit = it.gfn - base;
        if (bit < 0 || ((bit < 32 ? maskLo >>> bit : maskHi >>> (bit - 32)) & 1) === 0) continue;
        if ((lo & SPTE_W) === 0) continue;
        this.iterSet((lo & ~SPTE_W) >>> 0, it.oldHi);
      }
    }
  }

  /**
   * `zap_collapsible_spte_range` (v5.10–v6.12): in [start, end), zap each non-leaf entry at levels
   * 2..3 whose region could be mapped at its own level (`canBeHuge(gfn, level)`), freeing the
   * table below; each is an atomic zap with its own remote flush. Returns the number zapped.
   */
  zapCollapsible(
    start: number,
    end: number,
    canBeHuge: (gfn: number, level: number) => boolean,
  ): number {
    return this.collapseRange(start, end, canBeHuge, false);
  }

  /**
   * `recover_huge_pages_range` (v6.13+): in [start, end), replace each non-leaf entry at levels
   * 2..3 whose region may be mapped at its level by a huge leaf made from the first present leaf
   * below it (`make_huge_spte`: PS set, address aligned down, flags kept); the table below is
   * freed. Returns the number installed; the caller flushes once (batched).
   */
  recoverHugePages(
    start: number,
    end: number,
    canBeHuge: (gfn: number, level: number) => boolean,
  ): number {
    return this.collapseRange(start, end, canBeHuge, true);
  }

  /**
   * The walk both collapse strategies share: every non-leaf entry at levels 2..3 of a valid root
   * whose gfn lies in [start, end) and whose region `canBeHuge` at its own level is either
   * replaced by a huge leaf (`recover`) or zapped with its own remote flush.
   */
  private collapseRange(
    start: number,
    end: number,
    canBeHuge: (gfn: number, level: number) => boolean,
    recover: boolean,
  ): number {
    const it = this.it;
    const out = this.out;
    let n = 0;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.opts.rootLevel, 2, start, end); it.valid; it.next()) {
        const lo = it.oldLo;
        if (it.level > 3 || !isShadowPresent(lo) || isLastSpte(lo, it.level)) continue;
        if (it.gfn < start || it.gfn >= end || !canBeHuge(it.gfn, it.level)) continue;
        if (!recover) {
          this.iterSet(0, 0);
          this.flushRemoteTlbs("zap_collapsible_spte");
          n++;
          continue;
        }
        if (!this.firstLeafBelow(this.store.pfnToSp(sptePfn(lo, it.oldHi)), it.level - 1)) continue;
        const span = GFN_SPAN[it.level]!;
        const pfn = sptePfn(out.lo, out.hi);
        const huge = pfn - (pfn % span);
        this.iterSet(
          ((out.lo & 0xfff) | SPTE_PS | pfnLo(huge)) >>> 0,
          ((out.hi & ~SPTE_HI_PFN_MASK) | pfnHi(huge)) >>> 0,
        );
        n++;
      }
    }
    return n;
  }

  /** `tdp_mmu_make_huge_spte`'s search: the first present leaf under table `sp`, into `out`. */
  private firstLeafBelow(sp: number, level: number): boolean {
    const spt = this.store.spt[sp]!;
    for (let i = 0; i < 512; i++) {
      const lo = spt[i * 2]!;
      if (!isShadowPresent(lo)) continue;
      if (isLastSpte(lo, level)) {
        this.out.lo = lo;
        this.out.hi = spt[i * 2 + 1]!;
        return true;
      }
      if (this.firstLeafBelow(this.store.pfnToSp(sptePfn(lo, spt[i * 2 + 1]!)), level - 1))
        return true;
    }
    return false;
  }

  /** Fast zap: invalidate every root, then zap the invalidated ones. */
  zapAllFast(_validGen: number): void {
    this.invalidateAllRoots();
    this.zapInvalidatedRoots();
  }

  /** `kvm_tdp_mmu_invalidate_roots`: mark every root invalid (vCPUs reload on next entry). */
  invalidateAllRoots(): void {
    for (const r of this.roots) this.store.role[r] = (this.store.role[r]! | ROLE_INVALID) >>> 0;
  }

  /**
   * `kvm_tdp_mmu_zap_invalidated_roots`: zap each invalid root's tree and drop the MMU's own
   * reference; a root no vCPU holds is freed. No flush (the roots are unreachable).
   */
  zapInvalidatedRoots(): void {
    for (const r of [...this.roots]) {
      if (!this.isInvalidRoot(r) || (this.store.flags[r]! & SP_ROOT_ZAPPED) !== 0) continue;
      this.store.flags[r]! |= SP_ROOT_ZAPPED;
      this.zapRoot(r);
      this.putRoot(r);
    }
  }
}
