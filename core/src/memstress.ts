/**
 * Workloads shaped like KVM's selftests (tools/testing/selftests/kvm): `memstress()` builds the
 * guest of lib/memstress.c — per-vCPU regions of test memory in long mode, above 4 GiB, each
 * vCPU walking its pages in order or at random with the selftest's guest RNG (Park–Miller,
 * seed + vCPU index) and writing `writePercent` of them — and `dirtyLogPerf()` runs the phases of
 * dirty_log_perf_test.c under their names, reporting per phase what the MMU did and the wall
 * time.
 *
 * Differences from the selftests, on purpose: the vCPUs take turns page by page in index order
 * (the selftest runs them on threads; here the order is deterministic), and the guest maps its
 * test memory with 1 GiB pages where the selftest maps 4 KiB ones — under TDP the EPT faults,
 * splits, zaps and flushes the test counts do not depend on the guest's own page size, and the
 * guest walk stays short.
 */

import { PFERR_WRITE_MASK } from "./arch/constants";
import {
  htmlTableBundle,
  JUPYTER_DISPLAY,
  type MimeBundle,
  plotlyBundle,
  tableAndPlotBundle,
} from "./display";
import type { FeatureOptions } from "./era/features";
import type { PresetName } from "./era/presets";
import { presetOf } from "./era/presets";
import { checkOptionKeys, InvalidArgumentError, MmuBugError } from "./errors";
import { GuestPageTableBuilder } from "./guest/pgtable_builder";
import { SLOT_BACKINGS, type SlotBacking } from "./kvm/memslot";
import type { Vcpu } from "./vcpu";
import { createVm, type Vm } from "./vm";

/** `DEFAULT_GUEST_TEST_MEM`: where memstress maps the test memory in the guest. */
export const MEMSTRESS_GVA = 0xc0000000;
/** Guest-physical base of the test memory (above 4 GiB, 1 GiB-aligned). */
export const MEMSTRESS_GPA = 4 * 2 ** 30;
const GIB = 2 ** 30;
const PAGE = 4096;
const KVM_MEM_LOG_DIRTY_PAGES = 1;

/** Options of {@link memstress} and {@link dirtyLogPerf} (dirty_log_perf_test's flags). */
export interface MemstressOptions {
  /** `-v`: vCPUs (1..512, default 1). */
  vcpus?: number;
  /** `-b`: test memory per vCPU in bytes, a multiple of 4 KiB (default 1 GiB). */
  bytesPerVcpu?: number;
  /** `-s`: host backing of the test memory (default "4k"). */
  backing?: SlotBacking;
  /** `-x`: memslots the test memory is split into (default 1). */
  slots?: number;
  /** `-w`: percent of accesses that write (0..100, default 100). */
  writePercent?: number;
  /** `-a`: random page order (the guest RNG) instead of ascending. */
  randomAccess?: boolean;
  /** `-i`: dirty-memory iterations (default 2; 0 enables and disables logging only). */
  iterations?: number;
  /** `-g` off: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (GET does not protect; CLEAR does). */
  manualProtect?: boolean;
  /** With manual protect: KVM_DIRTY_LOG_INITIALLY_SET. */
  initiallySet?: boolean;
  /** `-c`: pages per KVM_CLEAR_DIRTY_LOG call (a multiple of 64; default: the whole slot). */
  clearChunkPages?: number;
  /** `-e` off: eager page splitting (default: the preset's, else on). */
  eagerSplit?: boolean;
  /** An era preset for the VM. */
  preset?: PresetName;
  /** More switches (override the preset's). */
  features?: FeatureOptions;
  /** The guest RNG's seed (`-r`, default 1); vCPU i uses seed + i. */
  seed?: number;
}

type Resolved = Required<
  Omit<MemstressOptions, "preset" | "features" | "eagerSplit" | "clearChunkPages">
> & {
  preset?: PresetName;
  features: FeatureOptions;
  eagerSplit?: boolean;
  clearChunkPages?: number;
};

