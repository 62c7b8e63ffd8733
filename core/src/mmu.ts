/**
 * The MMU beneath the guest walk on an EPT machine (mmu.c: `kvm_mmu_page_fault`,
 * `kvm_mmu_do_page_fault`, `direct_page_fault`, `fast_page_fault`, `kvm_faultin_pfn`,
 * `kvm_mmu_hugepage_adjust`, `handle_mmio_page_fault`, memslot hooks, zap entry points).
 *
 * It implements the VM's {@link Stage2} seam: `translate` is the hardware EPT walk; a miss is an
 * EPT violation (or misconfig, for MMIO sptes) handled here, then the walk is retried.
 */
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  PAGE_SIZE,
  PFERR_FETCH_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from "./constants";
import type { DirectMmu } from "./direct_mmu";
import { InvalidArgumentError } from "./errors";
import { hostMappingLevel, hostPfn } from "./host";
import { LegacyDirectMmu } from "./legacy_direct";
import { SlotArch, slotArch } from "./lpage";
import type { MemSlot, MemSlots, MemslotChange } from "./memslot";
import { ShadowPageList, type TdpSnapshotOptions, TdpTreeView, TdpWalk } from "./mmu_introspect";
import {
  MmuPageStore,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_INVALID,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
} from "./mmu_page";
import { STAGE2_MMIO } from "./paging_tmpl";
import { tdpRootRole } from "./role";
import {
  GFN_SPAN,
  isAccessAllowed,
  isLastSpte,
  isMmioSpte,
  isShadowPresent,
  MMIO_SPTE_GEN_MASK,
  mmioSpteGen,
  SPTE_A,
  SPTE_D,
  SPTE_HI_HOST_WRITABLE,
  SPTE_HI_MMU_WRITABLE,
  SPTE_MMU_PRESENT,
  SPTE_PS,
  SPTE_R,
  SPTE_W,
  SPTE_X,
  sptePfn,
} from "./spte";
import { KvmStats } from "./stats";
import { TdpMmu } from "./tdp_mmu";
import type { Vcpu } from "./vcpu";
import type { Stage2 } from "./vm";

/** MMU switches (`createVm({ features })`), see spec §16. */
export interface MmuFeatures {
  /** Seed 2010 "before": direct shadow pages also allocate a gfn array (default false). */
  allocTranslationForDirect?: boolean;
  /** Store gfns for direct pages too (uncounted) and check the formula on every removal. */
  selfCheckGfns?: boolean;
  /** TDP root level: 4 or 5 (default: 5 only when maxPhysAddrBits > 48, as kvm_mmu_get_tdp_level). */
  tdpLevels?: 4 | 5;
  /** MMU flavour: "tdp_mmu" (default) or "legacy_direct" (the rmap/hash MMU, `tdp_mmu=0`). */
  mmuFlavor?: "tdp_mmu" | "legacy_direct";
  /** Legacy flavour: `direct_pte_prefetch` of the aligned group of 8 (default true). */
  prefetch?: boolean;
  /** Split huge leaves when dirty logging is enabled (`eager_page_split`, default true). */
  eagerPageSplit?: boolean;
  /** What disabling dirty logging does to 4K mappings: "zap" (v5.10–v6.12, default) or "none" (< v4.1). */
  collapseOnLogDisable?: "zap" | "recover" | "none";
  /** `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` bit 0: GET does not clear/protect; CLEAR does. */
  manualDirtyLogProtect?: boolean;
  /** Bit 1 `KVM_DIRTY_LOG_INITIALLY_SET` (needs manual protect): bitmap starts all ones, lazy protection. */
  dirtyLogInitiallySet?: boolean;
}

/** Names of the MMU switches accepted in `createVm({ features })`. */
export const MMU_FEATURE_KEYS = [
  "allocTranslationForDirect",
  "selfCheckGfns",
  "tdpLevels",
  "mmuFlavor",
  "prefetch",
  "eagerPageSplit",
  "collapseOnLogDisable",
  "manualDirtyLogProtect",
  "dirtyLogInitiallySet",
] as const;

/** Resolved MMU switches. */
export type ResolvedMmuFeatures = Required<MmuFeatures>;

