/**
 * The era switches the presets are built from, one by one, against what each release did:
 * the hash of mmu_page_hash (S5 buckets), PTE_LIST_EXT, v4 reclaim (the tail page, roots
 * included), the fast-path eras, and the v4 spte layout in views.
 */
import { describe, expect, it } from "vitest";
import { createVm } from "../src";
import { PteListDescPool, pteListAdd } from "../src/mmu/mmu";

const MIB = 2 ** 20;

describe("era switches", () => {
  it("hashShift 10 + hashFn mask: the S5 table gfns 0x100..0x103 land in buckets 256..259", () => {
    const vm = createVm({
      features: { mmuFlavor: "legacy_direct", hashShift: 10, hashFn: "mask" },
    });
    const sh = vm.mmu!.shadow!;
    expect([0x100, 0x101, 0x102, 0x103].map((g) => sh.hashOf(g))).toEqual([256, 257, 258, 259]);
    expect(sh.hash.length).toBe(1024);
    // hash_64(gfn, 10) is the top 10 bits of the 64-bit product: hash_64(gfn, 12) >> 2.
    const modern = createVm({ features: { mmuFlavor: "legacy_direct", hashShift: 10 } });
    expect(modern.mmu!.shadow!.hashOf(0x100)).toBe(3208 >> 2);
  });

  it("pteListExt 3: seven sptes on one list take three descriptors (one with 14)", () => {
    for (const [ext, descs] of [
      [3, 3],
      [14, 1],
    ] as const) {
      const pool = new PteListDescPool(ext);
      const heads = new Uint32Array(1);
      for (let i = 0; i < 7; i++) pteListAdd(pool, heads, 0, 100 + i);
      expect(pool.live).toBe(descs);
    }
  });

  it("reclaim 'legacy': the tail page goes first, a pinned root included, mmu_recycled per step", () => {
    // S9's geometry: KVM_SET_NR_MMU_PAGES 64, one page touched per 2M region. Fault 58 finds
    // n_used 60 (available 4 < 5): v4 zaps the tail (the root, pinned: n_used stays), then
    // L3, L2, PT0.. until 25 are available (n_used 39): 1 + 21 steps.
    for (const [reclaim, recycled] of [
      ["legacy", 22],
      ["modern", 21],
    ] as const) {
      const vm = createVm({
        features: { mmuFlavor: "legacy_direct", prefetch: false, reclaim },
      });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 ** 30, flags: 0 });
      vm.setNrMmuPages(64);
      const vcpu = vm.createVcpu();
      for (let k = 0; k < 57; k++) vcpu.access(k * 2 * MIB);
      expect(vm.stats.n_used_mmu_pages).toBe(60);
      expect(vm.stats.mmu_recycled).toBe(0);
      vcpu.access(57 * 2 * MIB);
      expect(vm.stats.mmu_recycled).toBe(recycled);
      for (let k = 58; k < 70; k++) vcpu.access(k * 2 * MIB);
      expect(vm.audit()).toEqual([]);
    }
  });

  it("fastPageFault: after GET_DIRTY_LOG the writes are fast ('modern', 'v4': 4K MMU-writable) or slow ('none')", () => {
    for (const [mode, fast] of [
      ["modern", 2048],
      ["v4", 2048],
      ["none", 0],
    ] as const) {
      const vm = createVm({
        features: { mmuFlavor: "legacy_direct", prefetch: false, fastPageFault: mode },
      });
      const region = (flags: number) =>
        vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 8 * MIB, flags });
      region(1);
      const vcpu = vm.createVcpu();
      for (let g = 0; g < 2048; g++) vcpu.access(g * 4096, { write: true });
      vm.getDirtyLog(0);
      const before = vm.stats.pf_fast;
      for (let g = 0; g < 2048; g++) vcpu.access(g * 4096, { write: true });
      expect(vm.stats.pf_fast - before).toBe(fast);
      expect(vm.audit()).toEqual([]);
    }
  });

  it("spteLayout 'v4': views print Host-writable at bit 10, MMU-writable at 11, no MMU-present bit", () => {
    const values = (layout: "modern" | "v4") => {
      const vm = createVm({ features: { spteLayout: layout } });
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 8 * MIB, flags: 0 });
      vm.createVcpu().access(0x5000, { write: true });
      return BigInt(vm.walkGpa(0x5000).steps.at(-1)!.spte);
    };
    const m = values("modern");
    const v4 = values("v4");
    // Modern EPT leaf: MMU-present 11, Host-writable 57, MMU-writable 58.
    expect((m >> 11n) & 1n).toBe(1n);
    expect((m >> 57n) & 3n).toBe(3n);
    expect((v4 >> 57n) & 3n).toBe(0n);
    expect((v4 >> 10n) & 3n).toBe(3n); // Host-writable 10, MMU-writable 11
    // Everything else is the same.
    const mask = ~((1n << 10n) | (1n << 11n) | (1n << 57n) | (1n << 58n));
    expect(v4 & mask).toBe(m & mask);
  });
});