function positiveInt(name: string, v: unknown, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max)
    throw new InvalidArgumentError(name, v, `an integer from 1 to ${max}`);
  return v;
}

/** Every key of {@link MemstressOptions} (what a sweep point or a caller may set). */
export const MEMSTRESS_OPTION_KEYS = [
  "vcpus",
  "bytesPerVcpu",
  "backing",
  "slots",
  "writePercent",
  "randomAccess",
  "iterations",
  "manualProtect",
  "initiallySet",
  "clearChunkPages",
  "eagerSplit",
  "preset",
  "features",
  "seed",
] as const satisfies readonly (keyof MemstressOptions)[];

function resolve(o: MemstressOptions): Resolved {
  checkOptionKeys("options", o, MEMSTRESS_OPTION_KEYS, false);
  // `undefined` is the default; null is a value, refused by the checks below.
  const or = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  const vcpus = positiveInt("vcpus", or(o.vcpus, 1), 512);
  const bytesPerVcpu = or(o.bytesPerVcpu, GIB);
  if (
    typeof bytesPerVcpu !== "number" ||
    !Number.isSafeInteger(bytesPerVcpu) ||
    bytesPerVcpu < PAGE ||
    bytesPerVcpu % PAGE !== 0
  )
    throw new InvalidArgumentError("bytesPerVcpu", bytesPerVcpu, "a positive multiple of 4096");
  const backing = or(o.backing, "4k");
  if (!SLOT_BACKINGS.includes(backing))
    throw new InvalidArgumentError(
      "backing",
      backing,
      SLOT_BACKINGS.map((b) => `"${b}"`).join(" | "),
    );
  const slots = positiveInt("slots", or(o.slots, 1), 512);
  const total = vcpus * bytesPerVcpu;
  const hugeBytes = backing === "hugetlb-1g" ? GIB : backing === "4k" ? PAGE : 2 * 2 ** 20;
  if (total % (slots * hugeBytes) !== 0)
    throw new InvalidArgumentError(
      "slots",
      slots,
      `a count that splits ${total} bytes into equal slots of whole ${hugeBytes}-byte host pages`,
    );
  const writePercent = or(o.writePercent, 100);
  if (
    typeof writePercent !== "number" ||
    !Number.isInteger(writePercent) ||
    writePercent < 0 ||
    writePercent > 100
  )
    throw new InvalidArgumentError("writePercent", writePercent, "an integer from 0 to 100");
  for (const k of ["randomAccess", "manualProtect", "initiallySet", "eagerSplit"] as const)
    if (o[k] !== undefined && typeof o[k] !== "boolean")
      throw new InvalidArgumentError(k, o[k], "true or false");
  if (o.initiallySet === true && o.manualProtect !== true)
    throw new InvalidArgumentError("initiallySet", true, "false unless manualProtect is true");
  const iterations = or(o.iterations, 2);
  if (
    typeof iterations !== "number" ||
    !Number.isInteger(iterations) ||
    iterations < 0 ||
    iterations > 10000
  )
    throw new InvalidArgumentError("iterations", iterations, "an integer from 0 to 10000");
  const seed = or(o.seed, 1);
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed >= 2 ** 31 - 1)
    throw new InvalidArgumentError("seed", seed, "an integer from 0 to 2^31 - 2");
  const slotPages = total / slots / PAGE;
  if (o.clearChunkPages !== undefined) {
    const c = o.clearChunkPages;
    if (typeof c !== "number" || !Number.isSafeInteger(c) || c < 64 || c % 64 !== 0)
      throw new InvalidArgumentError("clearChunkPages", c, "a positive multiple of 64");
  }
  if (o.preset !== undefined) presetOf(o.preset);
  return {
    vcpus,
    bytesPerVcpu,
    backing,
    slots,
    writePercent,
    randomAccess: o.randomAccess === true,
    iterations,
    manualProtect: o.manualProtect === true,
    initiallySet: o.initiallySet === true,
    clearChunkPages: o.clearChunkPages ?? slotPages,
    eagerSplit: o.eagerSplit,
    preset: o.preset,
    features: or(o.features, {}),
    seed,
  };
}

