/**
 * The generic part of `struct kvm` and the VM ioctls of virt/kvm/kvm_main.c: memslots
 * (`kvm_set_memory_region`), the dirty-log ioctls (`kvm_get_dirty_log_protect`,
 * `kvm_clear_dirty_log_protect`), `KVM_ENABLE_CAP`, `kvm_flush_remote_tlbs` and its accounting,
 * `mark_page_dirty_in_slot`, vCPU requests, and host accesses to guest memory
 * (`kvm_write_guest` / `kvm_read_guest`).
 *
 * Architecture code plugs in through the `arch*` methods, as KVM's `kvm_arch_*` hooks do; the
 * x86 VM (x86/x86.ts) implements them with its MMU.
 */
import { splitU64, toUnsigned, type U64Parts } from "../arch/addr";
import { KVM_MEM_LOG_DIRTY_PAGES, PAGE_SIZE } from "../arch/constants";
import type { Features } from "../era/features";
import { InvalidArgumentError, refuseFrozen } from "../errors";
import {
  KVM_DIRTY_GFN_SIZE,
  KVM_DIRTY_RING_MAX_ENTRIES,
  KVM_DIRTY_RING_RSVD_ENTRIES,
  KvmDirtyRing,
} from "./dirty_ring";
import { HEAP_TYPED_ARRAY_BYTES, MC, type MemCg } from "./memcg";
import { GuestMemory } from "./memory";
import {
  dirtyBitmapWords,
  type MemSlot,
  MemSlots,
  type MemslotChange,
  type UserMemoryRegion,
} from "./memslot";
import { KvmStats, sumVcpuStats, type VcpuStat } from "./stats";

/** `kvm_age_gfn` result bit: a page in the range was accessed (young). */
export const AGE_YOUNG = 1;
/** Aging result bit: leaves without A/D bits were zapped to emulate A, so a flush is due. */
export const AGE_ZAPPED = 2;

/** `KVM_REQ_TLB_FLUSH`: flush this vCPU's TLB before it enters the guest again. */
export const KVM_REQ_TLB_FLUSH = 1 << 0;
/** `KVM_REQ_MMU_FREE_OBSOLETE_ROOTS`: drop a root that was invalidated, load a new one. */
export const KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = 1 << 1;
/** `KVM_REQ_MMU_SYNC`: sync the unsync shadow pages under the root (a guest TLB flush). */
export const KVM_REQ_MMU_SYNC = 1 << 2;
/** `KVM_REQ_DIRTY_RING_SOFT_FULL`: the vCPU's dirty ring is soft-full; it exits before entry. */
export const KVM_REQ_DIRTY_RING_SOFT_FULL = 1 << 3;

/** `vcpu->mode`: not running guest code (never kicked). */
export const OUTSIDE_GUEST_MODE = 0;
/** `vcpu->mode`: running guest code; a request for it needs a kick (an IPI). */
export const IN_GUEST_MODE = 1;

/** `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`, bit 0 of KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's argument. */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1;
/** `KVM_DIRTY_LOG_INITIALLY_SET`, bit 1. */
export const KVM_DIRTY_LOG_INITIALLY_SET = 2;

/** What the generic layer sees of a vCPU (`struct kvm_vcpu`'s generic fields). */
export interface KvmVcpuCommon {
  readonly id: number;
  /** `vcpu->mode`: {@link IN_GUEST_MODE} or {@link OUTSIDE_GUEST_MODE}. */
  mode: number;
  /** `vcpu->requests`: KVM_REQ_* bits pending until the next guest entry. */
  requests: number;
  /** `vcpu->stat`. */
  readonly stat: VcpuStat;
  /** `vcpu->dirty_ring` (with KVM_CAP_DIRTY_LOG_RING), else null. */
  dirtyRing: KvmDirtyRing | null;
}

/** Result of a host write into guest memory: `mmio` when no writable memslot backs the gpa. */
export interface GuestStoreResult {
  readonly mmio: boolean;
}
const STORED: GuestStoreResult = Object.freeze({ mmio: false });
const NOT_STORED: GuestStoreResult = Object.freeze({ mmio: true });

const ONE_GIB = 2 ** 30;
/** First host address handed out for slots created without `userspaceAddr` (1 TiB). */
const HVA_POOL_START = 2 ** 40;

