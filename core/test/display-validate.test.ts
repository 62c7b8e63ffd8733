import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DISPLAY_SCHEMA_VERSION,
  PAGETABLE_MIME,
  type PagetablePayload,
  PLOTLY_MIME,
  validateDisplayPayload,
  WALK_MIME,
  WALK2D_MIME,
  type Walk2dPayload,
  type WalkPayload,
} from "../src/display";

/** A 4-level guest tree mapping gva 0x1000 -> gfn 0x5 through tables at 0x1000..0x4000. */
function guestTree(): PagetablePayload {
  const pt = {
    level: 1,
    name: "PT" as const,
    addr: "0x4000",
    size: 512 as const,
    entries: [
      {
        index: 1,
        value: "0x5063",
        flags: ["present" as const, "writable" as const, "accessed" as const, "dirty" as const],
        leaf: true,
        target: "0x5",
        va: "0x1000",
        pageSize: 4096 as const,
      },
    ],
  };
  const pd = {
    level: 2,
    name: "PD" as const,
    addr: "0x3000",
    size: 512 as const,
    entries: [
      {
        index: 0,
        value: "0x4003",
        flags: ["present" as const, "writable" as const],
        leaf: false,
        target: "0x4",
        child: pt,
      },
    ],
  };
  const pdpt = {
    level: 3,
    name: "PDPT" as const,
    addr: "0x2000",
    size: 512 as const,
    entries: [
      {
        index: 0,
        value: "0x3003",
        flags: ["present" as const, "writable" as const],
        leaf: false,
        child: pd,
      },
    ],
  };
  return {
    version: 1,
    kind: "pagetable",
    title: "guest <tables> & friends",
    trees: [
      {
        kind: "guest",
        format: "4-level",
        root: {
          level: 4,
          name: "PML4",
          addr: "0x1000",
          size: 512,
          present: 1,
          entries: [
            { index: 0, value: "0x2003", flags: ["present", "writable"], leaf: false, child: pdpt },
          ],
        },
      },
    ],
  };
}

function walk(): WalkPayload {
  return {
    version: 1,
    kind: "walk",
    mode: "4-level",
    gva: "0x1000",
    access: { write: true, user: false, fetch: false },
    levels: [
      {
        level: 4,
        name: "PML4",
        index: 0,
        pteGpa: "0x1000",
        before: "0x2003",
        after: "0x2023",
        leaf: false,
        aSet: true,
      },
      {
        level: 1,
        name: "PT",
        index: 1,
        pteGpa: "0x4008",
        before: "0x5003",
        after: "0x5063",
        leaf: true,
        aSet: true,
        dSet: true,
      },
    ],
    result: { fault: false, gpa: "0x5000", pageSize: 4096 },
  };
}

/**
 * A 2-D walk of a 4-level guest on 4-level EPT, warm: 24 references (5 columns; each guest read
 * costs 4 EPT references plus its own, the data 4). Entries abridged to the same values.
 */
function walk2d(): Walk2dPayload {
  let ref = 0;
  const ept = () =>
    [4, 3, 2, 1].map((level) => ({
      level,
      name: (["", "PT", "PD", "PDPT", "PML4"] as const)[level] as "PML4" | "PDPT" | "PD" | "PT",
      index: 0,
      sp: 4 - level,
      before: "0x907",
      after: "0x907",
      flags: ["present" as const, "writable" as const, "user" as const, "exec" as const],
      leaf: level === 1,
      ref: ++ref,
    }));
  const gpte = (name: "PML4" | "PDPT" | "PD" | "PT", level: number) => {
    const steps = ept();
    return {
      kind: "gpte" as const,
      name,
      gpa: `0x${(0x100000 + (4 - level) * 0x1000).toString(16)}`,
      eptAccess: "write" as const,
      ept: steps,
      eptResult: "mapped" as const,
      guest: {
        level,
        name,
        index: 0,
        pteGpa: "0x100000",
        before: "0x101027",
        after: "0x101027",
        leaf: level === 1,
      },
      guestRef: ++ref,
    };
  };
  const columns: Walk2dPayload["columns"] = [
    gpte("PML4", 4),
    gpte("PDPT", 3),
    gpte("PD", 2),
    gpte("PT", 1),
  ];
  columns.push({
    kind: "data",
    name: "data",
    gpa: "0x1003123",
    eptAccess: "read",
    ept: ept(),
    eptResult: "mapped",
    hpa: "0x10001003123",
  });
  return {
    version: 1,
    kind: "walk2d",
    mode: "4-level",
    eptLevels: 4,
    eptAccessDirty: true,
    gva: "0x40003123",
    access: { write: false, user: true, fetch: false },
    columns,
    references: ref,
    violations: 0,
    result: { fault: false, gpa: "0x1003123", pageSize: 4096 },
  };
}

