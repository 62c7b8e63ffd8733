/**
 * `mmulab-kernel install`: writes the kernelspec (absolute argv, no Python involved) and copies the
 * built lab extension next to it, so a Jupyter front end started with the same JUPYTER_PATH/prefix
 * finds both.
 */
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

/** Kernel name (folder under kernels/) and display name. */
export const KERNEL_NAME = "mmulab";
export const DISPLAY_NAME = "TypeScript (mmulab)";

/** Where to install. */
export type InstallTarget = { kind: "user" } | { kind: "prefix"; prefix: string };

/** The Jupyter data directory an install target writes to (`<...>/share/jupyter` or the user's). */
export function dataDir(target: InstallTarget): string {
  if (target.kind === "prefix") return join(resolve(target.prefix), "share", "jupyter");
  if (process.env.JUPYTER_DATA_DIR) return resolve(process.env.JUPYTER_DATA_DIR);
  const xdg = process.env.XDG_DATA_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), ".local", "share"), "jupyter");
}

/** The kernel.json content: node and this package's bin, both absolute. */
export function kernelSpec(): Record<string, unknown> {
  const bin = resolve(__dirname, "..", "bin", "mmulab-kernel.js");
  return {
    argv: [process.execPath, bin, "kernel", "--connection-file", "{connection_file}"],
    display_name: DISPLAY_NAME,
    language: "typescript",
    interrupt_mode: "signal",
    env: {},
    metadata: { debugger: false },
  };
}

/** Folder of the built lab extension (`labextension/` of @mmulab/lab-extension), if built. */
export function findLabExtension(): string | undefined {
  let pkg: string;
  try {
    pkg = require.resolve("@mmulab/lab-extension/package.json", {
      paths: [resolve(__dirname, "..")],
    });
  } catch {
    return undefined;
  }
  const dir = join(dirname(pkg), "labextension");
  return existsSync(join(dir, "package.json")) ? dir : undefined;
}

/** What {@link install} wrote. */
export interface InstallResult {
  kernelDir: string;
  labExtensionDir?: string;
}

/** Installs the kernelspec (and the lab extension when built) under `target`. */
export function install(target: InstallTarget): InstallResult {
  const data = dataDir(target);
  const kernelDir = join(data, "kernels", KERNEL_NAME);
  mkdirSync(kernelDir, { recursive: true });
  writeFileSync(join(kernelDir, "kernel.json"), `${JSON.stringify(kernelSpec(), null, 2)}\n`);
  const result: InstallResult = { kernelDir };
  const ext = findLabExtension();
  if (ext !== undefined) {
    const dest = join(data, "labextensions", "@mmulab", "lab-extension");
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dirname(dest), { recursive: true });
    cpSync(ext, dest, { recursive: true });
    result.labExtensionDir = dest;
  }
  return result;
}
