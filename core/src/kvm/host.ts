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
import { checkOptionKeys, InvalidArgumentError } from "../errors";
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

// ---- host memory (what the default memory budget is taken from) --------------------------------

/** What the host tells mmulab about its memory ({@link setHostMemoryInfo}). */
export interface HostMemoryInfo {
  /** The machine's RAM in bytes (Node: `os.totalmem()`). */
  totalBytes: number;
  /** V8's heap limit in bytes (Node: `v8.getHeapStatistics().heap_size_limit`), or null if unknown. */
  heapLimitBytes: number | null;
}

/**
 * RAM assumed when the host said nothing: 8 GiB, so the default budget is 4 GiB. core is
 * browser-pure (no `node:` imports), so it cannot ask the OS; the Node side (the Jupyter kernel,
 * test setups) calls {@link setHostMemoryInfo} instead.
 */
export const FALLBACK_TOTAL_BYTES = 8 * 2 ** 30;
/**
 * V8 heap limit assumed when unknown: 2 GiB (the smallest default a 64-bit Node gives itself on
 * a machine with a few GiB of RAM), so the JS-heap budget is 1 GiB.
 */
export const FALLBACK_HEAP_LIMIT_BYTES = 2 * 2 ** 30;

let hostInfo: HostMemoryInfo | null = null;

/**
 * Tell mmulab the host's RAM and V8 heap limit (the Jupyter kernel does, at start). VMs created
 * afterwards take their default budgets from it: half the RAM, and half the heap limit for the
 * simulator's objects on V8's heap. `null` forgets it (back to the fallbacks).
 * @throws InvalidArgumentError for a size that is not a positive safe integer.
 */
export function setHostMemoryInfo(info: HostMemoryInfo | null): void {
  if (info === null) {
    hostInfo = null;
    return;
  }
  if (info === undefined || typeof info !== "object" || Array.isArray(info))
    throw new InvalidArgumentError(
      "info",
      info,
      "an object { totalBytes, heapLimitBytes } or null",
    );
  checkOptionKeys("info", info, ["totalBytes", "heapLimitBytes"], false);
  const ok = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v > 0;
  if (!ok(info.totalBytes))
    throw new InvalidArgumentError(
      "totalBytes",
      info.totalBytes,
      "a positive safe integer (bytes)",
    );
  if (info.heapLimitBytes !== null && !ok(info.heapLimitBytes))
    throw new InvalidArgumentError(
      "heapLimitBytes",
      info.heapLimitBytes,
      "a positive safe integer (bytes), or null when unknown",
    );
  hostInfo = { totalBytes: info.totalBytes, heapLimitBytes: info.heapLimitBytes };
}

/**
 * The host's memory as mmulab sees it: what {@link setHostMemoryInfo} said; else, in Chromium,
 * the heap limit of the non-standard `performance.memory`; else the fallbacks. `source` says
 * which.
 */
export function hostMemoryInfo(): HostMemoryInfo & { source: "host" | "fallback" } {
  if (hostInfo !== null) return { ...hostInfo, source: "host" };
  const pm = (globalThis as { performance?: { memory?: { jsHeapSizeLimit?: unknown } } })
    .performance?.memory?.jsHeapSizeLimit;
  const heap = typeof pm === "number" && Number.isSafeInteger(pm) && pm > 0 ? pm : null;
  return { totalBytes: FALLBACK_TOTAL_BYTES, heapLimitBytes: heap, source: "fallback" };
}

/** Default `memoryBudget`: half of the host's RAM ({@link hostMemoryInfo}). */
export function defaultMemoryBudget(): number {
  return Math.floor(hostMemoryInfo().totalBytes / 2);
}

/**
 * The JS-heap budget: half of V8's heap limit (the rest is for the notebook's own objects and
 * the views built on request), or half of {@link FALLBACK_HEAP_LIMIT_BYTES} when unknown.
 */
export function defaultHeapBudget(): number {
  return Math.floor((hostMemoryInfo().heapLimitBytes ?? FALLBACK_HEAP_LIMIT_BYTES) / 2);
}
