/**
 * A guest walk with its trace (`vcpu.walk()`): the contract result of the access plus, per level,
 * the table, index, entry gpa, the entry before and after the A/D write-back, and the final
 * rights; with a Jupyter display drawn by the walk renderer. Built on request from the walker's
 * state after the walk, never in hot loops.
 */
import { hexNum, u64Words } from "../arch/addr";
import {
  LEVEL_NAMES,
  PFERR_FETCH_MASK,
  PFERR_PK_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from "../arch/constants";
import { gpteFlags, type PagingMode, PT_PAGE_SIZE_MASK } from "../arch/guest_pte";
import { walkBundle } from "../display/bundle";
import type {
  ErrorBit,
  IndexBits,
  LevelName,
  MimeBundle,
  WalkLevel,
  WalkPayload,
} from "../display/types";
import { type GuestWalker, WALK_NO_TABLE } from "../mmu/paging_tmpl";

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

/**
 * Whether the last entry of a walk maps a page (so its D, G, PS and key bits mean something): a
 * present entry at level 1, or one with PS above. A walk can also end at a table entry: the 2007
 * walkers refuse an access at the first entry whose own rights forbid it, and any walker stops at
 * an entry with a reserved bit.
 */
function mapsPage(level: number, lo: number, last: boolean): boolean {
  return last && (lo & 1) === 1 && (level === 1 || (lo & PT_PAGE_SIZE_MASK) !== 0);
}

type Flags = WalkLevel["flags"];

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
  /** Leaf page size in bytes (success only; unknown when a shadow-paging access walked no guest table). */
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
          name: pdptr ? "PDPTR" : LEVEL_NAMES[level]!,
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
    // Without paging a page is 4 KiB; a shadow-paging access that KVM did not walk has no size.
    if (!result.fault && (walked || mode === "none"))
      this.pageSize = walked ? 2 ** w.pageShift : 4096;
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
      const { hi, lo } = u64Words(l.before);
      const out: WalkLevel = {
        level: l.level,
        name: l.name,
        tableGfn: hexNum(l.tableGfn),
        index: l.index,
        pteGpa: hexNum(l.pteGpa),
        before: `0x${l.before.toString(16)}`,
        after: `0x${l.after.toString(16)}`,
        flags: gpteFlags(hi, lo, l.level, mapsPage(l.level, lo, l.leaf), wide) as Flags,
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
            ...(this.pageSize !== undefined ? { pageSize: this.pageSize as 4096 } : {}),
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
        name: this.mode === "pae" && level === 3 ? "PDPTR" : LEVEL_NAMES[level]!,
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
