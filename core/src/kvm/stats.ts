/**
 * KVM's statistics under their kernel names (`struct kvm_vm_stat`, `struct kvm_vcpu_stat`,
 * generic stats in kvm_main.c), as plain numbers, plus the MMU's memory gauges and a few
 * simulator cost counters. The VM's object also shows the vCPU stats summed over vCPUs, as
 * debugfs does: the page-fault counters are kept there live; the rest are summed when
 * `vm.stats` is read.
 */

import { htmlTableBundle, JUPYTER_DISPLAY, type MimeBundle } from "../display";

/** Counters and gauges; every field is a plain number. */
export class KvmStats {
  // --- kvm_vm_stat (gauges pages_* are current leaf counts) ---
  pages_4k = 0;
  pages_2m = 0;
  pages_1g = 0;
  /** v4 and before: large leaves (`lpages`; = pages_2m + pages_1g, recounted when read). */
  lpages = 0;
  mmu_shadow_zapped = 0;
  mmu_pte_write = 0;
  mmu_pde_zapped = 0;
  mmu_flooded = 0;
  mmu_recycled = 0;
  mmu_cache_miss = 0;
  mmu_unsync = 0;
  nx_lpage_splits = 0;
  max_mmu_page_hash_collisions = 0;
  max_mmu_rmap_size = 0;
  remote_tlb_flush = 0;
  remote_tlb_flush_requests = 0;
  // --- kvm_vcpu_stat, summed over vCPUs ---
  pf_taken = 0;
  pf_fixed = 0;
  pf_emulate = 0;
  pf_spurious = 0;
  pf_fast = 0;
  pf_mmio_spte_created = 0;
  /** #PF injected into the guest by KVM (shadow paging); 0 under TDP, where the CPU delivers them. */
  pf_guest = 0;
  /** INVLPG emulated by KVM (shadow paging); 0 under TDP, where INVLPG is not intercepted. */
  invlpg = 0;
  /** vCPU-local TLB flushes executed (a KVM_REQ_TLB_FLUSH processed at guest entry). */
  tlb_flush = 0;
  /** Accesses that left the guest for userspace: no memslot, or a write to a read-only one. */
  mmio_exits = 0;
  /** Exits because a vCPU's dirty ring was soft-full (`KVM_EXIT_DIRTY_RING_FULL`). */
  dirty_ring_full_exits = 0;
  /** PML-full VM exits. */
  pml_full_exits = 0;
  // --- guest walker (seed 2007), summed over vCPUs by vm.stats; mappings_held_max is a max ---
  gpte_reads = 0;
  gpte_ad_writes = 0;
  walk_faults = 0;
  walk_not_present = 0;
  walk_access_error = 0;
  walk_rsvd = 0;
  mappings_held_max = 0;
  // --- kvm->arch gauges (not stats in KVM; exposed because the seeds are about them) ---
  n_used_mmu_pages = 0;
  n_max_mmu_pages = 0;
  tdp_mmu_pages = 0;
  indirect_shadow_pages = 0;
  // --- MMU memory in 4 KiB pages (seed 2010) ---
  /** spt pages live (one per shadow page). */
  spt_pages_live = 0;
  /** gfn-array (translation) pages live: 0 for direct pages after seed 2010. */
  translation_pages_live = 0;
  /** spt + translation pages live. */
  mmu_data_pages_live = 0;
  mmu_data_pages_allocated = 0;
  mmu_data_pages_freed = 0;
  // --- collapse when dirty logging stops (seed 2015) ---
  /** sptes zapped by a collapse (rmap: 4K leaves; TDP: non-leaf entries above them). */
  collapse_sptes_zapped = 0;
  /** Page tables freed by a collapse (TDP zap/recover; the rmap walk leaves them linked). */
  collapse_tables_freed = 0;
  /** Huge leaves installed in place by `recover` (v6.13). */
  collapse_hugepages_installed = 0;
  /** Faults that mapped a gfn again in a slot whose logging was turned off (until it is on again). */
  refaults_after_disable = 0;
  /** Parentless, non-root shadow pages of the rmap MMU (gauge, recounted when read). */
  orphan_sps = 0;
  // --- write protection by page (seed 2017) ---
  /** Entries a per-page write-protect pass looked at (bitmap: set bits; scan: 512 a page). */
  wp_entries_examined = 0;
  /** Entries such a pass changed. */
  wp_entries_changed = 0;
  /** Pages a bitmap pass skipped because their possible-writable count was 0. */
  wp_sps_skipped_zero_count = 0;
  // --- simulator cost counters (not KVM stats: what an operation visited) ---
  huge_splits = 0;
  /** Whole-slot write-protect (or D-clear, with PML) walks when logging is turned on. */
  wrprot_slot_passes = 0;
  /** `kvm_arch_mmu_enable_log_dirty_pt_masked` calls: one per non-zero u64 word GET/CLEAR/reset hands over. */
  wrprot_masked_calls = 0;
  /** Seed-2010 self-checks made (stored gfn against the formula; `selfCheckGfns`). */
  gfn_self_checks = 0;
  /**
   * Steps of the TDP MMU's iterator (`tdp_iter_next`) in its range walks: zap, split,
   * write-protect, D-clear and collapse (the fault path's descent is not counted).
   */
  tdp_iter_steps = 0;
  rmap_heads_scanned = 0;
  sptes_visited = 0;

  /** Plain-object copy (for JSON, diffs and display). */
  toJSON(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }

