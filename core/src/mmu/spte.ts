/**
 * The SPTE format — the one module that knows the bits of a shadow/TDP page-table entry
 * (KVM: arch/x86/kvm/mmu/spte.h, spte.c). Everybody else calls the predicates and makers here.
 *
 * Layout modelled: the modern EPT SPTE (Intel TDP, `kvm_mmu_set_ept_masks`, v6.x), A/D bits on.
 * A 64-bit spte is held as two uint32 words because JS bit operators keep 32 bits:
 *
 * ```
 *  lo word (spte bits 31..0)                         hi word (spte bits 63..32)
 *  bit  0  R    readable (also shadow_user_mask)     bits 0..19  pfn bits 20..39 (spte 32..51)
 *  bit  1  W    writable                             bits 20..21 A/D type (spte 52..53, 0 = A/D on)
 *  bit  2  X    executable (shadow_x_mask)           bit  25     Host-writable (spte 57)
 *  bits 3..5 memory type (WB = 6 for RAM)            bit  26     MMU-writable  (spte 58)
 *  bit  6  ignore-PAT                                bit  31     suppress-#VE  (spte 63, unused)
 *  bit  7  leaf at level >= 2 ("PS")
 *  bit  8  A    accessed   bit 9  D  dirty
 *  bit 11  MMU-present (software: "backed by memory", MMIO sptes lack it)
 *  bits 12..31 pfn bits 0..19
 * ```
 * MMIO sptes (EPT misconfig): `(lo & 7) == 6` (W|X without R: an EPT misconfiguration), gfn in the
 * address field, memslot generation bits 0..7 in spte bits 3..10 and bits 8..18 in spte 52..62.
 *
 * pfn is a number (< 2^40); index arithmetic never uses BigInt.
 */
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from "../arch/constants";

/** R: EPT read permission; KVM uses it as `shadow_user_mask` (VMX reads report USER). */
export const SPTE_R = 1 << 0;
/** W: hardware writable (`PT_WRITABLE_MASK`). */
export const SPTE_W = 1 << 1;
/** X: EPT execute permission (`shadow_x_mask`). */
export const SPTE_X = 1 << 2;
/** EPT memory type WB (6) in bits 3..5 plus ignore-PAT (bit 6): what `vmx_get_mt_mask` gives RAM. */
export const SPTE_MT_WB_IPAT = (6 << 3) | (1 << 6);
/** Bit 7: leaf at level >= 2. */
export const SPTE_PS = 1 << 7;
/** Bit 8: accessed (`shadow_accessed_mask` with EPT A/D). */
export const SPTE_A = 1 << 8;
/** Bit 9: dirty (`shadow_dirty_mask` with EPT A/D). */
export const SPTE_D = 1 << 9;
/** Bit 11: MMU-present (`SPTE_MMU_PRESENT_MASK`), chosen because EPT ignores bit 11. */
export const SPTE_MMU_PRESENT = 1 << 11;
/** Hi-word bit 25 = spte bit 57: Host-writable (`EPT_SPTE_HOST_WRITABLE`). */
export const SPTE_HI_HOST_WRITABLE = 1 << 25;
/** Hi-word bit 26 = spte bit 58: MMU-writable (`EPT_SPTE_MMU_WRITABLE`). */
export const SPTE_HI_MMU_WRITABLE = 1 << 26;
/** Hi-word bits 20..21 = spte 52..53: A/D type (0 = enabled). */
export const SPTE_HI_AD_TYPE_MASK = 3 << 20;
/** Hi-word bits 0..19 hold pfn bits 20..39. */
export const SPTE_HI_PFN_MASK = 0xfffff;
/** Low 3 bits under which MMIO sptes are recognised (`shadow_mmio_mask` = RWX). */
export const SPTE_MMIO_MASK = 7;
/** `shadow_mmio_value` for EPT: W|X, no R — an EPT misconfiguration (`VMX_EPT_MISCONFIG_WX_VALUE`). */
export const SPTE_MMIO_VALUE = SPTE_W | SPTE_X;
/** MMIO generation: 19 bits, 8 low in spte 3..10, 11 high in spte 52..62. */
export const MMIO_SPTE_GEN_BITS = 19;
export const MMIO_SPTE_GEN_MASK = (1 << MMIO_SPTE_GEN_BITS) - 1;
/** `SPTE_ENT_PER_PAGE`. */
export const SPTE_ENT_PER_PAGE = 512;
/** Words per spt page (512 sptes × 2 uint32). */
export const SPT_WORDS = 1024;

