/**
 * The contract between the EPT stage 2 (mmu.ts) and an MMU flavour that builds direct shadow
 * pages for it: the TDP MMU (tdp_mmu.ts, KVM's default) or the legacy rmap/hash MMU
 * (legacy_direct.ts, `tdp_mmu=0`). Both use the same shadow-page store and spte format.
 */
import type { MemSlot } from "./memslot";
import type { MmuPageStore } from "./mmu_page";
import { GFN_SPAN, SPTE_MMU_PRESENT, SPTE_PS, SpteOut, sptePfn } from "./spte";
import type { KvmStats } from "./stats";

/** Construction options both flavours take. */
export interface DirectMmuOptions {
  /** Root level: 4 or 5. */
  rootLevel: number;
  /** Root role word (`kvm_calc_tdp_mmu_root_page_role`). */
  rootRole: number;
  /** Seed 2010 "before": direct pages also get a (counted) gfn array. */
  allocTranslationForDirect: boolean;
  /** Keep an uncounted gfn array on every page and check the formula on every removal. */
  selfCheckGfns: boolean;
}

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

/**
 * What the two flavours share: the page store, the stats, the root list, the flush callback,
 * shadow-page allocation with the seed-2010 options, and the walk to the last spte (the same
 * EPT walk whichever flavour built the tables).
 */
export abstract class DirectMmuBase<O extends DirectMmuOptions = DirectMmuOptions> {
  readonly store: MmuPageStore;
  readonly stats: KvmStats;
  readonly opts: O;
  /** Root sp ids the flavour keeps (`tdp_mmu_roots` / vCPU roots). */
  readonly roots: number[] = [];
  /** Counts one remote TLB flush (kvm_flush_remote_tlbs*); set by the owner. */
  flushRemoteTlbs: (reason: string) => void = () => {};
  /** Gfn checks performed by the seed-2010 self-check (proves it ran). */
  selfCheckCount = 0;
  // Result of walkToLast (kvm_tdp_mmu_fast_pf_get_last_sptep), kept in fields: no allocation.
  lastSp = -1;
  lastIdx = 0;
  lastLevel = 0;
  lastLo = 0;
  lastHi = 0;
  /** Scratch output of the make_*_spte helpers. */
  protected readonly out = new SpteOut();

  constructor(store: MmuPageStore, stats: KvmStats, opts: O) {
    this.store = store;
    this.stats = stats;
    this.opts = opts;
  }

  /**
   * `kvm_mmu_alloc_shadow_page` for a direct page: a gfn array when seed 2010 "before" asks for
   * one (counted) or the self-check needs one (uncounted).
   */
  protected allocDirectSp(role: number, gfn: number, tdpMmuPage: boolean): number {
    const o = this.opts;
    return this.store.alloc(
      role,
      gfn,
      tdpMmuPage,
      o.allocTranslationForDirect || o.selfCheckGfns,
      o.allocTranslationForDirect,
    );
  }

  /**
   * Walk the tables of `root` towards `gfn` and stop at the last entry (a leaf or a
   * non-present entry): `kvm_tdp_mmu_fast_pf_get_last_sptep` / `kvm_mmu_get_spte_hierarchy` and
   * the hardware's EPT walk. Result in lastSp/lastIdx/lastLevel/lastLo/lastHi.
   */
  walkToLast(root: number, gfn: number): void {
    const store = this.store;
    let sp = root;
    let level = this.opts.rootLevel;
    for (;;) {
      const spt = store.spt[sp]!;
      const i = ((gfn / GFN_SPAN[level]!) & 511) * 2;
      const lo = spt[i]!;
      if ((lo & SPTE_MMU_PRESENT) === 0 || level === 1 || (lo & SPTE_PS) !== 0) {
        this.lastSp = sp;
        this.lastIdx = i >>> 1;
        this.lastLevel = level;
        this.lastLo = lo;
        this.lastHi = spt[i + 1]!;
        return;
      }
      sp = store.pfnToSp(sptePfn(lo, spt[i + 1]!));
      level--;
    }
  }
}
