/**
 * The legacy ("shadow") MMU in its direct flavour (mmu.c with `tdp_mmu=0`): shadow pages found
 * by (gfn, role) in `mmu_page_hash`, kept on `active_mmu_pages` (newest at the head), counted in
 * `n_used_mmu_pages` and reclaimed from the tail when fewer than KVM_MIN_FREE_MMU_PAGES are
 * available; leaves rmapped per memslot; parents recorded per page; zapped children orphaned
 * rather than freed; `direct_pte_prefetch` of the aligned group of 8.
 *
 * Simplification (noted): a direct page has at most one parent entry here (true for every direct
 * page KVM builds; `parent_ptes` as a full pte_list is needed for indirect pages, later).
 */
import { ACC_ALL, PFERR_WRITE_MASK } from "./constants";
import { type DirectMmu, DirectMmuBase, type DirectMmuOptions } from "./direct_mmu";
import { hostPfn } from "./host";
import { gfnToIndex, slotArch } from "./lpage";
import type { MemSlot, MemSlots } from "./memslot";
import {
  kvmMmuPageGetGfn,
  kvmMmuPageSetGfn,
  type MmuPageStore,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_SPURIOUS,
} from "./mmu_page";
import {
  PteListDescPool,
  pteListAdd,
  pteListForEach,
  pteListRemove,
  SlotRmap,
  SlotRmapWalkIterator,
} from "./rmap";
import { childRole, ROLE_DIRECT, ROLE_INVALID, roleLevel } from "./role";
import {
  GFN_SPAN,
  isLastSpte,
  isMmioSpte,
  isShadowPresent,
  makeMmioSpte,
  makeNonleafSpte,
  makeSpte,
  SPTE_A,
  SPTE_D,
  SPTE_HI_MMU_WRITABLE,
  SPTE_W,
  sptePfn,
} from "./spte";
import { type KvmStats, updatePageStats } from "./stats";

/** `KVM_MMU_HASH_SHIFT` (modern). */
export const KVM_MMU_HASH_SHIFT = 12;
/** `KVM_MIN_FREE_MMU_PAGES` / `KVM_REFILL_PAGES`. */
export const KVM_MIN_FREE_MMU_PAGES = 5;
export const KVM_REFILL_PAGES = 25;
/** `PTE_PREFETCH_NUM`. */
export const PTE_PREFETCH_NUM = 8;
/** `RMAP_RECYCLE_THRESHOLD`. */
export const RMAP_RECYCLE_THRESHOLD = 1000;

