/**
 * The CPU's EPT walk (Intel TDP, A/D bits enabled): a guest-physical address is translated through
 * the tables KVM built, and the CPU sets the EPT A bit (and D for writes) in the leaf it used. A
 * walk that finds no leaf allowing the access is an EPT violation — or, for an MMIO spte, an EPT
 * misconfiguration — which exits to KVM (vmx.c `handle_ept_violation`: an error code from the
 * exit qualification, then `kvm_mmu_page_fault`); the CPU then retries the access.
 *
 * A per-vCPU walk cache remembers, for each 2 MiB region, the table holding the last leaf found
 * there and re-reads that leaf on every use; it is dropped whenever a table is unlinked or freed
 * (`MmuPageStore.topologyEpoch`) or the vCPU loads another root. For the data access at the end
 * of a guest walk a second one keeps one bit per gfn: "the leaf allows every access and has A
 * and D already", so the CPU would use it and write nothing; it is dropped whenever any spte
 * changes (`MmuPageStore.spteEpoch`), the root changes or the memslots do. A hit in either is
 * what the full walk would find: accelerators of the simulator, not a model of the CPU's TLB.
 */
import {
  PFERR_FETCH_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from "../arch/constants";
import { MmuBugError } from "../errors";
import type { KvmVcpuCommon } from "../kvm/kvm_main";
import type { MemSlots } from "../kvm/memslot";
import type { VmMmu } from "../mmu/mmu";
import {
  growBitmap,
  type KvmMmu,
  LastSpte,
  type MmuPageStore,
  RET_PF_EMULATE,
  walkToLastSpte,
} from "../mmu/mmu_internal";
import {
  GFN_SPAN,
  isAccessAllowed,
  isMmioSpte,
  SPTE_A,
  SPTE_D,
  SPTE_HI_HOST_WRITABLE,
  SPTE_MMU_PRESENT,
  SPTE_PS,
  SPTE_R,
  SPTE_W,
  SPTE_X,
  sptePfn,
} from "../mmu/spte";

/** A translation that ends in userspace: no memslot, or a write to a read-only one. */
export const STAGE2_MMIO = -1;

/** Tries before a fault that keeps coming back is declared a bug (KVM would loop forever). */
const MAX_RETRIES = 8;
/** Entries of the walk cache (direct-mapped by the low bits of gfn / 512). */
const WALK_CACHE_SIZE = 1024;
const WALK_CACHE_MASK = WALK_CACHE_SIZE - 1;
const NO_TABLE = new Uint32Array(0);
/** gfns the complete-leaf bits cover: 2^26 (256 GiB of guest-physical space, 8 MiB of bits). */
const COMPLETE_MAX_GFN = 2 ** 26;
/** R|W|X: a path of non-leaf entries that restricts no access. */
const FULL_RIGHTS = SPTE_R | SPTE_W | SPTE_X;
/** A leaf with all of these allows any access and takes no A/D write. */
const COMPLETE_SPTE = SPTE_MMU_PRESENT | SPTE_R | SPTE_W | SPTE_X | SPTE_A | SPTE_D;
/** Words of set bits remembered for a cheap reset (beyond: clear them all). */
const COMPLETE_LOG = 4096;

/** One vCPU's EPT walker. */
export class EptWalker {
  /** After {@link translate}: whether the frame may be written. */
  writable = false;
  /**
   * VM exits this walker took (EPT violations and misconfigurations), and the error code
   * `handle_ept_violation` derived for the latest. Counted on the exit path only, so that a view
   * (`vcpu.walk2d()`) can tell which step of an access exited, without a hook on the access.
   */
  exits = 0;
  exitError = 0;
  private readonly vm: VmMmu;
  private readonly mmu: KvmMmu;
  private readonly vcpu: KvmVcpuCommon;
  private readonly store: MmuPageStore;
  private readonly slots: MemSlots;
  private readonly rootLevel: number;
  private readonly last = new LastSpte();
  // Walk cache: per 2 MiB region, the table holding the last leaf found (a PT: the entry is at
  // gfn's index; a PD/PDPT: the huge leaf's index), for the root `cacheRoot`.
  private readonly wcRegion: Float64Array = new Float64Array(WALK_CACHE_SIZE).fill(-1);
  private readonly wcSpt: Uint32Array[] = new Array<Uint32Array>(WALK_CACHE_SIZE).fill(NO_TABLE);
  private readonly wcIdx: Int16Array = new Int16Array(WALK_CACHE_SIZE);
  private readonly wcLevel: Uint8Array = new Uint8Array(WALK_CACHE_SIZE);
  private cacheTopology = -1;
  /** All bits, or all but A/D without EPT A/D bits (features.eptAccessDirty). */
  private readonly adKeep: number = -1;
  /** {@link COMPLETE_SPTE}, without A/D when the CPU keeps none. */
  private readonly completeMask: number = COMPLETE_SPTE;
  private cacheRoot = -1;
  // Complete-leaf bits: bit gfn set when gfn's leaf has every bit of COMPLETE_SPTE and maps the
  // frame its memslot gives (pfn = hva >> 12), for the spte epoch / root / memslot generation
  // below, which are those of the first bit set since the last reset (no bit set: no check).
  private complete: Uint32Array = new Uint32Array(0);
  private readonly completeLog: Int32Array = new Int32Array(COMPLETE_LOG);
  private nCompleteLog = 0;
  private completeEpoch = -1;
  private completeRoot = -1;
  private completeGeneration = -1;

  constructor(vm: VmMmu, mmu: KvmMmu, vcpu: KvmVcpuCommon) {
    this.vm = vm;
    this.mmu = mmu;
    this.vcpu = vcpu;
    this.store = vm.store;
    this.slots = vm.kvm.memslots;
    this.rootLevel = vm.rootLevel;
    this.pml = vm.kvm.features.pml;
    if (!vm.kvm.features.eptAccessDirty) {
      this.adKeep = ~(SPTE_A | SPTE_D);
      this.completeMask = COMPLETE_SPTE & ~(SPTE_A | SPTE_D);
    }
  }

  /**
   * The EPT walk of `gfn` for `pfec` (W, U, F): returns the host frame (pfn = hva >> 12 in this
   * host model) or {@link STAGE2_MMIO}, and sets {@link writable}. `final` is false for the guest
   * walker's own table accesses; in a read-only slot those read the table and set no A/D.
   */
  translate(gfn: number, pfec: number, final: boolean): number {
    const write = (pfec & PFERR_WRITE_MASK) !== 0;
    const fetch = (pfec & PFERR_FETCH_MASK) !== 0;
    const store = this.store;
    if (final && this.nCompleteLog !== 0) {
      if (
        store.spteEpoch !== this.completeEpoch ||
        this.mmu.root !== this.completeRoot ||
        this.slots.generation !== this.completeGeneration
      )
        this.resetComplete();
      else if (
        gfn < this.complete.length * 32 &&
        ((this.complete[gfn >>> 5]! >>> (gfn & 31)) & 1) !== 0
      ) {
        const slot = this.slots.gfnToSlot(gfn)!;
        this.writable = true;
        return slot.baseHvfn + (gfn - slot.baseGfn);
      }
    }
    if (store.topologyEpoch !== this.cacheTopology || this.mmu.root !== this.cacheRoot) {
      this.wcRegion.fill(-1);
      this.cacheTopology = store.topologyEpoch;
      this.cacheRoot = this.mmu.root;
    }
    const region = Math.floor(gfn / 512);
    const c = region & WALK_CACHE_MASK;
    // Where the last entry of gfn's walk is known to be without walking (a walk-cache hit, or
    // the walk before a fault): table, index, level. Valid while the topology and root stay
    // and the entry has not become a table (a split links one in place of a huge leaf).
    let hSpt: Uint32Array | null = null;
    let hIdx = 0;
    let hLevel = 0;
    if (this.wcRegion[c] === region) {
      const spt = this.wcSpt[c]!;
      const level = this.wcLevel[c]!;
      const i = (level === 1 ? gfn - region * 512 : this.wcIdx[c]!) * 2;
      const lo = spt[i]!;
      if ((lo & SPTE_MMU_PRESENT) !== 0 && (level === 1 || (lo & SPTE_PS) !== 0)) {
        // The common case first: the leaf allows the access and already has A (and D).
        const need =
          (write ? SPTE_W | SPTE_A | SPTE_D : fetch ? SPTE_X | SPTE_A : SPTE_R | SPTE_A) &
          this.adKeep;
        if ((lo & need) === need) {
          this.writable = (lo & SPTE_W) !== 0;
          let pfn = sptePfn(lo, spt[i + 1]!);
          if (level !== 1) {
            const span = GFN_SPAN[level]!;
            pfn += gfn - Math.floor(gfn / span) * span;
          }
          if (final && (lo & this.completeMask) === this.completeMask) this.markComplete(gfn, pfn);
          return pfn;
        }
        const pfn = this.leafAccess(spt, i, lo, spt[i + 1]!, level, gfn, write, fetch, final);
        if (pfn >= 0) return pfn;
        // Refused: an EPT violation at this leaf, no walk needed to know it.
        hSpt = spt;
        hIdx = i >>> 1;
        hLevel = level;
      } else if ((lo & SPTE_MMU_PRESENT) === 0) {
        // Not present (a page of a known table not mapped yet, or a zapped leaf): the walk
        // would stop at this entry too.
        hSpt = spt;
        hIdx = i >>> 1;
        hLevel = level;
      }
    }
    const last = this.last;
    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      let spt: Uint32Array;
      let idx: number;
      let level: number;
      let rights: number;
      if (
        hSpt !== null &&
        store.topologyEpoch === this.cacheTopology &&
        this.mmu.root === this.cacheRoot &&
        !(
          (hSpt[hIdx * 2]! & SPTE_MMU_PRESENT) !== 0 &&
          hLevel !== 1 &&
          (hSpt[hIdx * 2]! & SPTE_PS) === 0
        )
      ) {
        spt = hSpt;
        idx = hIdx;
        level = hLevel;
        rights = FULL_RIGHTS;
      } else {
        walkToLastSpte(store, this.mmu.root, this.rootLevel, gfn, last);
        spt = store.spt[last.sp]!;
        idx = last.idx;
        level = last.level;
        rights = last.pathRights;
        // Only a path that restricts nothing may stand in for the walk on the next try.
        if (rights === FULL_RIGHTS && store.topologyEpoch === this.cacheTopology) {
          hSpt = spt;
          hIdx = idx;
          hLevel = level;
        } else hSpt = null;
      }
      const lo = spt[idx * 2]!;
      // EPT rights combine across levels: a non-leaf entry without W (seed 2017's
      // write-protect-all) refuses writes below it.
      const pathOk = write ? (rights & SPTE_W) !== 0 : true;
      if ((lo & SPTE_MMU_PRESENT) !== 0 && pathOk) {
        const pfn = this.leafAccess(
          spt,
          idx * 2,
          lo,
          spt[idx * 2 + 1]!,
          level,
          gfn,
          write,
          fetch,
          final,
        );
        if (pfn >= 0) {
          // A complete leaf found without a fault in this call gets its bit too (as on a
          // walk-cache hit): a working set wider than the walk cache (many 2 MiB regions)
          // would otherwise take a full EPT walk on every access. After a fault, no bit: the
          // next fault would drop it.
          // Both caches hold leaves only, so only a path that restricts nothing may be cached
          // (seed 2017's write-protect-all clears W above intact leaves: a read must not let a
          // later write through).
          const fullPath = rights === FULL_RIGHTS;
          if (
            fullPath &&
            final &&
            tries === 0 &&
            (spt[idx * 2]! & this.completeMask) === this.completeMask
          )
            this.markComplete(gfn, pfn);
          if (
            fullPath &&
            store.topologyEpoch === this.cacheTopology &&
            this.mmu.root === this.cacheRoot
          ) {
            this.wcRegion[c] = region;
            this.wcSpt[c] = spt;
            this.wcIdx[c] = idx;
            this.wcLevel[c] = level;
          }
          return pfn;
        }
      }
      // The walker's table accesses are writes for EPT A/D; in a read-only slot they read the
      // table and set no A/D, as the memslot-only machine does.
      const w = write && !(!final && this.slots.gfnToSlot(gfn)?.readonly === true);
      // handle_ept_violation's error code: reads report USER; PRESENT if the entry allowed any
      // access; an MMIO spte is a misconfiguration (RSVD). A guest paging-structure access that
      // counts as a write (EPT A/D on) sets both the read and the write bit of the exit
      // qualification, so it reports USER | WRITE.
      let err = w
        ? PFERR_WRITE_MASK | (final ? 0 : PFERR_USER_MASK)
        : fetch
          ? PFERR_FETCH_MASK
          : PFERR_USER_MASK;
      if (isMmioSpte(lo)) err |= PFERR_RSVD_MASK;
      else if ((lo & (SPTE_R | SPTE_W | SPTE_X)) !== 0 && (lo & SPTE_MMU_PRESENT) !== 0)
        err |= PFERR_PRESENT_MASK;
      if (this.exit(gfn, err) === RET_PF_EMULATE) {
        this.writable = false;
        return STAGE2_MMIO;
      }
    }
    throw new MmuBugError(
      "kvm_mmu_page_fault",
      `gpa 0x${(gfn * 4096).toString(16)} still faults after ${MAX_RETRIES} retries`,
    );
  }

  /** Forget every complete-leaf bit (an spte, the root or the memslots changed). */
  private resetComplete(): void {
    const bits = this.complete;
    if (this.nCompleteLog > COMPLETE_LOG) bits.fill(0);
    else for (let i = 0; i < this.nCompleteLog; i++) bits[this.completeLog[i]!] = 0;
    this.nCompleteLog = 0;
  }

  /**
   * Remember that gfn's leaf is complete (see {@link COMPLETE_SPTE}), if it maps the frame its
   * writable memslot gives, so that a hit can take the frame from the memslot.
   */
  private markComplete(gfn: number, pfn: number): void {
    if (gfn >= COMPLETE_MAX_GFN) return;
    const slot = this.slots.gfnToSlot(gfn);
    if (slot === undefined || slot.readonly || slot.baseHvfn + (gfn - slot.baseGfn) !== pfn) return;
    if (this.nCompleteLog === 0) {
      // The first bit since the last reset: the bits are valid for the state now.
      this.completeEpoch = this.store.spteEpoch;
      this.completeRoot = this.mmu.root;
      this.completeGeneration = this.slots.generation;
    }
    const w = gfn >>> 5;
    if (w >= this.complete.length)
      this.complete = growBitmap(this.complete, w, 1024, COMPLETE_MAX_GFN / 32);
    if (this.complete[w] === 0) {
      if (this.nCompleteLog < COMPLETE_LOG) this.completeLog[this.nCompleteLog] = w;
      this.nCompleteLog++;
    }
    this.complete[w] = (this.complete[w]! | (1 << (gfn & 31))) >>> 0;
  }

  /** `PML_LOG_NR_ENTRIES`: the buffer's entries. */
  static readonly PML_ENTRIES = 512;
  /** features.pml. */
  private readonly pml: boolean;
  /** The vCPU's PML buffer (gfns) and how many it holds. */
  private readonly pmlBuf = new Float64Array(EptWalker.PML_ENTRIES);
  private pmlCount = 0;

  /** Log a gfn; a full buffer is a PML-full VM exit, which flushes it. */
  private pmlLog(gfn: number): void {
    this.pmlBuf[this.pmlCount++] = gfn;
    if (this.pmlCount === EptWalker.PML_ENTRIES) {
      this.vcpu.stat.pml_full_exits++;
      this.flushPml();
    }
  }

  /**
   * `vmx_flush_pml_buffer` (on every VM exit, and when dirty logs are read): each logged gfn is
   * marked dirty (`kvm_vcpu_mark_page_dirty`: the bitmap, or this vCPU's dirty ring).
   */
  flushPml(): void {
    if (this.pmlCount === 0) return;
    const kvm = this.vm.kvm;
    const prev = kvm.running;
    kvm.running = this.vcpu;
    try {
      for (let k = 0; k < this.pmlCount; k++) kvm.markPageDirty(this.pmlBuf[k]!);
    } finally {
      kvm.running = prev;
    }
    this.pmlCount = 0;
  }

  /** The VM exit: KVM handles the fault for this vCPU, then the vCPU re-enters the guest. */
  private exit(gfn: number, err: number): number {
    const kvm = this.vm.kvm;
    this.exits++;
    this.exitError = err;
    this.flushPml();
    const prev = kvm.running;
    kvm.running = this.vcpu;
    try {
      const gpa = gfn * 4096;
      const r = this.vm.pageFault(this.mmu, Math.floor(gpa / 4294967296), gpa >>> 0, err);
      this.vm.enterGuest(this.vcpu, this.mmu);
      return r;
    } finally {
      kvm.running = prev;
    }
  }

  /**
   * The CPU's use of a present leaf (entry `i` of `spt`): -1 if the access is not allowed (an EPT
   * violation), else the 4 KiB frame, after setting EPT A (and D for writes). Sets
   * {@link writable}.
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
    // Without EPT A/D bits (EPTP bit 6 clear) the CPU sets neither.
    const ad = (write ? SPTE_A | SPTE_D : SPTE_A) & this.adKeep;
    if ((lo & ad) !== ad) {
      // PML: the CPU logs the gpa whose D it sets while KVM has PML on (a slot logs).
      if (write && (lo & SPTE_D) === 0 && this.pml && this.slots.nrMemslotsDirtyLogging > 0)
        this.pmlLog(gfn);
      lo = (lo | ad) >>> 0;
      spt[i] = lo;
    }
    this.writable = (lo & SPTE_W) !== 0;
    if (level === 1) return sptePfn(lo, hi);
    const span = GFN_SPAN[level]!;
    return sptePfn(lo, hi) + (gfn - Math.floor(gfn / span) * span);
  }
}
