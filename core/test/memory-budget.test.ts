/**
 * Memory budgets (`createVm({ memoryBudget })`, kvm/memcg.ts): an operation whose allocation
 * would take the VM past its budget throws ResourceLimitError before it allocates, and the VM is
 * as it was. Expected sizes come from the geometry: a page table is a 4 KiB page of 512 sptes
 * (KVM allocates one per huge page it splits, one per level a fault descends into), a dirty
 * bitmap is two buffers of ALIGN(npages, 64) bits (`kvm_dirty_bitmap_bytes`, doubled by
 * `kvm_second_dirty_bitmap`). The simulator adds per-page bookkeeping (columns, JS objects) on
 * top, so its estimates are checked to lie between the geometric need and that need plus
 * {@link OVERHEAD} (see there).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  createVm,
  GuestPageTableBuilder,
  InvalidArgumentError,
  KVM_MEM_LOG_DIRTY_PAGES,
  ResourceLimitError,
  setHostMemoryInfo,
  type Vm,
} from "../src";
import { hostMemoryInfo } from "../src/kvm/host";

const MIB = 2 ** 20;
const GIB = 2 ** 30;
const TIB = 2 ** 40;
const PAGE = 4096;
/**
 * The simulator's bookkeeping per page table on top of its 4 KiB, as a fraction: 178 bytes of
 * columns (up to twice that while they grow by doubling), a typed-array view object (~112 bytes)
 * and its share of a 64-page chunk object: under 12 % of 4096.
 */
const OVERHEAD = 1.12;

/** Dirty bitmap of a slot: ALIGN(npages, 64) bits, twice (the GET/CLEAR snapshot buffer). */
const bitmapBytes = (npages: number): number => (Math.ceil(npages / 64) * 64 * 2) / 8;

/**
 * Everything an operation could change, as one string: KVM's statistics, the memslots and their
 * dirty bitmaps, every live shadow page (role, gfn, 512 sptes), the roots, the memory account,
 * written guest memory, the trace state and the vCPUs' roots and dirty rings.
 */
function vmState(vm: Vm): string {
  let h = 0x811c9dc5;
  const mix = (w: number): void => {
    h = Math.imul(h ^ (w >>> 0), 16777619) >>> 0;
  };
  const mmu = vm.mmu;
  if (mmu !== null) {
    const s = mmu.store;
    for (let id = 0; id < s.created; id++) {
      if (!s.isLive(id)) continue;
      mix(id);
      mix(s.role[id]!);
      mix(s.gfn[id]! % 2 ** 32);
      mix(s.rootCount[id]!);
      const spt = s.spt[id]!;
      for (let i = 0; i < spt.length; i++) mix(spt[i]!);
    }
  }
  for (const slot of vm.memslots.list()) {
    const bm = slot.dirtyBitmap;
    if (bm !== null) for (let i = 0; i < bm.length; i++) mix(bm[i]!);
  }
  const arena = vm.memory.arena;
  for (let i = 0; i < vm.memory.framesAllocated * 1024; i++) mix(arena[i]!);
  return JSON.stringify({
    stats: vm.stats.toJSON(),
    memslots: vm.memslots.toJSON(),
    usage: vm.memoryUsage(),
    frames: vm.memory.framesAllocated,
    tracing: mmu?.trace.on ?? false,
    roots: mmu?.roots ?? [],
    created: mmu?.store.created ?? 0,
    vcpus: vm.vcpus.map((v) => ({ root: v.mmu.root, ring: v.dirtyRing?.size ?? 0 })),
    dirtyRingEntries: vm.dirtyRingEntries,
    hash: h,
  });
}

/** Bytes the process holds outside and on the JS heap (after a GC when exposed). */
function processBytes(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.arrayBuffers + m.heapUsed;
}

/** Run `op`, which must throw ResourceLimitError, and check it neither allocated nor changed anything. */
function refused(vm: Vm, op: () => void, state = vmState): ResourceLimitError {
  const before = state(vm);
  const bytes = processBytes();
  let err: unknown;
  try {
    op();
  } catch (e) {
    err = e;
  }
  const grown = processBytes() - bytes;
  if (!(err instanceof ResourceLimitError))
    throw new Error(`expected ResourceLimitError, got ${String(err)}`);
  // Nothing of the request's size was allocated (a few MiB of slack for the test's own objects).
  expect(grown).toBeLessThan(4 * MIB);
  expect(state(vm)).toBe(before);
  return err;
}

/**
 * `slots` slots of `slotBytes` each from gpa 0, backed by 1 GiB hugetlbfs pages, a 4-level guest
 * mapping gva = gpa with 1 GiB pages, and one vCPU that has touched every GiB (so the TDP MMU
 * maps each with one 1 GiB leaf).
 */
