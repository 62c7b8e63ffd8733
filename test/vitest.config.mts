import { defineConfig } from "vitest/config";

// Integration tests start real Jupyter processes: long timeouts, one file at a time.
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts"],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
