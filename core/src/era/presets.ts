/**
 * Era presets: "run this as KVM vX did" — a named bundle of the behaviour switches of
 * features.ts (and the MMU the era ran on), for `createVm({ preset })`. `features` still
 * overrides any single switch; `vm.config` shows where each value came from.
 *
 * What each preset sets follows the behavioural spec's version table (features.ts documents
 * every switch with the releases it stands for). Switches that no release here changes keep
 * their defaults. Guest CPUID switches (la57, smap, pku, ...) are left to the user.
 */
import { InvalidArgumentError } from "../errors";
import type { FeatureOptions } from "./features";

/** One era preset. */
export interface Preset {
  /** The kernel release the preset stands for. */
  readonly release: string;
  /** The commits (or series) behind what it sets, and what it does not model. */
  readonly commits: string;
  /** The MMU of the era when the caller gives none ("shadow": before EPT). */
  readonly mmu: "tdp" | "shadow";
  /** The switches it sets. */
  readonly features: FeatureOptions;
}

/** Switches of the v4.x rmap MMU (v4.1 and v4.2 share them). */
const V4_RMAP: FeatureOptions = {
  mmuFlavor: "legacy_direct",
  guestWalker: "modern",
  allocTranslationForDirect: false,
  fastPageFault: "v4",
  hashShift: 10,
  hashFn: "mask",
  pteListExt: 3,
  reclaim: "legacy",
  statsStyle: "legacy",
  spteLayout: "v4",
  eagerPageSplit: false,
  collapseOnLogDisable: "rmap2015",
  collapseFlush: "batched",
};

/**
 * Switches of the 2.6.3x rmap MMU (EPT since 2.6.26, no fast page fault yet). Under EPT the guest
 * walk that matters is the CPU's, the architecture's ("modern" here); KVM's own walker of the time
 * (per-level checks as in 2007, plus the reserved-bit check of 2.6.31) only serves emulation and
 * is not modelled.
 */
const V2_6_3X: FeatureOptions = {
  ...V4_RMAP,
  fastPageFault: "none",
  collapseOnLogDisable: "none",
};

