/**
 * Views of what the MMU did: a recorded trace (`vm.stopTrace()`: the events, `perf script`
 * text, Chrome/Perfetto JSON, a notebook table), a `kvm_stat`-style counter view over
 * intervals (`vm.kvmStat()`), and the `mmu_rmaps_stat`-style histogram of rmap chain lengths
 * (`vm.rmapHistogram()`). Built on request, never on hot paths.
 */
import {
  htmlTableBundle,
  JUPYTER_DISPLAY,
  type MimeBundle,
  plotlyBundle,
  tableAndPlotBundle,
} from "../display";
import type { KvmStats } from "../kvm/stats";
import { pteListForEach, type VmMmu } from "../mmu/mmu";
import { SlotArch } from "../mmu/mmu_internal";
import { type ChromeTrace, chromeTrace, type MmuTraceEvent, perfScriptText } from "../mmu/mmutrace";

/** A recorded trace. */
export class TraceView {
  /** The events, oldest first. */
  readonly events: readonly MmuTraceEvent[];
  /** Events overwritten because the ring was full. */
  readonly dropped: number;

  constructor(events: readonly MmuTraceEvent[], dropped: number) {
    this.events = events;
    this.dropped = dropped;
  }

  /** The events as `perf script` prints tracepoints. */
  perfScript(): string {
    return perfScriptText(this.events);
  }

  /** Chrome trace-event JSON (loads in Perfetto and chrome://tracing): one track per vCPU, one VM-wide. */
  chrome(): ChromeTrace {
    return chromeTrace(this.events);
  }

  /** How many events of each name. */
  counts(): Record<string, number> {
    const c: Record<string, number> = {};
    for (const e of this.events) c[e.name] = (c[e.name] ?? 0) + 1;
    return c;
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const rows = this.events.slice(0, 200).map((e) => ({
      seq: e.seq,
      vcpu: e.vcpu >= 0 ? e.vcpu : "VM",
      event: e.name,
      fields: Object.entries(e.fields)
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
    }));
    const more = this.events.length > rows.length ? ` (first 200 of ${this.events.length})` : "";
    const drop = this.dropped > 0 ? `, ${this.dropped} dropped` : "";
    return htmlTableBundle(`MMU trace${more}${drop}`, rows);
  }
}

/** `kvm_stat`-style view: counters sampled at the end of each interval, shown as deltas. */
export class KvmStatView {
  private readonly read: () => KvmStats;
  private readonly samples: { label: string; stats: Record<string, number> }[] = [];

  constructor(read: () => KvmStats) {
    this.read = read;
    this.samples.push({ label: "start", stats: read().toJSON() });
  }

  /** Close an interval: sample every counter now (`label` names the interval). */
  sample(label = `interval ${this.samples.length}`): this {
    this.samples.push({ label, stats: this.read().toJSON() });
    return this;
  }

  /** Per interval, the change of each counter that changed at all (name → deltas, total). */
  deltas(): { name: string; intervals: number[]; total: number }[] {
    const first = this.samples[0]!.stats;
    const last = this.samples[this.samples.length - 1]!.stats;
    const out: { name: string; intervals: number[]; total: number }[] = [];
    for (const name of Object.keys(last)) {
      const intervals: number[] = [];
      for (let i = 1; i < this.samples.length; i++)
        intervals.push(this.samples[i]!.stats[name]! - this.samples[i - 1]!.stats[name]!);
      const total = last[name]! - first[name]!;
      if (intervals.some((d) => d !== 0)) out.push({ name, intervals, total });
    }
    return out;
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const labels = this.samples.slice(1).map((s) => s.label);
    return htmlTableBundle(
      "kvm_stat: counters per interval",
      this.deltas().map((d) => {
        const row: Record<string, string | number> = { counter: d.name };
        d.intervals.forEach((v, i) => {
          row[labels[i]!] = v;
        });
        row.total = d.total;
        return row;
      }),
    );
  }
}

/** `RMAP_LOG_SIZE`: buckets of `mmu_rmaps_stat` (0, 1, 2-3, 4-7, ..., 1024+). */
const RMAP_LOG_SIZE = 11;

/** `mmu_rmaps_stat` (debugfs): per level, rmap heads by chain length in log2 buckets. */
export class RmapHistogram {
  /** Bucket labels: "0", "1", "2-3", "4-7", ..., "1024+". */
  readonly buckets: readonly string[];
  /** counts[level - 1][bucket]. */
  readonly counts: readonly number[][];

  constructor(mmu: VmMmu) {
    const labels = ["0", "1"];
    for (let b = 2; b < RMAP_LOG_SIZE; b++) labels.push(`${2 ** (b - 1)}-${2 ** b - 1}`);
    labels.push(`${2 ** (RMAP_LOG_SIZE - 1)}+`);
    this.buckets = labels;
    const counts = [0, 1, 2].map(() => new Array<number>(labels.length).fill(0));
    const sh = mmu.shadow;
    if (sh !== null) {
      for (const slot of mmu.slots.list()) {
        const rmap = slot.arch instanceof SlotArch ? slot.arch.rmap : null;
        if (rmap === null) continue;
        for (let l = 0; l < 3; l++) {
          const heads = rmap.heads[l]!;
          for (let i = 0; i < heads.length; i++) {
            const n = heads[i] === 0 ? 0 : pteListForEach(sh.rmapPool, heads, i, () => {});
            const b = n === 0 ? 0 : Math.min(32 - Math.clz32(n), labels.length - 1);
            counts[l]![b]!++;
          }
        }
      }
    }
    this.counts = counts;
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const table = htmlTableBundle(
      "mmu_rmaps_stat: rmap heads by chain length",
      this.counts.map((c, l) => {
        const row: Record<string, string | number> = { level: ["4K", "2M", "1G"][l]! };
        this.buckets.forEach((b, i) => {
          row[b] = c[i]!;
        });
        return row;
      }),
    );
    const plot = plotlyBundle({
      data: this.counts.map((c, l) => ({
        type: "bar",
        name: ["4K", "2M", "1G"][l]!,
        x: [...this.buckets],
        y: c,
      })),
      layout: {
        title: { text: "rmap chain lengths (mmu_rmaps_stat)" },
        barmode: "group",
        yaxis: { type: "log", title: { text: "rmap heads" } },
        xaxis: { title: { text: "sptes on the chain" } },
      },
    });
    return tableAndPlotBundle(table, plot);
  }
}
