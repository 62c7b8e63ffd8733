// Payloads for the browser tests, built here from the architecture's bit positions (the x86 PTE
// for guest entries, the EPT entry format for TDP entries) — independently of the renderer's
// decoder — so the tests can compare what the page shows with what the bits mean.

/** x86 PTE bits. */
export const PTE = { P: 0, RW: 1, US: 2, A: 5, D: 6, PS: 7, G: 8, XD: 63 };
/** EPT entry bits (+ KVM's software bits as core/src/mmu/spte.ts models them). */
export const EPT = { R: 0, W: 1, X: 2, PS: 7, A: 8, D: 9, MMU_P: 11, HOST_W: 57, MMU_W: 58 };

/** Builds "0x..." from a frame number and bit numbers. */
export function entryValue(frame, bits) {
  let v = BigInt(frame) << 12n;
  for (const b of bits) v |= 1n << BigInt(b);
  return `0x${v.toString(16)}`;
}

const hex = (n) => `0x${BigInt(n).toString(16)}`;

/** A 4 KiB EPT leaf (R, W, X, A and KVM's MMU-present, host- and MMU-writable bits) at `pfn`. */
export function tdpLeaf(index, pfn) {
  return {
    index,
    value: entryValue(pfn, [EPT.R, EPT.W, EPT.X, EPT.A, EPT.MMU_P, EPT.HOST_W, EPT.MMU_W]),
    flags: ["present", "writable", "accessed", "host-writable", "mmu-writable"],
    leaf: true,
    target: hex(pfn),
    pageSize: 4096,
  };
}

function guestLeaf(index, gfn, extra = [], flags = ["present", "writable", "user", "accessed"]) {
  return {
    index,
    value: entryValue(gfn, [PTE.P, PTE.RW, PTE.US, PTE.A, ...extra]),
    flags,
    leaf: true,
    target: hex(gfn),
    pageSize: 4096,
  };
}

/**
 * A guest 4-level tree mapping gva 0x400000.. with a PT of 10 alike 4 KiB leaves (0..9), a dirty
 * leaf at 10 and a read-only leaf at 20, plus a 2 MiB huge leaf at PD[3]; and the TDP tree that
 * backs it. `changed` returns the same snapshot after a write fault dirtied PT[11].
 */
