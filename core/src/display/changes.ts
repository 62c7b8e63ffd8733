/**
 * Words for a folded change list (`PagetablePayload.changes`, made by core's change_fold.ts),
 * shared by the static fallbacks (bundle.ts) and the lab extension's renderer so the two say the
 * same thing. Runs on display and on clicks only, so BigInt is fine.
 */
import type { ChangeRun, ChangeSide, LevelChanges, Tree } from "./types";

/** What a run's members' addresses are: gpas in a TDP tree, gvas in guest and shadow trees. */
export function addressName(tree: Pick<Tree, "kind">): "gpa" | "gva" {
  return tree.kind === "tdp" ? "gpa" : "gva";
}

/** Flags gained and lost, e.g. `+accessed +dirty -writable` (empty when the flags are equal). */
export function flagDelta(before: readonly string[], after: readonly string[]): string {
  const gained = after.filter((f) => !before.includes(f)).map((f) => `+${f}`);
  const lost = before.filter((f) => !after.includes(f)).map((f) => `-${f}`);
  return [...gained, ...lost].join(" ");
}

/** One member of a run, recomputed from its first and last (members progress uniformly). */
export interface ChangeMember {
  addr: string;
  before?: string;
  after?: string;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

function nth(first: string, last: string | undefined, count: number, k: number): string {
  if (last === undefined || count < 2 || k === 0) return first;
  const a = BigInt(first);
  return hex(a + ((BigInt(last) - a) * BigInt(k)) / BigInt(count - 1));
}

/** Member `k` (0-based) of `run`: its address and its values before and after. */
export function changeRunMember(run: ChangeRun, k: number): ChangeMember {
  const m: ChangeMember = { addr: nth(run.addr, run.lastAddr, run.count, k) };
  if (run.before) m.before = nth(run.before.value, run.before.last, run.count, k);
  if (run.after) m.after = nth(run.after.value, run.after.last, run.count, k);
  return m;
}

function sideText(s: ChangeSide): string {
  return s.last !== undefined ? `${s.value}..${s.last}` : s.value;
}

/**
 * One line for a run: table, kind, member count, address range, what changed in its flags and
 * the values, e.g. `PT changed ×2044 gva 0x40004000..0x407ff000 +accessed 0x1004007..0x17ff007
 * -> 0x1004027..0x17ff027`.
 */
export function changeRunText(run: ChangeRun, tree: Pick<Tree, "kind">): string {
  const parts = [
    `${run.name} ${run.kind}`,
    run.count > 1 ? `×${run.count}` : "",
    `${addressName(tree)} ${run.addr}${run.lastAddr !== undefined ? `..${run.lastAddr}` : ""}`,
  ];
  if (run.before && run.after) {
    parts.push(flagDelta(run.before.flags, run.after.flags));
    parts.push(`${sideText(run.before)} -> ${sideText(run.after)}`);
  } else {
    const s = (run.after ?? run.before) as ChangeSide;
    parts.push(s.flags.join(","), sideText(s));
  }
  return parts.filter((p) => p !== "").join(" ");
}

/** Counts of one level, e.g. `PT: 2044 changed, 3 added` (kinds with 0 left out). */
export function levelChangesText(l: LevelChanges): string {
  const kinds = (["added", "removed", "changed"] as const)
    .filter((k) => l[k] > 0)
    .map((k) => `${l[k]} ${k}`);
  return `${l.name}: ${kinds.join(", ")}`;
}