const TWO_20 = 1048576;
const LO_FLAG_MASK = 0xfff;

// Static checks: no two named fields overlap within a word.
// Stryker disable StringLiteral: messages of a check that cannot fail with these constants
{
  const lo = [SPTE_R, SPTE_W, SPTE_X, SPTE_MT_WB_IPAT, SPTE_PS, SPTE_A, SPTE_D, SPTE_MMU_PRESENT];
  let seen = 0;
  for (const m of lo) {
    if ((seen & m) !== 0) throw new Error(`spte.ts: lo-word fields overlap at 0x${m.toString(16)}`);
    seen |= m;
  }
  if ((seen & ~LO_FLAG_MASK) !== 0) throw new Error("spte.ts: lo flags spill into the pfn field");
  const hi = [SPTE_HI_PFN_MASK, SPTE_HI_AD_TYPE_MASK, SPTE_HI_HOST_WRITABLE, SPTE_HI_MMU_WRITABLE];
  seen = 0;
  for (const m of hi) {
    if ((seen & m) !== 0) throw new Error(`spte.ts: hi-word fields overlap at 0x${m.toString(16)}`);
    seen |= m;
  }
}
// Stryker restore StringLiteral

/** Index of the entry for `gfn` in a table at `level` (`SPTE_INDEX`), without BigInt.
 *  Division by a power of two is exact, and `& 511` truncates then keeps the low 9 bits. */
export function spteIndex(gfn: number, level: number): number {
  return (gfn / GFN_SPAN[level]) & 511;
}

/** Pages covered by one entry at level l (`KVM_PAGES_PER_HPAGE`): 1, 512, 262144, 2^27, 2^36. */
export const GFN_SPAN: readonly number[] = [0, 1, 512, 262144, 134217728, 68719476736];

/** True for any spte that is backed by memory: leaves and non-leaves (`is_shadow_present_pte`). */
export function isShadowPresent(lo: number): boolean {
  return (lo & SPTE_MMU_PRESENT) !== 0;
}

/** `is_last_spte`: level 1 entries are always leaves; above that the PS bit decides. */
export function isLastSpte(lo: number, level: number): boolean {
  return level === 1 || (lo & SPTE_PS) !== 0;
}

/** `is_mmio_spte`: the low RWX bits hold the misconfig value (and there is no MMU-present bit). */
export function isMmioSpte(lo: number): boolean {
  return (lo & SPTE_MMIO_MASK) === SPTE_MMIO_VALUE && (lo & SPTE_MMU_PRESENT) === 0;
}

/** Host-writable bit. */
export function isHostWritable(hi: number): boolean {
  return (hi & SPTE_HI_HOST_WRITABLE) !== 0;
}

/** `spte_to_pfn`: address bits 12..51 as a number. */
export function sptePfn(lo: number, hi: number): number {
  return (hi & SPTE_HI_PFN_MASK) * TWO_20 + (lo >>> 12);
}

/** Low word of the address field for `pfn`. */
export function pfnLo(pfn: number): number {
  return ((pfn % TWO_20) << 12) >>> 0;
}

/** Hi-word bits of the address field for `pfn` (pfn < 2^40). */
export function pfnHi(pfn: number): number {
  return Math.floor(pfn / TWO_20) & SPTE_HI_PFN_MASK;
}