export function smallSnapshot({ after = false } = {}) {
  const ptEntries = [];
  for (let i = 0; i < 10; i++) ptEntries.push(guestLeaf(i, 0x200 + i));
  ptEntries.push(
    guestLeaf(10, 0x20a, [PTE.D], ["present", "writable", "user", "accessed", "dirty"]),
  );
  if (after)
    ptEntries.push(
      guestLeaf(11, 0x20b, [PTE.D], ["present", "writable", "user", "accessed", "dirty"]),
    );
  ptEntries.push({
    index: 20,
    value: entryValue(0x214, [PTE.P, PTE.US, PTE.A]),
    flags: ["present", "user", "accessed"],
    leaf: true,
    target: "0x214",
    pageSize: 4096,
    note: "read-only <b>text</b>",
  });
  const guest = {
    kind: "guest",
    format: "4-level",
    label: "guest",
    root: {
      level: 4,
      name: "PML4",
      addr: "0x1000",
      size: 512,
      present: 1,
      entries: [
        {
          index: 0,
          value: entryValue(2, [PTE.P, PTE.RW, PTE.US, PTE.A]),
          flags: ["present", "writable", "user", "accessed"],
          leaf: false,
          target: "0x2",
          child: {
            level: 3,
            name: "PDPT",
            addr: "0x2000",
            size: 512,
            present: 1,
            entries: [
              {
                index: 0,
                value: entryValue(3, [PTE.P, PTE.RW, PTE.US, PTE.A]),
                flags: ["present", "writable", "user", "accessed"],
                leaf: false,
                target: "0x3",
                child: {
                  level: 2,
                  name: "PD",
                  addr: "0x3000",
                  size: 512,
                  present: 2,
                  entries: [
                    {
                      index: 2,
                      value: entryValue(4, [PTE.P, PTE.RW, PTE.US, PTE.A]),
                      flags: ["present", "writable", "user", "accessed"],
                      leaf: false,
                      target: "0x4",
                      va: "0x400000",
                      child: {
                        level: 1,
                        name: "PT",
                        addr: "0x4000",
                        size: 512,
                        present: ptEntries.length,
                        entries: ptEntries,
                      },
                    },
                    {
                      index: 3,
                      value: entryValue(0x600, [PTE.P, PTE.RW, PTE.US, PTE.A, PTE.D, PTE.PS]),
                      flags: ["present", "writable", "user", "accessed", "dirty", "huge"],
                      leaf: true,
                      target: "0x600",
                      va: "0x600000",
                      pageSize: 2097152,
                    },
                  ],
                },
              },
            ],
          },
        },
      ],
    },
  };
  const role = (level) => ({ word: hex(0x1000 * level + 0x3c0), level, direct: true, access: 7 });
  const tdpPt = [tdpLeaf(0x200 % 512, 0x9200), tdpLeaf(0x201 % 512, 0x9201)];
  if (after) tdpPt.push(tdpLeaf(0x20b % 512, 0x920b));
  const tdpNonLeaf = (index, pfn, child) => ({
    index,
    value: entryValue(pfn, [EPT.R, EPT.W, EPT.X, EPT.A, EPT.MMU_P]),
    flags: ["present", "writable", "accessed"],
    leaf: false,
    target: hex(pfn),
    child,
  });
  const tdp = {
    kind: "tdp",
    format: "tdp-4",
    label: "TDP (EPT)",
    root: {
      level: 4,
      name: "PML4",
      addr: "0x7000000",
      gfn: "0x0",
      role: role(4),
      spId: 0,
      size: 512,
      entries: [
        tdpNonLeaf(0, 0x7001, {
          level: 3,
          name: "PDPT",
          addr: "0x7001000",
          gfn: "0x0",
          role: role(3),
          spId: 1,
          size: 512,
          entries: [
            tdpNonLeaf(0, 0x7002, {
              level: 2,
              name: "PD",
              addr: "0x7002000",
              gfn: "0x0",
              role: role(2),
              spId: 2,
              size: 512,
              entries: [
                tdpNonLeaf(1, 0x7003, {
                  level: 1,
                  name: "PT",
                  addr: "0x7003000",
                  gfn: "0x200",
                  role: role(1),
                  spId: 3,
                  size: 512,
                  entries: tdpPt,
                }),
              ],
            }),
          ],
        }),
      ],
    },
  };
  return { guest, tdp };
}

/** Pagetable payload: guest and TDP side by side, and the diff against the earlier snapshot. */
export function pagetablePayload() {
  const now = smallSnapshot({ after: true });
  const before = smallSnapshot({ after: false });
  return {
    version: 1,
    kind: "pagetable",
    title: "guest and TDP after a write fault",
    trees: [now.guest, now.tdp],
    before: [before.guest, before.tdp],
  };
}

/** A 4-level walk of gva 0x40b123 (PML4 0, PDPT 0, PD 2, PT 11) that faults on a user write to a read-only page. */
export function walkPayload() {
  const gva = 0x40b123;
  const bits = [
    { name: "PML4", hi: 47, lo: 39 },
    { name: "PDPT", hi: 38, lo: 30 },
    { name: "PD", hi: 29, lo: 21 },
    { name: "PT", hi: 20, lo: 12 },
    { name: "offset", hi: 11, lo: 0 },
  ].map((b) => ({ ...b, value: Math.floor(gva / 2 ** b.lo) % 2 ** (b.hi - b.lo + 1) }));
  const lv = (level, name, tableGfn, index, target, extra, leaf, a) => {
    const before = entryValue(target, [PTE.P, PTE.US, ...extra]);
    const after = entryValue(target, [PTE.P, PTE.US, ...extra, ...(a ? [PTE.A] : [])]);
    return {
      level,
      name,
      tableGfn: hex(tableGfn),
      index,
      pteGpa: hex(tableGfn * 4096 + index * 8),
      before,
      after,
      flags: ["present", "user", ...(a ? ["accessed"] : [])],
      leaf,
      aSet: a,
      dSet: false,
    };
  };
  return {
    version: 1,
    kind: "walk",
    mode: "4-level",
    gva: hex(gva),
    access: { write: true, user: true, fetch: false },
    indexBits: bits,
    levels: [
      lv(4, "PML4", 1, bits[0].value, 2, [PTE.RW], false, true),
      lv(3, "PDPT", 2, bits[1].value, 3, [PTE.RW], false, true),
      lv(2, "PD", 3, bits[2].value, 4, [PTE.RW], false, true),
      lv(1, "PT", 4, bits[3].value, 0x20b, [], true, false),
    ],
    result: {
      fault: true,
      vector: 14,
      errorCode: 0b111,
      errorBits: ["P", "W", "U"],
      reason: "write to a read-only page",
    },
  };
}

