/**
 * Per-memslot MMU metadata (x86 `slot->arch`, `kvm_alloc_memslot_metadata` in x86.c):
 * `lpage_info` for levels 2 and 3 (the `disallow_lpage` counters) and the rmap heads.
 *
 * `disallow_lpage` starts at 1 for the first entry if `base_gfn` is not aligned to the level, for
 * the last entry if `base_gfn + npages` is not aligned, and for every entry if the slot's gfn and
 * hva are not congruent modulo the level's page size. Shadow paging adds to it for gfns that hold
 * shadowed guest page tables (later issue).
 */
import type { MemSlot } from "./memslot";
import type { SlotRmap } from "./rmap";
import { GFN_SPAN } from "./spte";

/** `gfn_to_index`: index of `gfn`'s entry at `level` among the slot's entries. */
export function gfnToIndex(gfn: number, baseGfn: number, level: number): number {
  const span = GFN_SPAN[level]!;
  return Math.floor(gfn / span) - Math.floor(baseGfn / span);
}

/** Number of entries at `level` for a slot (`kvm_mmu_slot_lpages`). */
export function slotLpages(baseGfn: number, npages: number, level: number): number {
  return gfnToIndex(baseGfn + npages - 1, baseGfn, level) + 1;
}

/** x86 `struct kvm_arch_memory_slot`. */
export class SlotArch {
  /** `lpage_info[0]` = level 2, `[1]` = level 3: `disallow_lpage` per entry. */
  readonly lpageInfo: [Int32Array, Int32Array];
  /** rmap heads per level (legacy MMU only; null while no shadow-MMU page exists). */
  rmap: SlotRmap | null = null;
  /** Geometry the metadata was built for (a moved slot needs new metadata). */
  readonly baseGfn: number;
  readonly npages: number;

  constructor(slot: MemSlot) {
    const base = slot.baseGfn;
    const npages = slot.npages;
    this.baseGfn = base;
    this.npages = npages;
    const ugfn = slot.userspaceAddr / 4096;
    const info: Int32Array[] = [];
    for (let level = 2; level <= 3; level++) {
      const n = slotLpages(base, npages, level);
      const a = new Int32Array(n);
      const span = GFN_SPAN[level]!;
      if (base % span !== 0) a[0] = 1;
      if ((base + npages) % span !== 0) a[n - 1] = 1;
      // (base_gfn ^ ugfn) & (span - 1): congruence of gfn and hva modulo the huge page size.
      if (base % span !== ugfn % span) a.fill(1);
      info.push(a);
    }
    this.lpageInfo = [info[0]!, info[1]!];
  }

  /** `disallow_lpage` of `gfn` at level 2 or 3. */
  disallowLpage(slot: MemSlot, gfn: number, level: number): number {
    return this.lpageInfo[level - 2]![gfnToIndex(gfn, slot.baseGfn, level)]!;
  }

  /** Bytes of typed-array storage. */
  bytes(): number {
    return this.lpageInfo[0].byteLength + this.lpageInfo[1].byteLength + (this.rmap?.bytes() ?? 0);
  }
}

/** The slot's arch metadata, created on first use (`kvm_arch_prepare_memory_region`). */
export function slotArch(slot: MemSlot): SlotArch {
  let a = slot.arch as SlotArch | undefined;
  if (!(a instanceof SlotArch) || a.baseGfn !== slot.baseGfn || a.npages !== slot.npages) {
    a = new SlotArch(slot);
    slot.arch = a;
  }
  return a;
}
