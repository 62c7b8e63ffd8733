/**
 * Write tracking (page_track.c) on its own: `gfn_write_track` is one u16 counter per 4K gfn of a
 * memslot, indexed by gfn - base_gfn; `update_gfn_write_track` refuses (WARN_ON_ONCE) a count
 * that would go below 0 or above USHRT_MAX, and a frame is write-tracked while its count is
 * non-zero (`kvm_gfn_is_write_tracked`). The expected values follow from that contract alone.
 */
import { describe, expect, it } from "vitest";
import { MmuBugError } from "../src/errors";
import { MemSlot } from "../src/kvm/memslot";
import { slotArch } from "../src/mmu/mmu_internal";
import {
  gfnWriteTrackCount,
  kvmGfnIsWriteTracked,
  updateGfnWriteTrack,
} from "../src/mmu/page_track";

const BASE = 0x1000; // a base gfn > npages: an index taken as gfn + base would fall outside
const NPAGES = 16;
const USHRT_MAX = 0xffff;

const slot = () => new MemSlot(1, BASE, NPAGES, 0, BASE * 4096, "4k");

describe("gfn_write_track (page_track.c)", () => {
  it("a slot nothing tracks: no frame is tracked, every count is 0", () => {
    const s = slot(); // no slot->arch at all yet
    expect(kvmGfnIsWriteTracked(s, BASE)).toBe(false);
    expect(gfnWriteTrackCount(s, BASE)).toBe(0);
    slotArch(s); // slot->arch exists, the counters are not allocated yet
    expect(kvmGfnIsWriteTracked(s, BASE + 3)).toBe(false);
    expect(gfnWriteTrackCount(s, BASE + 3)).toBe(0);
  });

  it("no memslot: not tracked", () => {
    expect(kvmGfnIsWriteTracked(null, BASE)).toBe(false);
    expect(kvmGfnIsWriteTracked(undefined, BASE)).toBe(false);
  });

  it("counts per gfn: only the frame updated is tracked, until its count is back to 0", () => {
    const s = slot();
    updateGfnWriteTrack(s, BASE + 3, 1);
    updateGfnWriteTrack(s, BASE + 3, 1);
    const tracked = [...Array(NPAGES).keys()].filter((i) => kvmGfnIsWriteTracked(s, BASE + i));
    expect(tracked).toEqual([3]);
    expect(gfnWriteTrackCount(s, BASE + 3)).toBe(2);
    expect(gfnWriteTrackCount(s, BASE + 2)).toBe(0);
    updateGfnWriteTrack(s, BASE + 3, -1);
    expect([kvmGfnIsWriteTracked(s, BASE + 3), gfnWriteTrackCount(s, BASE + 3)]).toEqual([true, 1]);
    updateGfnWriteTrack(s, BASE + 3, -1);
    expect([kvmGfnIsWriteTracked(s, BASE + 3), gfnWriteTrackCount(s, BASE + 3)]).toEqual([
      false,
      0,
    ]);
  });

  it("the counter is a u16: USHRT_MAX is accepted, one more or below 0 is a KVM bug, unchanged", () => {
    const s = slot();
    for (let k = 0; k < USHRT_MAX; k++) updateGfnWriteTrack(s, BASE + 15, 1);
    expect(gfnWriteTrackCount(s, BASE + 15)).toBe(USHRT_MAX);
    let err: unknown;
    try {
      updateGfnWriteTrack(s, BASE + 15, 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MmuBugError);
    expect((err as MmuBugError).where).toBe("update_gfn_write_track");
    expect((err as MmuBugError).what).toBe(
      `gfn 0x${(BASE + 15).toString(16)}: write-track count would become ${USHRT_MAX + 1}`,
    );
    expect(gfnWriteTrackCount(s, BASE + 15)).toBe(USHRT_MAX);
    expect(() => updateGfnWriteTrack(s, BASE, -1)).toThrow(MmuBugError);
    expect(gfnWriteTrackCount(s, BASE)).toBe(0);
  });
});
