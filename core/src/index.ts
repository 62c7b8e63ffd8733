/**
 * `@mmulab/core`: a simulator of the Linux KVM x86 MMU, for notebooks.
 *
 * Start with {@link createVm}: add memslots ({@link Vm.setUserMemoryRegion}), write guest page
 * tables ({@link GuestPageTableBuilder}), create a vCPU ({@link Vm.createVcpu}), load its
 * registers and make accesses ({@link Vcpu.access}, {@link Vcpu.walk}). KVM's counters are in
 * {@link Vm.stats}; the VM-level ioctls (`getDirtyLog`, `clearDirtyLog`, `setNrMmuPages`,
 * `enableCap`, zaps) are methods of the VM; {@link Vm.snapshot} draws the MMU's tables.
 *
 * This entry point is the curated API. The model's internals (shadow-page store, spte format,
 * the MMUs, the simulated CPU) are reachable through `@mmulab/core/internal`; the display payload
 * protocol alone is `@mmulab/core/display`.
 *
 * @example
 * ```ts
 * import { createVm, GuestPageTableBuilder } from "@mmulab/core";
 * const vm = createVm();
 * vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 ** 30, flags: 0 });
 * const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 0x100000, poolSize: 0x100000 });
 * tables.map(0x400000, 0x2000000, 0x200000, { user: true });
 * const vcpu = vm.createVcpu();
 * vcpu.setSregs({ ...tables.sregs({ nx: true }), cpl: 3 });
 * vcpu.access(0x401000, { write: true, user: true });  // { fault: false, gpa: 0x2001000 }
 * ```
 */

// Architectural constants (PAGE_SIZE, PFERR_*, X86_CR0_*, X86_CR4_*, EFER_*, KVM_MEM_*, ACC_*).
export * from "./arch/constants";
// The display helpers notebooks build their own outputs with (the protocol: @mmulab/core/display).
export {
  escapeHtml,
  htmlTableBundle,
  JUPYTER_DISPLAY,
  type MimeBundle,
  type PagetablePayload,
  type PlotlyFigure,
  pagetableBundle,
  plotlyBundle,
  type Walk2dPayload,
  type WalkPayload,
  walk2dBundle,
  walkBundle,
} from "./display";
// Behaviour switches (guest CPUID and KVM eras).
export {
  type FeatureOptions,
  type Features,
  SWITCHES,
  type SwitchName,
} from "./era/features";
export { PRESETS, type Preset, type PresetName } from "./era/presets";
// Errors.
export {
  GeneralProtectionError,
  InterruptedError,
  InvalidArgumentError,
  MmuBugError,
  MmuLabError,
  ResourceLimitError,
} from "./errors";
// Guest page tables.
export {
  type BuilderMode,
  type BuilderOptions,
  GuestPageTableBuilder,
  type MapOptions,
} from "./guest/pgtable_builder";
export { type ConfigEntry, PresetTable, presetTable, VmConfig } from "./inspect/config_view";
// Views.
export { MemoryUsage, type MemoryUsageRow } from "./inspect/memory_view";
export {
  type ShadowPageInfo,
  ShadowPageList,
  type TdpSnapshotOptions,
  TdpTreeView,
  TdpWalk,
  type TdpWalkStep,
} from "./inspect/mmu_introspect";
export {
  FaultHeatmap,
  type FaultHeatmapOptions,
  type KvmStatOptions,
  type KvmStatRow,
  type KvmStatSort,
  KvmStatView,
  RmapHistogram,
  type TraceFilter,
  TraceView,
} from "./inspect/trace_view";
export { changes, type PagetableSource, PagetableView, sideBySide } from "./inspect/views";
export { WalkResult, type WalkTraceLevel } from "./inspect/walk";
export {
  type EptStepTrace,
  TwoDimWalk,
  type Walk2dColumnTrace,
  type Walk2dViolationTrace,
} from "./inspect/walk2d";
export {
  type DirtyGfn,
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  KvmDirtyRing,
} from "./kvm/dirty_ring";
// Memory budgets: what the host tells mmulab of its memory (the default budgets come from it).
export { type HostMemoryInfo, hostMemoryInfo, setHostMemoryInfo } from "./kvm/host";
export {
  type GuestStoreResult,
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
} from "./kvm/kvm_main";
export { MEM_CATEGORIES, type MemCategory } from "./kvm/memcg";
export {
  type MemSlot,
  type MemslotChange,
  SLOT_BACKINGS,
  type SlotBacking,
  type UserMemoryRegion,
} from "./kvm/memslot";
// Counters.
export { KvmStats, VcpuStat } from "./kvm/stats";
// Workloads shaped like the KVM selftests.
export {
  type DirtyLogPerfResult,
  type DirtyLogPerfStep,
  type DirtyLogPhase,
  dirtyLogPerf,
  dirtyLogPerfSteps,
  guestRandomU32,
  MEMSTRESS_GPA,
  MEMSTRESS_GVA,
  MEMSTRESS_OPTION_KEYS,
  Memstress,
  type MemstressOptions,
  memstress,
} from "./memstress";
export type { DecodedRole } from "./mmu/mmu_internal";
export {
  type ChromeTrace,
  type MmuTraceEvent,
  TRACE_EVENTS,
  type TraceEventName,
} from "./mmu/mmutrace";
export { Vcpu } from "./vcpu";
// The VM and its vCPUs.
export { createVm, Vm } from "./vm";
export type {
  AccessOk,
  AccessOptions,
  AccessResult,
  DataAccessOptions,
  DirtyRingFullExit,
  FaultResult,
  ReadResult,
  Sregs,
  SregsInput,
} from "./x86/vcpu";
export type { MmuMode, SwitchSource, VmOptions } from "./x86/x86";
