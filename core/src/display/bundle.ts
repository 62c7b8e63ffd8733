/**
 * MIME bundles for Jupyter: each bundle carries the rich payload (for the lab extension), a static
 * `text/html` fallback (no script, every string escaped — for classic Notebook, nbconvert HTML,
 * GitHub) and `text/plain` (for terminals and the test suites).
 */

import { changeRunText, levelChangesText } from "./changes";
import {
  type Entry,
  EPT_TABLE_NAMES,
  type EptStep,
  type MimeBundle,
  PAGETABLE_MIME,
  type PagetablePayload,
  PLOTLY_MIME,
  type PlotlyFigure,
  type PlotlyTrace,
  type Table,
  type Tree,
  WALK_MIME,
  WALK2D_MIME,
  type Walk2dColumn,
  type Walk2dPayload,
  type WalkAccess,
  type WalkFault,
  type WalkOk,
  type WalkPayload,
} from "./types";
import { assertDisplayPayload } from "./validate";

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: unknown): string {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

const CSS_TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px";
const CSS_CELL = "border:1px solid #ccc;padding:1px 6px;text-align:left";

function sizeName(bytes: number | undefined): string {
  if (bytes === undefined) return "";
  if (bytes >= 1 << 30) return `${bytes / (1 << 30)}G`;
  if (bytes >= 1 << 20) return `${bytes / (1 << 20)}M`;
  return `${bytes / 1024}K`;
}

/** Bytes as the largest binary unit that divides them ("64 MiB", "12 KiB", "100 B"). */
export function sizeText(bytes: number): string {
  for (const [unit, n] of [
    ["TiB", 2 ** 40],
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10],
  ] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n} ${unit}`;
  }
  return `${bytes} B`;
}

function entryRange(e: Entry): string {
  return e.count !== undefined && e.count > 1
    ? `${e.index}..${e.index + e.count - 1}`
    : `${e.index}`;
}

function tableHeading(t: Table): string {
  const parts = [`${t.name} (level ${t.level})`];
  if (t.addr !== undefined) parts.push(`@ ${t.addr}`);
  if (t.gfn !== undefined) parts.push(`gfn ${t.gfn}`);
  if (t.spId !== undefined) parts.push(`sp#${t.spId}`);
  if (t.role !== undefined) {
    parts.push(
      `role{level ${t.role.level}${t.role.direct ? " direct" : ""}${t.role.invalid ? " invalid" : ""}}`,
    );
  }
  parts.push(`${t.present ?? t.entries.length}/${t.size} present`);
  if (t.omitted) parts.push(`${t.omitted} omitted`);
  return parts.join(" ");
}

function entryText(e: Entry): string {
  const parts = [`[${entryRange(e)}]`, e.value];
  if (e.flags.length > 0) parts.push(e.flags.join(","));
  if (e.leaf) parts.push(`leaf${e.pageSize !== undefined ? ` ${sizeName(e.pageSize)}` : ""}`);
  if (e.target !== undefined) parts.push(`-> ${e.target}`);
  if (e.va !== undefined) parts.push(`va ${e.va}`);
  if (e.pkey !== undefined) parts.push(`pkey ${e.pkey}`);
  if (e.note !== undefined) parts.push(`(${e.note})`);
  return parts.join(" ");
}

function tableHtml(t: Table): string {
  const rows = t.entries
    .map((e) => {
      const child =
        e.child !== undefined ? `<div style="margin-left:1.5em">${tableHtml(e.child)}</div>` : "";
      return `<li>${escapeHtml(entryText(e))}${child}</li>`;
    })
    .join("");
  return `<div><b>${escapeHtml(tableHeading(t))}</b><ul style="margin:0;padding-left:1.2em">${rows}</ul></div>`;
}

function tableText(t: Table, indent: string, out: string[]): void {
  out.push(`${indent}${tableHeading(t)}`);
  for (const e of t.entries) {
    out.push(`${indent}  ${entryText(e)}`);
    if (e.child !== undefined) tableText(e.child, `${indent}    `, out);
  }
}

function treeHeading(tree: Tree): string {
  return `${tree.kind} tree (${tree.format})${tree.label !== undefined ? `: ${tree.label}` : ""}`;
}

