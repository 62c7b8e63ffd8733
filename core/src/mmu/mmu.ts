/**
 * The x86 MMU of one VM (mmu.c): the page-fault entry (`kvm_mmu_page_fault`,
 * `kvm_mmu_do_page_fault`), the TDP handler (`kvm_tdp_page_fault`: `fast_page_fault`,
 * `kvm_faultin_pfn`, `kvm_mmu_hugepage_adjust`), MMIO sptes, loading roots (`kvm_mmu_load`),
 * `kvm_init_mmu`'s choice of handlers, the VM-wide operations (zaps, write protection for dirty
 * logging, collapse, `kvm_mmu_change_mmu_pages`), and the rmap/hash MMU KVM calls the shadow MMU:
 * rmaps (`pte_list_*`), shadow pages found by (gfn, role) in `mmu_page_hash`, kept on
 * `active_mmu_pages`, counted in `n_used_mmu_pages` and reclaimed from the oldest.
 *
 * Like mmu.c, VM-wide operations run each MMU's part: the TDP MMU's (tdp_mmu.ts) when it is on,
 * the shadow MMU's when the memslots have rmaps (`kvm_memslots_have_rmaps`).
 *
 * KVM's layout keeps all of this in mmu.c; so does this file (a 2023 series split the shadow MMU
 * into shadow_mmu.c, but it was not merged).
 */
import {
  ACC_ALL,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  EFER_NX,
  KVM_MEM_LOG_DIRTY_PAGES,
  PFERR_RSVD_MASK,
  X86_CR0_WP,
  X86_CR4_PAE,
  X86_CR4_PKE,
  X86_CR4_PSE,
  X86_CR4_SMAP,
  X86_CR4_SMEP,
} from "../arch/constants";
import { pagingModeOf, reservedMasks, rootLevelOf } from "../arch/guest_pte";
import { updatePermissionBitmask, updatePkruBitmask } from "../arch/permission";
import type { Features } from "../era/features";
import { MmuBugError } from "../errors";
import { hostMappingLevel, hostPfn } from "../kvm/host";
import {
  AGE_YOUNG,
  AGE_ZAPPED,
  KVM_REQ_MMU_FREE_OBSOLETE_ROOTS,
  KVM_REQ_MMU_SYNC,
  KVM_REQ_TLB_FLUSH,
  type Kvm,
  type KvmVcpuCommon,
} from "../kvm/kvm_main";
import { HEAP_TYPED_ARRAY_BYTES, MC, type MemCg } from "../kvm/memcg";
import type { MemSlot, MemSlots } from "../kvm/memslot";
import { type KvmStats, updatePageStats } from "../kvm/stats";
import {
  childRole,
  gfnToIndex,
  KVM_DUMMY_ROOT,
  KVM_MMU_NUM_PREV_ROOTS,
  KVM_PAE_ROOT,
  type KvmMmu,
  type KvmPageFault,
  kvmMmuPageGetGfn,
  kvmMmuPageSetGfn,
  LastSpte,
  type MmuCore,
  MmuPageStore,
  makeSpteMarkDirty,
  RET_PF_CONTINUE,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_INVALID,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  ROLE_ACCESS_SHIFT,
  ROLE_AD_DISABLED,
  ROLE_CR0_WP,
  ROLE_DIRECT,
  ROLE_EFER_NX,
  ROLE_HAS_4_BYTE_GPTE,
  ROLE_INVALID,
  ROLE_LEVEL_MASK,
  ROLE_PASSTHROUGH,
  ROLE_QUADRANT_SHIFT,
  ROLE_SMAP_ANDNOT_WP,
  ROLE_SMEP_ANDNOT_WP,
  roleAccess,
  roleLevel,
  roleQuadrant,
  type ShadowMmuOps,
  SlotArch,
  type SlotRmap,
  shadowRootFor,
  slotArch,
  tdpRootRole,
  walkToLastSpte,
} from "./mmu_internal";
import { EV, MmuTrace } from "./mmutrace";
import { kvmGfnIsWriteTracked, updateGfnWriteTrack } from "./page_track";
import { fnamePageFault, fnameSyncSpte, PTE_PREFETCH_NUM, type ShadowWalkCtx } from "./paging_tmpl";
import {
  GFN_SPAN,
  isAccessAllowed,
  isLastSpte,
  isMmioSpte,
  isShadowPresent,
  MMIO_SPTE_GEN_MASK,
  makeMmioSpte,
  makeNonleafSpte,
  makeSpte,
  mmioSpteGen,
  mmioSpteGfn,
  SPTE_A,
  SPTE_D,
  SPTE_HI_HOST_WRITABLE,
  SPTE_HI_MMU_WRITABLE,
  SPTE_W,
  SpteOut,
  spteIndex,
  sptePfn,
} from "./spte";
import { TdpMmu } from "./tdp_mmu";

/** `KVM_MMU_HASH_SHIFT` (modern). */
export const KVM_MMU_HASH_SHIFT = 12;
/** `KVM_MIN_FREE_MMU_PAGES` / `KVM_REFILL_PAGES`. */
export const KVM_MIN_FREE_MMU_PAGES = 5;
export const KVM_REFILL_PAGES = 25;
/** `RMAP_RECYCLE_THRESHOLD`. */
export const RMAP_RECYCLE_THRESHOLD = 1000;
/**
 * The rights an MMIO spte keeps, as `mark_mmio_spte` traces them (mmu.c: `access &= ACC_WRITE_MASK
 * | ACC_USER_MASK`, later `shadow_mmio_access_mask`).
 */
const MMIO_ACCESS_MASK = ACC_WRITE_MASK | ACC_USER_MASK;

/** `KVM_MIN_ALLOC_MMU_PAGES`: the least `KVM_SET_NR_MMU_PAGES` accepts, and the default floor. */
export const KVM_MIN_ALLOC_MMU_PAGES = 64;
/** `KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO`: default n_max_mmu_pages = slot pages / 50. */
export const KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO = 50;

// ---- rmaps: pte_list (mmu.c) -------------------------------------------------------------------

/*
 * Reverse maps: for each (slot, level, gfn index) the list of sptes that map it, in KVM's
 * encoding, on typed arrays. An "sptep" is the 32-bit number `sp * 512 + index` (sp < 2^22).
 *
 *  head word (Uint32Array per level)   0            empty
 *                                      (sptep+1)<<1 exactly one spte        (bit 0 clear; +1 so that
 *                                                   sptep 0 is not mistaken for empty)
 *                                      (desc<<1)|1  a pte_list_desc chain   (bit 0 set)
 *  pte_list_desc (Int32Array, stride 16): [0] more (next desc or -1), [1] spte_count,
 *                                         [2..15] sptes[PTE_LIST_EXT = 14]
 *
 * As in the modern kernel, a new descriptor becomes the head when the head is full (so every
 * tail descriptor is full) and removal fills the hole with the head descriptor's last entry.
 */

/** `PT64_ROOT_MAX_LEVEL`: the deepest table walk (5-level paging), pages a fault may add. */
const PT64_ROOT_MAX_LEVEL = 5;

/** `PTE_LIST_EXT` (modern). */
export const PTE_LIST_EXT = 14;
const DESC_STRIDE = 16;

/** Descriptor pool shared by all rmaps of a VM (`pte_list_desc_cache`). */
export class PteListDescPool {
  desc: Int32Array = new Int32Array(DESC_STRIDE * 64);
  /** `PTE_LIST_EXT`: sptes per descriptor (14 modern, 3 before v6.1; at most 14). */
  readonly ext: number;
  /** The VM's memory account (category `pteListDescs`), or null (a standalone pool). */
  private readonly memcg: MemCg | null;

  constructor(ext = PTE_LIST_EXT, memcg: MemCg | null = null) {
    this.ext = ext;
    this.memcg = memcg;
    memcg?.charge(MC.pteListDescs, this.desc.byteLength, HEAP_TYPED_ARRAY_BYTES);
  }

  /**
   * Bytes that `n` more descriptors may add (the pool doubling), for the check before a fault:
   * KVM tops up its `pte_list_desc` cache with 1 + PT64_ROOT_MAX_LEVEL + PTE_PREFETCH_NUM.
   */
  growBytesBound(n: number): number {
    return (this.nextNew + n) * DESC_STRIDE > this.desc.length ? this.desc.byteLength : 0;
  }

  private freeHead = -1;
  private nextNew = 0;
  /** Live descriptors. */
  live = 0;

  alloc(): number {
    let d: number;
    if (this.freeHead >= 0) {
      d = this.freeHead;
      this.freeHead = this.desc[d * DESC_STRIDE]!;
    } else {
      d = this.nextNew++;
      if ((d + 1) * DESC_STRIDE > this.desc.length) {
        const n = new Int32Array(this.desc.length * 2);
        n.set(this.desc);
        this.memcg?.charge(MC.pteListDescs, n.byteLength - this.desc.byteLength);
        this.desc = n;
      }
    }
    this.desc[d * DESC_STRIDE] = -1;
    this.desc[d * DESC_STRIDE + 1] = 0;
    this.live++;
    return d;
  }

  release(d: number): void {
    this.desc[d * DESC_STRIDE] = this.freeHead;
    this.freeHead = d;
    this.live--;
  }

  bytes(): number {
    return this.desc.byteLength;
  }
}

/**
 * `pte_list_add`: add `sptep` to the list at `heads[i]`; returns the number of entries before
 * the add (KVM uses it for `max_mmu_rmap_size` and the recycle threshold).
 */
export function pteListAdd(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  sptep: number,
): number {
  const h = heads[i]!;
  if (h === 0) {
    heads[i] = (sptep + 1) * 2;
    return 0;
  }
  if ((h & 1) === 0) {
    const d = pool.alloc();
    const o = d * DESC_STRIDE;
    pool.desc[o + 1] = 2;
    pool.desc[o + 2] = h / 2 - 1;
    pool.desc[o + 3] = sptep;
    heads[i] = d * 2 + 1;
    return 1;
  }
  let d = (h - 1) / 2;
  let o = d * DESC_STRIDE;
  // Count = head's entries + PTE_LIST_EXT per (full) tail descriptor.
  let count = pool.desc[o + 1]!;
  const ext = pool.ext;
  for (let t = pool.desc[o]!; t >= 0; t = pool.desc[t * DESC_STRIDE]!) count += ext;
  if (pool.desc[o + 1] === ext) {
    const nd = pool.alloc();
    pool.desc[nd * DESC_STRIDE] = d;
    d = nd;
    o = d * DESC_STRIDE;
    heads[i] = d * 2 + 1;
  }
  const c = pool.desc[o + 1]!;
  pool.desc[o + 2 + c] = sptep;
  pool.desc[o + 1] = c + 1;
  return count;
}

/** `pte_list_remove`: remove `sptep`; returns false if it was not on the list. */
export function pteListRemove(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  sptep: number,
): boolean {
  const h = heads[i]!;
  if (h === 0) return false;
  if ((h & 1) === 0) {
    if (h / 2 - 1 !== sptep) return false;
    heads[i] = 0;
    return true;
  }
  const head = (h - 1) / 2;
  const ho = head * DESC_STRIDE;
  for (let d = head; d >= 0; d = pool.desc[d * DESC_STRIDE]!) {
    const o = d * DESC_STRIDE;
    const n = pool.desc[o + 1]!;
    for (let j = 0; j < n; j++) {
      if (pool.desc[o + 2 + j] !== sptep) continue;
      // Fill the hole with the head descriptor's last entry.
      const hc = pool.desc[ho + 1]! - 1;
      pool.desc[o + 2 + j] = pool.desc[ho + 2 + hc]!;
      pool.desc[ho + 1] = hc;
      if (hc === 0) {
        const more = pool.desc[ho]!;
        pool.release(head);
        if (more < 0) heads[i] = 0;
        else heads[i] = more * 2 + 1;
      }
      // A chain left with a single entry stays a descriptor, as in KVM.
      return true;
    }
  }
  return false;
}

/** Whether `sptep` is on the list at `heads[i]` (audits; no allocation). */
export function pteListContains(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  sptep: number,
): boolean {
  const h = heads[i]!;
  if (h === 0) return false;
  if ((h & 1) === 0) return h / 2 - 1 === sptep;
  for (let d = (h - 1) / 2; d >= 0; d = pool.desc[d * DESC_STRIDE]!) {
    const o = d * DESC_STRIDE;
    const c = pool.desc[o + 1]!;
    for (let j = 0; j < c; j++) if (pool.desc[o + 2 + j] === sptep) return true;
  }
  return false;
}

/** Visit every sptep on the list at `heads[i]`; returns how many were visited. */
export function pteListForEach(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  fn: (sptep: number) => void,
): number {
  const h = heads[i]!;
  if (h === 0) return 0;
  if ((h & 1) === 0) {
    fn(h / 2 - 1);
    return 1;
  }
  let n = 0;
  for (let d = (h - 1) / 2; d >= 0; d = pool.desc[d * DESC_STRIDE]!) {
    const o = d * DESC_STRIDE;
    const c = pool.desc[o + 1]!;
    for (let j = 0; j < c; j++) {
      fn(pool.desc[o + 2 + j]!);
      n++;
    }
  }
  return n;
}

/**
 * `slot_rmap_walk_iterator` (`for_each_slot_rmap_range` over every memslot): visits the rmap
 * head of every (slot, level, gfn index) whose range overlaps [start, end), for levels
 * minLevel..maxLevel, slot by slot, level by level; slots without rmaps are skipped. Empty heads
 * are visited too (callers count `rmap_heads_scanned`). Closure-free:
 * `for (w.init(...); w.valid; w.next()) use(w.heads, w.index, w.level)`.
 */
export class SlotRmapWalkIterator {
  /** Heads of the current (slot, level); `heads[index]` is the current head. */
  heads: Uint32Array = new Uint32Array(0);
  index = 0;
  level = 0;
  /** The current slot. */
  slot: MemSlot | null = null;
  valid = false;
  private slots: readonly MemSlot[] = [];
  private slotPos = 0;
  private start = 0;
  private end = 0;
  private minLevel = 1;
  private maxLevel = 3;
  private lastIndex = -1;
  private rmap: SlotRmap | null = null;

  /** Position on the first head of [start, end) at levels minLevel..maxLevel of `slots`. */
  init(
    slots: readonly MemSlot[],
    start: number,
    end: number,
    minLevel: number,
    maxLevel: number,
  ): void {
    this.slots = slots;
    this.start = start;
    this.end = end;
    this.minLevel = minLevel;
    this.maxLevel = maxLevel;
    this.slotPos = -1;
    this.level = maxLevel;
    this.index = 0;
    this.lastIndex = -1;
    this.slot = null;
    this.valid = minLevel <= maxLevel;
    if (this.valid) this.next();
  }

  /** Step to the next head (next index, else next level, else next slot with rmaps). */
  next(): void {
    if (++this.index <= this.lastIndex) return;
    for (;;) {
      if (this.level < this.maxLevel && this.slot !== null) {
        this.enterLevel(this.level + 1);
        if (this.index <= this.lastIndex) return;
        continue;
      }
      if (!this.nextSlot()) {
        this.valid = false;
        this.slot = null;
        return;
      }
      this.enterLevel(this.minLevel);
      if (this.index <= this.lastIndex) return;
    }
  }

  /** Advance to the next slot that has rmaps and overlaps [start, end). */
  private nextSlot(): boolean {
    while (++this.slotPos < this.slots.length) {
      const slot = this.slots[this.slotPos]!;
      const rmap = slotArch(slot).rmap;
      if (rmap === null) continue;
      if (Math.max(this.start, slot.baseGfn) >= Math.min(this.end, slot.baseGfn + slot.npages))
        continue;
      this.slot = slot;
      this.rmap = rmap;
      return true;
    }
    return false;
  }

  private enterLevel(level: number): void {
    const slot = this.slot!;
    const s = Math.max(this.start, slot.baseGfn);
    const e = Math.min(this.end, slot.baseGfn + slot.npages);
    this.level = level;
    this.heads = this.rmap!.heads[level - 1]!;
    this.index = gfnToIndex(s, slot.baseGfn, level);
    this.lastIndex = gfnToIndex(e - 1, slot.baseGfn, level);
  }
}

