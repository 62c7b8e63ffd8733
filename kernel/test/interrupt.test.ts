/**
 * A long cell (a synchronous simulation loop with a progress display) interrupted through a real
 * Jupyter server's REST API; the kernel must answer the next cell within 2 s of the interrupt.
 * The client is test/python/interrupt_via_server.py (REST + the kernel websocket, via tornado).
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { KERNEL_ROOT, PYTHON, run } from "./support";

it("survives an interrupt through the server's REST API, answers the next cell within 2 s, restarts", () => {
  // Under kernel/ so cells resolve @mmulab/kernel through the workspace's node_modules.
  mkdirSync(join(KERNEL_ROOT, "test-artifacts"), { recursive: true });
  const nbDir = mkdtempSync(join(KERNEL_ROOT, "test-artifacts", "interrupt-"));
  const r = run(
    PYTHON,
    [join(KERNEL_ROOT, "test", "python", "interrupt_via_server.py"), nbDir],
    KERNEL_ROOT,
    240_000,
  );
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  const result = JSON.parse(r.stdout.trim().split("\n").pop()!);
  console.log(
    `interrupt via REST: next cell answered ${(result.next_cell_seconds * 1000).toFixed(0)} ms after the interrupt`,
  );
  expect(result.kernel_name).toBe("mmulab");
  expect(result.long_status).toBe("error");
  expect(result.long_error).toEqual({
    ename: "Interrupted",
    evalue: "execution interrupted (SIGINT)",
  });
  expect(result.next_status).toBe("ok");
  expect(result.next_result).toBe("42");
  expect(result.next_cell_seconds).toBeLessThan(2);
  // The progress display was updating, and its last state says it stopped.
  expect(result.progress_updates).toBeGreaterThan(1);
  expect(result.progress_last).toMatch(/^long simulation: \d+\/2000000000 \(\d+%\) interrupted$/);
  // Restart through REST: a fresh kernel without the old cell's variables, counting from 1.
  console.log(`restart via REST: next cell answered after ${result.restart_seconds.toFixed(2)} s`);
  expect(result.after_restart_reply).toEqual({
    status: "error",
    ename: "TSCompileError",
    evalue: "1:1 - error TS2304: Cannot find name 'acc'.",
    execution_count: 1,
  });
});

it("interrupts runDirtyLogPerf through the server's REST API: the phase-named bar stops, the kernel answers", () => {
  mkdirSync(join(KERNEL_ROOT, "test-artifacts"), { recursive: true });
  const nbDir = mkdtempSync(join(KERNEL_ROOT, "test-artifacts", "interrupt-"));
  const r = run(
    PYTHON,
    [join(KERNEL_ROOT, "test", "python", "interrupt_via_server.py"), nbDir, "dirtylogperf"],
    KERNEL_ROOT,
    240_000,
  );
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  const result = JSON.parse(r.stdout.trim().split("\n").pop()!);
  console.log(
    `runDirtyLogPerf interrupt via REST: next cell answered ${(result.next_cell_seconds * 1000).toFixed(0)} ms after the interrupt; last bar: ${result.progress_last}`,
  );
  expect(result.long_status).toBe("error");
  expect(result.long_error.ename).toBe("Interrupted");
  expect(result.next_status).toBe("ok");
  expect(result.next_result).toBe("42");
  expect(result.next_cell_seconds).toBeLessThan(2);
  expect(result.progress_updates).toBeGreaterThan(1);
  // 16 vCPUs, 2 iterations: 7 phases of 1000 steps; interrupted within one of them.
  expect(result.progress_last).toMatch(
    /^dirty_log_perf_test: \d+\/7000 \(\d+%\) interrupted · (populate memory|enable dirty logging|iteration [12] (dirty memory|get dirty log)|disable dirty logging) \([1-7]\/7\)$/,
  );
});
