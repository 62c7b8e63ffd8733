/**
 * `vcpu.walk2d()`: the two-dimensional walk under EPT. Expected numbers come from the x86
 * architecture and KVM, never from the view:
 * - geometry: a guest walk reading g levels from memory, each gpa translated by an EPT walk of
 *   e levels, makes (g + 1)(e + 1) − 1 memory references (each guest table read costs its EPT
 *   walk plus the read; the data access costs its EPT walk). g: 5/4-level 5/4, PAE and 32-bit 2
 *   (PAE's PDPTEs are registers loaded at MOV CR3). e: EPT levels down to the leaf, fewer below
 *   a huge EPT leaf (2 MiB: one less, 1 GiB: two less). EPT indices are 9-bit slices of the gfn.
 * - the guest's tables where the builder put them (`entryAddress`), the guest A/D rules (A on
 *   every entry the walk uses, D on the leaf of a write), read back from guest memory;
 * - EPT A/D rules with EPTP bit 6: the CPU sets A in entries it uses and D in the leaf of a
 *   write, and its accesses to guest paging structures count as writes; KVM's make_spte sets A
 *   on a leaf it installs for a fault (not for a prefetch) and D with W, make_nonleaf_spte sets
 *   A; handle_ept_violation's error code (W for writes, U for reads, P when the entry allowed
 *   some access);
 * - KVM's counters (pf_fixed: one per EPT violation that installed a leaf) and the twin-VM
 *   comparison with `vcpu.walk()`, which makes the same access.
 */
import { describe, expect, it } from "vitest";
import {
  createVm,
  GuestPageTableBuilder,
  InvalidArgumentError,
  KVM_MEM_LOG_DIRTY_PAGES,
} from "../src";
import { JUPYTER_DISPLAY, validateDisplayPayload, WALK2D_MIME } from "../src/display";
import type { TwoDimWalk } from "../src/inspect/walk2d";

const PAGE = 4096;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const GVA = 0x40003123;
const GPA = 16 * MiB; // data: gva GVA - 0x3123 + x maps gpa GPA + x
const POOL = MiB; // guest page tables
const PT_A = 0x20n;
const PT_D = 0x40n;
const EPT_A = 1n << 8n;
const EPT_D = 1n << 9n;

type Mode = "32-bit" | "pae" | "4-level" | "5-level";
type Backing = "4k" | "thp" | "hugetlb-1g";

interface GuestOptions {
  mode?: Mode;
  backing?: Backing;
  features?: Record<string, unknown>;
  maxPhysAddrBits?: number;
  mmu?: "tdp" | "shadow" | "none";
}

/** A 1 GiB guest (hva 1 GiB-aligned, so any backing maps its largest pages), 2 MiB mapped at GVA. */
function guest(o: GuestOptions = {}) {
  const mode = o.mode ?? "4-level";
  const vm = createVm({
    mmu: o.mmu ?? "tdp",
    maxPhysAddrBits: o.maxPhysAddrBits ?? 46,
    features: o.features ?? {},
  });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: GiB,
    flags: 0,
    backing: o.backing ?? "4k",
    userspaceAddr: 4 * GiB,
  });
  const b = new GuestPageTableBuilder(vm, { mode, poolBase: POOL, poolSize: MiB });
  b.map(GVA - 0x3123, GPA, 2 * MiB, { user: true, writable: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...b.sregs({ nx: mode !== "32-bit" }), cpl: 3 });
  return { vm, b, vcpu };
}

/** KVM_SET_USER_MEMORY_REGION on slot 0 of {@link guest} (4 KiB backing) with the dirty log on. */
function startDirtyLog(vm: ReturnType<typeof createVm>): void {
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: GiB,
    flags: KVM_MEM_LOG_DIRTY_PAGES,
    backing: "4k",
    userspaceAddr: 4 * GiB,
  });
}

/** Guest levels the walk reads from memory, top first (PAE: the PDPTE is a register). */
const GUEST_LEVELS: Record<Mode, number[]> = {
  "5-level": [5, 4, 3, 2, 1],
  "4-level": [4, 3, 2, 1],
  pae: [2, 1],
  "32-bit": [2, 1],
};
const NAMES = ["", "PT", "PD", "PDPT", "PML4", "PML5"];

