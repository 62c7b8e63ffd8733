/**
 * Reverse maps (`pte_list_*`, `gfn_to_rmap`, mmu.c): for each (slot, level, gfn index) the list
 * of sptes that map it, in KVM's encoding, on typed arrays.
 *
 * An "sptep" is the 32-bit number `sp * 512 + index` (sp < 2^22).
 * ```
 *  head word (Uint32Array per level)   0            empty
 *                                      (sptep+1)<<1 exactly one spte        (bit 0 clear; +1 so that
 *                                                   sptep 0 is not mistaken for empty)
 *                                      (desc<<1)|1  a pte_list_desc chain   (bit 0 set)
 *  pte_list_desc (Int32Array, stride 16): [0] more (next desc or -1), [1] spte_count,
 *                                         [2..15] sptes[PTE_LIST_EXT = 14]
 * ```
 * As in the modern kernel, a new descriptor becomes the head when the head is full (so every
 * tail descriptor is full) and removal fills the hole with the head descriptor's last entry.
 */
import { gfnToIndex, slotArch, slotLpages } from "./lpage";
import type { MemSlot } from "./memslot";

/** `PTE_LIST_EXT` (modern). */
export const PTE_LIST_EXT = 14;
const DESC_STRIDE = 16;

/** Descriptor pool shared by all rmaps of a VM (`pte_list_desc_cache`). */
export class PteListDescPool {
  desc: Int32Array = new Int32Array(DESC_STRIDE * 64);
  private freeHead = -1;
  private nextNew = 0;
  /** Live descriptors. */
  live = 0;

  alloc(): number {
    let d: number;
    if (this.freeHead >= 0) {
      d = this.freeHead;
      this.freeHead = this.desc[d * DESC_STRIDE]!;
    } else {
      d = this.nextNew++;
      if ((d + 1) * DESC_STRIDE > this.desc.length) {
        const n = new Int32Array(this.desc.length * 2);
        n.set(this.desc);
        this.desc = n;
      }
    }
    this.desc[d * DESC_STRIDE] = -1;
    this.desc[d * DESC_STRIDE + 1] = 0;
    this.live++;
    return d;
  }

  release(d: number): void {
    this.desc[d * DESC_STRIDE] = this.freeHead;
    this.freeHead = d;
    this.live--;
  }

  bytes(): number {
    return this.desc.byteLength;
  }
}

/**
 * `pte_list_add`: add `sptep` to the list at `heads[i]`; returns the number of entries before
 * the add (KVM uses it for `max_mmu_rmap_size` and the recycle threshold).
 */
export function pteListAdd(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  sptep: number,
): number {
  const h = heads[i]!;
  if (h === 0) {
    heads[i] = (sptep + 1) * 2;
    return 0;
  }
  if ((h & 1) === 0) {
    const d = pool.alloc();
    const o = d * DESC_STRIDE;
    pool.desc[o + 1] = 2;
    pool.desc[o + 2] = h / 2 - 1;
    pool.desc[o + 3] = sptep;
    heads[i] = d * 2 + 1;
    return 1;
  }
  let d = (h - 1) / 2;
  let o = d * DESC_STRIDE;
  // Count = head's entries + PTE_LIST_EXT per (full) tail descriptor.
  let count = pool.desc[o + 1]!;
  for (let t = pool.desc[o]!; t >= 0; t = pool.desc[t * DESC_STRIDE]!) count += PTE_LIST_EXT;
  if (pool.desc[o + 1] === PTE_LIST_EXT) {
    const nd = pool.alloc();
    pool.desc[nd * DESC_STRIDE] = d;
    d = nd;
    o = d * DESC_STRIDE;
    heads[i] = d * 2 + 1;
  }
  const c = pool.desc[o + 1]!;
  pool.desc[o + 2 + c] = sptep;
  pool.desc[o + 1] = c + 1;
  return count;
}

/** `pte_list_remove`: remove `sptep`; returns false if it was not on the list. */
export function pteListRemove(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  sptep: number,
): boolean {
  const h = heads[i]!;
  if (h === 0) return false;
  if ((h & 1) === 0) {
    if (h / 2 - 1 !== sptep) return false;
    heads[i] = 0;
    return true;
  }
  const head = (h - 1) / 2;
  const ho = head * DESC_STRIDE;
  for (let d = head; d >= 0; d = pool.desc[d * DESC_STRIDE]!) {
    const o = d * DESC_STRIDE;
    const n = pool.desc[o + 1]!;
    for (let j = 0; j < n; j++) {
      if (pool.desc[o + 2 + j] !== sptep) continue;
      // Fill the hole with the head descriptor's last entry.
      const hc = pool.desc[ho + 1]! - 1;
      pool.desc[o + 2 + j] = pool.desc[ho + 2 + hc]!;
      pool.desc[ho + 1] = hc;
      if (hc === 0) {
        const more = pool.desc[ho]!;
        pool.release(head);
        if (more < 0) heads[i] = 0;
        else heads[i] = more * 2 + 1;
      }
      // A chain left with a single entry stays a descriptor, as in KVM.
      return true;
    }
  }
  return false;
}

