/**
 * The kernel tells core the machine's RAM at start (`setHostMemoryInfo`), so a VM made in a
 * notebook gets half of it as its default memory budget, and a refused operation is an ordinary
 * error output with the estimate and the budget.
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { codeCell, executeNotebook, KERNEL_ROOT } from "./support";

const text = (t: string | string[] | undefined) => (Array.isArray(t) ? t.join("") : (t ?? ""));

it("a notebook VM's default budget is half the machine's RAM; a trace ring past it is refused", () => {
  mkdirSync(join(KERNEL_ROOT, "test-artifacts"), { recursive: true });
  const dir = mkdtempSync(join(KERNEL_ROOT, "test-artifacts", "budget-"));
  const { result: r, cells } = executeNotebook(dir, [
    codeCell(
      'import { createVm, hostMemoryInfo } from "@mmulab/core";\n' +
        "const vm = createVm();\n" +
        "const info = hostMemoryInfo();\n" +
        "console.log(JSON.stringify({ source: info.source, heap: info.heapLimitBytes, budget: vm.memoryUsage().budgetBytes }));",
    ),
    codeCell("vm.startTrace(1e9);"),
  ]);
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  const [first, second] = cells!.filter((c) => c.cell_type === "code");
  const shown = JSON.parse(
    text(first!.outputs!.find((o) => o.output_type === "stream")?.text).trim(),
  ) as { source: string; heap: number | null; budget: number };
  expect(shown.source).toBe("host");
  expect(shown.heap).toBeGreaterThan(0);
  expect(shown.budget).toBe(Math.floor(totalmem() / 2));
  const err = second!.outputs!.find((o) => o.output_type === "error")!;
  expect(err.ename).toBe("ResourceLimitError");
  // 10^9 records of 11 f64 fields each.
  expect(err.evalue).toMatch(/88000000000 bytes/);
});
