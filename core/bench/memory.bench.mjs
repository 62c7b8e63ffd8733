// Memory cost of a sparse VM: 1 TiB of memslots (4 slots of 256 GiB) with 10,000 touched 4 KiB
// pages spread over the whole range (seeded), plus 100,000 reads of never-written pages.
// Prints RSS before, after and the difference, and the bytes the store holds.
import { createRequire } from "node:module";
import { xorshift32 } from "../scripts/access-space-lib.mjs";

const require = createRequire(import.meta.url);
const { createVm } = require("../dist/cjs/index.js");

const gc = globalThis.gc ?? (() => {});
const mb = (b) => `${(b / 2 ** 20).toFixed(1)} MB`;
gc();
const rss0 = process.memoryUsage().rss;
for (const mmu of process.argv.includes("--tdp") ? ["tdp"] : ["none"]) {
  const vm = createVm({ maxPhysAddrBits: 46, mmu });
  const GiB = 2 ** 30;
  for (let s = 0; s < 4; s++)
    vm.setUserMemoryRegion({
      slot: s,
      guestPhysAddr: s * 256 * GiB,
      memorySize: 256 * GiB,
      flags: 0,
    });
  const rnd = xorshift32(2007);
  const pages = 2 ** 28; // 1 TiB / 4 KiB
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 10_000; i++) {
    const gfn = (rnd() * 2 ** 28 + rnd()) % pages;
    vm.guestWrite64(gfn * 4096 + 8 * (i & 511), BigInt(i + 1));
  }
  let zeros = 0;
  for (let i = 0; i < 100_000; i++) {
    const gfn = (rnd() * 2 ** 28 + rnd()) % pages;
    if (vm.readPhys64(gfn * 4096) === 0n) zeros++;
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  gc();
  const rss1 = process.memoryUsage().rss;
  console.log(
    `mmu=${mmu}: 1 TiB of memslots, ${vm.memory.framesAllocated} frames backed (10,000 writes), ${zeros} of 100,000 random reads were zero`,
  );
  console.log(
    `  store holds ${mb(vm.memory.bytesAllocated)}; RSS ${mb(rss0)} before, ${mb(rss1)} after: +${mb(rss1 - rss0)} (goal < 64 MB); ${secs.toFixed(2)} s`,
  );
}
// The same under the TDP MMU (EPT tables for scattered pages cost a page-table page each), in a
// fresh process so the RSS figures do not mix.
if (!process.argv.includes("--tdp")) {
  const { spawnSync } = await import("node:child_process");
  spawnSync(process.execPath, ["--expose-gc", new URL(import.meta.url).pathname, "--tdp"], {
    stdio: "inherit",
  });
}