/** A plotly figure with two traces. */
export function plotlyFigure() {
  return {
    data: [
      { type: "scatter", mode: "lines", name: "pages_4k", x: [0, 1, 2, 3], y: [0, 10, 20, 25] },
      { type: "bar", name: "pages_2m", x: [0, 1, 2, 3], y: [1, 1, 2, 3] },
    ],
    layout: { title: { text: "sptes by size" }, width: 600, height: 360 },
  };
}

/**
 * A snapshot with `leaves` present 4 KiB leaves: one PML4 and PDPT entry, a PD of
 * ceil(leaves/512) PT tables, each full. Every 7th leaf is dirty so runs break realistically.
 */
export function stressPayload(leaves = 100000) {
  const pts = Math.ceil(leaves / 512);
  const pd = [];
  let left = leaves;
  for (let t = 0; t < pts; t++) {
    const entries = [];
    const n = Math.min(512, left);
    left -= n;
    for (let i = 0; i < n; i++) {
      const gfn = 0x100000 + t * 512 + i;
      const dirty = (t * 512 + i) % 7 === 0;
      entries.push({
        index: i,
        value: entryValue(gfn, [PTE.P, PTE.RW, PTE.A, ...(dirty ? [PTE.D] : [])]),
        flags: dirty
          ? ["present", "writable", "accessed", "dirty"]
          : ["present", "writable", "accessed"],
        leaf: true,
        target: hex(gfn),
        pageSize: 4096,
      });
    }
    pd.push({
      index: t,
      value: entryValue(0x10000 + t, [PTE.P, PTE.RW, PTE.A]),
      flags: ["present", "writable", "accessed"],
      leaf: false,
      target: hex(0x10000 + t),
      child: { level: 1, name: "PT", size: 512, present: n, entries },
    });
  }
  const nonLeaf = (frame, child) => ({
    index: 0,
    value: entryValue(frame, [PTE.P, PTE.RW, PTE.A]),
    flags: ["present", "writable", "accessed"],
    leaf: false,
    target: hex(frame),
    child,
  });
  return {
    version: 1,
    kind: "pagetable",
    title: `${leaves} present leaves`,
    trees: [
      {
        kind: "guest",
        format: "4-level",
        root: {
          level: 4,
          name: "PML4",
          size: 512,
          entries: [
            nonLeaf(0x8000, {
              level: 3,
              name: "PDPT",
              size: 512,
              entries: [nonLeaf(0x8001, { level: 2, name: "PD", size: 512, entries: pd })],
            }),
          ],
        },
      },
    ],
  };
}

/**
 * The same entries with each stretch of alike 4 KiB leaves (next index, same flags, next frame)
 * folded into one entry with `count`, as core's snapshots fold them.
 */
export function foldLeafRuns(entries) {
  const out = [];
  for (const e of entries) {
    const r = out[out.length - 1];
    const n = r?.count ?? 1;
    const continues =
      r?.leaf &&
      e.leaf &&
      r.pageSize === 4096 &&
      e.pageSize === 4096 &&
      e.index === r.index + n &&
      e.flags.join() === r.flags.join() &&
      BigInt(e.target) === BigInt(r.target) + BigInt(n);
    if (continues) r.count = n + 1;
    else out.push({ ...e });
  }
  return out;
}

/** Strings that would run script or load something if any renderer turned them into HTML. */
export const HOSTILE_STRINGS = [
  "<script>window.__mmulabPwned = (window.__mmulabPwned || 0) + 1</script>",
  '<img src=x onerror="window.__mmulabPwned = (window.__mmulabPwned || 0) + 1">',
  "javascript:window.__mmulabPwned=1",
  '"><svg onload="window.__mmulabPwned=1">',
];

