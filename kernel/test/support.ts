/**
 * Helpers shared by the kernel tests: a built kernel installed into a temporary JUPYTER_PATH,
 * and running /usr/bin/python3 / jupyter with that path.
 */
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const KERNEL_ROOT = resolve(__dirname, "..");
export const REPO_ROOT = resolve(KERNEL_ROOT, "..");
export const PYTHON = "/usr/bin/python3";
export const JUPYTER = "/usr/bin/jupyter";

let jupyterPath: string | undefined;

/** Installs the kernelspec (from the built dist/) into a fresh temp prefix; returns its JUPYTER_PATH. */
export function installedJupyterPath(): string {
  if (jupyterPath !== undefined) return jupyterPath;
  if (!existsSync(join(KERNEL_ROOT, "dist", "cli.js"))) {
    throw new Error(
      "kernel/dist is missing: run `npm run build` (root) or `npm run build -w @mmulab/kernel` first",
    );
  }
  const prefix = mkdtempSync(join(tmpdir(), "mmulab-kernel-test-"));
  const r = spawnSync(
    process.execPath,
    [join(KERNEL_ROOT, "bin", "mmulab-kernel.js"), "install", "--prefix", prefix],
    {
      encoding: "utf8",
    },
  );
  if (r.status !== 0) throw new Error(`kernel install failed: ${r.stderr}${r.stdout}`);
  jupyterPath = join(prefix, "share", "jupyter");
  return jupyterPath;
}

/** Environment for Jupyter tools: our JUPYTER_PATH, quiet debugger warning, no user site noise. */
export function jupyterEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    JUPYTER_PATH: installedJupyterPath(),
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
    JUPYTER_PLATFORM_DIRS: "1",
  };
}

/** Runs a command, returning its result (stdout/stderr as text). */
export function run(
  cmd: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    cwd,
    env: jupyterEnv(),
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 << 20,
  });
}

/** An output of a saved notebook cell (nbformat 4). */
export interface NbOutput {
  output_type: string;
  ename?: string;
  evalue?: string;
  traceback?: string[];
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  execution_count?: number | null;
}

/** A saved notebook cell (nbformat 4). */
export interface NbCell {
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: NbOutput[];
}

/** A code cell not run yet. */
export const codeCell = (source: string): NbCell =>
  ({ cell_type: "code", source, metadata: {}, outputs: [], execution_count: null }) as NbCell;

/**
 * Writes `cells` as `dir`/in.ipynb for the mmulab kernel and executes it with the real
 * `jupyter nbconvert --execute --allow-errors`, cwd = `dir`. Returns the process result and, when
 * it succeeded, the executed notebook's cells.
 */
export function executeNotebook(
  dir: string,
  cells: NbCell[],
): { result: SpawnSyncReturns<string>; cells: NbCell[] | undefined } {
  const nb = {
    cells,
    metadata: {
      kernelspec: { name: "mmulab", display_name: "TypeScript (mmulab)", language: "typescript" },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
  writeFileSync(join(dir, "in.ipynb"), JSON.stringify(nb, null, 1));
  const result = run(
    JUPYTER,
    [
      "nbconvert",
      "--to",
      "notebook",
      "--execute",
      "--allow-errors",
      "--ExecutePreprocessor.kernel_name=mmulab",
      "--ExecutePreprocessor.timeout=120",
      "--output",
      "out.ipynb",
      "in.ipynb",
    ],
    dir,
    240_000,
  );
  if (result.status !== 0) return { result, cells: undefined };
  const out = JSON.parse(readFileSync(join(dir, "out.ipynb"), "utf8")) as { cells: NbCell[] };
  return { result, cells: out.cells };
}
