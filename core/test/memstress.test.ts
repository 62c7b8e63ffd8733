/**
 * memstress / dirty_log_perf_test (tools/testing/selftests/kvm/lib/memstress.c,
 * dirty_log_perf_test.c): the guest RNG, the per-phase counts against the geometry, and the
 * published numbers reproduced exactly:
 * - Ben Gardon, "KVM: x86/mmu: Optimize disabling dirty logging" / the eager page splitting
 *   series (96 vCPUs × 1 GiB on 1 GiB hugetlb): 25,165,824 4K faults in iteration 2 without
 *   eager split; 49,248 splits (96 1G → 2M, 96 × 512 2M → 4K) and 25,165,824 4K sptes at enable
 *   with eager split, none in the fault path afterwards.
 */
import { describe, expect, it } from "vitest";
import { dirtyLogPerf, dirtyLogPerfSteps, guestRandomU32 } from "../src";

const MIB = 2 ** 20;
const GIB = 2 ** 30;
/** Guest page-table pages the guest's first accesses fault in (PML4 and PDPT: 1 GiB guest pages). */
const TABLE_PAGES = 2;

describe("memstress", () => {
  it("guest_random_u32 is Park–Miller minimal standard with multiplier 48271", () => {
    const st = { seed: 1 };
    expect([1, 2, 3, 4, 5].map(() => guestRandomU32(st))).toEqual([
      48271, 182605794, 1291394886, 1914720637, 2078669041,
    ]);
  });

  it("4 vCPUs × 8 MiB at 4K, 2 iterations, GET-only: every phase from the geometry", () => {
    const vcpus = 4;
    const pages = (vcpus * 8 * MIB) / 4096;
    const r = dirtyLogPerf({ vcpus, bytesPerVcpu: 8 * MIB, iterations: 2 });
    const row = (n: string) => {
      const p = r.phase(n)!;
      return [p.faults, p.fastFaults, p.flushes, p.dirtyPages];
    };
    expect(r.phases.map((p) => p.name)).toEqual([
      "populate memory",
      "enable dirty logging",
      "iteration 1 dirty memory",
      "iteration 1 get dirty log",
      "iteration 2 dirty memory",
      "iteration 2 get dirty log",
      "disable dirty logging",
    ]);
    expect(row("populate memory")).toEqual([pages + TABLE_PAGES, 0, 0, 0]);
    // Enabling write-protects every leaf (one flush); each write is then a fast W restore.
    expect(row("enable dirty logging")).toEqual([0, 0, 1, 0]);
    expect(row("iteration 1 dirty memory")).toEqual([pages, pages, 0, 0]);
    expect(row("iteration 1 get dirty log")).toEqual([0, 0, 1, pages]);
    expect(row("iteration 2 dirty memory")).toEqual([pages, pages, 0, 0]);
    expect(r.phase("iteration 2 get dirty log")!.bitmapWords).toBe(pages / 64);
    expect(row("disable dirty logging")).toEqual([0, 0, 0, 0]);
    // Write-protect work: one whole-slot pass at enable; every u64 word of the bitmap has set
    // bits after a sequential full pass, so GET re-protects word by word, pages / 64 calls.
    const wp = (n: string) => [r.phase(n)!.wrprotSlotPasses, r.phase(n)!.wrprotMaskedCalls];
    expect(wp("enable dirty logging")).toEqual([1, 0]);
    expect(wp("iteration 1 dirty memory")).toEqual([0, 0]);
    expect(wp("iteration 1 get dirty log")).toEqual([0, pages / 64]);
    expect(wp("iteration 2 get dirty log")).toEqual([0, pages / 64]);
  });

  it("a stepwise run yields before every slice (passes in rows of 262,144 accesses) and counts as the whole run", () => {
    // 64 vCPUs x 32 MiB: 8,192 pages per vCPU; 262,144 / 64 = 4,096 rows a slice, 2 slices.
    const opts = { vcpus: 64, bytesPerVcpu: 32 * MIB, iterations: 1, slots: 2 };
    const steps = dirtyLogPerfSteps(opts);
    const seen: string[] = [];
    let r = steps.next();
    while (!r.done) {
      seen.push(
        `${r.value.index}/${r.value.count} ${r.value.phase} ${r.value.done}/${r.value.total}`,
      );
      r = steps.next();
    }
    const pass = (i: number, name: string) => [0, 1].map((k) => `${i}/5 ${name} ${k}/2`);
    expect(seen).toEqual([
      ...pass(0, "populate memory"),
      "1/5 enable dirty logging 0/1",
      ...pass(2, "iteration 1 dirty memory"),
      "3/5 iteration 1 get dirty log 0/1",
      "4/5 disable dirty logging 0/1",
    ]);
    const strip = (p: object) => ({ ...p, ms: 0 });
    expect(r.value.phases.map(strip)).toEqual(dirtyLogPerf(opts).phases.map(strip));
    // Two slots: two whole-slot passes at enable.
    expect(r.value.phase("enable dirty logging")!.wrprotSlotPasses).toBe(2);
  });

  it("manual protect in 512-page CLEAR chunks: GET protects nothing, CLEAR re-protects (one flush per call)", () => {
    const pages = (2 * 4 * MIB) / 4096;
    const r = dirtyLogPerf({
      vcpus: 2,
      bytesPerVcpu: 4 * MIB,
      iterations: 1,
      manualProtect: true,
      clearChunkPages: 512,
    });
    expect(r.phase("iteration 1 get dirty log")!.flushes).toBe(0);
    const clear = r.phase("iteration 1 clear dirty log")!;
    expect(clear.dirtyPages).toBe(pages);
    expect(clear.flushes).toBe(pages / 512);
  });

  it("the same seed gives the same run; random 50 % writes dirty what the guest RNG says", () => {
    const run = (seed: number) =>
      dirtyLogPerf({
        vcpus: 3,
        bytesPerVcpu: 2 * MIB,
        iterations: 1,
        writePercent: 50,
        randomAccess: true,
        seed,
      }).phase("iteration 1 get dirty log")!.dirtyPages;
    // Expected from the RNG alone (two draws per access, seed + index): the pages the dirty
    // pass writes, plus the pages it first touches at all (random access leaves some pages
    // untouched by the populate pass): their fault maps a writable spte in the logged slot,
    // which marks the page dirty (make_spte → mark_page_dirty_in_slot), read or write.
    const expected = (seed: number) => {
      const n = 512;
      let dirty = 0;
      for (let v = 0; v < 3; v++) {
        const st = { seed: seed + v };
        const populated = new Set<number>();
        for (let i = 0; i < n; i++) {
          populated.add(guestRandomU32(st) % n);
          guestRandomU32(st);
        }
        const marked = new Set<number>();
        for (let i = 0; i < n; i++) {
          const page = guestRandomU32(st) % n;
          const write = guestRandomU32(st) % 100 < 50;
          if (write || !populated.has(page)) marked.add(page);
        }
        dirty += marked.size;
      }
      return dirty;
    };
    expect(run(7)).toBe(expected(7));
    expect(run(7)).toBe(run(7));
    expect(run(8)).toBe(expected(8));
  });

  it("refuses bad options by name", () => {
    expect(() => dirtyLogPerf({ vcpus: 0 })).toThrow(/vcpus.*0/);
    expect(() => dirtyLogPerf({ bytesPerVcpu: 1000 })).toThrow(/bytesPerVcpu.*1000/);
    expect(() => dirtyLogPerf({ writePercent: 101 })).toThrow(/writePercent.*101/);
    expect(() => dirtyLogPerf({ initiallySet: true })).toThrow(/initiallySet/);
    expect(() =>
      dirtyLogPerf({ vcpus: 3, bytesPerVcpu: 2 * MIB, slots: 2, backing: "hugetlb-2m" }),
    ).toThrow(/slots/);
  });
});

