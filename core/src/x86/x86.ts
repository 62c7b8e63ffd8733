/**
 * The x86 VM: the generic VM of kvm_main.c with x86.c's architecture hooks
 * (`kvm_arch_prepare/commit_memory_region`, `kvm_mmu_slot_apply_flags`,
 * `kvm_arch_flush_shadow_memslot`, `kvm_arch_mmu_enable_log_dirty_pt_masked`, ...) and x86's own
 * ioctls (`KVM_SET_NR_MMU_PAGES`), all acting through the VM's MMU (mmu/mmu.ts).
 *
 * `mmu: "tdp"` is KVM with EPT; `mmu: "none"` is the bare machine: the CPU walks guest tables
 * straight over the memslots and there is no KVM MMU at all.
 */
import { KVM_MEM_LOG_DIRTY_PAGES } from "../arch/constants";
import { type FeatureOptions, resolveFeatures } from "../era/features";
import { type PresetName, presetOf } from "../era/presets";
import { checkOptionKeys, InvalidArgumentError, ResourceLimitError, refuseFrozen } from "../errors";
import { defaultHeapBudget, defaultMemoryBudget } from "../kvm/host";
import { Kvm } from "../kvm/kvm_main";
import { HEAP_TYPED_ARRAY_BYTES, MemCg } from "../kvm/memcg";
import type { MemSlot, MemslotChange } from "../kvm/memslot";
import { KVM_MIN_ALLOC_MMU_PAGES, VmMmu } from "../mmu/mmu";
import { SlotArch, slotArch } from "../mmu/mmu_internal";
import { EV, type MmuTraceEvent, TRACE_EVENTS, type TraceEventName } from "../mmu/mmutrace";
import { KvmVcpu } from "./vcpu";

/**
 * MMU beneath the guest: "tdp" (KVM with EPT, the default), "shadow" (KVM with `ept=0`: the CPU
 * runs on KVM's shadow page tables) or "none" (no KVM MMU).
 */
export type MmuMode = "tdp" | "shadow" | "none";

/** Options of `createVm`. */
export interface VmOptions {
  /** Guest MAXPHYADDR in bits, 32..52 (default 46). */
  maxPhysAddrBits?: number;
  /**
   * MMU beneath the guest walk. "tdp" (default): EPT tables built by KVM's MMU on EPT violations;
   * "none": the guest walk runs directly over guest memory.
   */
  mmu?: MmuMode;
  /** Guest CPU features and KVM behaviour switches (era/features.ts `SWITCHES`). */
  features?: FeatureOptions;
  /**
   * An era preset (era/presets.ts): its switches, and its MMU when `mmu` is not given;
   * `features` overrides any single switch of it.
   */
  preset?: PresetName;
  /**
   * The VM's memory budget in bytes (a positive safe integer): what the simulator may allocate
   * for it — guest memory written, dirty bitmaps, slot metadata, shadow/TDP pages, rmap
   * descriptors, dirty rings, the trace ring (`vm.memoryUsage()` shows where it goes). An
   * operation that would exceed it throws `ResourceLimitError` before it allocates, as a
   * `GFP_KERNEL_ACCOUNT` allocation fails past the VM process's memory cgroup limit.
   *
   * Default: half of the machine's RAM when the host said how much (the Jupyter kernel does,
   * through `setHostMemoryInfo`), else 4 GiB (half of an assumed 8 GiB: core runs in browsers
   * too and cannot ask the OS). A second limit, half of V8's heap limit (or 1 GiB when
   * unknown), covers the part that lives on the JS heap (the objects holding the typed arrays),
   * so that a run ends with `ResourceLimitError` rather than Node running out of heap.
   */
  memoryBudget?: number;
}

const OPTION_KEYS = ["maxPhysAddrBits", "mmu", "features", "preset", "memoryBudget"];

/** Where a switch's value came from (`vm.config`). */
export type SwitchSource = "default" | "preset" | "override";

