/**
 * The page-table tree view (`application/vnd.mmulab.pagetable+json`).
 *
 * Model: one {@link TableView} per drawn table. A table's rows are built only when it is first
 * expanded, so a snapshot with 100,000 leaves costs only what is on screen. Rows of a table:
 * - gaps between payload entries become one "absent" row with a count (absent entries are
 *   omitted from payloads);
 * - three or more adjacent leaves that are alike (same flags, same page size, frames contiguous)
 *   fold into one run row that can be unfolded;
 * - an entry with a child table has a toggle that expands the child below it.
 * With a `before` snapshot each index is compared with the table at the same path in the earlier
 * tree, member by member through folded runs (diff.ts): added, changed and removed entries are
 * marked, changed members fold only with members of the same `before` run (one row "×n, was
 * ..."), and tables holding changes start expanded. A `changes()` payload also carries the
 * folded change list, drawn above the trees (changes.ts).
 */

import type { Entry, Flag, PagetablePayload, Role, Table, Tree } from "@mmulab/core/display";
import { decodeEntry, entryBase, entryShift, hex, sizeName } from "./bits";
import { renderChanges } from "./changes";
import { Differ, type DiffStatus, frameStep, type Piece } from "./diff";
import { errorBox, h, text } from "./dom";

/** Flags drawn as a row's main colour, strongest first. */
const STATE_ORDER: Flag[] = [
  "mmio",
  "reserved",
  "write-protected",
  "unsync",
  "huge",
  "dirty",
  "accessed",
  "mmu-writable",
  "writable",
  "present",
];

/** Rows drawn at most when a snapshot is first shown; deeper tables wait for a click. */
const INITIAL_ROW_BUDGET = 300;
/** Adjacent alike leaves fold into a run from this many on. */
const MIN_FOLD = 3;

/** The strongest state flag of an entry, or "none". */
export function primaryState(flags: ReadonlyArray<string>): string {
  for (const f of STATE_ORDER) if (flags.includes(f)) return f;
  return "none";
}