/** The generic VM. Architecture code extends it. */
export abstract class Kvm {
  /** Guest MAXPHYADDR. */
  readonly maxPhysAddrBits: number;
  /** Every switch, resolved and frozen (guest CPUID and KVM behaviour, era/features.ts). */
  readonly features: Features;
  /** Memslots (address space 0). */
  readonly memslots: MemSlots;
  /**
   * The VM's memory account: what it allocates, by category, against its memory budget (see
   * kvm/memcg.ts). Every operation whose allocation grows with a user-given size checks it first.
   */
  readonly memcg: MemCg;
  /** Host memory backing the slots, keyed by hva frame. */
  readonly memory: GuestMemory;
  /**
   * `kvm->stat` and the MMU's gauges, as the MMU keeps them (the vCPU sums are filled in when
   * {@link stats} is read).
   */
  readonly vmStat = new KvmStats();
  /** `kvm->vcpus`. */
  readonly vcpus: KvmVcpuCommon[] = [];
  /**
   * The vCPU whose exit is being handled — the "current CPU" of `kvm_make_all_cpus_request`,
   * which never kicks it — or null for ioctls and host events.
   */
  running: KvmVcpuCommon | null = null;
  /** `kvm->manual_dirty_log_protect`: the argument of KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2. */
  manualDirtyLogProtect = 0;
  /** `kvm->dirty_ring_size` in entries (0: no dirty ring; the bitmaps are used). */
  dirtyRingEntries = 0;
  /** Entries reserved at the end of each ring (64, +512 with PML). */
  protected dirtyRingReserved = KVM_DIRTY_RING_RSVD_ENTRIES;
  /**
   * The simulator's own counters of host accesses to guest memory and dirty marks (no KVM
   * counterpart; `stat` is KVM's name for the VM statistics, see {@link stat}).
   */
  readonly hostAccessStat = { guestStores: 0, mmioExits: 0, dirtyPagesMarked: 0 };
  private nextHva = HVA_POOL_START;
  private readonly scratch: U64Parts = { hi: 0, lo: 0 };

  constructor(maxPhysAddrBits: number, features: Features, memcg: MemCg) {
    this.memcg = memcg;
    this.memory = new GuestMemory(memcg);
    this.maxPhysAddrBits = maxPhysAddrBits;
    this.features = features;
    this.memslots = new MemSlots(maxPhysAddrBits);
    if (features.manualDirtyLogProtect)
      this.manualDirtyLogProtect |= KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
    if (features.dirtyLogInitiallySet) this.manualDirtyLogProtect |= KVM_DIRTY_LOG_INITIALLY_SET;
  }

  // ---- architecture hooks (kvm_arch_*) ------------------------------------------------------

  /** `kvm_arch_vcpu_create`: a new vCPU object. */
  protected abstract archCreateVcpu(id: number): KvmVcpuCommon;
  /** `kvm_arch_flush_shadow_memslot`: zap what maps the slot (DELETE / MOVE), slot still visible. */
  protected abstract archFlushShadowMemslot(slot: MemSlot): void;
  /** `kvm_arch_prepare_memory_region`: may throw to refuse; allocate the new slot's metadata. */
  protected abstract archPrepareMemoryRegion(
    change: MemslotChange,
    oldSlot: MemSlot | undefined,
    newSlot: MemSlot | undefined,
  ): void;
  /** `kvm_arch_memslots_updated`: the generation changed (MMIO sptes go stale). */
  protected abstract archMemslotsUpdated(generation: number): void;
  /** `kvm_arch_commit_memory_region`: the change is visible. */
  protected abstract archCommitMemoryRegion(
    change: MemslotChange,
    oldSlot: MemSlot | undefined,
    newSlot: MemSlot | undefined,
  ): void;
  /**
   * `kvm_arch_mmu_enable_log_dirty_pt_masked`: re-protect the 4K pages `base + bit` for the set
   * bits of the 64-bit mask (`maskLo`, `maskHi`) so that their next write is logged.
   */
  protected abstract archMmuEnableLogDirtyPtMasked(
    slot: MemSlot,
    base: number,
    maskLo: number,
    maskHi: number,
  ): void;
  /** `kvm_unmap_gfn_range` for the MMU notifier; returns whether a flush is needed. */
  protected abstract archUnmapGfnRange(slot: MemSlot, start: number, end: number): boolean;
  /**
   * `kvm_age_gfn` (`clear`) / `kvm_test_age_gfn` for the MMU notifier's aging calls: returns
   * {@link AGE_YOUNG} | {@link AGE_ZAPPED}.
   */
  protected abstract archAgeGfnRange(
    slot: MemSlot,
    start: number,
    end: number,
    clear: boolean,
  ): number;