function checkOptions(options: unknown): {
  budget: number;
  bits: number;
  mmu: MmuMode;
  features: unknown;
  preset: PresetName | null;
  sources: Record<string, SwitchSource>;
} {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new InvalidArgumentError(
      "options",
      options,
      "an object { maxPhysAddrBits?, mmu?, features? }",
    );
  }
  const o = options as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!OPTION_KEYS.includes(k))
      throw new InvalidArgumentError("options", k, OPTION_KEYS.join(", "));
  }
  // `undefined` is the default; null is a value (refused below), not a missing option.
  const bits = o.maxPhysAddrBits === undefined ? 46 : o.maxPhysAddrBits;
  if (typeof bits !== "number" || !Number.isInteger(bits) || bits < 32 || bits > 52) {
    throw new InvalidArgumentError("maxPhysAddrBits", bits, "an integer in [32, 52]");
  }
  const budget = o.memoryBudget === undefined ? defaultMemoryBudget() : o.memoryBudget;
  if (typeof budget !== "number" || !Number.isSafeInteger(budget) || budget <= 0)
    throw new InvalidArgumentError(
      "memoryBudget",
      budget,
      "a positive safe integer number of bytes (at most 2^53 - 1), e.g. 2 * 2 ** 30",
    );
  const p = o.preset === undefined ? null : presetOf(o.preset);
  const preset = p === null ? null : (o.preset as PresetName);
  const mmu = o.mmu === undefined ? (p?.mmu ?? "tdp") : o.mmu;
  if (mmu !== "none" && mmu !== "tdp" && mmu !== "shadow")
    throw new InvalidArgumentError("mmu", mmu, '"tdp" | "shadow" | "none"');
  let features = o.features;
  const sources: Record<string, SwitchSource> = {};
  if (p !== null) {
    for (const k of Object.keys(p.features)) sources[k] = "preset";
    const given = features;
    if (
      given !== undefined &&
      (given === null || typeof given !== "object" || Array.isArray(given))
    )
      throw new InvalidArgumentError("features", given, "an object of switches (see SWITCHES)");
    features = { ...p.features, ...(given as object | undefined) };
  }
  if (o.features !== null && typeof o.features === "object")
    for (const k of Object.keys(o.features)) sources[k] = "override";
  if (mmu === "shadow") {
    // KVM offers no protection keys without TDP (kvm_set_cpu_caps: "PKU is not yet implemented
    // for shadow paging").
    const f = features as Record<string, unknown> | undefined;
    if (f !== null && typeof f === "object" && f.pku === true)
      throw new InvalidArgumentError(
        "features.pku",
        true,
        'false with mmu "shadow" (KVM does not offer protection keys without TDP)',
      );
    if (f === undefined || (f !== null && typeof f === "object" && !Array.isArray(f)))
      features = { ...(f ?? {}), pku: false };
  }
  return { budget, bits, mmu, features, preset, sources };
}

/** The x86 VM model (notebooks use `Vm`, which adds views). */
export class KvmX86 extends Kvm {
  /** Which MMU is beneath the guest. */
  readonly mmuMode: MmuMode;
  /** The era preset the VM was created with, or null. */
  readonly preset: PresetName | null;
  /** Where each switch's value came from (switches absent here have their default). */
  readonly switchSources: Readonly<Record<string, SwitchSource>>;
  /** The VM's MMU (`kvm->arch` and mmu.c), or null on the bare machine. */
  readonly mmu: VmMmu | null;
  declare readonly vcpus: KvmVcpu[];

  constructor(options: VmOptions = {}) {
    const o = checkOptions(options);
    super(o.bits, resolveFeatures(o.features, o.bits), new MemCg(o.budget, defaultHeapBudget()));
    this.mmuMode = o.mmu;
    this.preset = o.preset;
    this.switchSources = Object.freeze({ ...o.sources });
    const f = this.features;
    if (o.mmu === "tdp" && f.mmuFlavor === "tdp_mmu" && f.collapseOnLogDisable === "rmap2015") {
      throw new InvalidArgumentError(
        "features.collapseOnLogDisable",
        "rmap2015",
        'a mode of the TDP MMU ("zap", "recover", "none"), or mmuFlavor "legacy_direct" or mmu "shadow" (the 2015 patch walks rmaps; v4.1 had no TDP MMU)',
      );
    }
    if (f.pml && o.mmu !== "tdp")
      throw new InvalidArgumentError(
        "features.pml",
        true,
        'false unless mmu is "tdp" (PML logs guest-physical writes through EPT A/D bits)',
      );
    // PML's buffer is reserved at the end of each dirty ring (kvm_dirty_ring_get_rsvd_entries).
    if (f.pml) this.dirtyRingReserved += 512;
    this.mmu = o.mmu === "none" ? null : new VmMmu(this, o.mmu === "shadow");
    // An empty VM's fixed structures (the first MiB of the guest-memory arena, the page columns,
    // the hash) must fit too, or nothing could run; they are small, so the check comes after.
    const m = this.memcg;
    if (m.used > m.budget)
      throw new ResourceLimitError("createVm: an empty VM", m.used, m.budget, 0);
  }