function hugeGuest(
  budget: number,
  slots: number,
  slotBytes: number,
  features: Record<string, unknown> = {},
): Vm {
  const vm = createVm({ maxPhysAddrBits: 46, memoryBudget: budget, features });
  for (let i = 0; i < slots; i++)
    vm.setUserMemoryRegion({
      slot: i,
      guestPhysAddr: i * slotBytes,
      memorySize: slotBytes,
      flags: 0,
      backing: "hugetlb-1g",
    });
  const tables = new GuestPageTableBuilder(vm, {
    mode: "4-level",
    poolBase: 0x100000,
    poolSize: 0x100000,
  });
  tables.map(0, 0, slots * slotBytes, { pageSize: GIB });
  const vcpu = vm.createVcpu();
  vcpu.setSregs(tables.sregs());
  for (let gpa = 0; gpa < slots * slotBytes; gpa += GIB) {
    const r = vcpu.access(gpa, {});
    if (r.fault) throw new Error(`access to ${gpa} faulted`);
  }
  return vm;
}

afterEach(() => setHostMemoryInfo(null));

describe("createVm({ memoryBudget })", () => {
  it("defaults to half the host's RAM when the host says how much, else half of 8 GiB", () => {
    expect(hostMemoryInfo().source).toBe("fallback");
    expect(createVm().memoryUsage().budgetBytes).toBe(4 * GIB);
    setHostMemoryInfo({ totalBytes: 24 * GIB, heapLimitBytes: 4 * GIB });
    const u = createVm().memoryUsage();
    expect(u.budgetBytes).toBe(12 * GIB);
    expect(u.heapBudgetBytes).toBe(2 * GIB);
    expect(createVm({ memoryBudget: 123 * MIB }).memoryUsage().budgetBytes).toBe(123 * MIB);
  });

  it.each([
    ["NaN", Number.NaN],
    ["negative", -1],
    ["zero", 0],
    ["non-integer", 1.5],
    ["past 2^53", 2 ** 53],
    ["infinite", Number.POSITIVE_INFINITY],
    ["a string", "1073741824"],
    ["a bigint", 2n ** 30n],
    ["null", null],
  ])("refuses a budget that is %s, naming it", (_name, value) => {
    let err: unknown;
    try {
      createVm({ memoryBudget: value as number });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).argument).toBe("memoryBudget");
    expect((err as InvalidArgumentError).message).toMatch(/positive safe integer/);
  });

  it("refuses a budget smaller than an empty VM (its first MiB of guest-memory arena)", () => {
    let err: unknown;
    try {
      createVm({ memoryBudget: MIB });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ResourceLimitError);
    // The arena starts with 256 frames of 4 KiB.
    expect((err as ResourceLimitError).estimateBytes).toBeGreaterThan(256 * PAGE);
    expect(createVm({ memoryBudget: 2 * MIB }).memoryUsage().usedBytes).toBeLessThan(2 * MIB);
  });

  it("setHostMemoryInfo refuses sizes that are not positive integers", () => {
    expect(() => setHostMemoryInfo({ totalBytes: -1, heapLimitBytes: null })).toThrow(
      InvalidArgumentError,
    );
    expect(() => setHostMemoryInfo({ totalBytes: GIB, heapLimitBytes: 0.5 })).toThrow(
      InvalidArgumentError,
    );
  });
});