/** Text lines of a folded change list: per tree its counts by level, then one line per run. */
function changesLines(payload: PagetablePayload): string[] {
  const c = payload.changes;
  if (c === undefined) return [];
  const total = c.levels.reduce((n, l) => n + l.added + l.removed + l.changed, 0);
  const out = [`changes: ${total} entries in ${c.runs.length + (c.omitted ?? 0)} runs`];
  payload.trees.forEach((tree, t) => {
    const levels = c.levels.filter((l) => l.tree === t);
    out.push(
      `  ${treeHeading(tree)}: ${levels.length > 0 ? levels.map(levelChangesText).join("; ") : "no changes"}`,
    );
  });
  for (const run of c.runs) {
    const tree = payload.trees[run.tree] ?? payload.trees[0]!;
    out.push(`  ${tree.kind}: ${changeRunText(run, tree)}`);
  }
  if (c.omitted) out.push(`  (${c.omitted} more runs not listed)`);
  return out;
}

/**
 * Bundle of a page-table snapshot: {@link PAGETABLE_MIME} + static HTML + text. A `changes()`
 * view leads with its folded change list (counts per level, one line per run) before the trees.
 * @throws TypeError naming every schema violation when `payload` is invalid.
 */
export function pagetableBundle(payload: PagetablePayload): MimeBundle {
  assertDisplayPayload(PAGETABLE_MIME, payload);
  const text: string[] = [];
  if (payload.title !== undefined) text.push(payload.title);
  const changes = changesLines(payload);
  text.push(...changes);
  const trees = payload.trees.map((tree) => {
    text.push(treeHeading(tree));
    tableText(tree.root, "  ", text);
    return `<div style="margin-right:2em"><div><b>${escapeHtml(treeHeading(tree))}</b></div>${tableHtml(tree.root)}</div>`;
  });
  if (payload.truncated) text.push("(snapshot truncated)");
  const title = payload.title !== undefined ? `<div><b>${escapeHtml(payload.title)}</b></div>` : "";
  const note = payload.truncated ? "<div><i>snapshot truncated</i></div>" : "";
  const changesHtml =
    changes.length > 0
      ? `<div class="mmulab-changes"><div><b>${escapeHtml(changes[0])}</b></div><ul style="margin:0;padding-left:1.2em">${changes
          .slice(1)
          .map((l) => `<li>${escapeHtml(l.trim())}</li>`)
          .join("")}</ul></div>`
      : "";
  const html = `<div class="mmulab-pagetable" style="font-family:monospace;font-size:12px">${title}${changesHtml}<div style="display:flex;flex-wrap:wrap;align-items:flex-start">${trees.join("")}</div>${note}</div>`;
  return { [PAGETABLE_MIME]: payload, "text/html": html, "text/plain": text.join("\n") };
}

/** "write user", "read supervisor fetch", ... */
function accessText(a: WalkAccess): string {
  return [a.write ? "write" : "read", a.user ? "user" : "supervisor", a.fetch ? "fetch" : ""]
    .filter((s) => s !== "")
    .join(" ");
}

/** A walk's result in words: the gpa, or the fault with its error code. */
function walkResultText(r: WalkOk | WalkFault): string {
  return r.fault
    ? `fault: vector ${r.vector} error code 0x${r.errorCode.toString(16)}${r.errorBits?.length ? ` [${r.errorBits.join("|")}]` : ""}: ${r.reason}`
    : `gpa ${r.gpa}${r.pageSize !== undefined ? ` (${sizeName(r.pageSize)} page)` : ""}${r.mmio ? " mmio" : ""}`;
}

/**
 * Bundle of a guest-walk trace: {@link WALK_MIME} + static HTML + text.
 * @throws TypeError naming every schema violation when `payload` is invalid.
 */
