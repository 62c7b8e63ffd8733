/** Memslot semantics (kvm_main.c __kvm_set_memory_region) and gfn lookup. */
import { describe, expect, it } from "vitest";
import { createVm, KVM_MEM_LOG_DIRTY_PAGES } from "../src";
import { MemSlots } from "../src/internal";

const GiB = 2 ** 30;

describe("__kvm_set_memory_region change kinds", () => {
  it("create, flags-only, move, no-op and delete are classified as KVM_MR_*", () => {
    const vm = createVm();
    expect(
      vm.setUserMemoryRegion({ slot: 3, guestPhysAddr: GiB, memorySize: 2 ** 21, flags: 0 }),
    ).toBe("create");
    expect(
      vm.setUserMemoryRegion({
        slot: 3,
        guestPhysAddr: GiB,
        memorySize: 2 ** 21,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
      }),
    ).toBe("flagsOnly");
    // The same request twice: a move, then a no-op (classified as flags-only, as KVM does).
    const moved = {
      slot: 3,
      guestPhysAddr: 2 * GiB,
      memorySize: 2 ** 21,
      flags: KVM_MEM_LOG_DIRTY_PAGES,
    };
    expect(vm.setUserMemoryRegion(moved)).toBe("move");
    expect(vm.memslots.get(3)!.baseGfn).toBe((2 * GiB) / 4096);
    expect(vm.setUserMemoryRegion(moved)).toBe("flagsOnly");
    expect(vm.setUserMemoryRegion({ slot: 3, guestPhysAddr: 0, memorySize: 0, flags: 0 })).toBe(
      "delete",
    );
    expect(vm.memslots.list()).toHaveLength(0);
  });
  it("default hva is congruent to the gpa modulo 1 GiB (so huge pages can line up)", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0x12345000, memorySize: 2 ** 20, flags: 0 });
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 5 * GiB + 0x200000,
      memorySize: 3 * GiB,
      flags: 0,
    });
    for (const s of vm.memslots.list())
      expect(s.userspaceAddr % GiB).toBe((s.baseGfn * 4096) % GiB);
    const [a, b] = vm.memslots.list();
    expect(
      a!.userspaceAddr + a!.npages * 4096 <= b!.userspaceAddr ||
        b!.userspaceAddr + b!.npages * 4096 <= a!.userspaceAddr,
    ).toBe(true);
  });
  it("moving a slot keeps its contents (memory lives at the hva)", () => {
    const vm = createVm({ mmu: "none" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 ** 20, flags: 0 });
    vm.guestWrite64(0x3008, 0xdeadbeefcafen);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 4 * GiB, memorySize: 2 ** 20, flags: 0 });
    expect(vm.readPhys64(4 * GiB + 0x3008)).toBe(0xdeadbeefcafen);
  });
  it("the dirty bitmap exists while logging is on and records guest stores (ALIGN(npages, 64)/8 bytes, twice)", () => {
    const vm = createVm({ mmu: "none" });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 100 * 4096,
      flags: KVM_MEM_LOG_DIRTY_PAGES,
    });
    const s = vm.memslots.get(0)!;
    expect(s.dirtyBitmap!.byteLength).toBe(2 * (128 / 8));
    vm.guestWrite64(5 * 4096, 1n);
    vm.guestWrite64(99 * 4096 + 8, 1n);
    expect([...Array(100).keys()].filter((g) => s.testDirty(g))).toEqual([5, 99]);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 100 * 4096, flags: 0 });
    expect(vm.memslots.get(0)!.dirtyBitmap).toBeNull();
  });
});

describe("gfn_to_memslot", () => {
  it("agrees with a linear search over 500 random non-overlapping slots (seeded)", () => {
    const slots = new MemSlots(52);
    let x = 2007;
    const rnd = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x;
    };
    let next = 0;
    for (let id = 0; id < 500; id++) {
      next += rnd() % 1000; // gap
      const npages = 1 + (rnd() % 5000);
      slots.commit(
        slots.prepare(
          { slot: id, guestPhysAddr: next * 4096, memorySize: npages * 4096, flags: 0 },
          (g) => 2 ** 40 + g,
        ),
      );
      next += npages;
    }
    const list = slots.list();
    for (let i = 0; i < 20_000; i++) {
      const gfn = rnd() % (next + 100);
      const want = list.find((s) => gfn >= s.baseGfn && gfn < s.baseGfn + s.npages);
      expect(slots.gfnToSlot(gfn)).toBe(want);
    }
  });
});
