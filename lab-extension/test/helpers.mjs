// Shared pieces of the browser tests: Debian's Chromium via playwright-core, the repo-local
// Jupyter environment, and notebooks written for the tests.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { freePort, startLab } from "../app/serve.mjs";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const extDir = path.resolve(here, "..");
export const repo = path.resolve(extDir, "..");
/** Screenshots and notebooks of a run (gitignored). */
export const artifacts = path.join(repo, "test-artifacts", "lab-extension");
/** Where MMULAB_UPDATE_DOCS_IMG=1 copies screenshots for the docs. */
export const docsImg = path.join(repo, "docs", "img");
/** scripts/setup.mjs (kernelspec install and the repo-local Jupyter environment). */
export const setup = await import(path.join(repo, "scripts", "setup.mjs"));

/**
 * Time limits of the browser tests, in ms. CI runs them on 2 cores, often loaded by other jobs,
 * where JupyterLab's start-up alone has taken over a minute, so waits on start-up and on
 * notebooks are generous. They only bound waits: no test asserts how long anything took, and
 * every hook and test has a node:test timeout built from them, so a file that hangs still ends.
 */
export const LIMITS = {
  /** Starting one process: the Jupyter server answering, Chromium launching. */
  start: 180_000,
  /** Opening a notebook: page load, JupyterLab's shell ready, the notebook's tab and cells, its kernel idle (one budget for all steps). */
  open: 180_000,
  /** Running a notebook's cells (or drawing its saved outputs) until the outputs are there (one budget). */
  run: 180_000,
  /** Any other single Playwright wait or action (set as the pages' default timeout). */
  action: 60_000,
};

/** node:test timeouts: of a `before` hook starting a server and a browser, of a test that opens and runs a notebook. */
export const TIMEOUT = {
  setup: 2 * LIMITS.start + LIMITS.action,
  notebook: LIMITS.open + LIMITS.run + 2 * LIMITS.action,
  /** A test of the standalone renderer page (a render and a few actions). */
  page: 3 * LIMITS.action,
};

/**
 * A time budget shared by consecutive waits: `left()` is what remains of `ms` (at least 1 s, so
 * a late step still fails with its own message), `left.over()` whether it is spent.
 */
export function budget(ms) {
  const end = Date.now() + ms;
  const left = () => Math.max(1000, end - Date.now());
  left.over = () => Date.now() >= end;
  return left;
}

/**
 * For tests that build on an earlier test (the notebook it opened and ran): `check()` fails at
 * once when that test did not finish, instead of each later test waiting out its own limits on
 * a page that never loaded; the earlier test calls `done()` as its last step.
 */
export function prerequisite(what) {
  let ok = false;
  return {
    done() {
      ok = true;
    },
    check() {
      assert.ok(ok, `${what} did not finish (see the first failure)`);
    },
  };
}

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-quic",
  "--disable-sync",
];

/** Launches Debian's Chromium (never a downloaded browser). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: LIMITS.start,
  });
}

/**
 * A page that records uncaught exceptions and console errors, and fails on any request leaving
 * 127.0.0.1 (nothing may be fetched from a CDN).
 */
export async function newPage(browser, { width = 1400, height = 1000 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  // Playwright's own defaults (30 s) are too short on a loaded 2-core machine.
  context.setDefaultTimeout(LIMITS.action);
  context.setDefaultNavigationTimeout(LIMITS.open);
  const page = await context.newPage();
  const pageErrors = [];
  const consoleErrors = [];
  const external = [];
  const httpErrors = [];
  page.on("response", (r) => {
    if (r.status() >= 400) httpErrors.push(`${r.status()} ${r.url()}`);
  });
  page.on("pageerror", (e) => pageErrors.push(String(e?.stack ?? e)));
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1" || ["data:", "blob:", "file:"].includes(url.protocol))
      return route.continue();
    external.push(url.href);
    return route.abort();
  });
  return { context, page, pageErrors, consoleErrors, external, httpErrors };
}

/** Writes an nbformat 4 notebook whose cells are `cells` (strings: code; {md}: markdown; {code, outputs}: code with saved outputs). */
export function writeNotebook(
  file,
  cells,
  kernel = { name: "mmulab", display_name: "TypeScript (mmulab)", language: "typescript" },
) {
  mkdirSync(path.dirname(file), { recursive: true });
  const nb = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: kernel, language_info: { name: "typescript" } },
    cells: cells.map((c, i) => {
      if (typeof c === "object" && c.md !== undefined) {
        return { cell_type: "markdown", id: `c${i}`, metadata: {}, source: c.md };
      }
      const code = typeof c === "string" ? c : c.code;
      return {
        cell_type: "code",
        id: `c${i}`,
        metadata: {},
        execution_count: null,
        source: code,
        outputs: typeof c === "object" && c.outputs ? c.outputs : [],
      };
    }),
  };
  writeFileSync(file, JSON.stringify(nb));
}