describe("validateDisplayPayload", () => {
  it("accepts well-formed pagetable and walk payloads", () => {
    expect(validateDisplayPayload(PAGETABLE_MIME, guestTree())).toEqual({ ok: true });
    expect(validateDisplayPayload(WALK_MIME, walk())).toEqual({ ok: true });
    const fault: WalkPayload = {
      ...walk(),
      result: {
        fault: true,
        vector: 14,
        errorCode: 0x3,
        errorBits: ["P", "W"],
        reason: "write to read-only page",
      },
    };
    expect(validateDisplayPayload(WALK_MIME, fault)).toEqual({ ok: true });
  });

  it("accepts a well-formed walk2d payload, with violations, a PDPTE register column and a fault", () => {
    const p = walk2d();
    expect(p.references).toBe(24);
    expect(validateDisplayPayload(WALK2D_MIME, p)).toEqual({ ok: true });
    const cold = walk2d();
    cold.violations = 1;
    cold.columns[0]!.violation = {
      count: 1,
      level: 4,
      name: "PML4",
      reason: "EPT entry not present",
      errorCode: 2,
    };
    cold.columns[0]!.ept[0]!.installed = true;
    cold.columns[3]!.writeBackViolations = 1;
    cold.columns[3]!.ept[3]!.aSet = true;
    cold.columns[3]!.ept[3]!.dSet = true;
    cold.columns[3]!.ept[3]!.pageSize = 4096;
    expect(validateDisplayPayload(WALK2D_MIME, cold)).toEqual({ ok: true });
    const pae: Walk2dPayload = {
      ...walk2d(),
      mode: "pae",
      columns: [
        {
          kind: "pdptr",
          name: "PDPTR",
          gpa: "0x1008",
          ept: [],
          guest: {
            level: 3,
            name: "PDPTR",
            index: 1,
            pteGpa: "0x1008",
            before: "0x0",
            after: "0x0",
            leaf: false,
          },
          note: "PDPTE register",
        },
      ],
      references: 0,
      result: { fault: true, vector: 14, errorCode: 4, errorBits: ["U"], reason: "not present" },
    };
    expect(validateDisplayPayload(WALK2D_MIME, pae)).toEqual({ ok: true });
  });

  it("rejects bad walk2d payloads: each field checked, with its path", () => {
    type Node = Record<string | number, unknown>;
    /** The problems of a walk2d payload with `value` at `path` (undefined: the key deleted). */
    const bad = (path: (string | number)[], value: unknown) => {
      const p = walk2d() as unknown as Node;
      let node = p;
      for (const k of path.slice(0, -1)) node = node[k] as Node;
      const last = path[path.length - 1]!;
      if (value === undefined) delete node[last];
      else node[last] = value;
      const r = validateDisplayPayload(WALK2D_MIME, p);
      expect(r.ok).toBe(false);
      return r.ok ? "" : r.errors.join("\n");
    };
    const cols = walk2d().columns;
    const col0 = ["columns", 0];
    const step0 = [...col0, "ept", 0];
    expect(bad(["references"], undefined)).toContain('lacks required property "references"');
    expect(bad(["eptLevels"], 3)).toMatch(/payload\.eptLevels must be one of \[4,5\]/);
    expect(bad(["references"], 36)).toMatch(/payload\.references must be <= 35/);
    expect(bad(["violations"], -1)).toMatch(/payload\.violations must be >= 0/);
    expect(bad([...col0, "kind"], "register")).toMatch(
      /payload\.columns\[0\]\.kind must be one of/,
    );
    expect(bad([...step0, "name"], "PDPTR")).toMatch(
      /payload\.columns\[0\]\.ept\[0\]\.name must be one of/,
    );
    expect(bad([...step0, "index"], 512)).toMatch(/must be <= 511/);
    expect(bad([...step0, "ref"], 0)).toMatch(/ref must be >= 1/);
    expect(bad([...step0, "after"], "0xZZ")).toMatch(/ept\[0\]\.after must match pattern/);
    expect(bad([...col0, "eptAccess"], "exec")).toMatch(/eptAccess must be one of/);
    expect(bad([...col0, "eptResult"], "fault")).toMatch(/eptResult must be one of/);
    expect(bad([...col0, "violation"], { count: 0, reason: "x", errorCode: 2 })).toMatch(
      /violation\.count must be >= 1/,
    );
    expect(bad([...col0, "violation"], { count: 1, reason: "x" })).toContain(
      'lacks required property "errorCode"',
    );
    expect(bad([...col0, "guest", "name"], "data")).toMatch(/guest\.name must be one of/);
    expect(bad([...col0, "colour"], "red")).toContain('unknown property "colour"');
    expect(bad(["columns"], [...cols, cols[0], cols[1]])).toMatch(
      /payload\.columns must NOT have more than 6 items/,
    );
    expect(bad(["columns", 4, "ept"], [...cols[4]!.ept, ...cols[4]!.ept])).toMatch(
      /ept must NOT have more than 5 items/,
    );
    expect(bad(["kind"], "walk")).toMatch(/kind must be "walk2d", got "walk"/);
  });

  it("uses the schema file in core/schema (version constant agrees with it)", () => {
    const schema = JSON.parse(
      readFileSync(join(__dirname, "../schema/display.v1.schema.json"), "utf8"),
    );
    expect(schema.definitions.pagetable.properties.version.const).toBe(DISPLAY_SCHEMA_VERSION);
    expect(schema.definitions.walk.properties.version.const).toBe(DISPLAY_SCHEMA_VERSION);
    expect(schema.definitions.walk2d.properties.version.const).toBe(DISPLAY_SCHEMA_VERSION);
  });

  it("says a newer version is newer, before anything else", () => {
    const r = validateDisplayPayload(PAGETABLE_MIME, { ...guestTree(), version: 2, extra: 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/payload version 2 is newer than the supported version 1/);
  });

  it("names the JSON path and the bad value", () => {
    const p = guestTree() as unknown as { trees: { root: { entries: { value: string }[] } }[] };
    p.trees[0]!.root.entries[0]!.value = "0xZZ";
    const r = validateDisplayPayload(PAGETABLE_MIME, p);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.message).toContain("payload.trees[0].root.entries[0].value");
      expect(r.message).toContain('"0xZZ"');
    }
  });

  it("reports unknown and missing properties and bad enum values", () => {
    const w = walk() as unknown as Record<string, unknown>;
    w.colour = "red";
    delete w.gva;
    (w.levels as { name: string }[])[0]!.name = "PML6";
    const r = validateDisplayPayload(WALK_MIME, w);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      const all = r.errors.join("\n");
      expect(all).toContain('unknown property "colour"');
      expect(all).toContain('lacks required property "gva"');
      expect(all).toMatch(/payload\.levels\[0\]\.name must be one of .*PML5.* \(value: "PML6"\)/);
    }
  });

  it("rejects a payload of the other kind, non-objects and unknown MIME types", () => {
    const r1 = validateDisplayPayload(WALK_MIME, guestTree());
    expect(r1.ok || r1.message).toMatch(/kind must be "walk", got "pagetable"/);
    const r2 = validateDisplayPayload(PAGETABLE_MIME, [1, 2]);
    expect(r2.ok || r2.message).toMatch(/must be a JSON object, got \[1,2\]/);
    const r3 = validateDisplayPayload("application/x-nope", {});
    expect(r3.ok || r3.message).toMatch(/unknown display MIME type "application\/x-nope"/);
    const r4 = validateDisplayPayload(PAGETABLE_MIME, { kind: "pagetable", trees: [] });
    expect(r4.ok || r4.message).toMatch(/version must be a positive integer .* got undefined/);
  });

  it("enforces the schema's bounds (entry index 0..1023, at most 4 trees)", () => {
    const p = guestTree();
    p.trees[0]!.root.entries[0]!.index = 1024;
    expect(validateDisplayPayload(PAGETABLE_MIME, p).ok).toBe(false);
    const q = guestTree();
    q.trees = [q.trees[0]!, q.trees[0]!, q.trees[0]!, q.trees[0]!, q.trees[0]!];
    expect(validateDisplayPayload(PAGETABLE_MIME, q).ok).toBe(false);
  });

  it("checks plotly figures for shape (network and size limits: below)", () => {
    expect(validateDisplayPayload(PLOTLY_MIME, { data: [{ y: [1, 2] }] })).toEqual({ ok: true });
    const r = validateDisplayPayload(PLOTLY_MIME, { data: 3 });
    expect(r.ok || r.message).toMatch(/figure.data must be an array of traces, got 3/);
  });
});

