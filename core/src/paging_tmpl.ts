/**
 * The guest page-table walker: KVM's `FNAME(walk_addr_generic)` (paging_tmpl.h) for 32-bit, PAE,
 * 4-level and 5-level guest tables, in the shape the 2007 rewrite gave it (seed 2): the loop
 * carries only the current entry (`pte`) from level to level, derives the next table's gfn from
 * it, reads one entry per level and keeps no mapping across iterations.
 *
 * Modern semantics: rights are ANDed (NX inverted so it ANDs too) and checked once at the end
 * against the precomputed permission table; A (every level) and D (leaf, writes) are written back
 * with cmpxchg only after the whole walk succeeded.
 *
 * The pre-2008 flavours of the seed-2007 switch (`features.guestWalker: "w07b" | "w07a"`) live in
 * paging_tmpl_w07.ts and share the per-level pieces below; the vCPU picks its walk function once.
 *
 * Hot path: integers and typed arrays only; results land in a reusable {@link GuestWalker}.
 */

import { hexNum } from "./addr";
import {
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  PFERR_FETCH_MASK,
  PFERR_IMPLICIT_ACCESS,
  PFERR_PK_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
  X86_EFLAGS_AC,
} from "./constants";
import { walkBundle } from "./display/bundle";
import type {
  ErrorBit,
  IndexBits,
  LevelName,
  MimeBundle,
  WalkLevel,
  WalkPayload,
} from "./display/types";
import {
  gpteFlags,
  type PagingMode,
  PT_ACCESSED_MASK,
  PT_DIRTY_MASK,
  PT_PAGE_SIZE_MASK,
  PT_PRESENT_MASK,
} from "./guest_pte";
import type { GuestMemory } from "./memory";

/** Third result of {@link Stage2.translate}: no memslot (or a write to a read-only one) — an MMIO exit. */
export const STAGE2_MMIO = -1;

/**
 * Per-vCPU MMU context for the guest walk (the `cpu_role` part of `struct kvm_mmu`), recomputed
 * whenever CR0/CR3/CR4/EFER change (`kvm_init_mmu`).
 */
export class GuestMmuContext {
  /** Root level: 0 (paging off), 2 (32-bit), 3 (PAE), 4, 5. */
  rootLevel = 0;
  /** CR3 (or, for PAE, nothing: PDPTRs below) as halves. */
  cr3Hi = 0;
  cr3Lo = 0;
  /** EFER.NXE. */
  nx = false;
  /** CR4.SMEP (selects whether a fetch sets PFERR_FETCH when EFER.NXE is clear). */
  smep = false;
  /** CR0.WP (the 2007 walkers test it per level; the modern one through `permissions`). */
  wp = false;
  /** CR4.PSE (32-bit paging: 4 MiB pages). */
  pse = false;
  /** Guest has PSE-36 (32-bit 4 MiB pages reach 36-bit addresses). */
  pse36 = true;
  /** Reserved-bit masks `[bit7 * 5 + level - 1]`. */
  rsvdLo: Uint32Array = new Uint32Array(10);
  rsvdHi: Uint32Array = new Uint32Array(10);
  /** `permissions[pfec >> 1]`. */
  permissions: Uint8Array = new Uint8Array(16);
  /** `pkru_mask`. */
  pkruMask = 0;
  /** PAE: the four PDPTEs loaded at CR3 load, and where they were read from. */
  pdptrLo: Uint32Array = new Uint32Array(4);
  pdptrHi: Uint32Array = new Uint32Array(4);
  pdptGpa = 0;
}

/**
 * How the walker reaches guest memory: the stage-2 translation of the VM (identity over memslots
 * for the bare walker machine; EPT/NPT later) and the backing store.
 */
export interface WalkerEnv {
  /** gpa → host virtual frame, or {@link STAGE2_MMIO}; sets `writable`. */
  translate(gpa: number, pfec: number, final: boolean): number;
  /** Whether the frame from the last `translate` may be written (slot not READONLY). */
  readonly writable: boolean;
  /** Backing memory. */
  readonly memory: GuestMemory;
  /** `kvm_vcpu_mark_page_dirty` for a gpte A/D write-back. */
  markPageDirty(gfn: number): void;
  /** RFLAGS (for AC) and PKRU at the time of the access. */
  readonly rflags: number;
  readonly pkru: number;
  /**
   * The 2.6.23–25 walker's `kvm_mmu_pte_write` after it set D in a gpte (`bytes` = gpte size):
   * the MMU beneath hears of the guest-table write as it hears of guest stores. Optional.
   */
  notifyPteWrite?(gpa: number, bytes: number): void;
}