export function walkBundle(payload: WalkPayload): MimeBundle {
  assertDisplayPayload(WALK_MIME, payload);
  const head = `walk of gva ${payload.gva} (${payload.mode}, ${accessText(payload.access)})`;
  const resultText = walkResultText(payload.result);
  const bits = (payload.indexBits ?? [])
    .map((b) => `${b.name}[${b.hi}:${b.lo}]=${b.value}`)
    .join(" ");
  const cols = ["level", "index", "pte gpa", "before", "after", "flags", "A/D set", "note"];
  const rows = payload.levels.map((l) => [
    `${l.name} (${l.level})`,
    String(l.index),
    l.pteGpa,
    l.before,
    l.after,
    `${(l.flags ?? []).join(",")}${l.leaf ? " leaf" : ""}`,
    `${l.aSet ? "A" : ""}${l.dSet ? "D" : ""}`,
    l.note ?? "",
  ]);
  const th = cols.map((c) => `<th style="${CSS_CELL}">${escapeHtml(c)}</th>`).join("");
  const trs = rows
    .map(
      (row) =>
        `<tr>${row.map((c) => `<td style="${CSS_CELL}">${escapeHtml(c)}</td>`).join("")}</tr>`,
    )
    .join("");
  const html = `<div class="mmulab-walk" style="font-family:monospace;font-size:12px"><div><b>${escapeHtml(head)}</b></div>${bits ? `<div>${escapeHtml(bits)}</div>` : ""}<table style="${CSS_TABLE}"><thead><tr>${th}</tr></thead><tbody>${trs}</tbody></table><div>${escapeHtml(resultText)}</div></div>`;
  const text = [
    head,
    ...(bits ? [bits] : []),
    ...rows.map((row) => `  ${row.filter((c) => c !== "").join("  ")}`),
    resultText,
  ];
  return { [WALK_MIME]: payload, "text/html": html, "text/plain": text.join("\n") };
}

/** A 2-D walk column's heading: the guest entry read ("PML4E"), the PDPTE register, or the data. */
export function walk2dColumnTitle(c: Walk2dColumn): string {
  if (c.kind === "data") return "data";
  if (c.kind === "pdptr") return "PDPTE (register)";
  return `${c.name}E`;
}

/** One EPT entry of a 2-D walk in words: `#3 0x...` with new / +A / +D. */
function eptStepText(s: EptStep): string {
  const marks = [s.installed ? "new" : "", s.aSet ? "+A" : "", s.dSet ? "+D" : ""].filter(
    (m) => m !== "",
  );
  return `${s.ref !== undefined ? `#${s.ref} ` : ""}${s.after}${marks.length ? ` ${marks.join(" ")}` : ""}${s.leaf && s.pageSize !== undefined ? ` (${sizeName(s.pageSize)} leaf)` : ""}`;
}

/** The guest entry a 2-D walk column read, in words. */
function guestEntryText(c: Walk2dColumn): string {
  const l = c.guest;
  if (l === undefined)
    return c.kind === "data" ? (c.hpa !== undefined ? `-> hpa ${c.hpa}` : "") : "";
  const ad = `${l.aSet ? " +A" : ""}${l.dSet ? " +D" : ""}`;
  const value = l.before === l.after ? l.after : `${l.before} -> ${l.after}`;
  return `${c.guestRef !== undefined ? `#${c.guestRef} ` : ""}${value}${ad}`;
}

/** A column's EPT violations in words. */
function violationText(c: Walk2dColumn): string {
  const v = c.violation;
  const parts: string[] = [];
  if (v !== undefined)
    parts.push(
      `${v.count} EPT violation${v.count > 1 ? "s" : ""}${v.name !== undefined ? ` at EPT ${v.name}` : ""} (${v.reason}; error code 0x${v.errorCode.toString(16)}), KVM fault, retry`,
    );
  if (c.writeBackViolations !== undefined)
    parts.push(`${c.writeBackViolations} on the A/D write-back`);
  return parts.join("; ");
}

/**
 * Bundle of a 2-D walk: {@link WALK2D_MIME} + static HTML (the grid: guest accesses across, EPT
 * levels down) + text (one line per guest access).
 * @throws TypeError naming every schema violation when `payload` is invalid.
 */