  /** `kvm_arch_sync_dirty_log`: bring logs buffered in the CPUs (PML) into the dirty log. */
  protected archSyncDirtyLog(): void {}

  /** Called with every counted remote flush (for the trace). */
  protected traceFlush(_reason: string): void {}

  /**
   * `kvm->stat`, the name KVM gives the VM's statistics (`struct kvm_vm_stat`): the same live
   * object as {@link stats}, for readers coming from the kernel source.
   */
  get stat(): KvmStats {
    return this.stats;
  }

  /**
   * KVM's statistics under their kernel names: ONE live object, safe to hold on to. VM stats and
   * the page-fault counters change as the VM runs; the other vCPU counters (`pf_guest`,
   * `tlb_flush`, the guest walker's) are summed over the vCPUs each time this getter runs.
   */
  get stats(): KvmStats {
    sumVcpuStats(
      this.vmStat,
      this.vcpus.map((v) => v.stat),
    );
    return this.vmStat;
  }

  // ---- vCPUs and requests --------------------------------------------------------------------

  /**
   * `KVM_CREATE_VCPU`. Throws `ResourceLimitError` (no vCPU made) when its dirty ring and PML
   * buffer would exceed the memory budget.
   */
  createVcpu(): KvmVcpuCommon {
    refuseFrozen(this, "vm");
    // kvm_vm_ioctl_create_vcpu → kvm_dirty_ring_alloc, which fails with -ENOMEM before the vCPU
    // exists: checked first.
    const ring = KvmDirtyRing.bytes(this.dirtyRingEntries);
    const pml = this.archVcpuPmlBytes();
    if (ring + pml > 0)
      this.memcg.check(
        `KVM_CREATE_VCPU ${this.vcpus.length} (dirty ring of ${this.dirtyRingEntries} entries, PML buffer)`,
        ring + pml,
        (ring > 0 ? 3 : 0) * HEAP_TYPED_ARRAY_BYTES,
      );
    const v = this.archCreateVcpu(this.vcpus.length);
    if (this.dirtyRingEntries !== 0) {
      v.dirtyRing = new KvmDirtyRing(this.dirtyRingEntries, this.dirtyRingReserved);
      this.memcg.charge(MC.dirtyRings, ring, 3 * HEAP_TYPED_ARRAY_BYTES);
    }
    if (pml > 0) this.memcg.charge(MC.pml, pml);
    this.vcpus.push(v);
    return v;
  }

  /** Bytes of a new vCPU's PML buffer (0 without PML). */
  protected archVcpuPmlBytes(): number {
    return 0;
  }

  /**
   * `kvm_make_all_cpus_request`: set `req` on every vCPU; returns whether one had to be kicked.
   * A kick (IPI) goes only to vCPUs in guest mode, never to the caller's CPU. The simulator's
   * model of guest mode: a vCPU enters it with its first access and stays in it (running guest
   * code) until `pause()`; the vCPU whose exit is being handled ({@link running}) is not in it.
   */
  makeAllCpusRequest(req: number): boolean {
    let kicked = false;
    for (const v of this.vcpus) {
      v.requests |= req;
      if (v !== this.running && v.mode === IN_GUEST_MODE) kicked = true;
    }
    return kicked;
  }

  /**
   * `kvm_flush_remote_tlbs`: `remote_tlb_flush_requests` counts every call; `remote_tlb_flush`
   * only calls that kicked a vCPU (see {@link makeAllCpusRequest}). Every vCPU gets
   * KVM_REQ_TLB_FLUSH and counts `tlb_flush` when it next enters the guest.
   */
  flushRemoteTlbs(reason: string): void {
    this.vmStat.remote_tlb_flush_requests++;
    if (this.makeAllCpusRequest(KVM_REQ_TLB_FLUSH)) this.vmStat.remote_tlb_flush++;
    this.traceFlush(reason);
  }

  // ---- memslots ------------------------------------------------------------------------------

  /** `kvm_memslots::generation` of address space 0 (see {@link MemSlots.generation}). */
  get memslotGeneration(): number {
    return this.memslots.generation;
  }

