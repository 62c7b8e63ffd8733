/**
 * What the MMU files share (mmu_internal.h, and the kvm_host.h structs they use):
 *
 * - `union kvm_mmu_page_role`: the 32-bit key of a shadow page, with accessors;
 * - `RET_PF_*`, the outcomes of a page-fault handler;
 * - `struct kvm_page_fault` ({@link KvmPageFault}): one record per fault, reused per vCPU;
 * - `struct kvm_mmu` ({@link KvmMmu}): a vCPU's MMU context — its root, roles, guest-walk
 *   context and the handlers `kvm_init_mmu` chose;
 * - `struct kvm_mmu_page` ({@link MmuPageStore}): shadow pages in a typed-array column store;
 * - {@link MmuCore}: the mmu.c services that tdp_mmu.ts and paging_tmpl.ts call (mmu_internal.h
 *   declares them for the same reason: those files sit below mmu.c).
 */
import { KVM_MEM_LOG_DIRTY_PAGES } from "../arch/constants";
import { MmuBugError } from "../errors";
import { HEAP_TYPED_ARRAY_BYTES, HEAP_VIEW_BYTES, MC, MemCg } from "../kvm/memcg";
import type { MemSlot, MemSlots } from "../kvm/memslot";
import type { KvmStats, VcpuStat } from "../kvm/stats";
import type { MmuTrace } from "./mmutrace";
import {
  GFN_SPAN,
  isPossiblyWritable,
  SPT_WORDS,
  SPTE_MMU_PRESENT,
  SPTE_PS,
  SPTE_R,
  SPTE_W,
  SPTE_X,
  spteIndex,
  sptePfn,
} from "./spte";

// ---- union kvm_mmu_page_role (kvm_host.h) ------------------------------------------------------

/*
 * The role word, packed exactly as the modern kernel packs it. Two pages with the same gfn and the
 * same role word are the same page (the rmap MMU's hash lookup compares the whole word).
 *
 *  bits 0..3  level            bit 11 invalid        bit 16 ad_disabled
 *  bit  4     has_4_byte_gpte  bit 12 efer_nx        bit 17 guest_mode
 *  bits 5..6  quadrant         bit 13 cr0_wp         bit 18 passthrough
 *  bit  7     direct           bit 14 smep_andnot_wp bits 24..31 smm (address space)
 *  bits 8..10 access (ACC_*)   bit 15 smap_andnot_wp
 */

export const ROLE_LEVEL_MASK = 0xf;
export const ROLE_HAS_4_BYTE_GPTE = 1 << 4;
export const ROLE_QUADRANT_SHIFT = 5;
export const ROLE_DIRECT = 1 << 7;
export const ROLE_ACCESS_SHIFT = 8;
export const ROLE_INVALID = 1 << 11;
export const ROLE_EFER_NX = 1 << 12;
export const ROLE_CR0_WP = 1 << 13;
export const ROLE_SMEP_ANDNOT_WP = 1 << 14;
export const ROLE_SMAP_ANDNOT_WP = 1 << 15;
export const ROLE_AD_DISABLED = 1 << 16;
export const ROLE_GUEST_MODE = 1 << 17;
export const ROLE_PASSTHROUGH = 1 << 18;
export const ROLE_SMM_SHIFT = 24;

export function roleLevel(role: number): number {
  return role & ROLE_LEVEL_MASK;
}
export function roleDirect(role: number): boolean {
  return (role & ROLE_DIRECT) !== 0;
}
export function roleAccess(role: number): number {
  return (role >>> ROLE_ACCESS_SHIFT) & 7;
}
export function roleQuadrant(role: number): number {
  return (role >>> ROLE_QUADRANT_SHIFT) & 3;
}
export function roleInvalid(role: number): boolean {
  return (role & ROLE_INVALID) !== 0;
}
export function roleSmm(role: number): number {
  return role >>> ROLE_SMM_SHIFT;
}

/**
 * `kvm_calc_tdp_mmu_root_page_role`: level = TDP level, direct, ACC_ALL, cr0_wp and efer_nx set,
 * ad_disabled when A/D bits are off.
 */
export function tdpRootRole(level: number, adEnabled: boolean, smm = 0): number {
  let r = level | ROLE_DIRECT | (7 << ROLE_ACCESS_SHIFT) | ROLE_CR0_WP | ROLE_EFER_NX;
  if (!adEnabled) r |= ROLE_AD_DISABLED;
  r |= smm << ROLE_SMM_SHIFT;
  return r >>> 0;
}

/**
 * `kvm_mmu_child_role`: level − 1, the given access and directness, passthrough cleared; under
 * a page shadowing 4-byte gptes the level-1 child shadows half of a 1024-entry guest table
 * (`quadrant` = the parent entry's index & 1).
 */
export function childRole(parent: number, direct: boolean, access: number, idx = 0): number {
  let r =
    parent &
    ~(
      ROLE_LEVEL_MASK |
      ROLE_PASSTHROUGH |
      (7 << ROLE_ACCESS_SHIFT) |
      ROLE_DIRECT |
      ROLE_INVALID |
      (3 << ROLE_QUADRANT_SHIFT)
    );
  // A child never inherits `invalid` (v4 KVM took the child role from the vCPU's base role, so
  // a fault that zapped its own root in make_mmu_pages_available still built valid pages).
  r |= (parent & ROLE_LEVEL_MASK) - 1;
  r |= (access & 7) << ROLE_ACCESS_SHIFT;
  if (direct) r |= ROLE_DIRECT;
  if ((parent & ROLE_HAS_4_BYTE_GPTE) !== 0) r |= (idx & 1) << ROLE_QUADRANT_SHIFT;
  return r >>> 0;
}

/** Decoded role, field names as in the display schema (`definitions.role`). */
export interface DecodedRole {
  word: string;
  level: number;
  direct: boolean;
  access: number;
  quadrant: number;
  invalid: boolean;
  hasFourByteGpte: boolean;
  cr0Wp: boolean;
  eferNx: boolean;
  adDisabled: boolean;
  guestMode: boolean;
  smm: number;
}

/** Decode a role word for notebooks and snapshots. */
export function decodeRole(role: number): DecodedRole {
  return {
    word: `0x${(role >>> 0).toString(16)}`,
    level: roleLevel(role),
    direct: roleDirect(role),
    access: roleAccess(role),
    quadrant: roleQuadrant(role),
    invalid: roleInvalid(role),
    hasFourByteGpte: (role & ROLE_HAS_4_BYTE_GPTE) !== 0,
    cr0Wp: (role & ROLE_CR0_WP) !== 0,
    eferNx: (role & ROLE_EFER_NX) !== 0,
    adDisabled: (role & ROLE_AD_DISABLED) !== 0,
    guestMode: (role & ROLE_GUEST_MODE) !== 0,
    smm: roleSmm(role),
  };
}

// ---- RET_PF_* (mmu_internal.h) -----------------------------------------------------------------

