/**
 * The VM notebooks use: the x86 model (`KvmX86`, x86/x86.ts) plus what is only for looking at
 * it — the MMU's tables as a displayable tree, a gpa walk through them, the shadow-page list, the
 * self-audit, a one-line summary and a Jupyter display. The model never imports these views.
 */
import { JUPYTER_DISPLAY, type MimeBundle } from "./display";
import { checkOptionKeys, InvalidArgumentError, refuseFrozen } from "./errors";
import { VmConfig } from "./inspect/config_view";
import { vmBundle, vmString } from "./inspect/machine_display";
import { MemoryUsage } from "./inspect/memory_view";
import {
  ShadowPageList,
  type TdpSnapshotOptions,
  TdpTreeView,
  TdpWalk,
} from "./inspect/mmu_introspect";
import { snapshotTitle } from "./inspect/snapshot_fold";
import { type KvmStatOptions, KvmStatView, RmapHistogram, TraceView } from "./inspect/trace_view";
import type { VmMmu } from "./mmu/mmu";
import { auditMmu } from "./mmu/mmu_audit";
import { Vcpu } from "./vcpu";
import { KvmX86, type VmOptions } from "./x86/x86";

/** A virtual machine. Create with {@link createVm}. */
export class Vm extends KvmX86 {
  declare readonly vcpus: Vcpu[];

  /** `KVM_CREATE_VCPU`. */
  override createVcpu(): Vcpu {
    return super.createVcpu() as Vcpu;
  }

  protected override archCreateVcpu(id: number): Vcpu {
    return new Vcpu(this, this.mmu, id);
  }

  private views(what: string): VmMmu {
    if (this.mmu === null) {
      throw new InvalidArgumentError(
        "mmu",
        this.mmuMode,
        `"tdp" or "shadow" (${what} shows KVM's MMU)`,
      );
    }
    return this.mmu;
  }

  /** Every switch's effective value and where it came from (default, preset or override). */
  get config(): VmConfig {
    return new VmConfig(this);
  }

  /** MMU self-audit: the violated invariants, empty when consistent (always empty for "none"). */
  audit(): string[] {
    return this.mmu === null ? [] : auditMmu(this.mmu, this.memslots);
  }

  /**
   * The MMU's tables as a bounded, folded, displayable snapshot: the EPT tree under TDP; under
   * shadow paging a vCPU root's shadow tree (by gva; indirect/direct pages, write tracking,
   * unsync and flooding state in the linking entries' notes). `title` names the view and its
   * tree; `label` is an alias of it (both snapshots take either).
   * @throws InvalidArgumentError naming a bad option, or `title` and `label` that differ.
   */
  snapshot(opts?: TdpSnapshotOptions): TdpTreeView {
    const mmu = this.views("snapshot()");
    if (opts !== undefined) {
      checkOptionKeys("opts", opts, ["maxEntriesPerTable", "maxTables", "root", "title", "label"]);
      for (const k of ["maxEntriesPerTable", "maxTables"] as const) {
        const v = opts[k];
        if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 1024 * 1024)) {
          throw new InvalidArgumentError(k, v, "an integer from 1 to 1048576");
        }
      }
      if (opts.root !== undefined && !mmu.roots.includes(opts.root)) {
        throw new InvalidArgumentError(
          "root",
          opts.root,
          `one of the roots [${mmu.roots.join(", ")}]`,
        );
      }
      // `title` is the name, `label` its alias: checked as the guest builder's snapshot checks it.
      const title = snapshotTitle(opts);
      if (title !== undefined) opts = { ...opts, title, label: undefined };
    }
    return new TdpTreeView(mmu, opts);
  }

  /** Walk `gpa` through the TDP tables of the first valid root, with a per-level trace. */
  walkGpa(gpa: number): TdpWalk {
    const mmu = this.views("walkGpa()");
    if (mmu.shadowPaging)
      throw new InvalidArgumentError(
        "mmu",
        this.mmuMode,
        '"tdp" (walkGpa() walks the EPT tables by gpa; shadow tables are indexed by gva: use vm.snapshot() or vcpu.walk())',
      );
    if (
      typeof gpa !== "number" ||
      !Number.isSafeInteger(gpa) ||
      gpa < 0 ||
      gpa >= 2 ** this.maxPhysAddrBits
    ) {
      throw new InvalidArgumentError(
        "gpa",
        gpa,
        `a guest-physical address below 2^${this.maxPhysAddrBits} (MAXPHYADDR)`,
      );
    }
    return new TdpWalk(mmu, gpa);
  }

  /**
   * Stop recording the trace started by `vm.startTrace()`: the events (mmutrace.h names and
   * fields), as `perf script` text (`.perfScript()`), Chrome/Perfetto JSON (`.chrome()`) or a table.
   */
  stopTrace(): TraceView {
    refuseFrozen(this, "vm");
    const { events, dropped } = this.stopTraceEvents();
    return new TraceView(events, dropped);
  }

  /**
   * A `kvm_stat`-style view: call `.sample(label)` at the end of each interval. It reads what
   * kvm_stat reads: the statistics (`vm.stats`, KVM's debugfs files) and the counts of the
   * `kvm:` tracepoints while tracing is on. `opts` (`fields`, as `kvm_stat -f`, and `sort`) are
   * the view's defaults.
   * @throws InvalidArgumentError for a bad `fields` or `sort`.
   */
  kvmStat(opts?: KvmStatOptions): KvmStatView {
    return new KvmStatView(
      () => ({ ...this.stats.toJSON(), ...this.tracepointCounts("kvm") }),
      opts,
    );
  }

  /**
   * Where the VM's memory goes: bytes charged per category (guest memory, dirty bitmaps, slot
   * metadata, MMU pages, rmap descriptors, dirty rings, PML, trace ring) against the memory
   * budget and the JS-heap budget (`createVm({ memoryBudget })`), as a table in a notebook.
   */
  memoryUsage(): MemoryUsage {
    return new MemoryUsage(this.memcg);
  }

  /** `mmu_rmaps_stat`: the rmap chains of every slot by length, per level. */
  rmapHistogram(): RmapHistogram {
    return new RmapHistogram(this.views("rmapHistogram()"));
  }

  /** Every live shadow page with its decoded role. */
  shadowPages(): ShadowPageList {
    return new ShadowPageList(this.views("shadowPages()"));
  }

  /** One line: MMU, memslots, vCPUs and the leaf counts. */
  override toString(): string {
    return vmString(this);
  }

  /** Jupyter display: MMU selection and features, memslots, key KVM stats. */
  [JUPYTER_DISPLAY](): MimeBundle {
    return vmBundle(this);
  }
}

/**
 * Create a VM.
 * @example
 * const vm = createVm({ maxPhysAddrBits: 46 });
 * vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 1 << 30, flags: 0 });
 */
export function createVm(options: VmOptions = {}): Vm {
  return new Vm(options);
}
