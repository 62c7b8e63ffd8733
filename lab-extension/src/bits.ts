/**
 * Decoding of 64-bit entry values for the "selected entry" panel, and address arithmetic for
 * search and ranges. Runs on user actions only (a click, a search), never per drawn row, so
 * BigInt is acceptable here; rendering rows only copies strings.
 *
 * Bit layouts (x86 paging and EPT entry formats, and KVM's spte.h; see core/src/mmu/spte.ts):
 * - guest and shadow trees: the x86 PTE (P, R/W, U/S, PWT, PCD, A, D, PS/PAT, G, ..., PKEY, XD);
 *   shadow sptes add KVM's software bits (host-writable 9, MMU-writable 10, MMU-present 11 —
 *   the non-EPT defaults of KVM v6.x).
 * - tdp trees: the EPT entry as core/src/mmu/spte.ts models it (R, W, X, memory type, ignore-PAT,
 *   PS, A, D, MMU-present 11, host-writable 57, MMU-writable 58).
 */

import type { Table, Tree } from "@mmulab/core/display";

/** One named field of an entry value. */
export interface BitField {
  /** Lowest bit. */
  lo: number;
  /** Highest bit (== lo for one bit). */
  hi: number;
  name: string;
  /** What it means, in words. */
  meaning: string;
}

const X86_PTE: BitField[] = [
  { lo: 0, hi: 0, name: "P", meaning: "present" },
  { lo: 1, hi: 1, name: "R/W", meaning: "writable" },
  { lo: 2, hi: 2, name: "U/S", meaning: "user accessible" },
  { lo: 3, hi: 3, name: "PWT", meaning: "write-through" },
  { lo: 4, hi: 4, name: "PCD", meaning: "cache disabled" },
  { lo: 5, hi: 5, name: "A", meaning: "accessed" },
  { lo: 6, hi: 6, name: "D", meaning: "dirty (leaf)" },
  { lo: 7, hi: 7, name: "PS/PAT", meaning: "page size (huge leaf above level 1) / PAT at level 1" },
  { lo: 8, hi: 8, name: "G", meaning: "global (leaf)" },
];
const X86_PTE_HIGH: BitField[] = [
  { lo: 59, hi: 62, name: "PKEY", meaning: "protection key" },
  { lo: 63, hi: 63, name: "XD", meaning: "execute disable" },
];
const SHADOW_SW: BitField[] = [
  { lo: 9, hi: 9, name: "HOST_W", meaning: "host-writable (software)" },
  { lo: 10, hi: 10, name: "MMU_W", meaning: "MMU-writable (software)" },
  { lo: 11, hi: 11, name: "MMU_P", meaning: "MMU-present (software)" },
];
const EPT: BitField[] = [
  { lo: 0, hi: 0, name: "R", meaning: "readable" },
  { lo: 1, hi: 1, name: "W", meaning: "writable" },
  { lo: 2, hi: 2, name: "X", meaning: "executable" },
  { lo: 3, hi: 5, name: "MT", meaning: "memory type (6 = WB)" },
  { lo: 6, hi: 6, name: "IPAT", meaning: "ignore guest PAT" },
  { lo: 7, hi: 7, name: "PS", meaning: "huge leaf" },
  { lo: 8, hi: 8, name: "A", meaning: "accessed" },
  { lo: 9, hi: 9, name: "D", meaning: "dirty" },
  { lo: 10, hi: 10, name: "XU", meaning: "user-mode execute" },
  { lo: 11, hi: 11, name: "MMU_P", meaning: "MMU-present (software)" },
  { lo: 52, hi: 53, name: "AD_TYPE", meaning: "A/D tracking type (0 = hardware A/D)" },
  { lo: 57, hi: 57, name: "HOST_W", meaning: "host-writable (software)" },
  { lo: 58, hi: 58, name: "MMU_W", meaning: "MMU-writable (software)" },
  { lo: 63, hi: 63, name: "SVE", meaning: "suppress #VE" },
];

/** A 64-bit value split into two unsigned 32-bit halves (JS bit operators keep 32 bits). */
export interface U64 {
  hi: number;
  lo: number;
}

/** Parses a schema hex string ("0x" + 1..16 hex digits); null when it is not one. */
export function parseHex64(s: string): U64 | null {
  if (!/^0x[0-9a-fA-F]{1,16}$/.test(s)) return null;
  const digits = s.slice(2).padStart(16, "0");
  return {
    hi: Number.parseInt(digits.slice(0, 8), 16) >>> 0,
    lo: Number.parseInt(digits.slice(8), 16) >>> 0,
  };
}

/** Reads bits lo..hi (inclusive, hi - lo < 32) of a split 64-bit value. */
export function bitsOf(v: U64, lo: number, hi: number): number {
  const width = hi - lo + 1;
  const big = (BigInt(v.hi) << 32n) | BigInt(v.lo);
  return Number((big >> BigInt(lo)) & ((1n << BigInt(width)) - 1n));
}

/** The fields of `tree.kind`'s entry format for a table of `format`. */
export function fieldsFor(tree: Pick<Tree, "kind" | "format">): BitField[] {
  if (tree.kind === "tdp") return EPT;
  const base = tree.format === "32-bit" ? X86_PTE : [...X86_PTE, ...X86_PTE_HIGH];
  return tree.kind === "shadow" ? [...X86_PTE.slice(0, 9), ...SHADOW_SW, ...X86_PTE_HIGH] : base;
}

/** One decoded field: name, value, meaning (only fields with a non-zero value are listed). */
export interface DecodedField {
  name: string;
  bits: string;
  value: number;
  meaning: string;
}

/** Decodes the non-zero named fields of `value` for a tree's format. */
export function decodeEntry(tree: Pick<Tree, "kind" | "format">, value: string): DecodedField[] {
  const v = parseHex64(value);
  if (v === null) return [];
  const out: DecodedField[] = [];
  for (const f of fieldsFor(tree)) {
    const x = bitsOf(v, f.lo, f.hi);
    if (x !== 0)
      out.push({
        name: f.name,
        bits: f.lo === f.hi ? `${f.lo}` : `${f.hi}:${f.lo}`,
        value: x,
        meaning: f.meaning,
      });
  }
  return out;
}

/** log2 of the bytes one entry of a table at `level` maps in `format` (10 index bits per level for 32-bit, else 9). */
export function entryShift(format: Tree["format"], level: number): number {
  return 12 + (format === "32-bit" ? 10 : 9) * (level - 1);
}

/** Formats a bigint as "0x..." lower-case hex. */
export function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** Human size of 2^shift bytes ("4 KiB", "2 MiB", "1 GiB", "512 GiB", ...). */
export function sizeName(shift: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  const u = Math.min(Math.floor(shift / 10), units.length - 1);
  return `${2 ** (shift - u * 10)} ${units[u]}`;
}

/**
 * First address an entry maps: its `va` if the payload has one, else computed from the table's
 * base address and the index (the table base is the parent entry's first address).
 */
export function entryBase(
  format: Tree["format"],
  table: Table,
  tableBase: bigint,
  index: number,
  va?: string,
): bigint {
  if (va !== undefined && /^0x[0-9a-f]{1,16}$/.test(va)) return BigInt(va);
  return tableBase + (BigInt(index) << BigInt(entryShift(format, table.level)));
}