/** `RET_PF_CONTINUE`: keep going (internal to the handlers). */
export const RET_PF_CONTINUE = 0;
/** `RET_PF_RETRY`: let the CPU fault again (nothing fixed, or the fault went stale). */
export const RET_PF_RETRY = 1;
/** `RET_PF_EMULATE`: emulate the instruction (MMIO, write-protected gfn, read-only slot). */
export const RET_PF_EMULATE = 2;
/** `RET_PF_INVALID`: the fast paths could not handle it; take the slow path. */
export const RET_PF_INVALID = 3;
/** `RET_PF_FIXED`: a mapping was installed. */
export const RET_PF_FIXED = 4;
/** `RET_PF_SPURIOUS`: the mapping already allowed the access. */
export const RET_PF_SPURIOUS = 5;

/** RET_PF_* names as the `kvm_mmu_page_fault` tracepoint prints them. */
export const RET_PF_NAMES: readonly string[] = [
  "continue",
  "retry",
  "emulate",
  "invalid",
  "fixed",
  "spurious",
];

// ---- struct kvm_page_fault (mmu_internal.h) ----------------------------------------------------

/**
 * One page fault (`struct kvm_page_fault`). Each vCPU keeps one and re-initialises it per fault
 * ({@link KvmPageFault.init}), so the fault path allocates nothing. Fields in KVM's three groups:
 * the arguments, what derives from the error code, what derives from MMU state (filled in as
 * the handler proceeds: gfn and slot, then the pfn, then the levels).
 */
export class KvmPageFault {
  // --- arguments of kvm_mmu_do_page_fault ---
  /** `addr`, high and low 32 bits: a gpa under TDP, a gva under shadow paging. */
  addrHi = 0;
  addrLo = 0;
  /** `error_code`: PFERR_* bits. */
  errorCode = 0;
  /** `prefetch`: a speculative fault (prefetch never counts in pf_taken). */
  prefetch = false;

  // --- derived from the error code ---
  /** PFERR_FETCH. */
  exec = false;
  /** PFERR_WRITE. */
  write = false;
  /** PFERR_PRESENT: the faulting entry was present (a protection fault). */
  present = false;
  /** PFERR_RSVD: a reserved bit (an MMIO spte under EPT: a misconfiguration). */
  rsvd = false;
  /** PFERR_USER. */
  user = false;

  // --- derived from MMU state ---
  /** `is_tdp`: the vCPU's handler is kvm_tdp_page_fault. */
  isTdp = false;
  /** `huge_page_disallowed`: NX huge-page mitigation keeps this fault at 4K. */
  hugePageDisallowed = false;
  /** `max_level`: the largest mapping this fault may create (3 = 1 GiB). */
  maxLevel = 0;
  /** `req_level`: what max_level, lpage_info and the host mapping allow. */
  reqLevel = 0;
  /** `goal_level`: what will be created. */
  goalLevel = 0;
  /** `gfn`: addr >> 12 for direct MMUs; the guest walk's result under shadow paging. */
  gfn = 0;
  /** `slot`: the memslot of gfn, or null (an MMIO gfn). */
  slot: MemSlot | null = null;
  /** `mmu_seq`: the notifier sequence when the pfn was looked up (`is_page_fault_stale`). */
  mmuSeq = 0;
  /** `pfn`: host frame backing gfn (kvm_faultin_pfn). */
  pfn = 0;
  /** `map_writable`: the host mapping may be written (false in a read-only slot). */
  mapWritable = false;
  /** Shadow paging: the guest walk failed and a #PF goes to the guest (`pf_guest`). */
  guestFault = false;
  /** The handler reached `mmu_set_spte` for the leaf (v4-style `pf_fixed` counts these). */
  mappedLeaf = false;
  /** Why the handler returned RET_PF_RETRY (for the trace; "" otherwise). */
  retryReason = "";

  /**
   * `kvm_mmu_do_page_fault`'s initialiser: arguments, the error-code bits, and the defaults
   * `max_level` = KVM_MAX_HUGEPAGE_LEVEL, `req_level` = `goal_level` = 4K. The outputs keep the
   * previous fault's values until the handler sets them.
   */
  init(addrHi: number, addrLo: number, errorCode: number, prefetch: boolean, isTdp: boolean): void {
    this.addrHi = addrHi;
    this.addrLo = addrLo;
    this.errorCode = errorCode;
    this.prefetch = prefetch;
    this.exec = (errorCode & 0x10) !== 0;
    this.write = (errorCode & 0x2) !== 0;
    this.present = (errorCode & 0x1) !== 0;
    this.rsvd = (errorCode & 0x8) !== 0;
    this.user = (errorCode & 0x4) !== 0;
    this.isTdp = isTdp;
    this.hugePageDisallowed = false;
    this.maxLevel = KVM_MAX_HUGEPAGE_LEVEL;
    this.reqLevel = 1;
    this.goalLevel = 1;
    this.guestFault = false;
    this.mappedLeaf = false;
    this.retryReason = "";
    // gfn and slot (set first by every handler), mmu_seq, pfn and map_writable (set by
    // kvm_faultin_pfn before anything reads them) are outputs: not cleared here, where KVM's
    // initialiser zeroes them, to keep the per-fault cost down.
  }
}

/** `KVM_MAX_HUGEPAGE_LEVEL`: 1 GiB. */
export const KVM_MAX_HUGEPAGE_LEVEL = 3;

// ---- struct kvm_mmu (kvm_host.h) ---------------------------------------------------------------

/** `KVM_MMU_NUM_PREV_ROOTS`. */
export const KVM_MMU_NUM_PREV_ROOTS = 3;
/** A root for a CR3 outside every memslot (`kvm_mmu_get_dummy_root`): every access faults. */
export const KVM_DUMMY_ROOT = -2;
/**
 * The root of a vCPU that is not in long mode (paging off, 32-bit, PAE): KVM's `pae_root`, four
 * PDPTE-like entries ({@link KvmMmu.paeRoot}), each the root of one GiB of the address space.
 */
export const KVM_PAE_ROOT = -3;

/** The top shadow page for `gvaPfn` (gva >> 12) and its level: the root, or a `pae_root` entry. */
export function shadowRootFor(mmu: KvmMmu, gvaPfn: number): number {
  return mmu.root === KVM_PAE_ROOT ? mmu.paeRoot[(gvaPfn / 262144) & 3]! : mmu.root;
}

/** A page-fault handler of {@link KvmMmu} (`kvm_tdp_page_fault`, `FNAME(page_fault)`, ...). */
export type PageFaultFn = (core: MmuCore, mmu: KvmMmu, fault: KvmPageFault) => number;

/**
 * A vCPU's MMU context (`struct kvm_mmu`), rebuilt by `kvm_init_mmu` whenever CR0, CR4 or EFER
 * change. It holds what KVM's MMU needs of the vCPU: the root it loaded and that root's role,
 * the guest's paging mode as the guest walker reads it (the `cpu_role` part: root level,
 * reserved-bit masks, the permission and PKRU tables, PAE PDPTE registers), and the handlers
 * chosen for this mode. The simulated CPU reads the same context.
 */
