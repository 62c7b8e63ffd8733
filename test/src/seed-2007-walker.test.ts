// Issue 15: notebook 03 (seed 2007, "KVM: MMU: Simplify page table walker") runs under nbconvert,
// and the numbers of its results match what the rules give, computed here without the simulator:
// the x86 paging rules (SDM error codes), the 2.6.2x FNAME(walk_addr) (per-level checks, A set
// while walking, D after it, the exit's W/U/F bits), today's FNAME(walk_addr_generic) (rights of
// the whole path, A/D after a successful walk) and the shadow MMU of the time (a clean gpte gives a
// read-only spte; an access exits to KVM when its spte is missing or lacks the right).
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { executeNotebookOnce, type Notebook, repo, text } from "./jupyter";

type Walker = "w07a" | "w07p" | "w07b" | "modern";
const WALKERS: Walker[] = ["w07a", "w07p", "w07b", "modern"];

// The workload as the notebook defines it: 1000 user accesses, xorshift32 (13, 17, 5) seeded
// with 2007; page = x mod 256 (32 regions of 8 pages), op = (x >>> 8) mod 10: 0-5 read, 6-8
// write, 9 fetch.
const SEED = 2007;
const ACCESSES = 1000;
const REGIONS = 32;
const PAGES = 8;

function accesses(): Array<{ r: number; j: number; op: "read" | "write" | "fetch" }> {
  let x = SEED;
  const out: Array<{ r: number; j: number; op: "read" | "write" | "fetch" }> = [];
  for (let i = 0; i < ACCESSES; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    const page = x % (REGIONS * PAGES);
    const k = (x >>> 8) % 10;
    out.push({
      r: Math.floor(page / PAGES),
      j: page % PAGES,
      op: k < 6 ? "read" : k < 9 ? "write" : "fetch",
    });
  }
  return out;
}

/** One guest entry as the rules see it: present, R/W, U/S, NX, A, D. */
type Gpte = Record<"p" | "rw" | "us" | "nx" | "a" | "d", boolean>;
const entry = (over: Partial<Gpte> = {}): Gpte => ({
  p: true,
  rw: true,
  us: true,
  nx: false,
  a: false,
  d: false,
  ...over,
});

/**
 * The guest of the notebook: one PML4E and one PDPTE; region r's PDE lacks R/W when r mod 8 = 5
 * and U/S when r mod 8 = 6; page j of a region is read-only (5), NX (6) or absent (7), and every
 * page of a region with r mod 8 = 7 is absent. All A/D clear.
 */
function guest() {
  const pml4e = entry();
  const pdpte = entry();
  const pde = Array.from({ length: REGIONS }, (_, r) =>
    entry({ rw: r % 8 !== 5, us: r % 8 !== 6 }),
  );
  const pte = Array.from({ length: REGIONS }, (_, r) =>
    Array.from({ length: PAGES }, (_, j) =>
      r % 8 === 7 || j === 7 ? entry({ p: false }) : entry({ rw: j !== 5, nx: j === 6 }),
    ),
  );
  return { pml4e, pdpte, pde, pte };
}

const W = 2;
const U = 4;
const F = 0x10;
const Pbit = 1;

