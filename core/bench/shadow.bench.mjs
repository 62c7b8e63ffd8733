// Shadow paging benchmark (mmu "shadow", ept=0) beside TDP and the bare machine: a 4-level
// guest maps 1 GiB with 4K pages; the guest touches every page once in random order (populate:
// under shadow paging each first touch is a #PF VM exit, FNAME(page_fault) builds the shadow
// entries; under TDP an EPT violation), then makes random reads over the populated GiB
// (steady state: the CPU walks the shadow tables, or the guest tables plus EPT).
// Prints faults/s, accesses/s and walks/s; timing is printed, never asserted.
import { createRequire } from "node:module";
import { xorshift32 as xorshift } from "../scripts/access-space-lib.mjs";

const require = createRequire(import.meta.url);
const core = require("../dist/cjs/index.js");

const GIB = 2 ** 30;
const PAGES = GIB / 4096;
const GVA = 0x7f0000000000;
const REPS = Number(process.env.SHADOW_BENCH_REPS ?? 3);
const STEADY = 4 * PAGES;

/** A random permutation of [0, n) (Fisher-Yates, seeded). */
function permutation(n, seed) {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const r = xorshift(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = r() % (i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

function guest(mmu) {
  const vm = core.createVm({ mmu });
  // 1 GiB of data at gpa 0, the guest's tables in 4 MiB above it.
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GIB + 4 * 2 ** 20, flags: 0 });
  const b = new core.GuestPageTableBuilder(vm, {
    mode: "4-level",
    poolBase: GIB,
    poolSize: 4 * 2 ** 20,
  });
  b.map(GVA, 0, GIB, { writable: true, user: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...b.sregs({ nx: true }), cpl: 3 });
  return { vm, vcpu };
}

const order = permutation(PAGES, 2010);
const steadyOrder = permutation(PAGES, 2017);

function run(mmu) {
  let populateNs = Infinity;
  let steadyNs = Infinity;
  let stats;
  for (let rep = 0; rep < REPS; rep++) {
    const { vm, vcpu } = guest(mmu);
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < PAGES; i++) vcpu.access(GVA + order[i] * 4096);
    populateNs = Math.min(populateNs, Number(process.hrtime.bigint() - t0));
    stats = vm.stats;
    const faults = stats.pf_taken;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < STEADY; i++) vcpu.access(GVA + steadyOrder[i % PAGES] * 4096 + (i & 0xff8));
    steadyNs = Math.min(steadyNs, Number(process.hrtime.bigint() - t0));
    if (vm.stats.pf_taken !== faults) throw new Error(`${mmu}: steady state took faults`);
  }
  return { populateNs, steadyNs, stats };
}

const fmt = (n) => n.toLocaleString("en-US", { maximumFractionDigits: 2 });
console.log(
  `shadow.bench: 4-level guest, 1 GiB mapped with 4K pages, random order, best of ${REPS}`,
);
for (const mmu of ["shadow", "tdp", "none"]) {
  const { populateNs, steadyNs, stats } = run(mmu);
  const faults = stats.pf_taken;
  const perFault = faults > 0 ? `${fmt(faults / (populateNs / 1e9) / 1e6)} M faults/s, ` : "";
  console.log(
    `  mmu ${mmu.padEnd(6)} populate: ${fmt(faults)} faults, ${perFault}${fmt(PAGES / (populateNs / 1e9) / 1e6)} M first touches/s` +
      `  | steady: ${fmt(STEADY / (steadyNs / 1e9) / 1e6)} M walks/s` +
      (mmu === "shadow"
        ? `  | shadow pages ${fmt(stats.n_used_mmu_pages)}, indirect ${fmt(stats.indirect_shadow_pages)}`
        : ""),
  );
}