describe("published counts: 96 vCPUs × 1 GiB on 1 GiB hugetlb (Gardon)", () => {
  const vcpus = 96;
  const pages4k = (vcpus * GIB) / 4096; // 25,165,824
  const splits = vcpus + vcpus * 512; // 1G → 2M, then every 2M → 4K: 49,248
  it("without eager split: iteration 2 takes 25,165,824 4K faults; the 49,248 splits happen in iteration 1's faults", () => {
    const r = dirtyLogPerf({ vcpus, bytesPerVcpu: GIB, backing: "hugetlb-1g", eagerSplit: false });
    expect(r.phase("populate memory")!.faults).toBe(vcpus + TABLE_PAGES);
    expect(r.phase("iteration 1 dirty memory")!.splits).toBe(splits);
    expect(r.phase("iteration 2 dirty memory")!.faults).toBe(pages4k);
    expect(r.phase("iteration 2 dirty memory")!.splits).toBe(0);
    expect(pages4k).toBe(25_165_824);
    expect(splits).toBe(49_248);
  }, 300_000);

  it("with eager split: 49,248 splits and 25,165,824 4K sptes at enable, none in the fault path", () => {
    const r = dirtyLogPerf({
      vcpus,
      bytesPerVcpu: GIB,
      backing: "hugetlb-1g",
      eagerSplit: true,
      iterations: 1,
    });
    const enable = r.phase("enable dirty logging")!;
    expect(enable.splits).toBe(splits);
    expect(enable.pages4k - TABLE_PAGES).toBe(pages4k);
    expect(r.phase("iteration 1 dirty memory")!.splits).toBe(0);
    expect(r.phase("iteration 1 dirty memory")!.faults).toBe(pages4k);
  }, 300_000);
});

describe("published counts: -s anonymous_hugetlb_2mb -v 64 -b 4g, disable (Matlack 2024)", () => {
  // 64 vCPUs × 4 GiB on 2 MiB hugetlb = 131,072 huge pages. Enabling logging splits each
  // (eager split); disabling gives them back: v6.12 zaps each 2M region's PD entry with its own
  // remote flush (tdp_mmu_zap_spte_atomic per zap) — 131,072 flushes; v6.13's
  // kvm_mmu_recover_huge_pages installs the 131,072 huge leaves in place and flushes once.
  const regions = (64 * 4 * GIB) / (2 * MIB);
  for (const [preset, flushes] of [
    ["v6.12", regions],
    ["v6.13", 1],
  ] as const) {
    it(`${preset}: ${flushes} flushes at disable`, () => {
      const r = dirtyLogPerf({
        vcpus: 64,
        bytesPerVcpu: 4 * GIB,
        backing: "hugetlb-2m",
        iterations: 0,
        preset,
      });
      expect(regions).toBe(131_072);
      expect(r.phase("enable dirty logging")!.splits).toBe(regions);
      const d = r.phase("disable dirty logging")!;
      expect(d.flushes).toBe(flushes);
      expect(d.pages2m).toBe(preset === "v6.13" ? regions : 0);
    }, 300_000);
  }
});