/**
 * Hostile payloads, each `{name, mime, data, expect}`: expect "render" (valid; hostile strings
 * must appear as text) or "error" (must show the error box).
 */
export function hostilePayloads() {
  const pt = "application/vnd.mmulab.pagetable+json";
  const walk = "application/vnd.mmulab.walk+json";
  const plotly = "application/vnd.plotly.v1+json";
  const good = pagetablePayload();
  const out = [];
  // Valid payloads whose free-text fields carry markup: must render, as text.
  const labelled = structuredClone(good);
  labelled.title = HOSTILE_STRINGS[0];
  labelled.trees[0].label = HOSTILE_STRINGS[1];
  labelled.trees[0].root.entries[0].note = HOSTILE_STRINGS[2];
  out.push({
    name: "markup in title/label/note",
    mime: pt,
    data: labelled,
    expect: "render",
    texts: [HOSTILE_STRINGS[0], HOSTILE_STRINGS[1]],
  });
  const w = walkPayload();
  w.result.reason = HOSTILE_STRINGS[1];
  w.levels[0].note = HOSTILE_STRINGS[3];
  out.push({
    name: "markup in walk reason/note",
    mime: walk,
    data: w,
    expect: "render",
    texts: [HOSTILE_STRINGS[1], HOSTILE_STRINGS[3]],
  });
  // Invalid payloads: an error box each.
  const badHex = structuredClone(good);
  badHex.trees[0].root.entries[0].value = HOSTILE_STRINGS[0];
  out.push({ name: "script tag as an entry value", mime: pt, data: badHex, expect: "error" });
  out.push({
    name: "wrong type: string payload",
    mime: pt,
    data: HOSTILE_STRINGS[1],
    expect: "error",
  });
  out.push({ name: "wrong type: array payload", mime: walk, data: [1, 2, 3], expect: "error" });
  const wrongTypes = structuredClone(good);
  wrongTypes.trees[0].root.entries[0].index = "0";
  wrongTypes.trees[0].root.size = "512";
  out.push({
    name: "wrong types: index and size as strings",
    mime: pt,
    data: wrongTypes,
    expect: "error",
  });
  const missing = structuredClone(good);
  delete missing.trees[0].root.entries[0].flags;
  delete missing.trees[1].root;
  out.push({ name: "missing fields", mime: pt, data: missing, expect: "error" });
  const missingWalk = walkPayload();
  delete missingWalk.result;
  out.push({ name: "walk without result", mime: walk, data: missingWalk, expect: "error" });
  const future = structuredClone(good);
  future.version = 2;
  future.trees[0].newField = "from the future";
  out.push({
    name: "future version",
    mime: pt,
    data: future,
    expect: "error",
    message: /version 2/,
  });
  const bigLabel = structuredClone(good);
  bigLabel.title = `${HOSTILE_STRINGS[1]}${"A".repeat(10 * 1024 * 1024)}`;
  out.push({ name: "10 MB title", mime: pt, data: bigLabel, expect: "error" });
  const bigEntries = structuredClone(good);
  bigEntries.trees[0].root.entries = Array.from({ length: 70000 }, (_, i) => ({
    index: i,
    value: "0x1",
    flags: ["present"],
    leaf: true,
    note: HOSTILE_STRINGS[0],
  }));
  out.push({ name: "10 MB entries array", mime: pt, data: bigEntries, expect: "error" });
  // A valid figure whose labels carry markup: plotly draws its own small tag subset as SVG text;
  // links with a javascript: scheme and unknown tags must not survive as live elements.
  out.push({
    name: "markup in plotly labels",
    mime: plotly,
    data: {
      data: [{ type: "bar", name: HOSTILE_STRINGS[1], x: [HOSTILE_STRINGS[0], "b"], y: [1, 2] }],
      layout: {
        title: { text: `<a href="${HOSTILE_STRINGS[2]}">click</a> ${HOSTILE_STRINGS[3]}` },
      },
    },
    expect: "plot",
  });
  out.push({
    name: "plotly figure without data",
    mime: plotly,
    data: { layout: { title: HOSTILE_STRINGS[0] } },
    expect: "error",
  });
  return out;
}