/**
 * Result cell for `makeSpte`/`makeMmioSpte`: callers keep one instance and reuse it, so the
 * fault path allocates nothing.
 */
export class SpteOut {
  lo = 0;
  hi = 0;
  /** make_spte's return value: W was refused because the gfn is write-protected. */
  wrprot = false;
  /**
   * Bits the MMU's sptes may carry: all, or all but A/D when its pages' role has ad_disabled
   * (EPT without A/D bits: shadow_accessed_mask and shadow_dirty_mask are 0,
   * kvm_mmu_set_ept_masks).
   */
  adKeep = -1;
}

/**
 * `make_spte` (spte.c) for a direct TDP leaf.
 * @param level 1..3
 * @param pteAccess ACC_* bits granted
 * @param pfn host frame (already aligned to the level)
 * @param oldLo old spte low word (for the "was writable" short-cut)
 * @param prefetch true for speculative sptes: A left clear
 * @param hostWritable false for read-only slots / read-only host mappings
 * @param canWrite false if `mmu_try_to_unsync_pages` would refuse (gfn write-tracked)
 */
export function makeSpte(
  out: SpteOut,
  level: number,
  pteAccess: number,
  pfn: number,
  oldLo: number,
  prefetch: boolean,
  hostWritable: boolean,
  canWrite: boolean,
): void {
  // Written as few expressions (not a chain of ifs) so that it stays small enough for the JIT
  // to inline it into the fault path.
  const access = hostWritable ? pteAccess : pteAccess & ~ACC_WRITE_MASK;
  const lo =
    SPTE_MMU_PRESENT |
    SPTE_MT_WB_IPAT |
    (prefetch ? 0 : SPTE_A) |
    ((access & ACC_EXEC_MASK) !== 0 ? SPTE_X : 0) |
    ((access & ACC_USER_MASK) !== 0 ? SPTE_R : 0) |
    (level > 1 ? SPTE_PS : 0) |
    pfnLo(pfn);
  const hi = pfnHi(pfn) | (hostWritable ? SPTE_HI_HOST_WRITABLE : 0);
  // If the old spte was already writable KVM skips the unsync check and does not add D;
  // otherwise a write-tracked gfn (canWrite false) gets no W.
  const wasWritable = (oldLo & SPTE_W) !== 0;
  const wrprot = (access & ACC_WRITE_MASK) !== 0 && !wasWritable && !canWrite;
  const w = (access & ACC_WRITE_MASK) !== 0 && !wrprot;
  out.wrprot = wrprot;
  out.lo = ((lo | (w ? SPTE_W | (wasWritable ? 0 : SPTE_D) : 0)) & out.adKeep) >>> 0;
  out.hi = (hi | (w ? SPTE_HI_MMU_WRITABLE : 0)) >>> 0;
}

/** `make_nonleaf_spte`: RWX + A + MMU-present pointing at the child table's frame. */
export function makeNonleafSpte(out: SpteOut, childPfn: number): void {
  out.lo =
    ((SPTE_MMU_PRESENT | SPTE_R | SPTE_W | SPTE_X | SPTE_A | pfnLo(childPfn)) & out.adKeep) >>> 0;
  out.hi = pfnHi(childPfn);
  out.wrprot = false;
}

/** `make_mmio_spte`: misconfig value, gfn in the address field, generation split in two. */
export function makeMmioSpte(out: SpteOut, gfn: number, gen: number): void {
  const g = gen & MMIO_SPTE_GEN_MASK;
  out.lo = (SPTE_MMIO_VALUE | ((g & 0xff) << 3) | pfnLo(gfn)) >>> 0;
  out.hi = (pfnHi(gfn) | ((g >>> 8) << 20)) >>> 0;
  out.wrprot = false;
}

/** `get_mmio_spte_generation`. */
export function mmioSpteGen(lo: number, hi: number): number {
  return ((lo >>> 3) & 0xff) | (((hi >>> 20) & 0x7ff) << 8);
}

