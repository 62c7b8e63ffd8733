/**
 * What changed between two snapshots of the same trees, folded the way snapshots fold their runs
 * (snapshot_fold.ts), so a guest that touched 2,048 pages reads as one line, not 2,048.
 *
 * Each tree is compared index by index (payload runs are expanded into their members: member k
 * of a run maps the k-th next span and points k page sizes further), through child tables; an
 * entry whose table appeared or disappeared counts as added or removed with all its entries.
 * Every difference is one change at one level with the address its entry maps. Changes of one
 * level then fold into a run while they are of the same kind, their addresses follow each other
 * (each maps the span after the previous one, across table boundaries), their flags are the
 * run's, and on each side (before, after) each member's frames continue the previous member's
 * exactly as a snapshot run's do: the value moves by one page (one 4 KiB frame for an entry
 * pointing at a table or an MMIO spte) and the target by as many frames. So a run holds contiguous
 * memory changed the same way, and its members can be recomputed from the first and last.
 *
 * Runs on request for display (never on a hot path): BigInt is fine here.
 */
import type {
  ChangeKind,
  ChangeRun,
  ChangeSide,
  Entry,
  Flag,
  LevelChanges,
  LevelName,
  PagetableChanges,
  Table,
  Tree,
} from "../display/types";

/** Runs a payload carries at most (schema `changes.runs` maxItems). */
export const MAX_CHANGE_RUNS = 1000;

/** log2 of the bytes one entry of a `level` table maps (10 index bits per level in 32-bit paging). */
function entryShift(format: Tree["format"], level: number): bigint {
  return BigInt(12 + (format === "32-bit" ? 10 : 9) * (level - 1));
}

/** 4 KiB frames from one member of a payload run to the next (the snapshots' folding step). */
function memberStep(format: Tree["format"], level: number, e: Entry): bigint {
  if (!e.leaf || e.flags.includes("mmio")) return 1n;
  if (e.pageSize !== undefined) return BigInt(e.pageSize / 4096);
  return 1n << (entryShift(format, level) - 12n);
}

/** One index of a table, unfolded. */
interface Member {
  value: bigint;
  flags: Flag[];
  target?: bigint;
  addr: bigint;
  /** 4 KiB frames the next member of a run must point past this one ({@link memberStep}) */
  step: bigint;
  /** the child table, on the entry's first index only */
  child?: Table;
}

/** The members of `t` by index, addresses from `base` (or each entry's own `va`). */
function members(format: Tree["format"], t: Table | undefined, base: bigint): Map<number, Member> {
  const out = new Map<number, Member>();
  if (t === undefined) return out;
  const shift = entryShift(format, t.level);
  for (const e of t.entries) {
    const step = memberStep(format, t.level, e);
    const first = e.va !== undefined ? BigInt(e.va) : base + (BigInt(e.index) << shift);
    for (let k = 0; k < (e.count ?? 1); k++) {
      const kk = BigInt(k);
      const m: Member = {
        value: BigInt(e.value) + kk * step * 4096n,
        flags: e.flags,
        addr: first + (kk << shift),
        step,
      };
      if (e.target !== undefined) m.target = BigInt(e.target) + kk * step;
      if (k === 0 && e.child !== undefined) m.child = e.child;
      out.set(e.index + k, m);
    }
  }
  return out;
}

/** One difference, before folding. */
interface Change {
  level: number;
  name: LevelName;
  kind: ChangeKind;
  addr: bigint;
  before?: Member;
  after?: Member;
}

function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((f, i) => f === b[i]);
}

function sameMember(a: Member, b: Member): boolean {
  return a.value === b.value && a.target === b.target && sameFlags(a.flags, b.flags);
}

