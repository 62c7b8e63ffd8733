/** Sparse guest memory: backing on first write, zero reads allocate nothing. */
import { describe, expect, it } from "vitest";
import { createVm } from "../src";
import { GuestMemory } from "../src/internal";

describe("GuestMemory", () => {
  it("reads never-written memory as zero without allocating", () => {
    const m = new GuestMemory();
    for (let f = 0; f < 1000; f++) expect(m.read32(f * 7919, 4 * (f % 1024))).toBe(0);
    expect(m.framesAllocated).toBe(0);
    expect(m.bytesAllocated).toBe(0);
  });
  it("allocates one 4 KiB frame on the first write and keeps values per frame", () => {
    const m = new GuestMemory();
    m.write32(123456789, 4092, 0xffffffff);
    m.write32(123456789, 0, 7);
    m.write32(5, 8, 9);
    expect(m.framesAllocated).toBe(2);
    expect(m.read32(123456789, 4092)).toBe(0xffffffff);
    expect(m.read32(123456789, 0)).toBe(7);
    expect(m.read32(123456790, 0)).toBe(0);
    expect(m.read32(5, 8)).toBe(9);
  });
  it("storing zero into an unbacked frame allocates nothing", () => {
    const m = new GuestMemory();
    m.write32(42, 0, 0);
    expect(m.framesAllocated).toBe(0);
  });
  it("cmpxchg32 succeeds only on the expected value", () => {
    const m = new GuestMemory();
    m.write32(1, 0, 0x21);
    expect(m.cmpxchg32(1, 0, 0x20, 0x61)).toBe(false);
    expect(m.cmpxchg32(1, 0, 0x21, 0x61)).toBe(true);
    expect(m.read32(1, 0)).toBe(0x61);
  });
  it("bytes round-trip", () => {
    const m = new GuestMemory();
    m.write8(3, 4095, 0xab);
    expect(m.read8(3, 4095)).toBe(0xab);
    expect(m.read32(3, 4092)).toBe(0xab000000);
  });
});

describe("guest memory of a VM", () => {
  it("a 1 TiB VM that touched 3 pages holds 3 frames", () => {
    const vm = createVm({ mmu: "none" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 ** 40, flags: 0 });
    vm.guestWrite64(0, 1n);
    vm.guestWrite64(2 ** 39, 2n);
    vm.guestWrite64(2 ** 40 - 8, 3n);
    for (let i = 0; i < 1000; i++) vm.readPhys64(i * 2 ** 28);
    expect(vm.memory.framesAllocated).toBe(3);
    expect(vm.readPhys64(2 ** 40 - 8)).toBe(3n);
  });
});
