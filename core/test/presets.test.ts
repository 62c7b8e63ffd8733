/**
 * Era presets (era/presets.ts): each runs S1 (a 1 GiB guest on THP, one read per 4 KiB page)
 * and one dirty-log cycle (enable, write every page, GET_DIRTY_LOG, disable, read every page),
 * and the numbers are checked against what the era's rules give for that geometry — the ones
 * that tell neighbouring presets apart: MMU data pages (v2.6.34 vs v2.6.35), the fast path and
 * collapse (v2.6.35 vs v4.1), zap-on-fault and the TDP MMU (v4.2 vs v5.10), eager split
 * (v5.10 vs v6.12), collapse flushes (v6.12 vs v6.13), the bitmap (v4.2 vs rfc-fast-wp).
 * v2.6.23 and v2.6.25 run shadow paging with the walkers before and after seed 2007.
 */
import { describe, expect, it } from "vitest";
import { createVm, PRESETS, type PresetName, presetTable } from "../src";
import { JUPYTER_DISPLAY } from "../src/display";
import { thpGibGuest } from "./tdp-helpers";

const GIB = 2 ** 30;
const PAGES = GIB / 4096;
const HUGE = PAGES / 512;
const LOG = 1;

interface Era {
  /** A gfn array on direct pages (before seed 2010). */
  gfnsForDirect: boolean;
  /** TDP MMU (else the rmap MMU). */
  tdpMmu: boolean;
  eagerSplit: boolean;
  /** TDP MMU: a write under a huge leaf zaps it (5.10) instead of splitting (6.x). */
  zapOnFault: boolean;
  collapse: "none" | "rmap2015" | "zap" | "recover";
}

/** What the era rules say for S1 + one cycle (see kvm-mmu.md S1-S3 and §17). */
function expected(e: Era) {
  const tables = 3; // root, L3, L2 for 1 GiB of 2M leaves
  const writePass = e.tdpMmu
    ? e.eagerSplit
      ? { fast: PAGES, flushes: 0 } // split at enable; every write is a fast W restore
      : e.zapOnFault
        ? { fast: 0, flushes: HUGE } // first write per region zaps the leaf (one flush)
        : { fast: HUGE * 511, flushes: 0 } // split on fault, then fast faults
    : { fast: 0, flushes: HUGE }; // rmap MMU: huge leaf dropped per region, 4K slow faults
  const disable = {
    none: { flushes: 0, pages4k: PAGES },
    rmap2015: { flushes: 1, pages4k: 0 },
    zap: { flushes: e.tdpMmu ? HUGE : 1, pages4k: 0 },
    recover: { flushes: 1, pages4k: 0 },
  }[e.collapse];
  const touch = {
    none: { faults: 0, flushes: 0 },
    // rmap: each refault puts a 2M leaf over an empty PT (one flush each).
    rmap2015: { faults: HUGE, flushes: HUGE },
    zap: { faults: HUGE, flushes: e.tdpMmu ? 0 : HUGE },
    recover: { faults: 0, flushes: 0 },
  }[e.collapse];
  return {
    s1: { fixed: HUGE, lpages: HUGE, dataPages: tables * (e.gfnsForDirect ? 2 : 1) },
    enable: { flushes: 1, splits: e.tdpMmu && e.eagerSplit ? HUGE : 0 },
    writePass,
    get: { flushes: 1 },
    disable,
    touch,
  };
}

