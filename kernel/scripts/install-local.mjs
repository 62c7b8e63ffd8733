#!/usr/bin/env node
// Installs the kernelspec (and the built lab extension) into the repo-local Jupyter prefix
// <repo>/.jupyter-local; use it with JUPYTER_PATH=<repo>/.jupyter-local/share/jupyter.
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const kernelDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const prefix = join(kernelDir, "..", ".jupyter-local");
const r = spawnSync(
  process.execPath,
  [join(kernelDir, "bin", "mmulab-kernel.js"), "install", "--prefix", prefix],
  {
    stdio: "inherit",
  },
);
if (r.status === 0) console.log(`JUPYTER_PATH=${join(prefix, "share", "jupyter")}`);
process.exit(r.status ?? 1);
