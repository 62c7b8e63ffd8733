// sideBySide() and changes(): composing page-table snapshots for notebooks.
import { describe, expect, it } from "vitest";
import { changes, createVm, GuestPageTableBuilder, InvalidArgumentError, sideBySide } from "../src";
import { PAGETABLE_MIME, validateDisplayPayload } from "../src/display";

const MiB = 2 ** 20;

function machine() {
  const vm = createVm({ mmu: "tdp" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: MiB });
  tables.map(0x400000, 16 * MiB, 16 * 4096, { user: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...tables.sregs(), cpl: 3 });
  return { vm, tables, vcpu };
}

describe("sideBySide", () => {
  it("puts the trees of each source next to each other, in order, as one valid payload", () => {
    const { vm, tables, vcpu } = machine();
    vcpu.access(0x400000, { user: true });
    const view = sideBySide(tables.snapshot(), vm.snapshot());
    expect(view.payload.trees.map((t) => t.kind)).toEqual(["guest", "tdp"]);
    expect(validateDisplayPayload(PAGETABLE_MIME, view.payload)).toEqual({ ok: true });
    const bundle = view[Symbol.for("Jupyter.display") as never] as unknown as () => Record<
      string,
      unknown
    >;
    expect(Object.keys(bundle.call(view))).toContain(PAGETABLE_MIME);
  });
  it("titles the view only when every source has a title", () => {
    const { vm, tables } = machine();
    expect(sideBySide(tables.snapshot(), vm.snapshot()).payload.title).toBeUndefined();
    expect(sideBySide(tables.snapshot({ title: "guest" }), vm.snapshot()).payload.title).toBe(
      "guest | TDP MMU",
    );
  });
  it("rejects a value that is not a snapshot, naming it", () => {
    expect(() => sideBySide({ kind: "walk" } as never)).toThrow(InvalidArgumentError);
    expect(() => sideBySide(42 as never)).toThrow(/sources\[0\].*page-table snapshot/);
  });
  it("rejects more than 4 trees (the schema's limit)", () => {
    const { tables } = machine();
    const s = tables.snapshot();
    expect(() => sideBySide(s, s, s, s, s)).toThrow(/1 to 4 trees/);
  });
});

describe("changes", () => {
  it("carries the earlier trees as `before`; the entries that differ are exactly the ones touched", () => {
    const { tables, vcpu } = machine();
    const before = tables.snapshot();
    vcpu.access(0x401000, { user: true, write: true });
    const view = changes(before, tables.snapshot(), "after one write");
    expect(view.payload.title).toBe("after one write");
    expect(view.payload.before).toEqual(before.payload.trees);
    expect(validateDisplayPayload(PAGETABLE_MIME, view.payload)).toEqual({ ok: true });
    // The write set A in PML4E, PDPTE and PDE and A|D in the PTE: the PTE for 0x401000 changed.
    const pt = (t: (typeof view.payload.trees)[0]) =>
      t.root.entries[0]!.child!.entries[0]!.child!.entries.find((e) => e.index === 2)!.child!;
    const at = (table: ReturnType<typeof pt>, i: number) =>
      table.entries.find((e) => e.index <= i && i < e.index + (e.count ?? 1))!;
    expect(at(pt(view.payload.before![0]!), 1).flags).not.toContain("dirty");
    expect(at(pt(view.payload.trees[0]!), 1).flags).toContain("dirty");
  });
  it("refuses snapshots of different trees", () => {
    const { vm, tables } = machine();
    expect(() => changes(tables.snapshot(), vm.snapshot())).toThrow(
      /snapshots of the same trees as after \(tdp\/tdp-4\)/,
    );
  });
});