/** Validate MMU switches; throws InvalidArgumentError naming the bad one. */
export function resolveMmuFeatures(
  f: Record<string, unknown>,
  maxPhysAddrBits: number,
): ResolvedMmuFeatures {
  const bool = (k: string, d: boolean): boolean => {
    const v = f[k];
    if (v === undefined) return d;
    if (typeof v !== "boolean") throw new InvalidArgumentError(`features.${k}`, v, "true or false");
    return v;
  };
  // kvm_mmu_get_tdp_level: 4-level EPT unless the guest MAXPHYADDR needs 5 levels.
  const levels = f.tdpLevels ?? (maxPhysAddrBits > 48 ? 5 : 4);
  if (levels !== 4 && levels !== 5)
    throw new InvalidArgumentError("features.tdpLevels", levels, "4 or 5");
  if (levels === 4 && maxPhysAddrBits > 48) {
    throw new InvalidArgumentError(
      "features.tdpLevels",
      levels,
      `5 when maxPhysAddrBits (${maxPhysAddrBits}) exceeds 48`,
    );
  }
  const flavor = f.mmuFlavor ?? "tdp_mmu";
  if (flavor !== "tdp_mmu" && flavor !== "legacy_direct") {
    throw new InvalidArgumentError("features.mmuFlavor", flavor, '"tdp_mmu" | "legacy_direct"');
  }
  const collapse = f.collapseOnLogDisable ?? "zap";
  if (collapse !== "zap" && collapse !== "recover" && collapse !== "none") {
    throw new InvalidArgumentError(
      "features.collapseOnLogDisable",
      collapse,
      '"zap" | "recover" | "none"',
    );
  }
  const manual = bool("manualDirtyLogProtect", false);
  const initSet = bool("dirtyLogInitiallySet", false);
  if (initSet && !manual) {
    throw new InvalidArgumentError(
      "features.dirtyLogInitiallySet",
      initSet,
      "false unless manualDirtyLogProtect is true (KVM_DIRTY_LOG_INITIALLY_SET needs MANUAL_PROTECT_ENABLE)",
    );
  }
  return {
    allocTranslationForDirect: bool("allocTranslationForDirect", false),
    selfCheckGfns: bool("selfCheckGfns", false),
    tdpLevels: levels,
    mmuFlavor: flavor,
    prefetch: bool("prefetch", true),
    eagerPageSplit: bool("eagerPageSplit", true),
    collapseOnLogDisable: collapse,
    manualDirtyLogProtect: manual,
    dirtyLogInitiallySet: initSet,
  };
}

/** One MMU trace event (spec §14, a subset): a handled fault or a counted remote TLB flush. */
export type MmuTraceEvent =
  | { ev: "fault"; gfn: number; err: number; path: "fast" | "slow" | "mmio"; ret: string }
  | { ev: "tlb_flush"; reason: string };

const RET_PF_NAMES: Record<number, string> = {
  0: "continue",
  1: "retry",
  2: "emulate",
  3: "invalid",
  4: "fixed",
  5: "spurious",
};

/** KVM_MIN_ALLOC_MMU_PAGES and KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO. */
const KVM_MIN_ALLOC_MMU_PAGES = 64;
const KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO = 50;
/** vCPU root slot used for stores not made by a vCPU. */
const NO_VCPU = 0;
const MAX_RETRIES = 8;
/** Entries of the walk cache (direct-mapped by the low bits of gfn / 512, one per 2 MiB region). */
const WALK_CACHE_SIZE = 1024;
const WALK_CACHE_MASK = WALK_CACHE_SIZE - 1;

/** The TDP MMU machine: EPT tables under the guest walk. */
export class TdpStage2 implements Stage2 {
  readonly name = "tdp";
  writable = false;
  readonly features: ResolvedMmuFeatures;
  private readonly kvmStats = new KvmStats();
  readonly store = new MmuPageStore(this.kvmStats);
  /** The MMU flavour building the EPT tables. */
  readonly direct: DirectMmu;
  /** The legacy MMU when `mmuFlavor: "legacy_direct"`, else null. */
  readonly legacy: LegacyDirectMmu | null;
  /** `kvm->arch.n_requested_mmu_pages` (0: default sizing). */
  private nRequestedMmuPages = 0;
  readonly rootLevel: number;
  /** `kvm->arch.mmu_valid_gen` (toggles 0/1). */
  mmuValidGen = 0;
  /** MMIO spte generation (low bits of the memslots generation). */
  mmioGen = 0;
  // Walk cache (see translate): 2 MiB region, root, and the leaf table sp/index/level per slot.
  private readonly wcGfn: Float64Array = new Float64Array(WALK_CACHE_SIZE).fill(-1);
  private readonly wcRoot: Int32Array = new Int32Array(WALK_CACHE_SIZE);
  private readonly wcSp: Int32Array = new Int32Array(WALK_CACHE_SIZE);
  private readonly wcIdx: Int16Array = new Int16Array(WALK_CACHE_SIZE);
  private readonly wcLevel: Uint8Array = new Uint8Array(WALK_CACHE_SIZE);
  private wcEpoch = -1;
  /** Root per vCPU (index = vcpu.id + 1; index 0 for stores without a vCPU), -1 = none. */
  private vcpuRoot = new Int32Array(8).fill(-1);
  private readonly slots: MemSlots;

