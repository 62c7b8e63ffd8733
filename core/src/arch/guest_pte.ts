/**
 * Guest page-table entry formats (x86 architecture; KVM names from `mmu.h`/`paging_tmpl.h`).
 * This file owns every guest-PTE bit; nothing else spells raw bit numbers.
 *
 * A 64-bit entry (PAE, 4-/5-level) is held as two uint32 halves:
 *
 *   lo: bit 0 P | 1 R/W | 2 U/S | 3 PWT | 4 PCD | 5 A | 6 D | 7 PS (PAT in a 4K PTE) | 8 G
 *       | 9..11 avail | 12 PAT of a 2M/1G leaf | 12..31 address bits 31:12
 *   hi: bits 0..19 = address bits 51:32 | 20..26 avail | 27..30 protection key (bits 62:59)
 *       | 31 XD/NX (bit 63)
 *
 * A 32-bit entry (non-PAE) is one uint32: the same low 9 bits, address 31:12 (4K / table) or
 * 31:22 (4 MiB PDE) with PSE-36 address bits 35:32 in bits 16:13.
 */
import {
  EFER_LMA,
  PT32_ROOT_LEVEL,
  PT32E_ROOT_LEVEL,
  X86_CR0_PG,
  X86_CR4_LA57,
  X86_CR4_PAE,
} from "./constants";

export const PT_PRESENT_MASK = 1 << 0;
export const PT_WRITABLE_MASK = 1 << 1;
export const PT_USER_MASK = 1 << 2;
export const PT_PWT_MASK = 1 << 3;
export const PT_PCD_MASK = 1 << 4;
export const PT_ACCESSED_MASK = 1 << 5;
export const PT_DIRTY_MASK = 1 << 6;
/** Bit 7: PS in a PDE/PDPTE (and PAT in a 4K PTE). */
export const PT_PAGE_SIZE_MASK = 1 << 7;
export const PT_GLOBAL_MASK = 1 << 8;
/** PAT bit of a large leaf (bit 12). */
export const PT_DIR_PAT_MASK = 1 << 12;
/** XD/NX: bit 63 = bit 31 of the high word. */
export const PT64_NX_HI = 1 << 31;
/** Protection key: bits 62:59 = bits 30:27 of the high word. */
export const PT64_PKEY_SHIFT_HI = 27;
/** Address bits 51:32 live in the low 20 bits of the high word. */
export const PT64_ADDR_HI_MASK = 0xfffff;
/** PSE-36: address bits 35:32 of a 4 MiB PDE in bits 16:13 (`PT32_DIR_PSE36_SHIFT`, size 4). */
export const PT32_DIR_PSE36_SHIFT = 13;
export const PT32_DIR_PSE36_MASK = 0xf << 13;

/** Protection key of a 64-bit leaf, from its high word. */
export function gptePkey(hi: number): number {
  return (hi >>> PT64_PKEY_SHIFT_HI) & 15;
}

/** gfn named by a 64-bit entry's address field (bits 51:12). */
export function gpte64Gfn(hi: number, lo: number): number {
  return (hi & PT64_ADDR_HI_MASK) * 1048576 + (lo >>> 12);
}