/** What the notebook's workload table must say for `walker`. */
function expected(walker: Walker) {
  const g = guest();
  // The shadow PTE of each page: undefined until a walk succeeds; then W only when the whole
  // path is writable and the gpte is dirty (a clean gpte maps read-only), X unless NX.
  const spte = new Map<string, { w: boolean; x: boolean }>();
  const used = new Set<number>();
  const t = {
    kvm_walks: 0,
    a_bits_set: 0,
    d_bits_set: 0,
    a_bits_by_failing_walks: 0,
    failing_walks_setting_a: 0,
    error_codes_unlike_sdm: 0,
    pf_fixed: 0,
    pf_guest: 0,
    gpte_reads: 0,
    gpte_ad_writes: 0,
    d_after_walk: 0,
    mmu_pte_write: 0,
  };
  const old = walker !== "modern";
  for (const a of accesses()) {
    const write = a.op === "write";
    const fetch = a.op === "fetch";
    const key = `${a.r}/${a.j}`;
    const s = spte.get(key);
    // The CPU walks the sptes; only a missing spte or a missing right exits to KVM.
    if (s !== undefined && !(write && !s.w) && !(fetch && !s.x)) {
      used.add(a.r);
      continue;
    }
    t.kvm_walks++;
    const path = [g.pml4e, g.pdpte, g.pde[a.r]!, g.pte[a.r]![a.j]!];
    const leaf = path[3]!;
    const ec = (write ? W : 0) | U | (fetch ? F : 0); // EFER.NX is on: F is architectural
    const refuses = (e: Gpte) => (write && !e.rw) || !e.us || (fetch && e.nx);
    // SDM: an absent entry on the path is a not-present fault; else the rights of the path.
    const all = {
      ...leaf,
      rw: path.every((e) => e.rw),
      us: path.every((e) => e.us),
      nx: path.some((e) => e.nx),
    };
    const sdm = path.some((e) => !e.p) ? ec : refuses(all) ? ec | Pbit : null;
    let err: number | null;
    let aBits = 0;
    if (old) {
      // Per level: read, not present -> 0, own rights -> P, else A right away.
      err = null;
      for (const e of path) {
        t.gpte_reads++;
        if (!e.p) {
          err = ec;
          break;
        }
        if (refuses(e)) {
          err = ec | Pbit;
          break;
        }
        if (!e.a) {
          e.a = true;
          aBits++;
          t.gpte_ad_writes++;
        }
      }
      if (err === null && write && !leaf.d) {
        leaf.d = true;
        t.d_bits_set++;
        t.gpte_ad_writes++;
        if (walker === "w07a") t.d_after_walk++;
        else t.mmu_pte_write++; // kvm_mmu_pte_write after the walker's D
      }
    } else {
      // Read every level (stop at an absent one), check the whole path, then A/D, one write per
      // changed entry.
      t.gpte_reads += path.findIndex((e) => !e.p) + 1 || 4;
      err = sdm;
      if (err === null) {
        for (const e of path) {
          const setD = e === leaf && write && !e.d;
          if (!e.a) aBits++;
          if (setD) t.d_bits_set++;
          if (!e.a || setD) t.gpte_ad_writes++;
          e.a = true;
          if (setD) e.d = true;
        }
      }
    }
    t.a_bits_set += aBits;
    if (err === null) {
      t.pf_fixed++;
      used.add(a.r);
      spte.set(key, { w: all.rw && leaf.d, x: !all.nx });
    } else {
      t.pf_guest++;
      t.a_bits_by_failing_walks += aBits;
      if (aBits > 0) t.failing_walks_setting_a++;
      if (err !== sdm) t.error_codes_unlike_sdm++;
    }
  }
  const pdesAccessedNeverUsed = g.pde.filter((e, r) => e.a && !used.has(r)).length;
  return {
    walker,
    preset: walker === "w07a" ? "v2.6.23" : "v2.6.25",
    accesses: ACCESSES,
    kvm_walks: t.kvm_walks,
    a_bits_set: t.a_bits_set,
    d_bits_set: t.d_bits_set,
    a_bits_by_failing_walks: t.a_bits_by_failing_walks,
    failing_walks_setting_a: t.failing_walks_setting_a,
    error_codes_unlike_sdm: t.error_codes_unlike_sdm,
    pdes_accessed_never_used: pdesAccessedNeverUsed,
    pf_fixed: t.pf_fixed,
    pf_guest: t.pf_guest,
    gpte_reads: t.gpte_reads,
    gpte_ad_writes: t.gpte_ad_writes,
    gpte_d_writes_after_walk: t.d_after_walk,
    mmu_pte_write: t.mmu_pte_write,
    // 1 for the walkers that kept a table mapped from one level to the next (before 42bf3f0a).
    mappings_held_max: walker === "w07a" || walker === "w07p" ? 1 : 0,
  };
}