describe("types.ts mirrors the schema's enums", () => {
  const schema = JSON.parse(
    readFileSync(join(__dirname, "../schema/display.v1.schema.json"), "utf8"),
  );
  const d = schema.definitions;
  it("flags, level names, page sizes, tree kinds/formats, walk modes, error bits, walk2d enums", async () => {
    const t = await import("../src/display/types");
    expect([...t.FLAGS]).toEqual(d.flag.enum);
    expect([...t.TABLE_NAMES]).toEqual(d.table.properties.name.enum);
    expect([...t.TABLE_NAMES]).toEqual(d.walkLevel.properties.name.enum);
    expect([...t.PAGE_SIZES]).toEqual(d.entry.properties.pageSize.enum);
    expect([...t.TREE_KINDS]).toEqual(d.tree.properties.kind.enum);
    expect([...t.TREE_FORMATS]).toEqual(d.tree.properties.format.enum);
    expect([...t.WALK_MODES]).toEqual(d.walk.properties.mode.enum);
    expect([...t.ERROR_BITS]).toEqual(d.walkResult.oneOf[1].properties.errorBits.items.enum);
    expect([...t.EPT_TABLE_NAMES]).toEqual(d.eptStep.properties.name.enum);
    expect([...t.EPT_TABLE_NAMES]).toEqual(
      d.walk2dColumn.properties.violation.properties.name.enum,
    );
    expect([...t.WALK2D_COLUMN_KINDS]).toEqual(d.walk2dColumn.properties.kind.enum);
    expect([...t.EPT_ACCESSES]).toEqual(d.walk2dColumn.properties.eptAccess.enum);
    expect([...t.WALK_MODES]).toEqual(d.walk2d.properties.mode.enum);
    expect([...t.TABLE_NAMES, "data"]).toEqual(d.walk2dColumn.properties.name.enum);
  });
});

