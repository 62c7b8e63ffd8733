/**
 * MMU trace events (mmutrace.h, and x86 trace.h's `kvm_page_fault`): an ordered, deterministic
 * record of what the MMU did, under the kernel's tracepoint names with their fields in the
 * kernel's order, plus what users asked for on top (the vCPU, the mapping level, the RET_PF_*
 * outcome and why a fault was retried).
 *
 * Records live in a bounded ring of typed arrays (one Float64Array row per event: sequence
 * number, event id, vCPU, up to {@link TRACE_FIELDS} numeric fields; 64-bit values take two;
 * strings are interned), so
 * recording allocates nothing per event; when the ring is full the oldest records are
 * overwritten and counted in `dropped`. While tracing is off the hot paths pay one property test
 * (`trace.on`). Decoding, the Perfetto/Chrome JSON and the `perf script` text are built only on
 * request ({@link MmuTrace.events}, x86's `vm.trace*` views).
 */
import { InvalidArgumentError } from "../errors";
import { HEAP_TYPED_ARRAY_BYTES, MC, MemCg } from "../kvm/memcg";

/** Numeric fields a record holds (an spte takes two: low and high word). */
export const TRACE_FIELDS = 8;
const STRIDE = 3 + TRACE_FIELDS;
/** Bytes of one record in the ring. */
export const TRACE_RECORD_BYTES = STRIDE * 8;
/**
 * V8 heap bytes allowed per decoded event (`stop()` returns an object per record with its fields
 * object: about 260 bytes measured on Node 20, and the views built on them add more): a ring is
 * refused when decoding it would not fit the JS-heap budget.
 */
export const TRACE_DECODED_EVENT_HEAP_BYTES = 400;
/** Largest ring: its Float64Array stays below 2^31 elements, a length every V8 accepts. */
export const TRACE_MAX_CAPACITY = 195225786; // floor((2^31 - 1) / STRIDE): a literal, so builds inline it

/** How a field is stored and printed. */
type FieldKind =
  | "u" // unsigned integer, printed in decimal
  | "x" // integer, printed in hex
  | "spte" // two slots: low and high word of a 64-bit value, printed in hex
  | "x64" // the same for a 64-bit address (a gva may exceed 2^53)
  | "str" // interned string
  | "bool"
  | "ret" // RET_PF_* value, printed by name
  | "vcpu"; // the event's vCPU (`vcpu_id`), taken from the record: no slot of its own

/** Where an event is drawn: on its vCPU's track, or on the VM-wide one. */
type Track = "vcpu" | "vm";

interface EventDef {
  readonly name: string;
  /** The tracepoint's system in `perf script` (`kvm` or `kvmmmu`). */
  readonly system: "kvm" | "kvmmmu";
  readonly track: Track;
  readonly fields: readonly (readonly [string, FieldKind])[];
}

/** `KVM_MMU_PAGE_FIELDS` of the shadow-page tracepoints. */
const SP_FIELDS = [
  ["gfn", "x"],
  ["role", "x"],
  ["root_count", "u"],
  ["unsync", "bool"],
] as const;

/**
 * The events, by id. Fields follow each tracepoint's TP_STRUCT order; `mmulab_*` events are
 * the simulator's own (no kernel tracepoint carries them).
 */
