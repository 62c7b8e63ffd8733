/**
 * The guest page-table walker: KVM's `FNAME(walk_addr_generic)` (paging_tmpl.h) for 32-bit, PAE,
 * 4-level and 5-level guest tables, in the shape the 2007 rewrite gave it (seed 2007): the loop
 * carries only the current entry (`pte`) from level to level, derives the next table's gfn from
 * it, reads one entry per level and keeps no mapping across iterations.
 *
 * Modern semantics: rights are ANDed (NX inverted so it ANDs too) and checked once at the end
 * against the precomputed permission table; A (every level) and D (leaf, writes) are written back
 * with cmpxchg only after the whole walk succeeded.
 *
 * The 2007 walkers of the seed-2007 switch (`features.guestWalker: "w07a" | "w07p" | "w07b"`), as
 * paging_tmpl.h was in 2.6.21-2.6.25, are at the end of this file; they share the per-level pieces.
 * The vCPU picks its walk function once ({@link walkAddrFor}).
 *
 * The same walk serves the simulated CPU (the hardware walk under TDP and on the bare machine)
 * and, under shadow paging, KVM's own walker: what differs is where table frames come from, a
 * {@link TableSource} behind the {@link GuestTables} cache.
 *
 * Hot path: integers and typed arrays only; results land in a reusable {@link GuestWalker}.
 */

import {
  ACC_EXEC_MASK,
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
} from "../arch/constants";
import {
  PT_ACCESSED_MASK,
  PT_DIRTY_MASK,
  PT_PAGE_SIZE_MASK,
  PT_PRESENT_MASK,
  PT_USER_MASK,
  PT_WRITABLE_MASK,
} from "../arch/guest_pte";
import { MmuBugError } from "../errors";
import type { GuestMemory } from "../kvm/memory";
import type { WalkerCounters } from "../kvm/stats";
import {
  KVM_PAE_ROOT,
  type KvmMmu,
  type KvmPageFault,
  kvmMmuPageGetGfn,
  makeSpteMarkDirty,
  RET_PF_CONTINUE,
  RET_PF_EMULATE,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  ROLE_DIRECT,
  ROLE_HAS_4_BYTE_GPTE,
  roleAccess,
  roleLevel,
  roleQuadrant,
  type ShadowMmuOps,
  shadowRootFor,
} from "./mmu_internal";
import { EV } from "./mmutrace";
import { kvmGfnIsWriteTracked } from "./page_track";
import {
  GFN_SPAN,
  isMmioSpte,
  isShadowPresent,
  makeSpte,
  mmioSpteGfn,
  SPTE_HI_HOST_WRITABLE,
  SPTE_W,
  SpteOut,
  spteIndex,
  sptePfn,
} from "./spte";

/** `PTE_PREFETCH_NUM`. */
export const PTE_PREFETCH_NUM = 8;

/** Registers the walk's permission check reads (RFLAGS.AC for SMAP, PKRU for protection keys). */
export interface WalkRegs {
  readonly rflags: number;
  readonly pkru: number;
}

/**
 * Where guest page-table frames come from, behind {@link GuestTables}: the CPU's (through EPT
 * under TDP, straight over the memslots on the bare machine) or KVM's (`kvm_vcpu_read_guest_page`
 * under shadow paging).
 */
export interface TableSource {
  /**
   * Make table frame `gfn` readable for the walker and load it into entry `c` of `t`
   * (with {@link GuestTables.set}). Returns false when no memslot backs the frame
   * (the walk fails like KVM's: a not-present #PF). The walker's table accesses are W|U accesses,
   * as KVM's `nested_access` (A/D may be written); under TDP they may take EPT violations.
   */
  fillTable(t: GuestTables, gfn: number, c: number): boolean;
  /**
   * Before an A/D write-back into table frame `gfn` that was loaded without write permission:
   * make it writable if the hardware can (a stage-2 write, which may take an EPT violation).
   * False when it cannot (a read-only slot): the bits stay as they are.
   */
  tableWritable(gfn: number): boolean;
  /** `kvm_vcpu_mark_page_dirty` for an A/D write-back into table frame `gfn` (or nothing). */
  markTableDirty(gfn: number): void;
  /** The 2.6.23–25 walker's `kvm_mmu_pte_write` after it set D in a gpte (or nothing). */
  notifyPteWrite(gpa: number, bytes: number): void;
}

/** Entries of {@link GuestTables} (direct-mapped by the low bits of the table gfn). */
export const GUEST_TABLES_SIZE = 4096;
const GUEST_TABLES_MASK = GUEST_TABLES_SIZE - 1;
/** Words of a {@link GuestTables} entry (four, the last unused: an entry is 16 bytes). */
export const E_KEY = 0;
export const E_WORD = 1;
export const E_WRITABLE = 2;

/**
 * The walker's view of guest page tables: a direct-mapped cache, table gfn → where the frame's
 * words are in the memory arena, in front of a {@link TableSource}. An entry is chosen by the
 * gfn's low 12 bits and keyed by the rest (`gfn >> 12`, below 2^28 for 52-bit addresses), which
 * the walk computes from the gpte's two halves in integer operations. The owner drops every entry ({@link invalidate}) whenever a
 * cached frame may have moved or lost its rights (a memslot change; under TDP any spte change);
 * a frame without backing is never kept. So a hit gives exactly what the source would: this is a
 * simulator accelerator, not a model of a TLB or of the paging-structure caches (the guest walk
 * still reads every level's entry).
 */
export class GuestTables {
  /**
   * The entries, four words each, so that one entry is one cache line's quarter: the key
   * ({@link E_KEY}: table gfn >> 12, or -1 when empty), the arena index of the frame's word 0 ({@link E_WORD}, see `GuestMemory.frameWord`) and whether
   * the walker may write A/D into it ({@link E_WRITABLE}: its slot is not read-only). An entry
   * is named by the index of its first word.
   */
  readonly entries: Int32Array = new Int32Array(GUEST_TABLES_SIZE * 4);
  /** Entries filled since the last {@link invalidate} (so that it empties only those). */
  private readonly filled: Int32Array = new Int32Array(GUEST_TABLES_SIZE);
  private nFilled = 0;
  readonly source: TableSource;
  readonly regs: WalkRegs;
  /** The memory whose arena the words index. */
  readonly memory: GuestMemory;
  /** The words of a frame without backing (read as zeros, never written through). */
  private readonly zeros = new Uint32Array(1024);
  /** After {@link lookup}: the array the entry's words are in (the arena, or zeros). */
  words: Uint32Array;

