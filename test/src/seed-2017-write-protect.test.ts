/**
 * Issue 15 item 3: the numbers of the seed-2017 write-up (05-seed-2017-fast-write-protect) against
 * the geometry of a 4-level direct table and the RFC's rules, computed here. A guest of G GiB
 * (G < 512) that has written every 4 KiB page has: one present root entry, G present L3 entries,
 * 512 present entries in each of its G L2 pages, 512 writable leaves in each of its 512·G PTs.
 * Possibly writable (RFC: W, or MMU-writable so fast_page_fault may set W) = every present entry.
 */
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { executeNotebookOnce, type Notebook, repo } from "./jupyter";

const GiB = 2 ** 30;
const PAGES_PER_GIB = GiB / 4096; // 262,144 leaves
const PTS_PER_GIB = 512; // one PT per 2 MiB

type Row = Record<string, number | string>;

function results(nb: Notebook, mime: string): Row[] {
  const found = nb.cells
    .flatMap((c) => c.outputs ?? [])
    .map((o) => o.data?.[mime])
    .filter((d) => d !== undefined);
  expect(found, mime).toHaveLength(1);
  return found[0] as Row[];
}

let nb: Notebook;
beforeAll(() => {
  nb = executeNotebookOnce(path.join(repo, "notebooks", "05-seed-2017-fast-write-protect.ipynb"));
}, 300_000);

describe("05-seed-2017-fast-write-protect", () => {
  it("runs without an error output (every claim cell held)", () => {
    const errors = nb.cells.flatMap((c) =>
      (c.outputs ?? []).filter((o) => o.output_type === "error"),
    );
    expect(errors.map((e) => `${e.ename}: ${e.evalue}`)).toEqual([]);
  });

  it("the start-of-migration stall table matches the geometry, per guest size", () => {
    const rows = results(nb, "application/vnd.mmulab.stall+json");
    expect(rows.map((r) => r.guest_GiB)).toEqual([1, 2, 4, 8]);
    for (const r of rows) {
      const g = r.guest_GiB as number;
      const leaves = g * PAGES_PER_GIB;
      const pts = g * PTS_PER_GIB;
      const sps = 1 + 1 + g + pts; // root, L3, G L2s, PTs
      expect(r, `${g} GiB`).toMatchObject({
        pages_4k: leaves,
        shadow_pages: sps,
        // every present entry: root 1 + L3 G + L2s 512·G + leaves
        possibly_writable: 1 + g + pts + leaves,
        // kvm_mmu_slot_remove_write_access from PG_LEVEL_4K: one rmap head per 4K, 2M and 1G
        // frame of the slot; every leaf spte visited
        upstream_rmap_heads: leaves + g * 512 + g,
        upstream_sptes_visited: leaves,
        per_page_scan: sps * 512,
        per_page_bitmap: 1 + g + pts + leaves,
        // the root-only pass: 512 entries without the bitmap, the root's one present entry with it
        fast_wp_all_scan: 512,
        fast_wp_all_bitmap: 1,
      });
    }
    // S8's page geometry at 1 GiB: 515 shadow pages (root, L3, L2, 512 PTs)
    expect(rows[0]).toMatchObject({ shadow_pages: 515, per_page_scan: 515 * 512 });
  });

  it("the dirty-pattern rounds match the push-down rule (2 GiB guest)", () => {
    const rows = results(nb, "application/vnd.mmulab.dirty+json");
    const g = 2;
    // For each pattern: writes, L2 pages touched, PTs touched (all patterns include gpa 0).
    const patterns: Record<string, { writes: number; l2: number; pts: number }> = {
      "one page per GiB": { writes: g, l2: g, pts: g },
      "first 512 MiB": { writes: (512 * 2 ** 20) / 4096, l2: 1, pts: 256 },
      "one page per 2 MiB": { writes: g * 512, l2: g, pts: g * 512 },
      "every page": { writes: g * PAGES_PER_GIB, l2: g, pts: g * 512 },
    };
    expect(rows.map((r) => `${r.pattern}/${r.bitmap}`)).toEqual(
      Object.keys(patterns).flatMap((p) => [`${p}/off`, `${p}/on`]),
    );
    const sps = 1 + 1 + g + g * 512;
    for (const r of rows) {
      const p = patterns[r.pattern as string]!;
      const on = r.bitmap === "on";
      // Round 1, all entries W: the faults write-protect the L3 page once (G present entries
      // with the bitmap, 512 without), each touched L2 (512 present), each touched PT (512).
      const round1 = (on ? g : 512) + 512 * p.l2 + 512 * p.pts;
      // Round 2: upper-level entries that lost W stopped counting, except those re-opened by
      // round 1's writes: L3 holds l2 of them, the touched L2s hold pts between them. Leaves
      // keep MMU-writable, so each touched PT still counts 512.
      const round2 = on ? p.l2 + p.pts + 512 * p.pts : round1;
      expect(r, `${r.pattern} bitmap ${r.bitmap}`).toMatchObject({
        writes: p.writes,
        round1_root: on ? 1 : 512,
        round1_faults: round1,
        round2_root: on ? 1 : 512,
        round2_faults: round2,
        full_scan_pass: sps * 512,
      });
    }
  });
});
