/**
 * Host backing model: what `kvm_faultin_pfn` and `host_pfn_mapping_level` see of the host.
 *
 * Host physical frames are modelled as host virtual frames (pfn = hva >> 12): every slot's memory
 * is pinned and physically contiguous in the host, so a huge host page has a pfn aligned exactly
 * as its hva (the `(gfn ^ pfn) & mask` rule of `kvm_mmu_hugepage_adjust` then depends only on the
 * slot's hva/gpa congruence, which the slot's lpage_info checks: `SlotArch`, mmu/mmu_internal.ts).
 *
 * Host mapping level per backing:
 * - "4k": level 1;
 * - "thp": level 2 where the 2 MiB-aligned host range around the hva lies entirely inside the
 *   slot's mapping (a THP cannot straddle the VMA), else 1;
 * - "hugetlb-2m" / "hugetlb-1g": level 2 / 3 (hugetlbfs pages are always huge).
 */
import type { MemSlot } from "./memslot";

const PAGES_2M = 512;

/** pfn backing `gfn` of `slot` (`__gfn_to_pfn_memslot`); caller ensures gfn is in the slot. */
export function hostPfn(slot: MemSlot, gfn: number): number {
  return slot.userspaceAddr / 4096 + (gfn - slot.baseGfn);
}

/** Host page-table level mapping `gfn` (`host_pfn_mapping_level`): 1 = 4K, 2 = 2M, 3 = 1G. */
export function hostMappingLevel(slot: MemSlot, gfn: number): number {
  switch (slot.backing) {
    case "4k":
      return 1;
    case "hugetlb-2m":
      return 2;
    case "hugetlb-1g":
      return 3;
    case "thp": {
      const hvfn = slot.userspaceAddr / 4096 + (gfn - slot.baseGfn);
      const start = hvfn - (hvfn % PAGES_2M);
      const slotStart = slot.userspaceAddr / 4096;
      return start >= slotStart && start + PAGES_2M <= slotStart + slot.npages ? 2 : 1;
    }
    default:
      return 1;
  }
}