  constructor(slots: MemSlots, features: ResolvedMmuFeatures) {
    this.slots = slots;
    this.features = features;
    this.rootLevel = features.tdpLevels;
    const common = {
      rootLevel: this.rootLevel,
      rootRole: tdpRootRole(this.rootLevel, true),
      allocTranslationForDirect: features.allocTranslationForDirect,
      selfCheckGfns: features.selfCheckGfns,
    };
    this.legacy =
      features.mmuFlavor === "legacy_direct"
        ? new LegacyDirectMmu(this.store, this.kvmStats, slots, {
            ...common,
            prefetch: features.prefetch,
          })
        : null;
    this.direct = this.legacy ?? new TdpMmu(this.store, this.kvmStats, common);
    this.direct.flushRemoteTlbs = (reason) => this.flushRemoteTlbs(reason);
    this.kvmStats.n_max_mmu_pages = KVM_MIN_ALLOC_MMU_PAGES;
  }

  /** Statistics with KVM's names: one live object, every field kept current. */
  get stats(): KvmStats {
    return this.kvmStats;
  }

  /** `kvm_flush_remote_tlbs`: count one remote flush (§11). */
  flushRemoteTlbs(reason: string): void {
    this.kvmStats.remote_tlb_flush++;
    this.kvmStats.remote_tlb_flush_requests++;
    if (this.traceBuf !== null) this.trace({ ev: "tlb_flush", reason });
  }

  /** Trace buffer while tracing (startTrace), else null: the hot path pays one null check. */
  private traceBuf: MmuTraceEvent[] | null = null;
  private traceLimit = 0;
  /** Events dropped because the buffer was full. */
  traceDropped = 0;

  /** Start recording MMU trace events (faults, remote TLB flushes), keeping at most `limit`. */
  startTrace(limit = 10000): void {
    if (!Number.isInteger(limit) || limit < 1)
      throw new InvalidArgumentError("limit", limit, "a positive integer");
    this.traceBuf = [];
    this.traceLimit = limit;
    this.traceDropped = 0;
  }

  /** Stop recording and return the events, in order. */
  stopTrace(): MmuTraceEvent[] {
    const t = this.traceBuf ?? [];
    this.traceBuf = null;
    return t;
  }

  private trace(e: MmuTraceEvent): void {
    const b = this.traceBuf!;
    if (b.length < this.traceLimit) b.push(e);
    else this.traceDropped++;
  }

  /** `kvm_mmu_load` / `kvm_mmu_free_obsolete_roots`: the vCPU's current valid root. */
  rootFor(vcpu: Vcpu | null): number {
    const k = vcpu === null ? NO_VCPU : vcpu.id + 1;
    if (k >= this.vcpuRoot.length) {
      const n = new Int32Array(Math.max(k + 1, this.vcpuRoot.length * 2)).fill(-1);
      n.set(this.vcpuRoot);
      this.vcpuRoot = n;
    }
    let root = this.vcpuRoot[k]!;
    if (root >= 0 && this.direct.isInvalidRoot(root)) {
      this.direct.putRoot(root);
      root = -1;
    }
    if (root < 0) {
      root = this.direct.getVcpuRoot();
      this.vcpuRoot[k] = root;
    }
    return root;
  }

