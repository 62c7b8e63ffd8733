// Issue 6: every notebook runs top to bottom with the real mmulab kernel under nbconvert, and two
// runs in a row give identical outputs (execution metadata aside).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { artifacts, executeNotebook, type Notebook, normalize, repo, text } from "./jupyter";

const nbDir = path.join(repo, "notebooks");
const notebooks = [
  ...readdirSync(nbDir)
    .filter((f) => f.endsWith(".ipynb"))
    .map((f) => path.join(nbDir, f)),
  ...(existsSync(path.join(nbDir, "teacher"))
    ? readdirSync(path.join(nbDir, "teacher"))
        .filter((f) => f.endsWith(".ipynb"))
        .map((f) => path.join(nbDir, "teacher", f))
    : []),
].sort();

describe("notebook sources", () => {
  it("every committed .ipynb is exactly what notebooks/tools/build-notebooks.mjs makes of its source", () => {
    const r = spawnSync("node", [path.join(nbDir, "tools", "build-notebooks.mjs"), "--check"], {
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
  it("there are notebooks to run", () => {
    expect(notebooks.length).toBeGreaterThan(0);
  });
});

describe.each(notebooks.map((p) => [path.relative(nbDir, p), p]))("%s", (rel, nbPath) => {
  it("runs top to bottom with the mmulab kernel, twice, with identical outputs", () => {
    const runs = [1, 2].map((k) =>
      executeNotebook(nbPath, path.join(artifacts, "notebooks", `run${k}`, path.dirname(rel))),
    );
    for (const nb of runs) {
      const errors = nb.cells.flatMap((c) =>
        (c.outputs ?? []).filter((o) => o.output_type === "error"),
      );
      expect(errors.map((e) => `${e.ename}: ${e.evalue}`)).toEqual([]);
      const code = nb.cells.filter((c) => c.cell_type === "code");
      // every code cell ran, in order
      expect(code.map((c) => c.execution_count)).toEqual(code.map((_, i) => i + 1));
      // nothing on stderr: a warning in a published notebook is a bug to fix
      const stderr = nb.cells.flatMap((c) =>
        (c.outputs ?? []).filter((o) => o.output_type === "stream" && o.name === "stderr"),
      );
      expect(stderr.map((o) => text(o.text))).toEqual([]);
    }
    expect(normalize(runs[1])).toEqual(normalize(runs[0]));
  });
});
