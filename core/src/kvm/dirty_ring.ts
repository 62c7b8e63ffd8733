/**
 * The per-vCPU dirty ring (virt/kvm/dirty_ring.c, `KVM_CAP_DIRTY_LOG_RING`): KVM pushes one
 * `struct kvm_dirty_gfn` {flags, slot, offset} per page it marks dirty on the vCPU that marked
 * it; userspace harvests entries (DIRTY → RESET) and `KVM_RESET_DIRTY_RINGS` re-protects the
 * harvested pages, coalesced into 64-page masks (`kvm_dirty_ring_reset`). When the ring holds
 * `size − reserved` entries it is soft-full and the vCPU exits (`KVM_EXIT_DIRTY_RING_FULL`)
 * before entering the guest again.
 */
import { MmuBugError } from "../errors";

/** `KVM_DIRTY_GFN_F_DIRTY`: the entry was pushed by KVM. */
export const KVM_DIRTY_GFN_F_DIRTY = 1;
/** `KVM_DIRTY_GFN_F_RESET`: userspace harvested it. */
export const KVM_DIRTY_GFN_F_RESET = 2;
/** `sizeof(struct kvm_dirty_gfn)`. */
export const KVM_DIRTY_GFN_SIZE = 16;
/** `KVM_DIRTY_RING_RSVD_ENTRIES`. */
export const KVM_DIRTY_RING_RSVD_ENTRIES = 64;
/** `KVM_DIRTY_RING_MAX_ENTRIES`. */
export const KVM_DIRTY_RING_MAX_ENTRIES = 65536;

/** One harvested entry: the memslot id (address space 0) and the page offset in it. */
export interface DirtyGfn {
  slot: number;
  offset: number;
}

/** One vCPU's ring. */
export class KvmDirtyRing {
  /** Entries (a power of two). */
  readonly size: number;
  /** `kvm_dirty_ring_get_rsvd_entries`: 64, plus the PML buffer's 512 with PML. */
  readonly reserved: number;
  private readonly flags: Uint8Array;
  private readonly slots: Uint32Array;
  private readonly offsets: Float64Array;
  /** `dirty_index` (KVM's next push), `reset_index` (next to reset), userspace's fetch index. */
  private dirtyIndex = 0;
  private resetIndex = 0;
  private fetchIndex = 0;

  /**
   * Bytes a ring of `size` entries holds: flags (1), slot (4) and offset (8) per entry, where
   * KVM's `struct kvm_dirty_gfn` takes 16 ({@link KVM_DIRTY_GFN_SIZE}).
   */
  static bytes(size: number): number {
    return size * 13;
  }

  constructor(size: number, reserved: number) {
    this.size = size;
    this.reserved = reserved;
    this.flags = new Uint8Array(size);
    this.slots = new Uint32Array(size);
    this.offsets = new Float64Array(size);
  }

  /** Entries pushed and not yet reset (`kvm_dirty_ring_used`). */
  get used(): number {
    return this.dirtyIndex - this.resetIndex;
  }

  /** `kvm_dirty_ring_soft_full`. */
  softFull(): boolean {
    return this.used >= this.size - this.reserved;
  }

  /** `kvm_dirty_ring_push`. */
  push(slot: number, offset: number): void {
    if (this.used >= this.size)
      throw new MmuBugError("kvm_dirty_ring_push", "the dirty ring is full (soft limit ignored)");
    const i = this.dirtyIndex & (this.size - 1);
    this.slots[i] = slot;
    this.offsets[i] = offset;
    this.flags[i] = KVM_DIRTY_GFN_F_DIRTY;
    this.dirtyIndex++;
  }

  /**
   * Userspace's harvest: every entry from its fetch index that is DIRTY, in order, each marked
   * RESET (collected, not yet re-protected).
   */
  harvest(): DirtyGfn[] {
    const out: DirtyGfn[] = [];
    for (;;) {
      const i = this.fetchIndex & (this.size - 1);
      if (this.flags[i] !== KVM_DIRTY_GFN_F_DIRTY) break;
      out.push({ slot: this.slots[i]!, offset: this.offsets[i]! });
      this.flags[i] = KVM_DIRTY_GFN_F_RESET;
      this.fetchIndex++;
    }
    return out;
  }

  /**
   * `kvm_dirty_ring_reset`: from the reset index, every harvested entry is made invalid, and
   * runs of the same slot within 64 pages of the run's first offset (forward, or backward while
   * the mask still fits) are coalesced; `apply(slot, offset, mask)` re-protects each run.
   * Returns the entries reset.
   */
  reset(apply: (slot: number, offset: number, mask: bigint) => void): number {
    let n = 0;
    let curSlot = 0;
    let curOffset = 0;
    let mask = 0n;
    for (;;) {
      const i = this.resetIndex & (this.size - 1);
      if (this.flags[i] !== KVM_DIRTY_GFN_F_RESET) break;
      const slot = this.slots[i]!;
      const offset = this.offsets[i]!;
      this.flags[i] = 0;
      this.resetIndex++;
      n++;
      if (mask !== 0n) {
        if (slot === curSlot) {
          const delta = offset - curOffset;
          if (delta >= 0 && delta < 64) {
            mask |= 1n << BigInt(delta);
            continue;
          }
          const m64 = (1n << 64n) - 1n;
          // In C a shift by 64 or more is undefined, hence the kernel's range test; with BigInt
          // the overflow test alone already refuses every delta outside (-64, 0) (bit 0 would be
          // lost), so mutants that loosen these bounds survive as equivalent
          // (test/mutation/equivalent.md).
          if (
            delta > -64 &&
            delta < 0 &&
            ((mask << BigInt(-delta)) & m64) >> BigInt(-delta) === mask
          ) {
            curOffset = offset;
            mask = ((mask << BigInt(-delta)) & m64) | 1n;
            continue;
          }
        }
        apply(curSlot, curOffset, mask);
      }
      curSlot = slot;
      curOffset = offset;
      mask = 1n;
    }
    if (mask !== 0n) apply(curSlot, curOffset, mask);
    return n;
  }
}