/** Result/state of one walk (`struct guest_walker`); reused across walks. */
export class GuestWalker {
  /** Level the walk ended at (leaf level on success, faulting level on failure). */
  level = 0;
  /** Top level read from memory (root level, or 2 for PAE). */
  maxLevel = 0;
  /** Per level (index level - 1): gfn of the table, gpa of the entry, entry value read. */
  readonly tableGfn: Float64Array = new Float64Array(5);
  readonly pteGpa: Float64Array = new Float64Array(5);
  readonly pteIndex: Uint16Array = new Uint16Array(5);
  /** Low word of entries this walk changed, before the A/D write-back (valid where aSet|dSet). */
  readonly beforeLo: Uint32Array = new Uint32Array(5);
  /** Entry values as read, updated by the A/D write-back (high words never change). */
  readonly ptesLo: Uint32Array = new Uint32Array(5);
  readonly ptesHi: Uint32Array = new Uint32Array(5);
  /** Host frame of each table, and whether it is writable (read-only slots get no A/D). */
  readonly tableHvfn: Float64Array = new Float64Array(5);
  readonly pteWritable: Uint8Array = new Uint8Array(5);
  /** Rights of the parents at each level (ACC bits). */
  readonly ptAccess: Uint8Array = new Uint8Array(5);
  /** Bit (level - 1) set if A / D was set by this walk. */
  aSet = 0;
  dSet = 0;
  /** Final effective rights (ACC bits, after `protect_clean_gpte`). */
  pteAccess = 0;
  /** Protection key of the leaf. */
  pkey = 0;
  /** Leaf gfn and gpa of the access. */
  gfn = 0;
  gpa = 0;
  /** log2 of the leaf page size (12, 21, 22, 30). */
  pageShift = 12;
  /** #PF error code when the walk failed. */
  errorCode = 0;
  /** Why the walk failed: 0 ok, 1 not present, 2 reserved bit, 3 access rights, 4 table outside memslots. */
  failure = 0;
  /** Counters (`gpte_reads`, `gpte_ad_writes`). */
  gpteReads = 0;
  gpteAdWrites = 0;
  /**
   * Of `gpteAdWrites`, the D bits the 2.6.21/22 walker flavour ("w07a") left to the step after
   * the walk (`FNAME(fix_write_pf)` time).
   */
  gpteDWritesAfterWalk = 0;
  /**
   * Most guest-table mappings held across walker levels (`mappings_held_max`): 1 for "w07a",
   * which kept the current table mapped from level to level and returned it to its caller;
   * 0 for "w07b" and "modern", which map a table only to touch one gpte.
   */
  mappingsHeldMax = 0;
  /** The entry the walk starts from: CR3, or for PAE the PDPTE register (set by the walk). */
  rootLo = 0;
  rootHi = 0;
}

/** Walk failure kinds (GuestWalker.failure). */
export const WALK_OK = 0;
export const WALK_NOT_PRESENT = 1;
export const WALK_RSVD = 2;
export const WALK_ACCESS = 3;
export const WALK_NO_TABLE = 4;

/** 9-bit index of a 64-bit-format table at `level` for gva halves (`PT64_INDEX`). */
export function pt64Index(hi: number, lo: number, level: number): number {
  switch (level) {
    case 1:
      return (lo >>> 12) & 511;
    case 2:
      return (lo >>> 21) & 511;
    case 3:
      return ((lo >>> 30) | (hi << 2)) & 511;
    case 4:
      return (hi >>> 7) & 511;
    default:
      return (hi >>> 16) & 511;
  }
}

/** 10-bit index of a 32-bit table (`PT32_INDEX`). */
export function pt32Index(lo: number, level: number): number {
  return level === 2 ? lo >>> 22 : (lo >>> 12) & 1023;
}