export const TRACE_EVENTS = [
  // x86 trace.h: handle_ept_violation / the #PF intercept.
  {
    name: "kvm_page_fault",
    system: "kvm",
    track: "vcpu",
    fields: [
      ["vcpu_id", "u"],
      ["fault_address", "x64"],
      ["error_code", "x"],
    ],
  },
  // The fault's outcome: vCPU, goal level, RET_PF_* and the reason of a retry.
  {
    name: "mmulab_page_fault_done",
    system: "kvmmmu",
    track: "vcpu",
    fields: [
      ["vcpu_id", "u"],
      ["gfn", "x"],
      ["level", "u"],
      ["ret", "ret"],
      ["retry_reason", "str"],
    ],
  },
  {
    name: "kvm_mmu_pagetable_walk",
    system: "kvmmmu",
    track: "vcpu",
    fields: [
      ["addr", "x64"],
      ["pferr", "x"],
    ],
  },
  {
    name: "kvm_mmu_paging_element",
    system: "kvmmmu",
    track: "vcpu",
    fields: [
      ["pte", "spte"],
      ["level", "u"],
    ],
  },
  { name: "kvm_mmu_walker_error", system: "kvmmmu", track: "vcpu", fields: [["pferr", "x"]] },
  {
    name: "kvm_mmu_get_page",
    system: "kvmmmu",
    track: "vcpu",
    fields: [...SP_FIELDS, ["created", "bool"]],
  },
  {
    name: "kvm_mmu_sync_page",
    system: "kvmmmu",
    track: "vcpu",
    fields: SP_FIELDS,
  },
  {
    name: "kvm_mmu_unsync_page",
    system: "kvmmmu",
    track: "vcpu",
    fields: SP_FIELDS,
  },
  {
    name: "kvm_mmu_prepare_zap_page",
    system: "kvmmmu",
    track: "vm",
    fields: SP_FIELDS,
  },
  {
    name: "mark_mmio_spte",
    system: "kvmmmu",
    track: "vcpu",
    fields: [
      ["sptep", "x"],
      ["gfn", "x"],
      ["access", "u"],
      ["gen", "u"],
    ],
  },
  {
    name: "fast_page_fault",
    system: "kvmmmu",
    track: "vcpu",
    fields: [
      ["vcpu_id", "vcpu"],
      ["cr2_or_gpa", "x64"],
      ["error_code", "x"],
      ["old_spte", "spte"],
      ["new_spte", "spte"],
      // KVM prints `spurious` and `fixed` from it.
      ["ret", "ret"],
    ],
  },
  { name: "kvm_mmu_zap_all_fast", system: "kvmmmu", track: "vm", fields: [["mmu_valid_gen", "u"]] },
  {
    name: "kvm_mmu_set_spte",
    system: "kvmmmu",
    track: "vcpu",
    fields: [
      ["gfn", "x"],
      ["spte", "spte"],
      ["sptep", "x"],
      ["level", "u"],
    ],
  },
  {
    name: "kvm_mmu_spte_requested",
    system: "kvmmmu",
    track: "vcpu",
    fields: [
      ["gfn", "x"],
      ["pfn", "x"],
      ["level", "u"],
    ],
  },
  {
    name: "kvm_tdp_mmu_spte_changed",
    system: "kvmmmu",
    track: "vm",
    fields: [
      ["as_id", "u"],
      ["gfn", "x"],
      ["level", "u"],
      ["old_spte", "spte"],
      ["new_spte", "spte"],
    ],
  },
  {
    name: "kvm_mmu_split_huge_page",
    system: "kvmmmu",
    track: "vm",
    fields: [
      ["gfn", "x"],
      ["spte", "spte"],
      ["level", "u"],
      ["errno", "u"],
    ],
  },
  // The simulator's VM-wide work: remote flushes, and the collapse when logging stops (emitted
  // when it is done; `changed`: the sptes it zapped or the huge sptes it made in place).
  { name: "mmulab_flush_remote_tlbs", system: "kvmmmu", track: "vm", fields: [["reason", "str"]] },
  {
    name: "mmulab_collapse",
    system: "kvmmmu",
    track: "vm",
    fields: [
      ["mode", "str"],
      ["start", "x"],
      ["end", "x"],
      ["changed", "u"],
    ],
  },
] as const satisfies readonly EventDef[];

/** A trace event's name. */
export type TraceEventName = (typeof TRACE_EVENTS)[number]["name"];

