import { describe, expect, it } from "vitest";
import {
  htmlTableBundle,
  PAGETABLE_MIME,
  type PagetablePayload,
  PLOTLY_MIME,
  pagetableBundle,
  plotlyBundle,
  WALK_MIME,
  WALK2D_MIME,
  walk2dBundle,
  walkBundle,
} from "../src/display";

const payload: PagetablePayload = {
  version: 1,
  kind: "pagetable",
  title: "<script>alert(1)</script>",
  trees: [
    {
      kind: "tdp",
      format: "tdp-4",
      label: "a & b",
      root: {
        level: 4,
        name: "PML4",
        size: 512,
        entries: [
          { index: 3, count: 4, value: "0x7", flags: ["present"], leaf: false, note: "<i>x</i>" },
        ],
      },
    },
  ],
};

describe("display bundles", () => {
  it("pagetableBundle carries the payload, escaped static HTML with no script, and text", () => {
    const b = pagetableBundle(payload);
    expect(b[PAGETABLE_MIME]).toBe(payload);
    const html = b["text/html"] as string;
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).toContain("a &amp; b");
    expect(html).toContain("&lt;i&gt;x&lt;/i&gt;");
    const text = b["text/plain"] as string;
    // a folded run of 4 entries starting at index 3 covers 3..6
    expect(text).toContain("[3..6] 0x7 present");
  });

  it("refuses to build a bundle from an invalid payload", () => {
    const bad = { ...payload, trees: [] } as PagetablePayload;
    expect(() => pagetableBundle(bad)).toThrow(/payload\.trees must NOT have fewer than 1 items/);
  });

  it("walkBundle shows every level and the result", () => {
    const b = walkBundle({
      version: 1,
      kind: "walk",
      mode: "pae",
      gva: "0xc0001000",
      access: { write: false, user: true, fetch: false },
      levels: [
        {
          level: 3,
          name: "PDPTR",
          index: 3,
          pteGpa: "0x1018",
          before: "0x0",
          after: "0x0",
          leaf: false,
        },
      ],
      result: { fault: true, vector: 14, errorCode: 4, errorBits: ["U"], reason: "not present" },
    });
    expect(b[WALK_MIME]).toBeDefined();
    expect(b["text/plain"]).toContain("fault: vector 14 error code 0x4 [U]: not present");
    expect(b["text/html"]).toContain("PDPTR (3)");
  });

  it("walk2dBundle: a grid of EPT levels by guest access, escaped, and one text line per access", () => {
    const step = (level: number, ref: number) => ({
      level,
      name: (["", "PT", "PD", "PDPT", "PML4"] as const)[level] as "PML4" | "PDPT" | "PD" | "PT",
      index: 0,
      before: "0x0",
      after: "0x907",
      leaf: level === 1,
      ref,
      installed: true,
    });
    const b = walk2dBundle({
      version: 1,
      kind: "walk2d",
      mode: "none",
      eptLevels: 4,
      eptAccessDirty: true,
      gva: "0x1000",
      access: { write: false, user: false, fetch: false },
      columns: [
        {
          kind: "data",
          name: "data",
          gpa: "0x1000",
          eptAccess: "read",
          ept: [step(4, 1), step(3, 2), step(2, 3), step(1, 4)],
          eptResult: "mapped",
          hpa: "0x5000",
          violation: {
            count: 1,
            level: 4,
            name: "PML4",
            reason: "<b>not</b> present",
            errorCode: 4,
          },
        },
      ],
      references: 4,
      violations: 1,
      result: { fault: false, gpa: "0x1000" },
    });
    expect(b[WALK2D_MIME]).toBeDefined();
    const text = b["text/plain"] as string;
    expect(text.split("\n")[0]).toBe(
      "2-D walk of gva 0x1000 (none guest on 4-level EPT, read supervisor): 4 memory references, 1 EPT violation",
    );
    expect(text).toContain("PML4[0] #1 0x907 new, PDPT[0] #2 0x907 new");
    expect(text).toContain("1 EPT violation at EPT PML4");
    const html = b["text/html"] as string;
    expect(html).toContain("&lt;b&gt;not&lt;/b&gt; present");
    expect(html).not.toContain("<b>not</b>");
    for (const name of ["EPT PML4", "EPT PDPT", "EPT PD", "EPT PT"]) expect(html).toContain(name);
    expect(() => walk2dBundle({ version: 1, kind: "walk2d" } as never)).toThrow(/references/);
  });

  it("htmlTableBundle aligns columns and escapes cells; bigints shown as hex", () => {
    const b = htmlTableBundle("stats", [
      { name: "pages_4k", value: 12 },
      { name: "<b>", value: 255n },
    ]);
    expect(b["text/plain"]).toBe("stats\nname      value\npages_4k  12\n<b>       0xff");
    expect(b["text/html"]).toContain(
      '<td style="border:1px solid #ccc;padding:1px 6px;text-align:left">&lt;b&gt;</td>',
    );
  });

  it("plotlyBundle gives plotly JSON, an offline SVG and a text summary", () => {
    const fig = {
      data: [{ name: "pages_4k", x: [0, 1, 2], y: [0, 512, 1024] }],
      layout: { title: "sptes" },
    };
    const b = plotlyBundle(fig);
    expect(b[PLOTLY_MIME]).toBe(fig);
    const html = b["text/html"] as string;
    expect(html).toContain("<svg");
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
    expect(b["text/plain"]).toBe("sptes\n  pages_4k: 3 points, y 0..1024, last 1024");
    expect(() => plotlyBundle({ data: "x" } as never)).toThrow(/array of traces/);
  });

  it("plotlyBundle draws a heatmap offline as cells (runs merged, empty cells blank) and summarises z", () => {
    const fig = {
      data: [
        {
          type: "heatmap",
          name: "faults",
          y: ["0 GiB", "1 GiB"],
          z: [
            [1, 1, null, 3],
            [null, null, null, null],
          ],
        },
      ],
      layout: { title: { text: "heat" } },
    };
    const b = plotlyBundle(fig);
    const html = b["text/html"] as string;
    // Row 0: the two 1s are one run of the lowest colour, the blank cell is no rect, 3 the
    // highest; row 1 is all blank. No polyline: this is not a line chart.
    const rects = html.match(/<rect [^>]*fill="rgb[^"]*"/g) ?? [];
    expect(rects).toHaveLength(2);
    expect(rects[0]).toContain('fill="rgb(68,1,84)"');
    expect(rects[1]).toContain('fill="rgb(253,231,37)"');
    expect(html).not.toContain("<polyline");
    expect(html).toContain(">1 GiB</text>");
    expect(b["text/plain"]).toBe("heat\n  faults: heatmap of 2 × 4 cells, z 1..3");
    expect(html).toMatch(/>3<\/text>.*>1<\/text><\/svg>/); // no ticks named: highest, lowest
    // Ticks named (a log scale): those within z's range label the bar, where they fall.
    const log = plotlyBundle({
      data: [
        {
          ...fig.data[0]!,
          colorbar: { tickvals: [0, 1, 2, 3, 9], ticktext: ["1", "10", "100", "1000", "1e9"] },
        },
      ],
    });
    const labels = [
      ...(log["text/html"] as string).matchAll(/y="([\d.]+)" font-size="10">(1|1\d*|1e9)<\/text>/g),
    ];
    expect(labels.map((m) => m[2])).toEqual(["10", "100", "1000"]);
    expect(Number(labels[0]![1])).toBeGreaterThan(Number(labels[2]![1])); // 10 below 1000
  });
});