/** pfec of the walker's own table accesses: W|U, as KVM's `nested_access` (A/D may be written). */
const NESTED_ACCESS = PFERR_WRITE_MASK | PFERR_USER_MASK;

/** Guest walker flavours of the seed-2007 switch `features.guestWalker` (spec §13.2, §16). */
export const GUEST_WALKER_FLAVOURS = ["modern", "w07b", "w07a"] as const;
/** "modern": `walk_addr_generic`; "w07b": 2.6.23–25 walker; "w07a": 2.6.21/22 walker. */
export type GuestWalkerFlavour = (typeof GUEST_WALKER_FLAVOURS)[number];

/**
 * A walk function (`walkAddrGeneric`, `walkAddrW07b`, `walkAddrW07a`). The vCPU picks one when it
 * is created, so the modern loop carries no flavour branches.
 */
export type WalkAddrFn = (
  w: GuestWalker,
  mmu: GuestMmuContext,
  env: WalkerEnv,
  hi: number,
  lo: number,
  access: number,
) => boolean;

/**
 * Walk the guest tables for gva (`hi`:`lo`) and access `access` (PFERR_W/U/F, plus
 * PFERR_IMPLICIT_ACCESS). Returns true on success (w.gfn, w.gpa, w.pteAccess set) or false with
 * w.errorCode set. A/D bits are written back only on success.
 */
export function walkAddrGeneric(
  w: GuestWalker,
  mmu: GuestMmuContext,
  env: WalkerEnv,
  hi: number,
  lo: number,
  access: number,
): boolean {
  let level = mmu.rootLevel;
  let pteLo: number;
  let pteHi: number;
  if (level === 3) {
    level = walkStart(w, mmu, lo);
    if (level === 0) return walkError(w, mmu, 0, access);
    pteLo = w.rootLo;
    pteHi = w.rootHi;
  } else {
    w.aSet = 0;
    w.dSet = 0;
    w.failure = WALK_OK;
    w.maxLevel = level;
    pteLo = mmu.cr3Lo;
    pteHi = mmu.cr3Hi;
  }
  const wide = mmu.rootLevel !== 2;

  // Effective rights so far, as ACC bits: exec (= P xor NX) | W | U.
  let pteAccess = 7;
  let ptAccess = 7;
  let accessedAll = PT_ACCESSED_MASK;
  const mem = env.memory;
  // The level loop inlines readGpte / gpteFailure / isLastGpte (the 2007 walkers call them):
  // as calls they cost the modern walk ~5 % (none 4K translateGva, core/bench/walker.bench.mjs).
  for (;;) {
    ptAccess = pteAccess;
    let index: number;
    let tableGfn: number;
    let offset: number;
    if (wide) {
      index = pt64Index(hi, lo, level);
      tableGfn = (pteHi & 0xfffff) * 1048576 + (pteLo >>> 12);
      offset = index << 3;
    } else {
      index = level === 2 ? lo >>> 22 : (lo >>> 12) & 1023;
      tableGfn = pteLo >>> 12;
      offset = index << 2;
    }
    const li = level - 1;
    w.tableGfn[li] = tableGfn;
    w.pteGpa[li] = tableGfn * 4096 + offset;
    w.pteIndex[li] = index;
    const hvfn = env.translate(tableGfn * 4096, NESTED_ACCESS, false);
    if (hvfn < 0) {
      w.ptesLo[li] = w.ptesHi[li] = 0;
      w.level = level;
      w.failure = WALK_NO_TABLE;
      return walkError(w, mmu, 0, access);
    }
    w.tableHvfn[li] = hvfn;
    w.pteWritable[li] = env.writable ? 1 : 0;
    const wi = mem.wordIndex(hvfn);
    if (wi < 0) {
      pteLo = 0;
      pteHi = 0;
    } else {
      const slab = mem.slab;
      pteLo = slab[wi + (offset >>> 2)]!;
      pteHi = wide ? slab[wi + (offset >>> 2) + 1]! : 0;
    }
    w.gpteReads++;
    w.ptesLo[li] = pteLo;
    w.ptesHi[li] = pteHi;

    // NX inverted into the P position (bit 0 = exec) so all rights combine by AND.
    pteAccess = ptAccess & ((pteLo & 7) ^ (pteHi >>> 31));
    if ((pteLo & PT_PRESENT_MASK) === 0) return failWalk(w, mmu, level, WALK_NOT_PRESENT, access);
    const ri = ((pteLo >>> 7) & 1) * 5 + li;
    if (((pteLo & mmu.rsvdLo[ri]!) | (pteHi & mmu.rsvdHi[ri]!)) !== 0)
      return failWalk(w, mmu, level, WALK_RSVD, access);
    w.ptAccess[li] = ptAccess;
    accessedAll &= pteLo;
    if (level === 1) break;
    if ((pteLo & PT_PAGE_SIZE_MASK) !== 0 && (wide || mmu.pse)) break;
    level--;
  }
  if (!finishWalk(w, mmu, env, level, wide, pteLo, pteHi, lo, access, pteAccess)) return false;
  if (accessedAll === 0 || ((access & PFERR_WRITE_MASK) !== 0 && (pteLo & PT_DIRTY_MASK) === 0)) {
    updateAccessedDirtyBits(w, env, (access & PFERR_WRITE_MASK) !== 0);
  }
  return true;
}

