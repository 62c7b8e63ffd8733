// Shared pieces of the browser tests: Debian's Chromium via playwright-core, the repo-local
// Jupyter environment, and notebooks written for the tests.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const extDir = path.resolve(here, "..");
export const repo = path.resolve(extDir, "..");
/** Screenshots and notebooks of a run (gitignored). */
export const artifacts = path.join(repo, "test-artifacts", "lab-extension");

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
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/**
 * A page that records uncaught exceptions and console errors, and fails on any request leaving
 * 127.0.0.1 (nothing may be fetched from a CDN).
 */
export async function newPage(browser, { width = 1400, height = 1000 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
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
 * Jupyter environment for a test server: the repo's kernelspecs (JUPYTER_PATH) but its own data
 * dir, so JupyterLab workspaces saved by one test (open tabs) never leak into another.
 */
export function testJupyterEnv(setup, name) {
  const env = setup.jupyterEnv();
  return { ...env, JUPYTER_DATA_DIR: path.join(artifacts, `jupyter-data-${name}`) };
}