  /** KVM's statistics (see `Kvm.stats`), with the recounted gauge `orphan_sps`. */
  override get stats() {
    const s = super.stats;
    if (this.mmu !== null) s.orphan_sps = this.mmu.orphanCount();
    s.lpages = s.pages_2m + s.pages_1g;
    return s;
  }

  /** `KVM_CREATE_VCPU`. */
  override createVcpu(): KvmVcpu {
    return super.createVcpu() as KvmVcpu;
  }

  protected archCreateVcpu(id: number): KvmVcpu {
    return new KvmVcpu(this, this.mmu, id);
  }

  // ---- memslot hooks (x86.c) -------------------------------------------------------------------

  /** `kvm_arch_flush_shadow_memslot`: v6.x zaps everything (`kvm_mmu_zap_all_fast`). */
  protected archFlushShadowMemslot(_slot: MemSlot): void {
    this.mmu?.zapAllFast();
  }

  /** `kvm_arch_prepare_memory_region`: new `slot->arch` (lpage_info) for created and moved slots. */
  protected archPrepareMemoryRegion(
    change: MemslotChange,
    _old: MemSlot | undefined,
    nw: MemSlot | undefined,
  ): void {
    if (this.mmu === null) return;
    if ((change === "create" || change === "move") && nw !== undefined)
      nw.arch = new SlotArch(nw, this.memcg, this.mmu.shadow !== null, this.mmu.shadowPaging);
  }

  /**
   * What {@link archPrepareMemoryRegion} and the commit will allocate: a created or moved
   * slot's metadata (lpage_info; the rmap heads when the rmap MMU is in use; the write-tracking
   * counts under shadow paging), and for logging turned on with eager splitting one page table
   * per huge leaf split (a 1 GiB leaf split to 4K takes 1 + 512).
   */
  protected override archMemoryRegionBytes(
    change: MemslotChange,
    old: MemSlot | undefined,
    nw: MemSlot | undefined,
  ): { bytes: number; heap: number; what: string } {
    const mmu = this.mmu;
    if (mmu === null || nw === undefined) return { bytes: 0, heap: 0, what: "" };
    if (change === "create" || change === "move") {
      let bytes = SlotArch.lpageInfoBytes(nw.baseGfn, nw.npages);
      if (mmu.shadow !== null) bytes += SlotArch.rmapBytes(nw.baseGfn, nw.npages);
      if (mmu.shadowPaging) bytes += SlotArch.writeTrackBytes(nw.npages);
      return { bytes, heap: 2 * HEAP_TYPED_ARRAY_BYTES, what: "slot metadata" };
    }
    const log = KVM_MEM_LOG_DIRTY_PAGES;
    if (
      change === "flagsOnly" &&
      old !== undefined &&
      (old.flags & log) === 0 &&
      (nw.flags & log) !== 0 &&
      !nw.readonly &&
      !this.dirtyLogInitiallySet
    ) {
      const tables = mmu.eagerSplitTables(nw.baseGfn, nw.baseGfn + nw.npages);
      if (tables > 0)
        return {
          bytes: mmu.tableBytesBound(tables),
          heap: mmu.tableHeapBound(tables),
          what: `eager split of huge pages into ${tables} page tables`,
        };
    }
    return { bytes: 0, heap: 0, what: "" };
  }