  constructor(source: TableSource, regs: WalkRegs, memory: GuestMemory) {
    this.source = source;
    this.regs = regs;
    this.memory = memory;
    this.words = memory.arena;
    for (let c = 0; c < this.entries.length; c += 4) this.entries[c + E_KEY] = -1;
  }

  /**
   * Entry holding table frame `gfn`, filled from the source on a miss, or -1 when no memslot
   * backs it; {@link words} is where its words are.
   */
  lookup(gfn: number): number {
    const key = Math.floor(gfn / 4096);
    const c = (gfn - key * 4096) << 2;
    const e = this.entries;
    this.words = this.memory.arena;
    if (e[c + E_KEY] === key) return c;
    if (!this.source.fillTable(this, gfn, c)) return -1;
    if (e[c + E_KEY] === -1) this.words = this.zeros;
    return c;
  }

  /**
   * Store a frame in entry `c` (for sources): `word` is its index in the arena, or -1 when the
   * frame has no backing — it reads as zeros for this walk and is not kept (once written it gets
   * a place of its own).
   */
  set(c: number, gfn: number, word: number, writable: boolean): void {
    const e = this.entries;
    e[c + E_WRITABLE] = writable ? 1 : 0;
    if (word < 0) {
      e[c + E_KEY] = -1;
      e[c + E_WORD] = 0;
      return;
    }
    if (e[c + E_KEY] === -1 && this.nFilled < GUEST_TABLES_SIZE) this.filled[this.nFilled++] = c;
    e[c + E_KEY] = Math.floor(gfn / 4096);
    e[c + E_WORD] = word;
  }

  /** Drop every entry. */
  invalidate(): void {
    const e = this.entries;
    if (this.nFilled >= GUEST_TABLES_SIZE) for (let c = 0; c < e.length; c += 4) e[c + E_KEY] = -1;
    else for (let i = 0; i < this.nFilled; i++) e[this.filled[i]! + E_KEY] = -1;
    this.nFilled = 0;
  }
}

/**
 * @internal Record, for level index `li`, where entry `c`'s table is and whether it may be
 * written, and read the gpte at byte `offset` of it into `w.ptesLo/ptesHi` (after
 * {@link GuestTables.lookup}, which set `t.words`).
 */
export function takeGpte(
  w: GuestWalker,
  t: GuestTables,
  li: number,
  c: number,
  offset: number,
  wide: boolean,
): void {
  const e = t.entries;
  const word = e[c + E_WORD]!;
  const words = t.words;
  w.tableWord[li] = e[c + E_KEY] === -1 ? -1 : word;
  w.pteWritable[li] = e[c + E_WRITABLE]!;
  w.ptesLo[li] = words[word + (offset >>> 2)]!;
  w.ptesHi[li] = wide ? words[word + (offset >>> 2) + 1]! : 0;
}

