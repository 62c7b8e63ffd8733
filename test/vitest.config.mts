import { defineConfig } from "vitest/config";

// Integration tests start real Jupyter processes: long timeouts, one file at a time.
// MMULAB_TEST_RUN names this run, so that each notebook's first execution is shared by the
// tests that need it (src/jupyter.ts, executeNotebookOnce).
export default defineConfig({
  test: {
    env: { MMULAB_TEST_RUN: process.env.MMULAB_TEST_RUN ?? `${Date.now()}-${process.pid}` },
    include: ["src/**/*.test.ts"],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