/** 32×32→64-bit product, high 32 bits, exact in doubles via 16-bit halves. */
function mulHi32(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const lo = a0 * b0;
  const mid1 = a1 * b0;
  const mid2 = a0 * b1;
  const carry = Math.floor(((lo >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) / 65536);
  return (a1 * b1 + Math.floor(mid1 / 65536) + Math.floor(mid2 / 65536) + carry) >>> 0;
}

/**
 * `hash_64(gfn, 12)` = top 12 bits of (gfn × 0x61C8864680B583EB mod 2^64), without BigInt:
 * the top word of the product is hi32(gl·Cl) + gl·Ch + gh·Cl (mod 2^32).
 */
export function kvmPageTableHashfn(gfn: number): number {
  const gl = gfn >>> 0;
  const gh = Math.floor(gfn / 4294967296) >>> 0;
  const cl = 0x80b583eb;
  const ch = 0x61c88646;
  const top = (mulHi32(gl, cl) + Math.imul(gl, ch) + Math.imul(gh, cl)) >>> 0;
  return top >>> (32 - KVM_MMU_HASH_SHIFT);
}

/** Options of the legacy direct MMU. */
export interface LegacyDirectOptions extends DirectMmuOptions {
  /** `direct_pte_prefetch` of the aligned group of 8 around a 4K fault. */
  prefetch: boolean;
}

/** `roots`: roots handed to vCPUs (pages with root_count > 0, plus invalid ones still pinned). */
export class LegacyDirectMmu extends DirectMmuBase<LegacyDirectOptions> implements DirectMmu {
  readonly slots: MemSlots;
  /** `mmu_page_hash`: bucket heads (sp id or -1); chains through store.hashNext. */
  readonly hash: Int32Array = new Int32Array(1 << KVM_MMU_HASH_SHIFT).fill(-1);
  /** `active_mmu_pages`: head = newest, tail = oldest. */
  listHead = -1;
  listTail = -1;
  /** `pte_list_desc` pool for the rmaps. */
  readonly rmapPool = new PteListDescPool();
  /** `kvm->arch.mmu_valid_gen`. */
  validGen = 0;
  private readonly invalidList: number[] = [];

  constructor(store: MmuPageStore, stats: KvmStats, slots: MemSlots, opts: LegacyDirectOptions) {
    super(store, stats, opts);
    this.slots = slots;
  }

  // ---- active list and hash -------------------------------------------------------------

  private listAddHead(sp: number): void {
    const s = this.store;
    s.prev[sp] = -1;
    s.next[sp] = this.listHead;
    if (this.listHead >= 0) s.prev[this.listHead] = sp;
    this.listHead = sp;
    if (this.listTail < 0) this.listTail = sp;
  }

  private listDel(sp: number): void {
    const s = this.store;
    const p = s.prev[sp]!;
    const n = s.next[sp]!;
    if (p >= 0) s.next[p] = n;
    else if (this.listHead === sp) this.listHead = n;
    if (n >= 0) s.prev[n] = p;
    else if (this.listTail === sp) this.listTail = p;
    s.prev[sp] = -1;
    s.next[sp] = -1;
  }

  /** Whether `sp` is on the active list. */
  onActiveList(sp: number): boolean {
    return this.listHead === sp || this.store.prev[sp] !== -1;
  }

  private hashAdd(sp: number): void {
    const b = kvmPageTableHashfn(this.store.gfn[sp]!);
    this.store.hashNext[sp] = this.hash[b]!;
    this.hash[b] = sp;
  }

  private hashDel(sp: number): void {
    const b = kvmPageTableHashfn(this.store.gfn[sp]!);
    let cur = this.hash[b]!;
    let prev = -1;
    while (cur >= 0 && cur !== sp) {
      prev = cur;
      cur = this.store.hashNext[cur]!;
    }
    if (cur < 0) return;
    if (prev < 0) this.hash[b] = this.store.hashNext[sp]!;
    else this.store.hashNext[prev] = this.store.hashNext[sp]!;
    this.store.hashNext[sp] = -1;
  }

  /** A page from an older generation (`is_obsolete_sp`). */
  isObsolete(sp: number): boolean {
    return this.store.validGen[sp] !== this.validGen;
  }

  /**
   * `kvm_mmu_get_shadow_page` = `kvm_mmu_find_shadow_page` (valid pages only; other gfns in the
   * bucket are collisions) then `kvm_mmu_alloc_shadow_page` on a miss (`mmu_cache_miss`).
   */
  private getShadowPage(gfn: number, role: number): number {
    const s = this.store;
    let collisions = 0;
    for (let sp = this.hash[kvmPageTableHashfn(gfn)]!; sp >= 0; sp = s.hashNext[sp]!) {
      if (this.isObsolete(sp) || (s.role[sp]! & ROLE_INVALID) !== 0) continue;
      if (s.gfn[sp] !== gfn) {
        collisions++;
        continue;
      }
      if (s.role[sp] !== role) continue;
      if (collisions > this.stats.max_mmu_page_hash_collisions)
        this.stats.max_mmu_page_hash_collisions = collisions;
      return sp;
    }
    if (collisions > this.stats.max_mmu_page_hash_collisions)
      this.stats.max_mmu_page_hash_collisions = collisions;
    this.stats.mmu_cache_miss++;
    const sp = this.allocDirectSp(role, gfn, false);
    s.validGen[sp] = this.validGen;
    this.listAddHead(sp);
    this.hashAdd(sp);
    this.stats.n_used_mmu_pages++;
    return sp;
  }

  // ---- roots ----------------------------------------------------------------------------

  /** `mmu_alloc_direct_roots` → `mmu_alloc_root`: the root page for gfn 0, root_count++. */
  getVcpuRoot(): number {
    this.makeMmuPagesAvailable();
    const r = this.getShadowPage(0, this.opts.rootRole);
    this.store.rootCount[r]!++;
    if (!this.roots.includes(r)) this.roots.push(r);
    return r;
  }

  /** `mmu_free_root_page`: the last reference to an invalid root zaps and frees it. */
  putRoot(root: number): void {
    const s = this.store;
    if (--s.rootCount[root]! > 0) return;
    const i = this.roots.indexOf(root);
    if (i >= 0) this.roots.splice(i, 1);
    if ((s.role[root]! & ROLE_INVALID) !== 0) {
      this.prepareZapPage(root);
      this.commitZapPage();
    }
  }

  isInvalidRoot(root: number): boolean {
    return (this.store.role[root]! & ROLE_INVALID) !== 0 || this.isObsolete(root);
  }

  // ---- rmaps ----------------------------------------------------------------------------

  private slotRmap(slot: MemSlot): SlotRmap {
    const arch = slotArch(slot);
    if (arch.rmap === null) arch.rmap = new SlotRmap(slot.baseGfn, slot.npages);
    return arch.rmap;
  }

  /** `rmap_add`: translation, page stats, rmap head; recycle a head beyond the threshold. */
  private rmapAdd(slot: MemSlot, sp: number, idx: number, gfn: number, level: number): void {
    if (this.store.translation[sp]) kvmMmuPageSetGfn(this.store, sp, idx, gfn);
    updatePageStats(this.stats, level, 1);
    const heads = this.slotRmap(slot).heads[level - 1]!;
    const hi = gfnToIndex(gfn, slot.baseGfn, level);
    const count = pteListAdd(this.rmapPool, heads, hi, sp * 512 + idx);
    if (count > this.stats.max_mmu_rmap_size) this.stats.max_mmu_rmap_size = count;
    if (count > RMAP_RECYCLE_THRESHOLD) {
      this.zapRmapHead(heads, hi, level);
      this.flushRemoteTlbs("rmap_recycle");
    }
  }

  /** gfn mapped by leaf entry `idx` of `sp` (seed 2010 getter, with the self-check). */
  private entryGfn(sp: number, idx: number): number {
    const g = kvmMmuPageGetGfn(this.store, sp, idx, this.opts.allocTranslationForDirect);
    if (this.opts.selfCheckGfns && this.store.translation[sp]) {
      this.selfCheckCount++;
      const computed = kvmMmuPageGetGfn(this.store, sp, idx, false);
      const stored = kvmMmuPageGetGfn(this.store, sp, idx, true);
      if (computed !== stored) {
        throw new Error(
          `seed-2010 self-check: sp ${sp} entry ${idx}: stored gfn 0x${stored.toString(16)}, formula 0x${computed.toString(16)}`,
        );
      }
    }
    return g;
  }

  /** `drop_spte` for a present leaf: clear it (`mmu_spte_clear_track_bits`) and `rmap_remove`. */
  private dropLeaf(sp: number, idx: number, level: number): void {
    const spt = this.store.spt[sp]!;
    spt[idx * 2] = 0;
    spt[idx * 2 + 1] = 0;
    updatePageStats(this.stats, level, -1);
    const gfn = this.entryGfn(sp, idx);
    const slot = this.slots.gfnToSlot(gfn);
    const arch = slot ? slotArch(slot) : null;
    if (slot === undefined || arch?.rmap == null)
      throw new Error(`rmap_remove: no rmap for gfn 0x${gfn.toString(16)}`);
    const hi = gfnToIndex(gfn, slot.baseGfn, level);
    if (!pteListRemove(this.rmapPool, arch.rmap.heads[level - 1]!, hi, sp * 512 + idx)) {
      throw new Error(
        `rmap_remove: sp ${sp} entry ${idx} not on the rmap of gfn 0x${gfn.toString(16)}`,
      );
    }
  }

  /** `kvm_zap_rmap`: zap every spte on one head; returns whether any was zapped. */
  private zapRmapHead(heads: Uint32Array, i: number, level: number): boolean {
    if (heads[i] === 0) return false;
    const victims: number[] = [];
    pteListForEach(this.rmapPool, heads, i, (sptep) => victims.push(sptep));
    this.stats.sptes_visited += victims.length;
    for (const sptep of victims) this.dropLeaf(Math.floor(sptep / 512), sptep % 512, level);
    return victims.length > 0;
  }

  // ---- linking, zapping -----------------------------------------------------------------

  /** `drop_parent_pte`: clear the parent entry; the child becomes parentless (not freed). */
  private dropParentPte(child: number): void {
    const s = this.store;
    const p = s.parentSp[child]!;
    if (p < 0) return;
    const spt = s.spt[p]!;
    const i = s.parentIdx[child]!;
    spt[i * 2] = 0;
    spt[i * 2 + 1] = 0;
    s.parentSp[child] = -1;
    s.unlinked();
  }

  /** `__link_shadow_page`: a present (large) leaf is dropped first with a flush. */
  private linkShadowPage(sp: number, idx: number, level: number, child: number): void {
    const s = this.store;
    const lo = s.spt[sp]![idx * 2]!;
    if (isShadowPresent(lo)) {
      this.dropLeaf(sp, idx, level);
      this.flushRemoteTlbs("drop_large_spte");
    }
    makeNonleafSpte(this.out, s.spPfn(child));
    s.spt[sp]![idx * 2] = this.out.lo;
    s.spt[sp]![idx * 2 + 1] = this.out.hi;
    s.parentSp[child] = sp;
    s.parentIdx[child] = idx;
  }

  /**
   * `__kvm_mmu_prepare_zap_page`: drop every leaf, orphan every child, unlink the parent, mark
   * invalid; pages with no root reference leave n_used and go to the invalid list. Returns the
   * number of pages put on the list.
   */
  private prepareZapPage(sp: number): number {
    const s = this.store;
    this.stats.mmu_shadow_zapped++;
    const level = roleLevel(s.role[sp]!);
    const spt = s.spt[sp]!;
    for (let i = 0; i < 512; i++) {
      const lo = spt[i * 2]!;
      if (lo === 0) continue;
      if (isShadowPresent(lo)) {
        if (isLastSpte(lo, level)) this.dropLeaf(sp, i, level);
        else this.dropParentPte(s.pfnToSp(sptePfn(lo, spt[i * 2 + 1]!)));
      } else if (isMmioSpte(lo)) {
        spt[i * 2] = 0;
        spt[i * 2 + 1] = 0;
      }
    }
    this.dropParentPte(sp);
    let zapped = 0;
    if (s.rootCount[sp] === 0) {
      zapped = 1;
      if (this.onActiveList(sp)) this.listDel(sp);
      if ((s.role[sp]! & ROLE_INVALID) === 0 || !this.invalidList.includes(sp))
        this.invalidList.push(sp);
      this.stats.n_used_mmu_pages--;
      // A zapped root that nobody pins any more leaves the roots list too.
      const r = this.roots.indexOf(sp);
      if (r >= 0) this.roots.splice(r, 1);
    } else if (this.onActiveList(sp)) {
      // A pinned root leaves the active list (still counted in n_used) and is freed when its
      // root_count reaches 0.
      this.listDel(sp);
    }
    s.role[sp] = (s.role[sp]! | ROLE_INVALID) >>> 0;
    return zapped;
  }

  /** `kvm_mmu_commit_zap_page`: one remote flush if the list is non-empty, then free. */
  private commitZapPage(): void {
    if (this.invalidList.length === 0) return;
    this.flushRemoteTlbs("commit_zap_page");
    for (const sp of this.invalidList) {
      this.hashDel(sp);
      this.store.free(sp);
    }
    this.invalidList.length = 0;
  }

  /** `kvm_mmu_available_pages`. */
  availablePages(): number {
    return this.stats.n_max_mmu_pages > this.stats.n_used_mmu_pages
      ? this.stats.n_max_mmu_pages - this.stats.n_used_mmu_pages
      : 0;
  }

  /**
   * `make_mmu_pages_available`: below KVM_MIN_FREE_MMU_PAGES, zap the oldest unpinned pages
   * until KVM_REFILL_PAGES − available are gone (`kvm_mmu_zap_oldest_mmu_pages`).
   */
  makeMmuPagesAvailable(): void {
    const avail = this.availablePages();
    if (avail >= KVM_MIN_FREE_MMU_PAGES) return;
    this.zapOldestMmuPages(KVM_REFILL_PAGES - avail);
  }

  /** `kvm_mmu_zap_oldest_mmu_pages`: from the tail, skipping roots; `mmu_recycled` += zapped. */
  zapOldestMmuPages(nrToZap: number): number {
    const s = this.store;
    let total = 0;
    let sp = this.listTail;
    while (sp >= 0) {
      const prev = s.prev[sp]!;
      if (s.rootCount[sp]! > 0) {
        sp = prev;
        continue;
      }
      total += this.prepareZapPage(sp);
      if (total >= nrToZap) break;
      sp = prev;
    }
    this.commitZapPage();
    this.stats.mmu_recycled += total;
    return total;
  }

  /** `kvm_mmu_change_mmu_pages`: zap the oldest until n_used ≤ goal, then n_max = goal. */
  changeMmuPages(goal: number): void {
    if (this.stats.n_used_mmu_pages > goal)
      this.zapOldestMmuPages(this.stats.n_used_mmu_pages - goal);
    this.stats.n_max_mmu_pages = goal;
  }

  // ---- fault path -----------------------------------------------------------------------

  /** `direct_map` (preceded by `make_mmu_pages_available`), then `direct_pte_prefetch`. */
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
    this.makeMmuPagesAvailable();
    const s = this.store;
    let sp = root;
    let level = this.opts.rootLevel;
    while (level > goalLevel) {
      const idx = (gfn / GFN_SPAN[level]!) & 511;
      const lo = s.spt[sp]![idx * 2]!;
      if (isShadowPresent(lo) && !isLastSpte(lo, level)) {
        sp = s.pfnToSp(sptePfn(lo, s.spt[sp]![idx * 2 + 1]!));
        level--;
        continue;
      }
      const span = GFN_SPAN[level]!;
      const child = this.getShadowPage(gfn - (gfn % span), childRole(s.role[sp]!, true, ACC_ALL));
      this.linkShadowPage(sp, idx, level, child);
      sp = child;
      level--;
    }
    const idx = (gfn / GFN_SPAN[level]!) & 511;
    const base = gfn - (gfn % GFN_SPAN[level]!);
    if (slot === null) {
      makeMmioSpte(this.out, base, mmioGen);
      s.spt[sp]![idx * 2] = this.out.lo;
      s.spt[sp]![idx * 2 + 1] = this.out.hi;
      this.stats.pf_mmio_spte_created++;
      return RET_PF_EMULATE;
    }
    const ret = this.mmuSetSpte(sp, idx, level, base, pfn, slot, write, false, !slot.readonly);
    if (ret === RET_PF_SPURIOUS) return ret;
    if (this.opts.prefetch && level === 1) this.directPtePrefetch(sp, idx);
    return ret;
  }

  /** `mmu_set_spte` for a direct leaf. */
  private mmuSetSpte(
    sp: number,
    idx: number,
    level: number,
    gfn: number,
    pfn: number,
    slot: MemSlot,
    write: boolean,
    prefetch: boolean,
    hostWritable: boolean,
  ): number {
    const s = this.store;
    const spt = s.spt[sp]!;
    let lo = spt[idx * 2]!;
    let hi = spt[idx * 2 + 1]!;
    let flush = false;
    let wasRmapped = false;
    if (isShadowPresent(lo)) {
      if (level > 1 && !isLastSpte(lo, level)) {
        this.dropParentPte(s.pfnToSp(sptePfn(lo, hi)));
        flush = true;
      } else if (pfn !== sptePfn(lo, hi)) {
        this.dropLeaf(sp, idx, level);
        flush = true;
      } else wasRmapped = true;
      lo = spt[idx * 2]!;
      hi = spt[idx * 2 + 1]!;
    }
    const out = this.out;
    makeSpte(out, level, ACC_ALL, pfn, lo, prefetch, hostWritable, true);
    let ret = RET_PF_FIXED;
    if (out.lo === lo && out.hi === hi) ret = RET_PF_SPURIOUS;
    else {
      // mmu_spte_update: clearing W from an MMU-writable spte, or A/D, needs a flush.
      if (isShadowPresent(lo)) {
        if ((hi & SPTE_HI_MMU_WRITABLE) !== 0 && (out.lo & SPTE_W) === 0) flush = true;
        if ((lo & SPTE_A) !== 0 && (out.lo & SPTE_A) === 0) flush = true;
        if ((lo & SPTE_D) !== 0 && (out.lo & SPTE_D) === 0) flush = true;
      }
      spt[idx * 2] = out.lo;
      spt[idx * 2 + 1] = out.hi;
    }
    if (out.wrprot && write) ret = RET_PF_EMULATE;
    if (flush) this.flushRemoteTlbs("mmu_set_spte");
    if (!wasRmapped) this.rmapAdd(slot, sp, idx, gfn, level);
    if ((out.lo & SPTE_W) !== 0 && slot.dirtyBitmap !== null) slot.markDirty(gfn);
    return ret;
  }

  /** `__direct_pte_prefetch`: map the non-present runs of the aligned group of 8. */
  private directPtePrefetch(sp: number, faultIdx: number): void {
    const spt = this.store.spt[sp]!;
    const first = faultIdx & ~(PTE_PREFETCH_NUM - 1);
    let start = -1;
    for (let i = first; i < first + PTE_PREFETCH_NUM; i++) {
      if (isShadowPresent(spt[i * 2]!) || i === faultIdx) {
        if (start < 0) continue;
        if (!this.prefetchMany(sp, start, i)) return;
        start = -1;
      } else if (start < 0) start = i;
    }
    if (start >= 0) this.prefetchMany(sp, start, first + PTE_PREFETCH_NUM);
  }

  /** `direct_pte_prefetch_many`: entries [start, end) if their slot allows it; false to stop. */
  private prefetchMany(sp: number, start: number, end: number): boolean {
    const gfn = this.entryGfnFormula(sp, start);
    const slot = this.slots.gfnToSlot(gfn);
    // gfn_to_memslot_dirty_bitmap: no slot, or a dirty-logged one → no prefetch.
    if (slot === undefined || slot.dirtyBitmap !== null || slot.readonly) return false;
    // kvm_prefetch_pages: all pages must lie inside the slot.
    if (gfn + (end - start) > slot.baseGfn + slot.npages) return false;
    for (let i = start; i < end; i++) {
      const g = gfn + (i - start);
      this.mmuSetSpte(sp, i, 1, g, hostPfn(slot, g), slot, false, true, true);
    }
    return true;
  }

  private entryGfnFormula(sp: number, idx: number): number {
    return kvmMmuPageGetGfn(this.store, sp, idx, false);
  }

  /**
   * `kvm_rmap_zap_gfn_range` / `kvm_unmap_gfn_range` for rmaps: zap all sptes on every rmap head
   * (levels 1..3) of each slot overlapping [start, end).
   */
  zapLeafs(start: number, end: number): boolean {
    let flush = false;
    const w = new SlotRmapWalkIterator();
    for (w.init(this.slots.list(), start, end, 1, 3); w.valid; w.next()) {
      this.stats.rmap_heads_scanned++;
      if (this.zapRmapHead(w.heads, w.index, w.level)) flush = true;
    }
    return flush;
  }

  /** Drop the leaf mapping `gfn` under each root, each with its own flush (`kvm_flush_remote_tlbs_sptep`). */
  zapSpte(gfn: number): number {
    let n = 0;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      this.walkToLast(root, gfn);
      if (!isShadowPresent(this.lastLo)) continue;
      this.dropLeaf(this.lastSp, this.lastIdx, this.lastLevel);
      this.flushRemoteTlbs("zap_spte");
      n++;
    }
    return n;
  }

  /**
   * `kvm_mmu_zap_all_fast` with the new generation: zap obsolete pages from the tail
   * (`kvm_zap_obsolete_pages`), one commit (one flush if any page was listed). Pinned roots stay
   * until their vCPU reloads.
   */
  zapAllFast(validGen: number): void {
    this.validGen = validGen & 1;
    const s = this.store;
    let sp = this.listTail;
    while (sp >= 0) {
      const prev = s.prev[sp]!;
      if (!this.isObsolete(sp)) break;
      // Zapping a page orphans its children but removes only the page itself from the list,
      // so the previous (newer) page is still on it.
      this.prepareZapPage(sp);
      sp = prev;
    }
    this.commitZapPage();
  }

  // ---- dirty logging (rmap walks) -------------------------------------------------------

  /** Eager page splitting applies to the TDP MMU (and nested rmaps) only: nothing to split. */
  splitHugePages(_start: number, _end: number, _targetLevel: number): number {
    return 0;
  }

  /**
   * `rmap_write_protect(pt_protect = false)`: clear W (keep MMU-writable) on every spte of the
   * head; returns whether one changed.
   */
  private wrprotHead(heads: Uint32Array, i: number): boolean {
    if (heads[i] === 0) return false;
    let changed = false;
    const s = this.store;
    pteListForEach(this.rmapPool, heads, i, (sptep) => {
      const spt = s.spt[Math.floor(sptep / 512)]!;
      const o = (sptep % 512) * 2;
      this.stats.sptes_visited++;
      if ((spt[o]! & SPTE_W) === 0) return;
      spt[o] = (spt[o]! & ~SPTE_W) >>> 0;
      changed = true;
    });
    return changed;
  }

  /**
   * `kvm_mmu_slot_remove_write_access` for rmaps (`walk_slot_rmaps`, levels minLevel..3) over the
   * slots overlapping [start, end). Returns whether any spte changed.
   */
  wrprotRange(start: number, end: number, minLevel: number): boolean {
    let changed = false;
    const w = new SlotRmapWalkIterator();
    for (w.init(this.slots.list(), start, end, minLevel, 3); w.valid; w.next()) {
      this.stats.rmap_heads_scanned++;
      if (this.wrprotHead(w.heads, w.index)) changed = true;
    }
    return changed;
  }

  /**
   * `kvm_mmu_slot_gfn_write_protect` for rmaps: `rmap_write_protect(pt_protect = true)` on the
   * heads of `gfn` at levels minLevel..3 — clears W and MMU-writable. Returns whether one changed.
   */
  writeProtectGfn(gfn: number, minLevel: number): boolean {
    const slot = this.slots.gfnToSlot(gfn);
    if (slot === undefined) return false;
    const rmap = slotArch(slot).rmap;
    if (rmap === null) return false;
    const st = this.store;
    let changed = false;
    for (let level = minLevel; level <= 3; level++) {
      const heads = rmap.heads[level - 1]!;
      const i = gfnToIndex(gfn, slot.baseGfn, level);
      pteListForEach(this.rmapPool, heads, i, (sptep) => {
        const spt = st.spt[Math.floor(sptep / 512)]!;
        const o = (sptep % 512) * 2;
        if ((spt[o]! & SPTE_W) === 0 && (spt[o + 1]! & SPTE_HI_MMU_WRITABLE) === 0) return;
        spt[o] = (spt[o]! & ~SPTE_W) >>> 0;
        spt[o + 1] = (spt[o + 1]! & ~SPTE_HI_MMU_WRITABLE) >>> 0;
        changed = true;
      });
    }
    return changed;
  }

  /** `kvm_mmu_write_protect_pt_masked`: level-1 rmaps of the set bits only. */
  wrprotMasked(base: number, maskLo: number, maskHi: number): void {
    const slot = this.slots.gfnToSlot(base);
    if (slot === undefined) return;
    const rmap = slotArch(slot).rmap;
    if (rmap === null) return;
    for (let bit = 0; bit < 64; bit++) {
      if (((bit < 32 ? maskLo >>> bit : maskHi >>> (bit - 32)) & 1) === 0) continue;
      const gfn = base + bit;
      if (gfn >= slot.baseGfn + slot.npages) break;
      this.wrprotHead(rmap.heads[0], gfn - slot.baseGfn);
    }
  }

  /**
   * `kvm_rmap_zap_collapsible_sptes` (modern criterion): walk the level-1 and level-2 rmaps of
   * the range and zap every spte of a direct page whose region could be mapped one level higher
   * (`sp.level < kvm_mmu_max_mapping_level(sp.gfn)`); one batched flush at the end. Page tables
   * stay allocated (empty). Returns the number of sptes zapped.
   */
  zapCollapsible(
    start: number,
    end: number,
    canBeHuge: (gfn: number, level: number) => boolean,
  ): number {
    let n = 0;
    const s = this.store;
    const w = new SlotRmapWalkIterator();
    for (w.init(this.slots.list(), start, end, 1, 2); w.valid; w.next()) {
      if (w.heads[w.index] === 0) continue;
      this.stats.rmap_heads_scanned++;
      const victims: number[] = [];
      pteListForEach(this.rmapPool, w.heads, w.index, (sptep) => {
        const sp = Math.floor(sptep / 512);
        if ((s.role[sp]! & ROLE_DIRECT) !== 0 && canBeHuge(s.gfn[sp]!, roleLevel(s.role[sp]!) + 1))
          victims.push(sptep);
      });
      for (const sptep of victims) this.dropLeaf(Math.floor(sptep / 512), sptep % 512, w.level);
      n += victims.length;
    }
    if (n > 0) this.flushRemoteTlbs("zap_collapsible_sptes");
    return n;
  }

  /** Parentless, non-root live pages (`orphan_sps`). */
  orphanCount(): number {
    let n = 0;
    const s = this.store;
    for (let sp = 0; sp < s.created; sp++) {
      if (
        s.isLive(sp) &&
        s.parentSp[sp] === -1 &&
        s.rootCount[sp] === 0 &&
        !this.roots.includes(sp)
      )
        n++;
    }
    return n;
  }
}