/**
 * @internal Start of a walk: reset the per-walk state and load the entry the loop starts from
 * into `w.rootLo/rootHi` (CR3, or for PAE the PDPTE register of the gva's quarter). Returns the
 * first level to read from memory, or 0 when a PAE PDPTE is not present (failure recorded).
 */
export function walkStart(w: GuestWalker, mmu: GuestMmuContext, lo: number): number {
  w.aSet = 0;
  w.dSet = 0;
  w.failure = WALK_OK;
  if (mmu.rootLevel !== 3) {
    w.rootLo = mmu.cr3Lo;
    w.rootHi = mmu.cr3Hi;
    w.maxLevel = mmu.rootLevel;
    return mmu.rootLevel;
  }
  // PAE: the PDPTE comes from the registers loaded at CR3 load, not from memory.
  const i = lo >>> 30;
  const pteLo = mmu.pdptrLo[i]!;
  const pteHi = mmu.pdptrHi[i]!;
  w.tableGfn[2] = Math.floor(mmu.pdptGpa / 4096);
  w.pteGpa[2] = mmu.pdptGpa + i * 8;
  w.pteIndex[2] = i;
  w.ptesLo[2] = w.rootLo = pteLo;
  w.ptesHi[2] = w.rootHi = pteHi;
  if ((pteLo & PT_PRESENT_MASK) === 0) {
    w.level = 3;
    w.maxLevel = 3;
    w.failure = WALK_NOT_PRESENT;
    return 0;
  }
  w.maxLevel = 2;
  return 2;
}

/**
 * @internal Read the gpte of `level` from the table the parent entry (`pteHi`:`pteLo`) points
 * to: records table gfn, entry gpa and index, takes the table through stage 2 (a nested access
 * with W|U as KVM's `nested_access`, since A/D may be written) and stores the entry in
 * `w.ptesLo/ptesHi`. Returns false (failure recorded) when no memslot backs the table.
 */
export function readGpte(
  w: GuestWalker,
  env: WalkerEnv,
  level: number,
  hi: number,
  lo: number,
  wide: boolean,
  pteHi: number,
  pteLo: number,
): boolean {
  let index: number;
  let tableGfn: number;
  let offset: number;
  if (wide) {
    index = pt64Index(hi, lo, level);
    tableGfn = (pteHi & 0xfffff) * 1048576 + (pteLo >>> 12);
    offset = index << 3;
  } else {
    index = level === 2 ? lo >>> 22 : (lo >>> 12) & 1023;
    tableGfn = pteLo >>> 12;
    offset = index << 2;
  }
  const li = level - 1;
  w.tableGfn[li] = tableGfn;
  w.pteGpa[li] = tableGfn * 4096 + offset;
  w.pteIndex[li] = index;
  const hvfn = env.translate(tableGfn * 4096, NESTED_ACCESS, false);
  if (hvfn < 0) {
    // No memslot behind the table: KVM's walker fails with a not-present #PF.
    w.ptesLo[li] = w.ptesHi[li] = 0;
    w.level = level;
    w.failure = WALK_NO_TABLE;
    return false;
  }
  w.tableHvfn[li] = hvfn;
  w.pteWritable[li] = env.writable ? 1 : 0;
  const mem = env.memory;
  const wi = mem.wordIndex(hvfn);
  if (wi < 0) {
    w.ptesLo[li] = 0; // never-written frame: zeros
    w.ptesHi[li] = 0;
  } else {
    const slab = mem.slab;
    w.ptesLo[li] = slab[wi + (offset >>> 2)]!;
    w.ptesHi[li] = wide ? slab[wi + (offset >>> 2) + 1]! : 0;
  }
  w.gpteReads++;
  return true;
}