function hexToNumber(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = Number.parseInt(s.slice(2), 16);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** What the selection panel shows about one entry. */
interface Selection {
  tree: Tree;
  treeIndex: number;
  table: Table;
  entry: Entry;
  base: bigint;
  status: DiffStatus | "removed";
  before?: Entry;
  /** For a folded run (count > 1): the one index within it that was asked for (search). */
  at?: number;
}

/** Shared state of one rendered snapshot. */
interface Context {
  detail: HTMLElement;
  selectedRow: HTMLElement | null;
  rowsDrawn: number;
  hasBefore: boolean;
  /** Diff of each tree against its `before` tree (by tree index). */
  differs: Differ[];
}

/**
 * Runs a UI event handler; an exception is drawn as an error box in the selection panel instead
 * of escaping to the page (handlers run after renderModel has returned, outside its try/catch).
 */
function guarded<E extends Event>(ctx: Context, fn: (ev: E) => void): (ev: E) => void {
  return (ev) => {
    try {
      fn(ev);
    } catch (err) {
      ctx.detail.replaceChildren(
        errorBox("mmulab renderer failed", err instanceof Error ? err.message : String(err)),
      );
    }
  };
}

/** One table on screen. */
class TableView {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly toggle: HTMLButtonElement;
  private built = false;
  /** Row element of each entry index (individual rows only; folded runs map their first index). */
  readonly rows = new Map<number, HTMLElement>();
  /** Child views by entry index, created on expand. */
  readonly children = new Map<number, TableView>();
  /** Toggle on the parent table's entry row that points at this table. */
  parentToggle: HTMLButtonElement | undefined;
  /** Toggles of this table's entry rows that have a child table, by entry index. */
  private readonly entryToggles = new Map<number, HTMLButtonElement>();
  /** Selects the entry row covering an index (for a payload run: that index within the run). */
  private readonly selectors = new Map<number, (at?: number) => void>();
  /** Unfold callbacks for folded runs by each covered index. */
  private readonly unfold = new Map<number, () => void>();

  constructor(
    private readonly ctx: Context,
    readonly tree: Tree,
    readonly treeIndex: number,
    readonly table: Table,
    readonly before: Table | undefined,
    readonly base: bigint,
    readonly path: string,
    readonly changes: number,
  ) {
    const t = table;
    this.toggle = h("button", {
      cls: "mmulab-toggle",
      text: "▸",
      attrs: { "aria-expanded": "false", "aria-label": `expand ${t.name}`, type: "button" },
    });
    this.toggle.addEventListener(
      "click",
      guarded(ctx, () => this.setExpanded(!this.expanded)),
    );
    const present = t.present ?? t.entries.reduce((s, e) => s + (e.count ?? 1), 0);
    const head = h("div", { cls: "mmulab-pt-table-head" }, [
      this.toggle,
      h("span", { cls: "mmulab-pt-name", text: t.name }),
      t.addr !== undefined ? h("span", { cls: "mmulab-pt-addr", text: `@${t.addr}` }) : null,
      h("span", { cls: "mmulab-pt-count", text: `${present}/${t.size} present` }),
      t.omitted ? h("span", { cls: "mmulab-pt-omitted", text: `${t.omitted} omitted` }) : null,
      t.role ? h("span", { cls: "mmulab-pt-role", text: roleSummary(t.role) }) : null,
      t.gfn !== undefined ? h("span", { cls: "mmulab-pt-spgfn", text: `sp gfn ${t.gfn}` }) : null,
      changes > 0 ? h("span", { cls: "mmulab-pt-changes", text: `Δ ${changes}` }) : null,
    ]);
    this.body = h("div", { cls: "mmulab-pt-body", attrs: { role: "group" } });
    this.body.hidden = true;
    this.el = h(
      "div",
      {
        cls: "mmulab-pt-table",
        attrs: {
          "data-level": String(t.level),
          "data-name": t.name,
          "data-path": path,
          role: "treeitem",
        },
      },
      [head, this.body],
    );
  }

  get expanded(): boolean {
    return !this.body.hidden;
  }

  /** Shows or hides the table's rows (building them on first show). */
  setExpanded(on: boolean): void {
    if (on && !this.built) this.build();
    this.body.hidden = !on;
    // The table's own toggle and its parent entry's toggle show the same state.
    for (const t of [this.toggle, this.parentToggle]) {
      if (!t) continue;
      t.textContent = on ? "▾" : "▸";
      t.setAttribute("aria-expanded", on ? "true" : "false");
      t.setAttribute("aria-label", `${on ? "collapse" : "expand"} ${this.table.name}`);
    }
  }

  /** Unfolds the folded run covering `index`, if any. */
  unfoldAt(index: number): void {
    this.unfold.get(index)?.();
  }

  /**
   * Expands this table, then each child table that holds changes or still fits the first-paint
   * row budget (depth first), so small snapshots open fully and big ones stop at the budget.
   */
  autoExpand(): void {
    this.setExpanded(true);
    for (const child of this.children.values()) {
      const fits = this.ctx.rowsDrawn + child.table.entries.length <= INITIAL_ROW_BUDGET;
      if (child.changes > 0 || fits) child.autoExpand();
    }
  }

  private build(): void {
    this.built = true;
    const { table, before } = this;
    const { rows, removed } = this.ctx.hasBefore
      ? this.ctx.differs[this.treeIndex].pieces(table, before)
      : {
          rows: [...table.entries]
            .sort((a, b) => a.index - b.index)
            .map((entry): Piece => ({ entry, status: "same" })),
          removed: [],
        };
    const frag = document.createDocumentFragment();
    let next = 0;
    let i = 0;
    while (i < rows.length) {
      const { entry: e, status, old } = rows[i];
      if (e.index > next) frag.appendChild(this.absentRow(next, e.index - 1));
      // Gather adjacent alike unchanged leaves into a foldable run.
      let j = i + 1;
      if (foldable(rows[i])) {
        const key = `${e.flags.join(",")}|${e.pageSize ?? ""}`;
        const step = frameStep(this.tree.format, table.level, e);
        while (j < rows.length) {
          const p = rows[j - 1].entry;
          const q = rows[j].entry;
          const pt = hexToNumber(p.target);
          const qt = hexToNumber(q.target);
          const contiguous =
            pt === undefined || qt === undefined ? p.target === q.target : qt === pt + step;
          if (
            !foldable(rows[j]) ||
            q.index !== p.index + 1 ||
            `${q.flags.join(",")}|${q.pageSize ?? ""}` !== key ||
            !contiguous
          )
            break;
          j++;
        }
      }
      if (j - i >= MIN_FOLD) {
        frag.appendChild(this.runRow(rows.slice(i, j)));
      } else {
        j = i + 1;
        frag.appendChild(this.entryRow(e, status, old));
        if (e.child) frag.appendChild(this.childView(e, old).el);
      }
      const last = rows[j - 1].entry;
      next = last.index + (last.count ?? 1);
      i = j;
    }
    if (next < table.size) frag.appendChild(this.absentRow(next, table.size - 1));
    // Entries present before and gone now: drawn as ghost rows after the table's rows.
    for (const r of removed) frag.appendChild(this.entryRow(r.entry, "removed", r.old));
    this.body.appendChild(frag);
  }

  private absentRow(first: number, last: number): HTMLElement {
    this.ctx.rowsDrawn++;
    const n = last - first + 1;
    return h(
      "div",
      {
        cls: "mmulab-pt-row mmulab-pt-absent",
        attrs: { "data-first": String(first), "data-count": String(n) },
      },
      [
        h("span", { cls: "mmulab-pt-idx", text: n === 1 ? `[${first}]` : `[${first}–${last}]` }),
        h("span", { cls: "mmulab-pt-absent-label", text: `${n} absent` }),
      ],
    );
  }

  private childView(e: Entry, old: Entry | undefined): TableView {
    const child = e.child as Table;
    const oldChild = this.ctx.hasBefore ? old?.child : undefined;
    const base = entryBase(this.tree.format, this.table, this.base, e.index, e.va);
    const view = new TableView(
      this.ctx,
      this.tree,
      this.treeIndex,
      child,
      oldChild,
      base,
      `${this.path}.${e.index}`,
      this.ctx.hasBefore ? this.ctx.differs[this.treeIndex].count(child, oldChild) : 0,
    );
    view.el.classList.add("mmulab-pt-child");
    view.parentToggle = this.entryToggles.get(e.index);
    this.children.set(e.index, view);
    return view;
  }

  private entryRow(e: Entry, status: DiffStatus | "removed", old: Entry | undefined): HTMLElement {
    this.ctx.rowsDrawn++;
    const n = e.count ?? 1;
    const state = primaryState(e.flags);
    const row = h(
      "div",
      {
        cls: `mmulab-pt-row mmulab-pt-entry mmulab-state-${state}${status !== "same" ? ` mmulab-diff-${status}` : ""}`,
        attrs: {
          "data-index": String(e.index),
          "data-count": String(n),
          "data-path": `${this.path}.${e.index}`,
          "data-state": state,
          role: "treeitem",
          tabindex: "0",
          "aria-selected": "false",
        },
      },
      [
        e.child ? this.childToggle(e.index) : h("span", { cls: "mmulab-toggle-spacer" }),
        h("span", {
          cls: "mmulab-pt-idx",
          text: n > 1 ? `[${e.index}–${e.index + n - 1}]` : `[${e.index}]`,
        }),
        h("span", { cls: "mmulab-pt-value", text: e.value }),
        n > 1 ? h("span", { cls: "mmulab-pt-runcount", text: `×${n}` }) : null,
        flagChips(e.flags),
        e.target !== undefined
          ? h("span", {
              cls: "mmulab-pt-target",
              text: `${this.tree.kind === "guest" ? "gfn" : "pfn"} ${e.target}`,
            })
          : null,
        e.va !== undefined ? h("span", { cls: "mmulab-pt-va", text: `va ${e.va}` }) : null,
        e.leaf && e.pageSize
          ? h("span", { cls: "mmulab-pt-size", text: sizeName(Math.log2(e.pageSize)) })
          : null,
        status !== "same"
          ? h("span", {
              cls: "mmulab-pt-diff",
              text: status === "changed" ? `was ${old?.value}` : status,
            })
          : null,
        e.note !== undefined ? h("span", { cls: "mmulab-pt-note", text: e.note }) : null,
      ],
    );
    const select = (at?: number): void =>
      this.select(row, {
        tree: this.tree,
        treeIndex: this.treeIndex,
        table: this.table,
        entry: e,
        base: entryBase(this.tree.format, this.table, this.base, e.index, e.va),
        status,
        before: old,
        at,
      });
    if (status !== "removed") for (let c = 0; c < n; c++) this.selectors.set(e.index + c, select);
    row.addEventListener(
      "click",
      guarded(this.ctx, (ev: MouseEvent) => {
        if ((ev.target as HTMLElement).classList.contains("mmulab-toggle")) return;
        select();
      }),
    );
    row.addEventListener(
      "keydown",
      guarded(this.ctx, (ev: KeyboardEvent) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          select();
        }
      }),
    );
    if (status !== "removed") for (let c = 0; c < n; c++) this.rows.set(e.index + c, row);
    return row;
  }

  private childToggle(index: number): HTMLButtonElement {
    const b = h("button", {
      cls: "mmulab-toggle mmulab-entry-toggle",
      text: "▸",
      attrs: { type: "button", "aria-label": "expand child table", "aria-expanded": "false" },
    });
    b.addEventListener(
      "click",
      guarded(this.ctx, () => {
        const v = this.children.get(index);
        if (v) v.setExpanded(!v.expanded);
      }),
    );
    this.entryToggles.set(index, b);
    return b;
  }

  private runRow(pieces: Piece[]): HTMLElement {
    this.ctx.rowsDrawn++;
    const run = pieces.map((p) => p.entry);
    const first = run[0];
    const last = run[run.length - 1];
    const state = primaryState(first.flags);
    const kind = this.tree.kind === "guest" ? "gfn" : "pfn";
    const unfoldButton = h("button", {
      cls: "mmulab-toggle mmulab-run-toggle",
      text: "▸",
      attrs: {
        type: "button",
        "aria-label": `unfold ${run.length} entries`,
        "aria-expanded": "false",
      },
    });
    const row = h(
      "div",
      {
        cls: `mmulab-pt-row mmulab-pt-run mmulab-state-${state}`,
        attrs: {
          "data-first": String(first.index),
          "data-count": String(run.length),
          "data-state": state,
        },
      },
      [
        unfoldButton,
        h("span", { cls: "mmulab-pt-idx", text: `[${first.index}–${last.index}]` }),
        h("span", { cls: "mmulab-pt-runcount", text: `${run.length} alike` }),
        flagChips(first.flags),
        first.target !== undefined && last.target !== undefined
          ? h("span", { cls: "mmulab-pt-target", text: `${kind} ${first.target}…${last.target}` })
          : null,
      ],
    );
    const inner = h("div", { cls: "mmulab-pt-runbody" });
    inner.hidden = true;
    const wrap = h("div", { cls: "mmulab-pt-runwrap" }, [row, inner]);
    let built = false;
    const setOpen = (open: boolean): void => {
      if (open && !built) {
        built = true;
        const frag = document.createDocumentFragment();
        for (const p of pieces) frag.appendChild(this.entryRow(p.entry, p.status, p.old));
        inner.appendChild(frag);
      }
      inner.hidden = !open;
      unfoldButton.textContent = open ? "▾" : "▸";
      unfoldButton.setAttribute("aria-expanded", open ? "true" : "false");
    };
    unfoldButton.addEventListener(
      "click",
      guarded(this.ctx, () => setOpen(inner.hidden)),
    );
    for (const e of run) {
      this.unfold.set(e.index, () => setOpen(true));
      if (!this.rows.has(e.index)) this.rows.set(e.index, row);
    }
    return wrap;
  }

  private select(row: HTMLElement, sel: Selection): void {
    const prev = this.ctx.selectedRow;
    if (prev) {
      prev.classList.remove("mmulab-selected");
      prev.setAttribute("aria-selected", "false");
    }
    row.classList.add("mmulab-selected");
    row.setAttribute("aria-selected", "true");
    this.ctx.selectedRow = row;
    showDetail(this.ctx.detail, sel);
  }

  /** Selects the row of `index` (unfolding its run first). */
  selectIndex(index: number): HTMLElement | undefined {
    this.unfoldAt(index);
    this.selectors.get(index)?.(index);
    return this.rows.get(index);
  }
}

