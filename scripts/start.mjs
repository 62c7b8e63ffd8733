#!/usr/bin/env node
// `npm start`: set up what is missing (scripts/setup.mjs: Debian packages when root, npm deps,
// builds, the mmulab kernelspec in .jupyter-local), then serve mmulab's JupyterLab 4 front end
// (lab-extension/app, built from @jupyterlab/* npm packages, served by Debian's
// jupyterlab_server) on 127.0.0.1, and print the URL with its token.
//
// The lab's root is workspace/ (gitignored; scripts/workspace.mjs copies the shipped notebooks
// in), so nothing done in the lab changes a tracked file or the notebooks the tests run.
//
// Options: --port N (default 8888, or any free port when 8888 is taken), --root DIR
// (default workspace/; another folder is served as it is, nothing copied in), --token T
// (default: random). Ctrl-C stops the server and its kernels.
import path from "node:path";

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split("=", 2);
    const value = () => inline ?? argv[++i];
    if (flag === "--port") {
      const p = Number(value());
      if (!Number.isInteger(p) || p < 1 || p > 65535)
        throw new Error(`--port must be an integer 1..65535, got ${p}`);
      opts.port = p;
    } else if (flag === "--root") opts.root = path.resolve(value());
    else if (flag === "--token") opts.token = value();
    else throw new Error(`unknown option ${argv[i]}; allowed: --port N, --root DIR, --token T`);
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const setupModule = await import("./setup.mjs");
  await setupModule.setup();
  let root = opts.root;
  if (root === undefined) {
    const { DEFAULT_WORKSPACE, prepareWorkspace } = await import("./workspace.mjs");
    root = DEFAULT_WORKSPACE;
    for (const [nb, what] of Object.entries(prepareWorkspace(root))) {
      if (what === "copied" || what === "updated")
        process.stderr.write(`[workspace] ${what} ${nb} from notebooks/\n`);
      else if (what === "kept")
        process.stderr.write(
          `[workspace] kept your edited ${nb}; the shipped version changed: notebooks/${nb}\n`,
        );
    }
  }
  const { startLab } = await import("../lab-extension/app/serve.mjs");
  const lab = await startLab({
    root,
    port: opts.port,
    token: opts.token,
    env: setupModule.jupyterEnv(),
    // Warnings and errors only: the start-up banner repeats what this script prints.
    logLevel: "WARN",
  });
  process.stdout.write(
    `\nmmulab JupyterLab is running (kernel "TypeScript (mmulab)", notebooks in ${path.relative(process.cwd(), root) || "."}/):\n\n    ${lab.url}\n\nPress Ctrl-C to stop.\n`,
  );
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await lab.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  lab.proc.on("exit", (code) => {
    if (!stopping) {
      process.stderr.write(`JupyterLab server exited (code ${code})\n`);
      process.exit(code ?? 1);
    }
  });
}

main().catch((e) => {
  process.stderr.write(`npm start failed: ${e.message}\n`);
  process.exit(1);
});
