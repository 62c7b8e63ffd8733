/**
 * `vm.audit()` (mmu/mmu_audit.ts): clean after fixed-seed random sequences of faults, zaps,
 * invalidations and memslot changes, with the EPT leaf of every completed access checked against
 * the A/D rules (so that the CPU model's caches can never answer for a stale spte); and it
 * reports deliberately corrupted state.
 */
import { describe, expect, it } from "vitest";
import { PRESETS, type PresetName } from "../src";
import { MmuBugError } from "../src/errors";
import { pteListAdd } from "../src/mmu/mmu";
import type { SlotArch } from "../src/mmu/mmu_internal";
import { pfnHi, pfnLo } from "../src/mmu/spte";
import type { Vcpu } from "../src/vcpu";
import { createVm, type Vm } from "../src/vm";
import {
  EPT_A as SPTE_A,
  EPT_D as SPTE_D,
  HI_HOST_WRITABLE as SPTE_HI_HOST_WRITABLE,
  SPTE_MMU_PRESENT_BIT as SPTE_MMU_PRESENT,
  EPT_R as SPTE_R,
  EPT_W as SPTE_W,
  EPT_X as SPTE_X,
} from "./kvm-values";
import { lastSpte } from "./tdp-helpers";

const PAGE = 4096;
const MIB = 2 ** 20;
const GIB = 2 ** 30;

/** mulberry32: small deterministic PRNG (every random choice takes a seed). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BACKINGS = ["4k", "thp", "hugetlb-2m", "hugetlb-1g"] as const;

/**
 * What must hold right after a completed access to `gfn` under EPT with A/D bits (SDM "Accessed
 * and Dirty Flags for EPT"): the leaf the CPU used is present, allows the access and has A, and D
 * if it wrote; a write to a dirty-logged slot has set the page's bit (`mark_page_dirty_in_slot`
 * from the fault that made it writable, or from KVM_DIRTY_LOG_INITIALLY_SET). Returns what broke.
 */
function afterAccess(vm: Vm, vcpu: Vcpu, gfn: number, write: boolean, fetch: boolean): string {
  const l = lastSpte(vm, vcpu, gfn);
  const lo = l.lo;
  const where = `gfn 0x${gfn.toString(16)} (${write ? "write" : fetch ? "fetch" : "read"})`;
  if ((lo & SPTE_MMU_PRESENT) === 0) return `${where}: no present leaf`;
  const need = (write ? SPTE_W | SPTE_D : fetch ? SPTE_X : SPTE_R) | SPTE_A;
  if ((lo & need) !== need)
    return `${where}: leaf 0x${lo.toString(16)} lacks 0x${need.toString(16)}`;
  const slot = vm.memslots.gfnToSlot(gfn);
  if (write && slot?.dirtyBitmap != null && !slot.testDirty(gfn))
    return `${where}: written, not in the dirty bitmap`;
  return "";
}