/** The presets, by name (`createVm({ preset })`). */
export const PRESETS = {
  /**
   * Linux 2.6.23 (October 2007): shadow paging only (EPT arrived in 2.6.26), the walker before
   * seed 2007 ("w07a": per-level checks, A while walking, one table mapping held across levels,
   * D set when the spte is built in `FNAME(set_pte_common)`), every shadow page with a gfn array,
   * no spte prefetch.
   */
  "v2.6.23": {
    release: "Linux 2.6.23 (Oct 2007)",
    commits:
      "97a0a01e (fix_write_pf folded into set_pte_common); 42bf3f0a (seed 2007) came with 2.6.25. " +
      "No EPT (2.6.26), unsync shadow pages (2.6.27), spte prefetch (2.6.36) or fast page fault " +
      "(3.6); not modelled: the per-vCPU last-written-gfn flooding counter",
    mmu: "shadow",
    features: { ...V2_6_3X, guestWalker: "w07a", prefetch: false, allocTranslationForDirect: true },
  },
  /**
   * Linux 2.6.25 (April 2008): the walker after seed 2007 ("w07b", commit 42bf3f0a, "KVM: MMU:
   * Simplify page table walker": A per level, D at the end of the walk with `kvm_mmu_pte_write`,
   * a table mapped only to touch one gpte); otherwise as v2.6.23.
   */
  "v2.6.25": {
    release: "Linux 2.6.25 (Apr 2008)",
    commits:
      "e3c5e7ec, c4fcc272 (D in the walker, kvm_mmu_pte_write) and 42bf3f0a (seed 2007). No " +
      "EPT (2.6.26), unsync shadow pages (2.6.27), spte prefetch (2.6.36) or fast page fault " +
      "(3.6); not modelled: the per-vCPU last-written-gfn flooding counter and the level-1 " +
      "re-instantiation of kvm_mmu_pte_write (mmu_pte_write_new_pte)",
    mmu: "shadow",
    features: { ...V2_6_3X, guestWalker: "w07b", prefetch: false, allocTranslationForDirect: true },
  },
  /** Linux 2.6.34 (May 2010): EPT with the rmap MMU, just before seed 2010 (direct pages keep a gfn array). */
  "v2.6.34": {
    release: "Linux 2.6.34 (May 2010)",
    commits: "the parent of 2032a93d66fa (seed 2010): every shadow page allocates sp->gfns",
    mmu: "tdp",
    features: { ...V2_6_3X, allocTranslationForDirect: true },
  },
  /** Linux 2.6.35 (August 2010): seed 2010 merged — direct pages without a gfn array. */
  "v2.6.35": {
    release: "Linux 2.6.35 (Aug 2010)",
    commits: "2032a93d66fa (seed 2010, 'KVM: MMU: Don't allocate gfns page for direct mmu pages')",
    mmu: "tdp",
    features: { ...V2_6_3X, allocTranslationForDirect: false },
  },
  /**
   * Linux 4.1 (June 2015): seed 2015 merged (commit 3ea3b7fa, lazy collapse of small sptes
   * when dirty logging stops), the v4 rmap MMU (hash 10/mask, pte_list 3, fast page fault for
   * 4K writes only, v4 spte layout, lpages).
   */
  "v4.1": {
    release: "Linux 4.1 (Jun 2015)",
    commits: "3ea3b7fa9af0 (seed 2015, 'kvm: mmu: lazy collapse small sptes into large sptes')",
    mmu: "tdp",
    features: V4_RMAP,
  },
  /** Linux 4.2 (August 2015): the MMU switches of v4.1 (no switch modelled here changed). */
  "v4.2": {
    release: "Linux 4.2 (Aug 2015)",
    commits: "as v4.1 for every switch of this simulator (the spec's reference v4 preset)",
    mmu: "tdp",
    features: V4_RMAP,
  },
  /**
   * Linux 5.10 (December 2020): the TDP MMU of its first releases — a write under a huge leaf
   * zaps it and links an empty table (no split), no eager split, collapse by zap with one flush
   * per zap, pte_list 3, stats before pages_4k/pf_taken (lpages, pf_fixed).
   */
  "v5.10": {
    release: "Linux 5.10 (Dec 2020)",
    commits:
      "the TDP MMU series (Ben Gardon, 5.10); huge-page split on fault came with ~v6.0, eager " +
      "split with v5.18; tdp_mmu was opt-in until ~5.15",
    mmu: "tdp",
    features: {
      mmuFlavor: "tdp_mmu",
      hugeOnDirtyWrite: "zap",
      eagerPageSplit: false,
      collapseOnLogDisable: "zap",
      pteListExt: 3,
      statsStyle: "legacy",
      spteLayout: "v4",
    },
  },
  /** Linux 6.12 (November 2024): the simulator's defaults. */
  "v6.12": {
    release: "Linux 6.12 (Nov 2024)",
    commits: "the last release whose collapse zaps (kvm_mmu_zap_collapsible_sptes)",
    mmu: "tdp",
    features: {},
  },
  /** Linux 6.13 (January 2025): collapse recovers huge pages in place (kvm_mmu_recover_huge_pages). */
  "v6.13": {
    release: "Linux 6.13 (Jan 2025)",
    commits: "kvm_mmu_recover_huge_pages (David Matlack's series): huge leaves in place, one flush",
    mmu: "tdp",
    features: { collapseOnLogDisable: "recover" },
  },
  /**
   * The 2017 RFC "KVM: MMU: fast write protect" (Xiao Guangrong; re-sent 2019, not merged) on
   * the v4.2 MMU: seed 2017's possible_writable_spte_bitmap and write-protect-all.
   */
  "rfc-fast-wp": {
    release: "Linux 4.2 + the 2017 fast-write-protect RFC (not merged)",
    commits: "[PATCH v2 2/7] 'KVM: MMU: introduce possible_writable_spte_bitmap' (seed 2017)",
    mmu: "tdp",
    features: { ...V4_RMAP, possibleWritableBitmap: true },
  },
} as const satisfies Record<string, Preset>;

/** A preset's name. */
export type PresetName = keyof typeof PRESETS;

/** The preset of `name`, or an error naming the bad value and the allowed ones. */
export function presetOf(name: unknown): Preset {
  if (typeof name !== "string" || !Object.hasOwn(PRESETS, name))
    throw new InvalidArgumentError(
      "preset",
      name,
      Object.keys(PRESETS)
        .map((k) => `"${k}"`)
        .join(" | "),
    );
  return PRESETS[name as PresetName];
}