/** Whether `sptep` is on the list at `heads[i]` (audits; no allocation). */
export function pteListContains(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  sptep: number,
): boolean {
  const h = heads[i]!;
  if (h === 0) return false;
  if ((h & 1) === 0) return h / 2 - 1 === sptep;
  for (let d = (h - 1) / 2; d >= 0; d = pool.desc[d * DESC_STRIDE]!) {
    const o = d * DESC_STRIDE;
    const c = pool.desc[o + 1]!;
    for (let j = 0; j < c; j++) if (pool.desc[o + 2 + j] === sptep) return true;
  }
  return false;
}

/** Visit every sptep on the list at `heads[i]`; returns how many were visited. */
export function pteListForEach(
  pool: PteListDescPool,
  heads: Uint32Array,
  i: number,
  fn: (sptep: number) => void,
): number {
  const h = heads[i]!;
  if (h === 0) return 0;
  if ((h & 1) === 0) {
    fn(h / 2 - 1);
    return 1;
  }
  let n = 0;
  for (let d = (h - 1) / 2; d >= 0; d = pool.desc[d * DESC_STRIDE]!) {
    const o = d * DESC_STRIDE;
    const c = pool.desc[o + 1]!;
    for (let j = 0; j < c; j++) {
      fn(pool.desc[o + 2 + j]!);
      n++;
    }
  }
  return n;
}

/** `slot->arch.rmap[3][]`: heads for levels 1..3. */
export class SlotRmap {
  /** heads[level - 1][gfn_to_index(gfn, base, level)]. */
  readonly heads: [Uint32Array, Uint32Array, Uint32Array];

  constructor(baseGfn: number, npages: number) {
    this.heads = [
      new Uint32Array(slotLpages(baseGfn, npages, 1)),
      new Uint32Array(slotLpages(baseGfn, npages, 2)),
      new Uint32Array(slotLpages(baseGfn, npages, 3)),
    ];
  }

  bytes(): number {
    return this.heads[0].byteLength + this.heads[1].byteLength + this.heads[2].byteLength;
  }
}

/**
 * `slot_rmap_walk_iterator` (`for_each_slot_rmap_range` over every memslot): visits the rmap
 * head of every (slot, level, gfn index) whose range overlaps [start, end), for levels
 * minLevel..maxLevel, slot by slot, level by level; slots without rmaps are skipped. Empty heads
 * are visited too (callers count `rmap_heads_scanned`). Closure-free:
 * `for (w.init(...); w.valid; w.next()) use(w.heads, w.index, w.level)`.
 */
export class SlotRmapWalkIterator {
  /** Heads of the current (slot, level); `heads[index]` is the current head. */
  heads: Uint32Array = new Uint32Array(0);
  index = 0;
  level = 0;
  /** The current slot. */
  slot: MemSlot | null = null;
  valid = false;
  private slots: readonly MemSlot[] = [];
  private slotPos = 0;
  private start = 0;
  private end = 0;
  private minLevel = 1;
  private maxLevel = 3;
  private lastIndex = -1;
  private rmap: SlotRmap | null = null;

  /** Position on the first head of [start, end) at levels minLevel..maxLevel of `slots`. */
  init(
    slots: readonly MemSlot[],
    start: number,
    end: number,
    minLevel: number,
    maxLevel: number,
  ): void {
    this.slots = slots;
    this.start = start;
    this.end = end;
    this.minLevel = minLevel;
    this.maxLevel = maxLevel;
    this.slotPos = -1;
    this.level = maxLevel;
    this.index = 0;
    this.lastIndex = -1;
    this.slot = null;
    this.valid = minLevel <= maxLevel;
    if (this.valid) this.next();
  }

  /** Step to the next head (next index, else next level, else next slot with rmaps). */
  next(): void {
    if (++this.index <= this.lastIndex) return;
    for (;;) {
      if (this.level < this.maxLevel && this.slot !== null) {
        this.enterLevel(this.level + 1);
        if (this.index <= this.lastIndex) return;
        continue;
      }
      if (!this.nextSlot()) {
        this.valid = false;
        this.slot = null;
        return;
      }
      this.enterLevel(this.minLevel);
      if (this.index <= this.lastIndex) return;
    }
  }

  /** Advance to the next slot that has rmaps and overlaps [start, end). */
  private nextSlot(): boolean {
    while (++this.slotPos < this.slots.length) {
      const slot = this.slots[this.slotPos]!;
      const rmap = slotArch(slot).rmap;
      if (rmap === null) continue;
      if (Math.max(this.start, slot.baseGfn) >= Math.min(this.end, slot.baseGfn + slot.npages))
        continue;
      this.slot = slot;
      this.rmap = rmap;
      return true;
    }
    return false;
  }

  private enterLevel(level: number): void {
    const slot = this.slot!;
    const s = Math.max(this.start, slot.baseGfn);
    const e = Math.min(this.end, slot.baseGfn + slot.npages);
    this.level = level;
    this.heads = this.rmap!.heads[level - 1]!;
    this.index = gfnToIndex(s, slot.baseGfn, level);
    this.lastIndex = gfnToIndex(e - 1, slot.baseGfn, level);
  }
}