describe("ResourceLimitError before allocating, state unchanged", () => {
  it("16 TiB of 1 GiB pages: eager split to 4K when logging starts is refused", () => {
    // Four 4 TiB slots (a slot holds at most 2^31 - 1 pages, KVM_MEM_MAX_NR_PAGES).
    const vm = hugeGuest(4 * GIB, 4, 4 * TIB);
    expect(vm.stats.pages_1g).toBe(16384);
    const err = refused(vm, () =>
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 4 * TIB,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
      }),
    );
    // kvm_mmu_slot_try_split_huge_pages: each of the slot's 4096 1 GiB leaves takes one table
    // for its 512 2 MiB pieces and 512 tables for their 4K pieces.
    const tables = 4096 * (1 + 512);
    const need = tables * PAGE + bitmapBytes((4 * TIB) / PAGE);
    expect(err.estimateBytes).toBeGreaterThanOrEqual(need);
    expect(err.estimateBytes).toBeLessThanOrEqual(need * OVERHEAD);
    expect(err.budgetBytes).toBe(4 * GIB);
    expect(err.what).toMatch(/KVM_SET_USER_MEMORY_REGION slot 0/);
    expect(err.message).toMatch(/GiB/);
    expect(err.message).toMatch(/memoryBudget/);
    // The slot is still unlogged and every leaf still 1 GiB.
    expect(vm.memslots.get(0)!.dirtyBitmap).toBeNull();
    expect(vm.stats.pages_1g).toBe(16384);
    expect(vm.audit()).toEqual([]);
  });

  it("a dirty ring past KVM_DIRTY_RING_MAX_ENTRIES is KVM's -E2BIG; a ring past the budget fails KVM_CREATE_VCPU", () => {
    const vm = createVm({ memoryBudget: 64 * MIB });
    // 2^20 entries of struct kvm_dirty_gfn (16 bytes): KVM allows at most 65,536.
    expect(() => vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 2 ** 20 * 16)).toThrow(
      expect.objectContaining({ errno: "E2BIG" }),
    );
    // A 65,536-entry ring per vCPU: flags (u8), slot (u32), offset (f64) per entry, and every
    // vCPU under TDP has a 512-entry PML buffer of gpas (f64).
    const perVcpu = 65536 * (1 + 4 + 8) + 512 * 8;
    const probe = createVm({ memoryBudget: 64 * MIB });
    probe.enableCap("KVM_CAP_DIRTY_LOG_RING", 65536 * 16);
    const base = probe.memoryUsage().usedBytes;
    const tight = createVm({ memoryBudget: base + perVcpu - 1 });
    tight.enableCap("KVM_CAP_DIRTY_LOG_RING", 65536 * 16);
    const err = refused(tight, () => tight.createVcpu());
    expect(err.estimateBytes).toBeGreaterThanOrEqual(perVcpu);
    expect(err.estimateBytes).toBeLessThan(perVcpu + 4096); // plus a few JS objects
    expect(err.what).toMatch(/KVM_CREATE_VCPU 0/);
    expect(tight.vcpus.length).toBe(0);
    // With room for the ring, the vCPU is made and the ring charged.
    const roomy = createVm({ memoryBudget: base + perVcpu + 4096 });
    roomy.enableCap("KVM_CAP_DIRTY_LOG_RING", 65536 * 16);
    roomy.createVcpu();
    expect(roomy.memoryUsage().get("dirtyRings").bytes).toBeGreaterThanOrEqual(65536 * 13);
  });

  it("a trace ring of 10^9 events is refused", () => {
    const vm = createVm();
    const err = refused(vm, () => vm.startTrace(1e9));
    // A record: sequence number, event id, vCPU and 8 fields, each an f64.
    expect(err.estimateBytes).toBe(1e9 * (3 + 8) * 8);
    expect(err.budgetBytes).toBe(4 * GIB);
    expect(vm.mmu!.trace.on).toBe(false);
    // A ring that fits is taken, and charged.
    vm.startTrace(1000);
    expect(vm.memoryUsage().get("trace").bytes).toBeGreaterThanOrEqual(1000 * 88);
  });

  it("a first write to new guest memory past the budget is refused before it backs a frame", () => {
    const vm = createVm({ memoryBudget: 8 * MIB });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GIB, flags: 0 });
    // The arena holds 256 frames (1 MiB) at first and doubles: 2 MiB, 4 MiB, 8 MiB...
    let written = 0;
    let err: unknown;
    try {
      for (; written < 4096; written++) vm.guestWrite64(written * PAGE, 1n);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ResourceLimitError);
    // Growing past 1024 frames needs an 8 MiB arena, which with what is held cannot fit 8 MiB.
    expect(written).toBe(1024);
    expect(vm.memory.framesAllocated).toBe(1024);
    expect(vm.memoryUsage().usedBytes).toBeLessThanOrEqual(8 * MIB);
    expect(refused(vm, () => vm.guestWrite64(written * PAGE, 1n)).what).toMatch(/guest memory/);
    // Frames already backed can still be written.
    vm.guestWrite64(0, 2n);
    expect(vm.readPhys64(0)).toBe(2n);
  });
});