export function walk2dBundle(payload: Walk2dPayload): MimeBundle {
  assertDisplayPayload(WALK2D_MIME, payload);
  const head = `2-D walk of gva ${payload.gva} (${payload.mode} guest on ${payload.eptLevels}-level EPT, ${accessText(payload.access)}): ${payload.references} memory references, ${payload.violations} EPT violation${payload.violations === 1 ? "" : "s"}`;
  const resultText = walkResultText(payload.result);
  const text = [head];
  for (const c of payload.columns) {
    const ept = c.ept.map((s) => `${s.name}[${s.index}] ${eptStepText(s)}`).join(", ");
    const parts = [`${walk2dColumnTitle(c)} gpa ${c.gpa}`];
    if (c.eptAccess !== undefined) parts.push(`EPT ${c.eptAccess}: ${ept || "-"}`);
    const v = violationText(c);
    if (v) parts.push(v);
    const guest = guestEntryText(c);
    if (guest) parts.push(c.kind === "data" ? guest : `entry ${guest}`);
    if (c.note !== undefined) parts.push(c.note);
    text.push(`  ${parts.join("; ")}`);
  }
  text.push(resultText);
  // The grid: one row per EPT level (root first), then the guest entries; one column per access.
  const cell = (content: string, bold = false) =>
    `<td style="${CSS_CELL}">${bold ? `<b>${escapeHtml(content)}</b>` : escapeHtml(content)}</td>`;
  const th = [
    `<th style="${CSS_CELL}"></th>`,
    ...payload.columns.map(
      (c) =>
        `<th style="${CSS_CELL}">${escapeHtml(walk2dColumnTitle(c))}<br>${escapeHtml(`gpa ${c.gpa}`)}</th>`,
    ),
  ].join("");
  const rows: string[] = [];
  for (let level = payload.eptLevels; level >= 1; level--) {
    const name = EPT_TABLE_NAMES[5 - level]!;
    const tds = payload.columns.map((c) => {
      const s = c.ept.find((x) => x.level === level);
      return cell(s === undefined ? "" : eptStepText(s));
    });
    rows.push(`<tr>${cell(`EPT ${name}`, true)}${tds.join("")}</tr>`);
  }
  rows.push(
    `<tr>${cell("guest entry / data", true)}${payload.columns.map((c) => cell(guestEntryText(c))).join("")}</tr>`,
  );
  if (payload.columns.some((c) => violationText(c) !== ""))
    rows.push(
      `<tr>${cell("EPT violations", true)}${payload.columns.map((c) => cell(violationText(c))).join("")}</tr>`,
    );
  const html = `<div class="mmulab-walk2d" style="font-family:monospace;font-size:12px"><div><b>${escapeHtml(head)}</b></div><table style="${CSS_TABLE}"><thead><tr>${th}</tr></thead><tbody>${rows.join("")}</tbody></table><div>${escapeHtml(resultText)}</div></div>`;
  return { [WALK2D_MIME]: payload, "text/html": html, "text/plain": text.join("\n") };
}

/** One row of {@link htmlTableBundle}: column name → cell (shown with `String()`, bigints as hex). */
export type TableRow = Readonly<Record<string, unknown>>;

function cellText(v: unknown): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "bigint") return `0x${v.toString(16)}`;
  if (typeof v === "object") {
    try {
      return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `0x${x.toString(16)}` : x));
    } catch {
      return String(v);
    }
  }
  return String(v);
}

/**
 * Bundle of a plain table (VM lists, stats, shadow-page lists): static HTML + text. Columns are
 * the union of the rows' keys in first-seen order. `plain` replaces the generated text form.
 */