// The error-code table (user mode, CR0.WP=1, EFER.NX=1 unless said), from the x86 rules and the
// 2007 walker's: P=0 where the walk meets an absent entry, P=1 for a refusal, RSVD|P for a
// reserved bit, I/D only with EFER.NXE; the 2007 walker stops at the first refusing entry, checks
// no reserved bit (the access goes on: no #PF) and sets I/D on every fetch.
const hex = (v: number | null) => (v === null ? "no #PF" : `0x${v.toString(16)}`);
const RSVD = 8;
const CODES: Array<[string, number | null, number | null]> = [
  // case, SDM (= modern), 2007 walkers
  ["read, PTE not present", U, U],
  ["write, read-only PTE", W | U | Pbit, W | U | Pbit],
  ["fetch, NX PTE", F | U | Pbit, F | U | Pbit],
  ["read, PDE without U/S above an absent PTE", U, U | Pbit],
  ["write, PDE without R/W above an absent PTE", W | U, W | U | Pbit],
  ["fetch, PTE not present, EFER.NXE=0", U, F | U],
  ["read, PML4E with bit 7 set (reserved)", RSVD | U | Pbit, null],
  ["read, PTE with bit 51 set (above MAXPHYADDR)", RSVD | U | Pbit, null],
  ["read, PTE with NX set, EFER.NXE=0 (reserved)", RSVD | U | Pbit, null],
];

describe("03-seed-2007-walker: the notebook's numbers match the walker rules", () => {
  let nb: Notebook;
  let results: {
    workload: Record<string, number>;
    totals: Array<Record<string, number | string>>;
    errorCodes: Array<Record<string, string>>;
  };
  beforeAll(() => {
    nb = executeNotebookOnce(path.join(repo, "notebooks", "03-seed-2007-walker.ipynb"));
    const all = nb.cells
      .flatMap((c) => c.outputs ?? [])
      .map((o) => o.data?.["application/vnd.mmulab.results+json"])
      .filter((d) => d !== undefined);
    expect(all).toHaveLength(1);
    results = all[0] as typeof results;
  });

  it("runs without errors and its claims cell reports every check holding", () => {
    const outputs = nb.cells.flatMap((c) => c.outputs ?? []);
    expect(outputs.filter((o) => o.output_type === "error").map((o) => o.evalue)).toEqual([]);
    const plain = outputs.map((o) => text(o.data?.["text/plain"] as string | string[]));
    expect(plain.some((t) => /^'?all \d+ checks hold'?$/.test(t.trim()))).toBe(true);
    // Walk traces drawn by the walk renderer, and plotly figures.
    const mimes = outputs.flatMap((o) => Object.keys(o.data ?? {}));
    expect(mimes.filter((m) => m === "application/vnd.mmulab.walk+json").length).toBeGreaterThan(0);
    expect(mimes.filter((m) => m === "application/vnd.plotly.v1+json").length).toBeGreaterThan(0);
  });

  it("the workload is the one modelled here", () => {
    expect(results.workload).toEqual({
      seed: SEED,
      accesses: ACCESSES,
      regions: REGIONS,
      pagesPerRegion: PAGES,
    });
  });

  it("every workload total of every walker", () => {
    expect(results.totals).toEqual(WALKERS.map(expected));
  });

  it("the error codes against the SDM", () => {
    expect(results.errorCodes).toEqual(
      CODES.map(([name, sdm, old]) => ({
        case: name,
        SDM: hex(sdm),
        w07a: hex(old),
        w07p: hex(old),
        w07b: hex(old),
        modern: hex(sdm),
      })),
    );
  });
});
