// changes(): the folded change list (payload.changes, inspect/change_fold.ts). Expected runs and
// counts come from the guest program and the x86/EPT formats: which pages were touched, which
// frames they map, which bits a walk sets — and the values from vm.walkGpa() and the guest
// builder's own entry reads, never from the fold.
import { describe, expect, it } from "vitest";
import { changes, createVm, GuestPageTableBuilder } from "../src";
import { changeRunMember, PAGETABLE_MIME, validateDisplayPayload } from "../src/display";

const MiB = 2 ** 20;
const hex = (n: number | bigint) => `0x${n.toString(16)}`;
// x86 PTE bits (SDM vol. 3, table 4-20): P, R/W, U/S, A.
const P = 1n;
const RW = 2n;
const US = 4n;
const A = 1n << 5n;

describe("changes() folds the change list", () => {
  it("2,048 consecutive 4 KiB EPT leaves added read as one run of 2,048 with their first and last", () => {
    const vm = createVm({ mmu: "tdp" });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 64 * MiB,
      flags: 0,
      backing: "4k",
    });
    const vcpu = vm.createVcpu(); // paging off: gva = gpa
    vcpu.access(0);
    const before = vm.snapshot();
    const base = 16 * MiB; // 2 MiB aligned: PD entries 8..11, four full PTs
    for (let k = 0; k < 2048; k++) vcpu.access(base + k * 4096);
    const view = changes(before, vm.snapshot());
    expect(validateDisplayPayload(PAGETABLE_MIME, view.payload)).toEqual({ ok: true });
    const c = view.payload.changes!;
    // Four new PD entries (each pointing at a new PT) and 2,048 new leaves; nothing above PD.
    expect(c.levels).toEqual([
      { tree: 0, level: 2, name: "PD", added: 4, removed: 0, changed: 0 },
      { tree: 0, level: 1, name: "PT", added: 2048, removed: 0, changed: 0 },
    ]);
    const leaves = c.runs.filter((r) => r.level === 1);
    expect(leaves).toHaveLength(1);
    const run = leaves[0]!;
    expect(run).toMatchObject({ kind: "added", count: 2048, addr: hex(base) });
    expect(run.lastAddr).toBe(hex(base + 2047 * 4096));
    expect(run.before).toBeUndefined();
    const first = vm.walkGpa(base);
    const last = vm.walkGpa(base + 2047 * 4096);
    expect(run.after!.value).toBe(first.steps.at(-1)!.spte);
    expect(run.after!.last).toBe(last.steps.at(-1)!.spte);
    expect(run.after!.target).toBe(hex(first.pfn));
    // A member in the middle, recomputed from the run, is the spte the walk finds there.
    const mid = changeRunMember(run, 1000);
    expect(mid.addr).toBe(hex(base + 1000 * 4096));
    expect(mid.after).toBe(vm.walkGpa(base + 1000 * 4096).steps.at(-1)!.spte);
    // The text fallback leads with the run, one line.
    const text = (view as never as Record<symbol, () => Record<string, string>>)[
      Symbol.for("Jupyter.display")
    ]!.call(view)["text/plain"]!;
    expect(text).toMatch(
      new RegExp(`PT added ×2048 gpa ${hex(base)}\\.\\.${hex(base + 2047 * 4096)} `),
    );
  });

  it("the tour: A bits set by touching 8 MiB fold per stretch of unchanged neighbours", () => {
    const vm = createVm({ mmu: "tdp" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
    const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: MiB });
    const gva = 0x40000000;
    const gpa = 16 * MiB;
    tables.map(gva, gpa, 8 * MiB, { user: true, writable: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...tables.sregs(), cpl: 3 });
    vcpu.access(gva + 3 * 4096, { user: true, write: true }); // PT[3] of the first PT: A and D
    const before = tables.snapshot();
    for (let k = 0; k < 2048; k++) vcpu.access(gva + k * 4096, { user: true });
    const c = changes(before, tables.snapshot()).payload.changes!;
    // 2,048 PTEs gain A except page 3 (A|D already); the PDEs of the 2nd..4th PT gain A (the
    // first PT's PDE got it with page 3). Nothing else changes.
    expect(c.levels).toEqual([
      { tree: 0, level: 2, name: "PD", added: 0, removed: 0, changed: 3 },
      { tree: 0, level: 1, name: "PT", added: 0, removed: 0, changed: 2047 },
    ]);
    const pte = (k: number) => BigInt(gpa + k * 4096) | P | RW | US;
    const pt = c.runs.filter((r) => r.level === 1);
    expect(pt.map((r) => [r.addr, r.lastAddr, r.count])).toEqual([
      [hex(gva), hex(gva + 2 * 4096), 3],
      [hex(gva + 4 * 4096), hex(gva + 2047 * 4096), 2044],
    ]);
    expect(pt[1]!.before!.value).toBe(hex(pte(4)));
    expect(pt[1]!.after!.value).toBe(hex(pte(4) | A));
    expect(pt[1]!.after!.last).toBe(hex(pte(2047) | A));
    expect(pt[1]!.after!.flags.filter((f) => !pt[1]!.before!.flags.includes(f))).toEqual([
      "accessed",
    ]);
    // Cross-check with the builder's own reads of the guest entries.
    expect(pt[1]!.after!.last).toBe(hex(tables.getEntry(gva + 2047 * 4096, 1)!));
  });

  it("does not fold entries whose frames are not contiguous", () => {
    const vm = createVm({ mmu: "tdp" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
    const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: MiB });
    const gva = 0x400000;
    // Page k maps frame (k * 7) mod 16 + 0x1000, then two contiguous pages 16, 17 -> 0x2000, 0x2001.
    const frames = Array.from({ length: 16 }, (_, k) => 0x1000 + ((k * 7) % 16));
    frames.push(0x2000, 0x2001);
    for (const [k, f] of frames.entries())
      tables.map(gva + k * 4096, f * 4096, 4096, { user: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...tables.sregs(), cpl: 3 });
    vcpu.access(0x800000, { user: false }); // a fault elsewhere, nothing changes there
    const before = tables.snapshot();
    for (let k = 0; k < frames.length; k++) vcpu.access(gva + k * 4096, { user: true });
    const c = changes(before, tables.snapshot()).payload.changes!;
    const pt = c.runs.filter((r) => r.level === 1);
    // Runs break wherever the next page's frame is not the previous frame + 1.
    let expected = 1;
    for (let k = 1; k < frames.length; k++) if (frames[k] !== frames[k - 1]! + 1) expected++;
    expect(pt).toHaveLength(expected);
    expect(pt.map((r) => r.count)).toEqual([...Array(16).fill(1), 2]);
    expect(pt.reduce((n, r) => n + r.count, 0)).toBe(frames.length);
  });
});