/** A saved display_data output carrying one MIME payload plus text/plain. */
export function displayOutput(mime, data) {
  return {
    output_type: "display_data",
    metadata: {},
    data: { [mime]: data, "text/plain": ["mmulab payload"] },
  };
}

/** Milliseconds since `t0`, one decimal. */
export function ms(t0) {
  return Math.round((performance.now() - t0) * 10) / 10;
}

/**
 * Builds the standalone renderer page (test/page-entry.mjs bundled by esbuild with the
 * extension's lib/ and style) and opens it in `page`; resolves when window.mmulabTest is ready.
 */
export async function openRendererPage(page) {
  const pageDir = path.join(artifacts, "page");
  mkdirSync(pageDir, { recursive: true });
  await build({
    entryPoints: [path.join(extDir, "test", "page-entry.mjs")],
    bundle: true,
    format: "iife",
    outfile: path.join(pageDir, "bundle.js"),
    loader: { ".css": "css" },
    external: ["plotly.js-dist-min"],
    logLevel: "warning",
  });
  writeFileSync(
    path.join(pageDir, "index.html"),
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="stylesheet" href="bundle.css"></head><body><script src="bundle.js"></script></body></html>',
  );
  await page.goto(pathToFileURL(path.join(pageDir, "index.html")).href);
  await page.waitForFunction(() => window.mmulabTest !== undefined);
}

/**
 * Registers node:test hooks for a file of renderer-page tests: before them Chromium starts and
 * opens the standalone renderer page ({@link openRendererPage}), after them it closes. Returns
 * the object whose `page` and `pageErrors` the `before` hook fills in.
 */
export function rendererPageFixture() {
  const fx = { browser: undefined, page: undefined, pageErrors: undefined };
  before(
    async () => {
      fx.browser = await launchBrowser();
      ({ page: fx.page, pageErrors: fx.pageErrors } = await newPage(fx.browser));
      await openRendererPage(fx.page);
    },
    { timeout: LIMITS.start + 2 * LIMITS.action },
  );
  after(
    async () => {
      await fx.browser?.close();
    },
    { timeout: LIMITS.action },
  );
  return fx;
}

/** Renders `payload` as `mime` in a fresh widget of the renderer page; resolves with its locator. */
export async function renderWidget(page, payload, mime = "application/vnd.mmulab.pagetable+json") {
  const id = await page.evaluate(
    async ([p, m]) => {
      await window.mmulabTest.render(p, m);
      return document.querySelectorAll(".mmulab-output").length - 1;
    },
    [payload, mime],
  );
  return page.locator(`.mmulab-output[data-test-id='${id}']`);
}

/**
 * Jupyter environment for a test server: the repo's kernelspecs (JUPYTER_PATH) but its own data
 * dir, so JupyterLab workspaces saved by one test (open tabs) never leak into another.
 */
export function testJupyterEnv(setup, name) {
  const env = setup.jupyterEnv();
  return { ...env, JUPYTER_DATA_DIR: path.join(artifacts, `jupyter-data-${name}`) };
}

/**
 * Starts what `npm start` starts (mmulab's JupyterLab with the mmulab kernelspec) on a free port,
 * serving `root`, with the test's own Jupyter data dir (see {@link testJupyterEnv}), fresh each
 * run. `userSettings` maps a plugin id (`@jupyterlab/docmanager-extension:plugin`) to settings
 * written to that data dir before the server starts.
 */
export async function startTestLab({ root, name, userSettings = {} }) {
  setup.ensureKernelspec();
  const env = testJupyterEnv(setup, name);
  rmSync(env.JUPYTER_DATA_DIR, { recursive: true, force: true });
  for (const [id, settings] of Object.entries(userSettings)) {
    const [pkg, plugin] = id.split(":");
    const dir = path.join(env.JUPYTER_DATA_DIR, "lab", "user-settings", pkg);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${plugin}.jupyterlab-settings`), JSON.stringify(settings));
  }
  return startLab({ root, port: await freePort(), env, quiet: true, timeoutMs: LIMITS.start });
}

/** Closes the browser, then stops the server (also when closing the browser failed). */
export async function shutDown(browser, lab) {
  try {
    await browser?.close();
  } finally {
    await lab?.stop();
  }
}

/** Shuts down every session (and its kernel) of a test server; errors are reported, not thrown. */
export async function deleteSessions(lab) {
  try {
    const signal = AbortSignal.timeout(LIMITS.action);
    const r = await fetch(`${lab.base}/api/sessions?token=${lab.token}`, { signal });
    for (const s of await r.json()) {
      await fetch(`${lab.base}/api/sessions/${s.id}?token=${lab.token}`, {
        method: "DELETE",
        signal,
      });
    }
  } catch (e) {
    console.log(`# could not delete the sessions of ${lab.base}: ${e.message}`);
  }
}