/** A single unchanged leaf without a child table: may fold into a run row with its neighbours. */
function foldable(p: Piece): boolean {
  const e = p.entry;
  return p.status === "same" && e.leaf && !e.child && (e.count ?? 1) === 1;
}

function roleSummary(role: Role): string {
  const parts = [`role L${role.level}`, role.direct ? "direct" : "indirect"];
  if (role.access !== undefined) parts.push(`acc ${role.access}`);
  if (role.quadrant) parts.push(`q${role.quadrant}`);
  if (role.invalid) parts.push("invalid");
  return parts.join(" ");
}

/**
 * Short names a tree's rows show for flags when the tree is narrow (two trees side by side in a
 * notebook); the chip's text stays the full name (hover title, copy, find), CSS swaps the shown one.
 */
const FLAG_SHORT: Readonly<Record<Flag, string>> = {
  present: "P",
  writable: "W",
  user: "U",
  accessed: "A",
  dirty: "D",
  nx: "NX",
  exec: "X",
  huge: "PS",
  global: "G",
  pkey: "PK",
  mmio: "MMIO",
  "host-writable": "HW",
  "mmu-writable": "MW",
  "write-protected": "WP",
  unsync: "UNS",
  "access-tracked": "AT",
  reserved: "RSV",
};

function flagChips(flags: ReadonlyArray<Flag>): HTMLElement {
  const wrap = h("span", { cls: "mmulab-flags" });
  for (const f of flags)
    wrap.appendChild(
      h("span", {
        cls: `mmulab-flag mmulab-flag-${f}`,
        text: f,
        attrs: { title: f, "data-short": FLAG_SHORT[f] ?? f },
      }),
    );
  return wrap;
}