/** `get_mmio_spte_gfn`. */
export function mmioSpteGfn(lo: number, hi: number): number {
  return (hi & SPTE_HI_PFN_MASK) * TWO_20 + (lo >>> 12);
}

/**
 * `make_huge_page_split_spte`: child i of a huge leaf at `hugeLevel`. W, MMU-writable, A and D
 * are inherited; PS is kept unless the child is at level 1.
 */
export function makeSplitSpte(out: SpteOut, lo: number, hi: number, hugeLevel: number, i: number) {
  const childLevel = hugeLevel - 1;
  const pfn = sptePfn(lo, hi) + i * GFN_SPAN[childLevel];
  let nlo = (lo & LO_FLAG_MASK) | pfnLo(pfn);
  if (childLevel === 1) nlo &= ~SPTE_PS;
  out.lo = nlo >>> 0;
  out.hi = ((hi & ~SPTE_HI_PFN_MASK) | pfnHi(pfn)) >>> 0;
  out.wrprot = false;
}

/**
 * Seed 2017, `is_possible_writable_spte`: present and writable, or able to become writable
 * without mmu_lock (`fast_page_fault`: MMU-writable). Non-leaf entries count while they carry W.
 */
export function isPossiblyWritable(lo: number, hi: number): boolean {
  return (
    (lo & SPTE_MMU_PRESENT) !== 0 && ((lo & SPTE_W) !== 0 || (hi & SPTE_HI_MMU_WRITABLE) !== 0)
  );
}

/** Does the leaf allow this access? (`is_access_allowed`: write→W, fetch→X, read→R). */
export function isAccessAllowed(lo: number, write: boolean, fetch: boolean): boolean {
  if (write) return (lo & SPTE_W) !== 0;
  if (fetch) return (lo & SPTE_X) !== 0;
  return (lo & SPTE_R) !== 0;
}

/**
 * Invariants of a present spte (as `make_spte` and spte.h keep them); returns a description of
 * the first broken one or "".
 * Non-leaves must carry RWX (W may be missing with `nonLeafWrprot`: seed 2017's RFC); Host-writable clear ⇒ W clear; MMU-writable clear ⇒ W clear;
 * MMU-writable ⇒ Host-writable.
 */
export function spteInvariantViolation(
  lo: number,
  hi: number,
  level: number,
  nonLeafWrprot = false,
): string {
  if (!isShadowPresent(lo)) return "";
  if (!isLastSpte(lo, level)) {
    // Seed 2017's write-protect-all clears W in non-leaf entries (pushed down on write faults).
    const need = nonLeafWrprot ? SPTE_R | SPTE_X : SPTE_R | SPTE_W | SPTE_X;
    if ((lo & need) !== need) return "non-leaf spte lacks R/W/X";
    return "";
  }
  if ((lo & SPTE_W) !== 0 && (hi & SPTE_HI_HOST_WRITABLE) === 0)
    return "writable leaf without Host-writable";
  if ((lo & SPTE_W) !== 0 && (hi & SPTE_HI_MMU_WRITABLE) === 0)
    return "writable leaf without MMU-writable";
  if ((hi & SPTE_HI_MMU_WRITABLE) !== 0 && (hi & SPTE_HI_HOST_WRITABLE) === 0)
    return "MMU-writable leaf without Host-writable";
  return "";
}

/** Flag names (schema `flag` vocabulary) of an spte, for snapshots and traces. */
export function spteFlags(lo: number, hi: number, level: number): string[] {
  const f: string[] = [];
  if (isMmioSpte(lo)) {
    f.push("mmio");
    return f;
  }
  if (!isShadowPresent(lo)) return f;
  f.push("present");
  if (lo & SPTE_W) f.push("writable");
  if (lo & SPTE_R) f.push("user");
  if (lo & SPTE_X) f.push("exec");
  if (lo & SPTE_A) f.push("accessed");
  if (lo & SPTE_D) f.push("dirty");
  if (level > 1 && lo & SPTE_PS) f.push("huge");
  if (isLastSpte(lo, level)) {
    if (hi & SPTE_HI_HOST_WRITABLE) f.push("host-writable");
    if (hi & SPTE_HI_MMU_WRITABLE) f.push("mmu-writable");
    if ((lo & SPTE_W) === 0 && (hi & SPTE_HI_MMU_WRITABLE) === 0) f.push("write-protected");
  }
  return f;
}