function randomRun(seed: number, steps: number, features: Record<string, unknown>) {
  const rand = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
  const { nrMmuPages, preset, ...mmuFeatures } = features as Record<string, unknown>;
  const vm = createVm({
    mmu: "tdp",
    features: mmuFeatures,
    ...(typeof preset === "string" ? { preset: preset as PresetName } : {}),
  });
  // A tiny KVM_SET_NR_MMU_PAGES makes the legacy MMU recycle pages all the time.
  if (typeof nrMmuPages === "number") vm.setNrMmuPages(nrMmuPages);
  const vcpus = [vm.createVcpu(), vm.createVcpu()];
  const mmu = vm.mmu!;
  // Guest-physical space used: [0, 4 GiB) in 64 MiB units, slots of 1..16 units.
  const UNIT = 64 * MIB;
  const ops: Record<string, number> = {};
  const failures: string[] = [];
  let maxHuge = 0;
  for (let step = 0; step < steps; step++) {
    let op: string;
    const slots = vm.memslots.list();
    // With no memslot yet, the step creates one.
    const r = slots.length === 0 ? 1 : rand();
    if (r < 0.55) {
      op = rand() < 0.1 ? "fault-any" : "fault";
      // A burst of accesses in one slot (or anywhere: MMIO when unbacked).
      let gpa: number;
      if (op === "fault") {
        const s = pick(slots);
        gpa = (s.baseGfn + Math.floor(rand() * s.npages)) * PAGE;
      } else gpa = Math.floor(rand() * ((4 * GIB) / PAGE)) * PAGE;
      const n = 1 + Math.floor(rand() * 64);
      for (let k = 0; k < n && gpa < 4 * GIB; k++, gpa += PAGE) {
        const kind = rand();
        const write = kind < 0.5;
        const fetch = kind > 0.9;
        const vcpu = pick(vcpus);
        const res = vcpu.access(gpa, { write, fetch });
        const bad = res.fault || res.mmio ? "" : afterAccess(vm, vcpu, gpa / PAGE, write, fetch);
        if (bad !== "" && failures.length === 0) failures.push(`step ${step} (access): ${bad}`);
      }
    } else if (r < 0.65) {
      op = "zapGfnRange";
      const start = Math.floor(rand() * ((4 * GIB) / PAGE));
      vm.zapGfnRange(start, start + 1 + Math.floor(rand() * 4096));
    } else if (r < 0.72) {
      op = "mmuNotifierInvalidate";
      const start = Math.floor(rand() * ((4 * GIB) / PAGE));
      vm.mmuNotifierInvalidate(start, start + 1 + Math.floor(rand() * 600000));
    } else if (r < 0.77) {
      op = "zapSpte";
      vm.zapSpte(Math.floor(rand() * ((4 * GIB) / PAGE)));
    } else if (r < 0.79) {
      op = "zapAllFast";
      vm.zapAllFast();
    } else if (r < 0.83) {
      // KVM_GET_DIRTY_LOG on a dirty-logged slot (re-protects what was dirty).
      const logged = slots.filter((x) => x.dirtyBitmap !== null);
      if (logged.length === 0) op = "getDirtyLog-none";
      else {
        const slot = pick(logged);
        if (vm.features.manualDirtyLogProtect && rand() < 0.5) {
          // KVM_CLEAR_DIRTY_LOG of a random 64-aligned window with a random mask.
          op = "clearDirtyLog";
          const first = Math.floor(rand() * Math.ceil(slot.npages / 64)) * 64;
          const num = Math.min(slot.npages - first, 64 * (1 + Math.floor(rand() * 8)));
          const mask = new Uint32Array(Math.ceil(num / 32)).map(() => Math.floor(rand() * 2 ** 32));
          vm.clearDirtyLog(slot.id, first, num, mask);
        } else {
          op = "getDirtyLog";
          vm.getDirtyLog(slot.id);
        }
      }
    } else {
      // Memslot change: create / delete / move / flags; rejected requests must change nothing.
      const id = Math.floor(rand() * 4);
      const existing = vm.memslots.get(id);
      const units = 1 + Math.floor(rand() * 16);
      const base = Math.floor(rand() * (64 - units)) * UNIT + (rand() < 0.2 ? 1 * MIB : 0);
      const size = units * UNIT - (rand() < 0.2 ? 2 * MIB : 0);
      try {
        if (existing === undefined) {
          op = "create";
          vm.setUserMemoryRegion({
            slot: id,
            guestPhysAddr: base,
            memorySize: size,
            flags: rand() < 0.2 ? 1 : 0,
            backing: pick(BACKINGS),
          });
        } else if (rand() < 0.4) {
          op = "delete";
          vm.setUserMemoryRegion({
            slot: id,
            guestPhysAddr: existing.baseGfn * PAGE,
            memorySize: 0,
            flags: 0,
          });
        } else if (rand() < 0.5) {
          op = "move";
          vm.setUserMemoryRegion({
            slot: id,
            guestPhysAddr: base,
            memorySize: existing.npages * PAGE,
            flags: existing.flags,
          });
        } else {
          op = "flags";
          vm.setUserMemoryRegion({
            slot: id,
            guestPhysAddr: existing.baseGfn * PAGE,
            memorySize: existing.npages * PAGE,
            flags: existing.flags ^ 1,
          });
        }
      } catch (e) {
        op = "rejected";
        if (!(e instanceof Error) || !/EEXIST|overlap/.test(e.message)) throw e;
      }
    }
    ops[op] = (ops[op] ?? 0) + 1;
    maxHuge = Math.max(maxHuge, mmu.stats.pages_2m + mmu.stats.pages_1g);
    const v = vm.audit();
    if (v.length > 0) {
      failures.push(`step ${step} (${op}): ${v.slice(0, 5).join("; ")}`);
      break;
    }
  }
  return { ops, failures, stats: mmu.stats, maxHuge };
}