function kv(key: string, value: string): HTMLElement {
  return h("div", { cls: "mmulab-kv" }, [
    h("span", { cls: "mmulab-k", text: key }),
    h("span", { cls: "mmulab-v", text: value }),
  ]);
}

/** Fills the selection panel with one entry decoded. */
function showDetail(panel: HTMLElement, s: Selection): void {
  panel.replaceChildren();
  const { tree, table, entry: e } = s;
  const n = e.count ?? 1;
  const shift = entryShift(tree.format, table.level);
  const end = s.base + (BigInt(n) << BigInt(shift)) - 1n;
  panel.appendChild(
    h("div", {
      cls: "mmulab-detail-title",
      text: `${tree.label ?? tree.kind} · ${table.name}[${e.index}${n > 1 ? `–${e.index + n - 1}` : ""}]${s.at !== undefined && n > 1 ? ` · entry [${s.at}]` : ""}${s.status !== "same" ? ` · ${s.status}` : ""}`,
    }),
  );
  if (s.at !== undefined && n > 1 && s.at !== e.index) {
    // One entry inside a folded run: alike entries differ only in their frame, which continues
    // the run's first frame (core's folding rule), so its frame and range follow from the offset.
    const k = BigInt(s.at - e.index);
    const start = s.base + (k << BigInt(shift));
    panel.appendChild(
      kv(
        `[${s.at}] maps`,
        `${hex(start)} – ${hex(start + (1n << BigInt(shift)) - 1n)} (${sizeName(shift)})`,
      ),
    );
    if (e.target !== undefined) {
      const frame = BigInt(e.target) + k * BigInt(frameStep(tree.format, table.level, e));
      panel.appendChild(kv(`[${s.at}] ${tree.kind === "guest" ? "gfn" : "pfn"}`, hex(frame)));
    }
  }
  panel.appendChild(kv(n > 1 ? "value (first)" : "value", e.value));
  if (s.status === "changed" && s.before) panel.appendChild(kv("before", s.before.value));
  panel.appendChild(
    kv("maps", `${hex(s.base)} – ${hex(end)} (${n > 1 ? `${n} × ` : ""}${sizeName(shift)})`),
  );
  if (e.target !== undefined) {
    const frame = BigInt(e.target) << 12n;
    panel.appendChild(
      kv(tree.kind === "guest" ? "gfn" : "pfn", `${e.target} (address ${hex(frame)})`),
    );
  }
  panel.appendChild(
    kv(
      "kind",
      e.leaf
        ? `leaf${e.pageSize ? `, ${sizeName(Math.log2(e.pageSize))} page` : ""}`
        : "points to a table",
    ),
  );
  if (e.pkey !== undefined) panel.appendChild(kv("pkey", String(e.pkey)));
  if (e.note !== undefined) panel.appendChild(kv("note", e.note));
  panel.appendChild(h("div", { cls: "mmulab-detail-flags" }, [flagChips(e.flags)]));
  const fields = decodeEntry(tree, e.value);
  const grid = h("table", { cls: "mmulab-bits" }, [
    h("thead", {}, [
      h("tr", {}, [
        h("th", { text: "bits" }),
        h("th", { text: "field" }),
        h("th", { text: "value" }),
        h("th", { text: "meaning" }),
      ]),
    ]),
  ]);
  const body = h("tbody");
  for (const f of fields) {
    body.appendChild(
      h("tr", { attrs: { "data-field": f.name } }, [
        h("td", { text: f.bits }),
        h("td", { text: f.name }),
        h("td", { text: f.value > 9 ? `0x${f.value.toString(16)}` : String(f.value) }),
        h("td", { text: f.meaning }),
      ]),
    );
  }
  grid.appendChild(body);
  panel.appendChild(grid);
  if (table.role) panel.appendChild(kv("shadow page role", roleText(table.role)));
  if (table.gfn !== undefined) panel.appendChild(kv("shadow page gfn", table.gfn));
  if (table.spId !== undefined) panel.appendChild(kv("shadow page id", String(table.spId)));
  if (e.child?.role) panel.appendChild(kv("child page role", roleText(e.child.role)));
}