/** The selftest's guest RNG (`guest_random_u32`): Park–Miller, x ← x · 48271 mod (2^31 − 1). */
export function guestRandomU32(state: { seed: number }): number {
  if (state === null || typeof state !== "object" || Array.isArray(state))
    throw new InvalidArgumentError("state", state, "an object { seed }");
  const s = state.seed;
  // 0 is the generator's fixed point; 2^31 - 1 is the modulus.
  if (typeof s !== "number" || !Number.isInteger(s) || s < 1 || s > 2 ** 31 - 2)
    throw new InvalidArgumentError("seed", s, "an integer from 1 to 2^31 - 2");
  return nextRandom(state);
}

/** {@link guestRandomU32} without the checks, for the guest program's loop (seeds made here). */
function nextRandom(state: { seed: number }): number {
  // 48271 · x < 2^47: exact in a double.
  state.seed = (state.seed * 48271) % 2147483647;
  return state.seed;
}

/** A memstress guest: the VM, its vCPUs, and one pass of the guest program. */
export class Memstress {
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  /** Options as resolved. */
  readonly options: Readonly<Resolved>;
  /** Test pages per vCPU. */
  readonly pagesPerVcpu: number;
  /** The test memslots' ids and sizes (pages). */
  readonly slotIds: readonly number[];
  readonly slotPages: number;
  private readonly rng: { seed: number }[];

  constructor(opts: MemstressOptions = {}) {
    const o = resolve(opts);
    this.options = o;
    const features: FeatureOptions = { ...o.features };
    if (o.manualProtect) (features as Record<string, unknown>).manualDirtyLogProtect = true;
    if (o.initiallySet) (features as Record<string, unknown>).dirtyLogInitiallySet = true;
    if (o.eagerSplit !== undefined)
      (features as Record<string, unknown>).eagerPageSplit = o.eagerSplit;
    const vm = createVm({ mmu: "tdp", features, ...(o.preset ? { preset: o.preset } : {}) });
    this.vm = vm;
    // Slot 0: the guest's page tables (and nothing else) below 4 GiB.
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * 2 ** 20, flags: 0 });
    const total = o.vcpus * o.bytesPerVcpu;
    this.slotPages = total / o.slots / PAGE;
    const ids: number[] = [];
    for (let i = 0; i < o.slots; i++) {
      const id = i + 1;
      vm.setUserMemoryRegion({
        slot: id,
        guestPhysAddr: MEMSTRESS_GPA + i * this.slotPages * PAGE,
        memorySize: this.slotPages * PAGE,
        flags: 0,
        backing: o.backing,
      });
      ids.push(id);
    }
    this.slotIds = ids;
    const tables = new GuestPageTableBuilder(vm, {
      mode: "4-level",
      poolBase: 0,
      poolSize: 2 * 2 ** 20,
    });
    tables.map(MEMSTRESS_GVA, MEMSTRESS_GPA, Math.ceil(total / GIB) * GIB, {
      writable: true,
      pageSize: GIB,
    });
    const vcpus: Vcpu[] = [];
    for (let i = 0; i < o.vcpus; i++) {
      const v = vm.createVcpu();
      v.setSregs({ ...tables.sregs({ nx: true }), cpl: 0 });
      vcpus.push(v);
    }
    this.vcpus = vcpus;
    this.pagesPerVcpu = o.bytesPerVcpu / PAGE;
    this.rng = vcpus.map((_, i) => ({ seed: o.seed + i }));
  }

  /**
   * One pass of `memstress_guest_code` on every vCPU (`GUEST_SYNC` ends it): page i in order, or
   * a random page; a write with probability `writePercent` (the RNG is drawn for both, as the
   * guest does). The vCPUs take turns page by page. Returns the accesses made.
   */
  pass(): number {
    return this.passRows(0, this.pagesPerVcpu);
  }

  /**
   * Rows `from..to-1` of {@link pass} (row i: every vCPU's i-th access), so that a long pass can
   * be run in slices with progress between them; the RNG state carries over. Returns accesses.
   */
  passRows(from: number, to: number): number {
    const o = this.options;
    const n = this.pagesPerVcpu;
    const vcpus = this.vcpus;
    if (typeof from !== "number" || !Number.isInteger(from) || from < 0 || from > n)
      throw new InvalidArgumentError("from", from, `a row in 0..${n}`);
    if (typeof to !== "number" || !Number.isInteger(to) || to < from || to > n)
      throw new InvalidArgumentError("to", to, `a row in from..${n}`);
    // The access path of vcpu.access() without its result object (the guest program's loads
    // and stores, one per page): translate, then the final stage-2 access.
    for (let i = from; i < to; i++) {
      for (let v = 0; v < vcpus.length; v++) {
        const st = this.rng[v]!;
        const page = o.randomAccess ? nextRandom(st) % n : i;
        const write = nextRandom(st) % 100 < o.writePercent;
        const gva = MEMSTRESS_GVA + (v * n + page) * PAGE;
        const bits = write ? PFERR_WRITE_MASK : 0;
        const vcpu = vcpus[v]!;
        const gpa = vcpu.translateGva(Math.floor(gva / 4294967296), gva >>> 0, bits);
        if (gpa < 0)
          throw new MmuBugError("memstress", `vCPU ${v}: gva 0x${gva.toString(16)} faulted`);
        vcpu.stage2Final(gpa, bits);
      }
    }
    return (to - from) * vcpus.length;
  }
}