const IDS: Record<string, number> = {};
TRACE_EVENTS.forEach((e, i) => {
  IDS[e.name] = i;
});
/** Event ids for the emitters (numbers, so emitting looks nothing up). */
export const EV = {
  pageFault: IDS.kvm_page_fault!,
  faultDone: IDS.mmulab_page_fault_done!,
  walk: IDS.kvm_mmu_pagetable_walk!,
  element: IDS.kvm_mmu_paging_element!,
  walkerError: IDS.kvm_mmu_walker_error!,
  getPage: IDS.kvm_mmu_get_page!,
  syncPage: IDS.kvm_mmu_sync_page!,
  unsyncPage: IDS.kvm_mmu_unsync_page!,
  prepareZap: IDS.kvm_mmu_prepare_zap_page!,
  markMmio: IDS.mark_mmio_spte!,
  fastPf: IDS.fast_page_fault!,
  zapAllFast: IDS.kvm_mmu_zap_all_fast!,
  setSpte: IDS.kvm_mmu_set_spte!,
  spteRequested: IDS.kvm_mmu_spte_requested!,
  tdpChanged: IDS.kvm_tdp_mmu_spte_changed!,
  split: IDS.kvm_mmu_split_huge_page!,
  flush: IDS.mmulab_flush_remote_tlbs!,
  collapse: IDS.mmulab_collapse!,
} as const;

/** RET_PF_* names (mmu_internal.h order). */
const RET_NAMES = ["continue", "retry", "emulate", "invalid", "fixed", "spurious"];

/** A decoded event: sequence number, name, vCPU (-1 for VM-wide work) and its fields. */
export interface MmuTraceEvent {
  seq: number;
  name: TraceEventName;
  vcpu: number;
  fields: Record<string, number | string | boolean>;
}

/** The VM's trace ring. */
export class MmuTrace {
  /** True while recording. */
  on = false;
  /** Records overwritten because the ring was full. */
  dropped = 0;
  /** vCPU the next events belong to (-1: VM-wide work, e.g. an ioctl). */
  vcpu = -1;
  /**
   * Per event id, how often the tracepoint fired while it was enabled, over the VM's life (not
   * reset by {@link start}, not bounded by the ring): what `kvm_stat` reads from a perf counter
   * per tracepoint (tools/kvm/kvm_stat, `TracepointProvider`).
   */
  readonly hits: Float64Array = new Float64Array(TRACE_EVENTS.length);
  /** Per event id, 1 when recorded (`perf record -e`); all 1 unless {@link start} got a list. */
  private readonly enabled = new Uint8Array(TRACE_EVENTS.length).fill(1);
  private ring = new Float64Array(0);
  private capacity = 0;
  private next = 0;
  private count = 0;
  private seq = 0;
  private readonly strings: string[] = [];
  private readonly stringIds = new Map<string, number>();
  /** The VM's memory account (category `trace`). */
  private readonly memcg: MemCg;

  /** `memcg`: the VM's account (default: an unlimited one, for a standalone trace). */
  constructor(memcg: MemCg = new MemCg(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)) {
    this.memcg = memcg;
  }

  /**
   * Start recording into a ring of `capacity` events (the newest are kept): every event, or only
   * those named in `events` (as `perf record -e kvm:kvm_page_fault` enables one tracepoint).
   * @throws InvalidArgumentError for a bad capacity or an unknown event name (nothing changes).
   */
  start(capacity = 10000, events?: readonly string[]): void {
    if (typeof capacity !== "number" || !Number.isSafeInteger(capacity) || capacity < 1)
      throw new InvalidArgumentError(
        "capacity",
        capacity,
        `an integer from 1 to ${TRACE_MAX_CAPACITY}, within the VM's memory budget`,
      );
    if (events !== undefined) {
      if (!Array.isArray(events) || events.length === 0)
        throw new InvalidArgumentError("events", events, "a non-empty array of event names");
      for (const name of events)
        if (typeof name !== "string" || IDS[name] === undefined)
          throw new InvalidArgumentError(
            "events",
            name,
            `one of ${TRACE_EVENTS.map((e) => e.name).join(", ")}`,
          );
    }
    // The new ring replaces the old one; stop() will decode up to `capacity` events on the heap.
    const old = this.ring.byteLength;
    this.memcg.check(
      `vm.startTrace(${capacity}): a trace ring of ${capacity} events (${TRACE_RECORD_BYTES} bytes each)`,
      capacity * TRACE_RECORD_BYTES - old,
      0,
      capacity * TRACE_DECODED_EVENT_HEAP_BYTES,
    );
    if (capacity > TRACE_MAX_CAPACITY)
      throw new InvalidArgumentError(
        "capacity",
        capacity,
        `an integer from 1 to ${TRACE_MAX_CAPACITY} (the largest ring a typed array holds)`,
      );
    this.enabled.fill(events === undefined ? 1 : 0);
    if (events !== undefined) for (const name of events) this.enabled[IDS[name]!] = 1;
    this.ring = new Float64Array(capacity * STRIDE);
    this.memcg.charge(MC.trace, this.ring.byteLength - old, old === 0 ? HEAP_TYPED_ARRAY_BYTES : 0);
    this.capacity = capacity;
    this.next = 0;
    this.count = 0;
    this.seq = 0;
    this.dropped = 0;
    this.on = true;
  }