function roleText(r: Role): string {
  const parts: string[] = [`level ${r.level}`, r.direct ? "direct" : "indirect"];
  if (r.word !== undefined) parts.unshift(`word ${r.word}`);
  if (r.access !== undefined)
    parts.push(
      `access ${r.access} (${r.access & 4 ? "U" : "-"}${r.access & 2 ? "W" : "-"}${r.access & 1 ? "X" : "-"})`,
    );
  if (r.quadrant !== undefined) parts.push(`quadrant ${r.quadrant}`);
  for (const k of [
    "invalid",
    "hasFourByteGpte",
    "cr0Wp",
    "eferNx",
    "adDisabled",
    "guestMode",
  ] as const) {
    if (r[k]) parts.push(k);
  }
  if (r.smm) parts.push(`smm ${r.smm}`);
  return parts.join(", ");
}

/** Address bits a tree format translates (upper bits are sign extension and are ignored by search). */
function addressBits(format: Tree["format"]): number {
  if (format === "5-level" || format === "tdp-5") return 57;
  if (format === "32-bit" || format === "pae") return 32;
  return 48;
}

/** Where {@link searchTree} ended. */
interface SearchResult {
  /** A sentence: the entries walked and how the walk ended. */
  text: string;
  hit: boolean;
  /**
   * The address the leaf translates `addr` to (its frame plus the offset within the page) — for
   * a guest tree the gpa that the TDP tree maps; absent without a leaf or for an MMIO spte.
   */
  out?: bigint;
}

