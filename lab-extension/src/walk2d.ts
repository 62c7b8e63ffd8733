/**
 * The 2-D walk view (`application/vnd.mmulab.walk2d+json`): a grid with the guest-physical
 * accesses of one guest access across (each guest paging-structure entry read, top level first,
 * then the data) and the EPT levels down (root first), the guest entry read at the bottom of its
 * column. Each cell is one memory reference: its number in the order the CPU made them, the entry
 * (decoded on hover), A/D bits the access set, entries a KVM fault installed, and where an EPT
 * violation stopped the first try. A legend and the total (with its geometry) close the view.
 */

import type { EptStep, Walk2dColumn, Walk2dPayload, WalkLevel } from "@mmulab/core/display";
import { decodeEntry } from "./bits";
import { h } from "./dom";
import { accessWords } from "./walk";

/** EPT table names by level (the SDM's: EPT PML5/PML4 table, page-directory-pointer table, ...). */
const EPT_NAMES = ["", "PT", "PD", "PDPT", "PML4", "PML5"];

/** Heading of a column: the guest entry read ("PML4E"), the PDPTE register, or the data. */
function columnTitle(c: Walk2dColumn): string {
  if (c.kind === "data") return "data";
  if (c.kind === "pdptr") return "PDPTE";
  return `${c.name}E`;
}

/** Decoded fields of an entry, one per line, for a cell's hover text. */
function decoded(kind: "tdp" | "guest", format: string, value: string): string {
  const fields = decodeEntry({ kind, format: (kind === "tdp" ? "tdp-4" : format) as never }, value);
  return fields
    .map((f) => `${f.name}${f.value > 1 ? `=${f.value}` : ""} (${f.meaning})`)
    .join("\n");
}

/** Small badge. */
function badge(cls: string, text: string, title: string): HTMLElement {
  return h("span", { cls: `mmulab-w2d-badge ${cls}`, text, attrs: { title } });
}

/** The reference number of a memory reference, as a small round mark. */
function refMark(n: number): HTMLElement {
  return h("span", {
    cls: "mmulab-w2d-ref",
    text: String(n),
    attrs: { title: `memory reference ${n}`, "data-ref": String(n) },
  });
}

/** Short EPT flag letters: R W X (permissions), A D, PS for a huge leaf. */
function eptLetters(s: EptStep): string {
  const f = new Set(s.flags ?? []);
  if (f.has("mmio")) return "MMIO";
  if (!f.has("present")) return "not present";
  return [
    f.has("user") ? "R" : "-",
    f.has("writable") ? "W" : "-",
    f.has("exec") ? "X" : "-",
    f.has("accessed") ? " A" : "",
    f.has("dirty") ? " D" : "",
    f.has("huge") ? " PS" : "",
  ].join("");
}

/** One EPT cell. */
function eptCell(s: EptStep, c: Walk2dColumn): HTMLElement {
  const stopped = c.violation !== undefined && c.violation.level === s.level;
  const cls = [
    "mmulab-w2d-cell",
    s.leaf ? "mmulab-w2d-leaf" : "",
    s.installed ? "mmulab-w2d-installed" : "",
    s.aSet || s.dSet ? "mmulab-w2d-adset" : "",
    stopped ? "mmulab-w2d-violation" : "",
  ]
    .filter(Boolean)
    .join(" ");
  const title = [
    `EPT ${s.name}[${s.index}]${s.sp !== undefined ? ` (sp ${s.sp})` : ""}`,
    s.before === s.after ? s.after : `${s.before} → ${s.after}`,
    decoded("tdp", "", s.after),
  ]
    .filter(Boolean)
    .join("\n");
  const marks: Array<HTMLElement | null> = [
    s.installed ? badge("mmulab-w2d-new", "new", "installed by KVM's fault handler") : null,
    s.aSet ? badge("mmulab-w2d-a", "A", "accessed: set during this access") : null,
    s.dSet ? badge("mmulab-w2d-d", "D", "dirty: set during this access") : null,
    stopped ? badge("mmulab-w2d-stop", "⚠", violationText(c)) : null,
  ];
  return referenceCell(
    cls,
    { title, "data-level": String(s.level) },
    s.ref,
    s.after,
    `[${s.index}] ${eptLetters(s)}${s.leaf && s.pageSize ? ` ${sizeText(s.pageSize)}` : ""}`,
    marks,
  );
}

/**
 * A cell holding one memory reference: its number and the entry on the first line, the entry's
 * index and flags and the cell's badges on the second.
 */
function referenceCell(
  cls: string,
  attrs: Record<string, string>,
  ref: number | undefined,
  value: string,
  small: string,
  marks: ReadonlyArray<HTMLElement | null>,
): HTMLElement {
  return h(
    "td",
    { cls, attrs: { ...attrs, ...(ref !== undefined ? { "data-ref": String(ref) } : {}) } },
    [
      h("div", { cls: "mmulab-w2d-line" }, [
        ref !== undefined ? refMark(ref) : null,
        h("span", { cls: "mmulab-w2d-value", text: value }),
      ]),
      h("div", { cls: "mmulab-w2d-line mmulab-w2d-small" }, [
        h("span", { cls: "mmulab-w2d-flags", text: small }),
        ...marks,
      ]),
    ],
  );
}

