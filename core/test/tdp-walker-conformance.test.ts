/**
 * The walker conformance sample (kvm-unit-tests access.c space, helper W's oracle in
 * scripts/access-space-lib.mjs) run explicitly with the TDP MMU beneath the guest walk: every
 * guest table read, A/D write-back and final access goes through EPT tables built on EPT
 * violations, and the results must still agree with the architecture oracle.
 */
import { describe, expect, it } from "vitest";
// @ts-expect-error -- plain JS module shared with the full-space script
import * as space from "../scripts/access-space-lib.mjs";
import { createVm, type Vm, type VmOptions } from "../src";

const SAMPLE = 100_000;

describe('access.c sample with mmu: "tdp"', () => {
  for (const levels of [4, 5]) {
    it(`${levels}-level: ${SAMPLE} seeded cases agree with the oracle; EPT faults taken; audit clean`, () => {
      const made: Vm[] = [];
      const tdpVm = (opts: VmOptions = {}) => {
        const vm = createVm({
          ...opts,
          mmu: "tdp",
          features: { ...(opts.features ?? {}), selfCheckGfns: true },
        });
        made.push(vm);
        return vm;
      };
      const run = space.makeHarness(tdpVm, levels, 46);
      const failures: string[] = space.runSeededSample(run, 46, 3 + levels, SAMPLE);
      expect(failures).toEqual([]);
      expect(made.length).toBeGreaterThan(0);
      for (const vm of made) {
        expect(vm.mmu).not.toBeNull();
        expect(vm.stats.pf_fixed).toBeGreaterThan(0); // the guest walk really ran over EPT
        expect(vm.audit()).toEqual([]);
      }
    }, 120_000);
  }
});
