/**
 * The per-vCPU dirty ring on its own (virt/kvm/dirty_ring.c): index arithmetic modulo the ring
 * size, the soft limit (`kvm_dirty_ring_soft_full`: used >= size - reserved), the hard limit of
 * `kvm_dirty_ring_push`, userspace's DIRTY → RESET harvest, and `kvm_dirty_ring_reset`'s
 * coalescing of harvested entries into (slot, offset, 64-bit mask) runs. Every expected mask
 * below is worked out by hand from the kernel's loop: same slot and 0 <= delta < 64 sets bit
 * delta; -64 < delta < 0 moves the run's start back when no set bit falls off the top;
 * anything else flushes the run.
 */
import { describe, expect, it } from "vitest";
import { MmuBugError } from "../src/errors";
import { KvmDirtyRing } from "../src/kvm/dirty_ring";

const SIZE = 128;
const RSVD = 64;

type Call = [slot: number, offset: number, mask: bigint];

/** Push `entries` ([slot, offset]), harvest them, reset: the re-protect calls and the count. */
function resetOf(entries: [number, number][]): { calls: Call[]; n: number } {
  const r = new KvmDirtyRing(SIZE, RSVD);
  for (const [s, o] of entries) r.push(s, o);
  expect(r.harvest()).toHaveLength(entries.length);
  const calls: Call[] = [];
  const n = r.reset((s, o, m) => calls.push([s, o, m]));
  return { calls, n };
}

const bit = (k: number) => 1n << BigInt(k);

describe("kvm_dirty_ring_push / soft_full", () => {
  it("soft-full exactly at size - reserved used entries; the hard limit is size", () => {
    const r = new KvmDirtyRing(SIZE, RSVD);
    for (let k = 0; k < SIZE - RSVD - 1; k++) r.push(0, k);
    expect([r.used, r.softFull()]).toEqual([SIZE - RSVD - 1, false]);
    r.push(0, 999);
    expect([r.used, r.softFull()]).toEqual([SIZE - RSVD, true]);
    for (let k = r.used; k < SIZE; k++) r.push(0, k);
    expect(r.used).toBe(SIZE);
    expect(() => r.push(0, 1)).toThrow(
      new MmuBugError("kvm_dirty_ring_push", "the dirty ring is full (soft limit ignored)"),
    );
    expect(r.used).toBe(SIZE);
  });

  it("harvest returns the DIRTY entries in push order once; reset frees only harvested ones", () => {
    const r = new KvmDirtyRing(SIZE, RSVD);
    r.push(1, 7);
    r.push(2, 0x12345);
    r.push(1, 3);
    expect(r.harvest()).toEqual([
      { slot: 1, offset: 7 },
      { slot: 2, offset: 0x12345 },
      { slot: 1, offset: 3 },
    ]);
    expect(r.harvest()).toEqual([]);
    r.push(3, 4); // dirty, not harvested: reset stops before it
    const calls: Call[] = [];
    expect(r.reset((s, o, m) => calls.push([s, o, m]))).toBe(3);
    // (1,7); (2,...) flushes it; (1,3) starts a new run.
    expect(calls).toEqual([
      [1, 7, 1n],
      [2, 0x12345, 1n],
      [1, 3, 1n],
    ]);
    expect(r.used).toBe(1);
    expect(r.reset(() => expect.fail("nothing harvested"))).toBe(0);
    expect(r.harvest()).toEqual([{ slot: 3, offset: 4 }]);
  });

  it("indices wrap modulo the size: three full laps keep every entry and its order", () => {
    const r = new KvmDirtyRing(SIZE, RSVD);
    let next = 0;
    for (let lap = 0; lap < 3 * SIZE; lap += 50) {
      const want = [];
      for (let k = 0; k < 50; k++) {
        r.push(k & 1, next * 1000);
        want.push({ slot: k & 1, offset: next * 1000 });
        next++;
      }
      expect(r.harvest()).toEqual(want);
      expect(r.reset(() => {})).toBe(50);
      expect(r.used).toBe(0);
    }
  });
});

describe("kvm_dirty_ring_reset coalescing", () => {
  it("forward within 64 pages: one run", () => {
    expect(
      resetOf([
        [0, 10],
        [0, 11],
        [0, 73],
      ]),
    ).toEqual({ calls: [[0, 10, bit(0) | bit(1) | bit(63)]], n: 3 });
  });

  it("forward 64 pages or more: a new run", () => {
    expect(
      resetOf([
        [0, 10],
        [0, 74],
      ]).calls,
    ).toEqual([
      [0, 10, 1n],
      [0, 74, 1n],
    ]);
  });

  it("a repeated offset sets the same bit", () => {
    expect(
      resetOf([
        [0, 5],
        [0, 5],
      ]),
    ).toEqual({ calls: [[0, 5, 1n]], n: 2 });
  });

  it("backward: the run starts earlier while no bit falls off the top", () => {
    expect(
      resetOf([
        [0, 20],
        [0, 15],
      ]).calls,
    ).toEqual([[0, 15, bit(0) | bit(5)]]);
    expect(
      resetOf([
        [0, 100],
        [0, 37],
      ]).calls,
    ).toEqual([[0, 37, bit(0) | bit(63)]]);
  });

  it("backward by 64 or more, or with a bit that would fall off: a new run", () => {
    expect(
      resetOf([
        [0, 100],
        [0, 36],
      ]).calls,
    ).toEqual([
      [0, 100, 1n],
      [0, 36, 1n],
    ]);
    // 100 and 163 make bits 0 and 63; moving back 1 would push bit 63 out.
    expect(
      resetOf([
        [0, 100],
        [0, 163],
        [0, 99],
      ]).calls,
    ).toEqual([
      [0, 100, bit(0) | bit(63)],
      [0, 99, 1n],
    ]);
  });

  it("another slot: a new run even at the same offset", () => {
    expect(
      resetOf([
        [1, 5],
        [2, 5],
        [2, 6],
      ]).calls,
    ).toEqual([
      [1, 5, 1n],
      [2, 5, bit(0) | bit(1)],
    ]);
  });
});