  /** Stop recording and return the events, oldest first. */
  stop(): MmuTraceEvent[] {
    this.on = false;
    return this.events();
  }

  /** Interned id of `s` (for "str" fields). */
  str(s: string): number {
    let id = this.stringIds.get(s);
    if (id === undefined) {
      id = this.strings.length;
      this.strings.push(s);
      this.stringIds.set(s, id);
    }
    return id;
  }

  /**
   * Record event `id` with up to eight numeric fields (callers test `on` first). The vCPU is
   * {@link vcpu} unless the event is drawn on the VM-wide track.
   */
  emit(id: number, a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0): void {
    if (this.enabled[id] === 0) return;
    this.hits[id]!++;
    const o = this.next * STRIDE;
    const r = this.ring;
    r[o] = this.seq++;
    r[o + 1] = id;
    r[o + 2] = this.vcpu;
    r[o + 3] = a;
    r[o + 4] = b;
    r[o + 5] = c;
    r[o + 6] = d;
    r[o + 7] = e;
    r[o + 8] = f;
    r[o + 9] = g;
    r[o + 10] = h;
    this.next = this.next + 1 === this.capacity ? 0 : this.next + 1;
    if (this.count < this.capacity) this.count++;
    else this.dropped++;
  }

  /** The recorded events, oldest first, decoded. */
  events(): MmuTraceEvent[] {
    const out: MmuTraceEvent[] = [];
    const first = this.count < this.capacity ? 0 : this.next;
    for (let k = 0; k < this.count; k++) {
      const o = ((first + k) % this.capacity) * STRIDE;
      const r = this.ring;
      const def = TRACE_EVENTS[r[o + 1]!]! as EventDef;
      const fields: Record<string, number | string | boolean> = {};
      let slot = o + 3;
      for (const [name, kind] of def.fields) {
        if (kind === "vcpu") {
          fields[name] = r[o + 2]!;
          continue;
        }
        const v = r[slot++]!;
        if (kind === "spte" || kind === "x64") {
          const hi = r[slot++]!;
          // Exact as a double below 2^53; only values past it need BigInt (here only, when
          // decoding).
          fields[name] =
            hi < 0x200000
              ? `0x${(hi * 4294967296 + v).toString(16)}`
              : `0x${((BigInt(hi) << 32n) | BigInt(v)).toString(16)}`;
        } else if (kind === "str") fields[name] = this.strings[v] ?? "";
        else if (kind === "bool") fields[name] = v !== 0;
        else if (kind === "ret") fields[name] = RET_NAMES[v] ?? String(v);
        // A negative hex field is "none" (no gfn for a fault retried before the walk found one).
        else if (kind === "x") fields[name] = v < 0 ? "-" : `0x${v.toString(16)}`;
        else fields[name] = v;
      }
      out.push({
        seq: r[o]!,
        name: def.name as TraceEventName,
        vcpu: def.track === "vm" ? -1 : r[o + 2]!,
        fields,
      });
    }
    return out;
  }
}

/** The tracepoint's definition (system, track, field kinds) of an event name. */
export function traceEventDef(name: string): EventDef | undefined {
  const i = IDS[name];
  return i === undefined ? undefined : (TRACE_EVENTS[i] as EventDef);
}

