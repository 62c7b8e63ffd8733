// vcpu.access() over 1 GiB of 4 KiB pages in random order, as a fraction of a bare typed-array
// 4-level walk over the same kind of tables, both in this one process, reps interleaved.
//
// Why a second ratio beside shared/bench/walk-ratio.mjs (which runs the bare walk in child
// processes): on this machine a whole process gets a fast or a slow memory placement (the bare
// walk alone runs at about 10 or 26 M walks/s from one process to the next), so a ratio across
// processes swings with the draw. Here both walks share the process, and the ratio is the code's.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const core = require("../dist/cjs/index.js");
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const N = 262144; // 1 GiB of 4 KiB pages
const REPS = 8;

// ---- the bare walk: tables as 4 KiB frames of u32 pairs, a gfn -> frame directory -------------
const pool = new Uint32Array(520 * 1024);
const frameOfGfn = new Int32Array(1 << 20).fill(-1);
let frames = 0;
let nextTableGpa = 0x100_0000;
function newTable() {
  const gpa = nextTableGpa;
  nextTableGpa += 4096;
  frameOfGfn[gpa >>> 12] = frames++;
  return gpa;
}
function setEntry(tableGpa, index, lo) {
  pool[frameOfGfn[tableGpa >>> 12] * 1024 + index * 2] = lo;
}
// gva 0..1 GiB -> gpa 1 GiB.., present | writable | user (| accessed on the upper levels).
const pml4 = newTable();
const pdpt = newTable();
const pd = newTable();
setEntry(pml4, 0, pdpt | 0x27);
setEntry(pdpt, 0, pd | 0x27);
for (let i = 0; i < 512; i++) {
  const pt = newTable();
  setEntry(pd, i, pt | 0x27);
  for (let j = 0; j < 512; j++) setEntry(pt, j, (GiB + (i * 512 + j) * 4096) | 0x7);
}
/** Returns the gpa, or a negative number for a fault; sets A, and D on a write. */
function bareWalk(gva, write) {
  let table = pml4;
  let rights = 7;
  for (let shift = 39; ; shift -= 9) {
    const f = frameOfGfn[table >>> 12];
    if (f < 0) return -1;
    const o = f * 1024 + ((shift >= 32 ? 0 : gva >>> shift) & 511) * 2;
    let e = pool[o];
    if ((e & 1) === 0) return -2;
    rights &= e;
    if ((e & 0x20) === 0) pool[o] = e |= 0x20;
    if (shift === 12) {
      if (write && (rights & 2) === 0) return -3;
      if ((rights & 4) === 0) return -4;
      if (write && (e & 0x40) === 0) pool[o] = e | 0x40;
      return (e & 0xfffff000) >>> 0;
    }
    table = (e & 0xfffff000) >>> 0;
  }
}

// ---- the contract walk ------------------------------------------------------------------------
function vcpuFor(mmu) {
  const vm = core.createVm({ mmu });
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 2 * GiB,
    flags: 0,
    backing: "4k",
  });
  const b = new core.GuestPageTableBuilder(vm, {
    mode: "4-level",
    poolBase: 16 * MiB,
    poolSize: 8 * MiB,
  });
  b.map(GiB, GiB, GiB, { writable: true, user: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...b.sregs({ nx: true }), cpl: 3 });
  for (let i = 0; i < N; i++) vcpu.access(GiB + i * 4096, { write: true, user: true });
  return vcpu;
}

const rate = (f) => {
  const t0 = performance.now();
  f();
  return N / ((performance.now() - t0) / 1000) / 1e6;
};
const order = (i) => ((i * 2654435761) % N) * 4096;
let sink = 0;
for (let i = 0; i < 3 * N; i++) sink += bareWalk((i % N) * 4096, true);
const vcpus = { none: vcpuFor("none"), tdp: vcpuFor("tdp") };
const rd = { user: true };
const wr = { write: true, user: true };
const best = { bare: 0, none: 0, tdp: 0 };
for (let rep = 0; rep < REPS; rep++) {
  best.bare = Math.max(
    best.bare,
    rate(() => {
      for (let i = 0; i < N; i++) sink += bareWalk(order(i), (i & 1) === 1);
    }),
  );
  for (const mmu of ["none", "tdp"]) {
    const vcpu = vcpus[mmu];
    best[mmu] = Math.max(
      best[mmu],
      rate(() => {
        for (let i = 0; i < N; i++) vcpu.access(GiB + order(i), (i & 1) === 1 ? wr : rd);
      }),
    );
  }
}
const pct = (x) => `${((100 * x) / best.bare).toFixed(0)} %`;
console.log(
  `walk ratio, same process (1 GiB of 4K pages, random order, best of ${REPS}): bare walk ${best.bare.toFixed(1)} M/s; ` +
    `vcpu.access() none ${best.none.toFixed(2)} M/s (${pct(best.none)}), tdp ${best.tdp.toFixed(2)} M/s (${pct(best.tdp)}) (sink ${sink % 7})`,
);