/** Memory references of a 2-D walk: each guest read costs e + 1, the data access e. */
const refsOf = (g: number, e: number) => (g + 1) * (e + 1) - 1;

/** EPT levels of one translation: root level down to the leaf level of the backing. */
const eptLevelsDown = (root: number, backing: Backing) => {
  const leaf = backing === "4k" ? 1 : backing === "thp" ? 2 : 3;
  const out: number[] = [];
  for (let l = root; l >= leaf; l--) out.push(l);
  return out;
};

/** Every reference number in the CPU's order: per column its EPT steps, then the guest read. */
function refSequence(w: TwoDimWalk): number[] {
  const out: number[] = [];
  for (const c of w.columns) {
    for (const s of c.ept) out.push(s.ref);
    if (c.guestRef !== undefined) out.push(c.guestRef);
  }
  return out;
}

const range = (n: number) => Array.from({ length: n }, (_v, i) => i + 1);

/** The gpa each column must translate: the entries where the builder put them, then the data. */
function expectedGpas(b: GuestPageTableBuilder, mode: Mode): number[] {
  return [...GUEST_LEVELS[mode].map((l) => b.entryAddress(GVA, l)!), GPA + 0x3123];
}

/** EPT index of `gpa` at `level`: bits 12 + 9(level − 1) .. +8 of the gpa. */
const eptIndex = (gpa: number, level: number) => Math.floor(gpa / PAGE / 512 ** (level - 1)) % 512;