export class KvmMmu {
  /** The vCPU's counters (`vcpu->stat`), where handlers count. */
  readonly stat: VcpuStat;
  /** The vCPU's id. */
  readonly vcpuId: number;

  // --- root (root.hpa / root_role) ---
  /** `root.hpa`: the loaded root shadow page (sp id), or -1 (KVM's INVALID_PAGE). */
  root = -1;
  /** `root_role`: role word of the root page this context loads. */
  rootRole = 0;
  /** `root.pgd`: under shadow paging, the CR3 the root shadows (its gfn). */
  rootPgd = 0;
  /**
   * `prev_roots[KVM_MMU_NUM_PREV_ROOTS]` (shadow paging): roots of earlier CR3 values kept for a
   * fast switch back (`fast_pgd_switch`), as sp ids (-1: none) and their pgd gfns.
   */
  readonly prevRootSp: Int32Array = new Int32Array(KVM_MMU_NUM_PREV_ROOTS).fill(-1);
  readonly prevRootPgd: Float64Array = new Float64Array(KVM_MMU_NUM_PREV_ROOTS);
  /** The context shadows the guest's tables (`ept=0`): `page_fault` is `FNAME(page_fault)`. */
  shadowPaging = false;
  /** `pae_root[4]` (root {@link KVM_PAE_ROOT}): a level-2 shadow page per GiB, or -1. */
  readonly paeRoot: Int32Array = new Int32Array(4).fill(-1);
  /** CR4.PAE (`is_pae`: a 4-byte store may be half of an 8-byte gpte). */
  pae = false;
  /** CR4.SMAP (the CPU's check on shadow tables; the guest walk uses `permissions`). */
  smap = false;

  // --- cpu_role: the guest's paging mode (what the guest walker needs) ---
  /** Guest root level: 0 (paging off), 2 (32-bit), 3 (PAE), 4, 5. */
  rootLevel = 0;
  /** CR3 as halves (`get_guest_pgd`). */
  cr3Hi = 0;
  cr3Lo = 0;
  /** EFER.NXE (`efer_nx`). */
  nx = false;
  /** CR4.SMEP (decides whether a fetch sets PFERR_FETCH when EFER.NXE is clear). */
  smep = false;
  /** CR0.WP (the 2007 walkers test it per level; the modern one through `permissions`). */
  wp = false;
  /** CR4.PSE (32-bit paging: 4 MiB pages). */
  pse = false;
  /** Guest has PSE-36 (32-bit 4 MiB pages reach 36-bit addresses). */
  pse36 = true;
  /**
   * `guest_rsvd_check`: reserved-bit masks `rsvd_bits_mask[bit7][level - 1]`, as the low and
   * high word of each (at `2 * (bit7 * 5 + level - 1)` and the word after), in one int32 array
   * so that the walk's two loads share one array check.
   */
  rsvd: Int32Array = new Int32Array(20);
  /** `permissions[pfec >> 1]` (`update_permission_bitmask`). */
  permissions: Uint8Array = new Uint8Array(16);
  /** `pkru_mask` (`update_pkru_bitmask`). */
  pkruMask = 0;
  /** PAE: `pdptrs[4]`, loaded at CR3 load, and the gpa they were read from. */
  pdptrLo: Uint32Array = new Uint32Array(4);
  pdptrHi: Uint32Array = new Uint32Array(4);
  pdptGpa = 0;

  // --- handlers chosen by kvm_init_mmu ---
  /** `page_fault`. */
  pageFault: PageFaultFn | null = null;

  /** The vCPU's reusable fault record. */
  readonly fault = new KvmPageFault();

  constructor(vcpuId: number, stat: VcpuStat) {
    this.vcpuId = vcpuId;
    this.stat = stat;
  }
}

// ---- mmu.c services for the files below it (mmu_internal.h declarations) ---------------------

/**
 * `make_spte`'s last step: a writable spte in a dirty-logged slot (`kvm_slot_dirty_track_enabled`)
 * marks its gfn dirty, whether or not the old spte was writable and whether or not the new one
 * gets installed (spte.c). The slot test keeps the common case, no logging, to two integer tests.
 */