describe("a budget that fits works; one just below the need fails at the operation that needs it", () => {
  // 4 GiB of 1 GiB pages (four leaves); logging on splits each into 1 + 512 tables.
  const tables = 4 * (1 + 512);
  const need = tables * PAGE + bitmapBytes((4 * GIB) / PAGE);
  const enableLog = (vm: Vm) =>
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 4 * GIB,
      flags: KVM_MEM_LOG_DIRTY_PAGES,
    });

  it("enough budget: the split happens and is charged", () => {
    const vm = hugeGuest(GIB, 1, 4 * GIB);
    const before = vm.memoryUsage();
    enableLog(vm);
    // huge_splits counts each table filled from a huge leaf: 4 1G + 2048 2M.
    expect(vm.stats.huge_splits).toBe(tables);
    expect(vm.stats.pages_4k).toBe((4 * GIB) / PAGE);
    const after = vm.memoryUsage();
    const grown = after.usedBytes - before.usedBytes;
    expect(grown).toBeGreaterThanOrEqual(need);
    expect(grown).toBeLessThanOrEqual(need * OVERHEAD);
    expect(after.get("dirtyBitmaps").bytes - before.get("dirtyBitmaps").bytes).toBeGreaterThan(
      bitmapBytes((4 * GIB) / PAGE),
    );
    expect(vm.audit()).toEqual([]);
  });

  it("just below the need: every step before the split succeeds, the split is refused", () => {
    const probe = hugeGuest(GIB, 1, 4 * GIB);
    const base = probe.memoryUsage().usedBytes;
    // Geometry alone needs `need` more: one byte less cannot be enough.
    const vm = hugeGuest(base + need - 1, 1, 4 * GIB);
    expect(vm.stats.pages_1g).toBe(4);
    const err = refused(vm, () => enableLog(vm));
    expect(err.usedBytes).toBe(base);
    expect(err.budgetBytes).toBe(base + need - 1);
    // And with the overhead allowed for, it fits.
    const ok = hugeGuest(base + Math.ceil(need * OVERHEAD), 1, 4 * GIB);
    enableLog(ok);
    expect(ok.stats.huge_splits).toBe(tables);
  });
});

describe("KVM_CLEAR_DIRTY_LOG with INITIALLY_SET splits eagerly: checked first", () => {
  it("a CLEAR of the whole slot whose split does not fit is refused; with room it splits", () => {
    const features = { manualDirtyLogProtect: true, dirtyLogInitiallySet: true };
    const npages = (4 * GIB) / PAGE;
    const setup = (budget: number) => {
      const vm = hugeGuest(budget, 1, 4 * GIB, features);
      // INITIALLY_SET: logging starts with every bit set and nothing split or protected.
      vm.setUserMemoryRegion({
        slot: 0,
        guestPhysAddr: 0,
        memorySize: 4 * GIB,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
      });
      return vm;
    };
    const all = new Uint32Array(npages / 32).fill(0xffffffff);
    const base = setup(GIB).memoryUsage().usedBytes;
    expect(setup(GIB).stats.huge_splits).toBe(0);
    // Clearing every page splits each 1 GiB leaf into 1 + 512 tables.
    const need = 4 * (1 + 512) * PAGE;
    const vm = setup(base + need - 1);
    const err = refused(vm, () => vm.clearDirtyLog(0, 0, npages, all));
    expect(err.estimateBytes).toBeGreaterThanOrEqual(need);
    expect(err.estimateBytes).toBeLessThanOrEqual(need * OVERHEAD);
    expect(err.what).toMatch(/KVM_CLEAR_DIRTY_LOG slot 0/);
    const ok = setup(base + Math.ceil(need * OVERHEAD));
    expect(ok.clearDirtyLog(0, 0, npages, all)).toBe(npages);
    expect(ok.stats.huge_splits).toBe(4 * (1 + 512));
  });
});

