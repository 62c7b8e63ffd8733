// MMU trace cost: the TDP and rmap fault handlers populating 256 MiB at 4K in random order,
// trace off and trace on (a ring of 2^16 events, overwritten), interleaved in one process. Prints faults/s and
// what tracing on costs. What tracing costs while OFF (one property test per hook) is measured
// against a build without the hooks: see README "Benchmarks". Timing is printed, never asserted.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const core = require("../dist/cjs/index.js");
const N = 65536;
const REPS = Number(process.env.TRACE_BENCH_REPS ?? 8);

function run(flavor, traced) {
  const vm = core.createVm({ features: { mmuFlavor: flavor, prefetch: false } });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: N * 4096,
    flags: 0,
    backing: "4k",
  });
  const v = vm.createVcpu();
  v.enterGuest();
  if (traced) vm.startTrace(2 ** 16);
  const mmu = vm.mmu;
  const t0 = performance.now();
  for (let g = 0; g < N; g++) mmu.pageFault(v.mmu, 0, ((g * 40503) % N) * 4096, 4);
  const ms = performance.now() - t0;
  let events = 0;
  if (traced) {
    const t = vm.stopTrace();
    events = t.events.length + t.dropped;
  }
  return { rate: N / (ms / 1000) / 1e6, events };
}

for (const flavor of ["tdp_mmu", "legacy_direct"]) {
  let off = 0;
  let on = 0;
  let events = 0;
  for (let r = 0; r < REPS; r++) {
    off = Math.max(off, run(flavor, false).rate);
    const t = run(flavor, true);
    on = Math.max(on, t.rate);
    events = t.events;
  }
  console.log(
    `trace.bench ${flavor}: off ${off.toFixed(2)} M faults/s, on ${on.toFixed(2)} M faults/s ` +
      `(${((1 - on / off) * 100).toFixed(1)} % slower, ${(events / N).toFixed(1)} events per fault)`,
  );
}