describe("vcpu.walk2d: references from geometry", () => {
  const cases: { mode: Mode; backing: Backing; bits: number; g: number; e: number }[] = [
    { mode: "4-level", backing: "4k", bits: 46, g: 4, e: 4 },
    { mode: "5-level", backing: "4k", bits: 46, g: 5, e: 4 },
    { mode: "5-level", backing: "4k", bits: 52, g: 5, e: 5 },
    { mode: "4-level", backing: "4k", bits: 52, g: 4, e: 5 },
    { mode: "pae", backing: "4k", bits: 46, g: 2, e: 4 },
    { mode: "32-bit", backing: "4k", bits: 46, g: 2, e: 4 },
    { mode: "4-level", backing: "thp", bits: 46, g: 4, e: 3 },
    { mode: "4-level", backing: "hugetlb-1g", bits: 46, g: 4, e: 2 },
  ];
  for (const c of cases) {
    const want = refsOf(c.g, c.e);
    it(`${c.mode} guest on ${c.bits > 48 ? 5 : 4}-level EPT, ${c.backing} backing: (${c.g}+1)(${c.e}+1)-1 = ${want} references, cold and warm`, () => {
      const { vm, b, vcpu } = guest({ mode: c.mode, backing: c.backing, maxPhysAddrBits: c.bits });
      const root = c.bits > 48 ? 5 : 4;
      const fixed0 = vm.stats.pf_fixed;
      const cold = vcpu.walk2d(GVA, { write: true, user: true });
      expect(cold.fault).toBe(false);
      expect(cold.gpa).toBe(GPA + 0x3123);
      expect(cold.eptLevels).toBe(root);
      expect(cold.references).toBe(want);
      expect(refSequence(cold)).toEqual(range(want));
      // Columns: PAE's PDPTE register first (no EPT walk, no reference), then one per guest
      // table read, top first, then the data.
      const gpte = cold.columns.filter((k) => k.kind === "gpte");
      expect(gpte.map((k) => k.name)).toEqual(GUEST_LEVELS[c.mode].map((l) => NAMES[l]));
      expect(cold.columns.map((k) => k.kind)).toEqual([
        ...(c.mode === "pae" ? ["pdptr"] : []),
        ...GUEST_LEVELS[c.mode].map(() => "gpte"),
        "data",
      ]);
      if (c.mode === "pae") {
        expect(cold.columns[0]!.ept).toEqual([]);
        expect(cold.columns[0]!.guestRef).toBeUndefined();
      }
      const walked = cold.columns.filter((k) => k.kind !== "pdptr");
      expect(walked.map((k) => k.gpa)).toEqual(expectedGpas(b, c.mode));
      for (const k of walked) {
        expect(k.ept.map((s) => s.level)).toEqual(eptLevelsDown(root, c.backing));
        for (const s of k.ept) expect(s.index).toBe(eptIndex(k.gpa, s.level));
        expect(k.eptResult).toBe("mapped");
      }
      // Cold on 4 KiB backing: every table page and the data page is its own EPT violation,
      // one pf_fixed each (the builder's stores are host writes: they map nothing). Larger
      // leaves: the table pool and the data share a 2 MiB / 1 GiB leaf per distinct region.
      const frames = new Set(walked.map((k) => Math.floor(k.gpa / PAGE)));
      const span = c.backing === "4k" ? 1 : c.backing === "thp" ? 512 : 512 * 512;
      const regions = new Set([...frames].map((f) => Math.floor(f / span)));
      expect(cold.violations).toBe(regions.size);
      expect(vm.stats.pf_fixed - fixed0).toBe(regions.size);
      // The same access again: every EPT entry present, every A/D bit set: the same references,
      // no violation, nothing installed, nothing set.
      const warm = vcpu.walk2d(GVA, { write: true, user: true });
      expect(warm.references).toBe(want);
      expect(refSequence(warm)).toEqual(range(want));
      expect(warm.violations).toBe(0);
      expect(warm.columns.some((k) => k.violation !== undefined)).toBe(false);
      expect(warm.columns.flatMap((k) => k.ept).some((s) => s.installed || s.aSet || s.dSet)).toBe(
        false,
      );
      expect(warm.adSet).toEqual({ guestA: 0, guestD: 0, eptA: 0, eptD: 0 });
      expect(vm.audit()).toEqual([]);
    });
  }

  it("a 2 MiB EPT leaf under the data column only: 4 columns of 4 + 1, then 3", () => {
    // Tables in a 4 KiB-backed slot, data in a THP slot whose hva is 2 MiB-aligned with its gpa.
    const vm = createVm({ mmu: "tdp" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GPA, flags: 0, backing: "4k" });
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: GPA,
      memorySize: GiB - GPA,
      flags: 0,
      backing: "thp",
      userspaceAddr: 4 * GiB + GPA,
    });
    const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: POOL, poolSize: MiB });
    b.map(GVA - 0x3123, GPA, 2 * MiB, { user: true, writable: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...b.sregs({ nx: true }), cpl: 3 });
    const w = vcpu.walk2d(GVA, { user: true });
    expect(w.columns.map((c) => c.ept.length)).toEqual([4, 4, 4, 4, 3]);
    expect(w.columns.at(-1)!.ept.at(-1)!.pageSize).toBe(2 * MiB);
    expect(w.references).toBe(4 * (4 + 1) + 3);
    expect(refSequence(w)).toEqual(range(23));
  });

  it("guest paging off: the data access alone, e references", () => {
    const vm = createVm({ mmu: "tdp" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GiB, flags: 0, backing: "4k" });
    const vcpu = vm.createVcpu();
    const w = vcpu.walk2d(0x123456);
    expect(w.mode).toBe("none");
    expect(w.columns.map((c) => c.kind)).toEqual(["data"]);
    expect(w.references).toBe(refsOf(0, 4));
    expect(w.gpa).toBe(0x123456);
    expect(w.violations).toBe(1);
  });
});

