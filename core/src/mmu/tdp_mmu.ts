/**
 * The TDP MMU (tdp_mmu.c): roots found by role and refcounted, children created on demand by
 * `kvm_tdp_mmu_map`, huge leaves split in place, leaves zapped by range, roots invalidated and
 * zapped by the fast zap.
 *
 * Every spte change goes through {@link TdpMmu.handleChangedSpte}, the one sink of this MMU: it
 * updates pages_4k/2m/1g and tdp_mmu_pages, marks a page dirty when a 4K leaf becomes writable
 * (as v5.10–v6.x's `handle_changed_spte_dirty_log`), tears down child tables, runs the seed-2010
 * self-check and tells the simulated CPU that cached translations went stale.
 *
 * A TLB flush is a returned boolean; only the operations at the top (mmu.ts) count them, except
 * the flushes KVM performs inside an operation (replacing a non-leaf by a huge leaf, atomic zaps
 * of v5.10–v6.12), which call `kvm_flush_remote_tlbs` themselves.
 */

import { ACC_ALL } from "../arch/constants";
import { MmuBugError } from "../errors";
import { AGE_YOUNG, AGE_ZAPPED } from "../kvm/kvm_main";
import { updatePageStats } from "../kvm/stats";
import {
  childRole,
  type KvmPageFault,
  kvmMmuPageSetGfn,
  LastSpte,
  type MmuCore,
  type MmuPageStore,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_SPURIOUS,
  ROLE_AD_DISABLED,
  ROLE_INVALID,
  roleLevel,
  SP_ROOT_ZAPPED,
  walkToLastSpte,
} from "./mmu_internal";
import { EV } from "./mmutrace";
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
  SPTE_A,
  SPTE_D,
  SPTE_HI_MMU_WRITABLE,
  SPTE_HI_PFN_MASK,
  SPTE_PS,
  SPTE_W,
  SpteOut,
  sptePfn,
} from "./spte";
import { TdpIter } from "./tdp_iter";

/** `kvm->arch.tdp_mmu_roots` and the functions of tdp_mmu.c. */
/** `ENOMEM`: what a failed allocation returns (traced negated, as KVM traces `ret`). */
const ENOMEM = 12;

/**
 * Tables that splitting the huge leaf at `gfn`, `level` down to `targetLevel` allocates when
 * the split walks [start, end): one for the leaf, plus those of its pieces in the range.
 */
function splitTables(
  gfn: number,
  level: number,
  start: number,
  end: number,
  target: number,
): number {
  if (level <= target) return 0;
  const span = GFN_SPAN[level - 1]!;
  if (level - 1 <= target) return 1;
  const lo = Math.max(start, gfn);
  const hi = Math.min(end, gfn + span * 512);
  let n = 1;
  for (let g = Math.floor(lo / span) * span; g < hi; g += span)
    n += splitTables(g, level - 1, start, end, target);
  return n;
}

export class TdpMmu {
  readonly core: MmuCore;
  readonly store: MmuPageStore;
  /** TDP root level (4 or 5). */
  readonly rootLevel: number;
  /** Role of every root (`kvm_calc_tdp_mmu_root_page_role`). */
  readonly rootRole: number;
  /** `tdp_mmu_roots`: root sp ids, valid and invalid. */
  readonly roots: number[] = [];
  private readonly it: TdpIter;
  /** Scratch output of the make_*_spte helpers. */
  private readonly out = new SpteOut();
  private readonly last = new LastSpte();

  /** features.hugeOnDirtyWrite "zap" (v5.10-5.19): a huge leaf in the way is zapped, not split. */
  private readonly hugeZap: boolean;

  constructor(core: MmuCore, rootLevel: number, rootRole: number, hugeZap = false) {
    this.hugeZap = hugeZap;
    this.core = core;
    this.store = core.store;
    this.rootLevel = rootLevel;
    this.rootRole = rootRole;
    if ((rootRole & ROLE_AD_DISABLED) !== 0) this.out.adKeep = ~(SPTE_A | SPTE_D);
    this.it = new TdpIter(core.store);
  }