export function htmlTableBundle(
  title: string,
  rows: ReadonlyArray<TableRow>,
  plain?: string,
): MimeBundle {
  // The display layer imports nothing: its bad-input error is the TypeError of the schema checks.
  if (typeof title !== "string") throw new TypeError(`htmlTableBundle: title must be a string`);
  if (!Array.isArray(rows) || !rows.every((r) => r !== null && typeof r === "object"))
    throw new TypeError("htmlTableBundle: rows must be an array of objects");
  if (plain !== undefined && typeof plain !== "string")
    throw new TypeError("htmlTableBundle: plain must be a string or undefined");
  const cols: string[] = [];
  for (const row of rows) for (const k of Object.keys(row)) if (!cols.includes(k)) cols.push(k);
  const cells = rows.map((row) => cols.map((c) => cellText(row[c])));
  const th = cols.map((c) => `<th style="${CSS_CELL}">${escapeHtml(c)}</th>`).join("");
  const trs = cells
    .map(
      (r) => `<tr>${r.map((c) => `<td style="${CSS_CELL}">${escapeHtml(c)}</td>`).join("")}</tr>`,
    )
    .join("");
  const html = `<div class="mmulab-table"><div><b>${escapeHtml(title)}</b></div><table style="${CSS_TABLE}"><thead><tr>${th}</tr></thead><tbody>${trs}</tbody></table></div>`;
  let text = plain;
  if (text === undefined) {
    const width = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
    const line = (r: string[]) =>
      r
        .map((c, i) => c.padEnd(width[i]!))
        .join("  ")
        .trimEnd();
    text = [title, line(cols), ...cells.map(line)].join("\n");
  }
  return { "text/html": html, "text/plain": text };
}

const SVG_W = 480;
const SVG_H = 240;
const PAD = 40;
const COLOURS = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
];

function numbers(values: ReadonlyArray<number | string> | undefined, n: number): number[] {
  if (values === undefined) return Array.from({ length: n }, (_v, i) => i);
  return values.map((v, i) => (typeof v === "number" && Number.isFinite(v) ? v : i));
}

/**
 * A small static SVG line chart of the figure's traces: the offline fallback of a plot. A `null`
 * y is a gap; with a log y axis (`layout.yaxis.type: "log"`) y is drawn as log10 and values of 0
 * or less are gaps, as plotly draws them.
 */
function plotSvg(figure: PlotlyFigure): string {
  const yaxis = figure.layout?.yaxis as { type?: unknown } | undefined;
  const log = yaxis?.type === "log";
  const series = figure.data.map((t) => {
    const ys = (t.y ?? []).map((v) => {
      const y = v === null ? Number.NaN : typeof v === "number" ? v : Number(v);
      return log ? (y > 0 ? Math.log10(y) : Number.NaN) : y;
    });
    return { name: t.name ?? "", xs: numbers(t.x, ys.length), ys };
  });
  const allX = series.flatMap((s) => s.xs.filter((_x, i) => Number.isFinite(s.ys[i])));
  const allY = series.flatMap((s) => s.ys.filter((y) => Number.isFinite(y)));
  const x0 = allX.length ? Math.min(...allX) : 0;
  const x1 = allX.length ? Math.max(...allX) : 1;
  const y0 = Math.min(0, ...allY);
  const y1 = allY.length ? Math.max(...allY) : 1;
  const sx = (x: number) => PAD + ((x - x0) / (x1 - x0 || 1)) * (SVG_W - 2 * PAD);
  // Axis labels show values, not their logarithms.
  const yText = (y: number) => (log ? Number((10 ** y).toPrecision(3)) : y);
  const sy = (y: number) => SVG_H - PAD - ((y - y0) / (y1 - y0 || 1)) * (SVG_H - 2 * PAD);
  const lines = series
    .map((s, i) => {
      const pts = s.ys
        .map((y, j) => (Number.isFinite(y) ? `${sx(s.xs[j]!).toFixed(1)},${sy(y).toFixed(1)}` : ""))
        .filter((p) => p !== "")
        .join(" ");
      const colour = COLOURS[i % COLOURS.length];
      return `<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${pts}"/><text x="${SVG_W - PAD + 4}" y="${PAD + 14 * i}" font-size="10" fill="${colour}">${escapeHtml(s.name)}</text>`;
    })
    .join("");
  const axes = `<line x1="${PAD}" y1="${SVG_H - PAD}" x2="${SVG_W - PAD}" y2="${SVG_H - PAD}" stroke="#888"/><line x1="${PAD}" y1="${PAD}" x2="${PAD}" y2="${SVG_H - PAD}" stroke="#888"/><text x="${PAD}" y="${SVG_H - PAD + 14}" font-size="10">${escapeHtml(x0)}</text><text x="${SVG_W - PAD}" y="${SVG_H - PAD + 14}" font-size="10" text-anchor="end">${escapeHtml(x1)}</text><text x="${PAD - 4}" y="${SVG_H - PAD}" font-size="10" text-anchor="end">${escapeHtml(yText(y0))}</text><text x="${PAD - 4}" y="${PAD + 4}" font-size="10" text-anchor="end">${escapeHtml(yText(y1))}</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${SVG_W + 80}" height="${SVG_H}" viewBox="0 0 ${SVG_W + 80} ${SVG_H}">${axes}${lines}</svg>`;
}