/** The notebook panel JupyterLab shows in front (other open notebooks are hidden). */
export function activeNotebook(page) {
  return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)");
}

/**
 * Loads JupyterLab at `nbPath` (relative to the server root) and waits until its shell is ready,
 * within the `left` budget (see {@link budget}).
 */
export async function openLab(page, lab, nbPath, left = budget(LIMITS.open)) {
  await page.goto(`${lab.base}/lab/tree/${nbPath}?token=${lab.token}`, { timeout: left() });
  await page.waitForSelector("body[data-mmulab-ready=true]", {
    state: "attached",
    timeout: left(),
  });
}

/**
 * Opens `nbPath` (relative to the server root) in the JupyterLab UI, waits until it is the notebook
 * in front and its kernel (the one named in the notebook) is idle, and runs all cells from the Run
 * menu, all within one {@link LIMITS}.open budget. Resolves once they are queued.
 */
export async function openAndRunAll(page, lab, nbPath) {
  const left = budget(LIMITS.open);
  await openLab(page, lab, nbPath, left);
  // The current main-area tab carries the notebook's file name (earlier notebooks may stay open).
  await page.waitForFunction(
    (name) =>
      document.querySelector(
        "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel",
      )?.textContent === name,
    path.basename(nbPath),
    { timeout: left() },
  );
  const nb = activeNotebook(page);
  await nb.locator(".jp-Notebook .jp-Cell").first().waitFor({ timeout: left() });
  // The kernel named in the notebook metadata starts; the toolbar names it and says when it is idle.
  await nb
    .locator(".jp-KernelName", { hasText: "TypeScript (mmulab)" })
    .waitFor({ timeout: left() });
  await nb
    .locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    .waitFor({ state: "attached", timeout: left() });
  await nb.locator(".jp-Notebook .jp-Cell").first().click();
  await page.locator(".lm-MenuBar-itemLabel", { hasText: /^Run$/ }).click();
  await page.locator(".lm-Menu-itemLabel", { hasText: /^Run All Cells$/ }).click();
}

/** Fails on any uncaught exception, HTTP error, console error or request leaving 127.0.0.1. */
export function assertCleanPage({ pageErrors, httpErrors, consoleErrors, external }) {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(httpErrors, []);
  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(external, []);
}

/**
 * With MMULAB_UPDATE_DOCS_IMG=1, copies screenshots from the artifacts dir to docs/img
 * (`shots` maps an artifact file name to its docs/img name); otherwise says where they are.
 */
export function publishScreenshots(shots) {
  if (process.env.MMULAB_UPDATE_DOCS_IMG === "1") {
    mkdirSync(docsImg, { recursive: true });
    for (const [from, to] of Object.entries(shots))
      copyFileSync(path.join(artifacts, from), path.join(docsImg, to));
  } else {
    console.log(
      `# screenshots in ${artifacts}; set MMULAB_UPDATE_DOCS_IMG=1 to copy them to docs/img`,
    );
  }
}

/**
 * Decodes a kernel websocket frame: JSON text (the legacy protocol) or the binary
 * v1.kernel.websocket.jupyter.org layout (a uint64 count n, n uint64 offsets, then channel,
 * header, parent header, metadata, content and buffers between successive offsets).
 */
export function decodeKernelFrame(payload) {
  try {
    if (typeof payload === "string") return JSON.parse(payload);
    const n = Number(payload.readBigUInt64LE(0));
    const at = (i) => Number(payload.readBigUInt64LE(8 * (i + 1)));
    const part = (i) => payload.subarray(at(i), i + 1 < n ? at(i + 1) : payload.length).toString();
    return {
      channel: part(0),
      header: JSON.parse(part(1)),
      parent_header: JSON.parse(part(2)),
      content: JSON.parse(part(4)),
    };
  } catch {
    return null;
  }
}

/**
 * Records what the kernel sends to `page`: a Map from the code of each execute_request to the
 * data bundles of the display_data / execute_result messages answering it — the kernel's output
 * before any renderer saw it.
 */
export function recordKernelOutputs(page) {
  const outputs = new Map();
  const codeOf = new Map();
  page.on("websocket", (ws) => {
    if (!ws.url().includes("/channels")) return;
    ws.on("framesent", (f) => {
      const m = decodeKernelFrame(f.payload);
      if (m?.header?.msg_type === "execute_request") codeOf.set(m.header.msg_id, m.content.code);
    });
    ws.on("framereceived", (f) => {
      const m = decodeKernelFrame(f.payload);
      const type = m?.header?.msg_type;
      if (type !== "display_data" && type !== "execute_result") return;
      const code = codeOf.get(m.parent_header?.msg_id);
      if (code === undefined) return;
      if (!outputs.has(code)) outputs.set(code, []);
      outputs.get(code).push(m.content.data);
    });
  });
  return outputs;
}
