/**
 * Walk traces and guest page-table snapshots as display payloads: every payload validates against
 * core/schema/display.v1.schema.json, and the Jupyter display hook returns the MIME bundle.
 */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder } from "../src";
import { validateDisplayPayload } from "../src/display";

const WALK = "application/vnd.mmulab.walk+json";
const PT = "application/vnd.mmulab.pagetable+json";
const MiB = 2 ** 20;

function machine(mode: "32-bit" | "pae" | "4-level" | "5-level") {
  const vm = createVm({ mmu: "none" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  const b = new GuestPageTableBuilder(vm, { mode, poolBase: 32 * MiB, poolSize: 4 * MiB });
  b.map(0x400000, 0x100000, 0x3000);
  b.map(0x800000, 0x400000, mode === "32-bit" ? 4 * MiB : 2 * MiB, {
    pageSize: mode === "32-bit" ? 4 * MiB : 2 * MiB,
    nx: mode !== "32-bit",
    user: false,
  });
  if (mode === "4-level" || mode === "5-level") b.map(0x1000000, 0x200000, 0x1000, { pkey: 3 });
  const vcpu = vm.createVcpu();
  vcpu.setSregs(b.sregs({ nx: mode !== "32-bit" }));
  return { vm, b, vcpu };
}

describe("walk payload (definitions.walk)", () => {
  for (const mode of ["32-bit", "pae", "4-level", "5-level"] as const) {
    it(`${mode}: successes, faults and #GP validate; trace fields match the walk`, () => {
      const { vcpu } = machine(mode);
      const cases = [
        vcpu.walk(0x401234, { write: true, user: true }),
        vcpu.walk(0x900000, { fetch: true }),
        vcpu.walk(0x900000, { user: true }),
        vcpu.walk(0x7000000),
      ];
      if (mode === "4-level") cases.push(vcpu.walk(0x0000_8000_0000_0000n));
      for (const w of cases) {
        const p = w.toPayload();
        const v = validateDisplayPayload(WALK, p);
        expect(v.ok ? [] : v.errors).toEqual([]);
        expect(v.ok).toBe(true);
        expect(p.levels.map((l) => l.index)).toEqual(w.levels.map((l) => l.index));
        const bundle = (w as unknown as Record<symbol, () => Record<string, unknown>>)[
          Symbol.for("Jupyter.display")
        ]();
        expect(bundle[WALK]).toEqual(p);
      }
      const ok = cases[0]!.toPayload();
      expect(ok.result).toMatchObject({ fault: false, gpa: "0x101234", pageSize: 4096 });
      expect(ok.levels.at(-1)!.dSet).toBe(true);
      expect(cases[3]!.toPayload().result).toMatchObject({
        fault: true,
        vector: 14,
        errorBits: [],
      });
    });
  }
  it("the error bits name the error code", () => {
    const { vcpu } = machine("4-level");
    const p = vcpu.walk(0x900000, { user: true, write: true }).toPayload();
    expect(p.result).toMatchObject({
      fault: true,
      vector: 14,
      errorCode: 7,
      errorBits: ["P", "W", "U"],
    });
  });
});

describe("guest page-table snapshot (definitions.pagetable, tree kind guest)", () => {
  for (const mode of ["32-bit", "pae", "4-level", "5-level"] as const) {
    it(`${mode}: validates and shows the mapped leaves`, () => {
      const { b } = machine(mode);
      const snap = b.snapshot({ title: mode });
      const v = validateDisplayPayload(PT, snap.payload);
      expect(v.ok ? [] : v.errors).toEqual([]);
      const leaves: string[] = [];
      const visit = (t: (typeof snap.payload.trees)[0]["root"]) => {
        for (const e of t.entries) {
          // A folded run of `count` leaves maps consecutive frames from its target.
          if (e.leaf)
            for (let k = 0; k < (e.count ?? 1); k++)
              leaves.push(
                `0x${(Number(e.target!) + k * ((e.pageSize ?? 4096) / 4096)).toString(16)}`,
              );
          if (e.child) visit(e.child);
        }
      };
      visit(snap.payload.trees[0]!.root);
      const expected = ["0x100", "0x101", "0x102", "0x400"];
      if (mode === "4-level" || mode === "5-level") expected.push("0x200");
      expect(leaves.sort()).toEqual(expected.sort());
      const bundle = (snap as unknown as Record<symbol, () => Record<string, unknown>>)[
        Symbol.for("Jupyter.display")
      ]();
      expect(Object.keys(bundle)).toContain(PT);
    });
  }
  it("bounds the snapshot and says how many entries were left out", () => {
    const { b } = machine("4-level");
    // Every other frame: no two leaves are alike neighbours, so nothing folds.
    for (let i = 0; i < 300; i++) b.map(0x2000000 + i * 4096, 0x1000000 + 2 * i * 4096, 4096);
    const snap = b.snapshot({ maxEntries: 50 });
    expect(snap.payload.truncated).toBe(true);
    expect(validateDisplayPayload(PT, snap.payload).ok).toBe(true);
  });
});