function sizeText(bytes: number): string {
  return bytes >= 1073741824
    ? `${bytes / 1073741824}G`
    : bytes >= 1048576
      ? `${bytes / 1048576}M`
      : `${bytes / 1024}K`;
}

/** A column's EPT violations in words. */
function violationText(c: Walk2dColumn): string {
  const parts: string[] = [];
  const v = c.violation;
  if (v !== undefined)
    parts.push(
      `EPT violation${v.count > 1 ? ` ×${v.count}` : ""}${v.name !== undefined ? ` at EPT ${v.name}` : ""}: ${v.reason} (error code 0x${v.errorCode.toString(16)}) → KVM fault → retry`,
    );
  if (c.writeBackViolations !== undefined)
    parts.push(
      `A/D write-back: ${c.writeBackViolations} EPT violation${c.writeBackViolations > 1 ? "s" : ""}`,
    );
  return parts.join("; ");
}

/** Short guest flag letters. */
function guestLetters(l: WalkLevel): string {
  const f = new Set(l.flags ?? []);
  return ["present", "writable", "user", "accessed", "dirty", "huge", "nx"]
    .filter((x) => f.has(x as never))
    .map((x) =>
      x === "present"
        ? "P"
        : x === "writable"
          ? "W"
          : x === "user"
            ? "U"
            : x === "accessed"
              ? "A"
              : x === "dirty"
                ? "D"
                : x === "huge"
                  ? "PS"
                  : "NX",
    )
    .join(" ");
}

/** The bottom cell of a column: the guest entry read (or register), or the data's host address. */
function guestCell(c: Walk2dColumn, mode: string): HTMLElement {
  if (c.kind === "data") {
    return h("td", { cls: "mmulab-w2d-cell mmulab-w2d-data" }, [
      h("div", {
        cls: "mmulab-w2d-line",
        text: c.hpa !== undefined ? `→ hpa ${c.hpa}` : c.eptResult === "mmio" ? "MMIO exit" : "",
      }),
      h("div", { cls: "mmulab-w2d-line mmulab-w2d-small", text: `${c.eptAccess ?? ""} access` }),
    ]);
  }
  const l = c.guest;
  if (l === undefined) return h("td", { cls: "mmulab-w2d-cell" });
  const changed = l.before !== l.after;
  const title = [
    `guest ${l.name}[${l.index}] at gpa ${l.pteGpa}`,
    changed ? `${l.before} → ${l.after}` : l.after,
    decoded("guest", mode, l.after),
    c.note ?? "",
  ]
    .filter(Boolean)
    .join("\n");
  return referenceCell(
    `mmulab-w2d-cell mmulab-w2d-gpte${c.kind === "pdptr" ? " mmulab-w2d-register" : ""}`,
    { title },
    c.guestRef,
    l.after,
    c.kind === "pdptr" ? "register" : `[${l.index}] ${guestLetters(l)}`,
    [
      l.aSet ? badge("mmulab-w2d-a", "A", "accessed: set by this walk") : null,
      l.dSet ? badge("mmulab-w2d-d", "D", "dirty: set by this walk") : null,
      c.writeBackViolations !== undefined ? badge("mmulab-w2d-stop", "⚠", violationText(c)) : null,
    ],
  );
}

/** The geometry of the total, when every column walks the same number of EPT levels. */
function geometry(p: Walk2dPayload): string {
  const walked = p.columns.filter((c) => c.kind !== "pdptr");
  const data = walked.find((c) => c.kind === "data");
  const reads = walked.filter((c) => c.guestRef !== undefined).length;
  const e = new Set(walked.map((c) => c.ept.length));
  if (data === undefined || e.size !== 1 || reads !== walked.length - 1) return "";
  const n = [...e][0]!;
  return ` = (${reads} + 1) × (${n} + 1) − 1`;
}

