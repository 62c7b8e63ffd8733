/**
 * Introspection of the TDP MMU: the tree snapshot conforms to display.v1 and is bounded and
 * folded; the gpa walk reaches the frame the host model backs the gpa with; the shadow-page list
 * decodes roles; stats and views have Jupyter display bundles.
 */
import { describe, expect, it } from "vitest";
import { JUPYTER_DISPLAY, PAGETABLE_MIME, validateDisplayPayload, WALK_MIME } from "../src/display";
import { createVm } from "../src/vm";

const PAGE = 4096;
const MIB = 2 ** 20;
const GIB = 2 ** 30;
const HVA4K = 64 * GIB;
const HVA2M = 80 * GIB;

/** 2 MiB of 4K pages at gpa 0 and 8 MiB of 2M pages at 1 GiB, all touched. */
function populated(features = {}) {
  const vm = createVm({ features });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 2 * MIB,
    flags: 0,
    backing: "4k",
    userspaceAddr: HVA4K,
  });
  vm.setUserMemoryRegion({
    slot: 1,
    guestPhysAddr: GIB,
    memorySize: 8 * MIB,
    flags: 0,
    backing: "hugetlb-2m",
    userspaceAddr: HVA2M,
  });
  const vcpu = vm.createVcpu();
  for (let off = 0; off < 2 * MIB; off += PAGE) vcpu.access(off, {});
  for (let off = 0; off < 8 * MIB; off += PAGE) vcpu.access(GIB + off, {});
  return { vm, mmu: vm };
}

/** 2 MiB at gpa 0 at HVA4K (default backing), nothing touched. */
function vmWith2MiB() {
  const vm = createVm();
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 2 * MIB,
    flags: 0,
    userspaceAddr: HVA4K,
  });
  return vm;
}

type AnyTable = {
  level: number;
  entries: { count?: number; leaf: boolean; child?: AnyTable }[];
  omitted?: number;
};
function leafPagesIn(t: AnyTable): number[] {
  const per = [0, 0, 0, 0];
  const walk = (x: AnyTable) => {
    for (const e of x.entries) {
      if (e.leaf) per[x.level]! += e.count ?? 1;
      if (e.child) walk(e.child);
    }
  };
  walk(t);
  return per;
}

describe("TDP tree snapshot (display.v1 definitions.tree)", () => {
  it("validates, folds consecutive alike leaves, and accounts for every leaf when unbounded", () => {
    const { mmu } = populated();
    const view = mmu.snapshot({ maxEntriesPerTable: 512, maxTables: 1000 });
    const payload = view.payload();
    const v = validateDisplayPayload(PAGETABLE_MIME, payload);
    expect(v).toEqual({ ok: true });
    expect(payload.trees[0]!.kind).toBe("tdp");
    expect(payload.trees[0]!.format).toBe("tdp-4");
    const per = leafPagesIn(payload.trees[0]!.root as AnyTable);
    expect(per[1]).toBe(mmu.stats.pages_4k);
    expect(per[2]).toBe(mmu.stats.pages_2m);
    expect(view.truncated).toBe(false);
    // The PT holding 512 consecutive 4K frames with equal flags folds into one run of 512.
    const pml4 = payload.trees[0]!.root as AnyTable;
    const pdpt = pml4.entries[0]!.child!;
    const pd0 = pdpt.entries.find((e) => e.child)!.child!;
    const pt = pd0.entries[0]!.child!;
    expect(pt.entries).toHaveLength(1);
    expect(pt.entries[0]!.count).toBe(512);
  });

  it("is bounded: entries capped per table with `omitted`, tables capped, truncated flagged", () => {
    // Alternate read-only/writable flags so that runs cannot fold: 4K pages at even gfns only.
    const vm = vmWith2MiB();
    const vcpu = vm.createVcpu();
    for (let gfn = 0; gfn < 512; gfn += 2) vcpu.access(gfn * PAGE, {});
    const view = vm.snapshot({ maxEntriesPerTable: 8, maxTables: 10 });
    const p = view.payload();
    expect(validateDisplayPayload(PAGETABLE_MIME, p)).toEqual({ ok: true });
    const pt = (p.trees[0]!.root as AnyTable).entries[0]!.child!.entries[0]!.child!.entries[0]!
      .child!;
    expect(pt.entries).toHaveLength(8);
    expect(pt.omitted).toBe(256 - 8); // 256 present leaves, none foldable (gaps)
    expect(view.truncated).toBe(true);
    expect(view[JUPYTER_DISPLAY]()).toHaveProperty([PAGETABLE_MIME]);
  });
});

