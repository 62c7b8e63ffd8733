/**
 * `vm.memoryUsage()`: where a VM's memory goes, by category, against its budget — what a
 * cgroup's `memory.current` and `memory.stat` tell about the VM process, for the simulator's own
 * allocations (kvm/memcg.ts). Built on request from the account's counters.
 */
import { htmlTableBundle, JUPYTER_DISPLAY, type MimeBundle } from "../display";
import { InvalidArgumentError } from "../errors";
import { MEM_CATEGORIES, MEM_CATEGORY_TEXT, type MemCategory, type MemCg } from "../kvm/memcg";

/** One category of {@link MemoryUsage}. */
export interface MemoryUsageRow {
  category: MemCategory;
  /** Bytes charged: typed-array storage plus the estimated JS objects holding it. */
  bytes: number;
  /** The part of `bytes` on V8's heap (estimated per object). */
  heapBytes: number;
  /** Bytes reserved for allocations still to come (slot rmaps and write tracking). */
  reservedBytes: number;
  /** What the category holds. */
  holds: string;
}

/** Bytes as a short binary-unit figure, "1.50 MiB". */
function mib(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/** A VM's memory account at one moment. */
export class MemoryUsage {
  /** The VM's memory budget (`createVm({ memoryBudget })`). */
  readonly budgetBytes: number;
  /** The budget of JS objects on V8's heap. */
  readonly heapBudgetBytes: number;
  /** Charged plus reserved bytes: what the next operation's estimate is added to. */
  readonly usedBytes: number;
  /** Charged plus reserved heap bytes. */
  readonly heapUsedBytes: number;
  /** The largest `usedBytes` so far. */
  readonly peakBytes: number;
  /** Per category, in a fixed order. */
  readonly categories: readonly MemoryUsageRow[];

  constructor(memcg: MemCg) {
    this.budgetBytes = memcg.budget;
    this.heapBudgetBytes = memcg.heapBudget;
    this.usedBytes = memcg.used;
    this.heapUsedBytes = memcg.heapUsed;
    this.peakBytes = memcg.peak;
    this.categories = MEM_CATEGORIES.map((category, i) => ({
      category,
      bytes: memcg.bytes[i]!,
      heapBytes: memcg.heapBytes[i]!,
      reservedBytes: memcg.reservedBytes[i]!,
      holds: MEM_CATEGORY_TEXT[category],
    }));
  }

  /** Bytes charged to one category. */
  get(category: MemCategory): MemoryUsageRow {
    const row = this.categories.find((c) => c.category === category);
    if (row === undefined)
      throw new InvalidArgumentError("category", category, `one of ${MEM_CATEGORIES.join(", ")}`);
    return row;
  }

  /** One line: `MemoryUsage(12.3 MiB of 4.00 GiB, 0.3%; mmuPages 8.1 MiB, ...)`. */
  toString(): string {
    const parts = this.categories
      .filter((c) => c.bytes + c.reservedBytes > 0)
      .map((c) => `${c.category} ${mib(c.bytes + c.reservedBytes)}`);
    const pct = ((100 * this.usedBytes) / this.budgetBytes).toFixed(1);
    return `MemoryUsage(${mib(this.usedBytes)} of ${mib(this.budgetBytes)}, ${pct}%; ${parts.join(", ")})`;
  }

  /** Jupyter display: a table of the categories, with the budgets in the title. */
  [JUPYTER_DISPLAY](): MimeBundle {
    const pct = ((100 * this.usedBytes) / this.budgetBytes).toFixed(1);
    const title =
      `VM memory: ${mib(this.usedBytes)} of a ${mib(this.budgetBytes)} budget (${pct}%), ` +
      `JS heap ${mib(this.heapUsedBytes)} of ${mib(this.heapBudgetBytes)}, peak ${mib(this.peakBytes)}`;
    return htmlTableBundle(
      title,
      this.categories.map((c) => ({
        category: c.category,
        bytes: c.bytes,
        size: mib(c.bytes),
        "of which JS heap": mib(c.heapBytes),
        reserved: c.reservedBytes > 0 ? mib(c.reservedBytes) : "",
        holds: c.holds,
      })),
      this.toString(),
    );
  }
}
