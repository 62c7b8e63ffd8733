// Issue 15: notebook 06-dirty-log-perf runs under nbconvert and its key numbers are those of the
// geometry and KVM's dirty-logging rules, computed here (not copied from the notebook):
// - eager split (§9.2) splits every huge leaf at enable: each 1G leaf into 512 2M, each 2M into
//   512 4K, so splits = 1G regions + 2M regions and the test memory ends in bytes/4096 4K leaves;
// - without it the first write under each huge leaf splits (§9.3), and once split every write of
//   a dirty pass is one 4K write fault: vCPUs × bytes / 4096;
// - disabling logging (§9.8) zaps each collapsible entry with its own flush up to v6.12 and
//   recovers huge leaves in place with one flush from v6.13; v5.10 zaps a huge leaf on its first
//   dirty write, with one flush each.
import path from "node:path";
import { describe, expect, it } from "vitest";
import { executeNotebookOnce, type Notebook, repo } from "./jupyter";

const PAGE = 4096;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** The memstress guest's PML4 and PDPT (1 GiB guest pages) are 4K leaves in slot 0. */
const GUEST_TABLE_PAGES = 2;

function outputsOf(nb: Notebook, mime: string): unknown[] {
  return nb.cells
    .flatMap((c) => c.outputs ?? [])
    .map((o) => o.data?.[mime])
    .filter((d) => d !== undefined);
}

describe("06-dirty-log-perf: the notebook's counts match the geometry and KVM's rules", () => {
  let nb: Notebook;
  const started = Date.now();
  it("runs under nbconvert without errors, well within 90 s", () => {
    nb = executeNotebookOnce(path.join(repo, "notebooks", "06-dirty-log-perf.ipynb"));
    const errors = nb.cells.flatMap((c) =>
      (c.outputs ?? []).filter((o) => o.output_type === "error"),
    );
    expect(errors.map((e) => `${e.ename}: ${e.evalue}`)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(90_000);
    // counts only: no per-phase milliseconds anywhere in the outputs
    expect(JSON.stringify(nb.cells.map((c) => c.outputs ?? []))).not.toContain("ms (sim)");
  }, 180_000);

  it("counts beside the published seconds: scaled and full-size counts of every row", () => {
    const [rows] = outputsOf(nb, "application/vnd.mmulab.results+json") as Array<
      Array<Record<string, number | string>>
    >;
    const byKey = Object.fromEntries(rows!.map((r) => [r.key, r]));
    // scaled 1G runs: 2 vCPUs × 1 GiB; full size 96 × 1 GiB (Gardon 2021 / Matlack 2022)
    const s1 = 2 * GiB;
    const f1 = 96 * GiB;
    const splits1g = (bytes: number) => bytes / GiB + bytes / (2 * MiB);
    // scaled 2M runs: 4 vCPUs × 256 MiB; full size 64 × 4 GiB (Matlack 2024)
    const s2 = 4 * 256 * MiB;
    const f2 = 64 * 4 * GiB;
    const expected: Record<string, [number, number]> = {
      // one EPT fault per 1G leaf, plus the guest's own two table pages
      populate_faults_1g: [s1 / GiB + GUEST_TABLE_PAGES, f1 / GiB + GUEST_TABLE_PAGES],
      iter1_splits_no_eager: [splits1g(s1), splits1g(f1)],
      iter2_faults_no_eager: [s1 / PAGE, f1 / PAGE],
      enable_splits_eager: [splits1g(s1), splits1g(f1)],
      enable_pages4k_eager: [s1 / PAGE, f1 / PAGE],
      iter1_splits_eager: [0, 0],
      disable_zaps_1g: [s1 / GiB, f1 / GiB],
      disable_flushes_zap: [s2 / (2 * MiB), f2 / (2 * MiB)],
      disable_flushes_recover: [1, 1],
      disable_pages2m_recover: [s2 / (2 * MiB), f2 / (2 * MiB)],
    };
    expect(Object.keys(byKey).sort()).toEqual(Object.keys(expected).sort());
    for (const [key, [scaled, full]] of Object.entries(expected)) {
      expect(byKey[key], key).toMatchObject({ scaled, full_size: full });
      expect(byKey[key]!.published_seconds, key).toBe("see the cover letter");
    }
    // the published geometries by name
    expect(byKey.iter2_faults_no_eager!.full_size).toBe(25_165_824);
    expect(byKey.enable_splits_eager!.full_size).toBe(49_248);
    expect(byKey.disable_flushes_zap!.full_size).toBe(131_072);
  });

  it("scaling: 1 and 2 vCPUs × 1 GiB, and 96 from the one-vCPU run", () => {
    const [rows] = outputsOf(nb, "application/vnd.mmulab.scaling+json") as Array<
      Array<Record<string, number>>
    >;
    expect(rows).toEqual(
      [1, 2, 96].map((v) => ({
        vcpus: v,
        iter1_splits: v * (1 + 512),
        iter2_faults: (v * GiB) / PAGE,
        disable_zaps: v,
      })),
    );
  });

  it("A/B across presets, 4 vCPUs × 256 MiB on 2 MiB hugetlb", () => {
    const [rows] = outputsOf(nb, "application/vnd.mmulab.ab+json") as Array<
      Array<Record<string, number | string>>
    >;
    const n2m = (4 * 256 * MiB) / (2 * MiB); // 512 huge leaves
    const pages = (4 * 256 * MiB) / PAGE;
    const common = { enable_flushes: 1, iter1_pages_4k: pages };
    expect(rows).toEqual([
      // v5.10: no eager split; the first write zaps the huge leaf (one flush each), no split
      {
        preset: "v5.10",
        ...common,
        enable_splits: 0,
        iter1_splits: 0,
        iter1_flushes: n2m,
        disable_zaps: n2m,
        disable_flushes: n2m,
        disable_pages_2m: 0,
      },
      // v6.12 eager off: split on fault, splits never flush
      {
        preset: "v6.12, eager off",
        ...common,
        enable_splits: 0,
        iter1_splits: n2m,
        iter1_flushes: 0,
        disable_zaps: n2m,
        disable_flushes: n2m,
        disable_pages_2m: 0,
      },
      // v6.12: eager split at enable; disable zaps each 2M region with its own flush
      {
        preset: "v6.12",
        ...common,
        enable_splits: n2m,
        iter1_splits: 0,
        iter1_flushes: 0,
        disable_zaps: n2m,
        disable_flushes: n2m,
        disable_pages_2m: 0,
      },
      // v6.13: huge leaves recovered in place, one flush
      {
        preset: "v6.13",
        ...common,
        enable_splits: n2m,
        iter1_splits: 0,
        iter1_flushes: 0,
        disable_zaps: 0,
        disable_flushes: 1,
        disable_pages_2m: n2m,
      },
    ]);
  });
});
