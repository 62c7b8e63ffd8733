#!/usr/bin/env node
// Idempotent setup shared by `npm start` and `npm test`: Debian packages (when root), npm
// dependencies, builds, and the mmulab kernelspec in a repo-local JUPYTER_PATH. Each step checks
// first and does nothing when its result is already there, so a second run costs seconds.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const jupyterPrefix = path.join(repo, ".jupyter-local");

/** Debian packages the integration tests and `npm start` need, with a file each one provides. */
const DEBIAN = [
  ["jupyter-client", "/usr/bin/jupyter"],
  ["jupyter-core", "/usr/bin/jupyter"],
  ["jupyter-server", "/usr/bin/jupyter-server"],
  ["jupyter-nbconvert", "/usr/bin/jupyter-nbconvert"],
  ["python3-nbconvert", "/usr/lib/python3/dist-packages/nbconvert"],
  ["python3-nbclient", "/usr/lib/python3/dist-packages/nbclient"],
  ["python3-ipykernel", "/usr/lib/python3/dist-packages/ipykernel"],
  ["python3-jupyter-kernel-test", "/usr/lib/python3/dist-packages/jupyter_kernel_test"],
  ["python3-jupyterlab-server", "/usr/lib/python3/dist-packages/jupyterlab_server"],
  ["chromium", "/usr/bin/chromium"],
];

function log(msg) {
  process.stderr.write(`[setup] ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  log(`$ ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: repo, stdio: "inherit", ...opts });
  if (r.status !== 0) {
    throw new Error(`setup step failed (exit ${r.status}): ${cmd} ${args.join(" ")}`);
  }
}

/** Installs the missing Debian packages when root; otherwise says exactly what to install. */
export function ensureDebianPackages() {
  const missing = [...new Set(DEBIAN.filter(([, f]) => !existsSync(f)).map(([p]) => p))];
  if (missing.length === 0) return;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot) {
    throw new Error(
      `missing Debian packages: ${missing.join(" ")}.\n` +
        `Install them with: sudo apt-get install -y --no-install-recommends ${missing.join(" ")}`,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  run("apt-get", ["update", "-qq"], { env });
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { env });
}

function newestMtime(dir, skip = /node_modules|dist|labextension|\.git/) {
  let newest = 0;
  if (!existsSync(dir)) return 0;
  for (const name of readdirSync(dir)) {
    if (skip.test(name)) continue;
    const p = path.join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p, skip) : st.mtimeMs);
  }
  return newest;
}

/**
 * Installs npm dependencies when node_modules is missing or older than the lockfile. This is
 * `npm install`, not `npm ci`: the registry reachable here lacks the other platforms' optional
 * binaries of biome and rspack, so the lockfile cannot list them and `npm ci` rejects it as out of
 * sync. `npm install` still takes every version from the lockfile.
 */
export function ensureNodeModules() {
  const marker = path.join(repo, "node_modules", ".package-lock.json");
  const lock = path.join(repo, "package-lock.json");
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  run("npm", ["install", "--no-audit", "--no-fund"]);
}

/** Runs `npm run build` when any workspace source is newer than the last build. */
export function ensureBuilt() {
  const stamp = path.join(repo, "node_modules", ".mmulab-build-stamp");
  const srcNewest = Math.max(
    ...["core", "kernel", "lab-extension", "notebooks"].map((ws) =>
      newestMtime(path.join(repo, ws)),
    ),
  );
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= srcNewest) return;
  run("npm", ["run", "build"]);
  execFileSync("touch", [stamp]);
}

/** Installs the mmulab kernelspec (and the built lab extension) into .jupyter-local. */
export function ensureKernelspec() {
  mkdirSync(jupyterPrefix, { recursive: true });
  run("node", [
    path.join(repo, "kernel", "bin", "mmulab-kernel.js"),
    "install",
    "--prefix",
    jupyterPrefix,
  ]);
}

/** Environment for every Jupyter process we start: repo-local kernelspecs and extensions. */
export function jupyterEnv(base = process.env) {
  const data = path.join(jupyterPrefix, "share", "jupyter");
  return {
    ...base,
    JUPYTER_PATH: data,
    JUPYTER_DATA_DIR: data,
    JUPYTER_CONFIG_DIR: path.join(jupyterPrefix, "etc", "jupyter"),
    JUPYTER_RUNTIME_DIR: path.join(jupyterPrefix, "runtime"),
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
  };
}

/** Everything above, in order. */
export async function setup() {
  const t0 = Date.now();
  ensureDebianPackages();
  ensureNodeModules();
  ensureBuilt();
  ensureKernelspec();
  Object.assign(process.env, jupyterEnv());
  log(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  setup().catch((e) => {
    log(e.message);
    process.exit(1);
  });
}