/** Viridis (plotly's colour scale of the same name), five stops, low to high. */
const VIRIDIS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
] as const;

/** Colour of `t` in [0, 1] on {@link VIRIDIS}, quantised to 16 steps (so equal cells merge). */
function viridis(t: number): string {
  const q = Math.round(Math.min(1, Math.max(0, t)) * 15) / 15;
  const x = q * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i]!.map((v, k) => Math.round(v + (VIRIDIS[i + 1]![k]! - v) * f));
  return `rgb(${c.join(",")})`;
}

/** Cells a static heatmap draws per row at most: wider rows are max-pooled. */
const HEATMAP_MAX_COLS = 128;

/** The numbers of a heatmap trace's `z` (rows of numbers; `null` for an empty cell), or undefined. */
function heatmapZ(trace: PlotlyTrace): (number | null)[][] | undefined {
  const z = trace.z;
  if (trace.type !== "heatmap" || !Array.isArray(z) || !z.every((r) => Array.isArray(r)))
    return undefined;
  return (z as unknown[][]).map((r) =>
    r.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null)),
  );
}

/**
 * A static SVG of a heatmap: a band per row of `z`, cells coloured on Viridis from the lowest to
 * the highest value, empty cells left blank, runs of one colour merged; rows wider than
 * {@link HEATMAP_MAX_COLS} show the maximum of each group of cells. The colour bar is labelled
 * with the trace's `colorbar.tickvals`/`ticktext` where it has them.
 */
function heatmapSvg(
  z: (number | null)[][],
  yLabels: ReadonlyArray<unknown> | undefined,
  colorbar: unknown,
): string {
  const rows = z.length;
  const width = Math.max(1, ...z.map((r) => r.length));
  const group = Math.ceil(width / HEATMAP_MAX_COLS);
  const cols = Math.ceil(width / group);
  const pooled = z.map((r) =>
    Array.from({ length: cols }, (_v, c) => {
      let m: number | null = null;
      for (let k = c * group; k < Math.min(r.length, (c + 1) * group); k++) {
        const v = r[k];
        if (v !== null && v !== undefined && (m === null || v > m)) m = v;
      }
      return m;
    }),
  );
  const all = pooled.flat().filter((v): v is number => v !== null);
  const lo = all.length ? Math.min(...all) : 0;
  const hi = all.length ? Math.max(...all) : 1;
  const cw = (SVG_W - 2 * PAD) / cols;
  const rh = (SVG_H - 2 * PAD) / Math.max(1, rows);
  const rects: string[] = [];
  pooled.forEach((r, ri) => {
    let c = 0;
    while (c < cols) {
      const v = r[c];
      let e = c + 1;
      const colour = v === null || v === undefined ? null : viridis((v - lo) / (hi - lo || 1));
      while (e < cols) {
        const w = r[e];
        const next = w === null || w === undefined ? null : viridis((w - lo) / (hi - lo || 1));
        if (next !== colour) break;
        e++;
      }
      if (colour !== null)
        rects.push(
          `<rect x="${(PAD + c * cw).toFixed(1)}" y="${(PAD + ri * rh).toFixed(1)}" width="${((e - c) * cw).toFixed(1)}" height="${rh.toFixed(1)}" fill="${colour}"/>`,
        );
      c = e;
    }
  });
  const labels = (yLabels ?? [])
    .slice(0, rows)
    .map(
      (l, ri) =>
        `<text x="${PAD - 4}" y="${(PAD + (ri + 0.5) * rh + 3).toFixed(1)}" font-size="10" text-anchor="end">${escapeHtml(l)}</text>`,
    )
    .join("");
  const frame = `<rect x="${PAD}" y="${PAD}" width="${SVG_W - 2 * PAD}" height="${SVG_H - 2 * PAD}" fill="none" stroke="#888"/>`;
  // The colour bar's labels: its ticks where the figure names them (a log scale labels log10
  // values with counts), else the lowest and highest value.
  const bar = (colorbar ?? {}) as { tickvals?: unknown; ticktext?: unknown };
  const tickText = bar.ticktext;
  const ticks =
    Array.isArray(bar.tickvals) && Array.isArray(tickText)
      ? bar.tickvals
          .map((v, i) => [v, tickText[i]] as const)
          .filter(([v]) => typeof v === "number" && v >= lo && v <= hi)
      : [
          [hi, Number(hi.toPrecision(3))],
          [lo, Number(lo.toPrecision(3))],
        ];
  const legend = ticks
    .map(([v, label]) => {
      const y = SVG_H - PAD - (((v as number) - lo) / (hi - lo || 1)) * (SVG_H - 2 * PAD);
      return `<text x="${SVG_W - PAD + 4}" y="${(y + 3).toFixed(1)}" font-size="10">${escapeHtml(label)}</text>`;
    })
    .join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${SVG_W + 80}" height="${SVG_H}" viewBox="0 0 ${SVG_W + 80} ${SVG_H}">${rects.join("")}${frame}${labels}${legend}</svg>`;
}