/** @internal Present and reserved-bit checks of one gpte: WALK_OK, WALK_NOT_PRESENT or WALK_RSVD. */
export function gpteFailure(
  mmu: GuestMmuContext,
  li: number,
  pteLo: number,
  pteHi: number,
): number {
  if ((pteLo & PT_PRESENT_MASK) === 0) return WALK_NOT_PRESENT;
  const ri = ((pteLo >>> 7) & 1) * 5 + li;
  return ((pteLo & mmu.rsvdLo[ri]!) | (pteHi & mmu.rsvdHi[ri]!)) !== 0 ? WALK_RSVD : WALK_OK;
}

/**
 * @internal `FNAME(is_last_gpte)`: level 1 ends; bit 7 ends where it is a page-size bit (in
 * 32-bit paging only with CR4.PSE; at PML4/PML5 it was a reserved-bit fault already).
 */
export function isLastGpte(level: number, pteLo: number, wide: boolean, pse: boolean): boolean {
  return level === 1 || ((pteLo & PT_PAGE_SIZE_MASK) !== 0 && (wide || pse));
}

/** @internal Fail the walk at `level` for `failure` (not present / reserved / access rights). */
export function failWalk(
  w: GuestWalker,
  mmu: GuestMmuContext,
  level: number,
  failure: number,
  access: number,
): false {
  w.level = level;
  w.failure = failure;
  const errcode =
    failure === WALK_RSVD
      ? PFERR_RSVD_MASK | PFERR_PRESENT_MASK
      : failure === WALK_ACCESS
        ? PFERR_PRESENT_MASK
        : 0;
  return walkError(w, mmu, errcode, access);
}

/**
 * @internal End of a walk that reached its leaf at `level`: `permission_fault` (permission
 * table, SMAP with RFLAGS.AC, protection keys), the leaf gfn and gpa, `protect_clean_gpte`.
 * Returns false (error code set) on an access-rights fault. Writes no A/D bits.
 */
export function finishWalk(
  w: GuestWalker,
  mmu: GuestMmuContext,
  env: WalkerEnv,
  level: number,
  wide: boolean,
  pteLo: number,
  pteHi: number,
  lo: number,
  access: number,
  pteAccess: number,
): boolean {
  w.level = level;
  const pkey = wide ? (pteHi >>> 27) & 15 : 0;
  w.pkey = pkey;

  // permission_fault()
  const notSmap = (env.rflags & X86_EFLAGS_AC) !== 0 && (access & PFERR_IMPLICIT_ACCESS) === 0;
  const pfec = access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK);
  let fault = (mmu.permissions[(pfec | (notSmap ? PFERR_RSVD_MASK : 0)) >>> 1]! >>> pteAccess) & 1;
  let errcode = PFERR_PRESENT_MASK;
  if (mmu.pkruMask !== 0) {
    let pkruBits = (env.pkru >>> (pkey * 2)) & 3;
    const off = (pfec & ~1) + ((pteAccess & ACC_USER_MASK) << 1);
    pkruBits &= mmu.pkruMask >>> off;
    if (pkruBits !== 0) {
      errcode |= PFERR_PK_MASK;
      fault = 1;
    }
  }
  if (fault !== 0) {
    w.pteAccess = pteAccess;
    w.failure = WALK_ACCESS;
    return walkError(w, mmu, errcode, access);
  }

  // Leaf frame: large pages add the gva's offset inside the page (gpte_to_gfn_lvl).
  let gfn: number;
  if (level === 1) {
    gfn = wide ? (pteHi & 0xfffff) * 1048576 + (pteLo >>> 12) : pteLo >>> 12;
    w.pageShift = 12;
  } else if (!wide) {
    // 4 MiB page; PSE-36 puts address bits 35:32 in entry bits 16:13.
    gfn = (pteLo >>> 22) * 1024 + ((lo >>> 12) & 1023);
    if (mmu.pse36) gfn += ((pteLo >>> 13) & 15) * 1048576;
    w.pageShift = 22;
  } else {
    const g = (pteHi & 0xfffff) * 1048576 + (pteLo >>> 12);
    const span = level === 2 ? 512 : 262144;
    gfn = g - (g % span) + ((lo >>> 12) & (span - 1));
    w.pageShift = level === 2 ? 21 : 30;
  }
  w.gfn = gfn;
  w.gpa = gfn * 4096 + (lo & 0xfff);

  // FNAME(protect_clean_gpte): a read through a clean leaf does not grant write, so the first
  // write traps and D can be set.
  if ((access & PFERR_WRITE_MASK) === 0 && (pteLo & PT_DIRTY_MASK) === 0)
    pteAccess &= ~ACC_WRITE_MASK;
  w.pteAccess = pteAccess;
  return true;
}

