/**
 * The per-index diff of a page table against its `before` snapshot.
 *
 * A payload entry with `count` > 1 is a folded run of alike leaves
 * (core/src/inspect/snapshot_fold.ts): the members share flags, page size, pkey and note, and
 * member k (k = index - run.index) points
 * `k · step` frames past the run's first frame, so its value is the first value plus
 * `k · step · 4096` and its target the first target plus `k · step`. The two snapshots may fold
 * the same entries differently (a run split by one changed entry, a run grown by one leaf), so
 * entries are compared member by member, index by index, never run by run.
 *
 * Cost: one pass over each table's indices (at most 1024) with one small typed-array index per
 * table, cached per render; a run is only expanded into separate entries where the two sides
 * differ inside it (see {@link Differ.pieces}).
 */

import type { Entry, Table, Tree } from "@mmulab/core/display";
import { entryShift, parseHex64 } from "./bits";

/** Diff status of an entry against the `before` snapshot. */
export type DiffStatus = "same" | "added" | "changed";

/** One row's worth of a table: a payload entry, or a part of a run cut where the diff changes. */
export interface Piece {
  entry: Entry;
  status: DiffStatus | "removed";
  /** The `before` entry at `entry.index` (one member of a run), when there was one. */
  old?: Entry;
}

const TWO32 = 2 ** 32;

/**
 * Frames (4 KiB) from one member of a run to the next: a leaf's page size (the level's span when
 * the payload gives no size); 1 for an MMIO spte (its target is one gfn) and for an entry that
 * points at a table (one 4 KiB frame each). The same rule core uses when it folds.
 */
export function frameStep(format: Tree["format"], level: number, e: Entry): number {
  if (!e.leaf || e.flags.includes("mmio")) return 1;
  if (e.pageSize !== undefined) return e.pageSize / 4096;
  return 2 ** (entryShift(format, level) - 12);
}

/**
 * Adds `delta` (an exact integer below 2^53) to the 64-bit value held as two 32-bit halves in
 * `out[at]` (high) and `out[at + 1]` (low), wrapping at 2^64 like the hardware field would.
 */
function addSplit(out: Float64Array, at: number, delta: number): void {
  const lo = out[at + 1] + (delta % TWO32);
  const carry = lo >= TWO32 ? 1 : 0;
  out[at + 1] = lo - carry * TWO32;
  out[at] = (out[at] + Math.floor(delta / TWO32) + carry) % TWO32;
}

/** `"0x..."` plus `delta` (exact integer below 2^53), as a lower-case hex string. */
export function hexPlus(h: string, delta: number): string {
  const v = parseHex64(h);
  if (v === null || delta === 0) return h;
  const s = new Float64Array([v.hi, v.lo]);
  addSplit(s, 0, delta);
  return s[0] === 0
    ? `0x${s[1].toString(16)}`
    : `0x${s[0].toString(16)}${s[1].toString(16).padStart(8, "0")}`;
}

/**
 * Which entry of a table covers each index, with each entry's value and target split into 32-bit
 * halves (parsed once) so members can be compared without building strings.
 * Layout: `cover[i]` = entry position + 1 (0: absent); `halves[4p..4p+3]` = value hi, value lo,
 * target hi, target lo of entry p (target -1, -1 when the entry has none).
 */
class MemberIndex {
  readonly cover: Int32Array;
  readonly step: Float64Array;
  readonly flagKey: string[];
  readonly halves: Float64Array;

  constructor(
    readonly table: Table | undefined,
    format: Tree["format"],
  ) {
    const entries = table?.entries ?? [];
    let end = table?.size ?? 0;
    for (const e of entries) end = Math.max(end, e.index + (e.count ?? 1));
    this.cover = new Int32Array(end);
    this.step = new Float64Array(entries.length);
    this.flagKey = new Array<string>(entries.length);
    this.halves = new Float64Array(entries.length * 4);
    entries.forEach((e, p) => {
      // A later entry overlapping an earlier one answers for the indices they share.
      this.cover.fill(p + 1, e.index, e.index + (e.count ?? 1));
      this.step[p] = frameStep(format, table?.level ?? 1, e);
      this.flagKey[p] = e.flags.join(",");
      const v = parseHex64(e.value);
      const t = e.target === undefined ? null : parseHex64(e.target);
      const h = this.halves;
      h[p * 4] = v?.hi ?? -1;
      h[p * 4 + 1] = v?.lo ?? -1;
      h[p * 4 + 2] = t?.hi ?? -1;
      h[p * 4 + 3] = t?.lo ?? -1;
    });
  }

  get length(): number {
    return this.cover.length;
  }

  /** Position of the entry covering index `i`, or -1. */
  at(i: number): number {
    return i < this.cover.length ? this.cover[i] - 1 : -1;
  }

  entry(p: number): Entry {
    return (this.table as Table).entries[p];
  }

  /** Loads member `i` of entry `p` into `out[at..at+3]` (value hi, lo, target hi, lo). */
  load(p: number, i: number, out: Float64Array, at: number): void {
    const h = this.halves;
    for (let k = 0; k < 4; k++) out[at + k] = h[p * 4 + k];
    const frames = (i - this.entry(p).index) * this.step[p];
    if (frames === 0) return;
    if (out[at] >= 0) addSplit(out, at, frames * 4096);
    if (out[at + 2] >= 0) addSplit(out, at + 2, frames);
  }
}

/** Scratch for {@link sameMember}: member of `now` in 0..3, member of `before` in 4..7. */
const scratch = new Float64Array(8);

