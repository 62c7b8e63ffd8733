/**
 * The contract between the EPT stage 2 (mmu.ts) and an MMU flavour that builds direct shadow
 * pages for it: the TDP MMU (tdp_mmu.ts, KVM's default) or the legacy rmap/hash MMU
 * (legacy_direct.ts, `tdp_mmu=0`). Both use the same shadow-page store and spte format.
 */
import type { MemSlot } from "./memslot";

export interface DirectMmu {
  /** Root sp ids (valid and invalid) the flavour keeps (`tdp_mmu_roots` / vCPU roots). */
  readonly roots: number[];
  /** Counts one remote TLB flush; set by the owner. */
  flushRemoteTlbs: (reason: string) => void;
  /** `kvm_mmu_load`: a root for a vCPU (one more reference). */
  getVcpuRoot(): number;
  /** Drop a vCPU's reference to a root (`kvm_mmu_free_roots`). */
  putRoot(root: number): void;
  /** The root was invalidated or is obsolete and must be reloaded. */
  isInvalidRoot(root: number): boolean;
  /** Walk to the last spte on the path of `gfn`; result in the last* fields. */
  walkToLast(root: number, gfn: number): void;
  lastSp: number;
  lastIdx: number;
  lastLevel: number;
  lastLo: number;
  lastHi: number;
  /** Install the mapping for a fault (`kvm_tdp_mmu_map` / `direct_map`); returns RET_PF_*. */
  map(
    root: number,
    gfn: number,
    goalLevel: number,
    pfn: number,
    slot: MemSlot | null,
    /** The fault's error code (PFERR_* bits). */
    err: number,
    mmioGen: number,
  ): number;
  /** Zap every leaf mapping a gfn in [start, end); returns whether a flush is needed. */
  zapLeafs(start: number, end: number): boolean;
  /** Zap the leaf mapping `gfn` (with its own flush); returns how many were zapped. */
  zapSpte(gfn: number): number;
  /** `kvm_mmu_zap_all_fast` minus the generation toggle the owner does. */
  zapAllFast(validGen: number): void;
  /** Eager split of huge leaves in [start, end) down to `targetLevel`; returns splits (legacy: 0). */
  splitHugePages(start: number, end: number, targetLevel: number): number;
  /** Clear W (keep MMU-writable) on leaves at level ≥ minLevel in [start, end); returns "changed". */
  wrprotRange(start: number, end: number, minLevel: number): boolean;
  /** Clear W and MMU-writable on leaves at level ≥ minLevel mapping `gfn` (page-table protection). */
  writeProtectGfn(gfn: number, minLevel: number): boolean;
  /** Clear W on the 4K leaves of gfns `base + bit` for the set bits of a 64-bit mask. */
  wrprotMasked(base: number, maskLo: number, maskHi: number): void;
  /** Collapse on dirty-log disable; returns the number of zaps (flushes counted inside or by caller). */
  zapCollapsible(
    start: number,
    end: number,
    canBeHuge: (gfn: number, level: number) => boolean,
  ): number;
  /** Seed-2010 self-check count (gfn comparisons performed). */
  readonly selfCheckCount: number;
}
