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
  const writeFault = access & PFERR_WRITE_MASK;
  const userFault = access & PFERR_USER_MASK;
  const fetchFault = access & PFERR_FETCH_MASK;
  const mem = env.memory;
  let errcode = 0;
  let level = mmu.rootLevel;
  const wide = level !== 2;
  let pteLo: number;
  let pteHi: number;
  w.aSet = 0;
  w.dSet = 0;
  w.failure = WALK_OK;

  if (level === 3) {
    // PAE: the PDPTE comes from the registers loaded at CR3 load, not from memory.
    const i = lo >>> 30;
    pteLo = mmu.pdptrLo[i]!;
    pteHi = mmu.pdptrHi[i]!;
    w.tableGfn[2] = Math.floor(mmu.pdptGpa / 4096);
    w.pteGpa[2] = mmu.pdptGpa + i * 8;
    w.pteIndex[2] = i;
    w.ptesLo[2] = pteLo;
    w.ptesHi[2] = pteHi;
    if ((pteLo & PT_PRESENT_MASK) === 0) {
      w.level = 3;
      w.maxLevel = 3;
      w.failure = WALK_NOT_PRESENT;
      return walkError(w, mmu, errcode, writeFault, userFault, fetchFault);
    }
    level = 2;
  } else {
    pteLo = mmu.cr3Lo;
    pteHi = mmu.cr3Hi;
  }
  w.maxLevel = level;

  // Effective rights so far, as ACC bits: exec (= P xor NX) | W | U.
  let pteAccess = 7;
  let ptAccess = 7;
  let accessedAll = PT_ACCESSED_MASK;
  const nestedAccess = PFERR_WRITE_MASK | PFERR_USER_MASK;
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
    const hvfn = env.translate(tableGfn * 4096, nestedAccess, false);
    if (hvfn < 0) {
      // No memslot behind the table: KVM's walker fails with a not-present #PF.
      w.ptesLo[li] = w.ptesHi[li] = 0;
      w.level = level;
      w.failure = WALK_NO_TABLE;
      return walkError(w, mmu, errcode, writeFault, userFault, fetchFault);
    }
    w.tableHvfn[li] = hvfn;
    w.pteWritable[li] = env.writable ? 1 : 0;
    const wi = mem.wordIndex(hvfn);
    if (wi < 0) {
      pteLo = 0; // never-written frame: zeros
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
    if ((pteLo & PT_PRESENT_MASK) === 0) {
      w.level = level;
      w.failure = WALK_NOT_PRESENT;
      return walkError(w, mmu, errcode, writeFault, userFault, fetchFault);
    }
    const ri = ((pteLo >>> 7) & 1) * 5 + li;
    if (((pteLo & mmu.rsvdLo[ri]!) | (pteHi & mmu.rsvdHi[ri]!)) !== 0) {
      w.level = level;
      w.failure = WALK_RSVD;
      errcode = PFERR_RSVD_MASK | PFERR_PRESENT_MASK;
      return walkError(w, mmu, errcode, writeFault, userFault, fetchFault);
    }
    w.ptAccess[li] = ptAccess;
    accessedAll &= pteLo;
    // FNAME(is_last_gpte): level 1 ends; bit 7 ends where it is a page-size bit (in 32-bit
    // paging only with CR4.PSE; at PML4/PML5 it was a reserved-bit fault above).
    if (level === 1) break;
    if ((pteLo & PT_PAGE_SIZE_MASK) !== 0 && (wide || mmu.pse)) break;
    level--;
  }
  w.level = level;
  const pkey = wide ? (pteHi >>> 27) & 15 : 0;
  w.pkey = pkey;

  // permission_fault()
  const notSmap = (env.rflags & X86_EFLAGS_AC) !== 0 && (access & PFERR_IMPLICIT_ACCESS) === 0;
  const pfec = access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK);
  let fault = (mmu.permissions[(pfec | (notSmap ? PFERR_RSVD_MASK : 0)) >>> 1]! >>> pteAccess) & 1;
  errcode = PFERR_PRESENT_MASK;
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
    return walkError(w, mmu, errcode, writeFault, userFault, fetchFault);
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
  if (writeFault === 0 && (pteLo & PT_DIRTY_MASK) === 0) pteAccess &= ~ACC_WRITE_MASK;
  w.pteAccess = pteAccess;

  if (accessedAll === 0 || (writeFault !== 0 && (pteLo & PT_DIRTY_MASK) === 0)) {
    updateAccessedDirtyBits(w, env, writeFault !== 0);
  }
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
    w.gpteAdWrites++;
    env.markPageDirty(w.tableGfn[li]!);
    w.beforeLo[li] = orig;
    w.ptesLo[li] = pte;
    if ((pte & PT_ACCESSED_MASK) !== (orig & PT_ACCESSED_MASK)) w.aSet |= 1 << li;
    if ((pte & PT_DIRTY_MASK) !== (orig & PT_DIRTY_MASK)) w.dSet |= 1 << li;
  }
}

function walkError(
  w: GuestWalker,
  mmu: GuestMmuContext,
  errcode: number,
  writeFault: number,
  userFault: number,
  fetchFault: number,
): false {
  errcode |= writeFault | userFault;
  if (fetchFault !== 0 && (mmu.nx || mmu.smep)) errcode |= PFERR_FETCH_MASK;
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