  /**
   * With INITIALLY_SET, re-protecting a CLEAR's pages eagerly splits the huge pages holding each
   * 64-page mask's first and last set bit (`kvm_arch_mmu_enable_log_dirty_pt_masked`). Bounded
   * by the split of everything from the bitmap's first set bit to its last (a sparse bitmap may
   * split less).
   */
  protected override archClearDirtyLogBytes(
    slot: MemSlot,
    firstPage: number,
    numPages: number,
    bitmap: Uint32Array,
  ): { bytes: number; heap: number; what: string } {
    const mmu = this.mmu;
    if (mmu === null || !this.dirtyLogInitiallySet) return { bytes: 0, heap: 0, what: "" };
    let first = -1;
    let last = -1;
    for (let i = 0; i < Math.ceil(numPages / 32); i++) {
      const w = bitmap[i]!;
      if (w === 0) continue;
      const lo = i * 32 + 31 - Math.clz32(w & -w);
      const hi = Math.min(i * 32 + 31 - Math.clz32(w), numPages - 1);
      if (lo >= numPages) break;
      if (first < 0) first = lo;
      last = hi;
    }
    if (first < 0) return { bytes: 0, heap: 0, what: "" };
    const base = slot.baseGfn + firstPage;
    const tables = mmu.eagerSplitTables(base + first, base + last + 1);
    if (tables === 0) return { bytes: 0, heap: 0, what: "" };
    return {
      bytes: mmu.tableBytesBound(tables),
      heap: mmu.tableHeapBound(tables),
      what: `eager split of huge pages into at most ${tables} page tables`,
    };
  }

  protected override archVcpuPmlBytes(): number {
    // The EPT walker of every vCPU under TDP holds a PML buffer (cpu/ept.ts), used or not.
    return this.mmuMode === "tdp" ? 512 * 8 : 0;
  }

  /** `kvm_arch_memslots_updated` → `kvm_mmu_invalidate_mmio_sptes`. */
  protected archMemslotsUpdated(generation: number): void {
    this.mmu?.invalidateMmioSptes(generation);
  }