  /**
   * `KVM_SET_USER_MEMORY_REGION`: create, move, change flags of, or delete (memorySize 0) a slot.
   * Returns the kind of change. Throws {@link InvalidArgumentError} with KVM's errno and changes
   * nothing if KVM would refuse the request, and `ResourceLimitError` (changing nothing) when
   * what the change allocates — the dirty bitmap, the slot's metadata, the page tables of an
   * eager split when logging starts — would exceed the memory budget.
   */
  setUserMemoryRegion(region: UserMemoryRegion): MemslotChange {
    refuseFrozen(this, "vm");
    const u = this.memslots.prepare(region, (gpa, size) => this.pickHva(gpa, size));
    if (u.old === u.new) return u.change; // identical request: a no-op
    // kvm_prepare_memory_region allocates the dirty bitmap and kvm_arch_prepare_memory_region
    // the slot's metadata, either failing with -ENOMEM before anything changed: so the budget
    // is checked here, for both and for what the MMU does on commit (eager split).
    const newBitmap = this.newDirtyBitmapBytes(u.old, u.new);
    const arch = this.archMemoryRegionBytes(u.change, u.old, u.new);
    if (newBitmap + arch.bytes > 0)
      this.memcg.check(
        `KVM_SET_USER_MEMORY_REGION slot ${region.slot} (${u.change}: ${newBitmap > 0 ? "dirty bitmap, " : ""}${arch.what})`,
        newBitmap + arch.bytes,
        arch.heap + (newBitmap > 0 ? HEAP_TYPED_ARRAY_BYTES : 0),
      );
    // kvm_invalidate_memslot: DELETE and MOVE zap the old slot's mappings while it is visible.
    if (u.change === "delete" || u.change === "move") this.archFlushShadowMemslot(u.old!);
    this.archPrepareMemoryRegion(u.change, u.old, u.new);
    const oldBitmap = u.old?.dirtyBitmap ?? null;
    this.memslots.commit(u);
    // kvm_prepare_memory_region: a newly allocated bitmap starts all ones with INITIALLY_SET.
    const nw = u.new;
    if (nw?.dirtyBitmap && nw.dirtyBitmap !== oldBitmap) {
      this.memcg.charge(MC.dirtyBitmaps, nw.dirtyBitmap.byteLength, HEAP_TYPED_ARRAY_BYTES);
      if (this.dirtyLogInitiallySet) nw.markAllDirty();
    }
    if (oldBitmap !== null && nw?.dirtyBitmap !== oldBitmap)
      this.memcg.uncharge(MC.dirtyBitmaps, oldBitmap.byteLength, HEAP_TYPED_ARRAY_BYTES);
    if (u.change === "create" && region.userspaceAddr === undefined) this.reserveHva(u.new!);
    this.archMemslotsUpdated(this.memslots.generation);
    this.archCommitMemoryRegion(u.change, u.old, u.new);
    return u.change;
  }

  /** Bytes of the dirty bitmap a change allocates (`kvm_alloc_dirty_bitmap`), 0 if none. */
  private newDirtyBitmapBytes(old: MemSlot | undefined, nw: MemSlot | undefined): number {
    const log = KVM_MEM_LOG_DIRTY_PAGES;
    if (nw === undefined || (nw.flags & log) === 0 || !this.memslots.useDirtyBitmap) return 0;
    if (old !== undefined && (old.flags & log) !== 0) return 0; // carried over
    return dirtyBitmapWords(nw.npages) * 4;
  }

  /**
   * What a memslot change will allocate in the architecture's part (slot metadata, eager
   * split), estimated before anything changes: bytes (with the heap part) and a few words
   * naming it for the error message.
   */
  protected archMemoryRegionBytes(
    _change: MemslotChange,
    _old: MemSlot | undefined,
    _new: MemSlot | undefined,
  ): { bytes: number; heap: number; what: string } {
    return { bytes: 0, heap: 0, what: "" };
  }

  /**
   * What re-protecting the pages of a CLEAR may allocate (architecture: eager split), estimated
   * before anything changes; see {@link archMemoryRegionBytes}.
   */
  protected archClearDirtyLogBytes(
    _slot: MemSlot,
    _firstPage: number,
    _numPages: number,
    _bitmap: Uint32Array,
  ): { bytes: number; heap: number; what: string } {
    return { bytes: 0, heap: 0, what: "" };
  }

  /** Default host address: congruent to gpa modulo 1 GiB, in a fresh 1 GiB-aligned range. */
  private pickHva(gpa: number, size: number): number {
    const hva = this.nextHva + (gpa % ONE_GIB);
    if (hva + size > 2 ** 47) {
      throw new InvalidArgumentError(
        "memorySize",
        size,
        "a size that fits the remaining host address space (give userspaceAddr)",
      );
    }
    return hva;
  }

  private reserveHva(slot: MemSlot): void {
    const end = slot.userspaceAddr + slot.npages * PAGE_SIZE;
    this.nextHva = Math.ceil(end / ONE_GIB) * ONE_GIB + ONE_GIB;
  }

