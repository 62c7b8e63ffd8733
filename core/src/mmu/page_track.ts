/**
 * Write tracking of guest frames (page_track.c): `slot->arch.gfn_write_track`, the per-gfn count
 * of reasons KVM must see every write to the frame. Shadow paging is the one user here: each
 * shadowed guest table above level 1 adds one (`account_shadowed` in mmu.c), so a guest write
 * to it faults and is emulated (`page_fault_handle_page_track`), and `mmu_try_to_unsync_pages`
 * refuses to let it go unsync.
 */
import { MmuBugError } from "../errors";
import type { MemSlot } from "../kvm/memslot";
import { slotArch } from "./mmu_internal";

/** `KVM_PAGE_TRACK_MAX`-style ceiling of the u16 counter (`update_gfn_write_track` warns). */
const WRITE_TRACK_MAX = 0xffff;

/**
 * `update_gfn_write_track`: add `count` (±1) to the counter of `gfn` in `slot` (allocated on
 * first use, as `kvm_page_track_write_tracking_alloc` does when shadow paging starts).
 */
export function updateGfnWriteTrack(slot: MemSlot, gfn: number, count: number): void {
  const track = slotArch(slot).writeTrackFor();
  const i = gfn - slot.baseGfn;
  const v = track[i]! + count;
  if (v < 0 || v > WRITE_TRACK_MAX)
    throw new MmuBugError(
      "update_gfn_write_track",
      `gfn 0x${gfn.toString(16)}: write-track count would become ${v}`,
    );
  track[i] = v;
}

/** `kvm_gfn_is_write_tracked`: the frame is a shadowed upper-level guest table. */
export function kvmGfnIsWriteTracked(slot: MemSlot | null | undefined, gfn: number): boolean {
  if (slot === null || slot === undefined) return false;
  const t = (slot.arch as { gfnWriteTrack?: Uint16Array | null } | undefined)?.gfnWriteTrack;
  return t !== null && t !== undefined && t[gfn - slot.baseGfn]! > 0;
}

/** The write-track count of `gfn` (0 when nothing tracks it), for the audit and views. */
export function gfnWriteTrackCount(slot: MemSlot, gfn: number): number {
  const t = (slot.arch as { gfnWriteTrack?: Uint16Array | null } | undefined)?.gfnWriteTrack;
  return t === null || t === undefined ? 0 : t[gfn - slot.baseGfn]!;
}