describe("vm.audit() after fixed-seed random sequences", () => {
  for (const [seed, features] of [
    [1, {}],
    [2, { selfCheckGfns: true }],
    [3, { allocTranslationForDirect: true, selfCheckGfns: true }],
    [4, { tdpLevels: 5 }],
    [5, { mmuFlavor: "legacy_direct" }],
    [
      6,
      {
        mmuFlavor: "legacy_direct",
        prefetch: false,
        allocTranslationForDirect: true,
        selfCheckGfns: true,
      },
    ],
    [7, { mmuFlavor: "legacy_direct", nrMmuPages: 64 }],
    [
      8,
      { manualDirtyLogProtect: true, dirtyLogInitiallySet: true, collapseOnLogDisable: "recover" },
    ],
    [9, { mmuFlavor: "legacy_direct", manualDirtyLogProtect: true, dirtyLogInitiallySet: true }],
    // Seed 2017's bitmap kept by both sinks; seed 2015's own collapse with per-spte flushes.
    [10, { possibleWritableBitmap: true }],
    [
      11,
      {
        mmuFlavor: "legacy_direct",
        possibleWritableBitmap: true,
        collapseOnLogDisable: "rmap2015",
        collapseFlush: "perSpte",
      },
    ],
  ] as const) {
    it(`seed ${seed} ${JSON.stringify(features)}: no violation after 400 steps`, () => {
      const { ops, failures, stats, maxHuge } = randomRun(seed, 400, features);
      expect(failures).toEqual([]);
      // The sequence really exercised every kind of operation.
      for (const k of [
        "fault",
        "zapGfnRange",
        "mmuNotifierInvalidate",
        "zapSpte",
        "create",
        "getDirtyLog",
      ])
        expect(ops[k] ?? 0).toBeGreaterThan(0);
      expect(stats.pf_fixed).toBeGreaterThan(0);
      expect(maxHuge).toBeGreaterThan(0);
    });
  }
});

describe("vm.audit() after random sequences with every era preset (mmu tdp)", () => {
  for (const [i, preset] of (Object.keys(PRESETS) as PresetName[]).entries()) {
    it(`preset ${preset}: no violation after 250 steps`, () => {
      const { failures, stats } = randomRun(100 + i, 250, { preset, nrMmuPages: 64 });
      expect(failures).toEqual([]);
      expect(stats.pf_fixed).toBeGreaterThan(0);
    });
  }
});

/** A small populated VM to corrupt: 8 MiB of 4K pages and 8 MiB of 2M pages. */
function populated(features: Record<string, unknown> = {}) {
  const vm = createVm({ features });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 8 * MIB,
    flags: 0,
    backing: "4k",
  });
  vm.setUserMemoryRegion({
    slot: 1,
    guestPhysAddr: GIB,
    memorySize: 8 * MIB,
    flags: 0,
    backing: "thp",
  });
  const vcpu = vm.createVcpu();
  for (let off = 0; off < 8 * MIB; off += PAGE) {
    vcpu.access(off, { write: true });
    vcpu.access(GIB + off, {});
  }
  expect(vm.audit()).toEqual([]);
  const mmu = vm.mmu!;
  const leaf = lastSpte(vm, vcpu, 5); // the 4K leaf of gfn 5
  return { vm, mmu, vcpu, sp: leaf.sp, idx: leaf.idx };
}