describe("gpa walk through the TDP tables", () => {
  it("4K: four levels, reaches the host frame hva/4096 of the gpa", () => {
    const { mmu } = populated();
    const gpa = 0x12345;
    const w = mmu.walkGpa(gpa);
    expect(w.steps.map((s) => s.level)).toEqual([4, 3, 2, 1]);
    expect(w.outcome).toBe("mapped");
    expect(w.pfn).toBe((HVA4K + (gpa - (gpa % PAGE))) / PAGE);
    expect(w.pageSize).toBe(PAGE);
    expect(validateDisplayPayload(WALK_MIME, w.payload())).toEqual({ ok: true });
  });

  it("2M: stops at the PD leaf; not-present and MMIO outcomes", () => {
    const { vm, mmu } = populated();
    const gpa = GIB + 3 * MIB + 5 * PAGE;
    const w = mmu.walkGpa(gpa);
    expect(w.steps.map((s) => s.level)).toEqual([4, 3, 2]);
    expect(w.pageSize).toBe(2 * MIB);
    expect(w.pfn).toBe((HVA2M + 3 * MIB + 5 * PAGE) / PAGE);
    expect(mmu.walkGpa(3 * GIB).outcome).toBe("not present");
    vm.vcpus[0]!.access(3 * GIB, {}); // no memslot: MMIO spte
    const m = mmu.walkGpa(3 * GIB);
    expect(m.outcome).toBe("mmio");
    expect(validateDisplayPayload(WALK_MIME, m.payload())).toEqual({ ok: true });
    expect(() => mmu.walkGpa(-1)).toThrow(/gpa/);
  });
});

describe("shadow-page list", () => {
  it("lists every live page once, one root, roles decoded, parent links", () => {
    const { mmu } = populated({ allocTranslationForDirect: true });
    const list = mmu.shadowPages();
    expect(list.pages).toHaveLength(mmu.stats.spt_pages_live);
    const roots = list.pages.filter((p) => p.root);
    expect(roots).toHaveLength(1);
    expect(roots[0]!.level).toBe(4);
    expect(roots[0]!.parent).toBeNull();
    for (const p of list.pages) {
      expect(p.direct).toBe(true);
      expect(p.role.access).toBe(7);
      expect(p.hasTranslationArray).toBe(true);
      if (!p.root) expect(list.pages.find((q) => q.id === p.parent!.sp)!.level).toBe(p.level + 1);
    }
    // Leaves per level recounted from the list equal the stats.
    const sum = (lvl: number) =>
      list.pages.filter((p) => p.level === lvl).reduce((a, p) => a + p.leaves, 0);
    expect(sum(1)).toBe(mmu.stats.pages_4k);
    expect(sum(2)).toBe(mmu.stats.pages_2m);
    const b = list[JUPYTER_DISPLAY]();
    expect(String(b["text/html"])).toContain("Shadow pages");
  });

  it("stats display as a table", () => {
    const { vm } = populated();
    const b = vm.stats[JUPYTER_DISPLAY]();
    expect(String(b["text/html"])).toContain("pages_4k");
    expect(Object.keys(vm.stats.toJSON())).toContain("pf_fixed");
  });
});

describe("snapshot options are validated", () => {
  it("names the bad option", () => {
    const { mmu } = populated();
    expect(() => mmu.snapshot({ maxEntriesPerTable: 0 })).toThrow(/invalid maxEntriesPerTable: 0/);
    expect(() => mmu.snapshot({ maxTables: 1.5 })).toThrow(/invalid maxTables/);
    expect(() => mmu.snapshot({ root: 12345 })).toThrow(/invalid root: 12345/);
    expect(() => mmu.snapshot({ label: "x".repeat(201) })).toThrow(/invalid label/);
    expect(mmu.snapshot({ maxTables: 1 }).truncated).toBe(true);
  });
});