/** A mask of bits [s, e] (inclusive, 0..63) as halves, like KVM's `rsvd_bits(s, e)`. */
export function rsvdBits(s: number, e: number): { lo: number; hi: number } {
  let lo = 0;
  let hi = 0;
  for (let b = s; b <= e; b++) {
    if (b < 32) lo |= 1 << b;
    else hi |= 1 << (b - 32);
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** Paging modes of the guest walker. */
export type PagingMode = "none" | "32-bit" | "pae" | "4-level" | "5-level";

/** CPU features that change the guest PTE format (guest CPUID). */
export interface GuestPteFeatures {
  /** CPUID.80000001H:EDX.NX — EFER.NXE may be set. */
  nx: boolean;
  /** 1 GiB pages (CPUID.80000001H:EDX.Page1GB). */
  gbpages: boolean;
  /** PSE-36 (CPUID.1:EDX.PSE-36). */
  pse36: boolean;
}

/**
 * Reserved-bit masks per (bit 7, level), as `rsvd_bits_mask[bit7][level-1]` of KVM's
 * `__reset_rsvds_bits_mask`. Index = bit7 * 5 + (level - 1); lo and hi words separately.
 */
export interface RsvdMasks {
  lo: Uint32Array;
  hi: Uint32Array;
}

/**
 * Build the reserved-bit masks for a mode. `maxPhysAddrBits` = guest MAXPHYADDR; `nx` = EFER.NXE;
 * `pse` = CR4.PSE (32-bit paging only).
 *
 * 32-bit paging follows KVM: with PSE-36 the 4 MiB PDE reserves bits 21:17 (KVM caps PSE-36 at 36
 * address bits), without it bits 21:13.
 */
export function reservedMasks(
  mode: PagingMode,
  maxPhysAddrBits: number,
  nx: boolean,
  pse: boolean,
  f: GuestPteFeatures,
): RsvdMasks {
  const lo = new Uint32Array(10);
  const hi = new Uint32Array(10);
  const set = (bit7: number, level: number, ...parts: { lo: number; hi: number }[]) => {
    let l = 0;
    let h = 0;
    for (const p of parts) {
      l |= p.lo;
      h |= p.hi;
    }
    lo[bit7 * 5 + level - 1] = l >>> 0;
    hi[bit7 * 5 + level - 1] = h >>> 0;
  };
  const none = { lo: 0, hi: 0 };
  if (mode === "32-bit") {
    if (pse) set(1, 2, f.pse36 ? rsvdBits(17, 21) : rsvdBits(13, 21));
    return { lo, hi };
  }
  if (mode === "none") return { lo, hi };
  const exb = nx ? none : rsvdBits(63, 63);
  const high = rsvdBits(maxPhysAddrBits, mode === "pae" ? 62 : 51);
  if (mode === "pae") {
    // PDPTEs are checked at load (pdptrReservedMask); inside the walk only PD and PT are read.
    set(0, 2, exb, high);
    set(0, 1, exb, high);
    set(1, 2, exb, high, rsvdBits(13, 20));
    set(1, 1, exb, high);
    return { lo, hi };
  }
  const ps = rsvdBits(7, 7);
  const gb = f.gbpages ? none : ps;
  set(0, 5, exb, high, ps);
  set(0, 4, exb, high, ps);
  set(0, 3, exb, high, gb);
  set(0, 2, exb, high);
  set(0, 1, exb, high);
  set(1, 5, exb, high, ps);
  set(1, 4, exb, high, ps);
  set(1, 3, exb, high, gb, rsvdBits(13, 29));
  set(1, 2, exb, high, rsvdBits(13, 20));
  set(1, 1, exb, high);
  return { lo, hi };
}

/**
 * Reserved bits of a PAE PDPTE (checked when CR3 is loaded, `load_pdptrs`): bits 2:1, 8:5 and
 * MAXPHYADDR..63.
 */
export function pdptrReservedMask(maxPhysAddrBits: number): { lo: number; hi: number } {
  const a = rsvdBits(1, 2);
  const b = rsvdBits(5, 8);
  const c = rsvdBits(maxPhysAddrBits, 63);
  return { lo: (a.lo | b.lo | c.lo) >>> 0, hi: (a.hi | b.hi | c.hi) >>> 0 };
}

/** The paging mode CR0.PG, CR4.PAE, EFER.LMA and CR4.LA57 select. */
export function pagingModeOf(cr0: number, cr4: number, efer: number): PagingMode {
  if ((cr0 & X86_CR0_PG) === 0) return "none";
  if ((cr4 & X86_CR4_PAE) === 0) return "32-bit";
  if ((efer & EFER_LMA) === 0) return "pae";
  return (cr4 & X86_CR4_LA57) !== 0 ? "5-level" : "4-level";
}

/** Root level of a paging mode (0 for paging off). */
export function rootLevelOf(mode: PagingMode): number {
  switch (mode) {
    case "32-bit":
      return PT32_ROOT_LEVEL;
    case "pae":
      return PT32E_ROOT_LEVEL;
    case "4-level":
      return 4;
    case "5-level":
      return 5;
    default:
      return 0;
  }
}

/** Decoded flag names of a guest entry for displays (schema `flag`). */
export function gpteFlags(
  hi: number,
  lo: number,
  level: number,
  leaf: boolean,
  wide: boolean,
): string[] {
  const out: string[] = [];
  if (lo & PT_PRESENT_MASK) out.push("present");
  if (lo & PT_WRITABLE_MASK) out.push("writable");
  if (lo & PT_USER_MASK) out.push("user");
  if (lo & PT_ACCESSED_MASK) out.push("accessed");
  if (leaf && lo & PT_DIRTY_MASK) out.push("dirty");
  if (wide && hi & PT64_NX_HI) out.push("nx");
  if (leaf && level > 1) out.push("huge");
  if (leaf && lo & PT_GLOBAL_MASK) out.push("global");
  if (wide && leaf && gptePkey(hi) !== 0) out.push("pkey");
  return out;
}
