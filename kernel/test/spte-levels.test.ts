// spteLevelFigure / plotSpteLevels: levels given as any subset, a log y axis, and the memory each
// page size maps. Expected bytes are the counts times the x86 page sizes (4 KiB, 2 MiB, 1 GiB).
import { plotlyBundle } from "@mmulab/core/display";
import { describe, expect, it } from "vitest";
import { DisplayError, SpteSeries, spteLevelFigure } from "../src/helpers";

const lines = (fig: ReturnType<typeof spteLevelFigure>) => fig.data.map((t) => [t.name, t.y]);

describe("spteLevelFigure", () => {
  it("draws only the levels the steps give; a level missing from one step is a gap there", () => {
    // A machine without 1 GiB pages reports no pages_1g; step 1 lacks pages_2m.
    const fig = spteLevelFigure([{ pages_4k: 512, pages_2m: 1 }, { pages_4k: 7 }]);
    expect(lines(fig)).toEqual([
      ["pages_4k", [512, 7]],
      ["pages_2m", [1, null]],
    ]);
    expect(lines(spteLevelFigure([{ stats: { pages_1g: 2 } }]))).toEqual([["pages_1g", [2]]]);
  });

  it("keeps the old call shape (steps, title, xTitle) and the all-three-levels result", () => {
    const fig = spteLevelFigure(
      [
        { label: 64, pages_4k: 1, pages_2m: 0, pages_1g: 0 },
        { label: 128, stat: { pages_4k: 0, pages_2m: 2, pages_1g: 0 } },
      ],
      "leaves",
      "MiB touched",
    );
    expect(lines(fig)).toEqual([
      ["pages_4k", [1, 0]],
      ["pages_2m", [0, 2]],
      ["pages_1g", [0, 0]],
    ]);
    expect(fig.data[0]!.x).toEqual([64, 128]);
    expect(fig.layout).toMatchObject({
      title: { text: "leaves" },
      xaxis: { title: { text: "MiB touched" } },
      yaxis: { type: "linear" },
    });
  });

  it("names a step that gives no level at all, and a bad count", () => {
    expect(() => spteLevelFigure([{ pages_4k: 1 }, { label: "x" } as never])).toThrow(
      /steps\[1\] has none of pages_4k, pages_2m, pages_1g/,
    );
    expect(() => spteLevelFigure([{ pages_2m: 1.5 }])).toThrow(
      "steps[0].pages_2m must be a non-negative integer count, got 1.5",
    );
    expect(() => spteLevelFigure([{ pages_2m: 1 }], { yAxis: "ln" as never })).toThrow(
      DisplayError,
    );
    expect(() => spteLevelFigure([{ pages_2m: 1 }], { view: "pages" as never })).toThrow(
      /view must be "sptes" or "bytes", got "pages"/,
    );
  });

  it("a log y axis leaves zeros out (log 0 has no place on it)", () => {
    const fig = spteLevelFigure(
      [
        { pages_4k: 262144, pages_2m: 0 },
        { pages_4k: 0, pages_2m: 512 },
      ],
      {
        yAxis: "log",
      },
    );
    expect(fig.layout!.yaxis).toMatchObject({ type: "log" });
    expect(lines(fig)).toEqual([
      ["pages_4k", [262144, null]],
      ["pages_2m", [null, 512]],
    ]);
    // The static fallback draws it too (and labels the axis in values, not logarithms).
    const html = String(plotlyBundle(fig)["text/html"]);
    expect(html).toContain("<polyline");
    expect(html).toContain(">262000<");
  });

  it("view 'bytes': the memory each page size maps", () => {
    const fig = spteLevelFigure(
      [
        { pages_4k: 3, pages_2m: 2, pages_1g: 1 },
        { pages_4k: 0, pages_2m: 512 },
      ],
      { view: "bytes", title: "mapped" },
    );
    expect(lines(fig)).toEqual([
      ["4 KiB pages", [3 * 4096, 0]],
      ["2 MiB pages", [2 * 2 ** 21, 512 * 2 ** 21]],
      ["1 GiB pages", [2 ** 30, null]],
    ]);
    expect(fig.layout).toMatchObject({
      title: { text: "mapped" },
      yaxis: { title: { text: "bytes mapped" } },
    });
  });

  it("SpteSeries records only the levels a source has", () => {
    const series = new SpteSeries()
      .record("a", { pages_4k: 5 })
      .record("b", { stats: { pages_4k: 6, pages_2m: 1 } });
    expect(series.steps).toEqual([
      { label: "a", pages_4k: 5 },
      { label: "b", pages_4k: 6, pages_2m: 1 },
    ]);
    expect(lines(spteLevelFigure(series.steps))).toEqual([
      ["pages_4k", [5, 6]],
      ["pages_2m", [null, 1]],
    ]);
  });
});