describe("vcpu.walk2d: the first EPT violation of each column", () => {
  it("cold: the first column stops at the empty root, later ones at the first missing entry", () => {
    const { b, vcpu } = guest();
    const w = vcpu.walk2d(GVA, { user: true });
    const [pml4e, pdpte, pde, pte, data] = w.columns;
    // Nothing is mapped: the walk of the first table stops at the EPT PML4 entry.
    expect(pml4e!.violation).toMatchObject({ count: 1, level: 4, name: "PML4" });
    expect(pml4e!.ept.every((s) => s.installed)).toBe(true);
    // The next tables share the first's EPT PT table (the pool is one 2 MiB region): each
    // stops at its own missing EPT PTE, and only that entry is new.
    const pool = Math.floor(b.entryAddress(GVA, 4)! / (2 * MiB));
    for (const c of [pdpte!, pde!, pte!]) {
      expect(Math.floor(c.gpa / (2 * MiB))).toBe(pool);
      expect(c.violation).toMatchObject({ count: 1, level: 1, name: "PT" });
      expect(c.ept.map((s) => s.installed)).toEqual([false, false, false, true]);
    }
    // The data is in another 2 MiB region of the same GiB: a new EPT PD entry and PTE.
    expect(data!.violation).toMatchObject({ count: 1, level: 2, name: "PD" });
    expect(data!.ept.map((s) => s.installed)).toEqual([false, false, true, true]);
    // With EPT A/D the table reads are writes, and an EPT violation on one sets both the read
    // and the write bit of the exit qualification: handle_ept_violation reports USER | WRITE.
    // The data read reports USER. Nothing was present, so no PRESENT bit.
    for (const c of [pml4e!, pdpte!, pde!, pte!]) {
      expect(c.eptAccess).toBe("write");
      expect(c.violation!.errorCode).toBe(0x4 | 0x2);
    }
    expect(data!.eptAccess).toBe("read");
    expect(data!.violation!.errorCode).toBe(0x4);
    expect(w.violations).toBe(5);
  });

  it("a gpa without a memslot: the data access ends in an MMIO exit", () => {
    const { b, vcpu } = guest();
    // Point the leaf at gpa 2 GiB, beyond the 1 GiB memslot.
    b.setEntry(GVA, 1, BigInt(2 * GiB) | 0x7n);
    const w = vcpu.walk2d(GVA, { user: true });
    expect(w.fault).toBe(false);
    expect(w.guest.mmio).toBe(true);
    const data = w.columns.at(-1)!;
    expect(data.eptResult).toBe("mmio");
    expect(data.hpa).toBeUndefined();
    expect(data.violation?.count).toBe(1);
    // The references of the exiting walk: down to the entry it found missing.
    expect(w.references).toBe(4 * 5 + data.ept.length);
    expect(refSequence(w)).toEqual(range(w.references));
    // The second time the EPT walk finds the MMIO spte KVM installed: a misconfiguration.
    const again = vcpu.walk2d(GVA, { user: true });
    const d2 = again.columns.at(-1)!;
    expect(d2.violation?.reason).toMatch(/misconfiguration/);
    expect(d2.violation?.errorCode).toBe(0x4 | 0x8); // USER | RSVD
  });
});