/** Build a memstress guest (lib/memstress.c). */
export function memstress(opts: MemstressOptions = {}): Memstress {
  return new Memstress(opts);
}

/** What a phase of {@link dirtyLogPerf} made the MMU do, and how long it took. */
export interface DirtyLogPhase {
  /** dirty_log_perf_test's name of the phase. */
  name: string;
  /** Wall time of the phase in the simulator, milliseconds. */
  ms: number;
  faults: number;
  fastFaults: number;
  slowFaults: number;
  splits: number;
  zaps: number;
  flushes: number;
  /** Leaves write-protected or re-protected (rmap heads and TDP iterations visited). */
  rmapHeadsScanned: number;
  tdpIterSteps: number;
  /** Whole-slot write-protect (PML: D-clear) walks. */
  wrprotSlotPasses: number;
  /** Per-word re-protect calls (`kvm_arch_mmu_enable_log_dirty_pt_masked`). */
  wrprotMaskedCalls: number;
  /** u64 words of dirty bitmap the GET/CLEAR calls went through. */
  bitmapWords: number;
  /** Dirty pages GET reported (or CLEAR cleared). */
  dirtyPages: number;
  pages4k: number;
  pages2m: number;
  pages1g: number;
}

/** The result of {@link dirtyLogPerf}: per-phase rows, a table and a plot. */
export class DirtyLogPerfResult {
  readonly phases: readonly DirtyLogPhase[];
  readonly options: Readonly<Resolved>;
  constructor(phases: DirtyLogPhase[], options: Resolved) {
    this.phases = phases;
    this.options = options;
  }

  /** The phase of `name`. */
  phase(name: string): DirtyLogPhase | undefined {
    if (typeof name !== "string") throw new InvalidArgumentError("name", name, "a phase name");
    return this.phases.find((p) => p.name === name);
  }

  private title(): string {
    const o = this.options;
    return `dirty_log_perf_test: ${o.vcpus} vCPUs × ${o.bytesPerVcpu / 2 ** 20} MiB, ${o.backing}, ${o.slots} slot(s)`;
  }

  /**
   * The figure and the table in one bundle: JupyterLab draws the plotly figure (its renderer
   * outranks HTML), static views the table above the figure's SVG. Show {@link tableBundle}
   * too where both should be seen in the lab.
   */
  [JUPYTER_DISPLAY](): MimeBundle {
    return tableAndPlotBundle(this.tableBundle(), this.plotBundle());
  }