/** `FNAME(update_accessed_dirty_bits)`: top to leaf, set A; D on the leaf for writes. */
function updateAccessedDirtyBits(w: GuestWalker, env: WalkerEnv, write: boolean): void {
  const mem = env.memory;
  for (let level = w.maxLevel; level >= w.level; level--) {
    const li = level - 1;
    const orig = w.ptesLo[li]!;
    let pte = orig | PT_ACCESSED_MASK;
    if (level === w.level && write) pte |= PT_DIRTY_MASK;
    pte >>>= 0;
    if (pte === orig) continue;
    // Tables in a read-only slot keep their A/D bits as they are (ROM page tables).
    if (w.pteWritable[li] === 0) continue;
    const gpa = w.pteGpa[li]!;
    const offset = gpa % 4096;
    if (!mem.cmpxchg32(w.tableHvfn[li]!, offset, orig, pte)) continue;
    recordAdWrite(w, env, li, orig, pte);
  }
}

/**
 * @internal Account one gpte A/D write-back at level index `li` (old low word `orig`, new
 * `pte`): counter, dirty log of the table page, trace bits. `beforeLo` keeps the value the walk
 * first read, so an entry written twice in one walk (old walkers: A, then D) shows both.
 */
export function recordAdWrite(
  w: GuestWalker,
  env: WalkerEnv,
  li: number,
  orig: number,
  pte: number,
): void {
  w.gpteAdWrites++;
  env.markPageDirty(w.tableGfn[li]!);
  if ((((w.aSet | w.dSet) >>> li) & 1) === 0) w.beforeLo[li] = orig;
  w.ptesLo[li] = pte;
  if ((pte & PT_ACCESSED_MASK) !== (orig & PT_ACCESSED_MASK)) w.aSet |= 1 << li;
  if ((pte & PT_DIRTY_MASK) !== (orig & PT_DIRTY_MASK)) w.dSet |= 1 << li;
}

/** @internal Error exit: W and U of the access; FETCH if a fetch and (EFER.NX or CR4.SMEP). */
export function walkError(
  w: GuestWalker,
  mmu: GuestMmuContext,
  errcode: number,
  access: number,
): false {
  errcode |= access & (PFERR_WRITE_MASK | PFERR_USER_MASK);
  if ((access & PFERR_FETCH_MASK) !== 0 && (mmu.nx || mmu.smep)) errcode |= PFERR_FETCH_MASK;
  w.errorCode = errcode;
  return false;
}

/** One level of a walk trace. */
export interface WalkTraceLevel {
  /** Paging level (5 = PML5 ... 1 = PT; 3 = PDPTR register in PAE mode). */
  level: number;
  /** Table name. */
  name: LevelName;
  /** gfn of the table read at this level. */
  tableGfn: number;
  /** Index of the entry in its table. */
  index: number;
  /** Guest-physical address of the entry. */
  pteGpa: number;
  /** Entry value as read (bigint), and after the A/D write-back. */
  before: bigint;
  after: bigint;
  /** Whether this walk set A / D in this entry. */
  aSet: boolean;
  dSet: boolean;
  /** The walk ended at this entry (leaf or fault). */
  leaf: boolean;
  /** Extra explanation (e.g. "PDPTE register"). */
  note?: string;
}

