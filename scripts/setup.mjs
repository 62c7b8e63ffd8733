#!/usr/bin/env node
// Idempotent setup shared by `npm start` and `npm test`: Debian packages (when root), npm
// dependencies, builds, and the mmulab kernelspec in a repo-local JUPYTER_PATH. Each step checks
// first and does nothing when its result is already there, so a second run costs seconds.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
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
  ["redis-server", "/usr/bin/redis-server"],
];

function log(msg) {
  process.stderr.write(`[setup] ${msg}\n`);
}

/**
 * Runs a setup step. `quiet`: its output is kept and shown only when it fails, so a good build
 * prints one line (rspack's licence and asset-size notes are not news to a notebook user).
 */
function run(cmd, args, { quiet = false, what, ...opts } = {}) {
  log(what ?? `$ ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, {
    cwd: repo,
    stdio: quiet ? ["ignore", "pipe", "pipe"] : "inherit",
    encoding: "utf8",
    maxBuffer: 256 * 2 ** 20,
    ...opts,
  });
  if (r.status !== 0) {
    if (quiet) process.stderr.write(`${r.stdout ?? ""}${r.stderr ?? ""}`);
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
  run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"]);
}

/**
 * What each workspace's build reads, in build order, and the workspaces whose output it uses.
 * Only these inputs decide whether a build is stale: notebooks saved in the lab, test artifacts
 * and the builds' own outputs never trigger one.
 */
const BUILDS = [
  {
    ws: "core",
    inputs: ["core/src", "core/scripts", "core/package.json", "core/tsconfig.build.json"],
    needs: [],
  },
  {
    ws: "sweep",
    inputs: ["sweep/src", "sweep/package.json", "sweep/tsconfig.json"],
    needs: ["core"],
  },
  {
    ws: "kernel",
    inputs: ["kernel/src", "kernel/package.json", "kernel/tsconfig.json"],
    needs: ["core", "sweep"],
  },
  {
    ws: "notebooks",
    inputs: ["notebooks/lib", "notebooks/package.json", "notebooks/tsconfig.build.json"],
    needs: ["core"],
  },
  {
    ws: "lab-extension",
    inputs: [
      "lab-extension/src",
      "lab-extension/style",
      "lab-extension/scripts",
      "lab-extension/package.json",
      "lab-extension/tsconfig.json",
    ],
    needs: ["core"],
  },
  {
    ws: "lab-extension/app",
    inputs: [
      "lab-extension/app/index.js",
      "lab-extension/app/build.mjs",
      "lab-extension/app/package.json",
    ],
    needs: ["lab-extension"],
  },
];
const SHARED_INPUTS = ["tsconfig.base.json", "package-lock.json"];

/** path, size and mtime of every file under `rel` (a file or a folder), sorted. */
function listInputs(rel, out) {
  const abs = path.join(repo, rel);
  if (!existsSync(abs)) return;
  const st = statSync(abs);
  if (st.isDirectory()) {
    for (const name of readdirSync(abs).sort()) listInputs(path.join(rel, name), out);
  } else out.push(`${rel} ${st.size} ${st.mtimeMs}`);
}

/**
 * Builds each workspace whose inputs (or a workspace it needs) changed since its last build, as
 * recorded in node_modules/.mmulab-build/. Nothing changed: nothing runs and nothing is printed.
 */
export function ensureBuilt() {
  const stamps = path.join(repo, "node_modules", ".mmulab-build");
  mkdirSync(stamps, { recursive: true });
  const print = {};
  for (const b of BUILDS) {
    const files = [];
    for (const rel of [...SHARED_INPUTS, ...b.inputs]) listInputs(rel, files);
    const hash = createHash("sha256").update(files.join("\n"));
    for (const n of b.needs) hash.update(print[n]);
    print[b.ws] = hash.digest("hex");
    const stamp = path.join(stamps, `${b.ws.replaceAll("/", "+")}.sha256`);
    if (existsSync(stamp) && readFileSync(stamp, "utf8") === print[b.ws]) continue;
    // By package name: `-w <folder>` would also build the workspaces nested in the folder.
    const { name } = JSON.parse(readFileSync(path.join(repo, b.ws, "package.json"), "utf8"));
    run("npm", ["run", "build", "-w", name], { quiet: true, what: `building ${name}` });
    writeFileSync(stamp, print[b.ws]);
  }
}

/** Installs the mmulab kernelspec (and the built lab extension) into .jupyter-local. */
export function ensureKernelspec() {
  mkdirSync(jupyterPrefix, { recursive: true });
  // In this process (kernel/dist is built by now): the same install as `mmulab-kernel install
  // --prefix`, without starting another node.
  const { install } = createRequire(import.meta.url)(
    path.join(repo, "kernel", "dist", "install.js"),
  );
  install({ kind: "prefix", prefix: jupyterPrefix });
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
