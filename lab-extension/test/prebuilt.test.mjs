// The prebuilt (federated) extension that users with their own JupyterLab >= 4 install by copying
// labextension/ to share/jupyter/labextensions/@mmulab/lab-extension: JupyterLab reads
// jupyterlab._build from its package.json and loads the remote entry it names.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { extDir } from "./helpers.mjs";

const dir = path.join(extDir, "labextension");

test("labextension/ names a remote entry exposing ./mimeExtension and shares JupyterLab's singletons", () => {
  assert.ok(
    existsSync(path.join(dir, "package.json")),
    "labextension/ not built: run npm run build",
  );
  const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
  assert.equal(pkg.name, "@mmulab/lab-extension");
  const b = pkg.jupyterlab._build;
  assert.equal(b.mimeExtension, "./mimeExtension");
  const entry = path.join(dir, b.load);
  assert.ok(existsSync(entry), `${b.load} missing`);
  const js = readFileSync(entry, "utf8");
  assert.match(js, /"\.\/mimeExtension"/);
  // Lumino widgets must come from the host JupyterLab (one copy), not from this bundle.
  assert.match(js, /@lumino\/widgets/);
  // plotly is a separate chunk, loaded on the first plot only.
  const statics = readFileSync(entry, "utf8").length;
  assert.ok(
    statics < 200000,
    `remote entry unexpectedly large (${statics} bytes): plotly bundled eagerly?`,
  );
});