  /**
   * `kvm_arch_commit_memory_region`: default `n_max_mmu_pages` after CREATE and DELETE (unless set
   * by ioctl), then `kvm_mmu_slot_apply_flags`: for a flags-only change of a writable slot that
   * toggles KVM_MEM_LOG_DIRTY_PAGES, start or stop dirty logging in the MMU.
   */
  protected archCommitMemoryRegion(
    change: MemslotChange,
    old: MemSlot | undefined,
    nw: MemSlot | undefined,
  ): void {
    const mmu = this.mmu;
    if (mmu === null) return;
    if (nw !== undefined) slotArch(nw);
    // The old slot's metadata is dropped with it (kvm_free_memslot → kvm_arch_free_memslot).
    if ((change === "delete" || change === "move") && old?.arch instanceof SlotArch)
      old.arch.release();
    if (change === "create" || change === "delete") mmu.recalculateMmuPages();
    if (change !== "flagsOnly" || old === undefined || nw === undefined || nw.readonly) return;
    if (((old.flags ^ nw.flags) & KVM_MEM_LOG_DIRTY_PAGES) === 0) return;
    if ((nw.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0) mmu.slotEnableLog(nw);
    else mmu.slotDisableLog(nw);
  }

  protected archMmuEnableLogDirtyPtMasked(
    _slot: MemSlot,
    base: number,
    maskLo: number,
    maskHi: number,
  ): void {
    this.mmu?.enableLogDirtyPtMasked(base, maskLo, maskHi);
  }

  protected archUnmapGfnRange(_slot: MemSlot, start: number, end: number): boolean {
    return this.mmu?.unmapGfnRange(start, end) === true;
  }

  protected archAgeGfnRange(_slot: MemSlot, start: number, end: number, clear: boolean): number {
    return this.mmu === null ? 0 : this.mmu.ageGfnRange(start, end, clear);
  }

  /** `kvm_arch_sync_dirty_log`: every vCPU's PML buffer is flushed (they are kicked out). */
  protected override archSyncDirtyLog(): void {
    if (!this.features.pml) return;
    for (const v of this.vcpus) v.cpu.ept?.flushPml();
  }

  protected override traceFlush(reason: string): void {
    const trace = this.mmu?.trace;
    if (trace?.on) trace.emit(EV.flush, trace.str(reason));
  }

  // ---- x86 ioctls and MMU entry points ---------------------------------------------------------

  /** The VM's MMU, or a clear error on the bare machine. */
  private requireMmu(what: string): VmMmu {
    if (this.mmu === null)
      throw new InvalidArgumentError("mmu", this.mmuMode, `"tdp" (${what} needs KVM's MMU)`);
    return this.mmu;
  }

  /**
   * `KVM_SET_NR_MMU_PAGES`: fix n_max_mmu_pages (at least KVM_MIN_ALLOC_MMU_PAGES = 64, as KVM
   * returns -EINVAL below it); the shadow MMU zaps its oldest pages down to it.
   */
  setNrMmuPages(n: number): void {
    refuseFrozen(this, "vm");
    const mmu = this.requireMmu("KVM_SET_NR_MMU_PAGES");
    if (
      typeof n !== "number" ||
      !Number.isInteger(n) ||
      n < KVM_MIN_ALLOC_MMU_PAGES ||
      n > 2 ** 31
    ) {
      throw new InvalidArgumentError(
        "nrMmuPages",
        n,
        `an integer >= ${KVM_MIN_ALLOC_MMU_PAGES} (KVM_MIN_ALLOC_MMU_PAGES)`,
        "EINVAL",
      );
    }
    mmu.setNrMmuPages(n);
  }

  /**
   * `kvm_zap_gfn_range(start, end)`: zap every leaf mapping a gfn in [start, end); one ranged
   * remote flush if anything was zapped. Returns whether it flushed.
   */
  zapGfnRange(start: number, end: number): boolean {
    refuseFrozen(this, "vm");
    const mmu = this.requireMmu("zapGfnRange");
    this.gfnRangeArgs(start, end);
    return mmu.zapGfnRange(start, end);
  }

  /**
   * The MMU notifier for the host range behind gfns [start, end) (`kvm_unmap_gfn_range` between
   * invalidate_range_start and _end): zap leaves, one flush if any was zapped.
   */
  mmuNotifierInvalidate(start: number, end: number): boolean {
    return this.zapGfnRange(start, end);
  }

  /** `kvm_mmu_zap_all_fast`: invalidate every root; vCPUs load new ones at their next entry. */
  zapAllFast(): void {
    refuseFrozen(this, "vm");
    this.requireMmu("zapAllFast").zapAllFast();
  }

  /** Zap the single leaf mapping `gfn` (an atomic zap with its own flush). Returns leaves zapped. */
  zapSpte(gfn: number): number {
    refuseFrozen(this, "vm");
    const mmu = this.requireMmu("zapSpte");
    const limit = 2 ** (this.maxPhysAddrBits - 12);
    if (typeof gfn !== "number" || !Number.isSafeInteger(gfn) || gfn < 0 || gfn >= limit)
      throw new InvalidArgumentError(
        "gfn",
        gfn,
        `a gfn (integer) in [0, 0x${limit.toString(16)}) (guest MAXPHYADDR ${this.maxPhysAddrBits})`,
      );
    return mmu.zapSpte(gfn);
  }

  /** Validate a gfn range [start, end) against MAXPHYADDR; throws before anything changes. */
  private gfnRangeArgs(start: number, end: number): void {
    const limit = 2 ** (this.maxPhysAddrBits - 12);
    const ok = (v: unknown): v is number =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= limit;
    if (!ok(start) || start >= limit) {
      throw new InvalidArgumentError(
        "start",
        start,
        `a gfn (integer) in [0, 0x${limit.toString(16)}) (guest MAXPHYADDR ${this.maxPhysAddrBits})`,
      );
    }
    if (!ok(end) || end <= start) {
      throw new InvalidArgumentError(
        "end",
        end,
        `an exclusive end gfn in (start, 0x${limit.toString(16)}]`,
      );
    }
  }

  // ---- seed 2017: write protection by page -----------------------------------------------------

  /** The rmap MMU, or a clear error (the per-page passes of seed 2017 are the rmap MMU's). */
  private requireRmapMmu(what: string) {
    const mmu = this.requireMmu(what);
    if (mmu.shadow === null)
      throw new InvalidArgumentError(
        "features.mmuFlavor",
        this.features.mmuFlavor,
        `"legacy_direct", or mmu "shadow" (${what} works on the rmap MMU's shadow pages)`,
      );
    return mmu;
  }

  /**
   * Write-protect every shadow page, page by page (seed 2017): `mode` "bitmap" visits only the
   * possibly-writable entries (needs `features.possibleWritableBitmap`; the default then),
   * "scan" all 512 entries of each page. Leaves lose W (and MMU-writable with
   * `clearMmuWritable`, as for a shadowed guest table; by default they keep it, as dirty logging
   * does); non-leaf entries lose W with `nonLeaf`. Returns the entries examined and changed and
   * the pages skipped for a zero count (also in `vm.stats`: `wp_entries_*`).
   */
  writeProtectAllSps(
    opts: { mode?: "bitmap" | "scan"; nonLeaf?: boolean; clearMmuWritable?: boolean } = {},
  ): { examined: number; changed: number; skipped: number } {
    refuseFrozen(this, "vm");
    const mmu = this.requireRmapMmu("writeProtectAllSps");
    checkOptionKeys("opts", opts, ["mode", "nonLeaf", "clearMmuWritable"], false);
    const bitmapOn = this.features.possibleWritableBitmap;
    const mode = opts.mode === undefined ? (bitmapOn ? "bitmap" : "scan") : opts.mode;
    if (mode !== "bitmap" && mode !== "scan")
      throw new InvalidArgumentError("mode", mode, '"bitmap" or "scan"');
    if (mode === "bitmap" && !bitmapOn)
      throw new InvalidArgumentError(
        "mode",
        mode,
        '"scan" (the bitmap exists only with features.possibleWritableBitmap: true)',
      );
    for (const k of ["nonLeaf", "clearMmuWritable"] as const)
      if (opts[k] !== undefined && typeof opts[k] !== "boolean")
        throw new InvalidArgumentError(k, opts[k], "true or false");
    return this.wpCounts(() =>
      mmu.writeProtectAllSps(
        mode === "bitmap",
        opts.nonLeaf === true,
        opts.clearMmuWritable === true,
      ),
    );
  }

  /**
   * The RFC's fast write-protect-all (`kvm_mmu_write_protect_all_pages`, seed 2017 series):
   * only the roots' entries lose W now; each write fault then pushes the protection down its
   * path, one page per level (bitmap or scan as `features.possibleWritableBitmap` says).
   * Returns what the root pass examined and changed.
   */
  fastWriteProtectAll(): { examined: number; changed: number; skipped: number } {
    refuseFrozen(this, "vm");
    const mmu = this.requireRmapMmu("fastWriteProtectAll");
    return this.wpCounts(() => mmu.fastWriteProtectAll());
  }

  private wpCounts(run: () => void): { examined: number; changed: number; skipped: number } {
    const s = this.vmStat;
    const e = s.wp_entries_examined;
    const c = s.wp_entries_changed;
    const k = s.wp_sps_skipped_zero_count;
    run();
    return {
      examined: s.wp_entries_examined - e,
      changed: s.wp_entries_changed - c,
      skipped: s.wp_sps_skipped_zero_count - k,
    };
  }

  /**
   * Start recording MMU trace events (mmutrace.h tracepoints and the simulator's own) into a
   * ring of `capacity` events; the newest are kept, older ones counted in `dropped`. `events`
   * names the only events to record (`perf record -e kvm:kvm_page_fault`); default all.
   * @throws InvalidArgumentError for a bad capacity or an unknown event name.
   * @throws ResourceLimitError when the ring (88 bytes an event) would exceed the memory budget,
   *   or decoding it at `stopTrace()` the JS-heap budget; the previous trace is kept.
   */
  startTrace(capacity = 10000, events?: readonly TraceEventName[]): void {
    refuseFrozen(this, "vm");
    this.requireMmu("tracing").trace.start(capacity, events);
  }

  /**
   * How often each tracepoint of `system` fired while tracing was on, over the VM's life (what
   * `kvm_stat` counts with one perf counter per tracepoint); all 0 without a KVM MMU.
   * @throws InvalidArgumentError for a system other than "kvm" and "kvmmmu".
   */
  tracepointCounts(system: "kvm" | "kvmmmu" = "kvm"): Record<string, number> {
    if (system !== "kvm" && system !== "kvmmmu")
      throw new InvalidArgumentError("system", system, '"kvm" or "kvmmmu"');
    const out: Record<string, number> = {};
    const hits = this.mmu?.trace.hits;
    TRACE_EVENTS.forEach((e, i) => {
      if (e.system === system) out[e.name] = hits?.[i] ?? 0;
    });
    return out;
  }

  /** Stop recording; the events, oldest first (`vm.stopTrace()` wraps them in a view). */
  protected stopTraceEvents(): { events: MmuTraceEvent[]; dropped: number } {
    const t = this.requireMmu("tracing").trace;
    return { events: t.stop(), dropped: t.dropped };
  }
}