/**
 * Walks `view`'s tree to the entry mapping `addr`, expanding tables along the way and selecting
 * the deepest entry found. Returns a sentence saying where the walk ended.
 */
function searchTree(view: TableView, addr: bigint, select: boolean): SearchResult {
  const mask = (1n << BigInt(addressBits(view.tree.format))) - 1n;
  const a = addr & mask;
  let v: TableView | undefined = view;
  let found = "";
  while (v) {
    v.setExpanded(true);
    const shift = BigInt(entryShift(v.tree.format, v.table.level));
    let hit: Entry | undefined;
    for (const e of v.table.entries) {
      const start = entryBase(v.tree.format, v.table, v.base, e.index, e.va) & mask;
      const span = BigInt(e.count ?? 1) << shift;
      if (a >= start && a < start + span) {
        hit = e;
        break;
      }
    }
    if (!hit) {
      const idx = Number((a - (v.base & mask)) >> shift);
      return { text: `${found}${v.table.name}[${idx}] absent: not mapped`, hit: false };
    }
    const index =
      hit.index +
      Number((a - (entryBase(v.tree.format, v.table, v.base, hit.index, hit.va) & mask)) >> shift);
    if (select) v.selectIndex(hit.child ? hit.index : index);
    found += `${v.table.name}[${index}] → `;
    if (!hit.child) {
      const r: SearchResult = {
        text: `${found}${hit.leaf ? "leaf" : "entry without table in snapshot"} ${hit.value}`,
        hit: true,
      };
      if (hit.leaf && hit.target !== undefined && !hit.flags.includes("mmio")) {
        // Member k of a folded run points k page sizes past the run's first frame (core's
        // folding rule), so the page's first byte is that frame and the offset carries over.
        const k = BigInt(index - hit.index);
        const memberStart =
          (entryBase(v.tree.format, v.table, v.base, hit.index, hit.va) & mask) + (k << shift);
        const frame = BigInt(hit.target) + k * BigInt(frameStep(v.tree.format, v.table.level, hit));
        r.out = (frame << 12n) + (a - memberStart);
      }
      return r;
    }
    v = v.children.get(hit.index);
  }
  return { text: found, hit: false };
}

