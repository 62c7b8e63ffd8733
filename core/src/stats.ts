/**
 * KVM's statistics under their kernel names (`struct kvm_vm_stat`, `struct kvm_vcpu_stat`,
 * generic stats in kvm_main.c), as plain numbers, plus the MMU's memory gauges and a few
 * simulator cost counters (§14). vCPU stats appear here summed over vCPUs, as debugfs shows them.
 */

import { htmlTableBundle, JUPYTER_DISPLAY, type MimeBundle } from "./display";

/** Counters and gauges; every field is a plain number. */
export class KvmStats {
  // --- kvm_vm_stat (gauges pages_* are current leaf counts) ---
  pages_4k = 0;
  pages_2m = 0;
  pages_1g = 0;
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
  pf_guest = 0;
  // --- guest walker (spec §13.2), summed over vCPUs by vm.stats; mappings_held_max is a max ---
  gpte_reads = 0;
  gpte_ad_writes = 0;
  walk_not_present = 0;
  walk_access_error = 0;
  mappings_held_max = 0;
  // --- kvm->arch gauges (not stats in KVM, exposed as §14 asks) ---
  n_used_mmu_pages = 0;
  n_max_mmu_pages = 0;
  tdp_mmu_pages = 0;
  indirect_shadow_pages = 0;
  // --- MMU memory in 4 KiB pages (§13.1) ---
  /** spt pages live (one per shadow page). */
  spt_pages_live = 0;
  /** gfn-array (translation) pages live: 0 for direct pages after seed 2010. */
  translation_pages_live = 0;
  /** spt + translation pages live. */
  mmu_data_pages_live = 0;
  mmu_data_pages_allocated = 0;
  mmu_data_pages_freed = 0;
  // --- simulator cost counters (§14) ---
  huge_splits = 0;
  tdp_iter_steps = 0;
  rmap_heads_scanned = 0;
  sptes_visited = 0;

  /** Plain-object copy (for JSON, diffs and display). */
  toJSON(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }

  /** Jupyter rich display: a two-column table of the non-zero statistics. */
  [JUPYTER_DISPLAY](): MimeBundle {
    const rows = Object.entries(this.toJSON())
      .filter(([, v]) => v !== 0)
      .map(([stat, value]) => ({ stat, value }));
    return htmlTableBundle("KVM statistics (non-zero)", rows);
  }
}

/** Level-indexed helper: add `delta` to pages_4k/2m/1g (`kvm_update_page_stats`). */
export function updatePageStats(s: KvmStats, level: number, delta: number): void {
  if (level === 1) s.pages_4k += delta;
  else if (level === 2) s.pages_2m += delta;
  else s.pages_1g += delta;
}
