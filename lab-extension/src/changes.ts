/**
 * The folded change list of a `changes()` view (`payload.changes`, made by core's
 * change_fold.ts): per tree its counts by level, then one row per run of alike changes. "Show
 * all" expands every run into its members, recomputed from the run's first and last (members
 * progress uniformly), up to {@link MAX_MEMBER_ROWS} rows.
 */

import {
  type ChangeRun,
  changeRunMember,
  changeRunText,
  type LevelChanges,
  levelChangesText,
  type PagetablePayload,
} from "@mmulab/core/display";
import { h } from "./dom";

/** Member rows "show all" draws at most: beyond that the list says how many it left out. */
export const MAX_MEMBER_ROWS = 10_000;

function runRow(run: ChangeRun, payload: PagetablePayload): HTMLElement {
  const tree = payload.trees[run.tree] ?? payload.trees[0];
  return h("div", {
    cls: `mmulab-change-run mmulab-diff-${run.kind}`,
    attrs: {
      "data-tree": String(run.tree),
      "data-level": String(run.level),
      "data-kind": run.kind,
      "data-count": String(run.count),
    },
    text: `${tree.label ?? tree.kind}: ${changeRunText(run, tree)}`,
  });
}

function memberRows(run: ChangeRun, limit: number): HTMLElement[] {
  const rows: HTMLElement[] = [];
  for (let k = 0; k < Math.min(run.count, limit); k++) {
    const m = changeRunMember(run, k);
    const values =
      m.before !== undefined && m.after !== undefined
        ? `${m.before} -> ${m.after}`
        : (m.after ?? m.before ?? "");
    rows.push(h("div", { cls: "mmulab-change-member", text: `${m.addr} ${values}` }));
  }
  return rows;
}

function levelTable(payload: PagetablePayload, levels: readonly LevelChanges[]): HTMLElement {
  const list = h("div", { cls: "mmulab-change-levels" });
  payload.trees.forEach((tree, t) => {
    const mine = levels.filter((l) => l.tree === t);
    list.appendChild(
      h("div", {
        cls: "mmulab-change-level",
        attrs: { "data-tree": String(t) },
        text: `${tree.label ?? tree.kind}: ${mine.length > 0 ? mine.map(levelChangesText).join("; ") : "no changes"}`,
      }),
    );
  });
  return list;
}

/**
 * The change list of `payload` (which has `changes`), with its "show all" toggle; `guard` wraps
 * the click handler (the caller draws a handler's exception in the widget).
 */
export function renderChanges(
  payload: PagetablePayload,
  guard: (fn: () => void) => (ev: Event) => void,
): HTMLElement {
  const c = payload.changes!;
  const total = c.levels.reduce((n, l) => n + l.added + l.removed + l.changed, 0);
  const runs = h("div", { cls: "mmulab-change-runs" });
  const bodies: HTMLElement[] = [];
  for (const run of c.runs) {
    const body = h("div", { cls: "mmulab-change-members" });
    body.hidden = true;
    bodies.push(body);
    runs.appendChild(h("div", { cls: "mmulab-change" }, [runRow(run, payload), body]));
  }
  if (c.omitted) {
    runs.appendChild(
      h("div", { cls: "mmulab-change-omitted", text: `${c.omitted} more runs not listed` }),
    );
  }
  const folded = c.runs.some((r) => r.count > 1);
  const toggle = h("button", {
    cls: "mmulab-change-showall",
    text: "show all",
    attrs: { type: "button", "aria-expanded": "false" },
  });
  toggle.disabled = !folded;
  let built = false;
  let note: HTMLElement | null = null;
  toggle.addEventListener(
    "click",
    guard(() => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      if (open && !built) {
        built = true;
        let budget = MAX_MEMBER_ROWS;
        c.runs.forEach((run, i) => {
          if (run.count < 2) return;
          const rows = memberRows(run, budget);
          budget -= rows.length;
          bodies[i].append(...rows);
        });
        const drawn = MAX_MEMBER_ROWS - budget;
        const all = c.runs.reduce((n, r) => n + (r.count > 1 ? r.count : 0), 0);
        if (drawn < all) {
          note = h("div", {
            cls: "mmulab-change-omitted",
            text: `${all - drawn} more entries not drawn (at most ${MAX_MEMBER_ROWS})`,
          });
          runs.appendChild(note);
        }
      }
      for (const b of bodies) b.hidden = !open || b.childElementCount === 0;
      if (note) note.hidden = !open;
      toggle.textContent = open ? "fold" : "show all";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }),
  );
  return h("div", { cls: "mmulab-changes" }, [
    h("div", { cls: "mmulab-changes-head" }, [
      h("span", {
        cls: "mmulab-changes-title",
        text: `${total} entries changed, in ${c.runs.length + (c.omitted ?? 0)} runs`,
      }),
      toggle,
    ]),
    levelTable(payload, c.levels),
    runs,
  ]);
}