// ---- mmu_page_hash ---------------------------------------------------------------------------

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
 * `kvm_page_table_hashfn` = `hash_64(gfn, 12)`: the top 12 bits of (gfn × 0x61C8864680B583EB
 * mod 2^64), without BigInt: the top word of the product is hi32(gl·Cl) + gl·Ch + gh·Cl (mod 2^32).
 */
export function kvmPageTableHashfn(gfn: number): number {
  const gl = gfn >>> 0;
  const gh = Math.floor(gfn / 4294967296) >>> 0;
  const cl = 0x80b583eb;
  const ch = 0x61c88646;
  const top = (mulHi32(gl, cl) + Math.imul(gl, ch) + Math.imul(gh, cl)) >>> 0;
  return top >>> (32 - KVM_MMU_HASH_SHIFT);
}

/** Every entry index of a page, for scan-mode write protection. */
const ALL_ENTRIES: readonly number[] = Array.from({ length: 512 }, (_, i) => i);

/** `KVM_PAGE_ARRAY_NR`: pages one `mmu_unsync_walk` batch holds. */
export const KVM_PAGE_ARRAY_NR = 16;

/**
 * `detect_write_misaligned`: a write of `bytes` at `gpa` into a table of the page's gpte size
 * that crosses a gpte boundary or is shorter than 4 bytes — except a 1-byte write at the start
 * of a gpte (guests clear bits with one-byte instructions).
 */
export function detectWriteMisaligned(role: number, gpa: number, bytes: number): boolean {
  const off = gpa % 4096;
  const size = (role & ROLE_HAS_4_BYTE_GPTE) !== 0 ? 4 : 8;
  if (off % size === 0 && bytes === 1) return false;
  return Math.floor(off / size) !== Math.floor((off + bytes - 1) / size) || bytes < 4;
}

// ---- the shadow MMU (rmap/hash) ------------------------------------------------------------------

/**
 * The shadow MMU's state (`kvm->arch.mmu_page_hash`, `active_mmu_pages`, the rmap descriptor
 * cache, `mmu_valid_gen`, `indirect_shadow_pages`) and its functions. It builds direct pages for
 * TDP with `tdp_mmu=0`, and under shadow paging (`ept=0`) indirect pages that shadow guest
 * tables, which it write-protects (`account_shadowed`), lets go unsync and syncs again.
 *
 * Every spte of its pages changes in {@link ShadowMmu.setSpte}, the one sink of this MMU. Each
 * page's `parent_ptes` is a pte_list (as the rmaps), since a guest table may be linked from
 * several entries.
 */
export class ShadowMmu implements ShadowMmuOps {
  readonly core: MmuCore;
  readonly store: MmuPageStore;
  readonly stats: KvmStats;
  /** Root level (4 or 5) and role of the direct roots. */
  readonly rootLevel: number;
  readonly rootRole: number;
  /** `direct_pte_prefetch` of the aligned group of 8 around a 4K fault. */
  readonly prefetch: boolean;
  /** Roots handed to vCPUs (pages with root_count > 0, plus invalid ones still pinned). */
  readonly roots: number[] = [];
  /** `mmu_page_hash`: bucket heads (sp id or -1); chains through store.hashNext. */
  readonly hash: Int32Array;
  /** `KVM_MMU_HASH_SHIFT` and the hash function of this era (features.hashShift, hashFn). */
  private readonly hashShift: number;
  private readonly hashMask: boolean;
  /** features.reclaim "legacy": one tail page at a time, roots not skipped. */
  private readonly legacyReclaim: boolean;
  /** `active_mmu_pages`: head = newest, tail = oldest. */
  listHead = -1;
  listTail = -1;
  /**
   * `list_unstable` of the last {@link prepareZapPage}: it zapped unsync children too, so pages
   * other than itself left the active list (walkers of the list start again from the tail).
   */
  private listUnstable = false;
  /** `pte_list_desc` pool for the rmaps and parent lists. */
  readonly rmapPool: PteListDescPool;
  /** `kvm->arch.mmu_valid_gen`. */
  validGen = 0;
  private readonly invalidList: number[] = [];
  private readonly out = new SpteOut();
  private readonly last = new LastSpte();

  /** Shadow paging (`ept=0`): roots shadow the vCPUs' CR3 (else direct roots for gfn 0). */
  readonly shadowPaging: boolean;
  private readonly gpte = new Uint32Array(2);

  constructor(
    core: MmuCore,
    rootLevel: number,
    rootRole: number,
    features: Pick<Features, "prefetch" | "hashShift" | "hashFn" | "pteListExt" | "reclaim">,
    shadowPaging = false,
  ) {
    this.core = core;
    this.store = core.store;
    this.stats = core.stats;
    this.rootLevel = rootLevel;
    this.rootRole = rootRole;
    if ((rootRole & ROLE_AD_DISABLED) !== 0) this.out.adKeep = ~(SPTE_A | SPTE_D);
    this.prefetch = features.prefetch;
    this.shadowPaging = shadowPaging;
    this.hashShift = features.hashShift;
    this.hashMask = features.hashFn === "mask";
    this.hash = new Int32Array(1 << features.hashShift).fill(-1);
    this.store.memcg.charge(MC.mmuPages, this.hash.byteLength, HEAP_TYPED_ARRAY_BYTES);
    this.rmapPool = new PteListDescPool(features.pteListExt, this.store.memcg);
    this.legacyReclaim = features.reclaim === "legacy";
  }

  /** `kvm_page_table_hashfn` of this era: hash_64(gfn, shift), or the low bits of gfn. */
  hashOf(gfn: number): number {
    if (this.hashMask) return gfn % (1 << this.hashShift);
    return kvmPageTableHashfn(gfn) >>> (KVM_MMU_HASH_SHIFT - this.hashShift);
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
    const b = this.hashOf(this.store.gfn[sp]!);
    this.store.hashNext[sp] = this.hash[b]!;
    this.hash[b] = sp;
  }

