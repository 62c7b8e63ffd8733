/**
 * The walk-trace view (`application/vnd.mmulab.walk+json`): the address split into its index
 * bits, one row per level with the entry read and any A/D bits the walk set, and the result —
 * the translated gpa or the fault with its error code decoded in words.
 */

import type { WalkPayload } from "@mmulab/core/display";
import { h } from "./dom";

/** Page-fault error code bits (x86 architecture): bit, short name, meaning when set / clear. */
const PFERR_BITS: ReadonlyArray<{ bit: number; name: string; set: string; clear?: string }> = [
  {
    bit: 0,
    name: "P",
    set: "protection violation on a present page",
    clear: "the page was not present",
  },
  { bit: 1, name: "W", set: "caused by a write", clear: "caused by a read" },
  { bit: 2, name: "U", set: "user-mode access", clear: "supervisor-mode access" },
  { bit: 3, name: "RSVD", set: "a reserved bit was set in a paging-structure entry" },
  { bit: 4, name: "I", set: "caused by an instruction fetch" },
  { bit: 5, name: "PK", set: "protection-key violation" },
  { bit: 6, name: "SS", set: "shadow-stack access" },
  { bit: 15, name: "SGX", set: "SGX access-control violation" },
];

/** The error code of a #PF in words, one phrase per bit, computed from the number itself. */
export function decodePfErrorCode(code: number): { name: string; set: boolean; words: string }[] {
  const out: { name: string; set: boolean; words: string }[] = [];
  for (const b of PFERR_BITS) {
    const set = Math.floor(code / 2 ** b.bit) % 2 === 1;
    if (set) out.push({ name: b.name, set, words: b.set });
    else if (b.clear) out.push({ name: b.name, set, words: b.clear });
  }
  return out;
}

/** The access walked for, in words ("write, user"). */
export function accessWords(a: WalkPayload["access"]): string {
  return [a.write ? "write" : "read", a.user ? "user" : "supervisor", a.fetch ? "fetch" : null]
    .filter((x) => x !== null)
    .join(", ");
}

/** Renders a validated walk payload into `host`. */
export function renderWalk(host: HTMLElement, p: WalkPayload): void {
  const acc = accessWords(p.access);
  host.appendChild(
    h("div", { cls: "mmulab-walk-head" }, [
      h("span", { cls: "mmulab-walk-gva", text: `walk of ${p.gva}` }),
      h("span", { cls: "mmulab-walk-mode", text: `${p.mode} paging` }),
      h("span", { cls: "mmulab-walk-access", text: acc }),
    ]),
  );
  if (p.indexBits && p.indexBits.length > 0) {
    const bits = h("div", { cls: "mmulab-walk-bits", attrs: { role: "list" } });
    for (const b of p.indexBits) {
      bits.appendChild(
        h(
          "div",
          { cls: "mmulab-walk-bitfield", attrs: { role: "listitem", "data-name": b.name } },
          [
            h("div", { cls: "mmulab-walk-bitname", text: b.name }),
            h("div", { cls: "mmulab-walk-bitrange", text: `bits ${b.hi}:${b.lo}` }),
            h("div", {
              cls: "mmulab-walk-bitvalue",
              text: `${b.value} (0x${b.value.toString(16)})`,
            }),
          ],
        ),
      );
    }
    host.appendChild(bits);
  }
  const table = h("table", { cls: "mmulab-walk-levels" });
  table.appendChild(
    h("thead", {}, [
      h("tr", {}, [
        h("th", { text: "level" }),
        h("th", { text: "table gfn" }),
        h("th", { text: "index" }),
        h("th", { text: "pte gpa" }),
        h("th", { text: "entry" }),
        h("th", { text: "flags" }),
        h("th", { text: "A/D set by walk" }),
        h("th", { text: "note" }),
      ]),
    ]),
  );
  const body = h("tbody");
  for (const l of p.levels) {
    const changed = l.before !== l.after;
    const ad = [l.aSet ? "A" : "", l.dSet ? "D" : ""].filter(Boolean).join("+");
    const entry = h("td", { cls: "mmulab-walk-entry" }, [
      h("span", { cls: "mmulab-walk-before", text: l.before }),
      changed ? h("span", { cls: "mmulab-walk-arrow", text: " → " }) : null,
      changed ? h("span", { cls: "mmulab-walk-after", text: l.after }) : null,
    ]);
    const chips = h("span", { cls: "mmulab-flags" });
    for (const f of l.flags ?? [])
      chips.appendChild(h("span", { cls: `mmulab-flag mmulab-flag-${f}`, text: f }));
    const flags = h("td", {}, [chips]);
    body.appendChild(
      h(
        "tr",
        {
          cls: `mmulab-walk-level${l.leaf ? " mmulab-walk-leaf" : ""}`,
          attrs: { "data-level": String(l.level), "data-name": l.name },
        },
        [
          h("td", { text: `${l.name} (L${l.level})${l.leaf ? " leaf" : ""}` }),
          h("td", { text: l.tableGfn ?? "" }),
          h("td", { text: String(l.index) }),
          h("td", { text: l.pteGpa }),
          entry,
          flags,
          h("td", { cls: "mmulab-walk-ad", text: ad || "—" }),
          h("td", { text: l.note ?? "" }),
        ],
      ),
    );
  }
  table.appendChild(body);
  host.appendChild(table);
  const r = p.result;
  if (!r.fault) {
    host.appendChild(
      h("div", { cls: "mmulab-walk-result mmulab-walk-ok" }, [
        h("span", { text: `→ gpa ${r.gpa}` }),
        r.pageSize
          ? h("span", {
              text: ` · ${r.pageSize >= 1073741824 ? `${r.pageSize / 1073741824} GiB` : r.pageSize >= 1048576 ? `${r.pageSize / 1048576} MiB` : `${r.pageSize / 1024} KiB`} page`,
            })
          : null,
        r.mmio ? h("span", { text: " · MMIO" }) : null,
      ]),
    );
  } else {
    const name = r.vector === 14 ? "#PF page fault" : "#GP general protection fault";
    const box = h(
      "div",
      { cls: "mmulab-walk-result mmulab-walk-fault", attrs: { role: "status" } },
      [
        h("div", {
          cls: "mmulab-walk-fault-title",
          text: `${name} (vector ${r.vector}), error code 0x${r.errorCode.toString(16)}`,
        }),
        h("div", { cls: "mmulab-walk-reason", text: r.reason }),
      ],
    );
    if (r.vector === 14) {
      const list = h("ul", { cls: "mmulab-walk-errbits" });
      for (const b of decodePfErrorCode(r.errorCode)) {
        list.appendChild(
          h("li", {
            attrs: { "data-bit": b.name, "data-set": String(b.set) },
            text: `${b.name}=${b.set ? 1 : 0}: ${b.words}`,
          }),
        );
      }
      box.appendChild(list);
    }
    host.appendChild(box);
  }
}
