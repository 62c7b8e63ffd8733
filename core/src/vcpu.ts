/**
 * The vCPU notebooks use: the model (`KvmVcpu`, x86/vcpu.ts) plus what is only for looking at
 * it — a walk with its trace, the 2-D walk under EPT, a one-line summary and a Jupyter display
 * of the registers.
 */
import { splitU64, type U64Parts, u64Of } from "./arch/addr";
import { JUPYTER_DISPLAY, type MimeBundle } from "./display";
import { vcpuBundle, vcpuString } from "./inspect/machine_display";
import { WalkResult } from "./inspect/walk";
import { type TwoDimWalk, walk2d } from "./inspect/walk2d";
import { recordLevels } from "./mmu/paging_tmpl";
import { type AccessOptions, KvmVcpu, refuseFrozenVcpu } from "./x86/vcpu";

/** A virtual CPU. Create with `vm.createVcpu()`. */
export class Vcpu extends KvmVcpu {
  private readonly walkScratch: U64Parts = { hi: 0, lo: 0 };

  /**
   * Like {@link KvmVcpu.access}, but returns a {@link WalkResult} with the per-level trace (table
   * gfn, index, entry gpa, value before/after, A/D set) and the final rights. Not for hot loops.
   *
   * Under shadow paging the CPU walks KVM's sptes, and the guest tables are walked only by KVM,
   * when that walk faults (`FNAME(page_fault)`) or an access is emulated: the trace is that walk
   * (the last one, if there were several). An access the sptes let through walks no guest table,
   * and its result has no levels.
   */
  walk(gva: number | bigint, opts?: AccessOptions): WalkResult {
    refuseFrozenVcpu(this);
    const g = splitU64("gva", gva, this.walkScratch);
    const access = this.accessBits(opts);
    const mode = this.pagingMode;
    const gvaBig = u64Of(g.hi, g.lo);
    if (!this.gvaOk(g.hi, gva)) {
      return new WalkResult(mode, gvaBig, access, this.gpFault(), this.walker, false);
    }
    // Every walk leaves the walker at its leaf or faulting level (>= 1): 0 marks "no guest walk".
    const shadow = this.mmu.shadowPaging && mode !== "none";
    if (shadow) this.walker.level = 0;
    const r = this.walkGva(g.hi, g.lo, access);
    const result = r < 0 ? this.pageFault() : this.finish(r, access);
    const walked = mode !== "none" && (!shadow || this.walker.level !== 0);
    if (walked) recordLevels(this.walker, this.mmu, this.cpu.tables, g.hi, g.lo);
    return new WalkResult(mode, gvaBig, access, result, this.walker, walked);
  }

  /**
   * The access as {@link walk} makes it, drawn in two dimensions: under EPT each guest
   * paging-structure entry the walk reads (top level first), and then the data, sits at a
   * guest-physical address the CPU first translates through EPT. Returns a {@link TwoDimWalk}:
   * per guest access the EPT walk (root first) with every entry before and after, the memory
   * references numbered in the CPU's order ((g + 1)(e + 1) − 1 for g guest levels and e EPT
   * levels: 24 for 4-level on 4-level), the A/D bits set and the EPT violations taken (KVM's
   * fault, then the retry). Not for hot loops.
   * @throws InvalidArgumentError without EPT (`mmu: "shadow"` or `"none"`), for a bad gva or bad
   *   access options; nothing has run then.
   */
  walk2d(gva: number | bigint, opts?: AccessOptions): TwoDimWalk {
    refuseFrozenVcpu(this);
    return walk2d(this, gva, opts);
  }

  /** One line: id, paging mode, CPL, CR3. */
  override toString(): string {
    return vcpuString(this);
  }

  /** Jupyter display: paging mode, CR0/CR3/CR4/EFER with set bits named, CPL, RFLAGS.AC, PKRU. */
  [JUPYTER_DISPLAY](): MimeBundle {
    return vcpuBundle(this);
  }
}