  /**
   * The hardware EPT walk for `gpa`; a violation (or misconfig) goes to the page-fault handler
   * and the walk is retried. Returns the host frame (pfn = hva >> 12) or STAGE2_MMIO.
   */
  translate(vcpu: Vcpu | null, gpa: number, pfec: number, final: boolean): number {
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const write = (pfec & PFERR_WRITE_MASK) !== 0;
    const fetch = (pfec & PFERR_FETCH_MASK) !== 0;
    const tdp = this.direct;
    const store = this.store;
    // Walk cache: per 2 MiB region under this root, the table holding the last leaf found (a PT:
    // the entry is at gfn's index; a PD/PDPT: the huge leaf's index), re-read on every hit.
    // Valid while no table was unlinked or freed (topologyEpoch), so a hit is exactly what the
    // full walk would find; it is a simulator accelerator, not a model of the CPU's TLB.
    if (store.topologyEpoch !== this.wcEpoch) {
      this.wcGfn.fill(-1);
      this.wcEpoch = store.topologyEpoch;
    }
    const region = Math.floor(gfn / 512);
    const c = region & WALK_CACHE_MASK;
    let root = this.rootFor(vcpu);
    if (this.wcGfn[c] === region && this.wcRoot[c] === root) {
      const sp = this.wcSp[c]!;
      const spt = store.spt[sp]!;
      const level = this.wcLevel[c]!;
      const i = (level === 1 ? gfn & 511 : this.wcIdx[c]!) * 2;
      const lo = spt[i]!;
      if ((lo & SPTE_MMU_PRESENT) !== 0 && (level === 1 || (lo & SPTE_PS) !== 0)) {
        const pfn = this.leafAccess(spt, i, lo, spt[i + 1]!, level, gfn, write, fetch, final);
        if (pfn >= 0) return pfn;
      }
    }
    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      if (tries > 0) root = this.rootFor(vcpu);
      tdp.walkToLast(root, gfn);
      const lo = tdp.lastLo;
      if ((lo & SPTE_MMU_PRESENT) !== 0) {
        const spt = store.spt[tdp.lastSp]!;
        const pfn = this.leafAccess(
          spt,
          tdp.lastIdx * 2,
          lo,
          tdp.lastHi,
          tdp.lastLevel,
          gfn,
          write,
          fetch,
          final,
        );
        if (pfn >= 0) {
          this.wcGfn[c] = region;
          this.wcRoot[c] = root;
          this.wcSp[c] = tdp.lastSp;
          this.wcIdx[c] = tdp.lastIdx;
          this.wcLevel[c] = tdp.lastLevel;
          return pfn;
        }
      }
      // The guest walker's table accesses count as writes (EPT A/D); in a read-only slot it
      // reads the table and sets no A/D, as the memslot-only machine does.
      const w = write && !(!final && this.slots.gfnToSlot(gfn)?.readonly === true);
      // EPT violation error code (handle_ept_violation): reads report USER.
      let err = w ? PFERR_WRITE_MASK : fetch ? PFERR_FETCH_MASK : PFERR_USER_MASK;
      if (isMmioSpte(lo)) err |= PFERR_RSVD_MASK;
      else if ((lo & (SPTE_R | SPTE_W | SPTE_X)) !== 0 && (lo & SPTE_MMU_PRESENT) !== 0)
        err |= PFERR_PRESENT_MASK;
      const r = this.pageFault(root, gfn, err);
      if (r === RET_PF_EMULATE) {
        this.writable = false;
        return STAGE2_MMIO;
      }
    }
    throw new Error(`tdp: gpa 0x${gpa.toString(16)} still faults after ${MAX_RETRIES} retries`);
  }

  /**
   * The CPU's use of a present leaf (entry `i` of `spt`): -1 if the access is not allowed (EPT
   * violation), else the 4 KiB frame, after setting EPT A (and D for writes) as the CPU does
   * with A/D bits enabled. Sets {@link writable}.
   */
  private leafAccess(
    spt: Uint32Array,
    i: number,
    lo: number,
    hi: number,
    level: number,
    gfn: number,
    write: boolean,
    fetch: boolean,
    final: boolean,
  ): number {
    // The walker's own table accesses in a read-only slot get no A/D (no write).
    if (write && !final && (hi & SPTE_HI_HOST_WRITABLE) === 0) write = false;
    if (!isAccessAllowed(lo, write, fetch)) return -1;
    const ad = write ? SPTE_A | SPTE_D : SPTE_A;
    if ((lo & ad) !== ad) {
      lo = (lo | ad) >>> 0;
      spt[i] = lo;
    }
    this.writable = (lo & SPTE_W) !== 0;
    return sptePfn(lo, hi) + (level === 1 ? 0 : gfn % GFN_SPAN[level]!);
  }

  /**
   * `kvm_mmu_page_fault` → `kvm_mmu_do_page_fault` for a TDP fault on `gfn` with error code
   * `err`. Returns a RET_PF_* value and keeps pf_* statistics as the kernel does.
   */
  pageFault(root: number, gfn: number, err: number): number {
    const s = this.kvmStats;
    if ((err & PFERR_RSVD_MASK) !== 0) {
      const r = this.handleMmioPageFault(root, gfn);
      if (r !== RET_PF_INVALID) {
        if (this.traceBuf !== null)
          this.trace({ ev: "fault", gfn, err, path: "mmio", ret: RET_PF_NAMES[r] ?? String(r) });
        return r;
      }
    }
    s.pf_taken++;
    const fast = s.pf_fast;
    const r = this.directPageFault(root, gfn, err);
    if (r === RET_PF_FIXED) s.pf_fixed++;
    else if (r === RET_PF_EMULATE) s.pf_emulate++;
    else if (r === RET_PF_SPURIOUS) s.pf_spurious++;
    if (this.traceBuf !== null) {
      this.trace({
        ev: "fault",
        gfn,
        err,
        path: s.pf_fast !== fast ? "fast" : "slow",
        ret: RET_PF_NAMES[r] ?? String(r),
      });
    }
    return r;
  }

  /** `handle_mmio_page_fault`: a current-generation MMIO spte is emulated right away. */
  private handleMmioPageFault(root: number, gfn: number): number {
    this.direct.walkToLast(root, gfn);
    const lo = this.direct.lastLo;
    if (!isMmioSpte(lo)) return RET_PF_RETRY;
    if (mmioSpteGen(lo, this.direct.lastHi) !== this.mmioGen) return RET_PF_INVALID;
    return RET_PF_EMULATE;
  }

  /** `direct_page_fault` (TDP flavour: `kvm_tdp_mmu_page_fault`). */
  private directPageFault(root: number, gfn: number, err: number): number {
    const write = (err & PFERR_WRITE_MASK) !== 0;
    if (
      (err & (PFERR_RSVD_MASK | PFERR_PRESENT_MASK | PFERR_WRITE_MASK)) ===
      (PFERR_PRESENT_MASK | PFERR_WRITE_MASK)
    ) {
      const r = this.fastPageFault(root, gfn, err);
      if (r !== RET_PF_INVALID) {
        this.kvmStats.pf_fast++;
        return r;
      }
    }
    // kvm_faultin_pfn
    const slot = this.slots.gfnToSlot(gfn) ?? null;
    if (slot === null) return this.direct.map(root, gfn, 1, 0, null, err, this.mmioGen);
    if (write && slot.readonly) return RET_PF_EMULATE; // KVM_PFN_ERR_RO_FAULT
    // kvm_mmu_hugepage_adjust
    let level = 1;
    if ((slot.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) level = this.maxMappingLevel(slot, gfn, 3);
    const span = GFN_SPAN[level]!;
    const pfn = hostPfn(slot, gfn);
    return this.direct.map(root, gfn, level, pfn - (pfn % span), slot, err, this.mmioGen);
  }

  /**
   * `kvm_mmu_max_mapping_level`: highest level ≤ maxLevel whose `disallow_lpage` is 0, capped
   * by the host mapping level.
   */
  maxMappingLevel(slot: MemSlot, gfn: number, maxLevel: number): number {
    // 4K host pages cap the result at 1 whatever lpage_info says: skip the lookups.
    if (slot.backing === "4k") return 1;
    const arch = slotArch(slot);
    for (; maxLevel > 1; maxLevel--) {
      if (arch.disallowLpage(slot, gfn, maxLevel) === 0) break;
    }
    if (maxLevel === 1) return 1;
    return Math.min(hostMappingLevel(slot, gfn), maxLevel);
  }

  /** `fast_page_fault`: restore W on an MMU-writable leaf without taking mmu_lock. */
  private fastPageFault(root: number, gfn: number, err: number): number {
    const tdp = this.direct;
    tdp.walkToLast(root, gfn);
    const lo = tdp.lastLo;
    const hi = tdp.lastHi;
    if (!isShadowPresent(lo) || !isLastSpte(lo, tdp.lastLevel)) return RET_PF_INVALID;
    const write = (err & PFERR_WRITE_MASK) !== 0;
    const fetch = (err & PFERR_FETCH_MASK) !== 0;
    if (isAccessAllowed(lo, write, fetch)) return RET_PF_SPURIOUS;
    let nlo = lo;
    if (write && (hi & SPTE_HI_MMU_WRITABLE) !== 0) {
      nlo = (lo | SPTE_W) >>> 0;
      // A huge leaf in a dirty-logged slot must be split by the slow path.
      if (tdp.lastLevel > 1) {
        const slot = this.slots.gfnToSlot(gfn);
        if (slot !== undefined && (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0)
          return RET_PF_INVALID;
      }
    }
    if (nlo === lo || !isAccessAllowed(nlo, write, fetch)) return RET_PF_INVALID;
    this.store.spt[tdp.lastSp]![tdp.lastIdx * 2] = nlo;
    if ((lo & SPTE_W) === 0 && (nlo & SPTE_W) !== 0) this.slots.gfnToSlot(gfn)?.markDirty(gfn);
    return RET_PF_FIXED;
  }

  /**
   * `kvm_arch_flush_shadow_memslot` (delete/move: fast zap of everything) — it runs while the
   * old slot is still visible (rmap removal looks slots up by gfn), before the new memslots are
   * installed — then `kvm_arch_prepare_memory_region`: new metadata for created and moved slots.
   */
  prepareMemoryRegion(
    change: MemslotChange,
    _old: MemSlot | undefined,
    nw: MemSlot | undefined,
  ): void {
    if (change === "delete" || change === "move") this.zapAllFast();
    if ((change === "create" || change === "move") && nw !== undefined) nw.arch = new SlotArch(nw);
  }

  /** `kvm_arch_commit_memory_region`: default n_max_mmu_pages (unless set by ioctl); MMIO generation. */
  commitMemoryRegion(
    change: MemslotChange,
    _old: MemSlot | undefined,
    nw: MemSlot | undefined,
  ): void {
    if (nw !== undefined && !(nw.arch instanceof SlotArch)) slotArch(nw);
    if (change === "flagsOnly" && _old !== undefined && nw !== undefined)
      this.slotApplyFlags(_old, nw);
    if (change !== "flagsOnly" && this.nRequestedMmuPages === 0) {
      const total = this.slots.totalPages();
      this.changeMmuPages(
        Math.max(Math.floor(total / KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO), KVM_MIN_ALLOC_MMU_PAGES),
      );
    }
    // kvm_mmu_invalidate_mmio_sptes: a wrapped generation would make stale MMIO sptes look
    // current, so KVM zaps everything then.
    const gen = this.slots.generation & MMIO_SPTE_GEN_MASK;
    if (gen === 0 && this.mmioGen !== 0) this.zapAllFast();
    this.mmioGen = gen;
  }

  /**
   * `kvm_mmu_slot_apply_flags` (x86.c, v6.12) for a flags-only change. Enabling
   * KVM_MEM_LOG_DIRTY_PAGES: eager split of the slot's huge leaves (TDP MMU), then remove W from
   * every leaf (no PML: start level 4K), then one remote flush, unconditionally. Disabling:
   * collapse (`kvm_mmu_zap_collapsible_sptes`) so that refaults map huge pages again.
   */
  private slotApplyFlags(old: MemSlot, nw: MemSlot): void {
    const wasLogging = (old.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
    const logging = (nw.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
    if (wasLogging === logging) return;
    const start = nw.baseGfn;
    const end = nw.baseGfn + nw.npages;
    if (!logging) {
      const canBeHuge = (gfn: number, level: number): boolean => {
        const slot = this.slots.gfnToSlot(gfn);
        return slot !== undefined && this.maxMappingLevel(slot, gfn, 3) >= level;
      };
      const mode = this.features.collapseOnLogDisable;
      if (mode === "recover" && this.direct instanceof TdpMmu) {
        // v6.13 kvm_mmu_recover_huge_pages: huge leaves installed in place, one batched flush.
        if (this.direct.recoverHugePages(start, end, canBeHuge) > 0)
          this.flushRemoteTlbs("recover_huge_pages");
      } else if (mode !== "none") {
        // "zap" (and "recover" on the legacy MMU, whose rmap part still zaps).
        this.direct.zapCollapsible(start, end, canBeHuge);
      }
      return;
    }
    if (nw.readonly) return;
    if (this.features.dirtyLogInitiallySet) {
      // kvm_dirty_log_manual_protect_and_init_set: every page starts dirty, protection is lazy.
      const bm = nw.dirtyBitmap;
      if (bm !== null) for (let g = 0; g < nw.npages; g++) bm[g >>> 5]! |= 1 << (g & 31);
      return;
    }
    if (this.features.eagerPageSplit) this.direct.splitHugePages(start, end, 1);
    this.direct.wrprotRange(start, end, 1);
    this.flushRemoteTlbs("slot_apply_flags");
  }

  /**
   * `KVM_GET_DIRTY_LOG` without manual protect (`kvm_get_dirty_log_protect`): for every non-zero
   * 64-bit word take and clear it into the snapshot, re-protect those 4K gfns
   * (`kvm_arch_mmu_enable_log_dirty_pt_masked` → write-protect, no PML), one remote flush if any
   * word was non-zero. Returns a copy of the snapshot (one bit per page, 32 pages per element).
   */
  getDirtyLog(slotId: number): Uint32Array {
    const slot = this.loggedSlot(slotId);
    const bm = slot.dirtyBitmap!;
    const words = bm.length / 2; // first half: the bitmap; second half: the snapshot buffer
    // Manual protect: a plain copy; clearing and protection are CLEAR_DIRTY_LOG's job.
    if (this.features.manualDirtyLogProtect) return bm.slice(0, words);
    const snap = bm.subarray(words);
    snap.fill(0);
    let flush = false;
    for (let i = 0; i < words; i += 2) {
      const lo = bm[i]!;
      const hi = bm[i + 1]!;
      if ((lo | hi) === 0) continue;
      flush = true;
      bm[i] = 0;
      bm[i + 1] = 0;
      snap[i] = lo;
      snap[i + 1] = hi;
      this.enableLogDirtyPtMasked(slot.baseGfn + i * 32, lo, hi);
    }
    if (flush) this.flushRemoteTlbs("get_dirty_log");
    return snap.slice();
  }

  private loggedSlot(slotId: number): MemSlot {
    const slot = this.slots.get(slotId);
    if (slot === undefined)
      throw new InvalidArgumentError("slot", slotId, "the id of an existing memslot", "ENOENT");
    if (slot.dirtyBitmap === null) {
      throw new InvalidArgumentError(
        "slot",
        slotId,
        "a memslot with KVM_MEM_LOG_DIRTY_PAGES set",
        "ENOENT",
      );
    }
    return slot;
  }

  /**
   * `kvm_arch_mmu_enable_log_dirty_pt_masked` (no PML): with INITIALLY_SET, first split and
   * write-protect (W and MMU-writable) the huge pages holding the first and last set bit; then
   * remove W from the 4K leaves of the set bits.
   */
  private enableLogDirtyPtMasked(base: number, lo: number, hi: number): void {
    if (this.features.dirtyLogInitiallySet) {
      const first = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 32 + 31 - Math.clz32(hi & -hi);
      const last = hi !== 0 ? 32 + 31 - Math.clz32(hi) : 31 - Math.clz32(lo);
      const start = base + first;
      const end = base + last;
      if (this.features.eagerPageSplit) this.direct.splitHugePages(start, end + 1, 1);
      this.direct.writeProtectGfn(start, 2);
      if (Math.floor(start / 512) !== Math.floor(end / 512)) this.direct.writeProtectGfn(end, 2);
    }
    this.direct.wrprotMasked(base, lo, hi);
  }

  /**
   * `KVM_CLEAR_DIRTY_LOG` (`kvm_clear_dirty_log_protect`): `firstPage` a multiple of 64,
   * `numPages` a multiple of 64 unless the range ends at the slot's end; `bitmap` holds one bit
   * per page from `firstPage` (32 per element). The bits that were really set are cleared and
   * their pages re-protected; one remote flush if any was. Returns the number of pages cleared.
   */
  clearDirtyLog(slotId: number, firstPage: number, numPages: number, bitmap: Uint32Array): number {
    const slot = this.loggedSlot(slotId);
    const int = (v: unknown): v is number =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
    if (!int(firstPage) || firstPage % 64 !== 0 || firstPage >= slot.npages) {
      throw new InvalidArgumentError(
        "firstPage",
        firstPage,
        `a multiple of 64 below the slot's ${slot.npages} pages`,
        "EINVAL",
      );
    }
    const left = slot.npages - firstPage;
    if (
      !int(numPages) ||
      numPages === 0 ||
      numPages > left ||
      (numPages < left && numPages % 64 !== 0)
    ) {
      throw new InvalidArgumentError(
        "numPages",
        numPages,
        `a multiple of 64 up to ${left}, or exactly ${left} (to the slot's end)`,
        "EINVAL",
      );
    }
    if (!(bitmap instanceof Uint32Array) || bitmap.length < Math.ceil(numPages / 32)) {
      throw new InvalidArgumentError(
        "bitmap",
        bitmap,
        `a Uint32Array of at least ${Math.ceil(numPages / 32)} elements`,
        "EINVAL",
      );
    }
    const bm = slot.dirtyBitmap!;
    let flush = false;
    let cleared = 0;
    for (let k = 0; k * 64 < numPages; k++) {
      const w = firstPage / 32 + k * 2;
      const mlo = bitmap[k * 2]! & bm[w]!;
      const mhi = (bitmap[k * 2 + 1] ?? 0) & bm[w + 1]!;
      if ((mlo | mhi) === 0) continue;
      bm[w] = (bm[w]! & ~mlo) >>> 0;
      bm[w + 1] = (bm[w + 1]! & ~mhi) >>> 0;
      flush = true;
      for (let v = mlo; v !== 0; v &= v - 1) cleared++;
      for (let v = mhi; v !== 0; v &= v - 1) cleared++;
      this.enableLogDirtyPtMasked(slot.baseGfn + firstPage + k * 64, mlo >>> 0, mhi >>> 0);
    }
    if (flush) this.flushRemoteTlbs("clear_dirty_log");
    return cleared;
  }

  /** `kvm_mmu_change_mmu_pages`: the legacy MMU reclaims down to the goal; TDP pages are not counted. */
  private changeMmuPages(goal: number): void {
    if (this.legacy !== null) this.legacy.changeMmuPages(goal);
    else this.kvmStats.n_max_mmu_pages = goal;
  }

  /**
   * `KVM_SET_NR_MMU_PAGES`: fix n_max_mmu_pages (at least KVM_MIN_ALLOC_MMU_PAGES = 64, as
   * KVM returns -EINVAL below it); the legacy MMU zaps its oldest pages down to it.
   */
  setNrMmuPages(n: number): void {
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
      );
    }
    this.nRequestedMmuPages = n;
    this.changeMmuPages(n);
  }

  /**
   * `kvm_mmu_zap_all_fast`: toggle the valid generation, invalidate every TDP root (vCPUs load
   * a new one on their next access) and zap the invalidated roots. No remote flush is counted:
   * there is no legacy page to commit and invalid roots are unreachable.
   */
  zapAllFast(): void {
    this.mmuValidGen ^= 1;
    this.direct.zapAllFast(this.mmuValidGen);
  }

  /**
   * `kvm_zap_gfn_range(start, end)`: zap every leaf mapping a gfn in [start, end); one ranged
   * remote flush if anything was zapped. Returns whether it flushed.
   */
  zapGfnRange(start: number, end: number): boolean {
    this.gfnRangeArgs(start, end);
    const flush = this.direct.zapLeafs(start, end);
    if (flush) this.flushRemoteTlbs("zap_gfn_range");
    return flush;
  }

  /**
   * MMU-notifier invalidation of the host range backing [start, end) (`kvm_unmap_gfn_range`
   * between invalidate_range_start and _end): zap leaves, one flush if any was zapped.
   */
  mmuNotifierInvalidate(start: number, end: number): boolean {
    return this.zapGfnRange(start, end);
  }

  /**
   * MMU notifier on a host virtual range [hvaStart, hvaEnd) (`kvm_mmu_notifier_invalidate_range_start`
   * → `kvm_handle_hva_range`): every memslot whose userspace range overlaps has the matching gfns'
   * leaves zapped; one remote flush for the whole event if anything was zapped.
   */
  mmuNotifierInvalidateHva(hvaStart: number, hvaEnd: number): boolean {
    const ok = (v: unknown): v is number =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= 2 ** 47;
    if (!ok(hvaStart))
      throw new InvalidArgumentError("hvaStart", hvaStart, "a host virtual address in [0, 2^47)");
    if (!ok(hvaEnd) || hvaEnd <= hvaStart)
      throw new InvalidArgumentError("hvaEnd", hvaEnd, "an exclusive end in (hvaStart, 2^47]");
    let flush = false;
    for (const slot of this.slots.list()) {
      const lo = Math.max(hvaStart, slot.userspaceAddr);
      const hi = Math.min(hvaEnd, slot.userspaceAddr + slot.npages * PAGE_SIZE);
      if (lo >= hi) continue;
      const start = slot.baseGfn + Math.floor((lo - slot.userspaceAddr) / PAGE_SIZE);
      const end = slot.baseGfn + Math.ceil((hi - slot.userspaceAddr) / PAGE_SIZE);
      if (this.direct.zapLeafs(start, end)) flush = true;
    }
    if (flush) this.flushRemoteTlbs("mmu_notifier_invalidate");
    return flush;
  }

  /** Zap the single leaf mapping `gfn` (atomic zap + its own flush). Returns leaves zapped. */
  zapSpte(gfn: number): number {
    this.gfnRangeArgs(gfn, gfn + 1);
    return this.direct.zapSpte(gfn);
  }

  /** Validate a gfn range [start, end) against MAXPHYADDR; throws before anything changes. */
  private gfnRangeArgs(start: number, end: number): void {
    const limit = 2 ** (this.slots.maxPhysAddrBits - 12);
    const ok = (v: unknown): v is number =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= limit;
    if (!ok(start) || start >= limit) {
      throw new InvalidArgumentError(
        "start",
        start,
        `a gfn (integer) in [0, 0x${limit.toString(16)}) (guest MAXPHYADDR ${this.slots.maxPhysAddrBits})`,
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

  /** The TDP tree as a bounded, folded display.v1 snapshot (displayable in notebooks). */
  snapshot(opts?: TdpSnapshotOptions): TdpTreeView {
    if (opts !== undefined) {
      if (opts === null || typeof opts !== "object") {
        throw new InvalidArgumentError(
          "opts",
          opts,
          "an object { maxEntriesPerTable?, maxTables?, root?, label? }",
        );
      }
      for (const k of ["maxEntriesPerTable", "maxTables"] as const) {
        const v = opts[k];
        if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 1024 * 1024)) {
          throw new InvalidArgumentError(k, v, "an integer from 1 to 1048576");
        }
      }
      if (opts.root !== undefined && !this.direct.roots.includes(opts.root)) {
        throw new InvalidArgumentError(
          "root",
          opts.root,
          `one of the roots [${this.direct.roots.join(", ")}]`,
        );
      }
      if (opts.label !== undefined && (typeof opts.label !== "string" || opts.label.length > 200)) {
        throw new InvalidArgumentError("label", opts.label, "a string of at most 200 characters");
      }
    }
    return new TdpTreeView(this, opts);
  }

  /** Walk `gpa` through the TDP tables of the first valid root, with a per-level trace. */
  walkGpa(gpa: number): TdpWalk {
    if (typeof gpa !== "number" || !Number.isSafeInteger(gpa) || gpa < 0) {
      throw new InvalidArgumentError("gpa", gpa, "a non-negative integer guest-physical address");
    }
    return new TdpWalk(this, gpa);
  }

  /** Every live shadow page with its decoded role. */
  shadowPages(): ShadowPageList {
    return new ShadowPageList(this);
  }

  /** Bytes of simulator memory held by the MMU (spt store, columns, slot metadata). */
  bytes(): number {
    let b = this.store.bytes() + this.vcpuRoot.byteLength;
    for (const s of this.slots.list()) if (s.arch instanceof SlotArch) b += s.arch.bytes();
    return b;
  }
}