function cycle(preset: PresetName) {
  const vm = createVm({ preset, mmu: "tdp" });
  const { region, pass } = thpGibGuest(vm);
  const st = () => ({ ...vm.stats.toJSON() });
  pass(false);
  let b = st();
  const s1 = { fixed: b.pf_fixed!, lpages: b.lpages!, dataPages: b.mmu_data_pages_live! };
  region(LOG);
  let a = st();
  const enable = {
    flushes: a.remote_tlb_flush_requests! - b.remote_tlb_flush_requests!,
    splits: a.huge_splits! - b.huge_splits!,
  };
  b = a;
  pass(true);
  a = st();
  const writePass = {
    fast: a.pf_fast! - b.pf_fast!,
    flushes: a.remote_tlb_flush_requests! - b.remote_tlb_flush_requests!,
  };
  b = a;
  vm.getDirtyLog(0);
  a = st();
  const get = { flushes: a.remote_tlb_flush_requests! - b.remote_tlb_flush_requests! };
  b = a;
  region(0);
  a = st();
  const disable = {
    flushes: a.remote_tlb_flush_requests! - b.remote_tlb_flush_requests!,
    pages4k: a.pages_4k!,
  };
  b = a;
  pass(false);
  a = st();
  // Faults of the read pass: pf_fixed counts them in every era's stats (legacy: per mapping).
  const touch = {
    faults: a.pf_fixed! - b.pf_fixed!,
    flushes: a.remote_tlb_flush_requests! - b.remote_tlb_flush_requests!,
  };
  expect(vm.audit()).toEqual([]);
  return { vm, got: { s1, enable, writePass, get, disable, touch } };
}

const ERAS: Record<Exclude<PresetName, "v2.6.23" | "v2.6.25">, Era> = {
  "v2.6.34": {
    gfnsForDirect: true,
    tdpMmu: false,
    eagerSplit: false,
    zapOnFault: false,
    collapse: "none",
  },
  "v2.6.35": {
    gfnsForDirect: false,
    tdpMmu: false,
    eagerSplit: false,
    zapOnFault: false,
    collapse: "none",
  },
  "v4.1": {
    gfnsForDirect: false,
    tdpMmu: false,
    eagerSplit: false,
    zapOnFault: false,
    collapse: "rmap2015",
  },
  "v4.2": {
    gfnsForDirect: false,
    tdpMmu: false,
    eagerSplit: false,
    zapOnFault: false,
    collapse: "rmap2015",
  },
  "v5.10": {
    gfnsForDirect: false,
    tdpMmu: true,
    eagerSplit: false,
    zapOnFault: true,
    collapse: "zap",
  },
  "v6.12": {
    gfnsForDirect: false,
    tdpMmu: true,
    eagerSplit: true,
    zapOnFault: false,
    collapse: "zap",
  },
  "v6.13": {
    gfnsForDirect: false,
    tdpMmu: true,
    eagerSplit: true,
    zapOnFault: false,
    collapse: "recover",
  },
  "rfc-fast-wp": {
    gfnsForDirect: false,
    tdpMmu: false,
    eagerSplit: false,
    zapOnFault: false,
    collapse: "rmap2015",
  },
};

