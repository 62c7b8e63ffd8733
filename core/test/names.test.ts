// Names a notebook user meets: a snapshot's title (`title`, alias `label`, in both snapshots),
// `vm.stat` as KVM's `kvm->stat` (the VM statistics), and `vm.memslots` as a table.
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder, InvalidArgumentError } from "../src";

const MiB = 2 ** 20;
const JUPYTER = Symbol.for("Jupyter.display");
type Bundle = Record<string, string>;
const bundle = (v: object): Bundle => (v as Record<symbol, () => Bundle>)[JUPYTER]!.call(v);

function machine() {
  const vm = createVm({ mmu: "tdp" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: MiB });
  tables.map(0x400000, 16 * MiB, 4096, { user: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...tables.sregs(), cpl: 3 });
  vcpu.access(0x400000, { user: true });
  return { vm, tables };
}

describe("snapshot title: `title`, with `label` as its alias, in both snapshots", () => {
  it("either name titles the view and labels its tree", () => {
    const { vm, tables } = machine();
    for (const opts of [{ title: "mine" }, { label: "mine" }, { title: "mine", label: "mine" }]) {
      const g = tables.snapshot(opts).payload;
      expect([g.title, g.trees[0]!.label]).toEqual(["mine", "mine"]);
      const t = vm.snapshot(opts).payload();
      expect([t.title, t.trees[0]!.label]).toEqual(["mine", "mine"]);
    }
    // Without one, the TDP view keeps its own names.
    expect(vm.snapshot().payload().title).toBe("TDP MMU");
  });

  it("two different values are an error naming label; so is a title that is not a string", () => {
    const { vm, tables } = machine();
    for (const take of [
      () => tables.snapshot({ title: "a", label: "b" }),
      () => vm.snapshot({ title: "a", label: "b" }),
    ]) {
      expect(take).toThrow(InvalidArgumentError);
      expect(take).toThrow(/invalid label: "b"; allowed: the title's value \("a"\)/);
    }
    expect(() => tables.snapshot({ title: 42 as never })).toThrow(/invalid title: 42/);
    expect(() => tables.snapshot({ maxEntries: 0 })).toThrow(/invalid maxEntries: 0/);
  });
});

describe("vm.stat is kvm->stat", () => {
  it("is the same live statistics object as vm.stats", () => {
    const { vm } = machine();
    expect(vm.stat).toBe(vm.stats);
    // One data page and the four guest table pages the walk read through EPT: 5 leaves.
    expect(vm.stat.pages_4k).toBe(5);
    expect("guestStores" in vm.stat).toBe(false);
  });
});

describe("vm.memslots shows as a table", () => {
  it("slot id, gpa range, size, flag names, backing and the dirty bitmap's state", () => {
    const vm = createVm({ mmu: "tdp" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
    const base = 2 ** 30; // below 4 GiB: the vCPU runs with paging off
    // KVM_MEM_LOG_DIRTY_PAGES = 1, KVM_MEM_READONLY = 2 (include/uapi/linux/kvm.h).
    vm.setUserMemoryRegion({
      slot: 3,
      guestPhysAddr: base,
      memorySize: 2 * MiB,
      flags: 1,
      backing: "thp",
    });
    vm.setUserMemoryRegion({ slot: 5, guestPhysAddr: 2 * base, memorySize: 4096, flags: 2 });
    const vcpu = vm.createVcpu(); // paging off: gva = gpa
    for (const page of [0, 1, 7, 7]) vcpu.write(base + page * 4096, 1n, { size: 1 });
    const b = bundle(vm.memslots);
    const lines = b["text/plain"]!.split("\n");
    expect(lines[0]).toMatch(/^Memslots \(3\), generation \d+$/);
    // Three distinct pages of the 512 in 2 MiB were written.
    expect(lines[3]).toMatch(
      new RegExp(
        `^3 +0x${base.toString(16)}-0x${(base + 2 * MiB - 1).toString(16)} +2 MiB +KVM_MEM_LOG_DIRTY_PAGES +thp +0x[0-9a-f]+ +3/512 pages dirty$`,
      ),
    );
    expect(lines[4]).toMatch(/^5 .* 4 KiB +KVM_MEM_READONLY +4k .* off$/);
    expect(b["text/html"]).toContain("<th style=");
    expect(b["text/html"]).toContain("KVM_MEM_READONLY");
    expect(String(vm.memslots)).toMatch(
      /^MemSlots\(generation \d+: slot 0 gpa 0x0-0x3ffffff 64 MiB/,
    );
    const json = JSON.parse(JSON.stringify(vm.memslots));
    expect(
      json.slots.map((s: { id: number; dirtyPages: number | null }) => [s.id, s.dirtyPages]),
    ).toEqual([
      [0, null],
      [3, 3],
      [5, null],
    ]);
  });

  it("with the dirty ring a logged slot has no bitmap, and says so", () => {
    const vm = createVm({ mmu: "tdp" });
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096 * 16);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MiB, flags: 1 });
    expect(vm.memslots.rows()[0]!.dirtyLog).toBe("on, no bitmap (dirty ring)");
  });
});
