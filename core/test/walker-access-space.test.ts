/**
 * The kvm-unit-tests x86/access.c space against the walker, through the public contract only,
 * with the oracle in scripts/access-space-lib.mjs (architecture rules, independent of
 * permission.ts / paging_tmpl.ts). CI runs a fixed-seed sample per paging mode; the full space
 * (19,169,280 cases per mode) is `npm run conformance -w @mmulab/core`.
 */
import { describe, expect, it } from "vitest";
// @ts-expect-error -- plain JS module shared with the full-space script
import * as space from "../scripts/access-space-lib.mjs";
import { createVm } from "../src";

const SAMPLE = 300_000;
const SEED = 2007;

describe("access.c test space", () => {
  it("has 19,169,280 legal cases at MAXPHYADDR 46 (ac_test_legal)", () => {
    expect(space.countLegal(46)).toBe(19_169_280);
  }, 60_000);

  for (const [levels, mmu, sample] of [
    [4, undefined, SAMPLE],
    [5, undefined, SAMPLE],
    [4, "none", SAMPLE / 3],
    [5, "none", SAMPLE / 3],
  ] as const) {
    it(`${levels}-level, mmu ${mmu ?? "default"}: ${sample} seeded cases agree with the oracle (fault, error code, PTE/PDE A/D)`, () => {
      const run = space.makeHarness(createVm, levels, 46, mmu);
      const seed = SEED + levels + (mmu === undefined ? 0 : 100);
      const failures: string[] = space.runSeededSample(run, 46, seed, sample);
      expect(failures).toEqual([]);
    }, 120_000);
  }

  // Shadow paging (ept=0): the guest writes its entries itself and runs INVLPG, as access.c
  // does; no CR4.PKE cases (KVM offers no protection keys without TDP).
  it("shadow mode: 3,833,856 legal cases without CR4.PKE (a fifth of the space)", () => {
    expect(space.countLegal(46, true)).toBe(19_169_280 / 5);
  }, 60_000);
  for (const levels of [4, 5]) {
    it(`${levels}-level, mmu shadow: ${SAMPLE / 3} seeded cases agree with the oracle, audit clean`, () => {
      const vms: ReturnType<typeof createVm>[] = [];
      const make = (o: Parameters<typeof createVm>[0]) => {
        const vm = createVm(o);
        vms.push(vm);
        return vm;
      };
      const run = space.makeHarness(make, levels, 46, "shadow");
      const failures: string[] = space.runSeededSample(
        run,
        46,
        SEED + levels + 200,
        SAMPLE / 3,
        undefined,
        true,
      );
      expect(failures).toEqual([]);
      expect(vms[0]!.stats.mmu_pte_write).toBeGreaterThan(0);
      expect(vms[0]!.stats.invlpg).toBeGreaterThan(0);
      expect(vms[0]!.audit()).toEqual([]);
    }, 120_000);
  }
  it("the shadow harness notices a KVM that misses the guest's trapped table writes", () => {
    const deaf = (opts: Parameters<typeof createVm>[0]) => {
      const vm = createVm(opts);
      vm.mmu!.shadow!.trackWrite = () => {};
      return vm;
    };
    const run = space.makeHarness(deaf, 4, 46, "shadow");
    const failures: string[] = space.runSeededSample(run, 46, SEED, 5000, undefined, true);
    expect(failures.length).toBeGreaterThan(0);
  });

  for (const levels of [4, 5]) {
    it(`${levels}-level at MAXPHYADDR 36: bit 36 is reserved too (50,000 seeded cases)`, () => {
      const run = space.makeHarness(createVm, levels, 36);
      expect(space.freeBits(36)).toContain(space.FLAG_NAMES.indexOf("pte.36"));
      const bit36 =
        (1 << space.FLAG_NAMES.indexOf("pte.36")) | (1 << space.FLAG_NAMES.indexOf("pde.36"));
      let withBit36 = 0;
      const failures: string[] = space.runSeededSample(
        run,
        36,
        SEED + 36 + levels,
        50_000,
        (f: number) => {
          if (f & bit36) withBit36++;
        },
      );
      expect(failures).toEqual([]);
      expect(withBit36).toBeGreaterThan(1000);
    }, 120_000);
  }

  it("the harness notices a wrong walker (error code without PK)", () => {
    // Guard against a harness that cannot fail: wrap access() to drop PFERR_PK and expect mismatches.
    const broken = (opts: Parameters<typeof createVm>[0]) => {
      const vm = createVm(opts);
      const create = vm.createVcpu.bind(vm);
      vm.createVcpu = () => {
        const v = create();
        const access = v.access.bind(v);
        v.access = (gva, o) => {
          const r = access(gva, o);
          return r.fault ? { ...r, errorCode: r.errorCode & ~0x20 } : r;
        };
        return v;
      };
      return vm;
    };
    const run = space.makeHarness(broken, 4, 46);
    const F = (...names: string[]) =>
      names.reduce((f, n) => f | (1 << space.FLAG_NAMES.indexOf(n)), 0) >>> 0;
    // PKRU.AD on a user page with key 1 and CR4.PKE: a PK fault.
    expect(
      run(F("pte.p", "pte.user", "pde.p", "pde.user", "pde.rw", "pkey=1", "pkru.ad", "cr4.pke")),
    ).toMatch(/error 0x1 expected 0x21/);
  });
});