  /**
   * `kvm_tdp_mmu_get_vcpu_root_hpa`: a valid root with the role gets one more reference; else a
   * new root with two (the vCPU's and the MMU's own, dropped when the root is invalidated).
   */
  getVcpuRoot(): number {
    for (const r of this.roots) {
      if (this.store.role[r] === this.rootRole) {
        this.store.rootCount[r]!++;
        return r;
      }
    }
    const r = this.core.allocDirectSp(this.rootRole, 0, true);
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

  /** The first valid root, or undefined (for views). */
  firstValidRoot(): number | undefined {
    return this.roots.find((r) => !this.isInvalidRoot(r));
  }

  /**
   * `handle_changed_spte`: bookkeeping for one spte transition at `level` mapping `gfn`, found
   * at entry `idx` of `sp`. Forbids replacing a present leaf by a present leaf of another pfn.
   * `traced` is false only for the fast path's write, which KVM makes without this function.
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
    traced = true,
  ): void {
    const store = this.store;
    store.spteEpoch++;
    store.tableSpteChanged(gfn, level);
    if (store.pwTrack) store.logPossibleWritable(sp, idx, oldLo, oldHi, newLo, newHi);
    if (traced && this.core.trace.on)
      this.core.trace.emit(EV.tdpChanged, 0, gfn, level, oldLo, oldHi, newLo, newHi);
    const wasPresent = isShadowPresent(oldLo);
    const isPresent = isShadowPresent(newLo);
    const wasLeaf = wasPresent && isLastSpte(oldLo, level);
    const isLeaf = isPresent && isLastSpte(newLo, level);
    if (wasLeaf && isLeaf && sptePfn(oldLo, oldHi) !== sptePfn(newLo, newHi)) {
      throw new MmuBugError(
        "handle_changed_spte",
        `present leaf for gfn 0x${gfn.toString(16)} at level ${level} replaced by another pfn`,
      );
    }
    if (wasLeaf !== isLeaf) {
      updatePageStats(this.core.stats, level, isLeaf ? 1 : -1);
      if (store.translation[sp]) {
        if (wasLeaf) this.core.checkGfn(sp, idx, gfn);
        else kvmMmuPageSetGfn(store, sp, idx, gfn);
      }
    }
    // handle_changed_spte_dirty_log: a 4K leaf that becomes writable will be written (a leaf
    // keeps its pfn, see above). Nothing to mark while no memslot logs.
    if (
      level === 1 &&
      isLeaf &&
      (newLo & SPTE_W) !== 0 &&
      ((oldLo & SPTE_W) === 0 || !wasLeaf) &&
      this.core.slots.nrMemslotsDirtyLogging !== 0
    ) {
      const slot = this.core.slots.gfnToSlot(gfn);
      if (slot !== undefined) this.core.markPageDirtyInSlot(slot, gfn);
    }
    if (
      wasPresent &&
      !wasLeaf &&
      (isLeaf || !isPresent || sptePfn(oldLo, oldHi) !== sptePfn(newLo, newHi))
    ) {
      this.handleRemovedPt(store.pfnToSp(sptePfn(oldLo, oldHi)));
    }
  }

  /** `handle_removed_pt`: zero every entry of an unlinked table (recursively) and free it. */
  private handleRemovedPt(sp: number): void {
    const store = this.store;
    const level = roleLevel(store.role[sp]!);
    const base = store.gfn[sp]!;
    const span = GFN_SPAN[level]!;
    const spt = store.spt[sp]!;
    this.core.stats.tdp_mmu_pages--;
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
    this.core.stats.tdp_mmu_pages++;
  }

  /**
   * `tdp_mmu_split_huge_page`: fill `child` with the 512 pieces of the huge leaf at the
   * iterator and link it in its place; no flush (the translation does not change). The pieces
   * are written directly and counted at once (`kvm_update_page_stats`), as KVM does.
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
      // Seed 2017: the pieces written here bypass handle_changed_spte, their bits do not.
      if (this.store.pwTrack) this.store.logPossibleWritable(child, i, 0, 0, out.lo, out.hi);
    }
    const hugeLo = it.oldLo;
    const hugeHi = it.oldHi;
    this.linkSp(child);
    updatePageStats(this.core.stats, level - 1, 512);
    this.core.stats.huge_splits++;
    // At the end, after the link's kvm_tdp_mmu_spte_changed, with the huge spte it replaced
    // (tdp_mmu_split_huge_page, `out:` label).
    if (this.core.trace.on) this.core.trace.emit(EV.split, it.gfn, hugeLo, hugeHi, level, 0);
  }

  /**
   * `kvm_tdp_mmu_map`: descend along `fault.gfn` creating (or splitting into) child tables down
   * to `fault.goalLevel`, then install the leaf (`tdp_mmu_map_handle_target_level`).
   * @returns RET_PF_FIXED, RET_PF_SPURIOUS or RET_PF_EMULATE
   */
  map(root: number, fault: KvmPageFault): number {
    fault.mappedLeaf = true;
    const goalLevel = fault.goalLevel;
    // kvm_tdp_mmu_map: trace_kvm_mmu_spte_requested before the descent.
    if (this.core.trace.on) this.core.trace.emit(EV.spteRequested, fault.gfn, fault.pfn, goalLevel);
    const it = this.it;
    const store = this.store;
    it.start(root, this.rootLevel, goalLevel, fault.gfn, fault.gfn + 1);
    while (it.level > goalLevel) {
      const lo = it.oldLo;
      if (!isShadowPresent(lo) || isLastSpte(lo, it.level)) {
        const child = this.core.allocDirectSp(
          childRole(store.role[it.sp]!, true, ACC_ALL),
          it.gfn,
          true,
        );
        if (!isShadowPresent(lo)) this.linkSp(child);
        else if (this.hugeZap) {
          // v5.10-5.19: zap the huge leaf (its own flush), then link an empty table.
          this.iterSet(0, 0);
          this.core.flushRemoteTlbs("zap_huge_spte");
          this.linkSp(child);
        } else this.splitHugePage(child);
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
      isAccessAllowed(oldLo, fault.write, fault.exec)
    ) {
      return RET_PF_SPURIOUS;
    }
    const slot = fault.slot;
    if (slot === null) makeMmioSpte(out, it.gfn, this.core.mmioGen);
    else makeSpte(out, it.level, ACC_ALL, fault.pfn, oldLo, false, fault.mapWritable, true);
    let ret = RET_PF_FIXED;
    if (out.lo === oldLo && out.hi === oldHi) {
      ret = RET_PF_SPURIOUS;
    } else {
      this.iterSet(out.lo, out.hi);
      if (this.core.trace.on) {
        const sptep = it.sp * 512 + it.index;
        this.core.trace.emit(EV.setSpte, it.gfn, out.lo, out.hi, sptep, it.level);
      }
      // A huge leaf replacing a table: the old translations must go (kvm_flush_remote_tlbs_gfn).
      if (isShadowPresent(oldLo) && !isLastSpte(oldLo, it.level))
        this.core.flushRemoteTlbs("huge_leaf_over_table");
    }
    if (out.wrprot && fault.write) ret = RET_PF_EMULATE;
    if (slot === null) {
      this.core.stats.pf_mmio_spte_created++;
      ret = RET_PF_EMULATE;
    }
    return ret;
  }

  /** `tdp_mmu_zap_leafs` over every root: zero every present leaf in [start, end). */
  zapLeafs(start: number, end: number): boolean {
    let flush = false;
    const it = this.it;
    for (const root of this.roots) {
      for (it.start(root, this.rootLevel, 1, start, end); it.valid; it.next()) {
        if (!isShadowPresent(it.oldLo) || !isLastSpte(it.oldLo, it.level)) continue;
        this.iterSet(0, 0);
        flush = true;
      }
      this.core.stats.tdp_iter_steps += it.steps;
    }
    return flush;
  }

  /**
   * `kvm_tdp_mmu_age_gfn_range` (`clear`) / `kvm_tdp_mmu_test_age_gfn`: whether a leaf in
   * [start, end) was accessed since the last aging, clearing A on the way when `clear`. No flush
   * here: the notifier decides. Leaves without A/D bits (role.ad_disabled) count as young; aging
   * zaps them — the pre-v4.10 emulation of A for EPT without A/D (kvm_age_hva called
   * kvm_unmap_rmapp); v4.10+ marks them for access tracking instead and restores them on the
   * fast path, which the simulator does not model. Returns {@link AGE_YOUNG} | {@link AGE_ZAPPED}.
   */
  ageGfnRange(start: number, end: number, clear: boolean): number {
    let ret = 0;
    const it = this.it;
    const role = this.store.role;
    for (const root of this.roots) {
      for (it.start(root, this.rootLevel, 1, start, end); it.valid; it.next()) {
        if (!isShadowPresent(it.oldLo) || !isLastSpte(it.oldLo, it.level)) continue;
        if ((role[it.sp]! & ROLE_AD_DISABLED) !== 0) {
          ret |= AGE_YOUNG;
          if (clear) {
            this.iterSet(0, 0);
            ret |= AGE_ZAPPED;
          }
        } else if ((it.oldLo & SPTE_A) !== 0) {
          ret |= AGE_YOUNG;
          // tdp_mmu_clear_spte_bits: only A changes, which handle_changed_spte has no work for.
          if (clear) this.iterSet((it.oldLo & ~SPTE_A) >>> 0, it.oldHi);
        }
      }
      this.core.stats.tdp_iter_steps += it.steps;
    }
    return ret;
  }

  /**
   * Zap the one leaf mapping `gfn` in each root, each as an atomic zap followed by its own
   * `kvm_flush_remote_tlbs_gfn` (`tdp_mmu_zap_spte_atomic`). Returns the number zapped.
   */
  zapSpte(gfn: number): number {
    let n = 0;
    const last = this.last;
    for (const root of this.roots) {
      walkToLastSpte(this.store, root, this.rootLevel, gfn, last);
      if (!isShadowPresent(last.lo)) continue;
      const base = gfn - (gfn % GFN_SPAN[last.level]!);
      this.setSpte(last.sp, last.idx, last.level, base, 0, 0);
      this.core.flushRemoteTlbs("zap_spte_atomic");
      n++;
    }
    return n;
  }

  /** `tdp_mmu_zap_root`: zero every top-level entry (tearing the tree down); no flush. */
  private zapRoot(root: number): void {
    const level = this.rootLevel;
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
    return this.splitWalk(start, end, targetLevel, false);
  }

  /**
   * Page tables {@link splitHugePages}(start, end, targetLevel) would allocate, counted on the
   * live tables without changing them: a huge leaf at level L takes one table, and each of its
   * pieces overlapping [start, end) above targetLevel takes its own in turn.
   */
  splitTablesNeeded(start: number, end: number, targetLevel: number): number {
    return this.splitWalk(start, end, targetLevel, true);
  }

  /** The walk of both: split each huge leaf met (returns the splits), or count the tables. */
  private splitWalk(start: number, end: number, targetLevel: number, count: boolean): number {
    const it = this.it;
    const store = this.store;
    const memcg = store.memcg;
    const translation = this.core.directTranslation;
    let n = 0;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.rootLevel, targetLevel + 1, start, end); it.valid; it.next()) {
        if (
          it.level <= targetLevel ||
          !isShadowPresent(it.oldLo) ||
          !isLastSpte(it.oldLo, it.level)
        )
          continue;
        if (count) {
          n += splitTables(it.gfn, it.level, start, end, targetLevel);
          continue;
        }
        // The ioctls check the whole split first; a path that did not (a dirty-ring reset)
        // stops here as tdp_mmu_split_huge_pages_root does when it cannot allocate: -ENOMEM
        // traced, the remaining huge pages left for write faults to split.
        if (
          !memcg.fits(store.allocBytesBound(1, translation), store.allocHeapBound(1, translation))
        ) {
          if (this.core.trace.on)
            this.core.trace.emit(EV.split, it.gfn, it.oldLo, it.oldHi, it.level, -ENOMEM);
          this.core.stats.tdp_iter_steps += it.steps;
          return n;
        }
        const child = this.core.allocDirectSp(
          childRole(this.store.role[it.sp]!, true, ACC_ALL),
          it.gfn,
          true,
        );
        this.splitHugePage(child);
        n++;
      }
      if (!count) this.core.stats.tdp_iter_steps += it.steps;
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
      for (it.start(root, this.rootLevel, minLevel, start, end); it.valid; it.next()) {
        const lo = it.oldLo;
        if (!isShadowPresent(lo) || !isLastSpte(lo, it.level) || (lo & SPTE_W) === 0) continue;
        this.iterSet((lo & ~SPTE_W) >>> 0, it.oldHi);
        changed = true;
      }
      this.core.stats.tdp_iter_steps += it.steps;
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
      for (it.start(root, this.rootLevel, minLevel, gfn, gfn + 1); it.valid; it.next()) {
        const lo = it.oldLo;
        if (!isShadowPresent(lo) || !isLastSpte(lo, it.level)) continue;
        const hi = it.oldHi;
        if ((lo & SPTE_W) === 0 && (hi & SPTE_HI_MMU_WRITABLE) === 0) continue;
        this.iterSet((lo & ~SPTE_W) >>> 0, (hi & ~SPTE_HI_MMU_WRITABLE) >>> 0);
        changed = true;
      }
      this.core.stats.tdp_iter_steps += it.steps;
    }
    return changed;
  }

  /**
   * `clear_dirty_pt_masked` with wrprot (no PML): for each set bit of the 64-bit mask (lo, hi
   * words) clear W on the 4K leaf of gfn `base + bit`; huge leaves are skipped.
   */
  wrprotMasked(base: number, maskLo: number, maskHi: number, clear = SPTE_W): void {
    const it = this.it;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.rootLevel, 1, base, base + 64); it.valid; it.next()) {
        const lo = it.oldLo;
        if (it.level > 1 || !isShadowPresent(lo) || !isLastSpte(lo, 1)) continue;
        const bit = it.gfn - base;
        // Stryker disable next-line ArithmeticOperator: JS shift counts are mod 32, so bit - 32 and bit + 32 shift alike
        if (bit < 0 || ((bit < 32 ? maskLo >>> bit : maskHi >>> (bit - 32)) & 1) === 0) continue;
        if ((lo & clear) === 0) continue;
        this.iterSet((lo & ~clear) >>> 0, it.oldHi);
      }
      this.core.stats.tdp_iter_steps += it.steps;
    }
  }

  /**
   * `clear_dirty_gfn_range` (PML, `kvm_mmu_slot_leaf_clear_dirty`): clear D on every 4K leaf
   * mapping [start, end). Returns whether one changed.
   */
  clearDirtyRange(start: number, end: number): boolean {
    const it = this.it;
    let changed = false;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      for (it.start(root, this.rootLevel, 1, start, end); it.valid; it.next()) {
        const lo = it.oldLo;
        if (it.level > 1 || !isShadowPresent(lo) || (lo & SPTE_D) === 0) continue;
        this.iterSet((lo & ~SPTE_D) >>> 0, it.oldHi);
        changed = true;
      }
      this.core.stats.tdp_iter_steps += it.steps;
    }
    return changed;
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
      for (it.start(root, this.rootLevel, 2, start, end); it.valid; it.next()) {
        const lo = it.oldLo;
        if (it.level > 3 || !isShadowPresent(lo) || isLastSpte(lo, it.level)) continue;
        if (it.gfn < start || it.gfn >= end || !canBeHuge(it.gfn, it.level)) continue;
        if (!recover) {
          this.iterSet(0, 0);
          this.core.flushRemoteTlbs("zap_collapsible_spte");
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
      this.core.stats.tdp_iter_steps += it.steps;
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

  /**
   * The fast path's cmpxchg of a leaf found by a lockless walk (`fast_pf_fix_direct_spte`),
   * through this MMU's sink so that the dirty mark and the CPU's caches follow.
   */
  fastPfFixSpte(last: LastSpte, gfn: number, newLo: number): void {
    const base = gfn - (gfn % GFN_SPAN[last.level]!);
    const spt = this.store.spt[last.sp]!;
    const oldLo = spt[last.idx * 2]!;
    const oldHi = spt[last.idx * 2 + 1]!;
    spt[last.idx * 2] = newLo;
    spt[last.idx * 2 + 1] = last.hi;
    // fast_pf_fix_direct_spte (mmu.c) is a bare try_cmpxchg64 of the spte, not
    // handle_changed_spte: no kvm_tdp_mmu_spte_changed (fast_page_fault is its tracepoint). The
    // simulator's bookkeeping still runs; of KVM's, that is the dirty marking done there.
    this.handleChangedSpte(
      last.sp,
      last.idx,
      base,
      oldLo,
      oldHi,
      newLo,
      last.hi,
      last.level,
      false,
    );
  }

  /** Fast zap: invalidate every root, then zap the invalidated ones. */
  zapAllFast(): void {
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