/** The spte as a lower-case hex string ("0x…"), for notebooks; never on hot paths. */
export function spteHex(lo: number, hi: number): string {
  if (hi === 0) return `0x${lo.toString(16)}`;
  return `0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")}`;
}

/**
 * A shadow-paging spte as KVM writes it without EPT (the x86 PTE layout of spte.h with
 * `kvm_mmu_reset_all_pte_masks`: P, W, U at bit 2, A 5, D 6, PS 7, Host-writable 9,
 * MMU-writable 10, MMU-present 11, NX 63; an MMIO spte is P | bit 51 with its gfn and
 * generation), for display. The simulator keeps every spte in one encoding, the EPT one above
 * (R serving as the user bit, as `shadow_user_mask` does under EPT); this gives the values a
 * shadow-paging KVM would hold. Hex string, never on hot paths.
 */
export function spteHexX86(lo: number, hi: number): string {
  let xlo: number;
  let xhi: number;
  if (isMmioSpte(lo)) {
    const gen = mmioSpteGen(lo, hi);
    xlo = (lo & 0xfffff000) | ((gen & 0xff) << 3) | 1;
    xhi = (hi & SPTE_HI_PFN_MASK & 0x7ffff) | (1 << 19) | ((gen >>> 8) << 20);
  } else if (!isShadowPresent(lo)) {
    xlo = lo;
    xhi = hi;
  } else {
    xlo =
      (lo & 0xfffff000) |
      1 |
      (lo & SPTE_W) |
      ((lo & SPTE_R) !== 0 ? 4 : 0) |
      ((lo & SPTE_A) !== 0 ? 0x20 : 0) |
      ((lo & SPTE_D) !== 0 ? 0x40 : 0) |
      (lo & SPTE_PS) |
      ((hi & SPTE_HI_HOST_WRITABLE) !== 0 ? 0x200 : 0) |
      ((hi & SPTE_HI_MMU_WRITABLE) !== 0 ? 0x400 : 0) |
      SPTE_MMU_PRESENT;
    xhi = (hi & SPTE_HI_PFN_MASK) | ((lo & SPTE_X) !== 0 ? 0 : 0x80000000);
  }
  return spteHex(xlo >>> 0, xhi >>> 0);
}

/**
 * An spte's value as a view prints it: the EPT encoding (TDP) or the x86 one (`shadow`,
 * {@link spteHexX86}), with the software bits where `layout` puts them — "modern" as stored;
 * "v4" (KVM v4.x and earlier: Host-writable bit 10, MMU-writable bit 11, no MMU-present bit).
 */
export function spteHexLayout(
  lo: number,
  hi: number,
  shadow: boolean,
  layout: "modern" | "v4",
): string {
  if (layout === "modern" || !isShadowPresent(lo))
    return shadow ? spteHexX86(lo, hi) : spteHex(lo, hi);
  const hostW = (hi & SPTE_HI_HOST_WRITABLE) !== 0;
  const mmuW = (hi & SPTE_HI_MMU_WRITABLE) !== 0;
  const v = BigInt(shadow ? spteHexX86(lo, hi) : spteHex(lo, hi));
  // Clear the modern software bits (x86: 9, 10, 11; EPT: 11, 57, 58), set the v4 ones.
  const clear = shadow ? 0xe00n : 0x800n | (1n << 57n) | (1n << 58n);
  const w = (v & ~clear) | (hostW ? 1n << 10n : 0n) | (mmuW ? 1n << 11n : 0n);
  return `0x${w.toString(16)}`;
}
