/** Versions reported in kernel_info_reply. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

function readVersion(file: string): string {
  try {
    return (JSON.parse(readFileSync(file, "utf8")) as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/** Version of @mmulab/kernel (its package.json, one level above dist/). */
export const KERNEL_VERSION = readVersion(join(__dirname, "..", "package.json"));
/** Version of the TypeScript compiler tslab compiles cells with. */
export const TS_VERSION = readVersion(require.resolve("@tslab/typescript-for-tslab/package.json"));
