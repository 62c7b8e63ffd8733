/** The guest page-table builder: layouts per mode, guest-store path, refusals before writing. */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder, InvalidArgumentError } from "../src";

const MiB = 2 ** 20;

function vm(flags = 0) {
  const v = createVm({ mmu: "none" });
  v.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags });
  return v;
}

describe("GuestPageTableBuilder", () => {
  it("4-level 4K map writes PML4E/PDPTE/PDE/PTE with the architectural layout", () => {
    const v = vm();
    const b = new GuestPageTableBuilder(v, { mode: "4-level", poolBase: 16 * MiB, poolSize: MiB });
    b.map(0x7f_c020_3000n, 0x123000, 0x1000, {
      writable: false,
      user: true,
      nx: true,
      pkey: 5,
      global: true,
    });
    const gva = 0x7f_c020_3000n;
    const idx = (l: number) => Number((gva >> BigInt(12 + 9 * (l - 1))) & 511n);
    const pml4e = v.readPhys64(b.root + idx(4) * 8);
    expect(pml4e & 0xfffn).toBe(7n); // P|RW|US on non-leaf entries
    const pdpt = Number(pml4e & 0xffffffffff000n);
    const pdpte = v.readPhys64(pdpt + idx(3) * 8);
    const pd = Number(pdpte & 0xffffffffff000n);
    const pde = v.readPhys64(pd + idx(2) * 8);
    const pt = Number(pde & 0xffffffffff000n);
    const pte = v.readPhys64(pt + idx(1) * 8);
    // P|US|G, no RW; XD (bit 63); key 5 in bits 62:59.
    expect(pte).toBe((1n << 63n) | (5n << 59n) | 0x123000n | 0x105n);
    expect(b.tablesAllocated).toBe(4);
  });
  it("32-bit: 4-byte entries; 4 MiB pages carry PSE-36 bits; PAE: PDPTEs are P only", () => {
    const v = vm();
    const b32 = new GuestPageTableBuilder(v, { mode: "32-bit", poolBase: 16 * MiB, poolSize: MiB });
    b32.map(0x400000, 0x5_0040_0000, 4 * MiB, { pageSize: 4 * MiB, writable: true, user: false });
    expect(v.readPhys32(b32.root + 4)).toBe(0x00400000 | (5 << 13) | 0x83);
    const bpae = new GuestPageTableBuilder(v, { mode: "pae", poolBase: 20 * MiB, poolSize: MiB });
    bpae.map(0xc0000000, 0x200000, 2 * MiB, { pageSize: 2 * MiB });
    expect(v.readPhys64(bpae.root + 3 * 8) & 0xfffn).toBe(1n);
  });
  it("writes through the guest-store path (dirty-logged like guest writes)", () => {
    const v = vm(1);
    const b = new GuestPageTableBuilder(v, { mode: "4-level", poolBase: 16 * MiB, poolSize: MiB });
    b.map(0x400000, 0x100000, 0x1000);
    const slot = v.memslots.get(0)!;
    const tableGfns = [0, 1, 2, 3].map((i) => (16 * MiB) / 4096 + i);
    expect(tableGfns.every((g) => slot.testDirty(g))).toBe(true);
    expect(v.hostAccessStat.guestStores).toBe(4);
  });
  it("refuses a mapping under an existing large page before writing anything", () => {
    const v = vm();
    const b = new GuestPageTableBuilder(v, { mode: "4-level", poolBase: 16 * MiB, poolSize: MiB });
    b.map(0x200000, 0x200000, 2 * MiB, { pageSize: 2 * MiB });
    const stores = v.hostAccessStat.guestStores;
    expect(() => b.map(0x1ff000, 0x1000, 0x2000)).toThrow(InvalidArgumentError);
    expect(v.hostAccessStat.guestStores).toBe(stores);
    expect(b.entryAddress(0x1ff000, 1)).toBeUndefined(); // its page table was never created
  });
  it("refuses a mapping that needs more tables than the pool has, before writing anything", () => {
    const v = vm();
    const b = new GuestPageTableBuilder(v, {
      mode: "4-level",
      poolBase: 16 * MiB,
      poolSize: 4 * 4096,
    });
    // 4 MiB of 4K pages needs a PDPT, a PD and two PTs; 3 pool pages are left after the PML4.
    expect(() => b.map(0x400000, 0x100000, 4 * MiB)).toThrow(/at most 3 new tables \(needs 4\)/);
    expect(v.hostAccessStat.guestStores).toBe(0);
  });
  it("refuses misaligned, out-of-mode and out-of-range arguments", () => {
    const v = vm();
    const b = new GuestPageTableBuilder(v, { mode: "pae", poolBase: 16 * MiB, poolSize: MiB });
    expect(() => b.map(0x1000, 0x1000, 2 * MiB, { pageSize: 2 * MiB })).toThrow(
      /gpa|gva.*2M-aligned/,
    );
    expect(() => b.map(0, 0, 2 ** 30, { pageSize: 2 ** 30 })).toThrow(
      /pageSize.*1073741824.*4096, 2097152 in pae/,
    );
    expect(() => b.map(0, 0, 4096, { pkey: 1 })).toThrow(/pkey/);
    expect(() => b.map(2 ** 32, 0, 4096)).toThrow(/gva.*32-bit/);
    expect(
      () => new GuestPageTableBuilder(v, { mode: "4-level", poolBase: 200 * MiB, poolSize: MiB }),
    ).toThrow(/poolBase.*memslots/);
    expect(v.hostAccessStat.guestStores).toBe(0);
  });
});