/**
 * The events as `perf script` prints them: `comm pid [cpu] time: system:event: fields`, one
 * line each, the time being the sequence number in microseconds (the trace is deterministic,
 * not timed).
 */
export function perfScriptText(events: readonly MmuTraceEvent[]): string {
  return events
    .map((e) => {
      const def = traceEventDef(e.name)!;
      const comm = e.vcpu >= 0 ? `vcpu${e.vcpu}` : "kvm-vm";
      const cpu = String(Math.max(e.vcpu, 0)).padStart(3, "0");
      const t = (e.seq / 1e6).toFixed(6);
      const f = Object.entries(e.fields)
        .map(([k, v]) => `${k} ${v}`)
        .join(" ");
      return `${comm.padStart(12)} ${String(e.vcpu >= 0 ? 1000 + e.vcpu : 999).padStart(6)} [${cpu}] ${t.padStart(13)}: ${def.system}:${e.name}: ${f}`;
    })
    .join("\n");
}

/** A Chrome/Perfetto trace-event JSON document. */
export interface ChromeTrace {
  traceEvents: Record<string, unknown>[];
  displayTimeUnit: "ns" | "ms";
  otherData: Record<string, string>;
}

/**
 * The events as Chrome trace-event JSON (which Perfetto loads): one track (thread) per vCPU and
 * one for VM-wide work (zaps, flushes, splits, collapses); a page fault is a slice from
 * `kvm_page_fault` to its `mmulab_page_fault_done`, everything else an instant event.
 * Timestamps are sequence numbers in microseconds, so the document is the same on every run.
 * Slices stay balanced when the ring dropped or the trace left out a fault's end: a fault
 * still open when the next one starts on its track ends there, and one open at the end of the
 * trace ends one microsecond after the last event. Metadata events carry `ts: 0` and category
 * `__metadata`, as Chrome's own traces do.
 */
export function chromeTrace(events: readonly MmuTraceEvent[]): ChromeTrace {
  const pid = 1;
  const tidOf = (vcpu: number) => (vcpu >= 0 ? vcpu + 1 : 0);
  const meta = (name: string, tid: number, label: string) => ({
    name,
    cat: "__metadata",
    ph: "M",
    ts: 0,
    pid,
    tid,
    args: { name: label },
  });
  const out: Record<string, unknown>[] = [
    meta("process_name", 0, "mmulab VM"),
    meta("thread_name", 0, "VM-wide (zaps, flushes, splits)"),
  ];
  const vcpus = new Set(events.filter((e) => e.vcpu >= 0).map((e) => e.vcpu));
  for (const v of [...vcpus].sort((a, b) => a - b))
    out.push(meta("thread_name", tidOf(v), `vCPU ${v}`));
  const open = new Set<number>();
  for (const e of events) {
    const tid = tidOf(e.vcpu);
    if (e.name === "kvm_page_fault") {
      if (open.has(tid)) out.push({ name: "page fault", cat: "kvm", ph: "E", ts: e.seq, pid, tid });
      out.push({ name: "page fault", cat: "kvm", ph: "B", ts: e.seq, pid, tid, args: e.fields });
      open.add(tid);
    } else if (e.name === "mmulab_page_fault_done" && open.has(tid)) {
      out.push({ name: "page fault", cat: "kvm", ph: "E", ts: e.seq, pid, tid, args: e.fields });
      open.delete(tid);
    } else {
      const def = traceEventDef(e.name)!;
      out.push({
        name: e.name,
        cat: def.system,
        ph: "i",
        s: "t",
        ts: e.seq,
        pid,
        tid,
        args: e.fields,
      });
    }
  }
  const end = events.length > 0 ? events[events.length - 1]!.seq + 1 : 0;
  for (const tid of open) out.push({ name: "page fault", cat: "kvm", ph: "E", ts: end, pid, tid });
  return { traceEvents: out, displayTimeUnit: "ns", otherData: { producer: "mmulab" } };
}