  /** Jupyter rich display: a two-column table of the non-zero statistics. */
  [JUPYTER_DISPLAY](): MimeBundle {
    return statsBundle("KVM statistics (non-zero)", this.toJSON());
  }
}

/**
 * Counters a guest walker keeps on its own reusable state (incremented in the walk loop; the
 * vCPU's {@link VcpuStat} reads them through getters).
 */
export interface WalkerCounters {
  readonly gpteReads: number;
  readonly gpteAdWrites: number;
  readonly gpteDWritesAfterWalk: number;
  readonly mappingsHeldMax: number;
}

/**
 * Per-vCPU counters (`struct kvm_vcpu_stat` where KVM has the name; the rest are the simulated
 * CPU's and the guest walker's). Own properties are plain numbers (getters as own properties made
 * `stat.walks++` on the access path ~8 % slower); the walker's counters are prototype getters.
 */
export class VcpuStat {
  /** Guest walks made (by the simulated CPU or KVM's walker). */
  walks = 0;
  /** Walks that ended in a #PF for the guest (whoever delivered it: the CPU or KVM). */
  walk_faults = 0;
  /** ... of which not-present, access-rights, reserved-bit faults. */
  walk_not_present = 0;
  walk_access_error = 0;
  walk_rsvd = 0;
  /** #GP for a non-canonical address (delivered by the CPU). */
  gp_guest = 0;
  /** KVM's `pf_guest`: #PF injected by KVM (shadow paging only). */
  pf_guest = 0;
  /** KVM's `invlpg`: INVLPG intercepted and emulated (shadow paging only). */
  invlpg = 0;
  /** Exits to userspace because the dirty ring was soft-full (`KVM_EXIT_DIRTY_RING_FULL`). */
  dirty_ring_full_exits = 0;
  /** PML-full VM exits (the 512-entry buffer filled). */
  pml_full_exits = 0;
  /** KVM's `tlb_flush`: local TLB flushes for KVM_REQ_TLB_FLUSH, at guest entry. */
  tlb_flush = 0;
  /** KVM's `mmio_exits`: accesses that exited to userspace (MMIO or read-only slot). */
  mmio_exits = 0;
  readonly #w: WalkerCounters;

  constructor(w: WalkerCounters) {
    this.#w = w;
  }

  /** Guest PTEs read by walks (one per level reached). */
  get gpte_reads(): number {
    return this.#w.gpteReads;
  }
  /** A/D write-backs into guest PTEs (an entry written twice in one walk counts twice). */
  get gpte_ad_writes(): number {
    return this.#w.gpteAdWrites;
  }
  /** "w07a": D bits set after the walk, when the spte is built (also counted in gpte_ad_writes). */
  get gpte_d_writes_after_walk(): number {
    return this.#w.gpteDWritesAfterWalk;
  }
  /** Guest-table mappings held across walker levels, at most (1 for "w07a" and "w07p", else 0). */
  get mappings_held_max(): number {
    return this.#w.mappingsHeldMax;
  }

  /** Plain-object copy of every counter (own fields and walker counters). */
  toJSON(): Record<string, number> {
    return {
      ...(this as unknown as Record<string, number>),
      gpte_reads: this.gpte_reads,
      gpte_ad_writes: this.gpte_ad_writes,
      gpte_d_writes_after_walk: this.gpte_d_writes_after_walk,
      mappings_held_max: this.mappings_held_max,
    };
  }

  /** Jupyter rich display: the non-zero counters. */
  [JUPYTER_DISPLAY](): MimeBundle {
    return statsBundle("vCPU statistics (non-zero)", this.toJSON());
  }
}

/** Fill the vCPU-summed fields of `s` (walker counters, pf_guest, invlpg, ...) from `stats`. */
export function sumVcpuStats(s: KvmStats, stats: readonly VcpuStat[]): void {
  s.gpte_reads = s.gpte_ad_writes = s.walk_faults = s.walk_not_present = 0;
  s.walk_access_error = s.walk_rsvd = 0;
  s.mappings_held_max = s.pf_guest = s.invlpg = s.tlb_flush = s.mmio_exits = 0;
  s.dirty_ring_full_exits = s.pml_full_exits = 0;
  for (const t of stats) {
    s.gpte_reads += t.gpte_reads;
    s.gpte_ad_writes += t.gpte_ad_writes;
    s.walk_faults += t.walk_faults;
    s.walk_not_present += t.walk_not_present;
    s.walk_access_error += t.walk_access_error;
    s.walk_rsvd += t.walk_rsvd;
    s.mappings_held_max = Math.max(s.mappings_held_max, t.mappings_held_max);
    s.pf_guest += t.pf_guest;
    s.invlpg += t.invlpg;
    s.tlb_flush += t.tlb_flush;
    s.mmio_exits += t.mmio_exits;
    s.dirty_ring_full_exits += t.dirty_ring_full_exits;
    s.pml_full_exits += t.pml_full_exits;
  }
}

function statsBundle(title: string, all: Record<string, number>): MimeBundle {
  const rows = Object.entries(all)
    .filter(([, v]) => v !== 0)
    .map(([stat, value]) => ({ stat, value }));
  return htmlTableBundle(title, rows);
}

/** Level-indexed helper: add `delta` to pages_4k/2m/1g (`kvm_update_page_stats`). */
export function updatePageStats(s: KvmStats, level: number, delta: number): void {
  if (level === 1) s.pages_4k += delta;
  else if (level === 2) s.pages_2m += delta;
  else s.pages_1g += delta;
}