  // ---- dirty logging ---------------------------------------------------------------------------

  /** `mark_page_dirty_in_slot`: set the gfn's bit when the slot logs. */
  markPageDirtyInSlot(slot: MemSlot, gfn: number): void {
    const v = this.running;
    if (this.dirtyRingEntries !== 0) {
      // The ring of the vCPU that dirtied the page; with no vCPU running there is none to push
      // to (KVM warns and drops it).
      if (v === null || v.dirtyRing === null || (slot.flags & 1) === 0) return;
      v.dirtyRing.push(slot.id, gfn - slot.baseGfn);
      this.hostAccessStat.dirtyPagesMarked++;
      if (v.dirtyRing.softFull()) v.requests |= KVM_REQ_DIRTY_RING_SOFT_FULL;
      return;
    }
    if (slot.markDirty(gfn)) this.hostAccessStat.dirtyPagesMarked++;
  }

  /** `kvm_vcpu_mark_page_dirty` / `mark_page_dirty`: by gfn. */
  markPageDirty(gfn: number): void {
    const slot = this.memslots.gfnToSlot(gfn);
    if (slot !== undefined) this.markPageDirtyInSlot(slot, gfn);
  }

  /**
   * `KVM_ENABLE_CAP` for `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` (`kvm_vm_ioctl_enable_cap_generic`):
   * `args` = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE (1), optionally | KVM_DIRTY_LOG_INITIALLY_SET (2);
   * 0 turns manual protection off. Other bits, and INITIALLY_SET alone, are refused (-EINVAL).
   */
  enableCap(
    cap: "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2" | "KVM_CAP_DIRTY_LOG_RING",
    args: number,
  ): void {
    refuseFrozen(this, "vm");
    if (cap === "KVM_CAP_DIRTY_LOG_RING") {
      this.enableDirtyRing(args);
      return;
    }
    if (cap !== "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2") {
      throw new InvalidArgumentError(
        "cap",
        cap,
        '"KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2" | "KVM_CAP_DIRTY_LOG_RING"',
        "EINVAL",
      );
    }
    // kvm_vm_ioctl_enable_cap_generic: INITIALLY_SET is allowed only with MANUAL_PROTECT_ENABLE
    // (`allowed_options`), and `cap->args[0] & ~allowed_options` is tested on a u64 (-EINVAL);
    // a JS `&` would see only the low 32 bits of 2^53, so the range is checked as a number.
    const allowed =
      typeof args === "number" && (args & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0
        ? KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET
        : KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
    if (
      typeof args !== "number" ||
      !Number.isInteger(args) ||
      args < 0 ||
      args > allowed ||
      (args & ~allowed) !== 0
    ) {
      throw new InvalidArgumentError(
        "args",
        args,
        "0, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE (1), or 1 | KVM_DIRTY_LOG_INITIALLY_SET (3)",
        "EINVAL",
      );
    }
    this.manualDirtyLogProtect = args;
  }

  /**
   * `kvm_vm_ioctl_enable_dirty_log_ring`: `bytes` a power of two, at least a page and the
   * reserved entries, at most 65,536 entries (16 bytes each); once, and before any vCPU exists.
   * From then on the memslots keep no dirty bitmap (`kvm_use_dirty_bitmap`) and GET_DIRTY_LOG
   * is refused (-ENXIO).
   */
  private enableDirtyRing(bytes: number): void {
    const min = Math.max(4096, this.dirtyRingReserved * KVM_DIRTY_GFN_SIZE);
    if (
      typeof bytes !== "number" ||
      !Number.isInteger(bytes) ||
      bytes <= 0 ||
      (bytes & (bytes - 1)) !== 0 ||
      bytes < min
    )
      throw new InvalidArgumentError(
        "args",
        bytes,
        `a power of two of at least ${min} bytes (16 per entry)`,
        "EINVAL",
      );
    if (bytes > KVM_DIRTY_RING_MAX_ENTRIES * KVM_DIRTY_GFN_SIZE)
      throw new InvalidArgumentError(
        "args",
        bytes,
        `at most ${KVM_DIRTY_RING_MAX_ENTRIES * KVM_DIRTY_GFN_SIZE} bytes (65,536 entries)`,
        "E2BIG",
      );
    if (this.dirtyRingEntries !== 0 || this.vcpus.length > 0)
      throw new InvalidArgumentError(
        "KVM_CAP_DIRTY_LOG_RING",
        bytes,
        "enabled once, before the first vCPU is created",
        "EINVAL",
      );
    this.dirtyRingEntries = bytes / KVM_DIRTY_GFN_SIZE;
    this.memslots.useDirtyBitmap = false;
  }

  /**
   * `KVM_RESET_DIRTY_RINGS` (`kvm_vm_ioctl_reset_dirty_pages`): every vCPU's harvested entries
   * are reset and their pages re-protected (coalesced masks through
   * `kvm_arch_mmu_enable_log_dirty_pt_masked`); one remote flush if any was. Returns the entries
   * reset.
   */
  resetDirtyRings(): number {
    refuseFrozen(this, "vm");
    if (this.dirtyRingEntries === 0)
      throw new InvalidArgumentError(
        "KVM_RESET_DIRTY_RINGS",
        "no dirty ring",
        "a VM with KVM_CAP_DIRTY_LOG_RING enabled",
        "EINVAL",
      );
    let cleared = 0;
    for (const v of this.vcpus) {
      cleared += v.dirtyRing!.reset((slotId, offset, mask) => {
        // kvm_reset_dirty_gfn: a slot gone, or a mask past its end, is ignored.
        const slot = this.memslots.get(slotId);
        if (slot === undefined) return;
        let top = 63;
        while (top > 0 && ((mask >> BigInt(top)) & 1n) === 0n) top--;
        if (offset + top >= slot.npages) return;
        this.archMmuEnableLogDirtyPtMasked(
          slot,
          slot.baseGfn + offset,
          Number(mask & 0xffffffffn) >>> 0,
          Number(mask >> 32n) >>> 0,
        );
      });
    }
    if (cleared > 0) this.flushRemoteTlbs("reset_dirty_rings");
    return cleared;
  }

  /** `kvm_dirty_log_manual_protect_and_init_set`. */
  get dirtyLogInitiallySet(): boolean {
    return (this.manualDirtyLogProtect & KVM_DIRTY_LOG_INITIALLY_SET) !== 0;
  }

  /**
   * `KVM_GET_DIRTY_LOG` (`kvm_get_dirty_log_protect`). Without manual protect: for every non-zero
   * 64-bit word take and clear it into the snapshot buffer and re-protect those 4K gfns
   * (`kvm_arch_mmu_enable_log_dirty_pt_masked`); one remote flush if any word was non-zero. With
   * manual protect: a copy of the bitmap, nothing cleared or protected. Returns the bits (one per
   * page, 32 pages per element).
   */
  getDirtyLog(slotId: number): Uint32Array {
    refuseFrozen(this, "vm");
    if (this.dirtyRingEntries !== 0)
      throw new InvalidArgumentError(
        "KVM_GET_DIRTY_LOG",
        slotId,
        "a VM without the dirty ring (KVM_CAP_DIRTY_LOG_RING keeps no bitmaps)",
        "ENXIO",
      );
    const slot = this.loggedSlot(slotId);
    this.archSyncDirtyLog();
    const bm = slot.dirtyBitmap!;
    const words = bm.length / 2; // first half: the bitmap; second half: the snapshot buffer
    if (this.manualDirtyLogProtect !== 0) return bm.slice(0, words);
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
      this.archMmuEnableLogDirtyPtMasked(slot, slot.baseGfn + i * 32, lo, hi);
    }
    if (flush) this.flushRemoteTlbs("get_dirty_log");
    return snap.slice();
  }