/** Renders a validated 2-D walk payload into `host`. */
export function renderWalk2d(host: HTMLElement, p: Walk2dPayload): void {
  const acc = accessWords(p.access);
  host.dataset.references = String(p.references);
  host.dataset.violations = String(p.violations);
  host.appendChild(
    h("div", { cls: "mmulab-walk-head" }, [
      h("span", { cls: "mmulab-walk-gva", text: `2-D walk of ${p.gva}` }),
      h("span", {
        cls: "mmulab-walk-mode",
        text: `${p.mode === "none" ? "paging off" : `${p.mode} guest`} on ${p.eptLevels}-level EPT${p.eptAccessDirty ? "" : " (no EPT A/D)"}`,
      }),
      h("span", { cls: "mmulab-walk-access", text: acc }),
    ]),
  );
  const table = h("table", { cls: "mmulab-w2d-grid" });
  const head = h("tr", {}, [h("th", { cls: "mmulab-w2d-corner", text: "EPT ↓  guest →" })]);
  for (const c of p.columns) {
    const v = violationText(c);
    const nv = (c.violation?.count ?? 0) + (c.writeBackViolations ?? 0);
    head.appendChild(
      h(
        "th",
        {
          cls: `mmulab-w2d-col${v ? " mmulab-w2d-col-violation" : ""}`,
          attrs: { "data-kind": c.kind, "data-name": c.name, ...(v ? { title: v } : {}) },
        },
        [
          h("div", { cls: "mmulab-w2d-coltitle", text: columnTitle(c) }),
          h("div", {
            cls: "mmulab-w2d-small",
            text: `gpa ${c.gpa}${c.eptAccess !== undefined ? ` · EPT ${c.eptAccess}` : ""}`,
          }),
          v
            ? h("div", {
                cls: "mmulab-w2d-small mmulab-w2d-violation-text",
                text: `⚠ ${nv} EPT violation${nv > 1 ? "s" : ""}`,
              })
            : null,
        ],
      ),
    );
  }
  table.appendChild(h("thead", {}, [head]));
  const body = h("tbody");
  for (let level = p.eptLevels; level >= 1; level--) {
    const tr = h("tr", { cls: "mmulab-w2d-row", attrs: { "data-level": String(level) } }, [
      h("th", { cls: "mmulab-w2d-rowname", text: `EPT ${EPT_NAMES[level]}` }),
    ]);
    for (const c of p.columns) {
      const s = c.ept.find((x) => x.level === level);
      if (s !== undefined) tr.appendChild(eptCell(s, c));
      else {
        const above = c.ept.find((x) => x.level > level && x.leaf);
        tr.appendChild(
          h("td", {
            cls: "mmulab-w2d-cell mmulab-w2d-empty",
            text: c.kind === "pdptr" ? "" : "·",
            attrs: {
              title:
                c.kind === "pdptr"
                  ? "a register: no EPT walk"
                  : above !== undefined
                    ? `the EPT walk ended at a huge leaf (EPT ${above.name})`
                    : "not reached",
            },
          }),
        );
      }
    }
    body.appendChild(tr);
  }
  const guestRow = h("tr", { cls: "mmulab-w2d-row mmulab-w2d-guestrow" }, [
    h("th", { cls: "mmulab-w2d-rowname", text: "guest entry" }),
  ]);
  for (const c of p.columns) guestRow.appendChild(guestCell(c, p.mode));
  body.appendChild(guestRow);
  table.appendChild(body);
  host.appendChild(h("div", { cls: "mmulab-w2d-scroll" }, [table]));

  host.appendChild(
    h("div", { cls: "mmulab-w2d-total" }, [
      h("span", {
        cls: "mmulab-w2d-refs",
        text: `${p.references} memory references${geometry(p)}`,
      }),
      h("span", {
        cls: "mmulab-w2d-violations",
        text: ` · ${p.violations} EPT violation${p.violations === 1 ? "" : "s"} (VM exits to KVM)`,
      }),
    ]),
  );
  const r = p.result;
  host.appendChild(
    r.fault
      ? h("div", {
          cls: "mmulab-walk-result mmulab-walk-fault",
          text: `#${r.vector === 14 ? "PF" : "GP"} (vector ${r.vector}), error code 0x${r.errorCode.toString(16)}: ${r.reason}`,
        })
      : h("div", {
          cls: "mmulab-walk-result mmulab-walk-ok",
          text: `→ gpa ${r.gpa}${r.mmio ? " · MMIO" : ""}`,
        }),
  );
  host.appendChild(
    h("div", { cls: "mmulab-legend mmulab-w2d-legend" }, [
      h("span", { cls: "mmulab-legend-item" }, [
        refMark(1),
        h("span", { text: " memory reference, in the CPU's order" }),
      ]),
      h("span", { cls: "mmulab-legend-item" }, [
        badge("mmulab-w2d-new", "new", "installed by KVM's fault handler"),
        h("span", { text: " installed by KVM's fault" }),
      ]),
      h("span", { cls: "mmulab-legend-item" }, [
        badge("mmulab-w2d-a", "A", "accessed"),
        badge("mmulab-w2d-d", "D", "dirty"),
        h("span", { text: " set by this access" }),
      ]),
      h("span", { cls: "mmulab-legend-item" }, [
        badge("mmulab-w2d-stop", "⚠", "EPT violation"),
        h("span", { text: " EPT violation: KVM fault, then the retry" }),
      ]),
      h("span", {
        cls: "mmulab-legend-item",
        text: "R W X: EPT rights · hover a cell for the decoded entry",
      }),
    ]),
  );
}