/**
 * Searches every tree for `addr` as the hardware would translate it: guest and shadow trees are
 * indexed by gva, TDP trees by gpa. With a guest tree in the view the typed address is a gva, so
 * the TDP trees are searched for the gpa the first guest tree translates it to (its leaf's frame
 * plus the page offset), and the sentence says so; without one it is a gpa already. The first
 * tree that maps its address gets the selection. Returns the sentence for the result line.
 */
function findAddress(roots: readonly TableView[], addr: bigint): string {
  const name = (r: TableView): string => r.tree.label ?? r.tree.kind;
  const byGva = roots.some((r) => r.tree.kind === "guest");
  let selected = false;
  let gpa: bigint | undefined;
  const parts = new Map<TableView, string>();
  // Guest-side trees first: the TDP trees need the gpa the guest tree produced.
  for (const r of roots) {
    if (r.tree.kind === "tdp" && byGva) continue;
    const found = searchTree(r, addr, !selected);
    selected ||= found.hit;
    let line = `${name(r)}: ${found.text}`;
    if (r.tree.kind === "guest" && gpa === undefined && found.out !== undefined) {
      gpa = found.out;
      line += ` | gva ${hex(addr)} → gpa ${hex(gpa)}`;
    }
    parts.set(r, line);
  }
  for (const r of roots) {
    if (parts.has(r)) continue;
    if (gpa === undefined) {
      parts.set(r, `${name(r)}: not searched (gva ${hex(addr)} has no gpa in the guest tree)`);
      continue;
    }
    const found = searchTree(r, gpa, !selected);
    selected ||= found.hit;
    parts.set(r, `${name(r)}: gpa ${hex(gpa)}: ${found.text}`);
  }
  return roots.map((r) => parts.get(r)).join(" | ");
}