  /** The per-phase table alone (HTML and text). */
  tableBundle(): MimeBundle {
    return htmlTableBundle(
      this.title(),
      this.phases.map((p) => ({
        phase: p.name,
        "ms (sim)": Math.round(p.ms),
        faults: p.faults,
        fast: p.fastFaults,
        splits: p.splits,
        zaps: p.zaps,
        flushes: p.flushes,
        "wp passes": p.wrprotSlotPasses,
        "wp word calls": p.wrprotMaskedCalls,
        "bitmap words": p.bitmapWords,
        dirty: p.dirtyPages,
        pages_4k: p.pages4k,
        pages_2m: p.pages2m,
        pages_1g: p.pages1g,
      })),
    );
  }

  /** The per-phase plot alone (plotly figure with its static SVG fallback). */
  plotBundle(): MimeBundle {
    const title = this.title();
    return plotlyBundle({
      data: [
        {
          type: "bar",
          name: "faults",
          x: this.phases.map((p) => p.name),
          y: this.phases.map((p) => p.faults),
        },
        {
          type: "bar",
          name: "flushes",
          x: this.phases.map((p) => p.name),
          y: this.phases.map((p) => p.flushes),
        },
        {
          type: "bar",
          name: "splits",
          x: this.phases.map((p) => p.name),
          y: this.phases.map((p) => p.splits),
        },
      ],
      layout: {
        title: { text: title },
        barmode: "group",
        yaxis: { type: "log", title: { text: "events" } },
      },
    });
  }
}

/** Where a stepwise {@link dirtyLogPerfSteps} run is: before slice `done` of `total` of a phase. */
export interface DirtyLogPerfStep {
  /** dirty_log_perf_test's name of the phase. */
  phase: string;
  /** The phase's index among `count` phases. */
  index: number;
  count: number;
  /** Slices of the phase done so far, and its slices (memory passes are cut into rows). */
  done: number;
  total: number;
}

/** Accesses per slice of a memory pass in a stepwise run (a few tens of milliseconds). */
const SLICE_ACCESSES = 1 << 18;

/**
 * dirty_log_perf_test.c's run, one slice at a time: yields before every slice (the pass phases
 * are cut into rows of about 262,144 accesses), so a caller can show progress, yield to its
 * event loop and stop; returns the result. Phase times count only the slices themselves.
 */