describe("validateDisplayPayload on very large payloads", () => {
  it("reports the first problem of a huge bad payload and says the rest is not listed", () => {
    const p = guestTree();
    // 70,000 bad entries: too many for one table (maxItems 1024) and each with a bad value.
    p.trees[0]!.root.entries = Array.from({ length: 70_000 }, (_, i) => ({
      index: i % 1024,
      value: "<script>",
      flags: ["present"],
      leaf: true,
    }));
    const r = validateDisplayPayload(PAGETABLE_MIME, p);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toHaveLength(1);
    expect(r.message).toMatch(
      /^invalid application\/vnd\.mmulab\.pagetable\+json payload: payload\.trees\[0\]\.root\.entries/,
    );
    expect(r.message).toMatch(/further problems of a payload this large are not listed/);
  });
  it("still lists every problem of a small bad payload", () => {
    const p = guestTree();
    p.trees[0]!.root.entries = p.trees[0]!.root.entries.map((e) => ({ ...e, value: "nothex" }));
    const r = validateDisplayPayload(PAGETABLE_MIME, p);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.length).toBe(p.trees[0]!.root.entries.length);
  });
});

describe("validateDisplayPayload on hostile shapes (the renderer fuzz's findings)", () => {
  /** `k` objects nested in each other, `{ a: { a: ... { a: 1 } } }`. */
  const nest = (k: number): unknown => {
    let v: unknown = 1;
    for (let i = 0; i < k; i++) v = { a: v };
    return v;
  };
  const depthMessage = /nests more than 64 levels of objects and arrays; at most 64 are allowed/;

  it("refuses payloads nested more than 64 deep before ajv (whose recursion would overflow)", () => {
    // The payload object is depth 1 and payload.x's outermost object depth 2, so nest(63) ends at
    // depth 64 (allowed; the unknown property is what fails) and nest(64) at 65.
    const at64 = { ...guestTree(), x: nest(63) };
    const at65 = { ...guestTree(), x: nest(64) };
    const r64 = validateDisplayPayload(PAGETABLE_MIME, at64);
    expect(r64.ok || r64.message).toMatch(/has unknown property "x"/);
    const r65 = validateDisplayPayload(PAGETABLE_MIME, at65);
    expect(r65.ok || r65.message).toMatch(depthMessage);
  });

  it("a chain of 10^4 page tables, each the only child of the one above, is refused by depth", () => {
    // Every table is schema-valid (level 1, 512 entries), so only the depth check stops it.
    let table: Record<string, unknown> = { level: 1, name: "PT", size: 512, entries: [] };
    for (let i = 0; i < 10_000; i++) {
      table = {
        level: 1,
        name: "PT",
        size: 512,
        entries: [{ index: 0, value: "0x1", flags: ["present"], leaf: false, child: table }],
      };
    }
    const p = {
      version: 1,
      kind: "pagetable",
      trees: [{ kind: "guest", format: "4-level", root: table }],
    };
    const r = validateDisplayPayload(PAGETABLE_MIME, p);
    expect(r.ok || r.message).toMatch(depthMessage);
    const w = validateDisplayPayload(WALK2D_MIME, { version: 1, kind: "walk2d", x: nest(10_000) });
    expect(w.ok || w.message).toMatch(depthMessage);
  });

  it("a 5-level tree (PML5 down to PT) nests 19 deep and passes", () => {
    // payload 1, trees 2, tree 3, root (PML5) 4, and 3 more per table: PT at 16, its entries 17,
    // an entry 18, its flags 19.
    let table: Record<string, unknown> = {
      level: 1,
      name: "PT",
      size: 512,
      entries: [{ index: 0, value: "0x1003", flags: ["present"], leaf: true }],
    };
    for (const [level, name] of [
      [2, "PD"],
      [3, "PDPT"],
      [4, "PML4"],
      [5, "PML5"],
    ] as const) {
      table = {
        level,
        name,
        size: 512,
        entries: [{ index: 0, value: "0x2003", flags: ["present"], leaf: false, child: table }],
      };
    }
    const p = {
      version: 1,
      kind: "pagetable",
      trees: [{ kind: "guest", format: "5-level", root: table }],
    };
    expect(validateDisplayPayload(PAGETABLE_MIME, p)).toEqual({ ok: true });
  });

  it("plotly: map and geo traces (tiles, topojson from a CDN) are refused by name", () => {
    for (const type of ["scattergeo", "choropleth", "scattermap", "densitymap", "scattermapbox"]) {
      const r = validateDisplayPayload(PLOTLY_MIME, { data: [{ type: "bar", y: [1] }, { type }] });
      expect(r.ok || r.message).toMatch(
        new RegExp(
          `figure\\.data\\[1\\]\\.type "${type}" draws a map whose tiles or outlines plotly fetches from the internet`,
        ),
      );
    }
    expect(validateDisplayPayload(PLOTLY_MIME, { data: [{ type: "heatmap", z: [[1]] }] })).toEqual({
      ok: true,
    });
  });

  it("plotly: image sources must be data: URLs, wherever they sit (layout, template, image trace)", () => {
    const url = "http://192.0.2.1/x.png";
    const cases: Array<[unknown, string]> = [
      [{ data: [], layout: { images: [{ source: url }] } }, "figure.layout.images[0].source"],
      [
        { data: [], layout: { template: { layout: { images: [{ source: url }] } } } },
        "figure.layout.template.layout.images[0].source",
      ],
      [{ data: [{ type: "image", source: `//192.0.2.1/x.png` }] }, "figure.data[0].source"],
    ];
    for (const [figure, path] of cases) {
      const r = validateDisplayPayload(PLOTLY_MIME, figure);
      expect(r.ok || r.message).toContain(`${path} must be a data: URL; plotly would load`);
    }
    const inline = { data: [{ type: "image", source: "data:image/png;base64,iVBORw0KGgo=" }] };
    expect(validateDisplayPayload(PLOTLY_MIME, inline)).toEqual({ ok: true });
  });

  it("plotly: at most 1,000 traces, 10,000 per-point SVG shapes and 10,000-character strings", () => {
    const traces = (n: number) => Array.from({ length: n }, () => ({ type: "scatter", y: [1] }));
    expect(validateDisplayPayload(PLOTLY_MIME, { data: traces(1000) })).toEqual({ ok: true });
    const many = validateDisplayPayload(PLOTLY_MIME, { data: traces(1001) });
    expect(many.ok || many.message).toMatch(/has 1001 traces; at most 1000 are drawn/);
    // Bars are one SVG path each; two traces of 5,000 bars are 10,000 shapes, one more is too many.
    const bars = (n: number) => ({
      type: "bar",
      x: Array.from({ length: n }, (_, i) => i),
      y: [1],
    });
    expect(validateDisplayPayload(PLOTLY_MIME, { data: [bars(5000), bars(5000)] })).toEqual({
      ok: true,
    });
    const tooMany = validateDisplayPayload(PLOTLY_MIME, { data: [bars(5000), bars(5001)] });
    expect(tooMany.ok || tooMany.message).toMatch(
      /draws 10001 bars, markers or other per-point shapes/,
    );
    // A line is one path whatever its length; markers are one shape per point (scatter's default
    // type when `type` is absent).
    const ys = Array.from({ length: 100_000 }, (_, i) => i);
    expect(validateDisplayPayload(PLOTLY_MIME, { data: [{ y: ys, mode: "lines" }] })).toEqual({
      ok: true,
    });
    const markers = validateDisplayPayload(PLOTLY_MIME, { data: [{ y: ys, mode: "markers" }] });
    expect(markers.ok || markers.message).toMatch(/draws 100000 bars, markers/);
    const title = (n: number) => ({ data: [], layout: { title: { text: "t".repeat(n) } } });
    expect(validateDisplayPayload(PLOTLY_MIME, title(10_000))).toEqual({ ok: true });
    const long = validateDisplayPayload(PLOTLY_MIME, title(10_001));
    expect(long.ok || long.message).toMatch(
      /figure\.layout\.title\.text has 10001 characters; at most 10000 are allowed/,
    );
  });
});
