// The tests StrykerJS runs against each mutant (stryker.config.mjs). The whole core suite takes
// minutes, far too slow per mutant, so scripts/mutate.mjs names the unit files that exercise the
// module under test in MUTATE_TESTS (comma-separated, relative to core/); without it, every core
// test file except the slow ones below. `npm test` runs everything at full size.
import { defineConfig } from "vitest/config";

const named = process.env.MUTATE_TESTS?.split(",").filter((f) => f !== "");

export default defineConfig({
  test: {
    include: named ?? ["test/**/*.test.ts"],
    exclude: named
      ? []
      : [
          // Packaging (esbuild, tsc, dist): not the model.
          "test/build.test.ts",
          "test/layering.test.ts",
          "test/ts50-consumer.test.ts",
          // Minutes each: the access.c sample, memstress's long runs, the property suite.
          "test/walker-access-space.test.ts",
          "test/memstress.test.ts",
          "test/property/mmu-property.test.ts",
        ],
    env: { MMU_PROPERTY_OPS: "300", MMU_PROPERTY_SHRINK_BUDGET: "0" },
    testTimeout: 60_000,
  },
});
