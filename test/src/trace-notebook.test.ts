// Issue 15: notebook 08 (trace, Perfetto export, fault heat map, kvm_stat) runs under nbconvert,
// and its key numbers match what the geometry and KVM's rules give, computed here:
// - the small scenario: 4 THP regions of 2 MiB (512 pages each) under the v6.12 TDP MMU, with
//   eager splitting and manual dirty-log protect; the guest's 3 page-table pages (4-level, 2 MiB
//   guest pages);
// - the heat map: a 4 GiB guest whose writes are replayed here with the selftests' guest RNG
//   (Park–Miller, x <- x * 48271 mod 2^31 - 1, seed 1), and KVM's dirty-log rule: a page faults
//   on its first write after it was write-protected, once per round;
// - kvm_stat: the same run's counters per interval from those rules.
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { executeNotebookOnce, type Notebook, repo, text } from "./jupyter";

const PAGE = 4096;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const REGION_PAGES = 512; // a 2M spte maps 512 4K pages

interface Results {
  small: {
    steps: Array<Record<string, number | string>>;
    cleared: number;
    chrome: { events: number; B: number; E: number; i: number; M: number };
  };
  heatmap: { rows: number; cols: number; outside: number; counts: number[] };
  kvmStat: {
    labels: string[];
    rows: Array<{ name: string; intervals: number[]; total: number }>;
    order: string[];
  };
}

/**
 * The small scenario's events per step. 4 regions; the guest's tables are a PML4, a PDPT and a
 * PD (2 MiB guest pages) in memslot 0 at gpa 0, the data at 1 GiB.
 */
function smallSteps(): Array<Record<string, number | string>> {
  const regions = 4;
  const leaves = regions * REGION_PAGES; // 2048 4K sptes after the split
  // boot: the walk reads the 3 table pages through EPT (A/D on: as writes), one 4K fault each;
  // then one 2M fault per region. Each fault: kvm_page_fault, kvm_mmu_spte_requested, the
  // kvm_tdp_mmu_spte_changed of each link it makes and of its leaf, kvm_mmu_set_spte,
  // mmulab_page_fault_done. Links: the first table fault builds L4->L3->L2->L1 (3 links), the
  // first data fault (gpa 1 GiB: L3 index 1) links a new L2 table (1 link).
  const bootFaults = 3 + regions;
  const bootChanged = bootFaults + 3 + 1;
  const fault = (n: number, changed: number) => ({
    kvm_page_fault: n,
    kvm_mmu_spte_requested: n,
    kvm_tdp_mmu_spte_changed: changed,
    kvm_mmu_set_spte: n,
    mmulab_page_fault_done: n,
  });
  const fast = (n: number) => ({
    kvm_page_fault: n,
    mmulab_page_fault_done: n,
    fast_page_fault: n,
  });
  const withTotal = (step: string, counts: Record<string, number>) => ({
    step,
    events: Object.values(counts).reduce((a, b) => a + b, 0),
    ...counts,
  });
  return [
    withTotal("boot", fault(bootFaults, bootChanged)),
    // Eager split: one link per region (then kvm_mmu_split_huge_page), then every 4K spte
    // loses W; one flush (kvm_mmu_slot_apply_flags).
    withTotal("enable dirty logging", {
      kvm_tdp_mmu_spte_changed: regions + leaves,
      kvm_mmu_split_huge_page: regions,
      mmulab_flush_remote_tlbs: 1,
    }),
    // 5 writes to write-protected, MMU-writable 4K sptes: fast faults (no handle_changed_spte).
    withTotal("write 5 pages", fast(5)),
    // GET copies (manual protect); CLEAR re-protects the 5 dirty pages, one flush.
    withTotal("GET + CLEAR_DIRTY_LOG", {
      kvm_tdp_mmu_spte_changed: 5,
      mmulab_flush_remote_tlbs: 1,
    }),
    withTotal("write 1 page again", fast(1)),
    // v6.12 zap_collapsible_spte_range: each PDE zapped (one flush each), its 512 children
    // removed with the table (handle_removed_pt); one mmulab_collapse when done.
    withTotal("disable dirty logging", {
      kvm_tdp_mmu_spte_changed: regions + leaves,
      mmulab_flush_remote_tlbs: regions,
      mmulab_collapse: 1,
    }),
    // The PDEs are empty: one 2M leaf per region, no link.
    withTotal("read each region again", fault(regions, regions)),
  ];
}

/** The heat map workload's writes per round (gfns), replayed with the guest RNG. */
function heatRounds(): number[][] {
  const pages = (4 * GiB) / PAGE;
  let x = 1; // seed 1
  const rounds: number[][] = [];
  for (let k = 0; k < 3; k++) {
    const gfns: number[] = [];
    const hot = (GiB + 512 * MiB) / PAGE;
    for (let g = hot; g < hot + (64 * MiB) / PAGE; g++) gfns.push(g); // hot buffer, every page
    const log = (2 * GiB + k * 16 * MiB) / PAGE;
    for (let g = log; g < log + (16 * MiB) / PAGE; g++) gfns.push(g); // this round's log
    for (let i = 0; i < 2048; i++) {
      x = (x * 48271) % 2147483647;
      gfns.push(x % pages);
    }
    rounds.push(gfns);
  }
  return rounds;
}