describe("vcpu.walk2d: A/D bits", () => {
  it("guest entries: A on every level the walk reads, D only on the leaf of a write", () => {
    for (const write of [false, true]) {
      const { b, vcpu } = guest();
      const levels = GUEST_LEVELS["4-level"];
      for (const l of levels) expect(b.getEntry(GVA, l)! & (PT_A | PT_D)).toBe(0n);
      const w = vcpu.walk2d(GVA, { write, user: true });
      const cols = w.columns.filter((c) => c.kind === "gpte");
      levels.forEach((l, i) => {
        const e = b.getEntry(GVA, l)!;
        expect(e & PT_A).toBe(PT_A);
        expect(e & PT_D).toBe(write && l === 1 ? PT_D : 0n);
        const g = w.guest.levels[cols[i]!.guestLevel!]!;
        expect(g.aSet).toBe(true);
        expect(g.dSet).toBe(write && l === 1);
        expect(g.after).toBe(e);
      });
      expect(w.adSet).toMatchObject({ guestA: 4, guestD: write ? 1 : 0 });
    }
  });

  it("EPT A/D on, PML logging (D cleared): guest table reads set D in their EPT leaves, a data read does not", () => {
    const { vm, vcpu } = guest({ features: { pml: true } });
    vcpu.walk2d(GVA, { write: true, user: true });
    // Enabling the dirty log with PML clears D in the 4 KiB leaves (kvm_mmu_slot_leaf_clear_dirty).
    startDirtyLog(vm);
    const read = vcpu.walk2d(GVA, { user: true });
    expect(read.violations).toBe(0);
    for (const c of read.columns) {
      const leaf = c.ept.at(-1)!;
      expect(leaf.before & EPT_D).toBe(0n);
      // Accesses to guest paging structures are writes for EPT: D; the data read: no D.
      expect(leaf.dSet).toBe(c.kind === "gpte");
      expect(leaf.aSet).toBe(false); // A stayed set
      for (const s of c.ept.slice(0, -1)) expect(s.aSet || s.dSet).toBe(false);
    }
    const write = vcpu.walk2d(GVA, { write: true, user: true });
    expect(write.columns.at(-1)!.ept.at(-1)!.dSet).toBe(true);
    expect(write.columns.filter((c) => c.kind === "gpte").every((c) => !c.ept.at(-1)!.dSet)).toBe(
      true,
    );
    expect(vm.audit()).toEqual([]);
  });

  it("EPT A/D on, logging without PML: each table's write-protected leaf takes a violation (U|W|P)", () => {
    const { vm, vcpu } = guest();
    vcpu.walk2d(GVA, { user: true });
    startDirtyLog(vm);
    const w = vcpu.walk2d(GVA, { user: true });
    for (const c of w.columns.filter((k) => k.kind === "gpte")) {
      // USER | WRITE (a paging-structure access with EPT A/D), PRESENT (the leaf allows reads).
      expect(c.violation).toMatchObject({ count: 1, level: 1, name: "PT", errorCode: 0x7 });
      expect(c.violation!.reason).toMatch(/does not allow write/);
    }
    // The data read is allowed by a write-protected leaf.
    expect(w.columns.at(-1)!.violation).toBeUndefined();
    expect(w.violations).toBe(4);
    expect(w.references).toBe(24);
  });

  it("legacy MMU with prefetch: the CPU sets EPT A in the prefetched leaves of the next tables", () => {
    const { b, vcpu } = guest({ features: { mmuFlavor: "legacy_direct", prefetch: true } });
    const w = vcpu.walk2d(GVA, { user: true });
    const tables = GUEST_LEVELS["4-level"].map((l) => Math.floor(b.entryAddress(GVA, l)! / PAGE));
    // direct_pte_prefetch maps the aligned group of 8 around the fault, without A.
    const group = (gfn: number) => Math.floor(gfn / 8);
    // The builder allocated the four tables one after another: one group, three prefetched.
    expect(new Set(tables.map(group)).size).toBe(1);
    const cols = w.columns.filter((c) => c.kind === "gpte");
    tables.forEach((gfn, i) => {
      const leaf = cols[i]!.ept.at(-1)!;
      const prefetched = i > 0 && group(gfn) === group(tables[0]!);
      expect(cols[i]!.violation === undefined).toBe(prefetched);
      expect(leaf.aSet).toBe(prefetched);
      expect(leaf.installed).toBe(!prefetched);
      expect(leaf.after & EPT_A).toBe(EPT_A);
    });
  });

  it("EPT A/D off: no A/D in any EPT entry, table reads are reads; an A write-back into a write-protected table is a violation of its own", () => {
    const { vm, b, vcpu } = guest({ features: { eptAccessDirty: false } });
    const cold = vcpu.walk2d(GVA, { user: true });
    expect(cold.eptAccessDirty).toBe(false);
    expect(cold.references).toBe(24);
    for (const c of cold.columns) {
      expect(c.eptAccess).toBe("read");
      for (const s of c.ept) expect(s.after & (EPT_A | EPT_D)).toBe(0n);
    }
    startDirtyLog(vm);
    // The guest clears A in its PTE: the next read must write it back, into a table whose
    // leaf dirty logging write-protected.
    b.setEntry(GVA, 1, b.getEntry(GVA, 1)! & ~PT_A);
    const w = vcpu.walk2d(GVA, { user: true });
    const cols = w.columns.filter((c) => c.kind === "gpte");
    expect(cols.map((c) => c.violation)).toEqual([undefined, undefined, undefined, undefined]);
    expect(cols.map((c) => c.writeBackViolations)).toEqual([0, 0, 0, 1]);
    expect(w.violations).toBe(1);
    expect(b.getEntry(GVA, 1)! & PT_A).toBe(PT_A);
  });
});