  private hashDel(sp: number): void {
    const b = this.hashOf(this.store.gfn[sp]!);
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
   * `kvm_mmu_find_shadow_page`: the valid page with this gfn and role, or -1. Other gfns in the
   * bucket count as collisions (`max_mmu_page_hash_collisions`). An unsync page of the gfn with
   * another role is zapped when an upper-level page is wanted (the new page write-protects the
   * gfn); a hit that is unsync is synced first (`kvm_sync_page`, for the vCPU of `mmu`), and a
   * hit's flooding count is reset. A miss counts in `mmu_cache_miss`.
   */
  private findShadowPage(gfn: number, role: number, mmu: KvmMmu | null): number {
    const s = this.store;
    let collisions = 0;
    let found = -1;
    for (let sp = this.hash[this.hashOf(gfn)]!; sp >= 0; sp = s.hashNext[sp]!) {
      if (this.isObsolete(sp) || (s.role[sp]! & ROLE_INVALID) !== 0) continue;
      if (s.gfn[sp] !== gfn) {
        collisions++;
        continue;
      }
      if (s.role[sp] !== role) {
        if (roleLevel(role) > 1 && s.unsync[sp] !== 0) this.prepareZapPage(sp);
        continue;
      }
      if ((role & ROLE_DIRECT) === 0) {
        if (s.unsync[sp] !== 0) {
          const r = mmu === null ? -1 : this.syncPage(mmu, sp);
          if (r < 0) break; // zapped: build it again
          if (r > 0) this.core.flushRemoteTlbs("sync_page");
        }
        s.flood[sp] = 0;
      }
      found = sp;
      break;
    }
    if (found < 0) this.stats.mmu_cache_miss++;
    this.commitZapPage();
    if (collisions > this.stats.max_mmu_page_hash_collisions)
      this.stats.max_mmu_page_hash_collisions = collisions;
    return found;
  }

  /**
   * `kvm_mmu_alloc_shadow_page`: a new page at the head of `active_mmu_pages`, in the hash, in
   * `n_used_mmu_pages`, of the current generation. A page with guest PTEs gets its translation
   * array (seed 2010: always) and write-protects the table it shadows (`account_shadowed`).
   */
  private allocShadowPage(gfn: number, role: number): number {
    const direct = (role & ROLE_DIRECT) !== 0;
    const sp = direct
      ? this.core.allocDirectSp(role, gfn, false)
      : this.store.alloc(role, gfn, false, true, true);
    this.store.validGen[sp] = this.validGen;
    this.listAddHead(sp);
    this.hashAdd(sp);
    this.stats.n_used_mmu_pages++;
    if (!direct) this.accountShadowed(sp);
    return sp;
  }

  /** `kvm_mmu_get_shadow_page`: find, else allocate. */
  private getShadowPage(gfn: number, role: number, mmu: KvmMmu | null = null): number {
    let sp = this.findShadowPage(gfn, role, mmu);
    const created = sp < 0;
    if (created) sp = this.allocShadowPage(gfn, role);
    if (this.core.trace.on) this.traceSp(EV.getPage, sp, created);
    return sp;
  }

  /** A shadow-page tracepoint (`KVM_MMU_PAGE_FIELDS`: gfn, role, root_count, unsync). */
  private traceSp(ev: number, sp: number, created = false): void {
    const s = this.store;
    const t = this.core.trace;
    t.emit(ev, s.gfn[sp]!, s.role[sp]!, s.rootCount[sp]!, s.unsync[sp]!, created ? 1 : 0);
  }

  /** `kvm_mmu_get_child_sp` (see {@link ShadowMmuOps.getChildSp}). */
  getChildSp(
    mmu: KvmMmu,
    sp: number,
    idx: number,
    gfn: number,
    direct: boolean,
    access: number,
  ): number {
    const s = this.store;
    const lo = s.spt[sp]![idx * 2]!;
    const level = roleLevel(s.role[sp]!);
    if (isShadowPresent(lo) && !isLastSpte(lo, level)) return -1;
    return this.getShadowPage(gfn, childRole(s.role[sp]!, direct, access, idx), mmu);
  }

  // ---- write protection of shadowed guest tables (account_shadowed, page_track.c) ------------

  /**
   * `account_shadowed`: `indirect_shadow_pages`++; an upper-level table becomes write-tracked
   * (`__kvm_write_track_add_gfn`); every shadowed table disallows huge pages over its gfn and is
   * write-protected wherever it is mapped (one flush if a mapping changed).
   */
  private accountShadowed(sp: number): void {
    const gfn = this.store.gfn[sp]!;
    this.stats.indirect_shadow_pages++;
    const slot = this.core.slots.gfnToSlot(gfn);
    if (slot === undefined)
      throw new MmuBugError("account_shadowed", `gfn 0x${gfn.toString(16)} has no memslot`);
    const tracked = roleLevel(this.store.role[sp]!) > 1;
    if (tracked) updateGfnWriteTrack(slot, gfn, 1);
    this.gfnDisallowLpage(slot, gfn, 1);
    if (this.writeProtectGfn(gfn, 1))
      this.core.flushRemoteTlbs(tracked ? "write_track_add_gfn" : "account_shadowed");
  }

  /** `unaccount_shadowed`: the reverse of {@link accountShadowed}. */
  private unaccountShadowed(sp: number): void {
    const gfn = this.store.gfn[sp]!;
    this.stats.indirect_shadow_pages--;
    const slot = this.core.slots.gfnToSlot(gfn);
    // A slot deleted meanwhile took its metadata with it (kvm_mmu_zap_all_fast ran first in KVM).
    if (slot === undefined) return;
    if (roleLevel(this.store.role[sp]!) > 1) updateGfnWriteTrack(slot, gfn, -1);
    this.gfnDisallowLpage(slot, gfn, -1);
  }

  /** `kvm_mmu_gfn_disallow_lpage` (+1) / `kvm_mmu_gfn_allow_lpage` (−1) at levels 2 and 3. */
  private gfnDisallowLpage(slot: MemSlot, gfn: number, count: number): void {
    const arch = slotArch(slot);
    for (let level = 2; level <= 3; level++)
      arch.lpageInfo[level - 2]![gfnToIndex(gfn, slot.baseGfn, level)]! += count;
  }

  /**
   * `mmu_try_to_unsync_pages`: may a writable spte map `gfn`? Refused (false) when the gfn is
   * write-tracked, or has level-1 pages with guest PTEs and `canUnsync` is false (a sync) or a
   * prefetch finds one still synced; otherwise each such page goes unsync (`kvm_unsync_page`).
   */
  mmuTryToUnsyncPages(slot: MemSlot, gfn: number, canUnsync: boolean, prefetch: boolean): boolean {
    if (kvmGfnIsWriteTracked(slot, gfn)) return false;
    if (this.stats.indirect_shadow_pages === 0) return true;
    const s = this.store;
    for (let sp = this.hash[this.hashOf(gfn)]!; sp >= 0; sp = s.hashNext[sp]!) {
      if (s.gfn[sp] !== gfn || this.isObsolete(sp)) continue;
      const role = s.role[sp]!;
      if ((role & (ROLE_INVALID | ROLE_DIRECT)) !== 0) continue;
      if (!canUnsync) return false;
      if (s.unsync[sp] !== 0) continue;
      if (prefetch) return false;
      this.kvmUnsyncPage(sp);
    }
    return true;
  }

  // ---- unsync / sync (mmu.c) ------------------------------------------------------------------

  /** `kvm_unsync_page`: `unsync` = 1, `mmu_unsync`++, and the parents learn of it. */
  private kvmUnsyncPage(sp: number): void {
    if (this.core.trace.on) this.traceSp(EV.unsyncPage, sp);
    this.stats.mmu_unsync++;
    this.store.unsync[sp] = 1;
    this.markParentsUnsync(sp);
  }

  /** `kvm_mmu_mark_parents_unsync`: `mark_unsync` on every parent entry of `sp`. */
  private markParentsUnsync(sp: number): void {
    pteListForEach(this.rmapPool, this.store.parentPtes, sp, (sptep) => this.markUnsync(sptep));
  }

  /**
   * `mark_unsync`: set the entry's bit in its page's `unsync_child_bitmap`; the first bit set
   * makes that page's parents learn of it too.
   */
  private markUnsync(sptep: number): void {
    const s = this.store;
    const sp = Math.floor(sptep / 512);
    const i = sptep % 512;
    const w = sp * 16 + (i >>> 5);
    const bit = 1 << (i & 31);
    if ((s.unsyncBitmap[w]! & bit) !== 0) return;
    s.unsyncBitmap[w] = (s.unsyncBitmap[w]! | bit) >>> 0;
    if (s.unsyncChildren[sp]!++ > 0) return;
    this.markParentsUnsync(sp);
  }

  /** `clear_unsync_child_bit`. */
  private clearUnsyncChildBit(sp: number, i: number): void {
    const s = this.store;
    const w = sp * 16 + (i >>> 5);
    s.unsyncBitmap[w] = (s.unsyncBitmap[w]! & ~(1 << (i & 31))) >>> 0;
    s.unsyncChildren[sp]!--;
  }

  /** `kvm_unlink_unsync_page`. */
  private unlinkUnsyncPage(sp: number): void {
    // kvm_unlink_unsync_page traces the page before clearing unsync (kvm_sync_page does not).
    if (this.core.trace.on) this.traceSp(EV.syncPage, sp);
    this.store.unsync[sp] = 0;
    this.stats.mmu_unsync--;
  }

  /**
   * `mmu_unsync_walk` / `__mmu_unsync_walk`: collect the unsync pages below `parent` in
   * batches of at most KVM_PAGE_ARRAY_NR (16) entries (the parent and intermediate pages count),
   * each with the path of (page, index) pairs that led to it; stale bitmap bits are cleared on
   * the way.
   * Returns the unsync level-1 pages found with their paths.
   */
  private unsyncWalk(parent: number): { sp: number; path: number[] }[] {
    const out: { sp: number; path: number[] }[] = [];
    // mmu_unsync_walk adds the parent itself first: it takes one of the KVM_PAGE_ARRAY_NR slots.
    let entries = 1;
    const s = this.store;
    const walk = (sp: number, path: number[]): number => {
      let nr = 0;
      const level = roleLevel(s.role[sp]!);
      for (let w = 0; w < 16; w++) {
        let bits = s.unsyncBitmap[sp * 16 + w]!;
        while (bits !== 0) {
          const b = 31 - Math.clz32(bits & -bits);
          bits &= bits - 1;
          const i = w * 32 + b;
          const lo = s.spt[sp]![i * 2]!;
          if (!isShadowPresent(lo) || isLastSpte(lo, level)) {
            this.clearUnsyncChildBit(sp, i);
            continue;
          }
          const child = s.pfnToSp(sptePfn(lo, s.spt[sp]![i * 2 + 1]!));
          const childPath = path.concat(sp, i);
          if (s.unsyncChildren[child]! > 0) {
            if (entries >= KVM_PAGE_ARRAY_NR) return -1;
            entries++;
            const r = walk(child, childPath);
            if (r === 0) this.clearUnsyncChildBit(sp, i);
            else if (r > 0) nr += r;
            else return r;
          } else if (s.unsync[child] !== 0) {
            nr++;
            // mmu_pages_add: a page reached again through another parent is listed once.
            if (out.some((p) => p.sp === child)) continue;
            if (entries >= KVM_PAGE_ARRAY_NR) return -1;
            entries++;
            out.push({ sp: child, path: childPath });
          } else this.clearUnsyncChildBit(sp, i);
        }
      }
      return nr;
    };
    walk(parent, []);
    return out;
  }

  /**
   * `mmu_pages_clear_parents`: after a page was synced, clear its bit in the parent that led to
   * it, and upwards while a parent is left with no unsync children.
   */
  private clearParents(path: number[]): void {
    for (let k = path.length - 2; k >= 0; k -= 2) {
      const p = path[k]!;
      this.clearUnsyncChildBit(p, path[k + 1]!);
      if (this.store.unsyncChildren[p]! > 0) return;
    }
  }

  /**
   * `mmu_sync_children`: per batch of unsync pages below `parent`, write-protect their gfns
   * (one flush if that changed a mapping), then sync each (`kvm_sync_page`; a page that cannot
   * be synced is zapped); one flush or zap commit at the end.
   */
  syncChildren(mmu: KvmMmu, parent: number): void {
    let flush = false;
    for (;;) {
      const pages = this.unsyncWalk(parent);
      if (pages.length === 0) break;
      let prot = false;
      for (const { sp } of pages) if (this.writeProtectGfn(this.store.gfn[sp]!, 1)) prot = true;
      if (prot) {
        this.remoteFlushOrZap(true, "sync_children");
        flush = false;
      }
      for (const { sp, path } of pages) {
        this.unlinkUnsyncPage(sp);
        if (this.syncPage(mmu, sp) > 0) flush = true;
        this.clearParents(path);
      }
    }
    this.remoteFlushOrZap(flush, "sync_children");
  }

  /** `kvm_mmu_remote_flush_or_zap`: commit pending zaps (one flush), else flush if asked. */
  private remoteFlushOrZap(flush: boolean, reason: string): void {
    if (this.invalidList.length > 0) this.commitZapPage();
    else if (flush) this.core.flushRemoteTlbs(reason);
  }

  /**
   * `kvm_sync_page`: re-read the gpte behind every non-zero spte (`FNAME(sync_spte)`). A page
   * whose role no longer matches the vCPU's (ignoring level, access, quadrant, passthrough), or a
   * gpte that cannot be read, makes the whole page zapped (returns −1); else > 0 if a flush is
   * needed.
   */
  syncPage(mmu: KvmMmu, sp: number): number {
    const s = this.store;
    const ign =
      ROLE_LEVEL_MASK | (7 << ROLE_ACCESS_SHIFT) | (3 << ROLE_QUADRANT_SHIFT) | ROLE_PASSTHROUGH;
    let ret = 0;
    if ((s.role[sp]! & ROLE_DIRECT) !== 0 || ((s.role[sp]! ^ mmu.rootRole) & ~ign) !== 0) ret = -1;
    else {
      for (let i = 0; i < 512; i++) {
        const r = this.syncSpte(mmu, sp, i);
        if (r < 0) {
          ret = -1;
          break;
        }
        if (r > 0) ret = 1;
      }
    }
    if (ret < 0) this.prepareZapPage(sp);
    return ret;
  }

  /**
   * `kvm_sync_spte`: a zero spte has nothing to sync (no gpte was ever shadowed there, or it was
   * zapped since); else `FNAME(sync_spte)`. Without the check a zapped entry would be rebuilt
   * from the pfn of its zero spte.
   */
  private syncSpte(mmu: KvmMmu, sp: number, i: number): number {
    const spt = this.store.spt[sp]!;
    if (spt[i * 2] === 0 && spt[i * 2 + 1] === 0) return 0;
    return fnameSyncSpte(this, mmu, sp, i);
  }

  /**
   * `kvm_mmu_sync_roots` (the KVM_REQ_MMU_SYNC of a guest TLB flush: MOV CR3, ...): sync what
   * is unsync below the vCPU's root.
   */
  syncRoots(mmu: KvmMmu): void {
    if (mmu.root === KVM_PAE_ROOT) {
      for (let i = 0; i < 4; i++) if (mmu.paeRoot[i]! >= 0) this.syncChildren(mmu, mmu.paeRoot[i]!);
      return;
    }
    const root = mmu.root;
    if (root < 0) return;
    const s = this.store;
    if (s.unsync[root] === 0 && s.unsyncChildren[root] === 0) return;
    this.syncChildren(mmu, root);
  }

  /**
   * `kvm_mmu_invlpg` → `__kvm_mmu_invalidate_addr` for each of the vCPU's roots (current and
   * previous): down the path of `gva`, re-sync the entry of every unsync page (zap it if the
   * gpte cannot be read; flush if it changed), stopping where a page has no unsync children.
   */
  invlpg(mmu: KvmMmu, gvaPfn: number): void {
    this.invalidateAddr(mmu, shadowRootFor(mmu, gvaPfn), gvaPfn);
    for (let i = 0; i < KVM_MMU_NUM_PREV_ROOTS; i++)
      this.invalidateAddr(mmu, mmu.prevRootSp[i]!, gvaPfn);
  }

  private invalidateAddr(mmu: KvmMmu, root: number, gvaPfn: number): void {
    if (root < 0) return;
    const s = this.store;
    let sp = root;
    let level = roleLevel(s.role[root]!);
    for (;;) {
      const i = spteIndex(gvaPfn, level);
      if (s.unsync[sp] !== 0) {
        const r = this.syncSpte(mmu, sp, i);
        if (r < 0) this.zapPte(sp, i, level);
        if (r !== 0) this.core.flushRemoteTlbs("invalidate_addr");
      }
      if (s.unsyncChildren[sp] === 0) return;
      const lo = s.spt[sp]![i * 2]!;
      if (!isShadowPresent(lo) || isLastSpte(lo, level)) return;
      sp = s.pfnToSp(sptePfn(lo, s.spt[sp]![i * 2 + 1]!));
      level--;
    }
  }

  // ---- write flooding and trapped gpte writes (kvm_mmu_track_write) --------------------------

  /** `clear_sp_write_flooding_count`. */
  clearSpFlood(sp: number): void {
    this.store.flood[sp] = 0;
  }

  /**
   * `shadow_page_table_clear_flood`: reset the flooding count of every page on the path of
   * `gvaPfn` under the vCPU's root (a write that faulted on its own way is not flooding).
   */
  clearFloodPath(mmu: KvmMmu, gvaPfn: number): void {
    const root = shadowRootFor(mmu, gvaPfn);
    if (root < 0) return;
    const s = this.store;
    let sp = root;
    let level = roleLevel(s.role[root]!);
    for (;;) {
      s.flood[sp] = 0;
      const i = spteIndex(gvaPfn, level);
      const lo = s.spt[sp]![i * 2]!;
      if (!isShadowPresent(lo) || isLastSpte(lo, level)) return;
      sp = s.pfnToSp(sptePfn(lo, s.spt[sp]![i * 2 + 1]!));
      level--;
    }
  }

  /**
   * `kvm_mmu_track_write`: an emulated guest write of `bytes` at `gpa` (already in memory). With
   * indirect pages present: `mmu_pte_write`++; a 4-byte write of an 8-byte-gpte guest is widened
   * to its gpte; each page shadowing the frame is zapped for a misaligned write or flooding
   * (`mmu_flooded`), else the sptes of the written gpte are zapped (`mmu_pde_zapped` above level
   * 1 when the new gpte is non-zero). One flush or zap commit.
   * @param pae the vCPU uses 8-byte gptes (`is_pae`)
   */
  trackWrite(gpa: number, bytes: number, pae: boolean): void {
    // (pae: CR4.PAE of the writing vCPU.)
    if (this.stats.indirect_shadow_pages === 0) return;
    if (pae && bytes === 4) {
      gpa -= gpa % 8;
      bytes = 8;
    }
    let gentryZero = true;
    if (bytes === 4 || bytes === 8) {
      const g = this.gpte;
      if (this.core.readGuestPte(gpa, bytes === 8, g)) gentryZero = g[0] === 0 && g[1] === 0;
    }
    this.stats.mmu_pte_write++;
    const gfn = Math.floor(gpa / 4096);
    const s = this.store;
    let flush = false;
    const victims: number[] = [];
    for (let sp = this.hash[this.hashOf(gfn)]!; sp >= 0; sp = s.hashNext[sp]!) {
      if (s.gfn[sp] !== gfn || this.isObsolete(sp)) continue;
      if ((s.role[sp]! & (ROLE_INVALID | ROLE_DIRECT)) !== 0) continue;
      victims.push(sp);
    }
    for (const sp of victims) {
      if ((s.role[sp]! & ROLE_INVALID) !== 0) continue;
      if (detectWriteMisaligned(s.role[sp]!, gpa, bytes) || this.detectWriteFlooding(sp)) {
        this.prepareZapPage(sp);
        this.stats.mmu_flooded++;
        continue;
      }
      const level = roleLevel(s.role[sp]!);
      let off = gpa % 4096;
      let n = 1;
      if ((s.role[sp]! & ROLE_HAS_4_BYTE_GPTE) !== 0) {
        off *= 2;
        if (level === 2) {
          off -= off % 8;
          off *= 2;
          n = 2;
        }
        if (Math.floor(off / 4096) !== roleQuadrant(s.role[sp]!)) continue;
        off %= 4096;
      }
      for (let k = 0; k < n; k++) {
        // get_written_sptes: &sp->spt[page_offset / 8] — C's integer division (a 4-byte store
        // into an 8-byte gpte's high half, from a vCPU without PAE, lands on that gpte).
        const i = (off >>> 3) + k;
        if (isShadowPresent(s.spt[sp]![i * 2]!)) flush = true;
        this.zapPte(sp, i, level);
        if (!gentryZero && level > 1) this.stats.mmu_pde_zapped++;
      }
    }
    this.remoteFlushOrZap(flush, "track_write");
  }

  /** `detect_write_flooding`: level-1 pages are exempt (they may go unsync); 3 writes flood. */
  private detectWriteFlooding(sp: number): boolean {
    const s = this.store;
    if (roleLevel(s.role[sp]!) === 1) return false;
    s.flood[sp] = Math.min(255, s.flood[sp]! + 1);
    return s.flood[sp]! >= 3;
  }

  // ---- roots ----------------------------------------------------------------------------

  /**
   * `mmu_alloc_direct_roots` / `mmu_alloc_shadow_roots` → `mmu_alloc_root`: the root page for
   * `gfn` (0 for direct roots, the CR3 frame under shadow paging) with `role`, root_count++.
   */
  getVcpuRoot(gfn = 0, role = this.rootRole, mmu: KvmMmu | null = null): number {
    this.makeMmuPagesAvailable();
    const r = this.getShadowPage(gfn, role, mmu);
    this.store.rootCount[r]!++;
    if (!this.roots.includes(r)) this.roots.push(r);
    return r;
  }

  /**
   * `mmu_free_root_page`: drop a reference; the last one to an invalid root puts it on the
   * invalid list, for the caller's {@link commitZapPage} (`kvm_mmu_free_roots` commits once for
   * every root it frees).
   */
  freeRootPage(root: number): void {
    const s = this.store;
    if (--s.rootCount[root]! > 0) return;
    const i = this.roots.indexOf(root);
    if (i >= 0) this.roots.splice(i, 1);
    if ((s.role[root]! & ROLE_INVALID) !== 0) this.prepareZapPage(root);
  }

  /** {@link freeRootPage} of one root, then its commit. */
  putRoot(root: number): void {
    this.freeRootPage(root);
    this.commitZapPage();
  }

  /** The parent entries of `sp` (`parent_ptes`) as sp * 512 + index, for views and the audit. */
  parentPtesOf(sp: number): number[] {
    const out: number[] = [];
    pteListForEach(this.rmapPool, this.store.parentPtes, sp, (sptep) => out.push(sptep));
    return out;
  }

  /** The root was invalidated or is obsolete and must be reloaded. */
  isInvalidRoot(root: number): boolean {
    return (this.store.role[root]! & ROLE_INVALID) !== 0 || this.isObsolete(root);
  }

  // ---- the one spte sink ------------------------------------------------------------------

  /**
   * The one place a shadow-MMU spte changes (`mmu_spte_set`, `mmu_spte_update`,
   * `mmu_spte_clear_track_bits`, `mmu_spte_clear_no_track`): entry `idx` of `sp`, at `level`,
   * mapping `gfn`, becomes (`newLo`, `newHi`). It owns, for leaves, the page stats and the rmap
   * (`rmap_add` when a leaf appears, `rmap_remove` when one goes) and the flush decision (the
   * dirty mark is `make_spte`'s, see {@link makeSpteMarkDirty}), which it returns: true when a
   * present leaf went away or lost a translation bit the CPU may have cached (W while
   * MMU-writable, A, D: `mmu_spte_update`), or a table was unlinked.
   */
  private setSpte(
    sp: number,
    idx: number,
    level: number,
    gfn: number,
    newLo: number,
    newHi: number,
  ): boolean {
    const store = this.store;
    const spt = store.spt[sp]!;
    const oldLo = spt[idx * 2]!;
    const oldHi = spt[idx * 2 + 1]!;
    spt[idx * 2] = newLo;
    spt[idx * 2 + 1] = newHi;
    store.spteEpoch++;
    store.tableSpteChanged(gfn, level);
    if (store.pwTrack) store.logPossibleWritable(sp, idx, oldLo, oldHi, newLo, newHi);
    const wasPresent = isShadowPresent(oldLo);
    const wasLeaf = wasPresent && isLastSpte(oldLo, level);
    const isLeaf = isShadowPresent(newLo) && isLastSpte(newLo, level);
    let flush = false;
    if (wasLeaf && isLeaf) {
      if (sptePfn(oldLo, oldHi) !== sptePfn(newLo, newHi)) {
        throw new MmuBugError(
          "mmu_spte_update",
          `sp ${sp} entry ${idx}: a present leaf for gfn 0x${gfn.toString(16)} changed its pfn`,
        );
      }
      if ((oldHi & SPTE_HI_MMU_WRITABLE) !== 0 && (newLo & SPTE_W) === 0) flush = true;
      if ((oldLo & SPTE_A) !== 0 && (newLo & SPTE_A) === 0) flush = true;
      if ((oldLo & SPTE_D) !== 0 && (newLo & SPTE_D) === 0) flush = true;
    } else {
      if (wasPresent) flush = true;
      if (wasLeaf) this.rmapRemove(sp, idx, level);
      if (isLeaf) this.rmapAdd(sp, idx, gfn, level);
    }
    return flush;
  }

  // ---- rmaps ----------------------------------------------------------------------------

  /** `rmap_add`: translation, page stats, rmap head; recycle a head beyond the threshold. */
  private rmapAdd(sp: number, idx: number, gfn: number, level: number): void {
    const slot = this.core.slots.gfnToSlot(gfn);
    if (slot === undefined)
      throw new MmuBugError(
        "rmap_add",
        `sp ${sp} entry ${idx}: gfn 0x${gfn.toString(16)} has no memslot`,
      );
    if (this.store.translation[sp]) kvmMmuPageSetGfn(this.store, sp, idx, gfn);
    updatePageStats(this.stats, level, 1);
    const heads = slotArch(slot).rmapFor(slot).heads[level - 1]!;
    const hi = gfnToIndex(gfn, slot.baseGfn, level);
    const count = pteListAdd(this.rmapPool, heads, hi, sp * 512 + idx);
    if (count > this.stats.max_mmu_rmap_size) this.stats.max_mmu_rmap_size = count;
    if (count > RMAP_RECYCLE_THRESHOLD) {
      this.zapRmapHead(heads, hi, level);
      this.core.flushRemoteTlbs("rmap_recycle");
    }
  }

  /** gfn mapped by leaf entry `idx` of `sp` (`kvm_mmu_page_get_gfn`, with the seed-2010 check). */
  private entryGfn(sp: number, idx: number): number {
    const g = kvmMmuPageGetGfn(this.store, sp, idx, this.store.translationAccounted(sp));
    this.core.checkGfn(sp, idx, g);
    return g;
  }

  /** `rmap_remove`: page stats, and the spte off the rmap head of the gfn it mapped. */
  private rmapRemove(sp: number, idx: number, level: number): void {
    updatePageStats(this.stats, level, -1);
    const gfn = this.entryGfn(sp, idx);
    const slot = this.core.slots.gfnToSlot(gfn);
    const rmap = slot === undefined ? null : slotArch(slot).rmap;
    if (slot === undefined || rmap === null)
      throw new MmuBugError("rmap_remove", `no rmap for gfn 0x${gfn.toString(16)}`);
    const hi = gfnToIndex(gfn, slot.baseGfn, level);
    if (!pteListRemove(this.rmapPool, rmap.heads[level - 1]!, hi, sp * 512 + idx)) {
      throw new MmuBugError(
        "rmap_remove",
        `sp ${sp} entry ${idx} is not on the rmap of gfn 0x${gfn.toString(16)}`,
      );
    }
  }

  /** `drop_spte` of a present leaf: clear it (the sink removes it from its rmap). */
  dropSpte(sp: number, idx: number, level: number): boolean {
    return this.setSpte(sp, idx, level, this.entryGfnFormula(sp, idx), 0, 0);
  }

  /** `kvm_zap_rmap`: zap every spte on one head; returns whether any was zapped. */
  private zapRmapHead(heads: Uint32Array, i: number, level: number): boolean {
    if (heads[i] === 0) return false;
    const victims: number[] = [];
    pteListForEach(this.rmapPool, heads, i, (sptep) => victims.push(sptep));
    this.stats.sptes_visited += victims.length;
    for (const sptep of victims) this.dropSpte(Math.floor(sptep / 512), sptep % 512, level);
    return victims.length > 0;
  }

  // ---- linking, zapping -----------------------------------------------------------------

  /**
   * `drop_parent_pte`: entry `idx` of `sp` (which points at `child`) is cleared and leaves the
   * child's `parent_ptes`; a child left without parents stays allocated (an orphan).
   */
  private dropParentPte(child: number, sp: number, idx: number): boolean {
    const s = this.store;
    if (!pteListRemove(this.rmapPool, s.parentPtes, child, sp * 512 + idx)) {
      throw new MmuBugError(
        "mmu_page_remove_parent_pte",
        `sp ${sp} entry ${idx} is not a parent of sp ${child}`,
      );
    }
    const level = roleLevel(s.role[sp]!);
    const flush = this.setSpte(sp, idx, level, this.entryGfnFormula(sp, idx), 0, 0);
    s.unlinked();
    return flush;
  }

  /** `kvm_mmu_unlink_parents`: drop every parent entry of `sp`. */
  private unlinkParents(sp: number): void {
    for (const sptep of this.parentPtesOf(sp))
      this.dropParentPte(sp, Math.floor(sptep / 512), sptep % 512);
  }

  /**
   * `__link_shadow_page`: a present (large) leaf is dropped first with a flush; the entry points
   * at `child`, joins its `parent_ptes`, and an unsync child marks the entry (`mark_unsync`).
   */
  linkShadowPage(sp: number, idx: number, level: number, child: number): void {
    const s = this.store;
    const lo = s.spt[sp]![idx * 2]!;
    if (isShadowPresent(lo)) {
      this.dropSpte(sp, idx, level);
      this.core.flushRemoteTlbs("drop_large_spte");
    }
    makeNonleafSpte(this.out, s.spPfn(child));
    this.setSpte(sp, idx, level, s.gfn[child]!, this.out.lo, this.out.hi);
    pteListAdd(this.rmapPool, s.parentPtes, child, sp * 512 + idx);
    if (s.unsyncChildren[child]! > 0 || s.unsync[child] !== 0) this.markUnsync(sp * 512 + idx);
  }

  /**
   * `mmu_page_zap_pte`: a leaf is dropped, a non-leaf unlinks its child (which stays), an MMIO
   * spte is cleared. Returns whether a present entry went away.
   */
  private zapPte(sp: number, idx: number, level: number): boolean {
    const s = this.store;
    const lo = s.spt[sp]![idx * 2]!;
    if (isShadowPresent(lo)) {
      if (isLastSpte(lo, level)) this.dropSpte(sp, idx, level);
      else this.dropParentPte(s.pfnToSp(sptePfn(lo, s.spt[sp]![idx * 2 + 1]!)), sp, idx);
      return true;
    }
    if (isMmioSpte(lo)) this.setSpte(sp, idx, level, this.entryGfnFormula(sp, idx), 0, 0);
    return false;
  }

  /**
   * `__kvm_mmu_prepare_zap_page`: zap the unsync pages below it, drop every leaf, orphan every
   * child, unlink the parents, undo `account_shadowed`, leave the unsync count, mark invalid;
   * pages with no root reference leave n_used and go to the invalid list. A pinned root stays
   * until its vCPU reloads (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS). Returns the number of pages put on
   * the list.
   */
  private prepareZapPage(sp: number): number {
    const s = this.store;
    if (this.core.trace.on) this.traceSp(EV.prepareZap, sp);
    this.stats.mmu_shadow_zapped++;
    let zapped = this.zapUnsyncChildren(sp);
    // "Zapping children means active_mmu_pages has become unstable" (list_unstable).
    this.listUnstable = zapped > 0;
    const level = roleLevel(s.role[sp]!);
    for (let i = 0; i < 512; i++) if (s.spt[sp]![i * 2] !== 0) this.zapPte(sp, i, level);
    this.unlinkParents(sp);
    if ((s.role[sp]! & (ROLE_INVALID | ROLE_DIRECT)) === 0) this.unaccountShadowed(sp);
    if (s.unsync[sp] !== 0) this.unlinkUnsyncPage(sp);
    if (s.rootCount[sp] === 0) {
      zapped++;
      if (this.onActiveList(sp)) this.listDel(sp);
      if ((s.role[sp]! & ROLE_INVALID) === 0 || !this.invalidList.includes(sp))
        this.invalidList.push(sp);
      this.stats.n_used_mmu_pages--;
      // A zapped root that nobody pins any more leaves the roots list too.
      const r = this.roots.indexOf(sp);
      if (r >= 0) this.roots.splice(r, 1);
    } else {
      // A pinned root leaves the active list (still counted in n_used) and is freed when its
      // root_count reaches 0; its vCPUs must load another.
      if (this.onActiveList(sp)) this.listDel(sp);
      this.core.requestRootReload();
    }
    s.role[sp] = (s.role[sp]! | ROLE_INVALID) >>> 0;
    return zapped;
  }

  /** `mmu_zap_unsync_children`: zap every unsync page below an upper-level page. */
  private zapUnsyncChildren(parent: number): number {
    if (roleLevel(this.store.role[parent]!) === 1) return 0;
    let zapped = 0;
    for (;;) {
      const pages = this.unsyncWalk(parent);
      if (pages.length === 0) return zapped;
      for (const { sp, path } of pages) {
        this.prepareZapPage(sp);
        this.clearParents(path);
        zapped++;
      }
    }
  }

  /** `kvm_mmu_commit_zap_page`: one remote flush if the list is non-empty, then free. */
  commitZapPage(): void {
    if (this.invalidList.length === 0) return;
    this.core.flushRemoteTlbs("commit_zap_page");
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
    if (this.legacyReclaim) {
      // v4 and before: zap the tail page, whatever it is, until KVM_REFILL_PAGES are free.
      while (this.availablePages() < KVM_REFILL_PAGES) {
        if (!this.prepareZapTail()) break;
        this.stats.mmu_recycled++;
      }
      this.commitZapPage();
      return;
    }
    this.zapOldestMmuPages(KVM_REFILL_PAGES - avail);
  }

  /** `prepare_zap_oldest_mmu_page` (v4 and before): the tail page, a pinned root included. */
  private prepareZapTail(): boolean {
    const sp = this.listTail;
    if (sp < 0) return false;
    this.prepareZapPage(sp);
    return true;
  }

  /** `kvm_mmu_zap_oldest_mmu_pages`: from the tail, skipping roots; `mmu_recycled` += zapped. */
  zapOldestMmuPages(nrToZap: number): number {
    const s = this.store;
    let total = 0;
    // No labelled loop for KVM's `goto restart` (StrykerJS's mutant switches cannot wrap one).
    let sp = this.listTail;
    while (sp >= 0) {
      const prev = s.prev[sp]!;
      if (s.rootCount[sp]! > 0) {
        sp = prev;
        continue;
      }
      total += this.prepareZapPage(sp);
      if (total >= nrToZap) break;
      // Unsync children zapped with it: `prev` may be off the list (`goto restart`).
      sp = this.listUnstable ? this.listTail : prev;
    }
    this.commitZapPage();
    this.stats.mmu_recycled += total;
    return total;
  }

  /**
   * `kvm_mmu_change_mmu_pages`: zap the oldest until n_used ≤ goal; if any had to go, n_max is
   * what is left in use, which can be above the goal (pinned roots stay) or below it (unsync
   * children are zapped with their parent).
   */
  changeMmuPages(goal: number): void {
    let max = goal;
    if (this.stats.n_used_mmu_pages > goal) {
      if (this.legacyReclaim) {
        while (this.stats.n_used_mmu_pages > goal && this.prepareZapTail());
        this.commitZapPage();
      } else this.zapOldestMmuPages(this.stats.n_used_mmu_pages - goal);
      max = this.stats.n_used_mmu_pages;
    }
    this.stats.n_max_mmu_pages = max;
  }

  // ---- fault path -----------------------------------------------------------------------

  /**
   * `direct_map` (preceded by `make_mmu_pages_available`) from table `root` at `rootLevel`,
   * then `direct_pte_prefetch`.
   */
  directMap(root: number, fault: KvmPageFault, rootLevel = this.rootLevel): number {
    const gfn = fault.gfn;
    const goalLevel = fault.goalLevel;
    this.makeMmuPagesAvailable();
    // direct_map: trace_kvm_mmu_spte_requested before the descent.
    if (this.core.trace.on) this.core.trace.emit(EV.spteRequested, gfn, fault.pfn, goalLevel);
    const s = this.store;
    let sp = root;
    let level = rootLevel;
    while (level > goalLevel) {
      const idx = spteIndex(gfn, level);
      const lo = s.spt[sp]![idx * 2]!;
      if (isShadowPresent(lo) && !isLastSpte(lo, level)) {
        sp = s.pfnToSp(sptePfn(lo, s.spt[sp]![idx * 2 + 1]!));
        level--;
        continue;
      }
      const span = GFN_SPAN[level]!;
      const child = this.getShadowPage(
        gfn - (gfn % span),
        childRole(s.role[sp]!, true, ACC_ALL, idx),
      );
      this.linkShadowPage(sp, idx, level, child);
      sp = child;
      level--;
    }
    const idx = spteIndex(gfn, level);
    const base = gfn - (gfn % GFN_SPAN[level]!);
    // No slot: mmu_set_spte makes an MMIO spte (mark_mmio_spte); v4's __direct_map counted
    // pf_fixed for it too.
    fault.mappedLeaf = true;
    const ret = this.mmuSetSpte(sp, idx, level, base, fault.pfn, ACC_ALL, fault.slot, fault);
    if (ret === RET_PF_SPURIOUS) return ret;
    // direct_pte_prefetch: not without A/D bits (sp_ad_disabled), where a prefetched spte could
    // not be told from an accessed one (since v4.10), and only at 4K.
    if (this.prefetch && level === 1 && (s.role[sp]! & ROLE_AD_DISABLED) === 0)
      this.directPtePrefetch(sp, idx);
    return ret;
  }

  /**
   * `mmu_set_spte` (see {@link ShadowMmuOps.mmuSetSpte}): no slot makes an MMIO spte; a present
   * non-leaf replaced by a leaf orphans its child, another pfn drops the old leaf (each with a
   * flush); `make_spte`, whose write permission `mmu_try_to_unsync_pages` may refuse
   * (`wrprot`: a write fault is then emulated); the stored access follows the new spte.
   */
  mmuSetSpte(
    sp: number,
    idx: number,
    level: number,
    gfn: number,
    pfn: number,
    pteAccess: number,
    slot: MemSlot | null,
    fault: KvmPageFault | null,
  ): number {
    const store = this.store;
    const spt = store.spt[sp]!;
    if (slot === null) {
      makeMmioSpte(this.out, gfn, this.core.mmioGen);
      this.setSpte(sp, idx, level, gfn, this.out.lo, this.out.hi);
      this.stats.pf_mmio_spte_created++;
      if (this.core.trace.on)
        this.core.trace.emit(
          EV.markMmio,
          sp * 512 + idx,
          gfn,
          pteAccess & MMIO_ACCESS_MASK,
          this.core.mmioGen,
        );
      return RET_PF_EMULATE;
    }
    // Prefetching always gets a writable pfn.
    const hostWritable = fault === null || fault.mapWritable;
    const prefetch = fault === null || fault.prefetch;
    let lo = spt[idx * 2]!;
    let flush = false;
    if (isShadowPresent(lo)) {
      const hi = spt[idx * 2 + 1]!;
      if (level > 1 && !isLastSpte(lo, level)) {
        this.dropParentPte(store.pfnToSp(sptePfn(lo, hi)), sp, idx);
        flush = true;
      } else if (pfn !== sptePfn(lo, hi)) {
        this.dropSpte(sp, idx, level);
        flush = true;
      }
      lo = spt[idx * 2]!;
    }
    // make_spte's write check: only when W would be newly granted (the old spte had none).
    const canWrite =
      (pteAccess & ACC_WRITE_MASK) === 0 ||
      !hostWritable ||
      (lo & SPTE_W) !== 0 ||
      this.mmuTryToUnsyncPages(slot, gfn, true, prefetch);
    const out = this.out;
    makeSpte(out, level, pteAccess, pfn, lo, prefetch, hostWritable, canWrite);
    makeSpteMarkDirty(this.core, slot, gfn, out.lo);
    let ret = RET_PF_FIXED;
    if (out.lo === lo && out.hi === spt[idx * 2 + 1]) ret = RET_PF_SPURIOUS;
    else {
      if (this.setSpte(sp, idx, level, gfn, out.lo, out.hi)) flush = true;
      if (this.core.trace.on)
        this.core.trace.emit(EV.setSpte, gfn, out.lo, out.hi, sp * 512 + idx, level);
    }
    if (out.wrprot && fault?.write === true) ret = RET_PF_EMULATE;
    if (flush) this.core.flushRemoteTlbs("mmu_set_spte");
    const acc = store.access[sp];
    if (acc !== null && acc !== undefined) acc[idx] = pteAccess;
    return ret;
  }

  /** `__direct_pte_prefetch`: map the non-present runs of the aligned group of 8. */
  directPtePrefetch(sp: number, faultIdx: number): void {
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
    const slot = this.core.slots.gfnToSlot(gfn);
    // gfn_to_memslot_dirty_bitmap: no slot, or a dirty-logged one → no prefetch.
    if (slot === undefined || (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0 || slot.readonly)
      return false;
    // kvm_prefetch_pages: all pages must lie inside the slot.
    if (gfn + (end - start) > slot.baseGfn + slot.npages) return false;
    for (let i = start; i < end; i++) {
      const g = gfn + (i - start);
      this.mmuSetSpte(sp, i, 1, g, hostPfn(slot, g), roleAccess(this.store.role[sp]!), slot, null);
    }
    return true;
  }

  private entryGfnFormula(sp: number, idx: number): number {
    return kvmMmuPageGetGfn(this.store, sp, idx, false);
  }

  faultinPfn(fault: KvmPageFault): number {
    return kvmFaultinPfn(fault);
  }

  hugepageAdjust(fault: KvmPageFault): void {
    kvmMmuHugepageAdjust(this.core, fault);
  }

  /** `mmu_spte_update` of a present leaf (see {@link ShadowMmuOps.updateSpte}). */
  updateSpte(sp: number, idx: number, level: number, gfn: number, lo: number, hi: number): boolean {
    return this.setSpte(sp, idx, level, gfn, lo, hi);
  }

  /**
   * `validate_direct_spte`: a direct child linked at entry `idx` whose access differs from
   * `access` is unlinked (with a flush), so that the caller links one with the right access.
   */
  validateDirectSpte(sp: number, idx: number, level: number, access: number): void {
    const s = this.store;
    const lo = s.spt[sp]![idx * 2]!;
    if (!isShadowPresent(lo) || isLastSpte(lo, level)) return;
    const child = s.pfnToSp(sptePfn(lo, s.spt[sp]![idx * 2 + 1]!));
    if (roleAccess(s.role[child]!) === access) return;
    this.dropParentPte(child, sp, idx);
    this.core.flushRemoteTlbs("validate_direct_spte");
  }

  /** The fast path's cmpxchg of a leaf found by a lockless walk (`fast_pf_fix_direct_spte`). */
  fastPfFixSpte(last: LastSpte, gfn: number, newLo: number): void {
    const base = gfn - (gfn % GFN_SPAN[last.level]!);
    this.setSpte(last.sp, last.idx, last.level, base, newLo, last.hi);
    // fast_pf_fix_direct_spte marks only a page that became writable.
    if ((newLo & SPTE_W) !== 0 && (last.lo & SPTE_W) === 0) {
      const slot = this.core.slots.gfnToSlot(gfn);
      if (slot !== undefined) this.core.markPageDirtyInSlot(slot, gfn);
    }
  }

  /**
   * `kvm_rmap_zap_gfn_range` / `kvm_unmap_gfn_range` for rmaps: zap all sptes on every rmap head
   * (levels 1..3) of each slot overlapping [start, end).
   */
  zapLeafs(start: number, end: number): boolean {
    let flush = false;
    const w = new SlotRmapWalkIterator();
    for (w.init(this.core.slots.list(), start, end, 1, 3); w.valid; w.next()) {
      this.stats.rmap_heads_scanned++;
      if (this.zapRmapHead(w.heads, w.index, w.level)) flush = true;
    }
    return flush;
  }

  /**
   * `kvm_rmap_age_gfn_range` (`clear`; `kvm_age_rmap`) / `kvm_test_age_rmap`: whether an spte on
   * the rmaps of [start, end) was accessed, clearing A on the way when `clear` (through the sink,
   * whose flush request is dropped: the notifier decides). Sptes without A/D bits
   * (role.ad_disabled) count as young and aging zaps them — the pre-v4.10 emulation
   * (kvm_age_hva → kvm_unmap_rmapp); v4.10+ marks them for access tracking instead, which the
   * simulator does not model. Returns {@link AGE_YOUNG} | {@link AGE_ZAPPED}.
   */
  ageGfnRange(start: number, end: number, clear: boolean): number {
    let ret = 0;
    const w = new SlotRmapWalkIterator();
    const victims: number[] = [];
    const s = this.store;
    for (w.init(this.core.slots.list(), start, end, 1, 3); w.valid; w.next()) {
      this.stats.rmap_heads_scanned++;
      if (w.heads[w.index] === 0) continue;
      victims.length = 0;
      pteListForEach(this.rmapPool, w.heads, w.index, (sptep) => victims.push(sptep));
      this.stats.sptes_visited += victims.length;
      for (const sptep of victims) {
        const sp = Math.floor(sptep / 512);
        const idx = sptep % 512;
        const lo = s.spt[sp]![idx * 2]!;
        if ((s.role[sp]! & ROLE_AD_DISABLED) !== 0) {
          ret |= AGE_YOUNG;
          if (clear) {
            this.dropSpte(sp, idx, w.level);
            ret |= AGE_ZAPPED;
          }
        } else if ((lo & SPTE_A) !== 0) {
          ret |= AGE_YOUNG;
          if (clear)
            this.setSpte(
              sp,
              idx,
              w.level,
              this.entryGfnFormula(sp, idx),
              (lo & ~SPTE_A) >>> 0,
              s.spt[sp]![idx * 2 + 1]!,
            );
        }
      }
    }
    return ret;
  }

  /** Drop the leaf mapping `gfn` under each root, each with its own flush (`kvm_flush_remote_tlbs_sptep`). */
  zapSpte(gfn: number): number {
    let n = 0;
    const last = this.last;
    for (const root of this.roots) {
      if (this.isInvalidRoot(root)) continue;
      walkToLastSpte(this.store, root, this.rootLevel, gfn, last);
      if (!isShadowPresent(last.lo)) continue;
      this.dropSpte(last.sp, last.idx, last.level);
      this.core.flushRemoteTlbs("zap_spte");
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
      this.prepareZapPage(sp);
      // Zapping a page orphans its children and takes only the page itself off the list,
      // unless it zapped unsync children too: then `prev` may be gone, and KVM starts again
      // from the tail (kvm_zap_obsolete_pages: `if (unstable) goto restart`).
      sp = this.listUnstable ? this.listTail : prev;
    }
    this.commitZapPage();
  }

  // ---- dirty logging (rmap walks) -------------------------------------------------------

  /**
   * `rmap_write_protect(pt_protect = false)`: clear W (keep MMU-writable) on every spte of the
   * head. Its callers do not need to know whether one changed: enabling logging flushes
   * unconditionally (`kvm_mmu_slot_apply_flags`), and the dirty-log ioctls flush after the whole
   * mask.
   */
  private wrprotHead(heads: Uint32Array, i: number, level: number, clear = SPTE_W): void {
    if (heads[i] === 0) return;
    const s = this.store;
    pteListForEach(this.rmapPool, heads, i, (sptep) => {
      const sp = Math.floor(sptep / 512);
      const idx = sptep % 512;
      const lo = s.spt[sp]![idx * 2]!;
      this.stats.sptes_visited++;
      if ((lo & clear) === 0) return;
      this.setSpte(
        sp,
        idx,
        level,
        this.entryGfnFormula(sp, idx),
        (lo & ~clear) >>> 0,
        s.spt[sp]![idx * 2 + 1]!,
      );
    });
  }

  /** `kvm_mmu_slot_leaf_clear_dirty` (PML): clear D on the 4K sptes of [start, end) (level-1 rmaps). */
  clearDirtyRange(start: number, end: number): void {
    const w = new SlotRmapWalkIterator();
    for (w.init(this.core.slots.list(), start, end, 1, 1); w.valid; w.next()) {
      this.stats.rmap_heads_scanned++;
      this.wrprotHead(w.heads, w.index, 1, SPTE_D);
    }
  }

  /**
   * `kvm_mmu_slot_remove_write_access` for rmaps (`walk_slot_rmaps`, levels minLevel..3) over the
   * slots overlapping [start, end).
   */
  wrprotRange(start: number, end: number, minLevel: number): void {
    const w = new SlotRmapWalkIterator();
    for (w.init(this.core.slots.list(), start, end, minLevel, 3); w.valid; w.next()) {
      this.stats.rmap_heads_scanned++;
      this.wrprotHead(w.heads, w.index, w.level);
    }
  }

  /**
   * `kvm_mmu_slot_gfn_write_protect` for rmaps: `rmap_write_protect(pt_protect = true)` on the
   * heads of `gfn` at levels minLevel..3 — clears W and MMU-writable. Returns whether one changed.
   */
  writeProtectGfn(gfn: number, minLevel: number): boolean {
    const slot = this.core.slots.gfnToSlot(gfn);
    if (slot === undefined) return false;
    // One head per level is visited (a slot without rmaps yet has only empty ones).
    this.stats.rmap_heads_scanned += 4 - minLevel;
    const rmap = slotArch(slot).rmap;
    if (rmap === null) return false;
    const st = this.store;
    let changed = false;
    for (let level = minLevel; level <= 3; level++) {
      const heads = rmap.heads[level - 1]!;
      const i = gfnToIndex(gfn, slot.baseGfn, level);
      pteListForEach(this.rmapPool, heads, i, (sptep) => {
        const sp = Math.floor(sptep / 512);
        const idx = sptep % 512;
        const lo = st.spt[sp]![idx * 2]!;
        const hi = st.spt[sp]![idx * 2 + 1]!;
        if ((lo & SPTE_W) === 0 && (hi & SPTE_HI_MMU_WRITABLE) === 0) return;
        this.setSpte(
          sp,
          idx,
          level,
          this.entryGfnFormula(sp, idx),
          (lo & ~SPTE_W) >>> 0,
          (hi & ~SPTE_HI_MMU_WRITABLE) >>> 0,
        );
        changed = true;
      });
    }
    return changed;
  }

  /** `kvm_mmu_write_protect_pt_masked`: level-1 rmaps of the set bits only. */
  wrprotMasked(base: number, maskLo: number, maskHi: number, clear = SPTE_W): void {
    const slot = this.core.slots.gfnToSlot(base);
    if (slot === undefined) return;
    const rmap = slotArch(slot).rmap;
    for (let bit = 0; bit < 64; bit++) {
      // Stryker disable next-line ArithmeticOperator: JS shift counts are mod 32, so bit - 32 and bit + 32 shift alike
      if (((bit < 32 ? maskLo >>> bit : maskHi >>> (bit - 32)) & 1) === 0) continue;
      const gfn = base + bit;
      if (gfn >= slot.baseGfn + slot.npages) break;
      this.stats.rmap_heads_scanned++;
      if (rmap !== null) this.wrprotHead(rmap.heads[0], gfn - slot.baseGfn, 1, clear);
    }
  }

  /**
   * `kvm_rmap_zap_collapsible_sptes` (modern criterion, ~5.13+): walk the level-1 and level-2
   * rmaps of the range and zap every spte of a direct page whose region could be mapped one
   * level higher (`sp.level < kvm_mmu_max_mapping_level(sp.gfn)`); page tables stay allocated
   * (empty). Indirect pages mirror guest tables and are never collapsible. Flushes: one at the
   * end (`batched`) or one per zapped spte (`perSpte`). Returns the number of sptes zapped.
   */
  zapCollapsible(
    start: number,
    end: number,
    canBeHuge: (gfn: number, level: number) => boolean,
    perSpte: boolean,
  ): number {
    const s = this.store;
    return this.zapCollapsibleRmaps(start, end, 2, perSpte, (sptep) => {
      const sp = Math.floor(sptep / 512);
      return (s.role[sp]! & ROLE_DIRECT) !== 0 && canBeHuge(s.gfn[sp]!, roleLevel(s.role[sp]!) + 1);
    });
  }

  /**
   * Seed 2015 itself (v4.1, `kvm_mmu_zap_collapsible_sptes` of commit 3ea3b7fa): walk the
   * slot's level-1 rmaps only and zap every spte that lives in a direct page and maps a pfn of a
   * huge (compound) host page (`hugeHost(gfn)`), whatever lpage_info says; one flush at the end
   * if anything was zapped (`batched`) or one per spte (`perSpte`).
   */
  zapCollapsible2015(
    start: number,
    end: number,
    hugeHost: (gfn: number) => boolean,
    perSpte: boolean,
  ): number {
    const s = this.store;
    return this.zapCollapsibleRmaps(start, end, 1, perSpte, (sptep) => {
      const sp = Math.floor(sptep / 512);
      return (s.role[sp]! & ROLE_DIRECT) !== 0 && hugeHost(this.entryGfnFormula(sp, sptep % 512));
    });
  }

  /** The rmap walk both collapse criteria share (levels 1..`maxLevel`), with its flushes. */
  private zapCollapsibleRmaps(
    start: number,
    end: number,
    maxLevel: number,
    perSpte: boolean,
    collapsible: (sptep: number) => boolean,
  ): number {
    let n = 0;
    const w = new SlotRmapWalkIterator();
    for (w.init(this.core.slots.list(), start, end, 1, maxLevel); w.valid; w.next()) {
      this.stats.rmap_heads_scanned++;
      if (w.heads[w.index] === 0) continue;
      const victims: number[] = [];
      pteListForEach(this.rmapPool, w.heads, w.index, (sptep) => {
        this.stats.sptes_visited++;
        if (collapsible(sptep)) victims.push(sptep);
      });
      for (const sptep of victims) {
        this.dropSpte(Math.floor(sptep / 512), sptep % 512, w.level);
        if (perSpte) this.core.flushRemoteTlbs("zap_collapsible_spte");
      }
      n += victims.length;
    }
    this.stats.collapse_sptes_zapped += n;
    if (n > 0 && !perSpte) this.core.flushRemoteTlbs("zap_collapsible_sptes");
    return n;
  }

  // ---- seed 2017: possible-writable bitmap, write protection by page ----------------------------

  /**
   * Write-protect the entries of `sp` (seed 2017's per-page pass): with `bitmap`, only the
   * entries of `possible_writable_spte_bitmap` (a page whose count is 0 is skipped), else all
   * 512 (scan). Leaves lose W (and MMU-writable with `clearMmuWritable`, as for a shadowed
   * guest table); non-leaf entries lose W with `nonLeaf`. Counts `wp_entries_examined`,
   * `wp_entries_changed`, `wp_sps_skipped_zero_count`; returns whether an entry changed.
   */
  writeProtectSp(
    sp: number,
    bitmap: boolean,
    nonLeaf: boolean,
    clearMmuWritable: boolean,
  ): boolean {
    const s = this.store;
    const st = this.stats;
    const level = roleLevel(s.role[sp]!);
    let idxs: readonly number[];
    if (bitmap) {
      if (s.pwCount[sp] === 0) {
        st.wp_sps_skipped_zero_count++;
        return false;
      }
      const set: number[] = [];
      for (let w = 0; w < 16; w++) {
        let b = s.pwBitmap[sp * 16 + w]!;
        while (b !== 0) {
          set.push(w * 32 + 31 - Math.clz32(b & -b));
          b &= b - 1;
        }
      }
      idxs = set;
    } else idxs = ALL_ENTRIES;
    let changed = false;
    const spt = s.spt[sp]!;
    for (const i of idxs) {
      st.wp_entries_examined++;
      const lo = spt[i * 2]!;
      const hi = spt[i * 2 + 1]!;
      if (!isShadowPresent(lo)) continue;
      let nlo = lo;
      let nhi = hi;
      if (isLastSpte(lo, level)) {
        nlo = (lo & ~SPTE_W) >>> 0;
        if (clearMmuWritable) nhi = (hi & ~SPTE_HI_MMU_WRITABLE) >>> 0;
      } else if (nonLeaf) nlo = (lo & ~SPTE_W) >>> 0;
      if (nlo === lo && nhi === hi) continue;
      this.setSpte(sp, i, level, this.entryGfnFormula(sp, i), nlo, nhi);
      st.wp_entries_changed++;
      changed = true;
    }
    return changed;
  }

  /**
   * The RFC's lazy step (seed 2017 series, "fast write protect"): a write fault whose path
   * crosses a non-leaf entry without W write-protects the page below it (its possibly-writable
   * entries, or all 512 without the bitmap) and gives the entry its W back, level by level
   * from the root; the leaf is then fixed by the fast path.
   */
  pushDownWriteProtect(root: number, rootLevel: number, gfn: number, bitmap: boolean): void {
    const s = this.store;
    let sp = root;
    let level = rootLevel;
    while (level > 1) {
      const i = spteIndex(gfn, level);
      const lo = s.spt[sp]![i * 2]!;
      const hi = s.spt[sp]![i * 2 + 1]!;
      if (!isShadowPresent(lo) || isLastSpte(lo, level)) break;
      const child = s.pfnToSp(sptePfn(lo, hi));
      if ((lo & SPTE_W) === 0) {
        this.writeProtectSp(child, bitmap, true, false);
        this.setSpte(sp, i, level, this.entryGfnFormula(sp, i), (lo | SPTE_W) >>> 0, hi);
      }
      sp = child;
      level--;
    }
  }

  /** Parentless, non-root live pages (`orphan_sps`); the roots list holds every pinned page. */
  orphanCount(): number {
    let n = 0;
    const s = this.store;
    for (let sp = 0; sp < s.created; sp++)
      if (s.isLive(sp) && s.parentPtes[sp] === 0 && !this.roots.includes(sp)) n++;
    return n;
  }
}

// ---- the VM's MMU ----------------------------------------------------------------------------

/**
 * One VM's MMU: `kvm->arch`'s MMU fields and the functions of mmu.c that act on the whole VM, plus
 * the per-vCPU entry points (`kvm_mmu_page_fault`, `kvm_mmu_load`, `kvm_init_mmu`). It is what
 * `vm.mmu` shows; the VM-level ioctls that reach it live on the VM.
 */
export class VmMmu implements MmuCore {
  /** The generic VM (memslots, stats, vCPUs, remote flushes). */
  readonly kvm: Kvm;
  /** The VM's memslots (`kvm->memslots`; the object stays, its contents change). */
  readonly slots: MemSlots;
  readonly store: MmuPageStore;
  readonly stats: KvmStats;
  readonly trace: MmuTrace;
  /** `tdp_mmu_enabled`: the TDP MMU builds the tables (features.mmuFlavor "tdp_mmu"). */
  readonly tdpMmuEnabled: boolean;
  /** The TDP MMU, or null with `tdp_mmu=0`. */
  readonly tdp: TdpMmu | null;
  /** The shadow (rmap/hash) MMU, or null while the memslots have no rmaps. */
  readonly shadow: ShadowMmu | null;
  /** TDP root level (4 or 5). */
  readonly rootLevel: number;
  /** Role word of the vCPUs' roots. */
  readonly rootRole: number;
  /** `kvm->arch.mmu_valid_gen` (toggles 0/1). */
  mmuValidGen = 0;
  /** The MMIO generation: the memslot generation, masked to the bits an MMIO spte holds. */
  mmioGen = 0;
  /** `kvm->arch.n_requested_mmu_pages` (0: default sizing). */
  private nRequestedMmuPages = 0;
  private readonly features: Features;
  private readonly last = new LastSpte();
  /** New pages may get gfn arrays (shadow paging, seed 2010 "before", the self-check). */
  private readonly faultTranslation: boolean;
  /** Direct pages get gfn arrays (seed 2010 "before", or the self-check needs them). */
  readonly directTranslation: boolean;

  /** `!tdp_enabled` (`ept=0`): the vCPUs run on shadow page tables. */
  readonly shadowPaging: boolean;
  /** features.statsStyle "legacy": only pf_fixed, per installed mapping. */
  private readonly legacyStats: boolean;
  /** features.spteLayout: where views put the software bits. */
  readonly spteLayout: "modern" | "v4";
  /** features.fastPageFault. */
  private readonly fastMode: "modern" | "v4" | "none";

  constructor(kvm: Kvm, shadowPaging = false) {
    const f = kvm.features;
    this.kvm = kvm;
    this.shadowPaging = shadowPaging;
    this.legacyStats = f.statsStyle === "legacy";
    this.spteLayout = f.spteLayout;
    this.fastMode = f.fastPageFault;
    this.slots = kvm.memslots;
    this.features = f;
    this.stats = kvm.vmStat;
    this.store = new MmuPageStore(kvm.vmStat, kvm.memcg);
    this.trace = new MmuTrace(kvm.memcg);
    this.directTranslation = f.allocTranslationForDirect || f.selfCheckGfns;
    this.faultTranslation = shadowPaging || this.directTranslation;
    this.rootLevel = f.tdpLevels;
    // kvm_calc_tdp_mmu_root_page_role: ad_disabled without EPT A/D bits (shadow paging's
    // x86-format sptes always have them).
    this.rootRole = tdpRootRole(this.rootLevel, shadowPaging || f.eptAccessDirty);
    this.tdpMmuEnabled = !shadowPaging && f.mmuFlavor === "tdp_mmu";
    this.tdp = this.tdpMmuEnabled
      ? new TdpMmu(this, this.rootLevel, this.rootRole, f.hugeOnDirtyWrite === "zap")
      : null;
    this.shadow = this.tdpMmuEnabled
      ? null
      : new ShadowMmu(this, this.rootLevel, this.rootRole, f, shadowPaging);
    this.stats.n_max_mmu_pages = KVM_MIN_ALLOC_MMU_PAGES;
    this.store.pwTrack = f.possibleWritableBitmap;
  }

  // ---- MmuCore ---------------------------------------------------------------------------

  /** `kvm_flush_remote_tlbs` (counted by the VM; see `Kvm.flushRemoteTlbs`). */
  flushRemoteTlbs(reason: string): void {
    this.kvm.flushRemoteTlbs(reason);
  }

  markPageDirtyInSlot(slot: MemSlot, gfn: number): void {
    this.kvm.markPageDirtyInSlot(slot, gfn);
  }

  /** Ask every vCPU to drop an invalidated root before its next entry (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS). */
  requestRootReload(): void {
    this.kvm.makeAllCpusRequest(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS);
  }

  allocDirectSp(role: number, gfn: number, tdpMmuPage: boolean): number {
    const f = this.features;
    return this.store.alloc(
      role,
      gfn,
      tdpMmuPage,
      f.allocTranslationForDirect || f.selfCheckGfns,
      f.allocTranslationForDirect,
    );
  }

  checkGfn(sp: number, idx: number, gfn: number): void {
    if (!this.features.selfCheckGfns || !this.store.translation[sp]) return;
    this.stats.gfn_self_checks++;
    const stored = kvmMmuPageGetGfn(this.store, sp, idx, true);
    const computed = kvmMmuPageGetGfn(this.store, sp, idx, false);
    if (stored !== computed || stored !== gfn) {
      throw new MmuBugError(
        "kvm_mmu_page_get_gfn",
        `seed-2010 self-check: sp ${sp} entry ${idx}: stored gfn 0x${stored.toString(16)}, formula 0x${computed.toString(16)}, expected 0x${gfn.toString(16)}`,
      );
    }
  }

  readGuestPte(gpa: number, wide: boolean, out: Uint32Array): boolean {
    const gfn = Math.floor(gpa / 4096);
    const slot = this.slots.gfnToSlot(gfn);
    if (slot === undefined) return false;
    const hvfn = slot.hvfn(gfn);
    const off = gpa % 4096;
    out[0] = this.kvm.memory.read32(hvfn, off);
    out[1] = wide ? this.kvm.memory.read32(hvfn, off + 4) : 0;
    return true;
  }

  /**
   * `kvm_mmu_max_mapping_level`: highest level ≤ maxLevel whose `disallow_lpage` is 0, capped
   * by the host mapping level.
   */
  maxMappingLevel(slot: MemSlot, gfn: number, maxLevel: number): number {
    // 4K host pages cap the result at 1 whatever lpage_info says: skip the lookups.
    if (slot.backing === "4k") return 1;
    const arch = slotArch(slot);
    for (; maxLevel > 1; maxLevel--) {
      if (arch.disallowLpage(slot, gfn, maxLevel) === 0) break;
    }
    if (maxLevel === 1) return 1;
    return Math.min(hostMappingLevel(slot, gfn), maxLevel);
  }

  // ---- per-vCPU: kvm_init_mmu, roots ------------------------------------------------------

  /**
   * `kvm_init_mmu`'s MMU half for a TDP VM (`init_kvm_tdp_mmu`): the root role and the handler.
   * (The guest-walk half — `cpu_role`, permission tables — is filled by the vCPU, which owns the
   * registers.)
   */
  initMmu(mmu: KvmMmu): void {
    mmu.shadowPaging = this.shadowPaging;
    if (!this.shadowPaging) {
      mmu.rootRole = this.rootRole;
      mmu.pageFault = kvmTdpPageFault;
      return;
    }
    // kvm_init_shadow_mmu: the cpu role with efer_nx forced on (KVM uses NX itself under
    // shadow paging), cr0_wp and the SMEP/SMAP-andnot-WP bits; access ACC_ALL.
    // Guests not in long mode are shadowed with PAE tables (level at least 3); paging off
    // gives a direct role with none of the paging bits.
    let r = Math.max(mmu.rootLevel, 3) | (7 << ROLE_ACCESS_SHIFT) | ROLE_EFER_NX;
    if (mmu.rootLevel === 0) r |= ROLE_DIRECT;
    else {
      if (mmu.rootLevel === 2) r |= ROLE_HAS_4_BYTE_GPTE;
      if (mmu.wp) r |= ROLE_CR0_WP;
      else {
        if (mmu.smep) r |= ROLE_SMEP_ANDNOT_WP;
        if (mmu.smap) r |= ROLE_SMAP_ANDNOT_WP;
      }
    }
    mmu.rootRole = r >>> 0;
    mmu.pageFault = null;
  }

  /**
   * `kvm_mmu_load`: give the vCPU a root when it has none. Under shadow paging
   * (`mmu_alloc_shadow_roots`): the page for the CR3 frame with the root role (a dummy root
   * when no memslot holds the frame), then `kvm_mmu_sync_roots`.
   */
  mmuLoad(mmu: KvmMmu): void {
    if (mmu.root !== -1) return;
    // kvm_mmu_load tops up the caches first (mmu_topup_memory_caches), failing with -ENOMEM.
    this.topupMemoryCaches(mmu);
    if (!this.shadowPaging) {
      mmu.root = this.tdp !== null ? this.tdp.getVcpuRoot() : this.shadow!.getVcpuRoot();
      return;
    }
    const sh = this.shadow!;
    const gfn = mmu.cr3Hi * 1048576 + (mmu.cr3Lo >>> 12);
    mmu.rootPgd = gfn;
    if (mmu.rootLevel < 4) {
      // pae_root: KVM shadows a guest that is not in long mode with PAE tables. Paging off:
      // four direct roots for the four GiB (mmu_alloc_direct_roots); PAE: one root per present
      // PDPTE register; 32-bit: four roots for the quarters of the guest's page directory
      // (role.quadrant). Each is a level-2 page.
      const base = mmu.rootRole & ~(ROLE_LEVEL_MASK | (3 << ROLE_QUADRANT_SHIFT));
      for (let i = 0; i < 4; i++) {
        let g: number;
        let quadrant = 0;
        if (mmu.rootLevel === 0) g = i * 262144;
        else if (mmu.rootLevel === 3) {
          if ((mmu.pdptrLo[i]! & 1) === 0) {
            mmu.paeRoot[i] = -1;
            continue;
          }
          g = (mmu.pdptrHi[i]! & 0xfffff) * 1048576 + (mmu.pdptrLo[i]! >>> 12);
        } else {
          g = gfn;
          quadrant = i;
        }
        const role = (base | 2 | (quadrant << ROLE_QUADRANT_SHIFT)) >>> 0;
        mmu.paeRoot[i] =
          mmu.rootLevel !== 0 && this.slots.gfnToSlot(g) === undefined
            ? -1
            : sh.getVcpuRoot(g, role, mmu);
      }
      mmu.root = KVM_PAE_ROOT;
      sh.syncRoots(mmu);
      return;
    }
    if (this.slots.gfnToSlot(gfn) === undefined) {
      mmu.root = KVM_DUMMY_ROOT;
      return;
    }
    mmu.root = sh.getVcpuRoot(gfn, mmu.rootRole, mmu);
    sh.syncRoots(mmu);
  }

  /**
   * `kvm_mmu_new_pgd` after a MOV CR3 to frame `gfn` (`fast_pgd_switch`): keep the current root
   * if it fits, else rotate the three cached previous roots looking for one that does; the one
   * rotated out last is freed. Without a fit the vCPU loads a root at its next entry. The new
   * root's flooding count is reset.
   */
  newPgd(mmu: KvmMmu, gfn: number): void {
    const sh = this.shadow!;
    if (mmu.root === KVM_DUMMY_ROOT) mmu.root = -1;
    // fast_pgd_switch keeps no special roots: pae_root is freed and loaded again.
    if (mmu.root === KVM_PAE_ROOT) this.freeRoots(mmu, true, 0);
    const usable = (root: number, pgd: number): boolean =>
      root >= 0 && pgd === gfn && this.store.role[root] === mmu.rootRole && !sh.isInvalidRoot(root);
    let found = false;
    if (mmu.root >= 0) {
      if (usable(mmu.root, mmu.rootPgd)) found = true;
      else {
        for (let i = 0; i < KVM_MMU_NUM_PREV_ROOTS && !found; i++) {
          const r = mmu.root;
          const p = mmu.rootPgd;
          mmu.root = mmu.prevRootSp[i]!;
          mmu.rootPgd = mmu.prevRootPgd[i]!;
          mmu.prevRootSp[i] = r;
          mmu.prevRootPgd[i] = p;
          if (usable(mmu.root, mmu.rootPgd)) found = true;
        }
        if (!found && mmu.root >= 0) {
          sh.putRoot(mmu.root);
          mmu.root = -1;
        }
      }
    } else {
      // cached_root_find_without_current: the hit becomes current and the roots after it move
      // up one slot, leaving the last one empty.
      for (let i = 0; i < KVM_MMU_NUM_PREV_ROOTS && !found; i++) {
        if (usable(mmu.prevRootSp[i]!, mmu.prevRootPgd[i]!)) {
          mmu.root = mmu.prevRootSp[i]!;
          mmu.rootPgd = mmu.prevRootPgd[i]!;
          for (let j = i; j < KVM_MMU_NUM_PREV_ROOTS - 1; j++) {
            mmu.prevRootSp[j] = mmu.prevRootSp[j + 1]!;
            mmu.prevRootPgd[j] = mmu.prevRootPgd[j + 1]!;
          }
          mmu.prevRootSp[KVM_MMU_NUM_PREV_ROOTS - 1] = -1;
          found = true;
        }
      }
    }
    if (found) sh.clearSpFlood(mmu.root);
  }

  /**
   * `kvm_mmu_free_roots` under shadow paging: the previous roots whose bit is set in `prev`,
   * then, with `current`, the current root (a `pae_root`'s four pages, or nothing for a dummy
   * root); one `kvm_mmu_commit_zap_page` for all of them. The vCPU loads a root at its next entry.
   */
  private freeRoots(mmu: KvmMmu, current: boolean, prev: number): void {
    const sh = this.shadow!;
    for (let i = 0; i < KVM_MMU_NUM_PREV_ROOTS; i++) {
      if ((prev & (1 << i)) === 0) continue;
      if (mmu.prevRootSp[i]! >= 0) sh.freeRootPage(mmu.prevRootSp[i]!);
      mmu.prevRootSp[i] = -1;
    }
    if (current) {
      if (mmu.root === KVM_PAE_ROOT) {
        for (let i = 0; i < 4; i++) {
          if (mmu.paeRoot[i]! >= 0) sh.freeRootPage(mmu.paeRoot[i]!);
          mmu.paeRoot[i] = -1;
        }
      } else if (mmu.root >= 0) sh.freeRootPage(mmu.root);
      mmu.root = -1;
    }
    sh.commitZapPage();
  }

  /** `kvm_mmu_unload` (`kvm_mmu_reset_context`): free the current and the previous roots. */
  unloadRoots(mmu: KvmMmu): void {
    if (this.shadow === null || !this.shadowPaging) return;
    this.freeRoots(mmu, true, (1 << KVM_MMU_NUM_PREV_ROOTS) - 1);
  }

  /**
   * What `vcpu_enter_guest` does for the MMU before the vCPU runs guest code again, in KVM's
   * order: KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, KVM_REQ_TLB_FLUSH (the vCPU flushes its own TLB:
   * `tlb_flush`), then `kvm_mmu_reload` (load a root when it has none). Requests raised meanwhile
   * (a flush while freeing a root merges with a pending one) are serviced before entry, as
   * `kvm_vcpu_exit_request` sends KVM round the loop again.
   */
  enterGuest(vcpu: KvmVcpuCommon, mmu: KvmMmu): void {
    const t = this.trace;
    const prevVcpu = t.vcpu;
    t.vcpu = mmu.vcpuId;
    do {
      if ((vcpu.requests & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS) !== 0) {
        vcpu.requests &= ~KVM_REQ_MMU_FREE_OBSOLETE_ROOTS;
        this.freeObsoleteRoots(mmu);
      }
      if ((vcpu.requests & KVM_REQ_MMU_SYNC) !== 0) {
        vcpu.requests &= ~KVM_REQ_MMU_SYNC;
        this.shadow?.syncRoots(mmu);
      }
      if ((vcpu.requests & KVM_REQ_TLB_FLUSH) !== 0) {
        vcpu.requests &= ~KVM_REQ_TLB_FLUSH;
        vcpu.stat.tlb_flush++;
      }
      if (mmu.root === -1) this.mmuLoad(mmu);
    } while (
      (vcpu.requests & (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS | KVM_REQ_TLB_FLUSH | KVM_REQ_MMU_SYNC)) !==
      0
    );
    t.vcpu = prevVcpu;
  }

  /** `kvm_mmu_free_obsolete_roots`: drop the vCPU's roots that were invalidated. */
  freeObsoleteRoots(mmu: KvmMmu): void {
    if (this.shadowPaging) {
      const sh = this.shadow!;
      let prev = 0;
      for (let i = 0; i < KVM_MMU_NUM_PREV_ROOTS; i++) {
        const r = mmu.prevRootSp[i]!;
        if (r >= 0 && sh.isInvalidRoot(r)) prev |= 1 << i;
      }
      // A pae_root or a dummy root has no shadow page of its own: KVM treats it as obsolete
      // (is_obsolete_root).
      const root = mmu.root;
      const current =
        root === KVM_PAE_ROOT || root === KVM_DUMMY_ROOT || (root >= 0 && sh.isInvalidRoot(root));
      if (current || prev !== 0) this.freeRoots(mmu, current, prev);
      return;
    }
    const root = mmu.root;
    if (root < 0) return;
    if (this.tdp !== null) {
      if (!this.tdp.isInvalidRoot(root)) return;
      this.tdp.putRoot(root);
    } else {
      if (!this.shadow!.isInvalidRoot(root)) return;
      this.shadow!.putRoot(root);
    }
    mmu.root = -1;
  }

  // ---- memory budget ---------------------------------------------------------------------------

  /**
   * `mmu_topup_memory_caches`: before a fault or a root load allocates, make sure the worst
   * case fits the memory budget — PT64_ROOT_MAX_LEVEL (5) pages with their gfn arrays, and
   * 1 + PT64_ROOT_MAX_LEVEL + PTE_PREFETCH_NUM (14) rmap descriptors, as KVM fills its caches
   * with. KVM's top-up failing makes the fault return -ENOMEM before it changed anything; here
   * it throws ResourceLimitError. Integer math on counters: no allocation on the fault path.
   */
  topupMemoryCaches(mmu: KvmMmu): void {
    const store = this.store;
    const t = this.faultTranslation;
    const bytes =
      store.allocBytesBound(PT64_ROOT_MAX_LEVEL, t) +
      (this.shadow === null
        ? 0
        : this.shadow.rmapPool.growBytesBound(1 + PT64_ROOT_MAX_LEVEL + PTE_PREFETCH_NUM));
    const heap = store.allocHeapBound(PT64_ROOT_MAX_LEVEL, t);
    if (!this.kvm.memcg.fits(bytes, heap))
      this.kvm.memcg.check(
        `page fault on vCPU ${mmu.vcpuId} (mmu_topup_memory_caches)`,
        bytes,
        heap,
      );
  }

  /**
   * Page tables an eager split of [start, end) to 4K would allocate
   * (`kvm_mmu_slot_try_split_huge_pages`): counted on the live tables, nothing allocated.
   */
  eagerSplitTables(start: number, end: number): number {
    return this.features.eagerPageSplit && this.tdp !== null
      ? this.tdp.splitTablesNeeded(start, end, 1)
      : 0;
  }

  /** Upper bound on the bytes of `n` new direct page tables (see `allocBytesBound`). */
  tableBytesBound(n: number): number {
    return this.store.allocBytesBound(n, this.directTranslation);
  }

  /** The JS-heap part of {@link tableBytesBound}. */
  tableHeapBound(n: number): number {
    return this.store.allocHeapBound(n, this.directTranslation);
  }

  // ---- the page-fault entry ----------------------------------------------------------------

  /**
   * `kvm_mmu_page_fault` → `kvm_mmu_do_page_fault` for a fault at `addrHi:addrLo` with error code
   * `err`, on the vCPU whose context is `mmu`. Returns a RET_PF_* value and keeps the pf_*
   * statistics as the kernel does (pf_fixed, pf_emulate, pf_spurious by return code).
   */
  pageFault(mmu: KvmMmu, addrHi: number, addrLo: number, err: number): number {
    this.topupMemoryCaches(mmu);
    const fault = mmu.fault;
    if (this.trace.on) this.traceFaultStart(mmu, addrHi, addrLo, err);
    if ((err & PFERR_RSVD_MASK) !== 0) {
      const r = this.handleMmioPageFault(mmu, Math.floor((addrHi * 4294967296 + addrLo) / 4096));
      if (r !== RET_PF_INVALID) {
        if (this.trace.on) this.traceFaultDone(mmu, fault, r, true);
        return r;
      }
    }
    fault.init(addrHi, addrLo, err, false, mmu.pageFault === kvmTdpPageFault);
    const r = mmu.pageFault!(this, mmu, fault);
    this.countFault(fault, r);
    if (this.trace.on) this.traceFaultDone(mmu, fault, r, false);
    return r;
  }

  /**
   * The page-fault statistics of `kvm_mmu_do_page_fault` (modern: pf_taken, then pf_fixed,
   * pf_emulate, pf_spurious by return code; v4 and before: pf_fixed whenever the handler
   * installed a mapping), and `refaults_after_disable`.
   */
  private countFault(fault: KvmPageFault, r: number): void {
    const s = this.stats;
    if (this.legacyStats) {
      if (fault.mappedLeaf) s.pf_fixed++;
    } else {
      s.pf_taken++;
      if (r === RET_PF_FIXED) s.pf_fixed++;
      else if (r === RET_PF_EMULATE) s.pf_emulate++;
      else if (r === RET_PF_SPURIOUS) s.pf_spurious++;
    }
    if (r === RET_PF_FIXED && fault.slot !== null && (fault.slot.arch as SlotArch).afterLogDisable)
      s.refaults_after_disable++;
  }

  /** `kvm_page_fault` (x86 trace.h): the vCPU, the faulting address, the error code. */
  private traceFaultStart(mmu: KvmMmu, hi: number, lo: number, err: number): void {
    this.trace.vcpu = mmu.vcpuId;
    this.trace.emit(EV.pageFault, mmu.vcpuId, lo, hi, err);
  }

  /** The fault's outcome: goal level, RET_PF_*, and why it was retried. */
  private traceFaultDone(mmu: KvmMmu, fault: KvmPageFault, r: number, mmio: boolean): void {
    const t = this.trace;
    const reason = mmio ? "" : fault.retryReason;
    // An MMIO fault names the gfn and level of its MMIO spte; a guest #PF has neither.
    const last = this.last;
    t.emit(
      EV.faultDone,
      mmu.vcpuId,
      mmio ? mmioSpteGfn(last.lo, last.hi) : fault.guestFault ? -1 : fault.gfn,
      mmio ? last.level : fault.guestFault ? 0 : fault.goalLevel,
      r,
      t.str(r === RET_PF_RETRY && reason === "" ? "retry" : reason),
    );
    t.vcpu = -1;
  }

  /**
   * `kvm_mmu_page_fault` for a shadow-paging vCPU: the #PF the CPU took at gva `hi:lo` on the
   * shadow tables (hardware error code `err`), for guest access `access` (PFERR bits, with
   * PFERR_IMPLICIT_ACCESS). MMIO sptes first, then `FNAME(page_fault)` with the vCPU's walker;
   * statistics as {@link pageFault}. `mmu.fault.guestFault` tells a #PF for the guest.
   */
  shadowPageFault(
    mmu: KvmMmu,
    ctx: ShadowWalkCtx,
    hi: number,
    lo: number,
    err: number,
    access: number,
  ): number {
    this.topupMemoryCaches(mmu);
    const fault = mmu.fault;
    if (this.trace.on) this.traceFaultStart(mmu, hi, lo, err);
    if ((err & PFERR_RSVD_MASK) !== 0 && shadowRootFor(mmu, hi * 1048576 + (lo >>> 12)) >= 0) {
      const r = this.handleMmioPageFault(mmu, hi * 1048576 + (lo >>> 12));
      if (r !== RET_PF_INVALID) {
        fault.guestFault = false;
        if (this.trace.on) this.traceFaultDone(mmu, fault, r, true);
        return r;
      }
    }
    fault.init(hi, lo, err, false, false);
    const r =
      mmu.rootLevel === 0
        ? this.nonpagingPageFault(mmu, fault)
        : fnamePageFault(this.shadow!, mmu, fault, ctx, access);
    this.countFault(fault, r);
    if (this.trace.on) this.traceFaultDone(mmu, fault, r, false);
    return r;
  }

  /**
   * `nonpaging_page_fault` → `direct_page_fault` for a shadow-paging vCPU with paging off: gva =
   * gpa; a write to a write-tracked gfn is emulated; `fast_page_fault`; mappings up to 2 MiB
   * (PAE tables); `direct_map` from the `pae_root` entry of the address.
   */
  private nonpagingPageFault(mmu: KvmMmu, fault: KvmPageFault): number {
    const gfn = fault.addrHi * 1048576 + (fault.addrLo >>> 12);
    fault.gfn = gfn;
    fault.slot = this.slots.gfnToSlot(gfn) ?? null;
    if (fault.present && fault.write && !fault.rsvd && kvmGfnIsWriteTracked(fault.slot, gfn))
      return RET_PF_EMULATE;
    const root = shadowRootFor(mmu, gfn);
    if (this.pageFaultCanBeFast(fault)) {
      const r = this.fastPageFaultAt(root, 2, fault);
      if (r !== RET_PF_INVALID) {
        this.stats.pf_fast++;
        return r;
      }
    }
    fault.maxLevel = 2;
    const r = this.faultinPfn(fault);
    if (r !== RET_PF_CONTINUE) return r;
    return this.shadow!.directMap(root, fault, 2);
  }

  /**
   * `handle_mmio_page_fault`: a current-generation MMIO spte is emulated right away. `key` is
   * the frame number the tables are indexed by (gpa >> 12 under TDP, gva >> 12 under shadow).
   */
  private handleMmioPageFault(mmu: KvmMmu, key: number): number {
    const last = this.last;
    const root = mmu.shadowPaging ? shadowRootFor(mmu, key) : mmu.root;
    walkToLastSpte(this.store, root, roleLevel(this.store.role[root]!), key, last);
    if (!isMmioSpte(last.lo)) return RET_PF_RETRY;
    if (mmioSpteGen(last.lo, last.hi) !== this.mmioGen) return RET_PF_INVALID;
    return RET_PF_EMULATE;
  }

  /**
   * `fast_page_fault`: restore W on an MMU-writable leaf without taking mmu_lock. A huge leaf in
   * a dirty-logged slot is refused (the slow path must split it so logging stays 4K-granular).
   */
  /**
   * `page_fault_can_be_fast` for a direct MMU: not a fault on an MMIO spte; a present fault if it
   * is a write (a write-protection violation); a not-present one only without A/D bits
   * (`!kvm_ad_enabled`, where it may be an access-tracked spte; since v4.10).
   */
  pageFaultCanBeFast(fault: KvmPageFault): boolean {
    if (fault.rsvd || this.fastMode === "none") return false;
    if (!fault.present)
      return this.fastMode === "modern" && (this.rootRole & ROLE_AD_DISABLED) !== 0;
    return fault.write;
  }

  fastPageFault(mmu: KvmMmu, fault: KvmPageFault): number {
    return this.fastPageFaultAt(mmu.root, this.rootLevel, fault);
  }

  /**
   * {@link fastPageFault} from table `root` at `rootLevel`. Every attempt ends with the
   * `fast_page_fault` tracepoint (the spte read, the spte now, the RET_PF_* value), as KVM
   * traces it at the end of `fast_page_fault` whatever the outcome.
   */
  private fastPageFaultAt(root: number, rootLevel: number, fault: KvmPageFault): number {
    // After the RFC's write-protect-all, a write first pushes the protection down its path.
    if (this.shadow !== null && fault.write)
      this.shadow.pushDownWriteProtect(root, rootLevel, fault.gfn, this.store.pwTrack);
    const last = this.last;
    walkToLastSpte(this.store, root, rootLevel, fault.gfn, last);
    const r = this.fastPageFaultFix(last, fault);
    if (this.trace.on) {
      const t = this.trace;
      const spt = this.store.spt[last.sp]!;
      t.emit(
        EV.fastPf,
        fault.addrLo,
        fault.addrHi,
        fault.errorCode,
        last.lo,
        last.hi,
        spt[last.idx * 2]!,
        spt[last.idx * 2 + 1]!,
        r,
      );
    }
    return r;
  }

  /** The decision of `fast_page_fault` on the last spte of the walk, and the fix. */
  private fastPageFaultFix(last: LastSpte, fault: KvmPageFault): number {
    const lo = last.lo;
    if (!isShadowPresent(lo) || !isLastSpte(lo, last.level)) return RET_PF_INVALID;
    // v3.6-v5.x: 4K sptes only, and only when W can come back (Host- and MMU-writable).
    const both = SPTE_HI_MMU_WRITABLE | SPTE_HI_HOST_WRITABLE;
    if (this.fastMode === "v4" && (last.level > 1 || (last.hi & both) !== both))
      return (lo & SPTE_W) !== 0 ? RET_PF_SPURIOUS : RET_PF_INVALID;
    if (isAccessAllowed(lo, fault.write, fault.exec)) return RET_PF_SPURIOUS;
    let nlo = lo;
    if (fault.write && (last.hi & SPTE_HI_MMU_WRITABLE) !== 0) {
      nlo = (lo | SPTE_W) >>> 0;
      if (
        last.level > 1 &&
        fault.slot !== null &&
        (fault.slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0
      )
        return RET_PF_INVALID;
    }
    if (nlo === lo || !isAccessAllowed(nlo, fault.write, fault.exec)) return RET_PF_INVALID;
    if (this.tdp !== null) this.tdp.fastPfFixSpte(last, fault.gfn, nlo);
    else this.shadow!.fastPfFixSpte(last, fault.gfn, nlo);
    return RET_PF_FIXED;
  }

  /**
   * `kvm_faultin_pfn` and `kvm_mmu_hugepage_adjust` for a direct MMU: the host frame, whether it
   * may be written, and the mapping level. Returns RET_PF_CONTINUE, or RET_PF_EMULATE for a
   * write to a read-only slot (KVM_PFN_ERR_RO_FAULT).
   */
  faultinPfn(fault: KvmPageFault): number {
    const r = kvmFaultinPfn(fault);
    if (r === RET_PF_CONTINUE) kvmMmuHugepageAdjust(this, fault);
    return r;
  }

  // ---- memslot changes (called by the x86 hooks) -------------------------------------------

  /** `kvm_mmu_invalidate_mmio_sptes`: a wrapped MMIO generation would make stale sptes current. */
  invalidateMmioSptes(generation: number): void {
    const gen = generation & MMIO_SPTE_GEN_MASK;
    if (gen === 0 && this.mmioGen !== 0) this.zapAllFast();
    this.mmioGen = gen;
  }

  /**
   * `kvm_mmu_zap_all_fast`: toggle the valid generation, invalidate every TDP root and zap the
   * obsolete shadow pages; vCPUs load a new root at their next entry. No remote flush is counted
   * for TDP roots: invalid roots are unreachable.
   */
  zapAllFast(): void {
    this.mmuValidGen ^= 1;
    if (this.trace.on) this.trace.emit(EV.zapAllFast, this.mmuValidGen);
    this.requestRootReload();
    if (this.shadow !== null) this.shadow.zapAllFast(this.mmuValidGen);
    if (this.tdp !== null) this.tdp.zapAllFast();
  }

  /** Default `n_max_mmu_pages` (`kvm_mmu_calculate_default_mmu_pages`), unless set by ioctl. */
  recalculateMmuPages(): void {
    if (this.nRequestedMmuPages !== 0) return;
    const total = this.kvm.memslots.totalPages();
    this.changeMmuPages(
      Math.max(Math.floor(total / KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO), KVM_MIN_ALLOC_MMU_PAGES),
    );
  }

  /** `kvm_mmu_change_mmu_pages`: the shadow MMU reclaims down to the goal; TDP pages are not counted. */
  changeMmuPages(goal: number): void {
    if (this.shadow !== null) this.shadow.changeMmuPages(goal);
    else this.stats.n_max_mmu_pages = goal;
  }

  /** `kvm->arch.n_requested_mmu_pages` (0: default sizing). */
  get requestedMmuPages(): number {
    return this.nRequestedMmuPages;
  }

  /** `KVM_SET_NR_MMU_PAGES` after validation: fix n_max and reclaim down to it. */
  setNrMmuPages(n: number): void {
    this.nRequestedMmuPages = n;
    this.changeMmuPages(n);
  }

  // ---- dirty logging (kvm_mmu_slot_apply_flags' MMU calls) ----------------------------------

  /**
   * Logging turned on for `slot` (`kvm_mmu_slot_apply_flags`, v6.12, no PML): eager split of
   * huge leaves (TDP MMU), remove W from every leaf (start level 4K), one remote flush —
   * unconditionally. With INITIALLY_SET nothing is protected now (CLEAR_DIRTY_LOG does it).
   */
  slotEnableLog(slot: MemSlot): void {
    slotArch(slot).afterLogDisable = false;
    if (this.kvm.dirtyLogInitiallySet) return;
    const start = slot.baseGfn;
    const end = slot.baseGfn + slot.npages;
    if (this.features.eagerPageSplit && this.tdp !== null) this.tdp.splitHugePages(start, end, 1);
    this.stats.wrprot_slot_passes++;
    if (this.features.pml) {
      // PML: 4K leaves keep W and lose D (the CPU logs the next write); huge ones lose W so
      // that a write splits them.
      this.shadow?.clearDirtyRange(start, end);
      this.tdp?.clearDirtyRange(start, end);
      this.shadow?.wrprotRange(start, end, 2);
      this.tdp?.wrprotRange(start, end, 2);
    } else {
      this.shadow?.wrprotRange(start, end, 1);
      this.tdp?.wrprotRange(start, end, 1);
    }
    this.flushRemoteTlbs("slot_apply_flags");
  }

  /**
   * Logging turned off: collapse (`kvm_mmu_zap_collapsible_sptes`, or v6.13's
   * `kvm_mmu_recover_huge_pages`) so that the slot gets huge mappings back.
   */
  slotDisableLog(slot: MemSlot): void {
    slotArch(slot).afterLogDisable = true;
    const mode = this.features.collapseOnLogDisable;
    if (mode === "none") return;
    const start = slot.baseGfn;
    const end = slot.baseGfn + slot.npages;
    const perSpte = this.features.collapseFlush === "perSpte";
    const zapped0 = this.stats.collapse_sptes_zapped;
    const installed0 = this.stats.collapse_hugepages_installed;
    const canBeHuge = (gfn: number, level: number): boolean => {
      const s = this.kvm.memslots.gfnToSlot(gfn);
      return s !== undefined && this.maxMappingLevel(s, gfn, 3) >= level;
    };
    if (this.shadow !== null) {
      if (mode === "rmap2015") {
        const hugeHost = (gfn: number): boolean => {
          const s = this.kvm.memslots.gfnToSlot(gfn);
          return s !== undefined && hostMappingLevel(s, gfn) > 1;
        };
        this.shadow.zapCollapsible2015(start, end, hugeHost, perSpte);
      } else {
        // The rmap part zaps in every later era ("recover" too: only the TDP MMU recovers in
        // place).
        this.shadow.zapCollapsible(start, end, canBeHuge, perSpte);
      }
    }
    if (this.tdp !== null) {
      const live = this.store.live;
      if (mode === "recover") {
        const n = this.tdp.recoverHugePages(start, end, canBeHuge);
        this.stats.collapse_hugepages_installed += n;
        if (n > 0) this.flushRemoteTlbs("recover_huge_pages");
      } else this.stats.collapse_sptes_zapped += this.tdp.zapCollapsible(start, end, canBeHuge);
      this.stats.collapse_tables_freed += live - this.store.live;
    }
    if (this.trace.on) {
      // When done: what this collapse changed (sptes zapped, or huge sptes made in place).
      const t = this.trace;
      const s = this.stats;
      const changed =
        s.collapse_sptes_zapped + s.collapse_hugepages_installed - zapped0 - installed0;
      t.emit(EV.collapse, t.str(mode), start, end, changed);
    }
  }

  /**
   * `kvm_arch_mmu_enable_log_dirty_pt_masked` (no PML): with INITIALLY_SET, first split and
   * write-protect (W and MMU-writable) the huge pages holding the first and last set bit; then
   * remove W from the 4K leaves of the set bits.
   */
  enableLogDirtyPtMasked(base: number, lo: number, hi: number): void {
    this.stats.wrprot_masked_calls++;
    if (this.kvm.dirtyLogInitiallySet) {
      const first = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 32 + 31 - Math.clz32(hi & -hi);
      const last = hi !== 0 ? 32 + 31 - Math.clz32(hi) : 31 - Math.clz32(lo);
      const start = base + first;
      const end = base + last;
      if (this.features.eagerPageSplit && this.tdp !== null)
        this.tdp.splitHugePages(start, end + 1, 1);
      this.writeProtectGfn(start, 2);
      // "Cross two large pages?": ALIGN() rounds up, so a start on a 2M boundary always
      // protects end's huge page too (kvm_arch_mmu_enable_log_dirty_pt_masked).
      if (Math.ceil(start / 512) !== Math.ceil(end / 512)) this.writeProtectGfn(end, 2);
    }
    // PML: kvm_mmu_clear_dirty_pt_masked (D) instead of kvm_mmu_write_protect_pt_masked (W).
    const clear = this.features.pml ? SPTE_D : SPTE_W;
    if (this.shadow !== null) this.shadow.wrprotMasked(base, lo, hi, clear);
    if (this.tdp !== null) this.tdp.wrprotMasked(base, lo, hi, clear);
  }

  /** `kvm_mmu_slot_gfn_write_protect` (W and MMU-writable) at levels ≥ minLevel. */
  private writeProtectGfn(gfn: number, minLevel: number): boolean {
    let changed = false;
    if (this.shadow?.writeProtectGfn(gfn, minLevel)) changed = true;
    if (this.tdp?.writeProtectGfn(gfn, minLevel)) changed = true;
    return changed;
  }

  // ---- seed 2017: write protection by page (the RFC series) -----------------------------------

  /**
   * Write-protect every valid page of the rmap MMU page by page (`writeProtectSp` on each):
   * `bitmap` visits the possibly-writable entries only (needs `possibleWritableBitmap`), scan
   * mode all 512 of every page. One remote flush at the end if an entry changed.
   */
  writeProtectAllSps(bitmap: boolean, nonLeaf: boolean, clearMmuWritable: boolean): void {
    const sh = this.shadow!;
    const s = this.store;
    let changed = false;
    for (let sp = 0; sp < s.created; sp++) {
      if (!s.isLive(sp) || sh.isInvalidRoot(sp)) continue;
      if (sh.writeProtectSp(sp, bitmap, nonLeaf, clearMmuWritable)) changed = true;
    }
    // Non-leaf rights changed: the CPU's cached paths must be walked again.
    if (nonLeaf) this.store.unlinked();
    if (changed) this.flushRemoteTlbs("write_protect_all_sps");
  }

  /**
   * The RFC's `kvm_mmu_write_protect_all_pages`: clear W on the possibly-writable entries of
   * every root only (or all 512 of each without the bitmap); write faults push the protection
   * down lazily ({@link ShadowMmu.pushDownWriteProtect}). One remote flush.
   */
  fastWriteProtectAll(): void {
    const sh = this.shadow!;
    let changed = false;
    for (const r of sh.roots) {
      if (sh.isInvalidRoot(r)) continue;
      if (sh.writeProtectSp(r, this.store.pwTrack, true, false)) changed = true;
    }
    // Non-leaf rights changed: the CPU's cached paths must be walked again.
    this.store.unlinked();
    if (changed) this.flushRemoteTlbs("write_protect_all_pages");
  }

  // ---- zaps ------------------------------------------------------------------------------

  /**
   * `kvm_age_gfn` (`clear`) / `kvm_test_age_gfn` over [start, end) for every MMU of the VM.
   * Returns {@link AGE_YOUNG} | {@link AGE_ZAPPED}; the caller flushes.
   */
  ageGfnRange(start: number, end: number, clear: boolean): number {
    let ret = 0;
    if (this.shadow !== null) ret |= this.shadow.ageGfnRange(start, end, clear);
    if (this.tdp !== null) ret |= this.tdp.ageGfnRange(start, end, clear);
    return ret;
  }

  /** `kvm_unmap_gfn_range` / `kvm_zap_gfn_range`'s work: zap every leaf mapping [start, end). */
  unmapGfnRange(start: number, end: number): boolean {
    let flush = false;
    if (this.shadow?.zapLeafs(start, end)) flush = true;
    if (this.tdp?.zapLeafs(start, end)) flush = true;
    return flush;
  }

  /**
   * `kvm_zap_gfn_range(start, end)`: zap every leaf mapping a gfn in [start, end); one ranged
   * remote flush if anything was zapped. Returns whether it flushed.
   */
  zapGfnRange(start: number, end: number): boolean {
    const flush = this.unmapGfnRange(start, end);
    if (flush) this.flushRemoteTlbs("zap_gfn_range");
    return flush;
  }

  /** Zap the single leaf mapping `gfn` (an atomic zap with its own flush). Returns leaves zapped. */
  zapSpte(gfn: number): number {
    if (this.tdp !== null) return this.tdp.zapSpte(gfn);
    if (!this.shadowPaging) return this.shadow!.zapSpte(gfn);
    // Shadow paging indexes its tables by gva: the sptes of gfn are found through its rmaps.
    const before = this.stats.pages_4k + this.stats.pages_2m + this.stats.pages_1g;
    this.zapGfnRange(gfn, gfn + 1);
    return before - (this.stats.pages_4k + this.stats.pages_2m + this.stats.pages_1g);
  }

  // ---- views for the layers above ----------------------------------------------------------

  /** Every root the VM's MMU holds (valid and invalid). */
  get roots(): readonly number[] {
    return this.tdp !== null ? this.tdp.roots : this.shadow!.roots;
  }

  /** Whether `root` was invalidated (or, for the shadow MMU, is obsolete). */
  isInvalidRoot(root: number): boolean {
    return this.tdp !== null ? this.tdp.isInvalidRoot(root) : this.shadow!.isInvalidRoot(root);
  }

  /** The first valid root, or undefined. */
  firstValidRoot(): number | undefined {
    return this.roots.find((r) => !this.isInvalidRoot(r));
  }

  /** Parentless, non-root live pages of the shadow MMU (`orphan_sps`; 0 for the TDP MMU). */
  orphanCount(): number {
    return this.shadow?.orphanCount() ?? 0;
  }

  /** Bytes of simulator memory held by the MMU (spt store, columns, slot metadata). */
  bytes(): number {
    let b = this.store.bytes();
    for (const s of this.kvm.memslots.list()) if (s.arch instanceof SlotArch) b += s.arch.bytes();
    return b;
  }
}

/**
 * `kvm_faultin_pfn`: the host frame of `fault.gfn` (4K) and whether it may be written.
 * Returns RET_PF_CONTINUE (also for a gfn without a slot: an MMIO spte follows), or
 * RET_PF_EMULATE for a write to a read-only slot (KVM_PFN_ERR_RO_FAULT).
 */
export function kvmFaultinPfn(fault: KvmPageFault): number {
  const slot = fault.slot;
  if (slot === null) return RET_PF_CONTINUE;
  if (fault.write && slot.readonly) return RET_PF_EMULATE;
  fault.mapWritable = !slot.readonly;
  fault.pfn = hostPfn(slot, fault.gfn);
  return RET_PF_CONTINUE;
}

/**
 * `kvm_mmu_hugepage_adjust`: req_level and goal_level from `fault.maxLevel`, `lpage_info` and
 * the host mapping (4K for MMIO and while the slot is dirty-logged); the pfn aligned down.
 */
export function kvmMmuHugepageAdjust(core: MmuCore, fault: KvmPageFault): void {
  const slot = fault.slot;
  let level = 1;
  if (slot !== null && (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0)
    level = core.maxMappingLevel(slot, fault.gfn, fault.maxLevel);
  fault.reqLevel = level;
  fault.goalLevel = level;
  if (slot === null) return;
  fault.pfn -= fault.pfn % GFN_SPAN[level]!;
}

/**
 * `kvm_tdp_page_fault`: the handler of a TDP vCPU (`direct_page_fault`, or
 * `kvm_tdp_mmu_page_fault` with the TDP MMU): the fast path for write-protection faults, then
 * the host page and mapping level, then the map.
 */
export function kvmTdpPageFault(core: MmuCore, mmu: KvmMmu, fault: KvmPageFault): number {
  // Handlers are installed by VmMmu.initMmu and called by VmMmu.pageFault only.
  const vm = core as VmMmu;
  const gfn = Math.floor((fault.addrHi * 4294967296 + fault.addrLo) / 4096);
  fault.gfn = gfn;
  fault.slot = vm.slots.gfnToSlot(gfn) ?? null;
  if (vm.pageFaultCanBeFast(fault)) {
    const r = vm.fastPageFault(mmu, fault);
    if (r !== RET_PF_INVALID) {
      vm.stats.pf_fast++;
      return r;
    }
  }
  const r = vm.faultinPfn(fault);
  if (r !== RET_PF_CONTINUE) return r;
  return vm.tdp !== null ? vm.tdp.map(mmu.root, fault) : vm.shadow!.directMap(mmu.root, fault);
}

/** The paging registers `kvm_init_mmu` reads. */
export interface PagingRegs {
  readonly cr0: number;
  readonly cr3Hi: number;
  readonly cr3Lo: number;
  readonly cr4: number;
  readonly efer: number;
}

/**
 * `kvm_init_mmu`: rebuild a vCPU's MMU context from its paging registers. The cpu role — root
 * level, CR3, NX/SMEP/WP/PSE, reserved-bit masks (`reset_guest_rsvds_bits_mask`), the permission
 * and PKRU tables (`update_permission_bitmask`, `update_pkru_bitmask`) — and, on a TDP VM
 * (`init_kvm_tdp_mmu`), the root role and page-fault handler. PAE PDPTE registers are loaded by
 * the caller (`load_pdptrs`), which owns guest memory access.
 */
export function kvmInitMmu(
  mmu: KvmMmu,
  regs: PagingRegs,
  features: Features,
  maxPhysAddrBits: number,
  vm: VmMmu | null,
): void {
  const mode = pagingModeOf(regs.cr0, regs.cr4, regs.efer);
  mmu.rootLevel = rootLevelOf(mode);
  mmu.cr3Hi = regs.cr3Hi;
  mmu.cr3Lo = regs.cr3Lo;
  // KVM keeps efer_nx in the cpu role for every paging mode (it decides PFERR_FETCH even for
  // 32-bit paging); the 32-bit PTE format simply has no NX bit to check.
  const nx = (regs.efer & EFER_NX) !== 0 && mode !== "none";
  mmu.nx = nx;
  mmu.smep = (regs.cr4 & X86_CR4_SMEP) !== 0;
  mmu.smap = (regs.cr4 & X86_CR4_SMAP) !== 0;
  mmu.pae = (regs.cr4 & X86_CR4_PAE) !== 0;
  mmu.pse = (regs.cr4 & X86_CR4_PSE) !== 0;
  mmu.pse36 = features.pse36;
  const r = reservedMasks(mode, maxPhysAddrBits, nx, mmu.pse, features);
  for (let i = 0; i < 10; i++) {
    mmu.rsvd[2 * i] = r.lo[i]!;
    mmu.rsvd[2 * i + 1] = r.hi[i]!;
  }
  const wp = (regs.cr0 & X86_CR0_WP) !== 0;
  mmu.wp = wp;
  updatePermissionBitmask(mmu.permissions, {
    cr0Wp: wp,
    efeNx: nx,
    smep: mmu.smep,
    smap: (regs.cr4 & X86_CR4_SMAP) !== 0,
  });
  mmu.pkruMask = updatePkruBitmask(
    (regs.cr4 & X86_CR4_PKE) !== 0,
    mode === "4-level" || mode === "5-level",
    wp,
  );
  if (vm !== null) vm.initMmu(mmu);
}
