// StrykerJS configuration for `npm run mutate` (scripts/mutate.mjs picks the files to mutate and
// the report paths; run that rather than `stryker run` directly). The tests are the fast unit
// files only (vitest.stryker.config.mts): the whole core suite takes minutes, too slow per mutant.
// scripts/mutate.mjs gives each module its own report folder (MUTATE_REPORT_DIR).
const reports = process.env.MUTATE_REPORT_DIR ?? "../test-artifacts/mutate";

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: "npm",
  testRunner: "vitest",
  vitest: { configFile: "vitest.stryker.config.mts", related: false },
  plugins: ["@stryker-mutator/vitest-runner"],
  // Each mutant runs only the tests that reached it in the initial run.
  coverageAnalysis: "perTest",
  // Static mutants (module-level constants) would need the whole fast suite per mutant.
  ignoreStatic: true,
  // 2-core machines; `--concurrency` overrides.
  concurrency: 1,
  timeoutMS: 20_000,
  dryRunTimeoutMinutes: 15,
  timeoutFactor: 2,
  // Inside core/ so the sandbox keeps the tsconfig's relative `extends`; ignored by git and biome.
  tempDirName: ".stryker-tmp",
  cleanTempDir: true,
  reporters: ["clear-text", "progress-append-only", "json", "html"],
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
  jsonReporter: { fileName: `${reports}/mutation.json` },
  htmlReporter: { fileName: `${reports}/mutation.html` },
  incrementalFile: `${reports}/incremental.json`,
  thresholds: { high: 90, low: 85, break: null },
};