describe("faults: mmu_topup_memory_caches", () => {
  /** A 16 GiB guest at 4K, gva = gpa through 1 GiB guest pages; one vCPU. */
  function stormGuest(budget: number, mmu: "tdp" | "shadow") {
    const vm = createVm({ maxPhysAddrBits: 46, memoryBudget: budget, mmu });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * GIB, flags: 0 });
    const tables = new GuestPageTableBuilder(vm, {
      mode: "4-level",
      poolBase: 0x100000,
      poolSize: 0x100000,
    });
    tables.map(0, 0, 16 * GIB, { pageSize: GIB });
    const vcpu = vm.createVcpu();
    vcpu.setSregs(tables.sregs());
    return { vm, vcpu };
  }

  /**
   * The VM's state without the vCPU's guest-walk counters: under TDP the CPU walks the guest's
   * tables (and counts gpte_reads) before the EPT violation that KVM then fails, as hardware
   * does before the exit; KVM's own state is what must not change.
   */
  const kvmState = (vm: Vm): string =>
    vmState(vm).replace(/"(gpte_reads|gpte_ad_writes|walks)":\d+/g, "");

  it.each([
    ["tdp", 24 * MIB],
    // Shadow paging also keeps rmap heads (16 MiB) and write-tracking counts (8 MiB) for the slot.
    ["shadow", 48 * MIB],
  ] as const)(
    "%s: a storm of faults, one per 2 MiB, stops with ResourceLimitError within the budget",
    (mmu, budget) => {
      const { vm, vcpu } = stormGuest(budget, mmu);
      let n = 0;
      let err: unknown;
      try {
        // Each fault needs a new last-level table (the 2 MiB regions are fresh).
        for (; n < 8192; n++) vcpu.access(n * 2 * MIB, {});
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ResourceLimitError);
      expect((err as ResourceLimitError).what).toMatch(/mmu_topup_memory_caches/);
      // At least a page table per fault was charged before the stop: ~4 KiB each.
      expect(n).toBeGreaterThan(1000);
      expect(n).toBeLessThan(budget / PAGE);
      const u = vm.memoryUsage();
      expect(u.usedBytes).toBeLessThanOrEqual(budget);
      expect(u.peakBytes).toBeLessThanOrEqual(budget);
      expect(vm.audit()).toEqual([]);
      // The refused fault changed nothing; pages mapped before still translate.
      refused(vm, () => vcpu.access(n * 2 * MIB, {}), kvmState);
      expect(vcpu.access(0, {})).toEqual({ fault: false, gpa: 0 });
    },
  );

  it("a storm in a child process with a 48 MiB heap ends in ResourceLimitError, not a heap OOM", () => {
    const core = path.resolve(__dirname, "..");
    // Inside the repository (test-artifacts/ is ignored), so that the build finds
    // @mmulab/core/schema through the workspace's node_modules.
    mkdirSync(path.join(core, "test-artifacts"), { recursive: true });
    const out = mkdtempSync(path.join(core, "test-artifacts", "budget-"));
    try {
      execFileSync(process.execPath, [path.join(core, "scripts/build.mjs"), "--outDir", out], {
        cwd: core,
        stdio: "pipe",
      });
      const script = path.join(out, "storm.js");
      writeFileSync(
        script,
        `
const v8 = require("node:v8");
const os = require("node:os");
const core = require(${JSON.stringify(path.join(out, "index.js"))});
// What the Jupyter kernel tells core at start.
core.setHostMemoryInfo({ totalBytes: os.totalmem(), heapLimitBytes: v8.getHeapStatistics().heap_size_limit });
const vm = core.createVm({ maxPhysAddrBits: 46, mmu: "shadow", memoryBudget: 48 * 2 ** 20 });
vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * 2 ** 30, flags: 0 });
const t = new core.GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 0x100000, poolSize: 0x100000 });
t.map(0, 0, 16 * 2 ** 30, { pageSize: 2 ** 30 });
const vcpu = vm.createVcpu();
vcpu.setSregs(t.sregs());
let n = 0;
let error = null;
try {
  for (; n < 8192; n++) vcpu.access(n * 2 ** 21, {});
} catch (e) {
  error = { name: e.name, what: e.what, heap: e.heap };
}
const u = vm.memoryUsage();
console.log(JSON.stringify({ n, error, used: u.usedBytes, budget: u.budgetBytes, audit: vm.audit().length }));
`,
      );
      const stdout = execFileSync(process.execPath, ["--max-old-space-size=48", script], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
      const r = JSON.parse(stdout.trim().split("\n").pop()!);
      expect(r.error?.name, stdout).toBe("ResourceLimitError");
      expect(r.used).toBeLessThanOrEqual(r.budget);
      expect(r.audit).toBe(0);
      expect(r.n).toBeGreaterThan(1000);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 240_000);
});

describe("vm.memoryUsage()", () => {
  it("shows the categories as a table, with the budget in the title", () => {
    const vm = createVm({ memoryBudget: GIB });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GIB, flags: 1 });
    const u = vm.memoryUsage();
    // The slot's bitmap: 2^18 pages, two buffers.
    expect(u.get("dirtyBitmaps").bytes).toBeGreaterThanOrEqual(bitmapBytes(GIB / PAGE));
    // lpage_info: an int32 per 2 MiB (512) and per 1 GiB (1) entry.
    expect(u.get("slotMetadata").bytes).toBeGreaterThanOrEqual((512 + 1) * 4);
    const b = u[Symbol.for("Jupyter.display") as unknown as keyof typeof u] as unknown as () => {
      "text/html": string;
      "text/plain": string;
    };
    const bundle = b.call(u);
    expect(bundle["text/html"]).toMatch(/1\.00 GiB budget/);
    expect(bundle["text/html"]).toMatch(/dirtyBitmaps/);
    expect(bundle["text/plain"]).toMatch(/^MemoryUsage\(/);
  });
});