export function makeSpteMarkDirty(core: MmuCore, slot: MemSlot, gfn: number, lo: number): void {
  if ((lo & SPTE_W) !== 0 && (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0)
    core.markPageDirtyInSlot(slot, gfn);
}

/**
 * What mmu.c offers the MMU files it is built from (KVM declares these in mmu_internal.h):
 * the VM's shadow-page store and counters, remote TLB flushes, dirty marking and the mapping
 * level. Implemented by the VM's MMU (mmu.ts).
 */
export interface MmuCore {
  /** Every shadow page of the VM (TDP MMU and rmap MMU alike). */
  readonly store: MmuPageStore;
  /** The VM's statistics (`kvm->stat`, plus the MMU's gauges). */
  readonly stats: KvmStats;
  /** The VM's memslots (address space 0). */
  readonly slots: MemSlots;
  /** Trace events, when tracing is on. */
  readonly trace: MmuTrace;
  /** `kvm_flush_remote_tlbs` (counted once; `reason` is for the trace). */
  flushRemoteTlbs(reason: string): void;
  /** `mark_page_dirty_in_slot`. */
  markPageDirtyInSlot(slot: MemSlot, gfn: number): void;
  /** `kvm_make_all_cpus_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)`: vCPUs drop invalid roots. */
  requestRootReload(): void;
  /** `kvm_mmu_max_mapping_level`: highest level ≤ maxLevel that `gfn` may be mapped at. */
  maxMappingLevel(slot: MemSlot, gfn: number, maxLevel: number): number;
  /** The MMIO generation new MMIO sptes carry (the memslot generation, masked). */
  readonly mmioGen: number;
  /**
   * `tdp_mmu_alloc_sp` / `kvm_mmu_alloc_shadow_page` for a direct page: with a gfn array when
   * seed 2010 is switched to "before" (counted) or the self-check needs one (not counted).
   */
  allocDirectSp(role: number, gfn: number, tdpMmuPage: boolean): number;
  /** Whether {@link allocDirectSp} gives pages a gfn array (for the memory-budget bounds). */
  readonly directTranslation: boolean;
  /**
   * The seed-2010 self-check: entry `idx` of `sp` maps `gfn`, and the stored gfn equals
   * `kvm_mmu_page_get_gfn`'s formula. Throws {@link MmuBugError} otherwise; a no-op unless
   * `selfCheckGfns` is on and the page has an array.
   */
  checkGfn(sp: number, idx: number, gfn: number): void;
  /**
   * `kvm_vcpu_read_guest_atomic` of one gpte (4 bytes when `wide` is false, else 8) at `gpa`
   * into `out[0]` (low word) and `out[1]` (high word). False when no memslot backs it.
   */
  readGuestPte(gpa: number, wide: boolean, out: Uint32Array): boolean;
}

/**
 * The mmu.c functions of the shadow (rmap) MMU that paging_tmpl.ts calls for shadow paging
 * (`FNAME(fetch)`, `FNAME(sync_spte)`, `FNAME(pte_prefetch)`); KVM's paging_tmpl.h is
 * included into mmu.c and calls them directly. Implemented by `ShadowMmu` (mmu.ts).
 */
export interface ShadowMmuOps {
  readonly core: MmuCore;
  readonly store: MmuPageStore;
  /** The `prefetch` switch (`FNAME(pte_prefetch)`, `direct_pte_prefetch`). */
  readonly prefetch: boolean;
  /** `kvm_faultin_pfn`: RET_PF_CONTINUE, or RET_PF_EMULATE for a write to a read-only slot. */
  faultinPfn(fault: KvmPageFault): number;
  /** `kvm_mmu_hugepage_adjust`: req/goal level (≤ `fault.maxLevel`), pfn aligned to it. */
  hugepageAdjust(fault: KvmPageFault): void;
  /** `shadow_page_table_clear_flood` along the path of `gvaPfn` under the vCPU's root. */
  clearFloodPath(mmu: KvmMmu, gvaPfn: number): void;
  /** `make_mmu_pages_available`. */
  makeMmuPagesAvailable(): void;
  /**
   * `kvm_mmu_get_child_sp`: -1 (KVM's -EEXIST) when entry `idx` of `sp` is a present non-leaf,
   * else the (found or new) child for `gfn` with role `kvm_mmu_child_role(direct, access)`.
   */
  getChildSp(
    mmu: KvmMmu,
    sp: number,
    idx: number,
    gfn: number,
    direct: boolean,
    access: number,
  ): number;
  /** `mmu_sync_children` of `sp` for the vCPU whose context is `mmu`. */
  syncChildren(mmu: KvmMmu, sp: number): void;
  /** `link_shadow_page`: entry `idx` of `sp` (at `level`) points at `child`. */
  linkShadowPage(sp: number, idx: number, level: number, child: number): void;
  /** `clear_sp_write_flooding_count` of the page. */
  clearSpFlood(sp: number): void;
  /** `validate_direct_spte`: drop a direct child whose access differs from `access`. */
  validateDirectSpte(sp: number, idx: number, level: number, access: number): void;
  /**
   * `mmu_set_spte`: leaf `idx` of `sp` maps `gfn` → `pfn` with `pteAccess`. `fault` null for a
   * prefetch. Returns RET_PF_FIXED, RET_PF_SPURIOUS or RET_PF_EMULATE.
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
  ): number;
  /** `drop_spte`: clear a present leaf (rmap, stats); returns whether a flush is needed. */
  dropSpte(sp: number, idx: number, level: number): boolean;
  /** `mmu_spte_update` of a present leaf through the one sink; returns the flush decision. */
  updateSpte(sp: number, idx: number, level: number, gfn: number, lo: number, hi: number): boolean;
  /** `__direct_pte_prefetch` around entry `idx` of a direct level-1 page. */
  directPtePrefetch(sp: number, idx: number): void;
  /** `mmu_try_to_unsync_pages` (true: a writable spte may map `gfn`). */
  mmuTryToUnsyncPages(slot: MemSlot, gfn: number, canUnsync: boolean, prefetch: boolean): boolean;
}

// ---- struct kvm_mmu_page (mmu_internal.h) ------------------------------------------------------

/*
 * Shadow pages (`struct kvm_mmu_page`, mmu_internal.h) in a column store.
 *
 * A shadow page is an integer id. Its fields live in parallel typed-array columns indexed by id
 * (grown by doubling, 32-bit indices), and its 512 sptes live in `spt[id]`, a 1024-word
 * `Uint32Array` view (lo/hi per spte, see spte.ts) into a pooled chunk of 64 pages, so the
 * simulator holds exactly 4 KiB of spte storage per live page, like KVM.
 *
 * ```
 *  column         type          meaning
 *  role           Uint32Array   kvm_mmu_page_role word (above)
 *  gfn            Float64Array  sp->gfn (gfns reach 2^40: a double holds them exactly)
 *  parentSp       Int32Array    TDP: the sp holding the one parent entry (sp->ptep), -1 for roots
 *  parentIdx      Int16Array    index of that entry in the parent
 *  rootCount      Int32Array    tdp_mmu_root_count / root_count
 *  flags          Uint8Array    SP_LIVE | SP_TDP | SP_TRANSLATION_ACCOUNTED
 *  validGen       Uint8Array    mmu_valid_gen at creation (rmap MMU)
 *  prev/next      Int32Array    active_mmu_pages list (rmap MMU; head = newest)
 *  hashNext       Int32Array    chain in mmu_page_hash (rmap MMU)
 *  parentPtes     Uint32Array   parent_ptes (rmap MMU): pte_list head of the sptes linking it
 *  unsync         Uint8Array    sp->unsync (shadow paging: a level-1 page the guest may write)
 *  unsyncChildren Int32Array    sp->unsync_children
 *  unsyncBitmap   Uint32Array   sp->unsync_child_bitmap, 16 words per page
 *  flood          Uint8Array    sp->write_flooding_count
 * ```
 * `translation[id]` is the per-entry gfn array (`sp->gfns`, one 4 KiB page of 512 × u64 in KVM,
 * a 512-entry Float64Array here) or null: after seed 2010 only pages with guest PTEs get one.
 *
 * Every host frame of an spt page gets a pfn `MMU_PAGE_PFN_BASE + id`, far above any frame of
 * guest memory, so a non-leaf spte leads to its child in O(1) (KVM: `spte_to_child_sp`).
 */

/** pfn of spt page 0; guest-memory pfns (hva >> 12 < 2^35) stay below it. */
export const MMU_PAGE_PFN_BASE = 2 ** 38;
/** The page is allocated. */
export const SP_LIVE = 1;
/** The page belongs to the TDP MMU (`sp->tdp_mmu_page`). */
export const SP_TDP = 2;
/** The page's translation array counts as MMU memory (false for self-check-only arrays). */
export const SP_TRANSLATION_ACCOUNTED = 4;
/** TDP root: the MMU's own reference was dropped by the zap of invalidated roots. */
export const SP_ROOT_ZAPPED = 8;

const CHUNK_PAGES = 64;
/** Bytes of one spt chunk: 64 pages of 512 sptes × 8 bytes. */
const CHUNK_BYTES = CHUNK_PAGES * SPT_WORDS * 4;
/**
 * Column bytes per page id (the table above): role 4, gfn 8, parentSp 4, parentIdx 2,
 * rootCount 4, flags 1, validGen 1, prev 4, next 4, hashNext 4, parentPtes 4, unsync 1,
 * unsyncChildren 4, unsyncBitmap 64, flood 1, pwBitmap 64, pwCount 4.
 */
const COLUMN_BYTES = 178;
/** Typed arrays among the columns (each one JS object on the heap). */
const COLUMN_ARRAYS = 17;
/** A gfn array (512 × f64) plus, for indirect pages, the access array (512 × u8). */
const TRANSLATION_BYTES = 512 * 8 + 512;

/** Counters of MMU data pages (seed 2010: spt and gfn-array pages), live and over the lifetime. */
export interface MmuPageCounts {
  spt_pages_live: number;
  translation_pages_live: number;
  mmu_data_pages_live: number;
  mmu_data_pages_allocated: number;
  mmu_data_pages_freed: number;
}

/** Column store of shadow pages; ids are reused (lowest freed first is not guaranteed). */
/**
 * A copy of `bits` long enough to hold word `w` (doubling from at least `min` words, at most
 * `max`), for bitmaps indexed by gfn that grow as high gfns are first set.
 */
export function growBitmap(bits: Uint32Array, w: number, min: number, max: number): Uint32Array {
  let n = Math.max(bits.length, min);
  while (n <= w) n *= 2;
  const grown = new Uint32Array(Math.min(n, max));
  grown.set(bits);
  return grown;
}

/** Guest page-table frames above this gfn (1 TiB) are not tracked one by one: any change counts. */
const TABLE_WATCH_MAX_GFN = 2 ** 28;

export class MmuPageStore {
  spt: Uint32Array[] = [];
  role: Uint32Array = new Uint32Array(16);
  gfn: Float64Array = new Float64Array(16);
  parentSp: Int32Array = new Int32Array(16);
  parentIdx: Int16Array = new Int16Array(16);
  rootCount: Int32Array = new Int32Array(16);
  flags: Uint8Array = new Uint8Array(16);
  validGen: Uint8Array = new Uint8Array(16);
  prev: Int32Array = new Int32Array(16);
  next: Int32Array = new Int32Array(16);
  hashNext: Int32Array = new Int32Array(16);
  parentPtes: Uint32Array = new Uint32Array(16);
  unsync: Uint8Array = new Uint8Array(16);
  unsyncChildren: Int32Array = new Int32Array(16);
  unsyncBitmap: Uint32Array = new Uint32Array(16 * 16);
  flood: Uint8Array = new Uint8Array(16);
  /** Seed 2017: `possible_writable_spte_bitmap` (16 words per page) and its count. */
  pwBitmap: Uint32Array = new Uint32Array(16 * 16);
  pwCount: Int32Array = new Int32Array(16);
  /** Keep {@link pwBitmap} up to date (features.possibleWritableBitmap). */
  pwTrack = false;
  translation: (Float64Array | null)[] = [];
  /**
   * The access half of `sp->shadowed_translation` (ACC bits per entry) for pages with guest
   * PTEs; null otherwise. Part of the translation page (it is counted with it).
   */
  access: (Uint8Array | null)[] = [];
  /** Ids handed out so far (high-water mark); ids < created have an spt view. */
  created = 0;
  /** Number of live pages. */
  live = 0;
  private freeIds = new Int32Array(16);
  private nFree = 0;
  private chunks: ArrayBuffer[] = [];
  /** Memory counters, updated on every alloc/free (usually the VM's KvmStats object). */
  readonly counts: MmuPageCounts;
  /** The VM's memory account (category `mmuPages`). */
  readonly memcg: MemCg;

  constructor(
    counts: MmuPageCounts = {
      spt_pages_live: 0,
      translation_pages_live: 0,
      mmu_data_pages_live: 0,
      mmu_data_pages_allocated: 0,
      mmu_data_pages_freed: 0,
    },
    memcg: MemCg = new MemCg(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
  ) {
    this.counts = counts;
    this.memcg = memcg;
    memcg.charge(
      MC.mmuPages,
      16 * COLUMN_BYTES + this.freeIds.byteLength,
      (COLUMN_ARRAYS + 1) * HEAP_TYPED_ARRAY_BYTES,
    );
  }

  /**
   * Upper bound on the bytes that allocating `n` more pages adds (spt chunks, column growth,
   * with `translation` a gfn and access array each): integer math, for the budget checks made
   * before a fault or a split allocates (`mmu_topup_memory_caches`). The JS-heap part is
   * {@link allocHeapBound}.
   */
  allocBytesBound(n: number, translation: boolean): number {
    const fresh = n > this.nFree ? n - this.nFree : 0;
    const ids = this.created + fresh;
    let b = (Math.ceil(ids / CHUNK_PAGES) - this.chunks.length) * CHUNK_BYTES;
    let cap = this.role.length;
    if (ids > cap) {
      while (cap < ids) cap *= 2;
      b += (cap - this.role.length) * COLUMN_BYTES;
    }
    return translation ? b + n * TRANSLATION_BYTES : b;
  }

  /** The JS-heap part of {@link allocBytesBound}: views, chunk and array objects. */
  allocHeapBound(n: number, translation: boolean): number {
    const fresh = n > this.nFree ? n - this.nFree : 0;
    const ids = this.created + fresh;
    let h = fresh * HEAP_VIEW_BYTES;
    h += (Math.ceil(ids / CHUNK_PAGES) - this.chunks.length) * HEAP_TYPED_ARRAY_BYTES;
    return translation ? h + n * 2 * HEAP_TYPED_ARRAY_BYTES : h;
  }

  /**
   * Allocate a page (`kvm_mmu_alloc_shadow_page` / `tdp_mmu_alloc_sp`): zeroed spt, no parent.
   * @param withTranslation allocate a gfn array
   * @param accountTranslation count that array as MMU memory (false: self-check only)
   */
  alloc(
    role: number,
    gfn: number,
    tdp: boolean,
    withTranslation: boolean,
    accountTranslation: boolean,
  ): number {
    let id: number;
    if (this.nFree > 0) {
      id = this.freeIds[--this.nFree]!;
      this.spt[id]!.fill(0);
    } else {
      id = this.created++;
      if (id >= this.role.length) this.grow(id + 1);
      const chunk = Math.floor(id / CHUNK_PAGES);
      if (chunk >= this.chunks.length) {
        this.chunks.push(new ArrayBuffer(CHUNK_BYTES));
        this.memcg.charge(MC.mmuPages, CHUNK_BYTES, HEAP_TYPED_ARRAY_BYTES);
      }
      this.memcg.charge(MC.mmuPages, 0, HEAP_VIEW_BYTES);
      this.spt[id] = new Uint32Array(
        this.chunks[chunk]!,
        (id % CHUNK_PAGES) * SPT_WORDS * 4,
        SPT_WORDS,
      );
      this.translation[id] = null;
    }
    this.access[id] = null;
    this.role[id] = role;
    this.gfn[id] = gfn;
    this.parentSp[id] = -1;
    this.parentIdx[id] = 0;
    this.rootCount[id] = 0;
    this.prev[id] = -1;
    this.next[id] = -1;
    this.hashNext[id] = -1;
    this.parentPtes[id] = 0;
    this.unsync[id] = 0;
    this.unsyncChildren[id] = 0;
    this.unsyncBitmap.fill(0, id * 16, id * 16 + 16);
    this.flood[id] = 0;
    this.pwBitmap.fill(0, id * 16, id * 16 + 16);
    this.pwCount[id] = 0;
    this.flags[id] = SP_LIVE | (tdp ? SP_TDP : 0);
    this.live++;
    this.counts.spt_pages_live++;
    this.counts.mmu_data_pages_live++;
    this.counts.mmu_data_pages_allocated++;
    if (withTranslation) {
      this.translation[id] = new Float64Array(512).fill(-1);
      this.memcg.charge(MC.mmuPages, 512 * 8, HEAP_TYPED_ARRAY_BYTES);
      if ((role & ROLE_DIRECT) === 0) {
        this.access[id] = new Uint8Array(512);
        this.memcg.charge(MC.mmuPages, 512, HEAP_TYPED_ARRAY_BYTES);
      }
      if (accountTranslation) {
        this.flags[id]! |= SP_TRANSLATION_ACCOUNTED;
        this.counts.translation_pages_live++;
        this.counts.mmu_data_pages_live++;
        this.counts.mmu_data_pages_allocated++;
      }
    }
    return id;
  }

  /**
   * Incremented whenever a table is unlinked or freed: paths found earlier may no longer exist
   * (the stage-2 walk cache keys on it).
   */
  topologyEpoch = 0;

  /**
   * Incremented by each MMU's one spte sink (`handle_changed_spte`, `mmu_spte_set/update/clear`)
   * on every spte change: a translation the simulated CPU cached is exact while this is
   * unchanged. (The CPU's own A/D updates need no bump: they only add bits.)
   */
  spteEpoch = 0;

  /**
   * Incremented by the same sinks when the changed spte may map a frame the CPU cached as a
   * guest page table ({@link watchTable}): a leaf of a watched gfn, or any entry above 4K.
   * The CPU's guest-table cache keys on it, so that the many spte changes of a dirty pass do not
   * drop it on every access.
   */
  tableEpoch = 0;
  private tableGfnBits: Uint32Array = new Uint32Array(0);

  /** Note that the CPU caches `gfn` as a guest page-table frame. */
  watchTable(gfn: number): void {
    if (gfn >= TABLE_WATCH_MAX_GFN) return;
    const w = gfn >>> 5;
    if (w >= this.tableGfnBits.length) {
      // Not checked: at most 32 MiB (a bit per gfn below TABLE_WATCH_MAX_GFN), only for guest
      // table frames the CPU caches; charged so that the account shows it.
      const old = this.tableGfnBits.byteLength;
      this.tableGfnBits = growBitmap(this.tableGfnBits, w, 64, TABLE_WATCH_MAX_GFN / 32);
      this.memcg.charge(
        MC.mmuPages,
        this.tableGfnBits.byteLength - old,
        old === 0 ? HEAP_TYPED_ARRAY_BYTES : 0,
      );
    }
    this.tableGfnBits[w] = (this.tableGfnBits[w]! | (1 << (gfn & 31))) >>> 0;
  }

  /** For the sinks: an spte of `gfn` at `level` changed; bump {@link tableEpoch} if it may matter. */
  tableSpteChanged(gfn: number, level: number): void {
    if (
      level > 1 ||
      gfn >= TABLE_WATCH_MAX_GFN ||
      ((this.tableGfnBits[gfn >>> 5] ?? 0) >>> (gfn & 31)) & 1
    )
      this.tableEpoch++;
  }

  /** Record that a table was unlinked from its parent (it may stay allocated: rmap-MMU orphans). */
  unlinked(): void {
    this.topologyEpoch++;
  }

  /** Free a page (`tdp_mmu_free_sp` / `kvm_mmu_free_shadow_page`): its data pages go back. */
  free(id: number): void {
    if (!this.isLive(id))
      throw new MmuBugError("kvm_mmu_free_shadow_page", `double free of sp ${id}`);
    this.topologyEpoch++;
    this.counts.spt_pages_live--;
    this.counts.mmu_data_pages_live--;
    this.counts.mmu_data_pages_freed++;
    if (this.flags[id]! & SP_TRANSLATION_ACCOUNTED) {
      this.counts.translation_pages_live--;
      this.counts.mmu_data_pages_live--;
      this.counts.mmu_data_pages_freed++;
    }
    if (this.translation[id]) this.memcg.uncharge(MC.mmuPages, 512 * 8, HEAP_TYPED_ARRAY_BYTES);
    if (this.access[id]) this.memcg.uncharge(MC.mmuPages, 512, HEAP_TYPED_ARRAY_BYTES);
    this.translation[id] = null;
    this.access[id] = null;
    this.flags[id] = 0;
    this.live--;
    if (this.nFree >= this.freeIds.length) {
      // Bounded by the ids handed out, so it is not checked: it stays below the column bytes.
      const n = new Int32Array(this.freeIds.length * 2);
      n.set(this.freeIds);
      this.memcg.charge(MC.mmuPages, n.byteLength - this.freeIds.byteLength);
      this.freeIds = n;
    }
    this.freeIds[this.nFree++] = id;
  }

  /** The page's gfn array counts as MMU memory (seed 2010 "before", or a page with guest PTEs). */
  translationAccounted(id: number): boolean {
    return (this.flags[id]! & SP_TRANSLATION_ACCOUNTED) !== 0;
  }

  /** The page is allocated. */
  isLive(id: number): boolean {
    return id >= 0 && id < this.created && (this.flags[id]! & SP_LIVE) !== 0;
  }

  /** Host frame of the page's spt (what a non-leaf spte points at). */
  spPfn(id: number): number {
    return MMU_PAGE_PFN_BASE + id;
  }

  /** The page whose spt lives at host frame `pfn` (`spte_to_child_sp`). */
  pfnToSp(pfn: number): number {
    return pfn - MMU_PAGE_PFN_BASE;
  }

  /** Bytes of typed-array storage held by the store (spt chunks, columns, translation arrays). */
  bytes(): number {
    let b = this.chunks.length * CHUNK_PAGES * SPT_WORDS * 4;
    b += this.role.byteLength + this.gfn.byteLength + this.parentSp.byteLength;
    b += this.parentIdx.byteLength + this.rootCount.byteLength + this.flags.byteLength;
    b += this.validGen.byteLength + this.prev.byteLength + this.next.byteLength;
    b += this.hashNext.byteLength + this.freeIds.byteLength + this.parentPtes.byteLength;
    b += this.unsync.byteLength + this.unsyncChildren.byteLength + this.unsyncBitmap.byteLength;
    b += this.flood.byteLength + this.pwBitmap.byteLength + this.pwCount.byteLength;
    for (let i = 0; i < this.created; i++) {
      b += this.translation[i]?.byteLength ?? 0;
      b += this.access[i]?.byteLength ?? 0;
    }
    return b;
  }

  private grow(min: number): void {
    let n = this.role.length;
    while (n < min) n *= 2;
    this.memcg.charge(MC.mmuPages, (n - this.role.length) * COLUMN_BYTES);
    const g = <T extends Uint32Array | Float64Array | Int32Array | Int16Array | Uint8Array>(
      a: T,
    ): T => {
      const c = new (a.constructor as new (n: number) => T)(n);
      c.set(a as never);
      return c;
    };
    this.role = g(this.role);
    this.gfn = g(this.gfn);
    this.parentSp = g(this.parentSp);
    this.parentIdx = g(this.parentIdx);
    this.rootCount = g(this.rootCount);
    this.flags = g(this.flags);
    this.validGen = g(this.validGen);
    this.prev = g(this.prev);
    this.next = g(this.next);
    this.hashNext = g(this.hashNext);
    this.parentPtes = g(this.parentPtes);
    this.unsync = g(this.unsync);
    this.unsyncChildren = g(this.unsyncChildren);
    this.flood = g(this.flood);
    const b = new Uint32Array(n * 16);
    b.set(this.unsyncBitmap);
    this.unsyncBitmap = b;
    const pw = new Uint32Array(n * 16);
    pw.set(this.pwBitmap);
    this.pwBitmap = pw;
    this.pwCount = g(this.pwCount);
  }

  /**
   * Seed 2017, `mmu_log_possible_writable_spte`: entry `idx` of `sp` went from (`oldLo`,
   * `oldHi`) to (`newLo`, `newHi`); keep its bit and the page's count. Called by each MMU's
   * one spte sink while {@link pwTrack} is on.
   */
  logPossibleWritable(
    sp: number,
    idx: number,
    oldLo: number,
    oldHi: number,
    newLo: number,
    newHi: number,
  ): void {
    const was = isPossiblyWritable(oldLo, oldHi);
    if (was === isPossiblyWritable(newLo, newHi)) return;
    const w = sp * 16 + (idx >>> 5);
    const bit = 1 << (idx & 31);
    if (was) {
      this.pwCount[sp]!--;
      this.pwBitmap[w] = (this.pwBitmap[w]! & ~bit) >>> 0;
    } else {
      this.pwCount[sp]!++;
      this.pwBitmap[w] = (this.pwBitmap[w]! | bit) >>> 0;
    }
  }
}

/**
 * gfn mapped by entry `i` of a direct page (seed 2010, `kvm_mmu_page_get_gfn` for direct pages):
 * `sp.gfn + (i << 9*(level-1))`, computed with multiplication because gfns exceed 32 bits.
 */
export function directEntryGfn(spGfn: number, level: number, i: number): number {
  return spGfn + i * GFN_SPAN[level]!;
}

/**
 * `kvm_mmu_page_get_gfn`: gfn mapped by entry `i`. Indirect pages (and, before seed 2010, every
 * page) read the stored array; direct pages compute it.
 */
export function kvmMmuPageGetGfn(
  store: MmuPageStore,
  sp: number,
  i: number,
  useStored: boolean,
): number {
  const t = store.translation[sp];
  if (t !== null && t !== undefined && (useStored || (store.role[sp]! & ROLE_DIRECT) === 0))
    return t[i]!;
  return directEntryGfn(store.gfn[sp]!, store.role[sp]! & ROLE_LEVEL_MASK, i);
}

/**
 * `kvm_mmu_page_set_gfn`: store the gfn where an array exists; for direct pages the value must
 * equal the formula (KVM: BUG_ON) — a violation throws.
 */
export function kvmMmuPageSetGfn(store: MmuPageStore, sp: number, i: number, gfn: number): void {
  const role = store.role[sp]!;
  if ((role & ROLE_DIRECT) !== 0) {
    const want = directEntryGfn(store.gfn[sp]!, role & ROLE_LEVEL_MASK, i);
    if (want !== gfn) {
      throw new MmuBugError(
        "kvm_mmu_page_set_translation",
        `sp ${sp} entry ${i} maps gfn 0x${gfn.toString(16)}, the direct-page formula says 0x${want.toString(16)}`,
      );
    }
  }
  const t = store.translation[sp];
  if (t !== null && t !== undefined) t[i] = gfn;
}

// ---- the last spte on a path (kvm_tdp_mmu_fast_pf_get_last_sptep, kvm_mmu_get_spte_hierarchy) -

/** Where a walk to the last spte stopped: the table, the entry, its level and value. */
export class LastSpte {
  /** Table (sp id) holding the entry. */
  sp = -1;
  /** Index of the entry. */
  idx = 0;
  /** Level of the entry. */
  level = 0;
  /** The entry, low and high words. */
  lo = 0;
  hi = 0;
  /** R|W|X of every non-leaf entry on the way, ANDed (EPT permissions combine across levels). */
  pathRights = 0;
}

/**
 * Walk the tables under `root` (at `rootLevel`) towards `gfn` and stop at the last entry: a leaf
 * or a non-present entry. The lockless walk of `fast_page_fault`, and what the CPU does with EPT.
 * Result in `out`; allocates nothing.
 */
export function walkToLastSpte(
  store: MmuPageStore,
  root: number,
  rootLevel: number,
  gfn: number,
  out: LastSpte,
): void {
  let sp = root;
  let level = rootLevel;
  let rights = SPTE_R | SPTE_W | SPTE_X;
  for (;;) {
    const spt = store.spt[sp]!;
    const i = spteIndex(gfn, level) * 2;
    const lo = spt[i]!;
    if ((lo & SPTE_MMU_PRESENT) === 0 || level === 1 || (lo & SPTE_PS) !== 0) {
      out.sp = sp;
      out.idx = i >>> 1;
      out.level = level;
      out.lo = lo;
      out.hi = spt[i + 1]!;
      out.pathRights = rights;
      return;
    }
    rights &= lo;
    sp = store.pfnToSp(sptePfn(lo, spt[i + 1]!));
    level--;
  }
}

// ---- x86 slot->arch: lpage_info and rmap heads (kvm_host.h; kvm_alloc_memslot_metadata) --------

/** `gfn_to_index`: index of `gfn`'s entry at `level` among the slot's entries. */
export function gfnToIndex(gfn: number, baseGfn: number, level: number): number {
  const span = GFN_SPAN[level]!;
  return Math.floor(gfn / span) - Math.floor(baseGfn / span);
}

/** Number of entries at `level` for a slot (`kvm_mmu_slot_lpages`). */
export function slotLpages(baseGfn: number, npages: number, level: number): number {
  return gfnToIndex(baseGfn + npages - 1, baseGfn, level) + 1;
}

/** `slot->arch.rmap[3][]`: rmap heads for levels 1..3 (pte_list encoding, see mmu.ts). */
export class SlotRmap {
  /** heads[level - 1][gfn_to_index(gfn, base, level)]. */
  readonly heads: [Uint32Array, Uint32Array, Uint32Array];

  constructor(baseGfn: number, npages: number) {
    this.heads = [
      new Uint32Array(slotLpages(baseGfn, npages, 1)),
      new Uint32Array(slotLpages(baseGfn, npages, 2)),
      new Uint32Array(slotLpages(baseGfn, npages, 3)),
    ];
  }

  bytes(): number {
    return this.heads[0].byteLength + this.heads[1].byteLength + this.heads[2].byteLength;
  }
}

/**
 * x86 `struct kvm_arch_memory_slot`: `lpage_info` for levels 2 and 3 (the `disallow_lpage`
 * counters) and the rmap heads.
 *
 * `disallow_lpage` starts at 1 for the first entry if `base_gfn` is not aligned to the level, for
 * the last entry if `base_gfn + npages` is not aligned, and for every entry if the slot's gfn and
 * hva are not congruent modulo the level's page size (`kvm_alloc_memslot_metadata`, x86.c).
 * Shadowed guest page tables add to it (`kvm_mmu_gfn_disallow_lpage`).
 */
export class SlotArch {
  /** `lpage_info[0]` = level 2, `[1]` = level 3: `disallow_lpage` per entry. */
  readonly lpageInfo: [Int32Array, Int32Array];
  /** rmap heads per level (rmap MMU only; null while no rmap-MMU page exists). */
  rmap: SlotRmap | null = null;
  /** Dirty logging was turned off: faults here count in `refaults_after_disable`. */
  afterLogDisable = false;
  /** `gfn_write_track` (page_track.c): per gfn, how many shadowed upper-level tables live there. */
  gfnWriteTrack: Uint16Array | null = null;
  /** Geometry the metadata was built for (a moved slot needs new metadata). */
  readonly baseGfn: number;
  readonly npages: number;
  /** The account charged for this metadata, or null (a scratch copy, e.g. the audit's). */
  private readonly memcg: MemCg | null;
  /** Bytes reserved for the rmap heads and write-tracking counts not yet allocated. */
  private reservedRmap = 0;
  private reservedTrack = 0;

  /** Bytes of lpage_info for a slot (levels 2 and 3, an int32 per entry). */
  static lpageInfoBytes(baseGfn: number, npages: number): number {
    return (slotLpages(baseGfn, npages, 2) + slotLpages(baseGfn, npages, 3)) * 4;
  }

  /** Bytes of the rmap heads for a slot (levels 1 to 3, a u32 per entry). */
  static rmapBytes(baseGfn: number, npages: number): number {
    return (
      (slotLpages(baseGfn, npages, 1) +
        slotLpages(baseGfn, npages, 2) +
        slotLpages(baseGfn, npages, 3)) *
      4
    );
  }

  /** Bytes of `gfn_write_track` for a slot (a u16 per page). */
  static writeTrackBytes(npages: number): number {
    return npages * 2;
  }

  /**
   * Metadata of `slot`. With `memcg`, lpage_info is charged, and the rmap heads (`rmaps`) and
   * the write-tracking counts (`writeTrack`) are reserved: KVM allocates them with the slot
   * when the shadow MMU or write tracking is in use (`kvm_alloc_memslot_metadata`), the
   * simulator on first use (so their cost is checked now, and charged then).
   */
  constructor(slot: MemSlot, memcg: MemCg | null = null, rmaps = false, writeTrack = false) {
    const base = slot.baseGfn;
    const npages = slot.npages;
    this.baseGfn = base;
    this.npages = npages;
    this.memcg = memcg;
    if (memcg !== null) {
      memcg.charge(
        MC.slotMetadata,
        SlotArch.lpageInfoBytes(base, npages),
        2 * HEAP_TYPED_ARRAY_BYTES,
      );
      if (rmaps) this.reservedRmap = SlotArch.rmapBytes(base, npages);
      if (writeTrack) this.reservedTrack = SlotArch.writeTrackBytes(npages);
      memcg.reserve(MC.slotMetadata, this.reservedRmap + this.reservedTrack);
    }
    const ugfn = slot.userspaceAddr / 4096;
    const info: Int32Array[] = [];
    for (let level = 2; level <= 3; level++) {
      const n = slotLpages(base, npages, level);
      const a = new Int32Array(n);
      const span = GFN_SPAN[level]!;
      if (base % span !== 0) a[0] = 1;
      if ((base + npages) % span !== 0) a[n - 1] = 1;
      // (base_gfn ^ ugfn) & (span - 1): congruence of gfn and hva modulo the huge page size.
      if (base % span !== ugfn % span) a.fill(1);
      info.push(a);
    }
    this.lpageInfo = [info[0]!, info[1]!];
  }

  /** `disallow_lpage` of `gfn` at level 2 or 3. */
  disallowLpage(slot: MemSlot, gfn: number, level: number): number {
    return this.lpageInfo[level - 2]![gfnToIndex(gfn, slot.baseGfn, level)]!;
  }

  /** The slot's rmap heads, allocated on first use (`memslot_rmap_alloc`). */
  rmapFor(slot: MemSlot): SlotRmap {
    if (this.rmap === null) {
      this.rmap = new SlotRmap(slot.baseGfn, slot.npages);
      this.charged(this.rmap.bytes(), 3, this.reservedRmap);
      this.reservedRmap = 0;
    }
    return this.rmap;
  }

  /** The slot's write-tracking counts, allocated on first use. */
  writeTrackFor(): Uint16Array {
    if (this.gfnWriteTrack === null) {
      this.gfnWriteTrack = new Uint16Array(this.npages);
      this.charged(this.gfnWriteTrack.byteLength, 1, this.reservedTrack);
      this.reservedTrack = 0;
    }
    return this.gfnWriteTrack;
  }

  /** Charge `bytes` in `arrays` typed arrays, `reserved` of them promised at the slot's creation. */
  private charged(bytes: number, arrays: number, reserved: number): void {
    const m = this.memcg;
    if (m === null) return;
    m.unreserve(MC.slotMetadata, reserved);
    m.charge(MC.slotMetadata, bytes, arrays * HEAP_TYPED_ARRAY_BYTES);
  }

  /** The slot went away (deleted, or moved: new metadata was made): its account is released. */
  release(): void {
    const m = this.memcg;
    if (m === null) return;
    m.unreserve(MC.slotMetadata, this.reservedRmap + this.reservedTrack);
    this.reservedRmap = 0;
    this.reservedTrack = 0;
    const arrays = 2 + (this.rmap === null ? 0 : 3) + (this.gfnWriteTrack === null ? 0 : 1);
    m.uncharge(MC.slotMetadata, this.bytes(), arrays * HEAP_TYPED_ARRAY_BYTES);
  }

  /** Bytes of typed-array storage. */
  bytes(): number {
    return (
      this.lpageInfo[0].byteLength +
      this.lpageInfo[1].byteLength +
      (this.rmap?.bytes() ?? 0) +
      (this.gfnWriteTrack?.byteLength ?? 0)
    );
  }
}

/** The slot's arch metadata, created on first use (`kvm_arch_prepare_memory_region`). */
export function slotArch(slot: MemSlot): SlotArch {
  let a = slot.arch as SlotArch | undefined;
  if (!(a instanceof SlotArch) || a.baseGfn !== slot.baseGfn || a.npages !== slot.npages) {
    a = new SlotArch(slot);
    slot.arch = a;
  }
  return a;
}
