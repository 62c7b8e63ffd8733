// Helpers to run real Jupyter tools (Debian's /usr/bin/jupyter) with the repo-local kernelspec.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";

export const repo = path.resolve(__dirname, "..", "..");
export const artifacts = path.join(repo, "test-artifacts");

/** The environment scripts/setup.mjs exports (repo-local JUPYTER_PATH); recomputed for direct vitest runs. */
export function jupyterEnv(): NodeJS.ProcessEnv {
  const prefix = path.join(repo, ".jupyter-local");
  const data = path.join(prefix, "share", "jupyter");
  return {
    ...process.env,
    JUPYTER_PATH: data,
    JUPYTER_DATA_DIR: data,
    JUPYTER_CONFIG_DIR: path.join(prefix, "etc", "jupyter"),
    JUPYTER_RUNTIME_DIR: path.join(prefix, "runtime"),
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
  };
}

export interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  ename?: string;
  evalue?: string;
  data?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  execution_count?: number | null;
}
export interface Cell {
  cell_type: string;
  id?: string;
  source: string | string[];
  outputs?: Output[];
  execution_count?: number | null;
  metadata?: Record<string, unknown>;
}
export interface Notebook {
  cells: Cell[];
  metadata: Record<string, unknown>;
}

/**
 * Executes `nbPath` with nbconvert and the mmulab kernel into `outDir`; returns the executed
 * notebook. Throws with nbconvert's stderr when execution fails.
 */
export function executeNotebook(nbPath: string, outDir: string, allowErrors = false): Notebook {
  mkdirSync(outDir, { recursive: true });
  const outName = path.basename(nbPath);
  const args = [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    "--ExecutePreprocessor.kernel_name=mmulab",
    "--ExecutePreprocessor.timeout=900",
    "--output-dir",
    outDir,
    "--output",
    outName,
    ...(allowErrors ? ["--allow-errors"] : []),
    nbPath,
  ];
  const r = spawnSync("/usr/bin/jupyter", args, {
    cwd: path.dirname(nbPath),
    env: jupyterEnv(),
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    throw new Error(`nbconvert failed on ${nbPath} (exit ${r.status}):\n${r.stderr.slice(-4000)}`);
  }
  return JSON.parse(readFileSync(path.join(outDir, outName), "utf8")) as Notebook;
}

/**
 * The notebook executed once per `vitest run` (`MMULAB_TEST_RUN`, set by vitest.config.mts): the
 * first test that needs it runs nbconvert, later ones in the same run read that result. The
 * notebooks test's first run and the tests that check a notebook's numbers share one execution
 * this way (its second run is always fresh, for the identical-outputs check).
 */
export function executeNotebookOnce(nbPath: string): Notebook {
  const run = process.env.MMULAB_TEST_RUN ?? `pid-${process.pid}`;
  const rel = path.relative(path.join(repo, "notebooks"), nbPath);
  const dir = path.join(artifacts, "notebooks-once", run, path.dirname(rel));
  const file = path.join(dir, path.basename(nbPath));
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as Notebook;
  return executeNotebook(nbPath, dir);
}

export const text = (s: string | string[] | undefined): string =>
  Array.isArray(s) ? s.join("") : (s ?? "");

/** A notebook with everything that legitimately varies between runs removed. */
export function normalize(nb: Notebook): unknown {
  return nb.cells.map((c) => ({
    type: c.cell_type,
    source: text(c.source),
    execution_count: c.execution_count ?? null,
    outputs: (c.outputs ?? []).map((o) => {
      const { metadata: _m, ...rest } = o;
      return rest;
    }),
  }));
}