describe("08-trace: the notebook's numbers match the geometry and KVM's rules", () => {
  let nb: Notebook;
  let results: Results;
  beforeAll(() => {
    nb = executeNotebookOnce(path.join(repo, "notebooks", "08-trace.ipynb"));
    const found = nb.cells
      .flatMap((c) => c.outputs ?? [])
      .map((o) => o.data?.["application/vnd.mmulab.results+json"])
      .filter((d) => d !== undefined);
    expect(found).toHaveLength(1);
    results = found[0] as Results;
  });

  it("runs without errors and its last claims cell reports every check holding", () => {
    const outputs = nb.cells.flatMap((c) => c.outputs ?? []);
    expect(outputs.filter((o) => o.output_type === "error").map((o) => o.evalue)).toEqual([]);
    const plain = outputs.map((o) => text(o.data?.["text/plain"] as string | string[]));
    expect(plain.some((t) => /^'?all \d+ checks hold'?$/.test(t.trim()))).toBe(true);
    // No path of the temporary Perfetto file reaches an output.
    expect(JSON.stringify(outputs)).not.toMatch(/mmulab-trace-|\/tmp\//);
  });

  it("the small scenario: events per step, CLEAR's count, the Chrome JSON's shape", () => {
    const steps = smallSteps();
    expect(results.small.steps).toEqual(steps);
    expect(results.small.cleared).toBe(5);
    const events = steps.reduce((a, s) => a + (s.events as number), 0);
    const faults = steps.reduce((a, s) => a + ((s.kvm_page_fault as number) ?? 0), 0);
    // One begin and one end per fault, an instant for every other event, and the metadata of
    // the process, the VM-wide track and the one vCPU.
    expect(results.small.chrome).toEqual({
      events: events + 3,
      B: faults,
      E: faults,
      i: events - 2 * faults,
      M: 3,
    });
  });

  it("the heat map: per 2 MiB region, 1 fault at populate + the distinct pages written per round", () => {
    const regions = (4 * GiB) / (2 * MiB);
    const expected = new Array<number>(regions).fill(1);
    for (const round of heatRounds())
      for (const gfn of new Set(round)) expected[Math.floor(gfn / REGION_PAGES)]!++;
    const h = results.heatmap;
    expect([h.rows, h.cols]).toEqual([4, 512]); // 4 GiB, a row per GiB of 512 regions
    // Outside the map: the guest's PML4 and PDPT (1 GiB guest pages) above 4 GiB.
    expect(h.outside).toBe(2);
    expect(h.counts).toEqual(expected);
    // The hot buffer's regions: 1 + 3 rounds x 512 pages.
    expect(h.counts[(GiB + 512 * MiB) / (2 * MiB)]).toBe(1 + 3 * REGION_PAGES);
  });

  it("kvm_stat: each counter's change per interval, and kvm_stat's order", () => {
    const rounds = heatRounds().map((r) => new Set(r));
    const faults = rounds.map((r) => r.size);
    // With eager splitting off, the first write into a still-huge region splits it (a slow
    // fault); every other write fault is fast.
    const seen = new Set<number>();
    const splits = rounds.map((r) => {
      let n = 0;
      for (const gfn of r) {
        const region = Math.floor(gfn / REGION_PAGES);
        if (!seen.has(region)) {
          seen.add(region);
          n++;
        }
      }
      return n;
    });
    const split = seen.size;
    const { labels, rows, order } = results.kvmStat;
    expect(labels).toEqual([
      "populate",
      "enable logging",
      "round 1 writes",
      "round 1 GET",
      "round 2 writes",
      "round 2 GET",
      "round 3 writes",
      "round 3 GET",
      "disable logging",
    ]);
    const perRound = (f: (k: number) => number, populate: number, disable: number) => [
      populate,
      0,
      f(0),
      0,
      f(1),
      0,
      f(2),
      0,
      disable,
    ];
    const row = (name: string, intervals: number[]) => ({
      name,
      intervals,
      total: intervals.reduce((a, b) => a + b, 0),
    });
    // populate: one fault per region (2048) + the guest's 2 table pages.
    const taken = perRound((k) => faults[k]!, 2048 + 2, 0);
    // Flushes: enabling logging, each GET (something was dirty), then one per zapped PDE.
    const flushes = [0, 1, 0, 1, 0, 1, 0, 1, split];
    const expected = [
      row("kvm_page_fault", taken),
      row(
        "pages_2m",
        perRound((k) => -splits[k]!, 2048, 0),
      ),
      row(
        "pages_4k",
        perRound((k) => REGION_PAGES * splits[k]!, 2, -REGION_PAGES * split),
      ),
      row(
        "pf_fast",
        perRound((k) => faults[k]! - splits[k]!, 0, 0),
      ),
      row("pf_fixed", taken),
      row("pf_taken", taken),
      // One vCPU, which has entered the guest: every remote flush request kicks it.
      row("remote_tlb_flush", flushes),
      row("remote_tlb_flush_requests", flushes),
    ];
    // tlb_flush (the vCPU's own flushes at guest entry) moves too; its values are not checked.
    expect(rows.map((r) => r.name)).toEqual([...expected.map((r) => r.name), "tlb_flush"].sort());
    expect(rows.filter((r) => r.name !== "tlb_flush")).toEqual(expected);
    // kvm_stat's SORT_DEFAULT: by the last interval's change, then by the total, descending.
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    const key = (n: string) => [byName[n]!.intervals.at(-1)!, byName[n]!.total];
    expect([...order].sort()).toEqual(rows.map((r) => r.name));
    for (let i = 1; i < order.length; i++) {
      const [a, b] = [key(order[i - 1]!), key(order[i]!)];
      expect(
        a[0]! > b[0]! || (a[0] === b[0] && a[1]! >= b[1]!),
        `${order[i - 1]} before ${order[i]}`,
      ).toBe(true);
    }
  });
});