describe("vcpu.walk2d makes the access vcpu.walk() makes", () => {
  for (const o of [
    { mode: "4-level" as Mode, write: true },
    { mode: "pae" as Mode, write: false },
    { mode: "32-bit" as Mode, write: true },
    { mode: "4-level" as Mode, write: false, features: { eptAccessDirty: false } },
  ]) {
    it(`${o.mode}${o.features ? " without EPT A/D" : ""}, ${o.write ? "write" : "read"}: same result, counters, guest entries and EPT tree`, () => {
      const a = guest(o);
      const b = guest(o);
      for (const gva of [GVA, GVA + PAGE, GVA]) {
        const w2 = a.vcpu.walk2d(gva, { write: o.write, user: true });
        const w1 = b.vcpu.walk(gva, { write: o.write, user: true });
        expect(w2.guest.toPayload()).toEqual(w1.toPayload());
      }
      expect({ ...a.vm.stats }).toEqual({ ...b.vm.stats });
      expect({ ...a.vcpu.stat }).toEqual({ ...b.vcpu.stat });
      expect(a.vm.snapshot().payload()).toEqual(b.vm.snapshot().payload());
      expect(a.b.snapshot().payload).toEqual(b.b.snapshot().payload);
    });
  }

  it("a guest #PF: the columns the walk read, no data column; the fault as vcpu.walk() reports it", () => {
    const { vcpu } = guest();
    const gva = GVA - 0x3123 + 2 * MiB; // same PD, PDE not present
    const w = vcpu.walk2d(gva, { user: true });
    expect(w.fault).toBe(true);
    expect(w.guest.vector).toBe(14);
    expect(w.columns.map((c) => c.name)).toEqual(["PML4", "PDPT", "PD"]);
    expect(w.references).toBe(3 * 5);
  });

  it("a non-canonical gva: #GP, no reference", () => {
    const { vcpu } = guest();
    const w = vcpu.walk2d(0x0000800000000000n);
    expect(w.guest.vector).toBe(13);
    expect(w.columns).toEqual([]);
    expect(w.references).toBe(0);
  });
});

describe("vcpu.walk2d: errors", () => {
  it("shadow paging and mmu none: the 2-D walk is EPT's", () => {
    for (const mmu of ["shadow", "none"] as const) {
      const { vm, vcpu } = guest({ mmu });
      const walks = vcpu.stat.walks;
      let err: unknown;
      try {
        vcpu.walk2d(GVA);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument).toBe("mmu");
      expect((err as Error).message).toContain(`"${mmu}"`);
      expect((err as Error).message).toMatch(
        /"tdp": the 2-D walk nests the guest walk in EPT walks/,
      );
      expect(vcpu.stat.walks).toBe(walks);
      expect(vm.audit()).toEqual([]);
    }
  });

  it("a bad gva or bad options: InvalidArgumentError naming it, nothing run", () => {
    const { vm, vcpu } = guest();
    const before = { ...vm.stats };
    for (const bad of [-1, 1.5, 2 ** 64, 2n ** 64n, "0x40003123", null]) {
      expect(() => vcpu.walk2d(bad as unknown as number)).toThrow(InvalidArgumentError);
      expect(() => vcpu.walk2d(bad as unknown as number)).toThrow(/invalid gva/);
    }
    expect(() => vcpu.walk2d(GVA, { write: "yes" } as never)).toThrow(InvalidArgumentError);
    expect({ ...vm.stats }).toEqual(before);
  });
});

describe("TwoDimWalk display", () => {
  it("payload validates against the schema; bundle has the grid and text; toString sums it up", () => {
    const { vcpu } = guest();
    const w = vcpu.walk2d(GVA, { write: true, user: true });
    const p = w.toPayload();
    expect(validateDisplayPayload(WALK2D_MIME, p)).toEqual({ ok: true });
    expect(p.references).toBe(24);
    expect(p.columns.map((c) => c.name)).toEqual(["PML4", "PDPT", "PD", "PT", "data"]);
    expect(p.columns[0]!.ept[0]).toMatchObject({ level: 4, name: "PML4", ref: 1, installed: true });
    expect(p.columns[0]!.guestRef).toBe(5);
    const bundle = w[JUPYTER_DISPLAY]() as Record<string, unknown>;
    expect(Object.keys(bundle).sort()).toEqual([WALK2D_MIME, "text/html", "text/plain"].sort());
    expect(String(bundle["text/plain"])).toMatch(
      /^2-D walk of gva 0x40003123 .*: 24 memory references, 5 EPT violations/,
    );
    expect(String(bundle["text/html"])).toContain("EPT PML4");
    expect(String(w)).toBe(
      "walk2d 4-level guest on 4-level EPT, gva 0x40003123: 24 memory references, 5 EPT violations; gpa 0x1003123",
    );
  });
});
