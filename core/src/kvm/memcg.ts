/**
 * The VM's memory account: what the simulator allocates for a VM that grows with the user's
 * sizes, by category, against the VM's memory budget.
 *
 * KVM charges the memory it allocates for a VM (memslot metadata and dirty bitmaps, shadow
 * pages, rmap descriptors, dirty rings) to the VM process's memory cgroup: those allocations use
 * `GFP_KERNEL_ACCOUNT` (kvm_main.c, mmu.c), and one that would take the cgroup past `memory.max`
 * fails with -ENOMEM. The budget is that limit, and an operation checks it before it allocates
 * ({@link MemCg.check}), so a refused one throws {@link ResourceLimitError} and changes nothing.
 *
 * Two limits, because a JS process has two kinds of memory:
 * - `budget` covers everything accounted: typed-array backing stores (outside V8's heap: spt
 *   pages, bitmaps, rings, guest memory) plus the estimated size of the JS objects that hold them;
 * - `heapBudget` covers the JS objects alone (typed-array objects, Map entries: they live on
 *   V8's heap, whose limit is far below the machine's RAM and whose exhaustion kills Node).
 *
 * Per-object heap sizes are estimates measured on V8 (Node 20): {@link HEAP_VIEW_BYTES} and
 * friends. Fixed-size structures (a vCPU's registers, walk caches) are not accounted.
 *
 * `reserved` bytes are promised but not yet allocated: the rmap heads and write-tracking counts
 * of a slot, which KVM allocates with the slot (`kvm_alloc_memslot_metadata`) and the simulator
 * on first use; the slot's creation checks and reserves them, first use turns them into charges.
 */
import { ResourceLimitError } from "../errors";

/** The accounted categories, in display order. */
export const MEM_CATEGORIES = [
  "guestMemory",
  "dirtyBitmaps",
  "slotMetadata",
  "mmuPages",
  "pteListDescs",
  "dirtyRings",
  "pml",
  "trace",
] as const;

/** One accounted category (see {@link MEM_CATEGORY_TEXT}). */
export type MemCategory = (typeof MEM_CATEGORIES)[number];

/** What each category holds, for the `vm.memoryUsage()` display. */
export const MEM_CATEGORY_TEXT: Readonly<Record<MemCategory, string>> = {
  guestMemory:
    "written guest memory: 4 KiB frames in the host arena (its capacity), directory leaves",
  dirtyBitmaps: "slot->dirty_bitmap of logged slots (two buffers of ALIGN(npages, 64) bits)",
  slotMetadata: "slot->arch: lpage_info, rmap heads, gfn_write_track",
  mmuPages: "shadow/TDP pages: 4 KiB spt each (64-page chunks), page columns, gfn arrays, hash",
  pteListDescs: "pte_list_desc pool of the rmaps and parent lists",
  dirtyRings: "per-vCPU dirty rings (KVM_CAP_DIRTY_LOG_RING)",
  pml: "per-vCPU PML buffers (512 gpas)",
  trace: "the trace ring (vm.startTrace capacity)",
};

/** Index of each category in the counters. */
export const MC: Readonly<Record<MemCategory, number>> = Object.fromEntries(
  MEM_CATEGORIES.map((c, i) => [c, i]),
) as Record<MemCategory, number>;

/** V8 heap bytes of a typed-array view over a shared buffer, with its slot in a JS array. */
export const HEAP_VIEW_BYTES = 112;
/** V8 heap bytes of a typed array owning its buffer (view + ArrayBuffer objects), with its slot. */
export const HEAP_TYPED_ARRAY_BYTES = 200;
/** V8 heap bytes of a Map entry holding a small typed array (the guest-memory directory). */
export const HEAP_MAP_LEAF_BYTES = 232;

/** A VM's memory account (see the file comment). Integer math on counters: safe on hot paths. */
export class MemCg {
  /** The VM's memory budget in bytes (`createVm({ memoryBudget })`). */
  readonly budget: number;
  /** The budget for JS objects on V8's heap, in bytes. */
  readonly heapBudget: number;
  /** Charged bytes per category (backing stores plus heap estimates), by {@link MC} index. */
  readonly bytes: Float64Array = new Float64Array(MEM_CATEGORIES.length);
  /** The heap part of {@link bytes}. */
  readonly heapBytes: Float64Array = new Float64Array(MEM_CATEGORIES.length);
  /** Reserved (promised, not yet allocated) bytes per category. */
  readonly reservedBytes: Float64Array = new Float64Array(MEM_CATEGORIES.length);
  /** Sum of charged and reserved bytes: what the budget is compared with. */
  used = 0;
  /** Sum of charged and reserved heap bytes. */
  heapUsed = 0;
  /** Largest {@link used} seen. */
  peak = 0;

  constructor(budget: number, heapBudget: number) {
    this.budget = budget;
    this.heapBudget = heapBudget;
  }

  /**
   * Whether an allocation of `bytes` of typed-array storage plus `heap` bytes of JS objects fits
   * both budgets; `transientHeap` more heap is needed for a moment (a view built later) and is
   * checked against the heap budget only.
   */
  fits(bytes: number, heap = 0, transientHeap = 0): boolean {
    return (
      this.used + bytes + heap <= this.budget &&
      this.heapUsed + heap + transientHeap <= this.heapBudget
    );
  }

  /**
   * Refuse an operation that would allocate more than the budgets allow ({@link fits}). Call
   * before allocating anything.
   * @throws ResourceLimitError naming `what`, the estimate and the budget crossed.
   */
  check(what: string, bytes: number, heap = 0, transientHeap = 0): void {
    if (this.used + bytes + heap > this.budget)
      throw new ResourceLimitError(what, bytes + heap, this.budget, this.used);
    if (this.heapUsed + heap + transientHeap > this.heapBudget)
      throw new ResourceLimitError(
        what,
        heap + transientHeap,
        this.heapBudget,
        this.heapUsed,
        true,
      );
  }

  /**
   * Record an allocation already checked (or bounded by a check made earlier): `bytes` of
   * typed-array storage and `heap` bytes of JS objects, both counted in the category's bytes.
   */
  charge(cat: number, bytes: number, heap = 0): void {
    this.bytes[cat]! += bytes + heap;
    this.heapBytes[cat]! += heap;
    this.used += bytes + heap;
    this.heapUsed += heap;
    if (this.used > this.peak) this.peak = this.used;
  }

  /** Record that an allocation was dropped (its memory is garbage now). */
  uncharge(cat: number, bytes: number, heap = 0): void {
    this.charge(cat, -bytes, -heap);
  }

  /** Promise `bytes` for a later allocation (counted in {@link used} from now on). */
  reserve(cat: number, bytes: number): void {
    this.reservedBytes[cat]! += bytes;
    this.used += bytes;
    if (this.used > this.peak) this.peak = this.used;
  }

  /** Drop a promise made by {@link reserve} (the allocation will not happen). */
  unreserve(cat: number, bytes: number): void {
    this.reservedBytes[cat]! -= bytes;
    this.used -= bytes;
  }

  /** The promised allocation happened: `bytes` move from reserved to charged (plus `heap`). */
  chargeReserved(cat: number, bytes: number, heap = 0): void {
    this.unreserve(cat, bytes);
    this.charge(cat, bytes, heap);
  }
}