  /**
   * `KVM_CLEAR_DIRTY_LOG` (`kvm_clear_dirty_log_protect`): `firstPage` a multiple of 64 up to the
   * slot's size, `numPages` a multiple of 64 unless the range ends at the slot's end (0 clears
   * nothing); `bitmap` holds one bit
   * per page from `firstPage` (32 per element). The bits that were really set are cleared and
   * their pages re-protected; one remote flush if any was. Returns the number of pages cleared.
   */
  clearDirtyLog(slotId: number, firstPage: number, numPages: number, bitmap: Uint32Array): number {
    refuseFrozen(this, "vm");
    const slot = this.loggedSlot(slotId);
    const int = (v: unknown): v is number =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
    // kvm_clear_dirty_log_protect: first_page > npages is refused; first_page == npages and
    // num_pages == 0 are accepted and clear nothing.
    if (!int(firstPage) || firstPage % 64 !== 0 || firstPage > slot.npages) {
      throw new InvalidArgumentError(
        "firstPage",
        firstPage,
        `a multiple of 64 up to the slot's ${slot.npages} pages`,
        "EINVAL",
      );
    }
    const left = slot.npages - firstPage;
    if (!int(numPages) || numPages > left || (numPages < left && numPages % 64 !== 0)) {
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
    // What re-protecting may allocate (an eager split with INITIALLY_SET), checked first.
    const alloc = this.archClearDirtyLogBytes(slot, firstPage, numPages, bitmap);
    if (alloc.bytes + alloc.heap > 0)
      this.memcg.check(
        `KVM_CLEAR_DIRTY_LOG slot ${slotId} (${alloc.what})`,
        alloc.bytes,
        alloc.heap,
      );
    this.archSyncDirtyLog();
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
      this.archMmuEnableLogDirtyPtMasked(
        slot,
        slot.baseGfn + firstPage + k * 64,
        mlo >>> 0,
        mhi >>> 0,
      );
    }
    if (flush) this.flushRemoteTlbs("clear_dirty_log");
    return cleared;
  }

