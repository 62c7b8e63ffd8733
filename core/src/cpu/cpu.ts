/**
 * The simulated CPU's address translation for one vCPU. With EPT (and on the bare machine,
 * `mmu: "none"`) the CPU walks the guest's own page tables (the walk of paging_tmpl.ts, over a
 * {@link GuestTables} cache) and takes every guest-physical address — each table the walk reads
 * and the final data address — through stage 2: the EPT walk (ept.ts) under TDP, the memslots
 * directly on the bare machine. Shadow paging (ept=0) will add a walk of KVM's shadow tables by
 * gva beside this one.
 */
import { PFERR_USER_MASK, PFERR_WRITE_MASK } from "../arch/constants";
import type { Kvm, KvmVcpuCommon } from "../kvm/kvm_main";
import type { GuestMemory } from "../kvm/memory";
import type { MemSlots } from "../kvm/memslot";
import type { VmMmu } from "../mmu/mmu";
import type { KvmMmu, MmuPageStore } from "../mmu/mmu_internal";
import { GuestTables, type TableSource, type WalkRegs } from "../mmu/paging_tmpl";
import { EptWalker, STAGE2_MMIO } from "./ept";

/** The walker's table accesses: W|U, as KVM's `nested_access` (A/D may be written). */
const NESTED_ACCESS = PFERR_WRITE_MASK | PFERR_USER_MASK;

/** One vCPU's translation hardware: stage 2 and the table frames the guest walk reads. */
export class CpuMmu implements TableSource {
  /** The guest walk's table frames. */
  readonly tables: GuestTables;
  /** The EPT walker under TDP, null on the bare machine. */
  readonly ept: EptWalker | null;
  /** After {@link stage2}: whether the frame may be written. */
  writable = false;
  private readonly kvm: Kvm;
  private readonly slots: MemSlots;
  private readonly memory: GuestMemory;
  private readonly store: MmuPageStore | null;

  constructor(kvm: Kvm, vm: VmMmu | null, mmu: KvmMmu, vcpu: KvmVcpuCommon, regs: WalkRegs) {
    this.kvm = kvm;
    this.slots = kvm.memslots;
    this.memory = kvm.memory;
    this.ept = vm === null ? null : new EptWalker(vm, mmu, vcpu);
    this.store = vm === null ? null : vm.store;
    this.tables = new GuestTables(this, regs, kvm.memory);
  }

  /** What the cached table frames were valid for: the spte epoch (TDP) or the memslot generation. */
  private tablesEpoch = -1;

  /**
   * Drop cached table frames that may no longer be exact: under TDP every spte change may have
   * moved or write-protected one; on the bare machine only a memslot change can.
   */
  refreshTables(): void {
    const e = this.store !== null ? this.store.spteEpoch : this.slots.generation;
    if (e !== this.tablesEpoch) {
      this.tables.invalidate();
      this.tablesEpoch = e;
    }
  }

  /**
   * Stage 2 for `gfn` and `pfec` (PFERR W/U/F): the host frame, or {@link STAGE2_MMIO} when no
   * memslot backs it or the final access writes a read-only slot. Sets {@link writable}.
   */
  stage2(gfn: number, pfec: number, final: boolean): number {
    const ept = this.ept;
    if (ept !== null) {
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
    const hvfn = this.stage2(gfn, NESTED_ACCESS, false);
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
  markTableDirty(gfn: number): void {
    if (this.ept === null) this.kvm.markPageDirty(gfn);
  }

  /** The CPU notifies nobody of its own writes (KVM's walker does, under shadow paging). */
  notifyPteWrite(_gpa: number, _bytes: number): void {}
}

export { STAGE2_MMIO };