/** Result/state of one walk (`struct guest_walker`); reused across walks. */
export class GuestWalker implements WalkerCounters {
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
  /** Where each table's words are (arena index of word 0; -1: no backing, zeros), and whether
   *  the walker may write it (tables in a read-only slot get no A/D). */
  readonly tableWord: Int32Array = new Int32Array(5);
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
   * Of `gpteAdWrites`, the D bits the 2.6.21-2.6.24 walker ("w07a") left to the step after the
   * walk that builds the spte (`FNAME(fix_write_pf)`, later `FNAME(set_pte_common)`).
   */
  gpteDWritesAfterWalk = 0;
  /**
   * Most guest-table mappings held across walker levels (`mappings_held_max`): 1 for "w07a" and
   * "w07p", which kept the current table kmapped from one level to the next; 0 for "w07b", which
   * maps a table only to touch one gpte (42bf3f0a), and "modern", which maps none (it copies
   * gptes from the host's user mapping).
   */
  mappingsHeldMax = 0;
  /** PAE: the PDPTE register the walk started from (set by walkStart). */
  rootLo = 0;
  rootHi = 0;
  /** The per-level arrays above hold this walk's levels (see `recordLevels`). */
  recorded = false;
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

/**
 * Guest walker flavours of the seed-2007 switch `features.guestWalker`: `FNAME(walk_addr_generic)`
 * and the 2.6.21-2.6.25 walkers of paging_tmpl.h (documented in era/features.ts).
 */
export const GUEST_WALKER_FLAVOURS = ["modern", "w07b", "w07a", "w07p"] as const;
/**
 * "modern": `walk_addr_generic`; "w07b": 42bf3f0a as in 2.6.25; "w07a": the 2.6.21-2.6.24
 * walker; "w07p": the parent of 42bf3f0a.
 */
export type GuestWalkerFlavour = (typeof GUEST_WALKER_FLAVOURS)[number];

/**
 * A walk function (`walkAddrGeneric`, `walkAddrW07a`, `walkAddrW07p`, `walkAddrW07b`). The vCPU
 * picks one when it is created, so the modern loop carries no flavour branches.
 */
export type WalkAddrFn = (
  w: GuestWalker,
  mmu: KvmMmu,
  t: GuestTables,
  hi: number,
  lo: number,
  access: number,
) => boolean;

/**
 * Walk the guest tables for gva (`hi`:`lo`) and access `access` (PFERR_W/U/F, plus
 * PFERR_IMPLICIT_ACCESS). Returns true on success (w.gfn, w.gpa, w.pteAccess set) or false with
 * w.errorCode set. A/D bits are written back only on success.
 *
 * The level loop keeps the walk's per-level state in locals: what a trace or an A/D write-back
 * needs is recorded by {@link recordLevels}, which reads the same levels again, only when needed.
 */
export function walkAddrGeneric(
  w: GuestWalker,
  mmu: KvmMmu,
  t: GuestTables,
  hi: number,
  lo: number,
  access: number,
): boolean {
  let level = mmu.rootLevel;
  let pteLo: number;
  let pteHi: number;
  w.recorded = false;
  if (level === 3) {
    level = walkStart(w, mmu, lo);
    if (level === 0) return walkError(w, mmu, 0, access);
    pteLo = w.rootLo | 0;
    pteHi = w.rootHi | 0;
  } else {
    w.failure = WALK_OK;
    w.maxLevel = level;
    pteLo = mmu.cr3Lo | 0;
    pteHi = mmu.cr3Hi | 0;
  }
  const wide = mmu.rootLevel !== 2;

  // Effective rights so far, as ACC bits: exec (= P xor NX) | W | U.
  let pteAccess = 7;
  let accessedAll = PT_ACCESSED_MASK;
  const entries = t.entries;
  let arena = t.memory.arena;
  const rsvd = mmu.rsvd;
  let reads = 0;
  const largeOk = wide || mmu.pse;
  // The level loop inlines the per-level steps (reading the gpte, the present and reserved-bit
  // checks, FNAME(is_last_gpte)): as calls they cost the modern walk ~5 % (none 4K translateGva,
  // core/bench/walker.bench.mjs).
  // Everything stays int32 (gptes as signed halves), so that V8 keeps the loop in integer
  // registers: the table's cache entry and key come from the gpte's halves (address bits 23:12,
  // and 51:24 as `gfn >> 12`), and a hit costs one compare. A miss leaves the level loop to
  // fill the entry and comes back to the same level: with no call on its way round, V8 keeps
  // what it knows of the arrays from one level to the next.
  for (;;) {
    let missC = -1;
    for (;;) {
      let offset: number;
      let key: number;
      if (wide) {
        offset = pt64Index(hi, lo, level) << 1;
        key = (pteLo >>> 24) | ((pteHi & 0xfffff) << 8);
      } else {
        offset = level === 2 ? lo >>> 22 : (lo >>> 12) & 1023;
        key = pteLo >>> 24;
      }
      const c = ((pteLo >>> 12) & GUEST_TABLES_MASK) << 2;
      if (entries[c + E_KEY] !== key) {
        missC = c;
        break;
      }
      const wi = entries[c + E_WORD]! + offset;
      pteLo = arena[wi]! | 0;
      pteHi = wide ? arena[wi + 1]! | 0 : 0;
      reads++;

      // NX inverted into the P position (bit 0 = exec) so all rights combine by AND.
      pteAccess &= (pteLo & 7) ^ (pteHi >>> 31);
      if ((pteLo & PT_PRESENT_MASK) === 0) {
        w.gpteReads += reads;
        return failWalk(w, mmu, level, WALK_NOT_PRESENT, access);
      }
      const ri = (((pteLo >>> 7) & 1) * 5 + level - 1) << 1;
      if (((pteLo & rsvd[ri]!) | (pteHi & rsvd[ri + 1]!)) !== 0) {
        w.gpteReads += reads;
        return failWalk(w, mmu, level, WALK_RSVD, access);
      }
      accessedAll &= pteLo;
      if (level === 1 || ((pteLo & PT_PAGE_SIZE_MASK) !== 0 && largeOk)) break;
      level--;
    }
    if (missC < 0) break;
    const tableGfn = wide ? (pteHi & 0xfffff) * 1048576 + (pteLo >>> 12) : pteLo >>> 12;
    if (!t.source.fillTable(t, tableGfn, missC)) {
      w.gpteReads += reads;
      w.level = level;
      w.failure = WALK_NO_TABLE;
      return walkError(w, mmu, 0, access);
    }
    // The fill may have backed nothing (the walk reads zeros) or grown the arena.
    if (entries[missC + E_KEY] === -1) {
      reads++;
      w.gpteReads += reads;
      return failWalk(w, mmu, level, WALK_NOT_PRESENT, access);
    }
    arena = t.memory.arena;
  }
  w.gpteReads += reads;
  if (!finishWalk(w, mmu, t, level, wide, pteLo, pteHi, lo, access, pteAccess)) return false;
  if (accessedAll === 0 || ((access & PFERR_WRITE_MASK) !== 0 && (pteLo & PT_DIRTY_MASK) === 0)) {
    recordLevels(w, mmu, t, hi, lo);
    updateAccessedDirtyBits(w, t, (access & PFERR_WRITE_MASK) !== 0);
  }
  return true;
}

/**
 * Record the per-level state of the walk just made — table gfn, index and entry gpa, where each
 * table's words are, the entries as read, the parents' rights — by reading its levels again
 * (without counting the reads again). The modern walk calls it before writing A/D; a trace
 * (`vcpu.walk()`) and shadow paging's `FNAME(fetch)` call it after a walk. Nothing changes
 * guest memory in between, so it sees what the walk saw. Runs once per walk (`w.recorded`).
 */
export function recordLevels(
  w: GuestWalker,
  mmu: KvmMmu,
  t: GuestTables,
  hi: number,
  lo: number,
): void {
  if (w.recorded) return;
  w.recorded = true;
  w.aSet = 0;
  w.dSet = 0;
  const wide = mmu.rootLevel !== 2;
  // The walk starts from CR3, or for PAE from the PDPTE register walkStart loaded.
  let pteLo = mmu.rootLevel === 3 ? w.rootLo : mmu.cr3Lo;
  let pteHi = mmu.rootLevel === 3 ? w.rootHi : mmu.cr3Hi;
  let pteAccess = 7;
  // PAE: the PDPTE register (level 3) was recorded by walkStart; it carries no rights.
  const top = mmu.rootLevel === 3 ? Math.min(w.maxLevel, 2) : w.maxLevel;
  for (let level = top; level >= w.level; level--) {
    const li = level - 1;
    w.ptAccess[li] = pteAccess;
    if (!locateGpte(w, t, level, hi, lo, wide, pteHi, pteLo)) return;
    pteLo = w.ptesLo[li]!;
    pteHi = w.ptesHi[li]!;
    pteAccess &= (pteLo & 7) ^ (pteHi >>> 31);
  }
}

/**
 * @internal Start of a walk: reset the per-walk state and load the entry the loop starts from
 * into `w.rootLo/rootHi` (CR3, or for PAE the PDPTE register of the gva's quarter). Returns the
 * first level to read from memory, or 0 when a PAE PDPTE is not present (failure recorded).
 */
export function walkStart(w: GuestWalker, mmu: KvmMmu, lo: number): number {
  w.recorded = false;
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
 * @internal Find the gpte of `level` in the table the parent entry (`pteHi`:`pteLo`) points to
 * and record it: table gfn, entry gpa and index, where the table's words are, the entry itself
 * (`takeGpte`). Returns false, with the entry recorded as zero, when no memslot backs the table.
 * Counts nothing: {@link readGpte} counts a walk's reads, {@link recordLevels} re-reads.
 */
function locateGpte(
  w: GuestWalker,
  t: GuestTables,
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
  const c = t.lookup(tableGfn);
  if (c < 0) {
    w.ptesLo[li] = w.ptesHi[li] = 0;
    return false;
  }
  takeGpte(w, t, li, c, offset, wide);
  return true;
}

/**
 * @internal Read the gpte of `level` from the table the parent entry (`pteHi`:`pteLo`) points
 * to: records table gfn, entry gpa and index, takes the table from `t` (a W|U access, as KVM's
 * `nested_access`, since A/D may be written) and stores the entry in `w.ptesLo/ptesHi`. Returns
 * false (failure recorded) when no memslot backs the table.
 */
export function readGpte(
  w: GuestWalker,
  t: GuestTables,
  level: number,
  hi: number,
  lo: number,
  wide: boolean,
  pteHi: number,
  pteLo: number,
): boolean {
  if (!locateGpte(w, t, level, hi, lo, wide, pteHi, pteLo)) {
    // No memslot behind the table: KVM's walker fails with a not-present #PF.
    w.level = level;
    w.failure = WALK_NO_TABLE;
    return false;
  }
  w.gpteReads++;
  return true;
}

/** @internal Fail the walk at `level` for `failure` (not present / reserved / access rights). */
export function failWalk(
  w: GuestWalker,
  mmu: KvmMmu,
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
 * @internal `permission_fault`: 0 when the access is allowed on a leaf with rights `pteAccess`
 * and protection key `pkey`, else the error code's PRESENT (and PK) bits. The permission table
 * covers W/U/F with CR0.WP, SMEP and SMAP (RFLAGS.AC exempts explicit supervisor accesses).
 */
export function permissionFault(
  mmu: KvmMmu,
  regs: WalkRegs,
  access: number,
  pteAccess: number,
  pkey: number,
): number {
  const notSmap = (regs.rflags & X86_EFLAGS_AC) !== 0 && (access & PFERR_IMPLICIT_ACCESS) === 0;
  const pfec = access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK);
  const errcode =
    ((mmu.permissions[(pfec | (notSmap ? PFERR_RSVD_MASK : 0)) >>> 1]! >>> pteAccess) & 1) *
    PFERR_PRESENT_MASK;
  // The protection-key part apart: small enough, the check above is inlined into the walk.
  if (mmu.pkruMask !== 0 && pkeyFault(mmu, regs, pfec, pteAccess, pkey))
    return PFERR_PRESENT_MASK | PFERR_PK_MASK;
  return errcode;
}

/** The PKRU part of `permission_fault` (`pkru_mask`, `update_pkru_bitmask`). */
function pkeyFault(
  mmu: KvmMmu,
  regs: WalkRegs,
  pfec: number,
  pteAccess: number,
  pkey: number,
): boolean {
  const pkruBits = (regs.pkru >>> (pkey * 2)) & 3;
  const off = (pfec & ~1) + ((pteAccess & ACC_USER_MASK) << 1);
  return (pkruBits & (mmu.pkruMask >>> off)) !== 0;
}

/**
 * @internal `gpte_to_gfn_lvl` for a large leaf (2 MiB, 4 MiB, 1 GiB): the page's frame plus
 * the gva's offset inside the page; sets `w.pageShift`.
 */
function largeLeafGfn(
  w: GuestWalker,
  mmu: KvmMmu,
  level: number,
  wide: boolean,
  pteLo: number,
  pteHi: number,
  lo: number,
): number {
  if (!wide) {
    // 4 MiB page; PSE-36 puts address bits 35:32 in entry bits 16:13.
    w.pageShift = 22;
    const gfn = (pteLo >>> 22) * 1024 + ((lo >>> 12) & 1023);
    return mmu.pse36 ? gfn + ((pteLo >>> 13) & 15) * 1048576 : gfn;
  }
  const g = (pteHi & 0xfffff) * 1048576 + (pteLo >>> 12);
  const span = level === 2 ? 512 : 262144;
  w.pageShift = level === 2 ? 21 : 30;
  return g - (g % span) + ((lo >>> 12) & (span - 1));
}

/**
 * @internal End of a walk that reached its leaf at `level`: `permission_fault`, the leaf gfn and
 * gpa, `protect_clean_gpte`. Returns false (error code set) on an access-rights fault. Writes no
 * A/D bits.
 */
export function finishWalk(
  w: GuestWalker,
  mmu: KvmMmu,
  t: GuestTables,
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
  const errcode = permissionFault(mmu, t.regs, access, pteAccess, pkey);
  if (errcode !== 0) {
    w.pteAccess = pteAccess;
    w.failure = WALK_ACCESS;
    return walkError(w, mmu, errcode, access);
  }
  let gfn: number;
  if (level === 1) {
    gfn = wide ? (pteHi & 0xfffff) * 1048576 + (pteLo >>> 12) : pteLo >>> 12;
    w.pageShift = 12;
  } else {
    gfn = largeLeafGfn(w, mmu, level, wide, pteLo, pteHi, lo);
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
function updateAccessedDirtyBits(w: GuestWalker, t: GuestTables, write: boolean): void {
  for (let level = w.maxLevel; level >= w.level; level--) {
    const li = level - 1;
    const orig = w.ptesLo[li]!;
    let pte = orig | PT_ACCESSED_MASK;
    if (level === w.level && write) pte |= PT_DIRTY_MASK;
    pte >>>= 0;
    if (pte === orig) continue;
    // Tables in a read-only slot keep their A/D bits as they are (ROM page tables).
    if (w.pteWritable[li] === 0 && !t.source.tableWritable(w.tableGfn[li]!)) continue;
    // cmpxchg: a gpte changed under the walk is left alone (KVM would retry the walk).
    const arena = t.memory.arena;
    const i = w.tableWord[li]! + ((w.pteGpa[li]! % 4096) >>> 2);
    if (arena[i] !== orig) continue;
    arena[i] = pte;
    recordAdWrite(w, t, li, orig, pte);
  }
}

/**
 * @internal Account one gpte A/D write-back at level index `li` (old low word `orig`, new
 * `pte`): counter, dirty log of the table page, trace bits. `beforeLo` keeps the value the walk
 * first read, so an entry written twice in one walk (old walkers: A, then D) shows both.
 */
export function recordAdWrite(
  w: GuestWalker,
  t: GuestTables,
  li: number,
  orig: number,
  pte: number,
): void {
  w.gpteAdWrites++;
  t.source.markTableDirty(w.tableGfn[li]!);
  if ((((w.aSet | w.dSet) >>> li) & 1) === 0) w.beforeLo[li] = orig;
  w.ptesLo[li] = pte;
  if ((pte & PT_ACCESSED_MASK) !== (orig & PT_ACCESSED_MASK)) w.aSet |= 1 << li;
  if ((pte & PT_DIRTY_MASK) !== (orig & PT_DIRTY_MASK)) w.dSet |= 1 << li;
}

/** @internal Error exit: W and U of the access; FETCH if a fetch and (EFER.NX or CR4.SMEP). */
export function walkError(w: GuestWalker, mmu: KvmMmu, errcode: number, access: number): false {
  errcode |= access & (PFERR_WRITE_MASK | PFERR_USER_MASK);
  if ((access & PFERR_FETCH_MASK) !== 0 && (mmu.nx || mmu.smep)) errcode |= PFERR_FETCH_MASK;
  w.errorCode = errcode;
  return false;
}

// ---- the 2007 walkers (seed 2007) ---------------------------------------------------------------

/*
 * `FNAME(walk_addr)` of drivers/kvm/paging_tmpl.h around the 2007 rewrite ("KVM: MMU: Simplify
 * page table walker", commit 42bf3f0a, merged for 2.6.25), for
 * `createVm({ features: { guestWalker: "w07a" | "w07p" | "w07b" } })`. Three states of it:
 * - "w07a", as released in 2.6.21-2.6.24: the current table stays kmapped from one level to the
 *   next (2.6.21/22 even handed it to the caller, `FNAME(release_walker)`); the leaf's D is set
 *   after the walk, in the step that builds the spte (`FNAME(fix_write_pf)` up to 2.6.22,
 *   `FNAME(set_pte_common)` in 2.6.23/24 after commit 97a0a01e);
 * - "w07p", the parent of 42bf3f0a: e3c5e7ec ("Move guest pte dirty bit management to the guest
 *   pagetable walker") and c4fcc272 ("When updating the dirty bit, inform the mmu about it") set
 *   D in the walker (`FNAME(update_dirty_bit)`) and call `kvm_mmu_pte_write`; the table is still
 *   mapped across levels;
 * - "w07b", 42bf3f0a as released in 2.6.25: the loop carries only the last gpte and maps a table
 *   only to read or write one gpte; D at the end of the walk, as in "w07p".
 *
 * What the three do differently from the modern walker above:
 * - each entry is checked as it is read, in the old order (not present; write && !RW when user
 *   or CR0.WP; user && !US; fetch && NX when EFER.NX), so a walk stops at the first entry that
 *   refuses the access: an access error even where a lower entry is not present;
 * - no reserved-bit check (KVM had none until 82725b20, 2.6.31): reserved bits are ignored, PS
 *   ends a walk only in a PDE (no 1 GiB pages), and NX means nothing without EFER.NX
 *   (`FNAME(gpte_access)` of 2.6.25);
 * - A is set in each entry as soon as it passed its checks, so a walk that fails further down
 *   leaves A on the levels above;
 * - the error code takes W, U and F as the exit reported them (the `err:` label), F even without
 *   EFER.NX: under VMX the guest ran with the host's EFER.NX (vmx.c `load_transition_efer`
 *   switches only SCE), so the CPU reported F on every fetch fault.
 *
 * Kept as in the modern walker: 5-level tables and the checks that postdate 2007 (SMEP, SMAP,
 * protection keys), made once at the end. Writes are plain stores; 2.6.25 used cmpxchg
 * (b3e4e63f) and restarted the walk on a lost race, which a deterministic run never loses.
 */

/** The level loop of the 2007 walkers (made once per kind at load, not per walk). */
const walkW07 =
  (holdsMapping: boolean): WalkAddrFn =>
  (w, mmu, t, hi, lo, access) => {
    let level = walkStart(w, mmu, lo);
    if (level === 0) return walkErrorW07(w, 0, access);
    // These walkers record every level as they go (readGpte).
    w.recorded = true;
    const wide = mmu.rootLevel !== 2;
    const write = (access & PFERR_WRITE_MASK) !== 0;
    const user = (access & PFERR_USER_MASK) !== 0;
    const fetch = (access & PFERR_FETCH_MASK) !== 0;
    let pteLo = w.rootLo;
    let pteHi = w.rootHi;
    let pteAccess = 7;
    for (;;) {
      const ptAccess = pteAccess;
      if (!readGpte(w, t, level, hi, lo, wide, pteHi, pteLo)) return walkErrorW07(w, 0, access);
      // The table stays mapped until the next level's is: one mapping held across levels.
      if (holdsMapping) w.mappingsHeldMax = 1;
      const li = level - 1;
      pteLo = w.ptesLo[li]!;
      pteHi = w.ptesHi[li]!;
      // FNAME(gpte_access) of 2.6.25: NX counts only with EFER.NX.
      const nx = mmu.nx ? pteHi >>> 31 : 0;
      pteAccess = ptAccess & ((pteLo & 7) ^ nx);
      if ((pteLo & PT_PRESENT_MASK) === 0) return failW07(w, level, WALK_NOT_PRESENT, access);
      if (
        (write && (pteLo & PT_WRITABLE_MASK) === 0 && (user || mmu.wp)) ||
        (user && (pteLo & PT_USER_MASK) === 0) ||
        (fetch && nx !== 0)
      ) {
        w.pteAccess = pteAccess;
        return failW07(w, level, WALK_ACCESS, access);
      }
      w.ptAccess[li] = ptAccess;
      if ((pteLo & PT_ACCESSED_MASK) === 0 && setGpteBits(w, t, li, PT_ACCESSED_MASK))
        pteLo = w.ptesLo[li]!;
      // A leaf at level 1, or a PDE with PS (64-bit and PAE tables, or 32-bit with CR4.PSE).
      if (level === 1 || (level === 2 && (pteLo & PT_PAGE_SIZE_MASK) !== 0 && (wide || mmu.pse)))
        break;
      level--;
    }
    if (finishWalk(w, mmu, t, level, wide, pteLo, pteHi, lo, access, pteAccess)) return true;
    // SMEP, SMAP or a protection key refused it: the error code as the 2007 exit path made it.
    w.errorCode |= access & PFERR_FETCH_MASK;
    return false;
  };
const walkLoopMapped = walkW07(true);
const walkLoopUnmapped = walkW07(false);

/** Fail a 2007 walk at `level`: error code 0 (not present) or P (access rights), then {@link walkErrorW07}. */
function failW07(w: GuestWalker, level: number, failure: number, access: number): false {
  w.level = level;
  w.failure = failure;
  return walkErrorW07(w, failure === WALK_ACCESS ? PFERR_PRESENT_MASK : 0, access);
}

/** The 2007 `err:` label: W, U and F of the access, F whatever EFER.NX says. */
function walkErrorW07(w: GuestWalker, errcode: number, access: number): false {
  w.errorCode = errcode | (access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK));
  return false;
}

/**
 * Set D in the leaf at the end of a write walk and tell the MMU (`FNAME(update_dirty_bit)` of
 * c4fcc272, inlined into the walker by 42bf3f0a: `kvm_mmu_pte_write`).
 */
function dirtyAtEndOfWalk(w: GuestWalker, mmu: KvmMmu, t: GuestTables, access: number): void {
  if ((access & PFERR_WRITE_MASK) !== 0 && setGpteBits(w, t, w.level - 1, PT_DIRTY_MASK))
    t.source.notifyPteWrite(w.pteGpa[w.level - 1]!, mmu.rootLevel === 2 ? 4 : 8);
}

/** 2.6.21-2.6.24 walker: A per level while walking, table mapped across levels, D after the walk. */
export const walkAddrW07a: WalkAddrFn = (w, mmu, t, hi, lo, access) => {
  if (!walkLoopMapped(w, mmu, t, hi, lo, access)) return false;
  // FNAME(fix_write_pf) / FNAME(set_pte_common) time: the spte is built and the gpte gets D.
  if ((access & PFERR_WRITE_MASK) !== 0 && setGpteBits(w, t, w.level - 1, PT_DIRTY_MASK))
    w.gpteDWritesAfterWalk++;
  return true;
};

/** The parent of 42bf3f0a: A per level, table mapped across levels, D at the end of the walk. */
export const walkAddrW07p: WalkAddrFn = (w, mmu, t, hi, lo, access) => {
  if (!walkLoopMapped(w, mmu, t, hi, lo, access)) return false;
  dirtyAtEndOfWalk(w, mmu, t, access);
  return true;
};

/** 42bf3f0a (2.6.25): A per level, a table mapped only to touch one gpte, D at the end of the walk. */
export const walkAddrW07b: WalkAddrFn = (w, mmu, t, hi, lo, access) => {
  if (!walkLoopUnmapped(w, mmu, t, hi, lo, access)) return false;
  dirtyAtEndOfWalk(w, mmu, t, access);
  return true;
};

/**
 * Set `bits` in the gpte at level index `li` with a plain store (map, write, unmap) and account
 * it. Returns false when nothing was written: the bits were set already, or the table is in a
 * read-only slot (ROM page tables keep their A/D bits, as in the modern walker).
 */
function setGpteBits(w: GuestWalker, t: GuestTables, li: number, bits: number): boolean {
  const orig = w.ptesLo[li]!;
  const pte = (orig | bits) >>> 0;
  if (pte === orig || (w.pteWritable[li] === 0 && !t.source.tableWritable(w.tableGfn[li]!)))
    return false;
  t.memory.arena[w.tableWord[li]! + ((w.pteGpa[li]! % 4096) >>> 2)] = pte;
  recordAdWrite(w, t, li, orig, pte);
  return true;
}

/** The walk function of a `features.guestWalker` flavour (chosen once per vCPU). */
export function walkAddrFor(flavour: GuestWalkerFlavour): WalkAddrFn {
  switch (flavour) {
    case "w07a":
      return walkAddrW07a;
    case "w07p":
      return walkAddrW07p;
    case "w07b":
      return walkAddrW07b;
    default:
      return walkAddrGeneric;
  }
}

// ---- shadow paging: FNAME(page_fault), FNAME(fetch), FNAME(sync_spte), FNAME(pte_prefetch) ------

/** What `FNAME(page_fault)` needs of the faulting vCPU: its walker, table frames and walk. */
export interface ShadowWalkCtx {
  readonly w: GuestWalker;
  readonly t: GuestTables;
  readonly walkAddr: WalkAddrFn;
}

/** `gw->prefetch_ptes`: the aligned group of 8 level-1 gptes `FNAME(gpte_changed)` read. */
const prefetchLo = new Uint32Array(PTE_PREFETCH_NUM);
const prefetchHi = new Uint32Array(PTE_PREFETCH_NUM);
const gpteScratch = new Uint32Array(2);

/** `FNAME(gpte_access)`: ACC bits of a gpte (exec = !NX, W, U). */
function gpteAccess(lo: number, hi: number): number {
  return ((lo & 6) | 1) ^ (hi >>> 31);
}

/**
 * `FNAME(page_fault)`: the #PF of a shadow-paging vCPU at gva `fault.addr`. The guest walk
 * (A/D written as the walk does); a failed walk sends the #PF to the guest (`fault.guestFault`,
 * RET_PF_RETRY). A write that hits a write-tracked table while the spte was present is emulated
 * at once (`page_fault_handle_page_track`, clearing flooding counts on the writer's own path).
 * A supervisor write with CR0.WP=0 to a read-only gpte gets W without U (and without X under
 * SMEP): the "two sptes for one gpte" scheme. Then `FNAME(fetch)`.
 */
export function fnamePageFault(
  ops: ShadowMmuOps,
  mmu: KvmMmu,
  fault: KvmPageFault,
  ctx: ShadowWalkCtx,
  access: number,
): number {
  const w = ctx.w;
  const hi = fault.addrHi;
  const lo = fault.addrLo;
  const ok = ctx.walkAddr(w, mmu, ctx.t, hi, lo, access) === true;
  if (ops.core.trace.on) traceWalk(ops, mmu, w, ctx.t, hi, lo, access, ok);
  if (!ok) {
    fault.guestFault = true;
    return retry(fault, "guest #PF injected");
  }
  recordLevels(w, mmu, ctx.t, hi, lo);
  const gfn = w.gfn;
  fault.gfn = gfn;
  fault.maxLevel = w.level;
  fault.slot = ops.core.slots.gfnToSlot(gfn) ?? null;
  const gvaPfn = hi * 1048576 + (lo >>> 12);
  if (fault.present && fault.write && !fault.rsvd && kvmGfnIsWriteTracked(fault.slot, gfn)) {
    ops.clearFloodPath(mmu, gvaPfn);
    return RET_PF_EMULATE;
  }
  const r = ops.faultinPfn(fault);
  if (r !== RET_PF_CONTINUE) return r;
  let pteAccess = w.pteAccess;
  if (
    fault.write &&
    (pteAccess & ACC_WRITE_MASK) === 0 &&
    !mmu.wp &&
    !fault.user &&
    fault.slot !== null
  ) {
    pteAccess = (pteAccess | ACC_WRITE_MASK) & ~ACC_USER_MASK;
    if (mmu.smep) pteAccess &= ~ACC_EXEC_MASK;
  }
  ops.makeMmuPagesAvailable();
  return fnameFetch(ops, mmu, fault, w, ctx.t, gvaPfn, pteAccess);
}

/**
 * The walker's tracepoints, in the kernel's order (`FNAME(walk_addr_generic)`):
 * `kvm_mmu_pagetable_walk`, one `kvm_mmu_paging_element` per level read (with PAE, the PDPTE
 * register first), and `kvm_mmu_walker_error` when it failed.
 */
function traceWalk(
  ops: ShadowMmuOps,
  mmu: KvmMmu,
  w: GuestWalker,
  t: GuestTables,
  hi: number,
  lo: number,
  access: number,
  ok: boolean,
): void {
  const tr = ops.core.trace;
  tr.emit(EV.walk, lo, hi, access);
  recordLevels(w, mmu, t, hi, lo);
  // PAE: the PDPTE register is traced at level 3 before its present check.
  if (mmu.rootLevel === 3) tr.emit(EV.element, w.rootLo, w.rootHi, 3);
  const top = mmu.rootLevel === 3 ? Math.min(w.maxLevel, 2) : w.maxLevel;
  // Each gpte as the loop read it, before the A/D write-back at the end of the walk.
  const changed = w.aSet | w.dSet;
  for (let level = top; level >= w.level && level >= 1; level--) {
    const li = level - 1;
    const pteLo = ((changed >>> li) & 1) !== 0 ? w.beforeLo[li]! : w.ptesLo[li]!;
    tr.emit(EV.element, pteLo, w.ptesHi[li]!, level);
  }
  if (!ok) tr.emit(EV.walkerError, w.errorCode);
}

/** RET_PF_RETRY, with the reason the trace shows. */
function retry(fault: KvmPageFault, reason: string): number {
  fault.retryReason = reason;
  return RET_PF_RETRY;
}

/**
 * `FNAME(fetch)`: down the shadow tables along the gva. Above the guest leaf level each missing
 * entry gets the indirect page for the guest table of the next level (`role.access` = the
 * parents' rights), synced first if it has unsync children, linked only if the gpte is still
 * what the walk read (`FNAME(gpte_changed)`, else RET_PF_RETRY). Then the mapping level
 * (`kvm_mmu_hugepage_adjust`) and, for a guest large page mapped with smaller sptes, direct
 * pages keyed by the rounded gfn and the leaf's access. Then `mmu_set_spte` and the prefetch.
 */
function fnameFetch(
  ops: ShadowMmuOps,
  mmu: KvmMmu,
  fault: KvmPageFault,
  w: GuestWalker,
  t: GuestTables,
  gvaPfn: number,
  pteAccess: number,
): number {
  const store = ops.store;
  const top = mmu.rootLevel === 3 ? 2 : mmu.rootLevel;
  if (gpteChanged(mmu, w, t, top)) return retry(fault, "gpte changed");
  // A dummy root whose CR3 frame became visible meanwhile: load a real root and retry.
  if (mmu.root < 0 && mmu.root !== KVM_PAE_ROOT) {
    mmu.root = -1;
    return retry(fault, "root reload");
  }
  let sp = shadowRootFor(mmu, gvaPfn);
  // A pae_root entry left invalid because its PDPTE named a gfn outside every memslot when the
  // root was loaded (mmu_alloc_shadow_roots), made visible since: KVM's shadow walk starts at
  // level 0 and FNAME(fetch) WARNs (`it.level != fault->goal_level`), failing KVM_RUN with
  // -EFAULT, until the guest loads CR3 again.
  if (sp < 0)
    throw new MmuBugError(
      "FNAME(fetch)",
      `gva 0x${(fault.addrHi * 4294967296 + fault.addrLo).toString(16)}: pae_root[${(gvaPfn / 262144) & 3}] has no shadow page (its PDPTE named a gfn outside every memslot when the root was loaded); KVM_RUN fails with -EFAULT until the guest loads CR3 again`,
    );
  let level = roleLevel(store.role[sp]!);
  let idx = 0;
  for (;;) {
    idx = spteIndex(gvaPfn, level);
    ops.clearSpFlood(sp);
    if (level === w.level) break;
    const tableGfn = w.tableGfn[level - 2]!;
    const child = ops.getChildSp(mmu, sp, idx, tableGfn, false, w.ptAccess[level - 2]!);
    if (child >= 0 && store.unsyncChildren[child]! > 0) ops.syncChildren(mmu, child);
    if (gpteChanged(mmu, w, t, level - 1)) return retry(fault, "gpte changed");
    if (child >= 0) ops.linkShadowPage(sp, idx, level, child);
    // KVM also notes `write_fault_to_shadow_pgtable` here, read only by the emulator's
    // retry decision (x86.c, `reexecute_instruction`), which the simulator does not model.
    const spt = store.spt[sp]!;
    sp = store.pfnToSp(sptePfn(spt[idx * 2]!, spt[idx * 2 + 1]!));
    level--;
  }
  ops.hugepageAdjust(fault);
  const gfn = fault.gfn;
  // FNAME(fetch): trace_kvm_mmu_spte_requested after the mapping level is chosen.
  if (ops.core.trace.on) ops.core.trace.emit(EV.spteRequested, gfn, fault.pfn, fault.goalLevel);
  let base = gfn;
  for (;;) {
    idx = spteIndex(gvaPfn, level);
    base = gfn - (gfn % GFN_SPAN[level]!);
    if (level === fault.goalLevel) break;
    ops.validateDirectSpte(sp, idx, level, pteAccess);
    const child = ops.getChildSp(mmu, sp, idx, base, true, pteAccess);
    if (child >= 0) ops.linkShadowPage(sp, idx, level, child);
    const spt = store.spt[sp]!;
    sp = store.pfnToSp(sptePfn(spt[idx * 2]!, spt[idx * 2 + 1]!));
    level--;
  }
  fault.mappedLeaf = true;
  const ret = ops.mmuSetSpte(sp, idx, level, base, fault.pfn, pteAccess, fault.slot, fault);
  if (ret === RET_PF_SPURIOUS) return ret;
  ptePrefetch(ops, mmu, w, sp, idx, level);
  return ret;
}

/**
 * `FNAME(gpte_changed)`: re-read the gpte the walk found at `level` (for level 1 the aligned
 * group of 8 around it, kept for the prefetch) and compare. The walk recorded where each table's
 * words are (`w.tableWord`), so this reads guest memory there, as KVM re-reads it.
 */
function gpteChanged(mmu: KvmMmu, w: GuestWalker, t: GuestTables, level: number): boolean {
  const li = level - 1;
  const word = w.tableWord[li]!;
  if (word < 0) return true;
  const arena = t.memory.arena;
  const off = w.pteGpa[li]! % 4096;
  if (mmu.rootLevel !== 2) {
    if (level === 1) {
      const first = word + ((off >>> 2) & ~(2 * PTE_PREFETCH_NUM - 1));
      for (let i = 0; i < PTE_PREFETCH_NUM; i++) {
        prefetchLo[i] = arena[first + 2 * i]!;
        prefetchHi[i] = arena[first + 2 * i + 1]!;
      }
    }
    return (
      arena[word + (off >>> 2)] !== w.ptesLo[li] || arena[word + (off >>> 2) + 1] !== w.ptesHi[li]
    );
  }
  if (level === 1) {
    const first = word + ((off >>> 2) & ~(PTE_PREFETCH_NUM - 1));
    for (let i = 0; i < PTE_PREFETCH_NUM; i++) {
      prefetchLo[i] = arena[first + i]!;
      prefetchHi[i] = 0;
    }
  }
  return arena[word + (off >>> 2)] !== w.ptesLo[li];
}

/**
 * `FNAME(prefetch_invalid_gpte)`: a gpte with reserved bits, not present or not accessed is not
 * prefetched, and the spte it would fill is dropped.
 */
function prefetchInvalidGpte(
  ops: ShadowMmuOps,
  mmu: KvmMmu,
  sp: number,
  i: number,
  lo: number,
  hi: number,
): boolean {
  const ri = ((lo >>> 7) & 1) * 10;
  const rsvd = ((lo & mmu.rsvd[ri]!) | (hi & mmu.rsvd[ri + 1]!)) !== 0;
  if (!rsvd && (lo & PT_PRESENT_MASK) !== 0 && (lo & PT_ACCESSED_MASK) !== 0) return false;
  const spt = ops.store.spt[sp]!;
  if (isShadowPresent(spt[i * 2]!)) ops.dropSpte(sp, i, 1);
  else if (spt[i * 2] !== 0 || spt[i * 2 + 1] !== 0)
    ops.updateSpte(sp, i, 1, kvmMmuPageGetGfn(ops.store, sp, i, false), 0, 0);
  return true;
}

/**
 * `FNAME(pte_prefetch)`: after a 4K fault, map the other non-present entries of the aligned
 * group of 8 from the gptes `FNAME(gpte_changed)` read (`FNAME(prefetch_gpte)`: present, A set,
 * no reserved bit; writable only if not dirty-logged, never in a read-only slot); stop at the
 * first that cannot be. Direct pages use `__direct_pte_prefetch`.
 */
function ptePrefetch(
  ops: ShadowMmuOps,
  mmu: KvmMmu,
  w: GuestWalker,
  sp: number,
  idx: number,
  level: number,
): void {
  if (level > 1 || !ops.prefetch) return;
  const store = ops.store;
  if ((store.role[sp]! & ROLE_DIRECT) !== 0) {
    ops.directPtePrefetch(sp, idx);
    return;
  }
  if (w.level !== 1) return;
  const spt = store.spt[sp]!;
  const first = idx & ~(PTE_PREFETCH_NUM - 1);
  const spAccess = roleAccess(store.role[sp]!);
  for (let k = 0; k < PTE_PREFETCH_NUM; k++) {
    const i = first + k;
    if (i === idx || isShadowPresent(spt[i * 2]!)) continue;
    const lo = prefetchLo[k]!;
    const hi = prefetchHi[k]!;
    if (prefetchInvalidGpte(ops, mmu, sp, i, lo, hi)) return;
    const gfn = mmu.rootLevel === 2 ? lo >>> 12 : (hi & 0xfffff) * 1048576 + (lo >>> 12);
    let access = spAccess & gpteAccess(lo, hi);
    if ((lo & PT_DIRTY_MASK) === 0) access &= ~ACC_WRITE_MASK;
    const slot = ops.core.slots.gfnToSlot(gfn);
    if (slot === undefined || slot.readonly) return;
    if ((access & ACC_WRITE_MASK) !== 0 && (slot.flags & 1) !== 0) return; // KVM_MEM_LOG_DIRTY_PAGES
    ops.mmuSetSpte(sp, i, 1, gfn, slot.baseHvfn + (gfn - slot.baseGfn), access, slot, null);
  }
}

/**
 * `FNAME(sync_spte)`: bring entry `i` of unsync level-1 page `sp` in line with its gpte. Returns
 * −1 when the gpte cannot be read (the caller zaps), 1 when a flush is needed (an invalid gpte
 * or another gfn drops the spte; changed rights rebuild it with `make_spte(prefetch, !can_unsync)`),
 * 0 when nothing changed.
 */
export function fnameSyncSpte(ops: ShadowMmuOps, mmu: KvmMmu, sp: number, i: number): number {
  const store = ops.store;
  const wide = (store.role[sp]! & ROLE_HAS_4_BYTE_GPTE) === 0;
  const g = gpteScratch;
  // FNAME(get_level1_sp_gpa): a page shadowing 4-byte gptes covers half a guest table.
  const gpa = wide
    ? store.gfn[sp]! * 4096 + i * 8
    : store.gfn[sp]! * 4096 + (roleQuadrant(store.role[sp]!) * 512 + i) * 4;
  if (!ops.core.readGuestPte(gpa, wide, g)) return -1;
  const lo = g[0]!;
  const hi = g[1]!;
  if (prefetchInvalidGpte(ops, mmu, sp, i, lo, hi)) return 1;
  const gfn = wide ? (hi & 0xfffff) * 1048576 + (lo >>> 12) : lo >>> 12;
  let access = roleAccess(store.role[sp]!) & gpteAccess(lo, hi);
  if ((lo & PT_DIRTY_MASK) === 0) access &= ~ACC_WRITE_MASK;
  const spt = store.spt[sp]!;
  const oldLo = spt[i * 2]!;
  const oldHi = spt[i * 2 + 1]!;
  if (isMmioSpte(oldLo)) {
    // sync_mmio_spte: another gfn clears it; the same gfn keeps it.
    if (gfn !== mmioSpteGfn(oldLo, oldHi)) ops.updateSpte(sp, i, 1, gfn, 0, 0);
    return 0;
  }
  if (gfn !== kvmMmuPageGetGfn(store, sp, i, false)) {
    ops.dropSpte(sp, i, 1);
    return 1;
  }
  const acc = store.access[sp]!;
  if (acc[i] === access) return 0;
  acc[i] = access;
  const slot = ops.core.slots.gfnToSlot(gfn);
  if (slot === undefined) {
    ops.dropSpte(sp, i, 1);
    return 1;
  }
  const hostWritable = (oldHi & SPTE_HI_HOST_WRITABLE) !== 0;
  const writable =
    (access & ACC_WRITE_MASK) === 0 ||
    !hostWritable ||
    (oldLo & SPTE_W) !== 0 ||
    ops.mmuTryToUnsyncPages(slot, gfn, false, true);
  makeSpte(spteOut, 1, access, sptePfn(oldLo, oldHi), oldLo, true, hostWritable, writable);
  makeSpteMarkDirty(ops.core, slot, gfn, spteOut.lo);
  return ops.updateSpte(sp, i, 1, gfn, spteOut.lo, spteOut.hi) ? 1 : 0;
}
const spteOut = new SpteOut();
