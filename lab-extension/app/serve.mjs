// Starts mmulab's JupyterLab (mmulab_lab.py on Debian's /usr/bin/python3) and resolves once it
// answers HTTP. Used by scripts/start.mjs (`npm start`) and by the browser tests, so the tests
// start exactly what `npm start` starts.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const PYTHON = "/usr/bin/python3";
export const SERVER_SCRIPT = path.join(here, "mmulab_lab.py");
export const BUILD_DIR = path.join(here, "dist");

/** A free TCP port on 127.0.0.1 (asks the kernel for one). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts the server.
 * @param {object} o
 * @param {string} o.root      notebook root directory
 * @param {number} [o.port]    port (default: 8888 if free, else any free port)
 * @param {string} [o.token]   token (default: 24 random bytes, hex)
 * @param {NodeJS.ProcessEnv} [o.env] environment (JUPYTER_PATH etc.; setup's jupyterEnv())
 * @param {boolean} [o.quiet]  send server logs to the returned `log` array instead of stderr
 * @param {string} [o.logLevel] the server's log level (default INFO; npm start asks for WARN)
 * @returns {Promise<{url: string, base: string, token: string, port: number, proc: import("node:child_process").ChildProcess, log: string[], stop: () => Promise<void>}>}
 */
export async function startLab({
  root,
  port,
  token,
  env = process.env,
  quiet = false,
  logLevel = "INFO",
  timeoutMs = 60000,
}) {
  if (!existsSync(path.join(BUILD_DIR, "bundle.js"))) {
    throw new Error(
      `the JupyterLab front end is not built (${BUILD_DIR}/bundle.js missing): run npm run build`,
    );
  }
  if (!existsSync(PYTHON)) {
    throw new Error(
      `${PYTHON} not found: install Debian's python3-jupyterlab-server and jupyter-server`,
    );
  }
  const HIDDEN_IN_FILE_BROWSER = [
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".DS_Store",
    "*.so",
    "*.dylib",
    "*~",
    "node_modules",
    "dist",
    "lib",
    "tools",
    "test",
    "src",
    "package.json",
    "tsconfig*.json",
  ];
  const p = port ?? ((await isFree(8888)) ? 8888 : await freePort());
  const t = token ?? randomBytes(24).toString("hex");
  const args = [
    SERVER_SCRIPT,
    `--ServerApp.root_dir=${root}`,
    "--ServerApp.ip=127.0.0.1",
    `--ServerApp.port=${p}`,
    "--ServerApp.port_retries=0",
    `--ServerApp.token=${t}`,
    "--ServerApp.open_browser=False",
    `--ServerApp.log_level=${logLevel}`,
    // New notebooks get the mmulab kernel.
    "--MappingKernelManager.default_kernel_name=mmulab",
    // notebooks/ is also an npm workspace: keep its build plumbing out of the file browser
    // (jupyter_server's defaults first, then ours; the files stay reachable by path).
    ...HIDDEN_IN_FILE_BROWSER.map((g) => `--ContentsManager.hide_globs=${g}`),
  ];
  if (typeof process.getuid === "function" && process.getuid() === 0)
    args.push("--ServerApp.allow_root=True");
  const proc = spawn(PYTHON, args, {
    env: { PYDEVD_DISABLE_FILE_VALIDATION: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = [];
  const sink = (d) => {
    if (quiet) log.push(String(d));
    else process.stderr.write(d);
  };
  proc.stdout.on("data", sink);
  proc.stderr.on("data", sink);
  let exited = null;
  proc.on("exit", (code, signal) => {
    exited = { code, signal };
  });
  const base = `http://127.0.0.1:${p}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) {
      throw new Error(
        `JupyterLab server exited (code ${exited.code}, signal ${exited.signal}) before answering:\n${log.join("").slice(-3000)}`,
      );
    }
    try {
      // Bounded, so a server that accepts connections but never answers cannot outlive the deadline.
      const r = await fetch(`${base}/api/status?token=${t}`, {
        signal: AbortSignal.timeout(Math.max(1000, Math.min(10_000, deadline - Date.now()))),
      });
      if (r.ok) break;
    } catch {
      // not listening yet, or no answer within the bound
    }
    if (Date.now() > deadline) {
      proc.kill("SIGTERM");
      throw new Error(
        `JupyterLab server did not answer on ${base} within ${timeoutMs} ms:\n${log.join("").slice(-3000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const stop = () =>
    new Promise((resolve) => {
      if (exited) return resolve();
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
      setTimeout(() => {
        if (!exited) proc.kill("SIGKILL");
      }, 5000).unref();
    });
  return { url: `${base}/lab?token=${t}`, base, token: t, port: p, proc, log, stop };
}

function isFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}
