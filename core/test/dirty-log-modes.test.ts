/**
 * dirty_log_test.c's rule in every mode (GET only, with and without EPT A/D bits, manual protect, manual + initially-set, the
 * dirty ring with soft-full exits, PML, ring + PML): over 32 iterations of two vCPUs writing
 * random pages, every page written since the previous collection is reported (none missed), and
 * every reported page is one KVM holds as dirty (written since then; with KVM_DIRTY_LOG_INITIALLY_SET
 * the first collection holds every page). Plus the ring's and PML's own mechanics.
 */
import { describe, expect, it } from "vitest";
import { createVm, guestRandomU32 } from "../src";

const NPAGES = 4096;
const BASE = 0x10000000; // the logged slot's gpa (paging off: gva = gpa)
const LOG = 1;

const MODES = [
  "get",
  "get, EPT A/D off",
  "manual",
  "manual+initially-set",
  "ring",
  "pml",
  "ring+pml",
] as const;
type Mode = (typeof MODES)[number];

/**
 * `prefault`: the slot is first registered without logging and every page is written once, so
 * that turning logging on (a flags change) finds mapped leaves, huge ones included, and must
 * write-protect them or clear their D bits (kvm_mmu_slot_apply_flags).
 */
function run(
  mode: Mode,
  iterations = 32,
  mmuFlavor: "tdp_mmu" | "legacy_direct" = "tdp_mmu",
  prefault = false,
) {
  const manual = mode === "manual" || mode === "manual+initially-set";
  const ring = mode === "ring" || mode === "ring+pml";
  const pml = mode === "pml" || mode === "ring+pml";
  const vm = createVm({
    features: {
      manualDirtyLogProtect: manual,
      dirtyLogInitiallySet: mode === "manual+initially-set",
      pml,
      eptAccessDirty: mode !== "get, EPT A/D off",
      mmuFlavor,
    },
  });
  // Small rings, so that soft-full exits happen: 512 entries (soft limit 448), or 1024 with PML
  // (its 512-entry buffer is reserved too: soft limit 448).
  if (ring) vm.enableCap("KVM_CAP_DIRTY_LOG_RING", (pml ? 1024 : 512) * 16);
  const region = { slot: 1, guestPhysAddr: BASE, memorySize: NPAGES * 4096 };
  vm.setUserMemoryRegion({ ...region, flags: prefault ? 0 : LOG });
  const vcpus = [vm.createVcpu(), vm.createVcpu()];
  if (prefault) {
    for (let p = 0; p < NPAGES; p++)
      expect(vcpus[p & 1]!.write(BASE + p * 4096, 0n).fault).toBe(false);
    vm.setUserMemoryRegion({ ...region, flags: LOG });
  }
  const rng = [{ seed: 11 }, { seed: 12 }];
  let reported = new Set<number>();
  const harvest = () => {
    for (const v of vcpus) {
      v.pause();
      for (const e of v.dirtyRing!.harvest()) {
        expect(e.slot).toBe(1);
        reported.add(e.offset);
      }
    }
    vm.resetDirtyRings();
  };
  let firstCollection = true;
  let exits = 0;
  const failures: string[] = [];
  for (let it = 1; it <= iterations; it++) {
    const written = new Set<number>();
    for (let k = 0; k < 1500; k++) {
      const v = k & 1;
      const page = guestRandomU32(rng[v]!) % NPAGES;
      for (;;) {
        const r = vcpus[v]!.write(BASE + page * 4096, BigInt(it));
        if (r.exit === "dirty_ring_full") {
          exits++;
          harvest(); // userspace collects on KVM_EXIT_DIRTY_RING_FULL, then runs the vCPU again
          continue;
        }
        expect(r.fault).toBe(false);
        break;
      }
      written.add(page);
    }
    // Collect.
    if (ring) harvest();
    else {
      const bm = vm.getDirtyLog(1);
      for (let p = 0; p < NPAGES; p++) if ((bm[p >>> 5]! >>> (p & 31)) & 1) reported.add(p);
      if (manual) vm.clearDirtyLog(1, 0, NPAGES, bm);
    }
    for (const p of written)
      if (!reported.has(p)) failures.push(`iteration ${it}: page ${p} written, not reported`);
    const initAll = firstCollection && mode === "manual+initially-set";
    if (!initAll)
      for (const p of reported)
        if (!written.has(p)) failures.push(`iteration ${it}: page ${p} reported, not written`);
    firstCollection = false;
    reported = new Set<number>();
  }
  return { failures, exits, vm, vcpus };
}

