// Issue 6: every notebook runs top to bottom with the real mmulab kernel under nbconvert, and two
// runs in a row give identical outputs (execution metadata aside).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { artifacts, executeNotebook, executeNotebookOnce, normalize, repo, text } from "./jupyter";

const nbDir = path.join(repo, "notebooks");
const notebooks = [
  ...readdirSync(nbDir)
    .filter((f) => f.endsWith(".ipynb"))
    .map((f) => path.join(nbDir, f)),
  ...(existsSync(path.join(nbDir, "teacher"))
    ? readdirSync(path.join(nbDir, "teacher"))
        .filter((f) => f.endsWith(".ipynb"))
        .map((f) => path.join(nbDir, "teacher", f))
    : []),
].sort();

describe("notebook sources", () => {
  it("every committed .ipynb is exactly what notebooks/tools/build-notebooks.mjs makes of its source", () => {
    const r = spawnSync("node", [path.join(nbDir, "tools", "build-notebooks.mjs"), "--check"], {
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
  it("there are notebooks to run", () => {
    expect(notebooks.length).toBeGreaterThan(0);
  });
});

/** Seconds per run of each notebook (nbconvert, kernel start included), for the summary. */
const seconds = new Map<string, number[]>();

afterAll(() => {
  // Measured, not asserted (timings depend on the machine): the budget is one run of
  // every notebook in under 6 minutes on a 2-core machine.
  if (seconds.size === 0) return;
  const rows = [...seconds].map(
    ([rel, s]) => `  ${rel.padEnd(44)} ${s.map((x) => x.toFixed(1).padStart(6)).join(" ")}`,
  );
  const total = (k: number) => [...seconds.values()].reduce((a, s) => a + (s[k] ?? 0), 0);
  console.log(
    `notebook run times (s; run 1 is shared with a test of the notebook's numbers when that ran first, run 2 is always fresh):\n${rows.join("\n")}\n  ${"total".padEnd(44)} ${total(0).toFixed(1).padStart(6)} ${total(1).toFixed(1).padStart(6)}`,
  );
});

describe.each(notebooks.map((p) => [path.relative(nbDir, p), p]))("%s", (rel, nbPath) => {
  it("runs top to bottom with the mmulab kernel, twice, with identical outputs", () => {
    const runs = [1, 2].map((k) => {
      const t0 = performance.now();
      // Run 1 is shared with the tests that check this notebook's numbers; run 2 is fresh.
      const nb =
        k === 1
          ? executeNotebookOnce(nbPath)
          : executeNotebook(nbPath, path.join(artifacts, "notebooks", "run2", path.dirname(rel)));
      seconds.set(rel, [...(seconds.get(rel) ?? []), (performance.now() - t0) / 1000]);
      return nb;
    });
    for (const nb of runs) {
      const errors = nb.cells.flatMap((c) =>
        (c.outputs ?? []).filter((o) => o.output_type === "error"),
      );
      expect(errors.map((e) => `${e.ename}: ${e.evalue}`)).toEqual([]);
      const code = nb.cells.filter((c) => c.cell_type === "code");
      // every code cell ran, in order
      expect(code.map((c) => c.execution_count)).toEqual(code.map((_, i) => i + 1));
      // nothing on stderr: a warning in a published notebook is a bug to fix
      const stderr = nb.cells.flatMap((c) =>
        (c.outputs ?? []).filter((o) => o.output_type === "stream" && o.name === "stderr"),
      );
      expect(stderr.map((o) => text(o.text))).toEqual([]);
    }
    expect(normalize(runs[1])).toEqual(normalize(runs[0]));
  });
});

/**
 * Issue 6: the numbers of the seed-2010 write-up against the geometry of a 4-level TDP table,
 * computed here: an N GiB guest mapped with 4 KiB leaves needs 512·N PTs, N PDs, one PDPT and
 * the root; with 2 MiB leaves the PTs disappear. Before the patch every page also had a gfns page.
 */
describe("02-direct-gfns: the notebook's numbers match the geometry", () => {
  it("every row of the results table", () => {
    const nb = executeNotebookOnce(path.join(nbDir, "02-direct-gfns.ipynb"));
    const results = nb.cells
      .flatMap((c) => c.outputs ?? [])
      .map((o) => o.data?.["application/vnd.mmulab.results+json"])
      .filter((d) => d !== undefined);
    expect(results).toHaveLength(1);
    const rows = results[0] as Array<Record<string, number | string>>;
    const GiB = 2 ** 30;
    const sizes = [1, 2, 4, 8, 16, 32, 64];
    expect(rows.map((r) => `${r.backing}/${r.guest_GiB}`)).toEqual([
      ...sizes.map((n) => `4k/${n}`),
      ...sizes.map((n) => `thp/${n}`),
    ]);
    for (const r of rows) {
      const n = r.guest_GiB as number;
      const bytes = n * GiB;
      const pts = r.backing === "4k" ? bytes / (512 * 4096) : 0;
      const pds = Math.ceil(bytes / (512 * 2 ** 21));
      const pdpts = Math.ceil(bytes / (512 * GiB));
      const sps = 1 + pdpts + pds + pts;
      expect(r, `${r.backing} ${n} GiB`).toMatchObject({
        pages_4k: r.backing === "4k" ? bytes / 4096 : 0,
        pages_2m: r.backing === "thp" ? bytes / 2 ** 21 : 0,
        shadow_pages: sps,
        mmu_pages_after: sps,
        mmu_pages_before: 2 * sps,
        saved_pages: sps,
      });
    }
    // the S1 row (1 GiB guest faulted in at 4 KiB), by name: 515 shadow pages, 515 vs 1030
    // data pages
    expect(rows[0]).toMatchObject({
      shadow_pages: 515,
      mmu_pages_after: 515,
      mmu_pages_before: 1030,
    });
  });
});
