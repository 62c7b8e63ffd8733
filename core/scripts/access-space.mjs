#!/usr/bin/env node
// Run the whole kvm-unit-tests access.c space (19,169,280 legal cases per paging mode at
// MAXPHYADDR 46) against the built @mmulab/core, 4- and 5-level, and print timings.
// Usage: node core/scripts/access-space.mjs [--levels 4|5|4,5] [--sample N --seed S]
//        [--maxphyaddr B] [--mmu none|tdp|shadow] [--writes host|guest]
// Under --mmu shadow the guest writes its entries itself and runs INVLPG (as access.c does), and
// CR4.PKE cases are left out: KVM offers no protection keys without TDP.
// Build first: npm run build -w @mmulab/core
import { createRequire } from "node:module";
import {
  countLegal,
  describeFlags,
  freeBits,
  isLegal,
  makeDeposit,
  makeHarness,
  xorshift32,
} from "./access-space-lib.mjs";

const require = createRequire(import.meta.url);
const { createVm } = require("../dist/cjs/index.js");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const levelsList = String(opt("levels", "4,5")).split(",").map(Number);
const sample = Number(opt("sample", "0"));
const seed = Number(opt("seed", "2007"));
const maxPhys = Number(opt("maxphyaddr", "46"));
const mmu = opt("mmu", undefined); // default: the VM's default MMU
const writes = opt("writes", undefined);
const noPke = mmu === "shadow";

const pos = freeBits(maxPhys);
const dep = makeDeposit(pos);
const space = 2 ** pos.length;
let exitCode = 0;
for (const levels of levelsList) {
  const run = makeHarness(createVm, levels, maxPhys, mmu, writes);
  const t0 = process.hrtime.bigint();
  let cases = 0;
  let failures = 0;
  const check = (f) => {
    cases++;
    const err = run(f);
    if (err !== null) {
      failures++;
      if (failures <= 10) console.log(`  FAIL ${levels}-level [${describeFlags(f)}]: ${err}`);
    }
  };
  if (sample > 0) {
    const rnd = xorshift32(seed + levels);
    while (cases < sample) {
      const f = dep(rnd() % space);
      if (isLegal(f, noPke)) check(f);
    }
  } else {
    for (let r = 0; r < space; r++) {
      const f = dep(r);
      if (isLegal(f, noPke)) check(f);
      if ((r & 0xffffff) === 0xffffff)
        process.stdout.write(
          `  ${levels}-level: ${cases} cases, ${Number(process.hrtime.bigint() - t0) / 1e9}s\r`,
        );
    }
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(
    `${levels}-level${mmu ? ` (mmu ${mmu})` : ""}${writes ? ` (${writes} writes)` : ""}: ${cases} cases, ${failures} failures, ${secs.toFixed(1)} s (${(cases / secs / 1e3).toFixed(0)}k cases/s)`,
  );
  if (failures > 0) exitCode = 1;
  if (sample === 0 && cases !== countLegalCached()) {
    console.log(`  case count ${cases} differs from the legal count`);
    exitCode = 1;
  }
}
function countLegalCached() {
  if (countLegalCached.v === undefined) countLegalCached.v = countLegal(maxPhys, noPke);
  return countLegalCached.v;
}
process.exit(exitCode);
