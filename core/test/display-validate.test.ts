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

  it("uses the schema file in core/schema (version constant agrees with it)", () => {
    const schema = JSON.parse(
      readFileSync(join(__dirname, "../schema/display.v1.schema.json"), "utf8"),
    );
    expect(schema.definitions.pagetable.properties.version.const).toBe(DISPLAY_SCHEMA_VERSION);
    expect(schema.definitions.walk.properties.version.const).toBe(DISPLAY_SCHEMA_VERSION);
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

  it("checks plotly figures for shape only", () => {
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
  it("flags, level names, page sizes, tree kinds/formats, walk modes, error bits", async () => {
    const t = await import("../src/display/types");
    expect([...t.FLAGS]).toEqual(d.flag.enum);
    expect([...t.TABLE_NAMES]).toEqual(d.table.properties.name.enum);
    expect([...t.TABLE_NAMES]).toEqual(d.walkLevel.properties.name.enum);
    expect([...t.PAGE_SIZES]).toEqual(d.entry.properties.pageSize.enum);
    expect([...t.TREE_KINDS]).toEqual(d.tree.properties.kind.enum);
    expect([...t.TREE_FORMATS]).toEqual(d.tree.properties.format.enum);
    expect([...t.WALK_MODES]).toEqual(d.walk.properties.mode.enum);
    expect([...t.ERROR_BITS]).toEqual(
      d.walk.properties.result.oneOf[1].properties.errorBits.items.enum,
    );
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