describe("era presets: S1 and one dirty-log cycle", () => {
  for (const [preset, era] of Object.entries(ERAS) as [keyof typeof ERAS, Era][]) {
    it(`${preset}: ${PRESETS[preset].release}`, () => {
      const { vm, got } = cycle(preset);
      expect(got).toEqual(expected(era));
      expect(vm.config.preset).toBe(preset);
      // The flavour the preset asks for is the one built.
      expect(vm.mmu!.tdp !== null).toBe(era.tdpMmu);
    }, 60_000);
  }

  it("rfc-fast-wp keeps the possible-writable bitmap; v4.2 has none", () => {
    const rfc = cycle("rfc-fast-wp").vm;
    const v42 = cycle("v4.2").vm;
    expect(rfc.fastWriteProtectAll().examined).toBe(1); // the root's one possibly-writable entry
    expect(v42.fastWriteProtectAll().examined).toBe(512); // scan mode
    expect(() => v42.writeProtectAllSps({ mode: "bitmap" })).toThrow(/possibleWritableBitmap/);
  }, 60_000);

  // S5's walk (PML4 0x100, PDPT 0x101, PD 0x102, PT 0x103; gva 0x400000 -> data gfn 0x200),
  // all entries P|RW|US with A and D clear, written once by the user.
  function s5Write(preset: "v2.6.23" | "v2.6.25") {
    const vm = createVm({ preset });
    expect(vm.mmuMode).toBe("shadow");
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
    vm.guestWrite64(0x100000, 0x101007n);
    vm.guestWrite64(0x101000, 0x102007n);
    vm.guestWrite64(0x102010, 0x103007n);
    vm.guestWrite64(0x103000, 0x200007n);
    const v = vm.createVcpu();
    v.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
    expect(v.write(0x400000, 1n).fault).toBe(false);
    // One exit, one walk: 4 A writes while walking + the leaf's D (S5 walker-flavour table).
    expect(vm.stats.gpte_ad_writes).toBe(5);
    expect(vm.stats.gpte_reads).toBe(4);
    // v4-era stats: pf_fixed per installed mapping, no pf_taken.
    expect(vm.stats.pf_fixed).toBe(1);
    expect(vm.stats.pf_taken).toBe(0);
    // Before seed 2010: the shadowed tables (indirect pages) have arrays either way.
    expect(vm.stats.translation_pages_live).toBe(4);
    expect(vm.audit()).toEqual([]);
    return { vm, v };
  }

  it("v2.6.23 runs shadow paging with the walker before seed 2007 (D when the spte is built)", () => {
    const { vm, v } = s5Write("v2.6.23");
    expect(vm.features.guestWalker).toBe("w07a");
    // 2.6.23 set D in set_pte_common, after the walk, and told the MMU nothing.
    expect(v.stat.gpte_d_writes_after_walk).toBe(1);
    expect(vm.stats.mmu_pte_write).toBe(0);
    // The walker kept the current table mapped from one level to the next.
    expect(vm.stats.mappings_held_max).toBe(1);
  });

  it("v2.6.25 runs shadow paging with the walker of seed 2007 (D at the end of the walk)", () => {
    const { vm, v } = s5Write("v2.6.25");
    expect(vm.features.guestWalker).toBe("w07b");
    // D set by the walker, which tells the MMU of its write (kvm_mmu_pte_write).
    expect(v.stat.gpte_d_writes_after_walk).toBe(0);
    expect(vm.stats.mmu_pte_write).toBe(1);
    expect(vm.stats.mappings_held_max).toBe(0);
  });

  it("v2.6.23 and v2.6.25 differ only in the walker; neither prefetches (pte_prefetch: 2.6.36)", () => {
    const a = createVm({ preset: "v2.6.23" }).features;
    const b = createVm({ preset: "v2.6.25" }).features;
    const differ = (Object.keys(a) as (keyof typeof a)[]).filter((k) => a[k] !== b[k]);
    expect(differ).toEqual(["guestWalker"]);
    expect(a.prefetch).toBe(false);
  });
});

describe("vm.config and the preset table", () => {
  it("each switch's value and source: default, preset or override", () => {
    const vm = createVm({ preset: "v4.2", features: { prefetch: false, pteListExt: 14 } });
    const c = vm.config;
    expect(c.get("collapseOnLogDisable")).toEqual({
      name: "collapseOnLogDisable",
      value: "rmap2015",
      source: "preset",
    });
    expect(c.get("pteListExt")).toEqual({ name: "pteListExt", value: 14, source: "override" });
    expect(c.get("prefetch")).toEqual({ name: "prefetch", value: false, source: "override" });
    expect(c.get("tdpLevels")?.source).toBe("default");
    const html = String(c[JUPYTER_DISPLAY]()["text/html"]);
    expect(html).toMatch(/preset v4\.2/);
  });

  it("a bad preset is named with the allowed ones; nothing is created", () => {
    expect(() => createVm({ preset: "v3.0" as never })).toThrow(/preset.*v3\.0.*"v2\.6\.23"/s);
  });

  it("renders every preset with the switches it sets", () => {
    const t = presetTable();
    expect(t.rows.map((r) => r.preset)).toEqual(Object.keys(PRESETS));
    expect(t.rows.find((r) => r.preset === "v6.13")!.collapseOnLogDisable).toBe("recover");
    expect(String(t[JUPYTER_DISPLAY]()["text/html"])).toMatch(/rfc-fast-wp/);
  });
});
