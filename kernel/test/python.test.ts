/**
 * The jupyter_kernel_test suite (Debian's python3-jupyter-kernel-test) against the real kernel
 * process: kernel_info, stdout, stderr, completion, is_complete, display_data (our MIME type and
 * text/html), execute_result, error, inspect, history, clear_output.
 */
import { join } from "node:path";
import { expect, it } from "vitest";
import { KERNEL_ROOT, PYTHON, run } from "./support";

it("passes jupyter_kernel_test", () => {
  const r = run(
    PYTHON,
    ["-m", "unittest", "-v", "test_kernel"],
    join(KERNEL_ROOT, "test", "python"),
    300_000,
  );
  const out = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) console.log(out);
  expect(r.status, out).toBe(0);
  // Every test ran (only the pager test is skipped, with its reason printed).
  expect(out).toMatch(/Ran 12 tests/);
  expect(out).toMatch(/OK \(skipped=1\)/);
  expect(out).toMatch(/test_pager .* skipped 'no pager payloads/);
});