/** Appends the changes of `now` against `old` (same path in both trees) to `out`, per level. */
function diffTable(
  format: Tree["format"],
  now: Table | undefined,
  old: Table | undefined,
  base: bigint,
  out: Map<number, Change[]>,
): void {
  const t = (now ?? old) as Table;
  const a = members(format, now, base);
  const b = members(format, old, base);
  const indices = [...new Set([...a.keys(), ...b.keys()])].sort((x, y) => x - y);
  for (const i of indices) {
    const m = a.get(i);
    const o = b.get(i);
    const kind: ChangeKind | null =
      o === undefined ? "added" : m === undefined ? "removed" : sameMember(m, o) ? null : "changed";
    const addr = (m ?? o)!.addr;
    if (kind !== null) {
      let list = out.get(t.level);
      if (list === undefined) {
        list = [];
        out.set(t.level, list);
      }
      list.push({ level: t.level, name: t.name, kind, addr, before: o, after: m });
    }
    if (m?.child !== undefined || o?.child !== undefined) {
      diffTable(format, m?.child, o?.child, addr, out);
    }
  }
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** A run being folded: its first and last change and the address span of one member. */
interface OpenRun {
  first: Change;
  last: Change;
  count: number;
  span: bigint;
}

/** Whether `c` continues `p` on one side: both absent, or alike and the frames contiguous. */
function continues(p: Member | undefined, c: Member | undefined): boolean {
  if (p === undefined || c === undefined) return p === c;
  if (!sameFlags(p.flags, c.flags) || c.step !== p.step) return false;
  if (c.value !== p.value + p.step * 4096n) return false;
  return p.target === undefined ? c.target === undefined : c.target === p.target + p.step;
}

/** Whether change `c` continues run `r` (then it is the run's new last member). */
function extend(r: OpenRun, c: Change): boolean {
  const p = r.last;
  if (c.kind !== p.kind || c.addr !== p.addr + r.span) return false;
  if (!continues(p.after, c.after) || !continues(p.before, c.before)) return false;
  r.last = c;
  r.count++;
  return true;
}

function side(first: Member | undefined, last: Member, count: number): ChangeSide | undefined {
  if (first === undefined) return undefined;
  const s: ChangeSide = { value: hex(first.value), flags: first.flags };
  if (first.target !== undefined) s.target = hex(first.target);
  if (count > 1) s.last = hex(last.value);
  return s;
}

function closeRun(tree: number, r: OpenRun): ChangeRun {
  const { first, last, count } = r;
  const run: ChangeRun = {
    tree,
    level: first.level,
    name: first.name,
    kind: first.kind,
    count,
    addr: hex(first.addr),
  };
  if (count > 1) run.lastAddr = hex(last.addr);
  const before = side(first.before, last.before as Member, count);
  const after = side(first.after, last.after as Member, count);
  if (before !== undefined) run.before = before;
  if (after !== undefined) run.after = after;
  return run;
}

/**
 * What differs between `before` and `after` (snapshots of the same trees, in the same order):
 * counts per tree and level, and the folded change runs (at most {@link MAX_CHANGE_RUNS}; the
 * rest counted in `omitted`).
 */
export function foldChanges(before: readonly Tree[], after: readonly Tree[]): PagetableChanges {
  const levels: LevelChanges[] = [];
  const runs: ChangeRun[] = [];
  let omitted = 0;
  after.forEach((tree, t) => {
    const byLevel = new Map<number, Change[]>();
    diffTable(tree.format, tree.root, before[t]?.root, 0n, byLevel);
    for (const level of [...byLevel.keys()].sort((x, y) => y - x)) {
      const list = byLevel.get(level) as Change[];
      const count = { added: 0, removed: 0, changed: 0 };
      for (const c of list) count[c.kind]++;
      levels.push({ tree: t, level, name: list[0]!.name, ...count });
      const span = 1n << entryShift(tree.format, level);
      let open: OpenRun | null = null;
      const close = (r: OpenRun): void => {
        if (runs.length < MAX_CHANGE_RUNS) runs.push(closeRun(t, r));
        else omitted++;
      };
      for (const c of list) {
        if (open !== null && extend(open, c)) continue;
        if (open !== null) close(open);
        open = { first: c, last: c, count: 1, span };
      }
      if (open !== null) close(open);
    }
  });
  const out: PagetableChanges = { levels, runs };
  if (omitted > 0) out.omitted = omitted;
  return out;
}
