// Builds the prebuilt (federated) JupyterLab extension into labextension/ with npm packages only:
// @jupyter/builder (rspack) reads JupyterLab's core metadata from @jupyterlab/core-meta, so no
// Python jupyterlab is needed. Run after tsc has written lib/.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(join(here, "package.json"));
const builder = require.resolve("@jupyter/builder/lib/build-labextension.js");
const coreMeta = require.resolve("@jupyterlab/core-meta/core.package.json");
execFileSync(process.execPath, [builder, "--core-package-file", coreMeta, here], {
  stdio: "inherit",
  cwd: here,
});
