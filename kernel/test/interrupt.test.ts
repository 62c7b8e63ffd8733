/**
 * A long cell (a synchronous simulation loop with a progress display) interrupted through a real
 * Jupyter server's REST API; the kernel must answer the next cell within 2 s of the interrupt.
 * The client is test/python/interrupt_via_server.py (REST + the kernel websocket, via tornado).
 * And a synchronous loop after an await, interrupted by jupyter_client's killpg
 * (test/python/interrupt_after_await.py).
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { KERNEL_ROOT, PYTHON, run } from "./support";

/**
 * Runs a harness of test/python with `args` in `cwd`; it must exit 0 and print its observations
 * as a JSON last line, which is returned.
 */
// biome-ignore lint/suspicious/noExplicitAny: the harness's JSON, asserted field by field
function harness(script: string, args: string[], cwd: string, timeoutMs: number): any {
  const r = run(PYTHON, [join(KERNEL_ROOT, "test", "python", script), ...args], cwd, timeoutMs);
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

it("survives an interrupt through the server's REST API, answers the next cell within 2 s, restarts", () => {
  // Under kernel/ so cells resolve @mmulab/kernel through the workspace's node_modules.
  mkdirSync(join(KERNEL_ROOT, "test-artifacts"), { recursive: true });
  const nbDir = mkdtempSync(join(KERNEL_ROOT, "test-artifacts", "interrupt-"));
  const result = harness("interrupt_via_server.py", [nbDir], KERNEL_ROOT, 240_000);
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
  const result = harness("interrupt_via_server.py", [nbDir, "dirtylogperf"], KERNEL_ROOT, 240_000);
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

it("interrupts a synchronous loop that starts after an await (jupyter_client's killpg); the kernel and its declarations live on", () => {
  const nbDir = mkdtempSync(join(tmpdir(), "mmulab-interrupt-await-"));
  try {
    const result = harness("interrupt_after_await.py", [nbDir], nbDir, 180_000);
    console.log(
      `loop after await: interrupted ${(result.stuck_seconds * 1000).toFixed(0)} ms after SIGINT`,
    );
    expect(result.before).toBe("ok");
    expect(result.stuck_reply).toEqual({ status: "error", ename: "Interrupted" });
    expect(result.stuck_seconds).toBeLessThan(5);
    expect(result.next).toEqual(["ok", "2"]);
    expect(result.kept).toEqual(["ok", "42"]);
    expect(result.spins_kept).toEqual(["ok", "true"]);
    expect(result.after_idle_interrupt).toEqual(["ok", "4"]);
    // The kernel's process group (kernel + its SIGINT relay) is empty after shutdown.
    expect(result.group_gone).toBe(true);
  } finally {
    rmSync(nbDir, { recursive: true, force: true });
  }
});
