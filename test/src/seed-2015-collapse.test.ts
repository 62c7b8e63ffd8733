// Issue 15: notebook 04 (seed 2015, "kvm: mmu: lazy collapse small sptes into large sptes") runs
// under nbconvert, and every number of its results table matches what KVM's rules give for the
// geometry, computed here: a 1 GiB guest on THP is 512 regions of 2 MiB; writing its first
// 256 MiB with logging on breaks 128 of them into 4 KiB sptes.
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { executeNotebookOnce, type Notebook, repo, text } from "./jupyter";

const PAGES = 2 ** 30 / 4096; // 262 144 4 KiB pages in the guest
const REGIONS = PAGES / 512; // 512 regions of 2 MiB, each one 2M spte after populate
const WRITTEN = (256 * 2 ** 20) / 4096; // 65 536 pages written while logging
const DIRTY_REGIONS = WRITTEN / 512; // 128 regions broken up
// root (PML4) + PDPT + PD; each broken region adds one PT (level-1 page)
const TOP = 3;

type Row = Record<string, number | string>;
const ZERO = {
  orphan_pts: 0,
  faults: 0,
  flushes: 0,
  zapped: 0,
  tables_freed: 0,
  huge_installed: 0,
  refaults: 0,
};

/** The six steps of one mode, as KVM's rules give them (spec §9.2-9.8, scenarios S2/S3). */
function expected(mode: "none" | "rmap2015" | "perSpte" | "zap" | "recover"): Row[] {
  const legacy = mode === "none" || mode === "rmap2015" || mode === "perSpte";
  const huge = { pages_4k: 0, pages_2m: REGIONS, pt_pages: TOP };
  const broken = {
    pages_4k: WRITTEN,
    pages_2m: REGIONS - DIRTY_REGIONS,
    pt_pages: TOP + DIRTY_REGIONS,
  };
  const rows: Row[] = [
    // THP backing: the first touch of each 2 MiB region maps it with one 2M spte.
    { step: "populate", ...ZERO, ...huge, faults: REGIONS },
    // Enabling logging write-protects the huge leaves and flushes once (no eager split).
    { step: "enable logging", ...ZERO, ...huge, flushes: 1 },
    // One fixed fault per written page. Legacy: the first write of a region drops the huge spte
    // (one flush) under a new PT, the others are not-present faults. TDP MMU: split in place
    // (no flush), the other 511 are fast faults.
    {
      step: "write 256 MiB",
      ...ZERO,
      ...broken,
      faults: WRITTEN,
      flushes: legacy ? DIRTY_REGIONS : 0,
    },
    // GET_DIRTY_LOG: non-zero words re-protected, one flush.
    { step: "GET_DIRTY_LOG", ...ZERO, ...broken, flushes: 1 },
  ];
  switch (mode) {
    case "none": // before v4.1: nothing happens, and reads find every spte present
      rows.push({ step: "disable logging", ...ZERO, ...broken });
      rows.push({ step: "read all memory", ...ZERO, ...broken });
      break;
    case "rmap2015":
    case "perSpte":
      // The level-1 rmap walk zaps every 4K spte of a direct page over THP; the PTs stay linked;
      // flushes batched into one (or one per zapped spte).
      rows.push({
        step: "disable logging",
        ...ZERO,
        ...broken,
        pages_4k: 0,
        zapped: WRITTEN,
        flushes: mode === "perSpte" ? WRITTEN : 1,
      });
      // Each dirtied region refaults once: the 2M leaf replaces the PDE pointing at the empty
      // PT (one flush), which is left parentless but allocated.
      rows.push({
        step: "read all memory",
        ...ZERO,
        ...huge,
        pt_pages: TOP + DIRTY_REGIONS,
        orphan_pts: DIRTY_REGIONS,
        faults: DIRTY_REGIONS,
        refaults: DIRTY_REGIONS,
        flushes: DIRTY_REGIONS,
      });
      break;
    case "zap":
      // TDP MMU: each collapsible PDE is zapped atomically (one flush each), its PT freed.
      rows.push({
        step: "disable logging",
        ...ZERO,
        ...broken,
        pages_4k: 0,
        pt_pages: TOP,
        zapped: DIRTY_REGIONS,
        tables_freed: DIRTY_REGIONS,
        flushes: DIRTY_REGIONS,
      });
      // The refault fills an empty PDE with a 2M leaf: no flush.
      rows.push({
        step: "read all memory",
        ...ZERO,
        ...huge,
        faults: DIRTY_REGIONS,
        refaults: DIRTY_REGIONS,
      });
      break;
    case "recover":
      // v6.13: the huge leaf is made in place over each PT (freed), one flush for the slot.
      rows.push({
        step: "disable logging",
        ...ZERO,
        ...huge,
        tables_freed: DIRTY_REGIONS,
        huge_installed: DIRTY_REGIONS,
        flushes: 1,
      });
      rows.push({ step: "read all memory", ...ZERO, ...huge });
      break;
  }
  const name = mode === "perSpte" ? "rmap2015 (flush per spte)" : mode;
  return rows.map((r) => ({ mode: name, ...r }));
}

describe("04-seed-2015-collapse: the notebook's numbers match KVM's rules", () => {
  let nb: Notebook;
  beforeAll(() => {
    nb = executeNotebookOnce(path.join(repo, "notebooks", "04-seed-2015-collapse.ipynb"));
  });

  it("runs without errors and its claims cell reports every check holding", () => {
    const outputs = nb.cells.flatMap((c) => c.outputs ?? []);
    expect(outputs.filter((o) => o.output_type === "error").map((o) => o.evalue)).toEqual([]);
    const plain = outputs.map((o) => text(o.data?.["text/plain"] as string | string[]));
    expect(plain.some((t) => /^'?all \d+ checks hold'?$/.test(t.trim()))).toBe(true);
  });

  it("every step of none, rmap2015 (batched and per-spte flushes), zap and recover", () => {
    const results = nb.cells
      .flatMap((c) => c.outputs ?? [])
      .map((o) => o.data?.["application/vnd.mmulab.results+json"])
      .filter((d) => d !== undefined);
    expect(results).toHaveLength(1);
    const rows = results[0] as Row[];
    expect(rows).toEqual([
      ...expected("none"),
      ...expected("rmap2015"),
      ...expected("zap"),
      ...expected("recover"),
      ...expected("perSpte"),
    ]);
  });
});
