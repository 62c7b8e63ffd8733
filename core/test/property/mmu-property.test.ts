/**
 * The MMU property suite in CI: 20 seeds × 10,000 commands. Seed s runs `configForSeed(s)`, so
 * the 20 seeds cover every MMU of `MMU_CONFIGS` (the TDP MMU, the legacy direct MMU, shadow
 * paging, TDP without EPT A/D, and every era preset), every guest paging mode and every dirty-log
 * mode. After every command the system under test agrees with the bare walker machine, its audit
 * is clean and its dirty log has reported every page written (world.ts). A failure prints the
 * seed and the shrunk program as a ready-to-paste test. `npm run soak` runs the same with
 * 1,000,000 commands per seed (scripts/soak.mjs).
 *
 * MMU_PROPERTY_OPS and MMU_PROPERTY_SEEDS (a count, or a list "3,7") change the sizes for a local
 * run; MMU_PROPERTY_SHRINK_BUDGET the commands the shrinker may run (0: report unshrunk).
 */
import { describe, expect, it } from "vitest";
import { failureReport, runSeed } from "./program";
import { configForSeed, configName } from "./world";

const OPS = Number(process.env.MMU_PROPERTY_OPS ?? 10_000);
const SHRINK =
  process.env.MMU_PROPERTY_SHRINK_BUDGET === undefined
    ? undefined
    : Number(process.env.MMU_PROPERTY_SHRINK_BUDGET);
const SEEDS = (process.env.MMU_PROPERTY_SEEDS ?? "20").includes(",")
  ? process.env
      .MMU_PROPERTY_SEEDS!.split(",")
      .filter((x) => x !== "")
      .map(Number)
  : Array.from({ length: Number(process.env.MMU_PROPERTY_SEEDS ?? 20) }, (_, i) => i);

describe(`MMU property: ${SEEDS.length} seeds × ${OPS} commands`, () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${configName(configForSeed(seed))}`, () => {
      const r = runSeed(seed, {
        ops: OPS,
        shrinkBudget: SHRINK,
        onFailure: (msg) => console.error(`seed ${seed} failed (shrinking next): ${msg}`),
      });
      if (!r.ok) {
        const report = failureReport(r);
        console.error(report);
        expect.fail(report);
      }
      // The program ran in full and made accesses on both machines.
      expect(r.stats.ops).toBe(OPS);
      expect(r.stats.accesses).toBeGreaterThan(OPS / 4);
    }, 900_000);
  }
});
