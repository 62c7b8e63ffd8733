/**
 * The simulated CPU's address translation for one vCPU. With EPT (and on the bare machine,
 * `mmu: "none"`) the CPU walks the guest's own page tables (the walk of paging_tmpl.ts, over a
 * {@link GuestTables} cache) and takes every guest-physical address — each table the walk reads
 * and the final data address — through stage 2: the EPT walk (ept.ts) under TDP, the memslots
 * directly on the bare machine. Under shadow paging (ept=0) the CPU walks KVM's shadow tables by
 * gva instead ({@link CpuMmu.shadowTranslate}); the guest's tables are then read only by KVM's
 * walker inside a fault, over the memslots (the {@link GuestTables} here serve it).
 */
import {
  PFERR_FETCH_MASK,
  PFERR_IMPLICIT_ACCESS,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
  X86_EFLAGS_AC,
} from "../arch/constants";
import type { Kvm, KvmVcpuCommon } from "../kvm/kvm_main";
import type { GuestMemory } from "../kvm/memory";
import type { MemSlots } from "../kvm/memslot";
import type { VmMmu } from "../mmu/mmu";
import {
  KVM_PAE_ROOT,
  type KvmMmu,
  type MmuPageStore,
  ROLE_DIRECT,
  ROLE_LEVEL_MASK,
} from "../mmu/mmu_internal";
import { GuestTables, pt64Index, type TableSource, type WalkRegs } from "../mmu/paging_tmpl";
import {
  GFN_SPAN,
  isMmioSpte,
  SPTE_A,
  SPTE_D,
  SPTE_MMU_PRESENT,
  SPTE_PS,
  SPTE_R,
  SPTE_W,
  SPTE_X,
  sptePfn,
} from "../mmu/spte";
import { EptWalker, STAGE2_MMIO } from "./ept";

/**
 * The walker's table accesses: W|U, as KVM's `nested_access` (A/D may be written); with EPT
 * A/D bits, guest paging-structure accesses count as writes for EPT too.
 */
const NESTED_ACCESS = PFERR_WRITE_MASK | PFERR_USER_MASK;

/** One vCPU's translation hardware: stage 2 and the table frames the guest walk reads. */
export class CpuMmu implements TableSource {
  /** The guest walk's table frames. */
  readonly tables: GuestTables;
  /** The EPT walker under TDP, null on the bare machine. */
  readonly ept: EptWalker | null;
  /** After {@link stage2}: whether the frame may be written. */
  writable = false;
  /** First gfn at MAXPHYADDR. */
  private readonly maxGfn: number;
  private readonly kvm: Kvm;
  private readonly slots: MemSlots;
  private readonly memory: GuestMemory;
  private readonly store: MmuPageStore | null;
  private readonly mmu: KvmMmu;
  private readonly regs: WalkRegs;
  /** Shadow paging: after a {@link shadowTranslate} hit, the host frame of the access. */
  shadowHvfn = 0;
  /** Shadow paging: after a {@link shadowTranslate} miss, the #PF error code the CPU reports. */
  hwError = 0;

  constructor(kvm: Kvm, vm: VmMmu | null, mmu: KvmMmu, vcpu: KvmVcpuCommon, regs: WalkRegs) {
    this.kvm = kvm;
    this.slots = kvm.memslots;
    this.memory = kvm.memory;
    this.mmu = mmu;
    this.regs = regs;
    this.maxGfn = 2 ** (kvm.maxPhysAddrBits - 12);
    this.vm = vm;
    this.ept = vm === null || vm.shadowPaging ? null : new EptWalker(vm, mmu, vcpu);
    // Without EPT A/D bits the CPU's guest paging-structure reads are reads for EPT; an A/D
    // write-back is a write of its own ({@link tableWritable}).
    if (this.ept !== null && !kvm.features.eptAccessDirty) this.tableAccess = PFERR_USER_MASK;
    // Under shadow paging the guest tables are read over the memslots: only a memslot change
    // can move them (so the cache follows the memslot generation, as on the bare machine).
    this.store = vm === null ? null : vm.store;
    this.shadowPaging = vm?.shadowPaging === true;
    this.tables = new GuestTables(this, regs, kvm.memory);
  }