/** Renders a validated pagetable payload into `host`. */
export function renderPagetable(host: HTMLElement, payload: PagetablePayload): void {
  const detail = h("div", { cls: "mmulab-detail", attrs: { "aria-live": "polite" } }, [
    h("div", { cls: "mmulab-detail-hint", text: "Select an entry to decode it." }),
  ]);
  const ctx: Context = {
    detail,
    selectedRow: null,
    rowsDrawn: 0,
    hasBefore: payload.before !== undefined,
    differs: payload.trees.map((t) => new Differ(t.format)),
  };
  const roots: TableView[] = [];
  const treesEl = h("div", { cls: "mmulab-pt-trees" });
  payload.trees.forEach((tree, i) => {
    const beforeTree = payload.before?.[i];
    const changes = ctx.hasBefore ? ctx.differs[i].count(tree.root, beforeTree?.root) : 0;
    const root = new TableView(ctx, tree, i, tree.root, beforeTree?.root, 0n, String(i), changes);
    roots.push(root);
    treesEl.appendChild(
      h(
        "div",
        {
          cls: "mmulab-pt-tree",
          attrs: { "data-kind": tree.kind, "data-tree": String(i), role: "tree" },
        },
        [
          h("div", { cls: "mmulab-pt-tree-title" }, [
            text(`${tree.label ?? `${tree.kind} tree`}`),
            h("span", { cls: "mmulab-pt-format", text: ` ${tree.format}` }),
            ctx.hasBefore
              ? h("span", { cls: "mmulab-pt-changes", text: ` Δ ${changes} changed` })
              : null,
          ]),
          root.el,
        ],
      ),
    );
  });
  const input = h("input", {
    cls: "mmulab-search-input",
    attrs: {
      type: "text",
      placeholder: "find address, e.g. 0x7f0000001000",
      spellcheck: "false",
      "aria-label": "find address",
    },
  });
  const result = h("span", { cls: "mmulab-search-result" });
  const go = h("button", { cls: "mmulab-search-go", text: "Find", attrs: { type: "button" } });
  const run = (): void => {
    const raw = input.value.trim().replace(/_/g, "");
    if (!/^(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})$/.test(raw)) {
      result.textContent = `not an address: ${raw.slice(0, 40)} (use hex 0x... or decimal)`;
      return;
    }
    result.textContent = findAddress(roots, BigInt(raw));
  };
  go.addEventListener("click", guarded(ctx, run));
  input.addEventListener(
    "keydown",
    guarded(ctx, (ev: KeyboardEvent) => {
      if (ev.key === "Enter") run();
    }),
  );
  const header = h("div", { cls: "mmulab-pt-header" }, [
    payload.title !== undefined ? h("span", { cls: "mmulab-pt-title", text: payload.title }) : null,
    h("span", { cls: "mmulab-search" }, [input, go, result]),
  ]);
  host.appendChild(header);
  if (payload.truncated) {
    host.appendChild(
      h("div", {
        cls: "mmulab-pt-truncated",
        text: "Snapshot truncated: some present entries were left out (see 'omitted' counts).",
      }),
    );
  }
  if (payload.changes !== undefined) {
    host.appendChild(renderChanges(payload, (fn) => guarded(ctx, fn)));
  }
  host.appendChild(legend());
  host.appendChild(treesEl);
  host.appendChild(detail);
  for (const r of roots) r.autoExpand();
}

function legend(): HTMLElement {
  const l = h("div", { cls: "mmulab-legend" });
  for (const f of [...STATE_ORDER].reverse()) {
    l.appendChild(h("span", { cls: `mmulab-legend-item mmulab-state-${f}`, text: f }));
  }
  return l;
}