function figureTitle(figure: PlotlyFigure): string | undefined {
  const t = figure.layout?.title;
  if (typeof t === "string") return t;
  if (t !== null && typeof t === "object" && typeof (t as { text?: unknown }).text === "string") {
    return (t as { text: string }).text;
  }
  return undefined;
}

/**
 * Bundle of a plotly figure: {@link PLOTLY_MIME} + an offline static SVG chart + text summary.
 * Nothing is fetched from a CDN: the HTML fallback is self-contained.
 * @throws TypeError when `figure` is not an object with a `data` array of traces.
 */
export function plotlyBundle(figure: PlotlyFigure): MimeBundle {
  assertDisplayPayload(PLOTLY_MIME, figure);
  const title = figureTitle(figure);
  const text = [title ?? "plot"];
  let heat: { z: (number | null)[][]; y: PlotlyTrace["y"]; colorbar: unknown } | undefined;
  for (const t of figure.data) {
    const z = heatmapZ(t);
    if (z !== undefined) {
      heat ??= { z, y: t.y, colorbar: t.colorbar };
      const zs = z.flat().filter((v): v is number => v !== null);
      const range = zs.length ? `, z ${Math.min(...zs)}..${Math.max(...zs)}` : "";
      text.push(
        `  ${t.name ?? "heatmap"}: heatmap of ${z.length} × ${Math.max(0, ...z.map((r) => r.length))} cells${range}`,
      );
      continue;
    }
    const ys = (t.y ?? []).filter((y): y is number => typeof y === "number");
    const range = ys.length
      ? `, y ${Math.min(...ys)}..${Math.max(...ys)}, last ${ys[ys.length - 1]}`
      : "";
    text.push(`  ${t.name ?? t.type ?? "trace"}: ${(t.y ?? []).length} points${range}`);
  }
  const svg = heat !== undefined ? heatmapSvg(heat.z, heat.y, heat.colorbar) : plotSvg(figure);
  const html = `<div class="mmulab-plot">${title !== undefined ? `<div><b>${escapeHtml(title)}</b></div>` : ""}${svg}</div>`;
  return { [PLOTLY_MIME]: figure, "text/html": html, "text/plain": text.join("\n") };
}

/**
 * A table and a plot in one bundle: the plot's own MIME types, the table's HTML above the
 * plot's static SVG (both bundles carry text/html, so spreading one over the other would hide
 * one of them), and the table's text.
 */
export function tableAndPlotBundle(table: MimeBundle, plot: MimeBundle): MimeBundle {
  return {
    ...plot,
    "text/html": `${table["text/html"] ?? ""}${plot["text/html"] ?? ""}`,
    "text/plain": table["text/plain"] ?? "",
  };
}