  private readonly shadowPaging: boolean;
  private readonly vm: VmMmu | null;
  /** @internal PFERR bits of the guest walk's table reads at stage 2 (W|U, or U without EPT A/D). */
  readonly tableAccess: number = NESTED_ACCESS;

  /**
   * The CPU's walk of KVM's shadow tables for gva `hi:lo` and access `access` (PFERR W/U/F and
   * PFERR_IMPLICIT_ACCESS), as hardware runs under shadow paging: CR0.WP and EFER.NX forced on,
   * the guest's CR4.SMEP/SMAP. Rights AND over the levels (user = the R bit KVM uses as its user
   * mask, W, X). Returns the gpa (the leaf's gfn per `kvm_mmu_page_get_gfn`) with
   * {@link shadowHvfn} set and A (D for writes) set in the leaf, or -1 with {@link hwError}:
   * not present, a protection violation (P), or RSVD|P on an MMIO spte.
   */
  shadowTranslate(hi: number, lo: number, access: number): number {
    const mmu = this.mmu;
    const store = this.store!;
    const write = (access & PFERR_WRITE_MASK) !== 0;
    const fetch = (access & PFERR_FETCH_MASK) !== 0;
    const user = (access & PFERR_USER_MASK) !== 0;
    let err = access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK);
    // Long mode: the root; otherwise the pae_root entry of the gva's GiB (KVM runs such guests
    // on PAE tables).
    const sp0 = mmu.root === KVM_PAE_ROOT ? mmu.paeRoot[lo >>> 30]! : mmu.root;
    if (sp0 < 0) {
      this.hwError = err;
      return -1;
    }
    let sp = sp0;
    let level = store.role[sp]! & ROLE_LEVEL_MASK;
    let rights = SPTE_R | SPTE_W | SPTE_X;
    let spt: Uint32Array;
    let i: number;
    let slo: number;
    // Integer indices from the gva halves (no division on the way down).
    for (;;) {
      spt = store.spt[sp]!;
      i = pt64Index(hi, lo, level);
      slo = spt[i * 2]!;
      if ((slo & SPTE_MMU_PRESENT) === 0) {
        if (isMmioSpte(slo)) err |= PFERR_RSVD_MASK | PFERR_PRESENT_MASK;
        this.hwError = err;
        return -1;
      }
      rights &= slo;
      if (level === 1 || (slo & SPTE_PS) !== 0) break;
      sp = store.pfnToSp(sptePfn(slo, spt[i * 2 + 1]!));
      level--;
    }
    const u = (rights & SPTE_R) !== 0;
    let denied =
      (write && (rights & SPTE_W) === 0) || (user && !u) || (fetch && (rights & SPTE_X) === 0);
    // With guest paging off KVM turns SMEP and SMAP off in hardware (vmx_set_cr4).
    if (!user && u && mmu.rootLevel !== 0) {
      if (fetch && mmu.smep) denied = true;
      const ac = (this.regs.rflags & X86_EFLAGS_AC) !== 0 && (access & PFERR_IMPLICIT_ACCESS) === 0;
      if (!fetch && mmu.smap && !ac) denied = true;
    }
    if (denied) {
      this.hwError = err | PFERR_PRESENT_MASK;
      return -1;
    }
    // The CPU's own A/D updates of the leaf (no notification: they only add bits).
    const ad = write ? SPTE_A | SPTE_D : SPTE_A;
    if ((slo & ad) !== ad) spt[i * 2] = (slo | ad) >>> 0;
    // Offset of the 4K page inside a large leaf: gva bits (12 + 9 * (level - 1)) - 1 .. 12.
    const off =
      level === 1 ? 0 : level === 2 ? (lo >>> 12) & 511 : ((lo >>> 12) | (hi << 20)) & 0x3ffff;
    this.shadowHvfn = sptePfn(slo, spt[i * 2 + 1]!) + off;
    const t = store.translation[sp];
    const gfn =
      t !== null && t !== undefined && (store.role[sp]! & ROLE_DIRECT) === 0
        ? t[i]!
        : store.gfn[sp]! + i * GFN_SPAN[level]!;
    return (gfn + off) * 4096 + (lo & 0xfff);
  }

  /**
   * What the cached table frames were valid for: the MMU's table epoch and root (TDP), and the
   * memslot generation.
   */
  private tablesEpoch = -1;
  private tablesRoot = -1;
  private tablesGeneration = -1;

  /**
   * Drop cached table frames that may no longer be exact: under TDP a change of an spte that
   * may map one (MmuPageStore.tableEpoch) or a new root; everywhere a memslot change.
   */
  refreshTables(): void {
    const tdp = this.store !== null && !this.shadowPaging;
    const e = tdp ? this.store!.tableEpoch : 0;
    const root = tdp ? this.mmu.root : 0;
    if (
      e !== this.tablesEpoch ||
      root !== this.tablesRoot ||
      this.slots.generation !== this.tablesGeneration
    ) {
      this.tables.invalidate();
      this.tablesEpoch = e;
      this.tablesRoot = root;
      this.tablesGeneration = this.slots.generation;
    }
  }

  /**
   * Stage 2 for `gfn` and `pfec` (PFERR W/U/F): the host frame, or {@link STAGE2_MMIO} when no
   * memslot backs it or the final access writes a read-only slot. Sets {@link writable}.
   */
  stage2(gfn: number, pfec: number, final: boolean): number {
    const ept = this.ept;
    if (ept !== null) {
      // A gpa at or above MAXPHYADDR is in no memslot. The architecture's walk faults on the
      // reserved bits before it makes one; the 2007 walkers (no reserved-bit check) can, and the
      // EPT walk would index it by its low bits. KVM emulates such an access
      // (kvm_handle_noslot_fault: gfn > kvm_mmu_max_gfn()).
      if (gfn >= this.maxGfn) return STAGE2_MMIO;
      const r = ept.translate(gfn, pfec, final);
      this.writable = ept.writable;
      return r;
    }
    const slot = this.slots.gfnToSlot(gfn);
    if (slot === undefined) return STAGE2_MMIO;
    const ro = slot.readonly;
    if (ro && final && (pfec & PFERR_WRITE_MASK) !== 0) return STAGE2_MMIO;
    this.writable = !ro;
    return slot.baseHvfn + (gfn - slot.baseGfn);
  }

  // ---- TableSource ---------------------------------------------------------------------------

  fillTable(t: GuestTables, gfn: number, c: number): boolean {
    // From now on a change of this frame's sptes drops the cached frames (MmuPageStore.tableEpoch).
    if (this.store !== null && !this.shadowPaging) this.store.watchTable(gfn);
    const hvfn = this.stage2(gfn, this.tableAccess, false);
    if (hvfn < 0) return false;
    // An EPT violation on the way may have changed sptes: what was cached before it goes.
    this.refreshTables();
    t.set(c, gfn, this.memory.frameWord(hvfn), this.writable);
    return true;
  }

  /**
   * An A/D write-back into a table frame. On the bare machine the walk plays KVM's
   * `kvm_vcpu_mark_page_dirty`. Under EPT the CPU writes the bits itself; KVM sees the write only
   * through the EPT violation that made the table writable, which marked the page then.
   */
  tableWritable(gfn: number): boolean {
    // A frame loaded for reading only (EPT without A/D bits): the write-back is an access of
    // its own, which may take an EPT violation (and so be dirty-logged). Elsewhere the frame
    // was loaded for writing, and a frame that is not writable is a read-only slot's.
    if (this.tableAccess === NESTED_ACCESS) return false;
    if (this.stage2(gfn, NESTED_ACCESS, false) < 0) return false;
    const writable = this.writable;
    // The violation may have changed sptes: cached frames go (the arena word stays valid).
    this.refreshTables();
    return writable;
  }

  markTableDirty(gfn: number): void {
    if (this.ept === null) this.kvm.markPageDirty(gfn);
  }

  /**
   * The 2.6.23–25 walker's `kvm_mmu_pte_write` after it set D in a gpte: under shadow paging
   * it is KVM's walker, which tells its MMU; the CPU notifies nobody of its own writes.
   */
  notifyPteWrite(gpa: number, bytes: number): void {
    if (this.shadowPaging) this.vm!.shadow!.trackWrite(gpa, bytes, this.mmu.pae);
  }
}

export { STAGE2_MMIO };