describe("dirty_log_test's rule, 32 iterations", () => {
  for (const mode of MODES) {
    it(`${mode}: nothing missed, nothing KVM would not hold`, () => {
      const { failures, exits, vm } = run(mode);
      expect(failures.slice(0, 5)).toEqual([]);
      if (mode.startsWith("ring")) expect(exits).toBeGreaterThan(0); // soft-full exits happened
      if (mode.includes("pml")) {
        // Leaves stayed writable: the writes after the first fault took no write-protect faults.
        expect(vm.stats.pf_fast).toBe(0);
        expect(vm.stats.pml_full_exits).toBeGreaterThan(0);
      } else expect(vm.stats.pf_fast).toBeGreaterThan(0);
    }, 60_000);
  }
});

describe("the same on the rmap MMU (tdp_mmu=0), logging turned on over mapped pages", () => {
  for (const mode of MODES) {
    it(`${mode}: nothing missed, nothing KVM would not hold`, () => {
      const { failures, vm } = run(mode, 8, "legacy_direct", true);
      expect(failures.slice(0, 5)).toEqual([]);
      expect(vm.audit()).toEqual([]);
    }, 60_000);
  }
});

describe("dirty ring and PML mechanics", () => {
  it("KVM_CAP_DIRTY_LOG_RING: a power of two of at least a page, once, before vCPUs; GET is ENXIO", () => {
    const vm = createVm();
    expect(() => vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 3000)).toThrow(/power of two/);
    expect(() => vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 2 ** 21)).toThrow(/65,536 entries/);
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 65536);
    expect(() => vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 65536)).toThrow(/once/);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 64 * 4096, flags: LOG });
    expect(() => vm.getDirtyLog(1)).toThrow(/ENXIO|ring/);
    const v = vm.createVcpu();
    expect(v.dirtyRing!.size).toBe(4096);
    // S11: 4096 entries, soft limit 4096 - 64 = 4032.
    expect(v.dirtyRing!.size - v.dirtyRing!.reserved).toBe(4032);
    const late = createVm();
    late.createVcpu();
    expect(() => late.enableCap("KVM_CAP_DIRTY_LOG_RING", 65536)).toThrow(/before the first vCPU/);
  });

  it("with PML the soft limit leaves room for the 512-entry buffer: 4096 - 64 - 512 = 3520", () => {
    const vm = createVm({ features: { pml: true } });
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 65536);
    const v = vm.createVcpu();
    expect(v.dirtyRing!.size - v.dirtyRing!.reserved).toBe(3520);
  });

  it("soft-full: the vCPU exits before running the access, until a reset makes room", () => {
    const vm = createVm();
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096); // 256 entries, soft limit 192
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 512 * 4096, flags: LOG });
    const v = vm.createVcpu();
    for (let p = 0; p < 192; p++) expect(v.write(BASE + p * 4096, 1n).exit).toBeUndefined();
    expect(v.dirtyRing!.used).toBe(192);
    const r = v.write(BASE + 192 * 4096, 1n);
    expect(r).toEqual({ fault: false, exit: "dirty_ring_full" });
    expect(vm.readPhys64(BASE + 192 * 4096)).toBe(0n); // it did not run
    expect(v.dirtyRing!.harvest().map((e) => e.offset)).toEqual(
      Array.from({ length: 192 }, (_, i) => i),
    );
    // 192 consecutive offsets coalesce into 3 masks of 64: the reset re-protects them, one flush.
    const flushes = vm.stats.remote_tlb_flush_requests;
    expect(vm.resetDirtyRings()).toBe(192);
    expect(vm.stats.remote_tlb_flush_requests - flushes).toBe(1);
    expect(v.write(BASE + 192 * 4096, 1n).fault).toBe(false);
    expect(vm.stats.dirty_ring_full_exits).toBe(1);
  });

  it("PML at enable: 4K leaves keep W and lose D; a write sets D and is logged, no fault", () => {
    const vm = createVm({ features: { pml: true } });
    const region = (flags: number) =>
      vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 64 * 4096, flags });
    region(0);
    const v = vm.createVcpu();
    for (let p = 0; p < 64; p++) v.write(BASE + p * 4096, 1n);
    region(LOG);
    const leaf = (p: number) => vm.walkGpa(BASE + p * 4096).steps.at(-1)!.flags;
    expect(leaf(5)).toContain("writable");
    expect(leaf(5)).not.toContain("dirty");
    const faults = vm.stats.pf_taken;
    v.write(BASE + 5 * 4096, 2n);
    expect(vm.stats.pf_taken).toBe(faults);
    expect(leaf(5)).toContain("dirty");
    const bm = vm.getDirtyLog(1); // flushes the PML buffer first (kvm_arch_sync_dirty_log)
    expect(bm[0]).toBe(1 << 5);
    // GET re-arms with D clear (kvm_mmu_clear_dirty_pt_masked), W stays.
    expect(leaf(5)).toContain("writable");
    expect(leaf(5)).not.toContain("dirty");
    expect(vm.audit()).toEqual([]);
  });
});