export function* dirtyLogPerfSteps(
  opts: MemstressOptions = {},
): Generator<DirtyLogPerfStep, DirtyLogPerfResult, void> {
  const m = memstress(opts);
  const o = m.options;
  const vm = m.vm;
  const names = ["populate memory", "enable dirty logging"];
  for (let k = 1; k <= o.iterations; k++) {
    names.push(`iteration ${k} dirty memory`, `iteration ${k} get dirty log`);
    if (o.manualProtect) names.push(`iteration ${k} clear dirty log`);
  }
  names.push("disable dirty logging");
  const phases: DirtyLogPhase[] = [];
  let index = 0;
  const rowsPerSlice = Math.max(1, Math.floor(SLICE_ACCESSES / o.vcpus));
  const passSlices = Math.ceil(m.pagesPerVcpu / rowsPerSlice);
  const passSlice = (k: number) => {
    m.passRows(k * rowsPerSlice, Math.min(m.pagesPerVcpu, (k + 1) * rowsPerSlice));
    return {};
  };
  function* run(
    name: string,
    slices: number,
    body: (k: number) => { words?: number; dirty?: number },
  ): Generator<DirtyLogPerfStep, void, void> {
    const b = { ...vm.stats.toJSON() };
    let ms = 0;
    let words = 0;
    let dirty = 0;
    for (let k = 0; k < slices; k++) {
      yield { phase: name, index, count: names.length, done: k, total: slices };
      const t0 = performance.now();
      const r = body(k);
      ms += performance.now() - t0;
      words += r.words ?? 0;
      dirty += r.dirty ?? 0;
    }
    index++;
    const s = vm.stats;
    const faults = s.pf_taken - b.pf_taken!;
    const fast = s.pf_fast - b.pf_fast!;
    phases.push({
      name,
      ms,
      faults,
      fastFaults: fast,
      slowFaults: faults - fast,
      splits: s.huge_splits - b.huge_splits!,
      zaps: s.collapse_sptes_zapped - b.collapse_sptes_zapped!,
      flushes: s.remote_tlb_flush_requests - b.remote_tlb_flush_requests!,
      rmapHeadsScanned: s.rmap_heads_scanned - b.rmap_heads_scanned!,
      tdpIterSteps: s.tdp_iter_steps - b.tdp_iter_steps!,
      wrprotSlotPasses: s.wrprot_slot_passes - b.wrprot_slot_passes!,
      wrprotMaskedCalls: s.wrprot_masked_calls - b.wrprot_masked_calls!,
      bitmapWords: words,
      dirtyPages: dirty,
      pages4k: s.pages_4k,
      pages2m: s.pages_2m,
      pages1g: s.pages_1g,
    });
  }
  const setLog = (on: boolean) => {
    for (let i = 0; i < m.slotIds.length; i++)
      vm.setUserMemoryRegion({
        slot: m.slotIds[i]!,
        guestPhysAddr: MEMSTRESS_GPA + i * m.slotPages * PAGE,
        memorySize: m.slotPages * PAGE,
        flags: on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        backing: o.backing,
      });
    return {};
  };
  const bitmaps: Uint32Array[] = [];
  yield* run("populate memory", passSlices, passSlice);
  yield* run("enable dirty logging", 1, () => setLog(true));
  const words = Math.ceil(m.slotPages / 64);
  for (let k = 1; k <= o.iterations; k++) {
    yield* run(`iteration ${k} dirty memory`, passSlices, passSlice);
    yield* run(`iteration ${k} get dirty log`, 1, () => {
      let dirty = 0;
      bitmaps.length = 0;
      for (const id of m.slotIds) {
        const bm = vm.getDirtyLog(id);
        bitmaps.push(bm);
        for (let v of bm) {
          v >>>= 0;
          while (v !== 0) {
            v &= v - 1;
            dirty++;
          }
        }
      }
      return { words: words * m.slotIds.length, dirty };
    });
    if (o.manualProtect) {
      yield* run(`iteration ${k} clear dirty log`, 1, () => {
        let cleared = 0;
        const chunk = o.clearChunkPages ?? m.slotPages;
        m.slotIds.forEach((id, i) => {
          const bm = bitmaps[i]!;
          for (let first = 0; first < m.slotPages; first += chunk) {
            const n = Math.min(chunk, m.slotPages - first);
            cleared += vm.clearDirtyLog(
              id,
              first,
              n,
              bm.subarray(first / 32, (first + n + 31) / 32),
            );
          }
        });
        return { words: words * m.slotIds.length, dirty: cleared };
      });
    }
  }
  yield* run("disable dirty logging", 1, () => setLog(false));
  return new DirtyLogPerfResult(phases, o);
}

/**
 * dirty_log_perf_test.c's run: populate memory, enable dirty logging, then per iteration dirty
 * memory, get the dirty log (and clear it, with manual protect), and finally disable dirty
 * logging. `onPhase(name, index, count)` is called before each phase (progress).
 */
export function dirtyLogPerf(
  opts: MemstressOptions = {},
  onPhase?: (name: string, index: number, count: number) => void,
): DirtyLogPerfResult {
  if (onPhase !== undefined && typeof onPhase !== "function")
    throw new InvalidArgumentError(
      "onPhase",
      onPhase,
      "a function (name, index, count) or undefined",
    );
  const steps = dirtyLogPerfSteps(opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (r.value.done === 0) onPhase?.(r.value.phase, r.value.index, r.value.count);
  }
}