const FAILURE_REASON = [
  "",
  "not present",
  "reserved bit set",
  "access rights",
  "table outside memslots",
];

function errorBitsOf(ec: number): ErrorBit[] {
  const out: ErrorBit[] = [];
  if (ec & PFERR_PRESENT_MASK) out.push("P");
  if (ec & PFERR_WRITE_MASK) out.push("W");
  if (ec & PFERR_USER_MASK) out.push("U");
  if (ec & PFERR_RSVD_MASK) out.push("RSVD");
  if (ec & PFERR_FETCH_MASK) out.push("I");
  if (ec & PFERR_PK_MASK) out.push("PK");
  return out;
}

const NAME_BY_LEVEL: readonly LevelName[] = ["PT", "PT", "PD", "PDPT", "PML4", "PML5"];

/**
 * A walk with its trace (`vcpu.walk()`): the contract result fields plus per-level trace, final
 * rights and a Jupyter display. Immutable snapshot; built only on request, never in hot loops.
 */
export class WalkResult {
  /** Paging mode of the walk. */
  readonly mode: PagingMode;
  /** The linear address walked. */
  readonly gva: bigint;
  /** The access (PFERR bits W/U/F). */
  readonly accessBits: number;
  /** Contract fields. */
  readonly fault: boolean;
  readonly vector?: 13 | 14;
  readonly errorCode?: number;
  readonly gpa?: number;
  readonly mmio?: boolean;
  /** Per-level trace, top first. */
  readonly levels: readonly WalkTraceLevel[];
  /** Final effective rights (ACC bits: 1 exec, 2 write, 4 user) after protect_clean_gpte; on an access-rights fault, the rights that failed. */
  readonly pteAccess: number;
  /** Leaf page size in bytes (success only). */
  readonly pageSize?: number;
  /** Protection key of the leaf (64-bit modes). */
  readonly pkey: number;
  /** Why the walk failed ("" on success). */
  readonly reason: string;

  constructor(
    mode: PagingMode,
    gva: bigint,
    accessBits: number,
    result:
      | { fault: false; gpa: number; mmio?: true }
      | { fault: true; vector: 13 | 14; errorCode: number },
    w: GuestWalker,
    walked: boolean,
  ) {
    this.mode = mode;
    this.gva = gva;
    this.accessBits = accessBits;
    this.fault = result.fault;
    if (result.fault) {
      this.vector = result.vector;
      this.errorCode = result.errorCode;
    } else {
      this.gpa = result.gpa;
      if (result.mmio) this.mmio = true;
    }
    const levels: WalkTraceLevel[] = [];
    const gp = result.fault && result.vector === 13;
    if (walked && !gp) {
      const wide = mode !== "32-bit";
      const top = mode === "pae" ? 3 : w.maxLevel;
      for (let level = top; level >= w.level; level--) {
        const li = level - 1;
        const pdptr = mode === "pae" && level === 3;
        levels.push({
          level,
          name: pdptr ? "PDPTR" : NAME_BY_LEVEL[level]!,
          tableGfn: w.tableGfn[li]!,
          index: w.pteIndex[li]!,
          pteGpa: w.pteGpa[li]!,
          before:
            (BigInt(wide ? w.ptesHi[li]! : 0) << 32n) |
            BigInt(((w.aSet | w.dSet) >>> li) & 1 ? w.beforeLo[li]! : w.ptesLo[li]!),
          after: (BigInt(wide ? w.ptesHi[li]! : 0) << 32n) | BigInt(w.ptesLo[li]!),
          aSet: ((w.aSet >>> li) & 1) === 1,
          dSet: ((w.dSet >>> li) & 1) === 1,
          leaf: level === w.level,
          note: pdptr
            ? "PDPTE register (loaded at CR3 load)"
            : w.failure === WALK_NO_TABLE && level === w.level
              ? "table gfn outside memslots"
              : undefined,
        });
      }
    }
    this.levels = levels;
    this.pteAccess = walked && !gp ? w.pteAccess : 0;
    this.pkey = walked && !gp ? w.pkey : 0;
    if (!result.fault) this.pageSize = walked ? 2 ** w.pageShift : 4096;
    this.reason = gp
      ? "non-canonical address (#GP)"
      : result.fault
        ? `${FAILURE_REASON[w.failure]} at ${levels[levels.length - 1]?.name ?? "?"}`
        : "";
  }