/** Whether index `i` holds the same entry in both tables (value, flags and frame). */
function sameMember(a: MemberIndex, pa: number, b: MemberIndex, pb: number, i: number): boolean {
  if (a.flagKey[pa] !== b.flagKey[pb]) return false;
  a.load(pa, i, scratch, 0);
  b.load(pb, i, scratch, 4);
  for (let k = 0; k < 4; k++) if (scratch[k] !== scratch[4 + k]) return false;
  return true;
}

/**
 * Diffs the tables of one tree (one format) against its `before` tree, caching each table's index
 * and each subtree's count so nested table views do not redo the work.
 */
export class Differ {
  private readonly indices = new WeakMap<Table, MemberIndex>();
  private readonly counts = new WeakMap<Table, { before: Table | undefined; n: number }>();
  private readonly empty: MemberIndex;

  constructor(readonly format: Tree["format"]) {
    this.empty = new MemberIndex(undefined, format);
  }

  private index(t: Table | undefined): MemberIndex {
    if (!t) return this.empty;
    let m = this.indices.get(t);
    if (!m) {
      m = new MemberIndex(t, this.format);
      this.indices.set(t, m);
    }
    return m;
  }

  /** Entries that differ (added, changed or removed), counted per index, through child tables. */
  count(now: Table | undefined, before: Table | undefined): number {
    if (!now && !before) return 0;
    const hit = now ? this.counts.get(now) : undefined;
    if (hit && hit.before === before) return hit.n;
    const a = this.index(now);
    const b = this.index(before);
    let n = 0;
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const pa = a.at(i);
      const pb = b.at(i);
      if (pa < 0 && pb < 0) continue;
      if (pa < 0 || pb < 0 || !sameMember(a, pa, b, pb, i)) n++;
      // A child table belongs to the entry's first index (only tables point at tables).
      const ea = pa < 0 ? undefined : a.entry(pa);
      const eb = pb < 0 ? undefined : b.entry(pb);
      const ca = ea?.index === i ? ea.child : undefined;
      const cb = eb?.index === i ? eb.child : undefined;
      if (ca || cb) n += this.count(ca, cb);
    }
    if (now) this.counts.set(now, { before, n });
    return n;
  }

  /**
   * The rows of `now` against `before`, in index order: an entry stays whole while all its
   * members share one status; a run is cut where the status changes, and changed members are cut
   * where the `before` entry they replaced changes, so each changed piece is members of one
   * `now` run that replaced members of one `before` run (both sides progress uniformly: the
   * piece reads as "n entries, was ..." with `old` the replaced members as one entry).
   * `removed` lists the indices of `before` that `now` no longer covers, as pieces of `before`'s
   * entries.
   */
  pieces(now: Table, before: Table | undefined): { rows: Piece[]; removed: Piece[] } {
    const a = this.index(now);
    const b = this.index(before);
    const level = now.level;
    const oldAt = (i: number, count: number): Entry | undefined => {
      const pb = b.at(i);
      return pb < 0 ? undefined : this.member(b.entry(pb), level, i, count);
    };
    const statusAt = (pa: number, i: number): DiffStatus => {
      const pb = b.at(i);
      return pb < 0 ? "added" : sameMember(a, pa, b, pb, i) ? "same" : "changed";
    };
    const rows: Piece[] = [];
    for (const pa of byFirstIndex(now.entries)) {
      const e = now.entries[pa];
      const end = e.index + (e.count ?? 1);
      let start = e.index;
      let cur = statusAt(pa, start);
      for (let i = start + 1; i <= end; i++) {
        const s = i < end ? statusAt(pa, i) : null;
        // A changed piece stays within one `before` entry, so its old members are one run too.
        if (s === cur && (cur !== "changed" || b.at(i) === b.at(start))) continue;
        const count = i - start;
        rows.push({
          entry: this.member(e, level, start, count),
          status: cur,
          old: oldAt(start, cur === "changed" ? count : 1),
        });
        start = i;
        cur = s as DiffStatus;
      }
    }
    const removed: Piece[] = [];
    if (before) {
      for (const pb of byFirstIndex(before.entries)) {
        const o = before.entries[pb];
        const end = o.index + (o.count ?? 1);
        for (let i = o.index; i < end; ) {
          if (a.at(i) >= 0 || b.at(i) !== pb) {
            i++;
            continue;
          }
          let j = i + 1;
          while (j < end && a.at(j) < 0 && b.at(j) === pb) j++;
          const m = this.member(o, level, i, j - i);
          removed.push({ entry: m, status: "removed", old: m });
          i = j;
        }
      }
    }
    return { rows, removed };
  }

  /**
   * Members `from .. from + count - 1` of entry `e` as one entry (`e` itself when that is all of
   * it): value, target and first address continue the run's; a child table stays with the first.
   */
  private member(e: Entry, level: number, from: number, count: number): Entry {
    const k = from - e.index;
    if (k === 0 && count === (e.count ?? 1)) return e;
    const m: Entry = { ...e, index: from };
    if (count > 1) m.count = count;
    else delete m.count;
    if (k > 0) {
      const frames = k * frameStep(this.format, level, e);
      m.value = hexPlus(e.value, frames * 4096);
      if (e.target !== undefined) m.target = hexPlus(e.target, frames);
      if (e.va !== undefined) m.va = hexPlus(e.va, k * 2 ** entryShift(this.format, level));
      delete m.child;
    }
    return m;
  }
}

/** Positions of `entries` sorted by index (payloads list them in order; crafted ones may not). */
function byFirstIndex(entries: readonly Entry[]): number[] {
  const order = entries.map((_, p) => p);
  return order.sort((x, y) => entries[x].index - entries[y].index);
}
