// dirty_log_perf_test cycles (issue 12's benchmark): 64 vCPUs x 1 GiB at 4K (16 M pages), 2
// iterations; then 96 vCPUs x 1 GiB on 1 GiB hugetlb, 2 iterations. Prints every phase's wall
// time and simulated counts, the total, and the process RSS (peak) after each run.
// Usage: node --expose-gc core/bench/dirty-log-perf.bench.mjs [--only=4k|1g]
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { dirtyLogPerf } = require("../dist/cjs/index.js");

const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
const runs = [
  { key: "4k", title: "64 vCPUs x 1 GiB, 4K, 2 iterations", opts: { vcpus: 64, iterations: 2 } },
  {
    key: "1g",
    title: "96 vCPUs x 1 GiB, hugetlb-1g, 2 iterations",
    opts: { vcpus: 96, iterations: 2, backing: "hugetlb-1g", eagerSplit: false },
  },
];
const gc = globalThis.gc ?? (() => {});
for (const { key, title, opts } of runs) {
  if (only !== undefined && only !== key) continue;
  gc();
  const t0 = performance.now();
  const r = dirtyLogPerf({ bytesPerVcpu: 2 ** 30, ...opts });
  const wall = (performance.now() - t0) / 1000;
  const mem = process.memoryUsage();
  console.log(`\n${title}`);
  console.log(
    "phase".padEnd(30) +
      ["s", "faults", "fast", "splits", "flushes", "wp pass", "wp words"]
        .map((h) => h.padStart(11))
        .join(""),
  );
  for (const p of r.phases)
    console.log(
      p.name.padEnd(30) +
        [
          (p.ms / 1000).toFixed(2),
          p.faults,
          p.fastFaults,
          p.splits,
          p.flushes,
          p.wrprotSlotPasses,
          p.wrprotMaskedCalls,
        ]
          .map((v) => String(v).padStart(11))
          .join(""),
    );
  const phaseSum = r.phases.reduce((a, p) => a + p.ms, 0) / 1000;
  console.log(
    `total ${wall.toFixed(1)} s wall (phases ${phaseSum.toFixed(1)} s, VM setup ${(wall - phaseSum).toFixed(1)} s); RSS ${(mem.rss / 2 ** 30).toFixed(2)} GiB, heap ${(mem.heapUsed / 2 ** 20).toFixed(0)} MiB, external+arrayBuffers ${((mem.external + mem.arrayBuffers) / 2 ** 20).toFixed(0)} MiB`,
  );
}