  /** The `application/vnd.mmulab.walk+json` payload (schema definitions.walk). */
  toPayload(): WalkPayload {
    const wide = this.mode !== "32-bit";
    const levels: WalkLevel[] = this.levels.map((l) => {
      const lo = Number(l.before & 0xffffffffn);
      const hi = Number(l.before >> 32n);
      const out: WalkLevel = {
        level: l.level,
        name: l.name,
        tableGfn: hexNum(l.tableGfn),
        index: l.index,
        pteGpa: hexNum(l.pteGpa),
        before: `0x${l.before.toString(16)}`,
        after: `0x${l.after.toString(16)}`,
        flags: gpteFlags(hi, lo, l.level, l.leaf && (lo & 1) === 1, wide) as WalkLevel["flags"],
        leaf: l.leaf,
        aSet: l.aSet,
        dSet: l.dSet,
      };
      if (l.note !== undefined) out.note = l.note;
      return out;
    });
    const acc = this.accessBits;
    const payload: WalkPayload = {
      version: 1,
      kind: "walk",
      mode: this.mode,
      gva: `0x${this.gva.toString(16)}`,
      access: {
        write: (acc & PFERR_WRITE_MASK) !== 0,
        user: (acc & PFERR_USER_MASK) !== 0,
        fetch: (acc & PFERR_FETCH_MASK) !== 0,
      },
      indexBits: this.indexBits(),
      levels,
      result: this.fault
        ? {
            fault: true,
            vector: this.vector!,
            errorCode: this.errorCode!,
            errorBits: errorBitsOf(this.errorCode!),
            reason: this.reason,
          }
        : {
            fault: false,
            gpa: hexNum(this.gpa!),
            pageSize: this.pageSize as 4096,
            ...(this.mmio ? { mmio: true } : {}),
          },
    };
    return payload;
  }

  private indexBits(): IndexBits[] {
    const out: IndexBits[] = [];
    const g = this.gva;
    const field = (hi: number, lo: number) =>
      Number((g >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n));
    const leafLevel =
      !this.fault && this.levels.length > 0 ? this.levels[this.levels.length - 1]!.level : 1;
    if (this.mode === "none") return [{ name: "offset", hi: 31, lo: 0, value: field(31, 0) }];
    if (this.mode === "32-bit") {
      out.push({ name: "PD", hi: 31, lo: 22, value: field(31, 22) });
      if (leafLevel === 1) out.push({ name: "PT", hi: 21, lo: 12, value: field(21, 12) });
      const lo = leafLevel === 1 ? 11 : 21;
      out.push({ name: "offset", hi: lo, lo: 0, value: field(lo, 0) });
      return out;
    }
    const top = this.mode === "pae" ? 3 : this.mode === "4-level" ? 4 : 5;
    for (let level = top; level >= leafLevel; level--) {
      const lo = 12 + 9 * (level - 1);
      const hi = this.mode === "pae" && level === 3 ? 31 : lo + 8;
      out.push({
        name: this.mode === "pae" && level === 3 ? "PDPTR" : NAME_BY_LEVEL[level]!,
        hi,
        lo,
        value: field(hi, lo),
      });
    }
    const offHi = 12 + 9 * (leafLevel - 1) - 1;
    out.push({ name: "offset", hi: offHi, lo: 0, value: field(offHi, 0) });
    return out;
  }

  /** Jupyter display: the walk MIME bundle (rich payload + HTML + text). */
  [Symbol.for("Jupyter.display")](): MimeBundle {
    return walkBundle(this.toPayload());
  }

  /** Plain-text summary. */
  toString(): string {
    const head = this.fault
      ? `fault vector ${this.vector} error 0x${this.errorCode!.toString(16)} (${this.reason})`
      : `gpa ${hexNum(this.gpa!)}${this.mmio ? " (MMIO)" : ""}`;
    return `walk ${this.mode} gva 0x${this.gva.toString(16)}: ${head}`;
  }
}
