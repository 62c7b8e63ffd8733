/**
 * Views of what the MMU did: a recorded trace (`vm.stopTrace()`: the events, `perf script`
 * text, Chrome/Perfetto JSON, a notebook table, filters, a fault heat map), a `kvm_stat`-style
 * counter view over intervals (`vm.kvmStat()`), and the `mmu_rmaps_stat`-style histogram of
 * rmap chain lengths (`vm.rmapHistogram()`). Built on request, never on hot paths.
 */
import {
  htmlTableBundle,
  JUPYTER_DISPLAY,
  type MimeBundle,
  type PlotlyFigure,
  plotlyBundle,
  tableAndPlotBundle,
} from "../display";
import { checkOptionKeys, InvalidArgumentError } from "../errors";
import { pteListForEach, type VmMmu } from "../mmu/mmu";
import { SlotArch } from "../mmu/mmu_internal";
import {
  type ChromeTrace,
  chromeTrace,
  type MmuTraceEvent,
  perfScriptText,
  TRACE_EVENTS,
  traceEventDef,
} from "../mmu/mmutrace";

/** Which events {@link TraceView.filter} keeps; every given condition must hold. */
export interface TraceFilter {
  /** Only these event names. */
  events?: readonly string[];
  /**
   * Only events whose `gfn` field lies in `[start, end)` (events without one are left out; an
   * entry above the leaves carries the first gfn it maps).
   */
  gfns?: readonly [number, number];
  /** Only this vCPU's events, or `"vm"` for the VM-wide ones (zaps, flushes, splits). */
  vcpu?: number | "vm";
}

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

  /**
   * The events that pass `filter` (a predicate, or conditions by name, gfn range and vCPU), as
   * a view of their own with the same `dropped` count.
   * @throws InvalidArgumentError for an unknown event name or a bad gfn range or vCPU.
   */
  filter(filter: TraceFilter | ((e: MmuTraceEvent) => boolean)): TraceView {
    if (typeof filter === "function")
      return new TraceView(this.events.filter(filter), this.dropped);
    if (filter === null || typeof filter !== "object" || Array.isArray(filter))
      throw new InvalidArgumentError("filter", filter, "a predicate or { events?, gfns?, vcpu? }");
    checkOptionKeys("filter", filter, ["events", "gfns", "vcpu"]);
    const { events, gfns, vcpu } = filter;
    if (events !== undefined) {
      if (!Array.isArray(events))
        throw new InvalidArgumentError("events", events, "an array of event names");
      for (const name of events)
        if (traceEventDef(name) === undefined)
          throw new InvalidArgumentError(
            "events",
            name,
            `one of ${TRACE_EVENTS.map((e) => e.name).join(", ")}`,
          );
    }
    if (
      gfns !== undefined &&
      (!Array.isArray(gfns) ||
        gfns.length !== 2 ||
        !gfns.every((g) => Number.isSafeInteger(g) && g >= 0) ||
        gfns[0] > gfns[1])
    )
      throw new InvalidArgumentError("gfns", gfns, "[start, end) with 0 <= start <= end, integers");
    if (vcpu !== undefined && vcpu !== "vm" && !(Number.isSafeInteger(vcpu) && vcpu >= 0))
      throw new InvalidArgumentError("vcpu", vcpu, 'a vCPU index or "vm"');
    const names = events === undefined ? undefined : new Set<string>(events);
    const track = vcpu === "vm" ? -1 : vcpu;
    return new TraceView(
      this.events.filter((e) => {
        if (names !== undefined && !names.has(e.name)) return false;
        if (track !== undefined && e.vcpu !== track) return false;
        if (gfns !== undefined) {
          const g = e.fields.gfn;
          if (typeof g !== "string") return false;
          const gfn = Number(g);
          if (!(gfn >= gfns[0] && gfn < gfns[1])) return false;
        }
        return true;
      }),
      this.dropped,
    );
  }

  /**
   * Faults per region of memory, from the trace's `kvm_page_fault` events: under TDP their
   * `fault_address` is the EPT violation's guest-physical address (`handle_ept_violation`),
   * under shadow paging the guest-virtual one the #PF reported. Regions are 2 MiB and rows
   * 1 GiB unless `opts` says otherwise.
   * @throws InvalidArgumentError for a bad region size, row size, base or row count.
   */
  faultHeatmap(opts: FaultHeatmapOptions = {}): FaultHeatmap {
    const addrs: number[] = [];
    for (const e of this.events)
      if (e.name === "kvm_page_fault") addrs.push(Number(e.fields.fault_address));
    return new FaultHeatmap(addrs, opts);
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

/** Options of {@link TraceView.faultHeatmap}. */
export interface FaultHeatmapOptions {
  /** Bytes per cell: a power of two from 4 KiB to 1 GiB; default 2 MiB (`KVM_HPAGE_SIZE(PG_LEVEL_2M)`). */
  regionBytes?: number;
  /** Bytes per row: a multiple of `regionBytes`, at most 4096 cells; default 1 GiB. */
  rowBytes?: number;
  /** Address of the first row, a multiple of `rowBytes`; default 0. */
  base?: number;
  /** Rows; default enough to hold the highest faulting address (at least one). */
  rows?: number;
  /**
   * Colour by `"log"` (log10 of the count, default: counts of one region and of a hot one
   * differ by orders of magnitude; empty cells stay blank) or `"linear"` count.
   */
  scale?: "log" | "linear";
}

const MIB = 2 ** 20;
const GIB = 2 ** 30;

/** "3 GiB", "512 MiB", "4 KiB": an address or size in the largest unit that divides it. */
function sizeText(bytes: number): string {
  if (bytes !== 0 && bytes % GIB === 0) return `${bytes / GIB} GiB`;
  if (bytes !== 0 && bytes % MIB === 0) return `${bytes / MIB} MiB`;
  return `${bytes / 1024} KiB`;
}

/**
 * Faults per region of memory, laid out in rows (by default a row is 1 GiB of 512 regions of
 * 2 MiB, the size one 2M spte maps): a plotly heatmap and the counts.
 */
export class FaultHeatmap {
  readonly regionBytes: number;
  readonly rowBytes: number;
  readonly base: number;
  readonly rows: number;
  /** Regions per row. */
  readonly cols: number;
  /** Faults per region, row-major: region `r * cols + c` starts at `base + r * rowBytes + c * regionBytes`. */
  readonly counts: Uint32Array;
  /** Faults counted in a region. */
  readonly total: number;
  /** Faults outside the map (below `base` or past the last row). */
  readonly outside: number;
  readonly scale: "log" | "linear";

  /** Counts `addresses` (one per fault) into regions as `opts` lays them out. */
  constructor(addresses: readonly number[], opts: FaultHeatmapOptions = {}) {
    checkOptionKeys("opts", opts, ["regionBytes", "rowBytes", "base", "rows", "scale"]);
    if (!Array.isArray(addresses) || !addresses.every((a) => typeof a === "number"))
      throw new InvalidArgumentError(
        "addresses",
        addresses,
        "an array of numbers (fault addresses)",
      );
    const region = opts.regionBytes === undefined ? 2 * MIB : opts.regionBytes;
    if (!Number.isInteger(region) || region < 4096 || region > GIB || (region & (region - 1)) !== 0)
      throw new InvalidArgumentError("regionBytes", region, "a power of two from 4096 to 2^30");
    const row = opts.rowBytes === undefined ? GIB : opts.rowBytes;
    if (!Number.isSafeInteger(row) || row < region || row % region !== 0 || row / region > 4096)
      throw new InvalidArgumentError(
        "rowBytes",
        row,
        `a multiple of regionBytes (${region}) of at most 4096 regions`,
      );
    const base = opts.base === undefined ? 0 : opts.base;
    if (!Number.isSafeInteger(base) || base < 0 || base % row !== 0)
      throw new InvalidArgumentError("base", base, `a non-negative multiple of rowBytes (${row})`);
    const scale = opts.scale === undefined ? "log" : opts.scale;
    if (scale !== "log" && scale !== "linear")
      throw new InvalidArgumentError("scale", scale, '"log" or "linear"');
    let rows = opts.rows;
    if (rows === undefined) {
      let top = base;
      for (const a of addresses) if (a > top) top = a;
      rows = Math.max(1, Math.floor((top - base) / row) + 1);
    }
    const cols = row / region;
    if (!Number.isInteger(rows) || rows < 1 || rows * cols > 2 ** 24)
      throw new InvalidArgumentError(
        "rows",
        rows,
        `an integer from 1 to ${Math.floor(2 ** 24 / cols)}`,
      );
    const counts = new Uint32Array(rows * cols);
    const end = base + rows * row;
    let total = 0;
    let outside = 0;
    for (const a of addresses) {
      if (a >= base && a < end) {
        counts[Math.floor((a - base) / region)]!++;
        total++;
      } else outside++;
    }
    this.regionBytes = region;
    this.rowBytes = row;
    this.base = base;
    this.rows = rows;
    this.cols = cols;
    this.counts = counts;
    this.total = total;
    this.outside = outside;
    this.scale = scale;
  }

  /** Faults in the region that holds `address` (0 outside the map). */
  count(address: number): number {
    if (typeof address !== "number" || !Number.isSafeInteger(address) || address < 0)
      throw new InvalidArgumentError("address", address, "a non-negative integer address");
    const i = Math.floor((address - this.base) / this.regionBytes);
    return address >= this.base && i < this.counts.length ? this.counts[i]! : 0;
  }

  /** The plotly heatmap: a row per `rowBytes`, a cell per region, hover text with the count. */
  figure(title = `Faults per ${sizeText(this.regionBytes)} region`): PlotlyFigure {
    if (typeof title !== "string") throw new InvalidArgumentError("title", title, "a string");
    const log = this.scale === "log";
    const z: (number | null)[][] = [];
    const custom: number[][] = [];
    let max = 0;
    for (let r = 0; r < this.rows; r++) {
      const counts = Array.from(this.counts.subarray(r * this.cols, (r + 1) * this.cols));
      for (const n of counts) if (n > max) max = n;
      custom.push(counts);
      z.push(log ? counts.map((n) => (n > 0 ? Math.log10(n) : null)) : counts);
    }
    const x = Array.from({ length: this.cols }, (_v, c) => (c * this.regionBytes) / MIB);
    // Row starts in the unit of the row size ("0 GiB", "1 GiB", ... or "64 MiB", ...).
    const unit = this.rowBytes % GIB === 0 ? GIB : this.rowBytes % MIB === 0 ? MIB : 1024;
    const name = unit === GIB ? "GiB" : unit === MIB ? "MiB" : "KiB";
    const y = Array.from(
      { length: this.rows },
      (_v, r) => `${(this.base + r * this.rowBytes) / unit} ${name}`,
    );
    const decades = Array.from(
      { length: Math.floor(Math.log10(Math.max(1, max))) + 1 },
      (_v, i) => i,
    );
    return {
      data: [
        {
          type: "heatmap",
          name: "faults",
          x,
          y,
          z,
          customdata: custom,
          colorscale: "Viridis",
          hovertemplate: `%{y} + %{x} MiB: %{customdata} faults<extra></extra>`,
          colorbar: log
            ? {
                title: { text: "faults" },
                tickvals: decades,
                ticktext: decades.map((d) => String(10 ** d)),
              }
            : { title: { text: "faults" } },
        },
      ],
      layout: {
        title: { text: title },
        xaxis: {
          title: { text: `offset in the row (MiB), ${sizeText(this.regionBytes)} per cell` },
        },
        yaxis: { title: { text: "row start" }, autorange: "reversed", type: "category" },
      },
    };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return plotlyBundle(this.figure());
  }
}

/** kvm_stat's orders (tools/kvm/kvm_stat/kvm_stat). */
export type KvmStatSort =
  /** The TUI's default (`SORT_DEFAULT`): by the last interval's change, then by the total, both descending. */
  | "current"
  /** The TUI after `o`: by the total, descending. */
  | "total"
  /** `kvm_stat -1` and `-l`: by name. */
  | "name";

/** What {@link KvmStatView} shows. */
export interface KvmStatOptions {
  /**
   * `kvm_stat -f`: counters whose name matches; a string is matched at the start of the name as
   * kvm_stat's `re.match` does. Default: every counter.
   */
  fields?: RegExp | string;
  /** Order of the rows; default `"current"`, kvm_stat's. */
  sort?: KvmStatSort;
}

/** One counter of a {@link KvmStatView}: its change in each interval and over all of them. */
export interface KvmStatRow {
  name: string;
  intervals: number[];
  total: number;
}

/**
 * `kvm_stat`-style view: every counter sampled at the end of each interval and shown as its
 * change per interval, plus the change since the view was created (kvm_stat's "Total", counted
 * from when it started). Counters are KVM's debugfs statistics (`vm.stats`) and, while tracing
 * is on, the `kvm:` tracepoints (`kvm_page_fault`), as kvm_stat reads both. Gauges (pages_4k,
 * ...) are shown like counters, as kvm_stat shows them: their change, which may be negative.
 */
export class KvmStatView {
  private readonly read: () => Record<string, number>;
  private readonly samples: { label: string; stats: Record<string, number> }[] = [];
  /** The `fields` and `sort` given at creation (kvm_stat's command line): every method's default. */
  readonly options: Readonly<KvmStatOptions>;

  /**
   * Samples `read()` now (the start). `opts` are the defaults of every view, as kvm_stat's
   * `-f` is given on its command line.
   * @throws InvalidArgumentError for a bad `fields` or `sort`.
   */
  constructor(read: () => Record<string, number>, opts: KvmStatOptions = {}) {
    checkOptionKeys("opts", opts, ["fields", "sort"]);
    fieldsMatcher(opts.fields);
    checkSort(opts.sort);
    this.options = { ...opts };
    this.read = read;
    this.samples.push({ label: "start", stats: read() });
  }

  /** Close an interval: sample every counter now (`label` names the interval). */
  sample(label = `interval ${this.samples.length}`): this {
    if (typeof label !== "string") throw new InvalidArgumentError("label", label, "a string");
    this.samples.push({ label, stats: this.read() });
    return this;
  }

  /** The intervals' labels, in order. */
  get labels(): string[] {
    return this.samples.slice(1).map((s) => s.label);
  }

  /**
   * Per counter that changed in some interval, its change in each interval and in total, in
   * kvm_stat's order (see {@link KvmStatOptions}).
   * @throws InvalidArgumentError for a bad `fields` or `sort`.
   */
  deltas(opts: KvmStatOptions = {}): KvmStatRow[] {
    checkOptionKeys("opts", opts, ["fields", "sort"]);
    const match = fieldsMatcher(opts.fields === undefined ? this.options.fields : opts.fields);
    const sort = checkSort(opts.sort === undefined ? this.options.sort : opts.sort);
    const first = this.samples[0]!.stats;
    const last = this.samples[this.samples.length - 1]!.stats;
    const out: KvmStatRow[] = [];
    for (const name of Object.keys(last)) {
      if (!match(name)) continue;
      const intervals: number[] = [];
      for (let i = 1; i < this.samples.length; i++)
        intervals.push(this.samples[i]!.stats[name]! - (this.samples[i - 1]!.stats[name] ?? 0));
      const total = last[name]! - (first[name] ?? 0);
      if (intervals.some((d) => d !== 0)) out.push({ name, intervals, total });
    }
    // kvm_stat: sorted(..., key=(delta, value), reverse=True) or key=value; sorted(keys) in -1/-l.
    const current = (r: KvmStatRow) => r.intervals[r.intervals.length - 1] ?? 0;
    if (sort === "name") out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    else if (sort === "total") out.sort((a, b) => b.total - a.total);
    else out.sort((a, b) => current(b) - current(a) || b.total - a.total);
    return out;
  }

  /**
   * `kvm_stat -1`: one line per counter, `name total change`, by name; the change is the last
   * interval's (kvm_stat's one-second interval).
   */
  batchText(opts: Omit<KvmStatOptions, "sort"> = {}): string {
    checkOptionKeys("opts", opts, ["fields"]);
    return this.deltas({ ...opts, sort: "name" })
      .map(
        (r) =>
          `${r.name.padEnd(42)}${String(r.total).padStart(10)}${String(r.intervals.at(-1) ?? 0).padStart(10)}`,
      )
      .join("\n");
  }

  /**
   * `kvm_stat -l` (logging mode, like vmstat): a banner of the counters' names by name, then a
   * line of changes per interval, each led by the interval's label where kvm_stat prints the time.
   */
  logText(opts: Omit<KvmStatOptions, "sort"> = {}): string {
    checkOptionKeys("opts", opts, ["fields"]);
    const rows = this.deltas({ ...opts, sort: "name" });
    const labels = this.labels;
    const width = Math.max(0, ...labels.map((l) => l.length));
    const lines = [`${"".padEnd(width)} ${rows.map((r) => r.name).join(" ")}`];
    labels.forEach((label, i) => {
      lines.push(
        `${label.padEnd(width)}${rows.map((r) => ` ${String(r.intervals[i]).padStart(9)}`).join("")}`,
      );
    });
    return lines.join("\n");
  }

  /**
   * A plotly figure of the counters over the intervals: a group of bars per interval, one bar
   * per counter, for the `top` first by total (default 6) among those `fields` selects. On the
   * default log axis a change of 0 or less has no bar.
   */
  figure(
    opts: Omit<KvmStatOptions, "sort"> & { top?: number; yAxis?: "log" | "linear" } = {},
  ): PlotlyFigure {
    checkOptionKeys("opts", opts, ["fields", "top", "yAxis"]);
    const top = opts.top === undefined ? 6 : opts.top;
    if (!Number.isSafeInteger(top) || top < 1)
      throw new InvalidArgumentError("top", top, "a positive integer");
    const yAxis = opts.yAxis === undefined ? "log" : opts.yAxis;
    if (yAxis !== "log" && yAxis !== "linear")
      throw new InvalidArgumentError("yAxis", yAxis, '"log" or "linear"');
    const labels = this.labels;
    return {
      data: this.deltas({ fields: opts.fields, sort: "total" })
        .slice(0, top)
        .map((r) => ({ type: "bar", name: r.name, x: labels, y: r.intervals })),
      layout: {
        title: { text: "kvm_stat: change per interval" },
        barmode: "group",
        xaxis: { title: { text: "interval" } },
        yaxis: { type: yAxis, title: { text: "change" } },
      },
    };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const labels = this.labels;
    const order = {
      current: "the last interval, then the total",
      total: "the total",
      name: "name",
    }[checkSort(this.options.sort)];
    return htmlTableBundle(
      `kvm_stat: change per interval (sorted as kvm_stat sorts: by ${order})`,
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

/** `sort`, checked; default "current" (kvm_stat's `SORT_DEFAULT`). */
function checkSort(sort: unknown): KvmStatSort {
  if (sort === undefined) return "current";
  if (sort !== "current" && sort !== "total" && sort !== "name")
    throw new InvalidArgumentError("sort", sort, '"current", "total" or "name"');
  return sort;
}

/** kvm_stat's `-f` filter as a predicate (`re.match`: anchored at the start of the name). */
function fieldsMatcher(fields: RegExp | string | undefined): (name: string) => boolean {
  if (fields === undefined) return () => true;
  if (fields instanceof RegExp) {
    const re = new RegExp(fields.source, fields.flags.replace(/[gy]/g, ""));
    return (name) => re.test(name);
  }
  if (typeof fields !== "string")
    throw new InvalidArgumentError("fields", fields, "a RegExp or a regular-expression string");
  let re: RegExp;
  try {
    re = new RegExp(`^(?:${fields})`);
  } catch {
    throw new InvalidArgumentError("fields", fields, "a valid regular expression");
  }
  return (name) => re.test(name);
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
