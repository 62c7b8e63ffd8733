/**
 * A notebook with a failing cell in the middle, executed headlessly by
 * `jupyter nbconvert --to notebook --execute --allow-errors`: the error output carries
 * ename/evalue/traceback, every later cell has its output, every code cell its execution count.
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { codeCell, executeNotebook, KERNEL_ROOT, type NbCell } from "./support";

type Cell = NbCell;
const code = codeCell;

const CELLS: Cell[] = [
  { cell_type: "markdown", source: "# failing cell in the middle", metadata: {} } as Cell,
  code("const frames = 3;\nframes * 4096"),
  code('console.log("before the failure");'),
  code('throw new RangeError("gfn 0x99 is outside every memslot");'),
  code('const typo: number = "not a number";'),
  code(
    'import { display } from "@mmulab/kernel";\n' +
      'display({ version: 1, kind: "walk", mode: "4-level", gva: "0x7000", access: { write: false, user: true, fetch: false },\n' +
      '  levels: [], result: { fault: false, gpa: "0x3000" } });',
  ),
  code('console.log("after", frames);\nframes + 1'),
];

const text = (t: string | string[] | undefined) => (Array.isArray(t) ? t.join("") : (t ?? ""));

it("keeps the error output and every later cell's output, with execution counts", () => {
  mkdirSync(join(KERNEL_ROOT, "test-artifacts"), { recursive: true });
  const dir = mkdtempSync(join(KERNEL_ROOT, "test-artifacts", "nbconvert-"));
  const { result: r, cells } = executeNotebook(dir, CELLS);
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  const codeCells = cells!.filter((c) => c.cell_type === "code");
  expect(codeCells).toHaveLength(6);
  // Counts 1..6 in order: every cell ran, none was skipped after the failures.
  expect(codeCells.map((c) => c.execution_count)).toEqual([1, 2, 3, 4, 5, 6]);

  const [first, second, failing, compile, shown, last] = codeCells as [
    Cell,
    Cell,
    Cell,
    Cell,
    Cell,
    Cell,
  ];
  const result1 = first.outputs!.find((o) => o.output_type === "execute_result")!;
  expect(text(result1.data!["text/plain"] as string[])).toBe(String(3 * 4096));
  expect(result1.execution_count).toBe(1);
  expect(text(second.outputs!.find((o) => o.output_type === "stream")?.text)).toBe(
    "before the failure\n",
  );

  const err = failing.outputs!.find((o) => o.output_type === "error")!;
  expect(err.ename).toBe("RangeError");
  expect(err.evalue).toBe("gfn 0x99 is outside every memslot");
  expect(err.traceback!.length).toBeGreaterThan(0);

  const cerr = compile.outputs!.find((o) => o.output_type === "error")!;
  expect(cerr.ename).toBe("TSCompileError");
  // `typo` starts at column 7 of line 1.
  expect(cerr.evalue).toMatch(/^1:7 - error TS2322/);

  const disp = shown.outputs!.find((o) => o.output_type === "display_data")!;
  expect(Object.keys(disp.data!).sort()).toEqual([
    "application/vnd.mmulab.walk+json",
    "text/html",
    "text/plain",
  ]);

  expect(text(last.outputs!.find((o) => o.output_type === "stream")?.text)).toBe("after 3\n");
  expect(
    text(
      last.outputs!.find((o) => o.output_type === "execute_result")!.data![
        "text/plain"
      ] as string[],
    ),
  ).toBe("4");
});