describe("vm.audit() reports corrupted state", () => {
  it("a leaf whose pfn does not back its gfn", () => {
    const { vm, mmu, sp, idx } = populated();
    const spt = mmu.store.spt[sp]!;
    const wrongPfn = 0x12345;
    spt[idx * 2] = ((spt[idx * 2]! & 0xfff) | pfnLo(wrongPfn)) >>> 0;
    spt[idx * 2 + 1] = ((spt[idx * 2 + 1]! & ~0xfffff) | pfnHi(wrongPfn)) >>> 0;
    expect(vm.audit().join("\n")).toMatch(/leaf pfn 0x12345 but gfn 0x5 is backed by/);
  });

  it("a gauge that drifted from the recount", () => {
    const { vm, mmu } = populated();
    mmu.stats.pages_4k += 1;
    expect(vm.audit().join("\n")).toMatch(/gauge pages_4k = 2049, recount = 2048/);
  });

  it("a child whose parent link disagrees with the tree", () => {
    const { vm, mmu, sp } = populated();
    mmu.store.parentIdx[sp] = (mmu.store.parentIdx[sp]! + 1) % 512;
    expect(vm.audit().join("\n")).toMatch(new RegExp(`child sp ${sp} does not record this entry`));
  });

  it("a leaked shadow page", () => {
    const { vm, mmu } = populated();
    const leaked = mmu.store.alloc((mmu.store.role[0]! & ~0xf) | 1, 0, true, false, false);
    expect(vm.audit().join("\n")).toMatch(new RegExp(`sp ${leaked} .*unreachable`));
  });

  it("a writable leaf without Host-writable (Host-writable clear ⇒ W clear)", () => {
    const { vm, mmu, sp, idx } = populated();
    mmu.store.spt[sp]![idx * 2 + 1]! &= ~SPTE_HI_HOST_WRITABLE;
    expect(vm.audit().join("\n")).toMatch(/writable leaf without Host-writable/);
  });

  it("a writable leaf in a dirty-logged slot whose gfn is not dirty (a write would go unlogged)", () => {
    const { vm, mmu, sp, idx } = populated({ eagerPageSplit: false });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 8 * MIB, flags: 1 });
    expect(vm.audit()).toEqual([]); // enabling logging write-protected every leaf
    mmu.store.spt[sp]![idx * 2]! |= SPTE_W;
    expect(vm.audit().join("\n")).toMatch(
      /writable leaf in dirty-logged slot 0 but gfn 0x5 is not dirty/,
    );
  });

  it("seed 2010: a stored gfn that contradicts the formula; the self-check throws on zap", () => {
    const { vm, mmu, sp, idx } = populated({
      allocTranslationForDirect: true,
      selfCheckGfns: true,
    });
    mmu.store.translation[sp]![idx] = 0x777;
    expect(vm.audit().join("\n")).toMatch(/stored gfn 0x777 differs from formula 0x5/);
    expect(() => vm.zapGfnRange(5, 6)).toThrow(MmuBugError);
  });
});

describe("vm.audit() reports corrupted legacy-MMU state", () => {
  function legacyPopulated() {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * MIB,
      flags: 0,
      backing: "4k",
    });
    const vcpu = vm.createVcpu();
    for (let off = 0; off < 4 * MIB; off += PAGE) vcpu.access(off, {});
    expect(vm.audit()).toEqual([]);
    const rmap = (vm.memslots.get(0)!.arch as SlotArch).rmap!;
    return { vm, legacy: vm.mmu!.shadow!, rmap };
  }

  it("a leaf missing from its rmap head", () => {
    const { vm, rmap } = legacyPopulated();
    rmap.heads[0][9] = 0;
    expect(vm.audit().join("\n")).toMatch(/leaf for gfn 0x9 is not on its rmap 0\/1\/9/);
  });

  it("an rmap entry that points at no leaf", () => {
    const { vm, legacy, rmap } = legacyPopulated();
    pteListAdd(legacy.rmapPool, rmap.heads[0], 700, 300); // root sp 0, entry 300: not a leaf
    expect(vm.audit().join("\n")).toMatch(/rmap 0\/1\/700 holds sptep/);
  });

  it("n_used_mmu_pages drift and a page missing from the hash", () => {
    const { vm, legacy } = legacyPopulated();
    vm.stats.n_used_mmu_pages--;
    const sp = legacy.listHead;
    legacy.hash.fill(-1);
    const report = vm.audit().join("\n");
    expect(report).toMatch(/gauge n_used_mmu_pages/);
    expect(report).toMatch(new RegExp(`sp ${sp} .*missing from its hash bucket`));
  });
});