  private loggedSlot(slotId: number): MemSlot {
    const slot = this.memslots.get(slotId);
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

  // ---- MMU notifier ----------------------------------------------------------------------------

  /**
   * MMU notifier on a host virtual range [hvaStart, hvaEnd)
   * (`kvm_mmu_notifier_invalidate_range_start` → `kvm_handle_hva_range`): every memslot whose
   * userspace range overlaps has the matching gfns unmapped; one remote flush for the whole event
   * if anything was zapped. Returns whether it flushed.
   */
  mmuNotifierInvalidateHva(hvaStart: number, hvaEnd: number): boolean {
    refuseFrozen(this, "vm");
    let flush = false;
    this.forEachHvaRange(hvaStart, hvaEnd, (slot, start, end) => {
      if (this.archUnmapGfnRange(slot, start, end)) flush = true;
    });
    if (flush) this.flushRemoteTlbs("mmu_notifier_invalidate");
    return flush;
  }

  /**
   * `kvm_mmu_notifier_clear_flush_young` on [hvaStart, hvaEnd): `kvm_age_gfn` on the gfns of every
   * overlapping memslot (A cleared on the accessed leaves); one remote flush if any was young, so
   * that the CPU sets A again on its next access. (Later kernels may elide this flush:
   * CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG.) Returns whether any page was young.
   */
  mmuNotifierClearFlushYoung(hvaStart: number, hvaEnd: number): boolean {
    refuseFrozen(this, "vm");
    const r = this.ageHva(hvaStart, hvaEnd, true);
    if (r !== 0) this.flushRemoteTlbs("mmu_notifier_clear_flush_young");
    return (r & AGE_YOUNG) !== 0;
  }

  /**
   * `kvm_mmu_notifier_clear_young`: as {@link mmuNotifierClearFlushYoung} without the flush (KVM:
   * "we never issue secondary TLB flushes from clear_young"). Where aging had to zap leaves
   * without A/D bits the simulator still flushes, so that no CPU keeps a translation its MMU no
   * longer has. Returns whether any page was young.
   */
  mmuNotifierClearYoung(hvaStart: number, hvaEnd: number): boolean {
    refuseFrozen(this, "vm");
    const r = this.ageHva(hvaStart, hvaEnd, true);
    if ((r & AGE_ZAPPED) !== 0) this.flushRemoteTlbs("mmu_notifier_clear_young");
    return (r & AGE_YOUNG) !== 0;
  }

  /**
   * `kvm_mmu_notifier_test_young` (`kvm_test_age_gfn`): whether any page of [hvaStart, hvaEnd) was
   * accessed since it was last aged; changes no spte (only the walk's work counters).
   */
  mmuNotifierTestYoung(hvaStart: number, hvaEnd: number): boolean {
    refuseFrozen(this, "vm");
    return (this.ageHva(hvaStart, hvaEnd, false) & AGE_YOUNG) !== 0;
  }

  private ageHva(hvaStart: number, hvaEnd: number, clear: boolean): number {
    let r = 0;
    this.forEachHvaRange(hvaStart, hvaEnd, (slot, start, end) => {
      r |= this.archAgeGfnRange(slot, start, end, clear);
    });
    return r;
  }

  /**
   * `kvm_handle_hva_range`: validate [hvaStart, hvaEnd), then call `fn` with the gfn range of every
   * memslot whose userspace range overlaps it.
   */
  private forEachHvaRange(
    hvaStart: number,
    hvaEnd: number,
    fn: (slot: MemSlot, start: number, end: number) => void,
  ): void {
    const ok = (v: unknown): v is number =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= 2 ** 47;
    if (!ok(hvaStart))
      throw new InvalidArgumentError("hvaStart", hvaStart, "a host virtual address in [0, 2^47)");
    if (!ok(hvaEnd) || hvaEnd <= hvaStart)
      throw new InvalidArgumentError("hvaEnd", hvaEnd, "an exclusive end in (hvaStart, 2^47]");
    for (const slot of this.memslots.list()) {
      const lo = Math.max(hvaStart, slot.userspaceAddr);
      const hi = Math.min(hvaEnd, slot.userspaceAddr + slot.npages * PAGE_SIZE);
      if (lo >= hi) continue;
      const start = slot.baseGfn + Math.floor((lo - slot.userspaceAddr) / PAGE_SIZE);
      const end = slot.baseGfn + Math.ceil((hi - slot.userspaceAddr) / PAGE_SIZE);
      fn(slot, start, end);
    }
  }

  // ---- host accesses to guest memory -------------------------------------------------------------

  /** Parse a gpa: below 2^MAXPHYADDR and aligned. */
  private gpaArg(name: string, gpa: unknown, align: number): number {
    const n = toUnsigned(
      name,
      gpa,
      this.maxPhysAddrBits,
      `a guest-physical address below 2^${this.maxPhysAddrBits} (MAXPHYADDR)`,
    );
    if (n % align !== 0)
      throw new InvalidArgumentError(name, gpa, `a ${align}-byte aligned address`);
    return n;
  }

  /**
   * `kvm_write_guest` of 8 bytes at `gpa` (8-byte aligned): the host writes guest memory through
   * the slot's host mapping. No vCPU is involved: no EPT fault, no root, no pf_* counted. The
   * page is marked dirty when its slot logs (`mark_page_dirty_in_slot`). Returns `{ mmio: true }`
   * and stores nothing when no writable memslot backs the address (KVM: -EFAULT).
   */
  guestWrite64(gpa: number | bigint, value: number | bigint): GuestStoreResult {
    refuseFrozen(this, "vm");
    const g = this.gpaArg("gpa", gpa, 8);
    const v = splitU64("value", value, this.scratch);
    return this.writeGuest(g, v.hi, v.lo, 8);
  }

  /** `kvm_write_guest` of 4 bytes (4-byte aligned); see {@link guestWrite64}. */
  guestWrite32(gpa: number | bigint, value: number | bigint): GuestStoreResult {
    refuseFrozen(this, "vm");
    const g = this.gpaArg("gpa", gpa, 4);
    const v = toUnsigned("value", value, 32);
    return this.writeGuest(g, 0, v, 4);
  }

  /** @internal The write of {@link guestWrite64}, already parsed (the page-table builder's path). */
  writeGuest(gpa: number, hi: number, lo: number, bytes: 4 | 8): GuestStoreResult {
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const slot = this.memslots.gfnToSlot(gfn);
    if (slot === undefined || slot.readonly) {
      this.hostAccessStat.mmioExits++;
      return NOT_STORED;
    }
    const hvfn = slot.hvfn(gfn);
    const off = gpa % PAGE_SIZE;
    this.memory.write32(hvfn, off, lo >>> 0);
    if (bytes === 8) this.memory.write32(hvfn, off + 4, hi >>> 0);
    this.hostAccessStat.guestStores++;
    this.markPageDirtyInSlot(slot, gfn);
    return STORED;
  }

  /**
   * Read 8 bytes of guest memory at `gpa` (8-byte aligned) without side effects (no faults, no
   * A/D, no dirty marks). Throws if no memslot covers `gpa`.
   */
  readPhys64(gpa: number | bigint): bigint {
    const g = this.gpaArg("gpa", gpa, 8);
    const hvfn = this.hvfnOf("gpa", gpa, g);
    const off = g % PAGE_SIZE;
    return (
      (BigInt(this.memory.read32(hvfn, off + 4)) << 32n) | BigInt(this.memory.read32(hvfn, off))
    );
  }

  /** Read 4 bytes (4-byte aligned) without side effects. */
  readPhys32(gpa: number | bigint): number {
    const g = this.gpaArg("gpa", gpa, 4);
    return this.memory.read32(this.hvfnOf("gpa", gpa, g), g % PAGE_SIZE);
  }

  private hvfnOf(name: string, raw: unknown, g: number): number {
    const gfn = Math.floor(g / PAGE_SIZE);
    const slot = this.memslots.gfnToSlot(gfn);
    if (slot === undefined)
      throw new InvalidArgumentError(name, raw, "an address inside a memslot");
    return slot.hvfn(gfn);
  }
}
