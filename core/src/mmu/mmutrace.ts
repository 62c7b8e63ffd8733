/**
 * MMU trace events (mmutrace.h): an ordered record of what the MMU did, for notebooks that need
 * to show why a number came out as it did. Recording is off until {@link MmuTrace.start}; while
 * it is off the hot paths pay one property test (`trace.on`).
 */
import { InvalidArgumentError } from "../errors";

/** One trace event: a handled page fault (`kvm_mmu_page_fault`) or a remote TLB flush. */
export type MmuTraceEvent =
  | {
      ev: "fault";
      /** gfn of the fault. */
      gfn: number;
      /** PFERR_* error code. */
      err: number;
      /** Which path handled it: the lockless fast path, the slow path, or the MMIO path. */
      path: "fast" | "slow" | "mmio";
      /** The handler's RET_PF_* result, by name. */
      ret: string;
    }
  | {
      ev: "tlb_flush";
      /** Why the MMU flushed (the KVM function that asked). */
      reason: string;
    };

/** The VM's trace buffer. */
export class MmuTrace {
  /** True while recording. */
  on = false;
  /** Events dropped because the buffer was full. */
  dropped = 0;
  private buf: MmuTraceEvent[] = [];
  private limit = 0;

  /** Start recording, keeping at most `limit` events (later ones are counted in `dropped`). */
  start(limit = 10000): void {
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1)
      throw new InvalidArgumentError("limit", limit, "a positive integer");
    this.buf = [];
    this.limit = limit;
    this.dropped = 0;
    this.on = true;
  }

  /** Stop recording and return the events, in order. */
  stop(): MmuTraceEvent[] {
    const t = this.buf;
    this.buf = [];
    this.on = false;
    return t;
  }

  /** Record one event (callers test `on` first, so nothing is built while tracing is off). */
  emit(e: MmuTraceEvent): void {
    if (this.buf.length < this.limit) this.buf.push(e);
    else this.dropped++;
  }
}
