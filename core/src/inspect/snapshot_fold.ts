/**
 * The run-folding rule of display.v1 page-table snapshots (`definitions.entry.count`), shared by
 * the guest snapshot (pgtable_builder.ts) and the TDP snapshot (mmu_introspect.ts): a leaf folds
 * into the run before it when it sits at the next index, shows the same flags, page size, pkey
 * and note, its frame continues the run's frames, and its whole value is the run's first value
 * plus k pages (so bits no flag names — PWT, PCD, PAT, ignored bits, memory type — match too,
 * and a renderer can recompute every member). Only runs of two or more carry `count`.
 * Snapshots are built on request for display, never on a hot path, so BigInt is fine here.
 * Also the one title rule of both snapshots ({@link snapshotTitle}).
 */
import type { Entry } from "../display/types";
import { InvalidArgumentError } from "../errors";

/** Largest run one entry may stand for (schema `entry.count` maximum). */
const MAX_RUN = 1024;

function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Folds alike leaves of ONE table while its entries are listed in index order. */
export class LeafRunFolder {
  private run: Entry | null = null;
  private nextFrame = 0;
  private step = 0;
  /** Value the next member must have: first value + count × step pages. */
  private nextValue = 0n;

  /**
   * Adds leaf `e` (frame `frame`) to the open run when it continues it; returns true if folded
   * (then `e` must not be listed). A false return leaves the run open: call {@link open} or
   * {@link close} next.
   */
  fold(e: Entry, frame: number): boolean {
    const r = this.run;
    if (r === null || !e.leaf || frame !== this.nextFrame || BigInt(e.value) !== this.nextValue)
      return false;
    const count = r.count ?? 1;
    if (
      count >= MAX_RUN ||
      e.index !== r.index + count ||
      e.pageSize !== r.pageSize ||
      e.pkey !== r.pkey ||
      e.note !== r.note ||
      !sameFlags(e.flags, r.flags)
    )
      return false;
    r.count = count + 1;
    this.nextFrame += this.step;
    this.nextValue += BigInt(this.step) * 4096n;
    return true;
  }

  /** `e` was listed: a leaf opens a run whose next frame is `frame + step`; a non-leaf closes it. */
  open(e: Entry, frame: number, step: number): void {
    if (!e.leaf) {
      this.run = null;
      return;
    }
    this.run = e;
    this.nextFrame = frame + step;
    this.step = step;
    this.nextValue = BigInt(e.value) + BigInt(step) * 4096n;
  }

  /** Ends the open run (an absent entry, or one left out of a bounded snapshot). */
  close(): void {
    this.run = null;
  }
}

/**
 * The title both snapshots take (`builder.snapshot()`, `vm.snapshot()`): `title` is the name,
 * `label` an alias of it (the TDP snapshot called it `label` first, the guest one `title`; each
 * now takes either). Giving both with different values is an error, since one would be dropped.
 * @throws InvalidArgumentError for a non-string, a string over 200 characters, or two values.
 */
export function snapshotTitle(opts: { title?: unknown; label?: unknown }): string | undefined {
  const { title, label } = opts;
  for (const [k, v] of [
    ["title", title],
    ["label", label],
  ] as const) {
    if (v !== undefined && (typeof v !== "string" || v.length > 200)) {
      throw new InvalidArgumentError(k, v, "a string of at most 200 characters");
    }
  }
  if (title !== undefined && label !== undefined && title !== label) {
    throw new InvalidArgumentError(
      "label",
      label,
      `the title's value (${JSON.stringify(title)}) or nothing: label is an alias of title`,
    );
  }
  return (title ?? label) as string | undefined;
}
