// Renderer fuzz in Chromium: 1,000 seeded payloads (test/fuzz-payloads.mjs) — simulator output
// taken from real display bundles, and mutations of it — each rendered by the extension's real
// renderer (lib/ and style, with plotly as the lazily loaded chunk it is in the lab build) on a
// page served from 127.0.0.1. Each payload must draw a visible view or the error box within
// CASE_LIMIT; no uncaught exception, no console error, nothing executed (window.__pwned),
// Object.prototype and friends untouched, no active element inside an output, and no request
// leaving 127.0.0.1 (every request goes through the route below).
//
// The page runs the cases itself: it fetches case i's JSON text from the test's server (as
// JupyterLab fetches a notebook), parses and renders it, checks the output and reports to Node
// (exposeFunction). Page errors, console errors and off-host requests are charged to the case
// the page fetched last (an asynchronous one may come from the case before). A watchdog ends a
// page that fetched nothing new for CASE_LIMIT and resumes after the case that hung.
//
// MMULAB_FUZZ_SEED (default 16006) and MMULAB_FUZZ_COUNT (default 1000) pick the cases; the seed is
// printed. A failing case is saved to lab-extension/test-artifacts/renderer-fuzz/ as
// `seed-<seed>-case-<i>.json` (MIME type, origin, what failed) beside the payload text
// `seed-<seed>-case-<i>.payload.txt`; `MMULAB_FUZZ_REPLAY=<that .json>` renders just that case.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { after, before, test } from "node:test";
import { build } from "esbuild";
import { generateCases, NON_JSON, OFF_HOST, PLOTLY_MIME } from "./fuzz-payloads.mjs";
import { extDir, LIMITS, launchBrowser } from "./helpers.mjs";

const SEED = Number(process.env.MMULAB_FUZZ_SEED ?? 16006);
const COUNT = Number(process.env.MMULAB_FUZZ_COUNT ?? 1000);
const REPLAY = process.env.MMULAB_FUZZ_REPLAY;
/** How long one payload may take to draw (a hang detector: typical cases take milliseconds). */
const CASE_LIMIT = Number(process.env.MMULAB_FUZZ_CASE_LIMIT ?? 20_000);
const out = path.join(extDir, "test-artifacts", "renderer-fuzz");
const pageDir = path.join(out, "page");

/**
 * Console errors that are not failures, each with its reason and the MIME types it may come from.
 */
const CONSOLE_WHITELIST = [
  {
    re: /Failed to load resource: the server responded with a status of 404/,
    why: "Chromium's line for the favicon request, which the page server answers with 404",
  },
  {
    re: /^Error: <\w+> attribute [\w-]+: (Expected (length|number)|Unexpected end of attribute)/,
    mime: PLOTLY_MIME,
    why: "Chromium reports SVG attributes plotly.js sets to NaN for degenerate data (ignored, not ours)",
  },
];

/** Whether console error `text` of a case of `mime` is whitelisted. */
const whitelisted = (text, mime) =>
  CONSOLE_WHITELIST.some((w) => w.re.test(text) && (w.mime === undefined || w.mime === mime));

let server;
let base;
let browser;
let session;

/** Builds the page: page-entry.mjs with lib/, style and plotly as a split chunk (ESM). */
async function buildPage() {
  mkdirSync(pageDir, { recursive: true });
  await build({
    entryPoints: [path.join(extDir, "test", "page-entry.mjs")],
    bundle: true,
    format: "esm",
    splitting: true,
    outdir: pageDir,
    entryNames: "bundle",
    loader: { ".css": "css" },
    logLevel: "warning",
  });
  writeFileSync(
    path.join(pageDir, "index.html"),
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="stylesheet" href="bundle.css"></head><body><script type="module" src="bundle.js"></script></body></html>',
  );
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };

/** The cases being run, and the one the page fetched last (with when). */
const run = { cases: [], current: -1, at: 0 };

/** Serves pageDir and `/case/<n>` (the n-th case's text, its MIME type in x-mime) on 127.0.0.1. */
async function serve() {
  const s = createServer((req, res) => {
    const name = new URL(req.url, "http://127.0.0.1").pathname.slice(1) || "index.html";
    const m = /^case\/(\d+)$/.exec(name);
    if (m) {
      const c = run.cases[Number(m[1])];
      run.current = Number(m[1]);
      run.at = Date.now();
      res.writeHead(200, { "content-type": "application/json", "x-mime": c.mime });
      res.end(c.text);
      return;
    }
    const file = path.join(pageDir, path.normalize(name));
    try {
      if (!file.startsWith(pageDir)) throw new Error("outside");
      const body = readFileSync(file);
      res.writeHead(200, {
        "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
      });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((ok) => s.listen(0, "127.0.0.1", ok));
  return s;
}

/** A fresh page on the renderer page, with its listeners; `log` collects what they see. */
async function openSession() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  context.setDefaultTimeout(LIMITS.action);
  const page = await context.newPage();
  // Each entry: [index into run.cases of the case the page fetched last (-1: none), text].
  const log = { pageErrors: [], consoleErrors: [], offHost: [], reports: [] };
  page.on("pageerror", (e) =>
    log.pageErrors.push([run.current, String(e?.stack ?? e).slice(0, 2000)]),
  );
  page.on("console", (m) => {
    if (m.type() === "error") log.consoleErrors.push([run.current, m.text().slice(0, 2000)]);
  });
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1") return route.continue();
    log.offHost.push([run.current, url.href.slice(0, 500)]);
    return route.abort();
  });
  await page.exposeFunction("__fuzzReport", (r) => log.reports.push(r));
  await page.goto(`${base}/index.html`);
  await page.waitForFunction(() => window.mmulabTest !== undefined);
  // What the page's prototypes look like before any payload (checked after every case).
  await page.evaluate(() => {
    const shape = () =>
      [Object, Array, Function, String, Number, Boolean, Element, Node, EventTarget]
        .map((c) => `${c.name}:${Object.getOwnPropertyNames(c.prototype).sort().join(",")}`)
        .join(";");
    window.__fuzzShape = shape;
    window.__fuzzShape0 = shape();
  });
  // plotly.js (4 MB) loads on the first figure; load it here so no case's time includes it.
  await page.evaluate(async (mime) => {
    await window.mmulabTest.render({ data: [{ type: "scatter", x: [1], y: [1] }] }, mime);
    window.mmulabTest.disposeAll();
    // Anything plotly's load changed in the prototypes is plotly's, not a payload's.
    window.__fuzzShape0 = window.__fuzzShape();
  }, PLOTLY_MIME);
  if (log.pageErrors.length + log.consoleErrors.length + log.offHost.length > 0)
    throw new Error(`the page is not clean before any case: ${JSON.stringify(log)}`);
  await page.evaluate(`window.__fuzzCase = ${checkCase.toString()}`);
  return { context, page, log };
}

/**
 * Runs in the page: parses case `i`'s text, renders it as `mime` in a fresh widget, clicks and
 * hovers a few of its elements, and inspects the result. Resolves with
 * `{ outcome: "view" | "error" | "failed-box" | "blank", problems: [...], ms }`.
 */
async function checkCase(text, mime, i, { nonJson, offHost, plotlyMime }) {
  const problems = [];
  const t0 = performance.now();
  const payload = JSON.parse(text);
  // Sentinel strings back to NaN/±Infinity, iteratively (a reviver recurses, and payloads
  // nest 10^4 deep).
  const numbers = new Map(Object.entries(nonJson).map(([n, sentinel]) => [sentinel, Number(n)]));
  const stack = text.includes("\\u0000") ? [payload] : [];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== "object") continue;
    for (const k of Object.keys(node)) {
      const v = node[k];
      if (typeof v === "string" && numbers.has(v)) node[k] = numbers.get(v);
      else if (v !== null && typeof v === "object") stack.push(v);
    }
  }
  window.mmulabTest.disposeAll();
  await window.mmulabTest.render(payload, mime);
  const node = document.querySelector(".mmulab-output");
  // Handlers run after renderModel: click a few buttons and rows, hover a few cells.
  const clickable = [...node.querySelectorAll("button, .mmulab-pt-entry, [tabindex]")];
  for (let k = 0; k < Math.min(4, clickable.length); k++) {
    clickable[(i * 7 + k * 13) % clickable.length].click();
  }
  const hoverable = [...node.querySelectorAll("[title], td, .mmulab-w2d-cell")];
  for (let k = 0; k < Math.min(3, hoverable.length); k++) {
    const el = hoverable[(i * 5 + k * 11) % hoverable.length];
    el.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    el.dispatchEvent(new MouseEvent("mouseenter"));
  }
  const first = node.firstElementChild;
  let outcome = "blank";
  if (first?.classList.contains("mmulab-error")) {
    const title = first.querySelector(".mmulab-error-title")?.textContent ?? "";
    const msg = first.querySelector(".mmulab-error-message")?.textContent ?? "";
    outcome = /renderer failed/.test(title) ? "failed-box" : "error";
    if (msg.length < 10 || msg.length > 5000) problems.push(`error message of ${msg.length} chars`);
    if (first.getBoundingClientRect().height <= 0) problems.push("error box not visible");
    // A validated mmulab payload must draw; plotly.js checks figures itself, and its
    // exceptions on figures it rejects are what the failure box is for.
    if (outcome === "failed-box" && mime !== plotlyMime)
      problems.push(`renderer failed on a validated payload: ${msg.slice(0, 300)}`);
  } else if (first?.classList.contains("mmulab-view")) {
    const box = first.getBoundingClientRect();
    const shown = first.textContent.trim().length > 0 || first.querySelector("svg, canvas");
    outcome = box.height > 0 && box.width > 0 && shown ? "view" : "blank";
  }
  if (outcome === "blank") problems.push("neither a visible view nor an error box");
  // Nothing inside the output may run or load anything.
  for (const el of node.querySelectorAll("*")) {
    const tag = el.localName;
    if (
      [
        "script",
        "iframe",
        "object",
        "embed",
        "frame",
        "link",
        "img",
        "audio",
        "video",
        "base",
        "meta",
        "form",
      ].includes(tag)
    )
      problems.push(`active element <${tag}>`);
    if (tag === "style" && /@import|url\(/i.test(el.textContent)) problems.push("style with a URL");
    for (const a of el.attributes) {
      const v = a.value.trim().toLowerCase();
      if (/^on/i.test(a.name)) problems.push(`event attribute ${a.name} on <${tag}>`);
      // A link (<a>, plotly keeps http links in labels) only navigates when clicked; any
      // other element with a URL attribute loads it.
      const url = /href$|^src$|^action$|^formaction$/.test(a.name);
      if (url && (v.startsWith("javascript:") || (tag !== "a" && v.includes(offHost))))
        problems.push(`${a.name}=${v.slice(0, 80)} on <${tag}>`);
      if (a.name === "style" && v.includes(offHost)) problems.push(`style url on <${tag}>`);
    }
  }
  if (window.__pwned !== undefined || window.__mmulabPwned !== undefined)
    problems.push("an injected string ran (window.__pwned set)");
  if (window.__fuzzShape() !== window.__fuzzShape0) problems.push("a built-in prototype changed");
  const probe = {};
  for (const k of ["polluted", "__pwned", "toString"]) {
    if (k === "toString" ? probe.toString !== Object.prototype.toString : k in probe)
      problems.push(`Object.prototype.${k} polluted`);
  }
  return { outcome, problems, ms: performance.now() - t0 };
}

/**
 * Runs cases `from`.. in the page (each fetched from the server, checked by checkCase, reported to
 * Node). Resolves when all are done; rejects with the index of a case the page hung on.
 */
async function runCases(session, from, to) {
  const work = session.page.evaluate(
    async ([from, to, consts]) => {
      for (let i = from; i < to; i++) {
        let r;
        try {
          const res = await fetch(`/case/${i}`);
          const mime = res.headers.get("x-mime");
          r = await window.__fuzzCase(await res.text(), mime, i, consts);
        } catch (e) {
          r = { outcome: "harness-error", problems: [`check failed: ${e}`], ms: 0 };
        }
        // Not awaited: reports arrive in order, and the next case need not wait for Node.
        window.__fuzzReport({ i, ...r });
      }
    },
    [from, to, { nonJson: NON_JSON, offHost: OFF_HOST, plotlyMime: PLOTLY_MIME }],
  );
  let timer;
  const hung = new Promise((_, reject) => {
    timer = setInterval(() => {
      if (Date.now() - run.at > CASE_LIMIT)
        reject(Object.assign(new Error("hung"), { at: run.current }));
    }, 250);
  });
  try {
    await Promise.race([work, hung]);
  } finally {
    clearInterval(timer);
    work.catch(() => undefined);
  }
}

/** Saves a failing case for reproduction; returns the path of its description. */
function save(c, problems) {
  mkdirSync(out, { recursive: true });
  const stem = path.join(out, REPLAY ? "replay" : `seed-${SEED}-case-${c.i}`);
  writeFileSync(`${stem}.payload.txt`, c.text);
  writeFileSync(
    `${stem}.json`,
    `${JSON.stringify({ seed: SEED, case: c.i, mime: c.mime, origin: c.origin, problems, payload: `${stem}.payload.txt` }, null, 2)}\n`,
  );
  return `${stem}.json`;
}

/** The cases of this run (generated while esbuild and Chromium start in their own processes). */
let cases;

before(
  async () => {
    const t0 = Date.now();
    const built = buildPage();
    const launched = launchBrowser();
    if (REPLAY) {
      const d = JSON.parse(readFileSync(REPLAY, "utf8"));
      const text = readFileSync(d.payload, "utf8");
      cases = [{ i: 0, mime: d.mime, origin: `case ${d.case}: ${d.origin}`, text }];
    } else {
      cases = generateCases(SEED, COUNT);
    }
    console.log(
      `# renderer fuzz: seed ${SEED}, ${cases.length} cases (generated in ${Date.now() - t0} ms)`,
    );
    await built;
    browser = await launched;
    server = await serve();
    base = `http://127.0.0.1:${server.address().port}`;
    session = await openSession();
  },
  { timeout: LIMITS.start + 2 * LIMITS.action },
);

after(
  async () => {
    await browser?.close();
    await new Promise((ok) => (server ? server.close(ok) : ok()));
  },
  { timeout: LIMITS.action },
);

test(`renderer fuzz: ${REPLAY ? "replay" : `${COUNT} payloads`}, each a view or an error box; nothing runs, pollutes or leaves 127.0.0.1`, {
  timeout: 15 * 60_000,
}, async () => {
  const t0 = Date.now();
  run.cases = cases;
  run.at = Date.now();
  // Results by case, from the page's reports and from what the listeners charged to each case.
  const results = new Map();
  const charged = new Map();
  const charge = (i, what) => {
    if (!charged.has(i)) charged.set(i, []);
    charged.get(i).push(what);
  };
  /** Moves what `log` collected into results/charged. */
  const collect = (log) => {
    for (const r of log.reports.splice(0)) results.set(r.i, r);
    for (const [i, e] of log.pageErrors.splice(0)) charge(i, `pageerror: ${e}`);
    for (const [i, e] of log.consoleErrors.splice(0))
      if (!whitelisted(e, cases[i]?.mime)) charge(i, `console error: ${e}`);
    for (const [i, u] of log.offHost.splice(0)) charge(i, `off-host request: ${u}`);
  };
  let next = 0;
  while (next < cases.length) {
    try {
      await runCases(session, next, cases.length);
      next = cases.length;
    } catch (e) {
      if (e.at === undefined) throw e;
      // The page is stuck in the renderer: record the case, start a fresh page after it.
      results.set(e.at, {
        i: e.at,
        outcome: "timeout",
        problems: [`no view or error box within ${CASE_LIMIT} ms`],
        ms: CASE_LIMIT,
      });
      collect(session.log);
      await session.context.close().catch(() => undefined);
      session = await openSession();
      next = e.at + 1;
      run.at = Date.now();
    }
    collect(session.log);
  }
  const failures = [];
  const tally = new Map();
  const slowest = [];
  const timeOf = new Map();
  for (const c of cases) {
    const result = results.get(c.i) ?? {
      outcome: "missing",
      problems: ["the page never reported this case"],
      ms: 0,
    };
    const problems = [...result.problems, ...(charged.get(c.i) ?? [])];
    const key = `${c.mime.replace(/^application\/vnd\.|\+json$/g, "")} ${result.outcome}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
    slowest.push([result.ms, c.i, c.origin]);
    const family = c.origin.replace(/#\d+ |, .*$| \d+$/g, "");
    timeOf.set(family, (timeOf.get(family) ?? 0) + result.ms);
    if (problems.length > 0) {
      const file = save(c, problems);
      failures.push(
        `case ${c.i} (${c.mime}, ${c.origin}): ${problems.join(" | ").slice(0, 600)}\n    saved: ${file}`,
      );
    }
  }
  // Anything charged before the first case (index -1) is the page's own.
  if (charged.has(-1)) failures.push(`before any case: ${charged.get(-1).join(" | ")}`);
  slowest.sort((a, b) => b[0] - a[0]);
  console.log(`# outcomes: ${JSON.stringify(Object.fromEntries([...tally].sort()))}`);
  console.log(
    `# slowest: ${slowest
      .slice(0, 5)
      .map(([ms, i, o]) => `case ${i} ${Math.round(ms)} ms (${o})`)
      .join("; ")}`,
  );
  console.log(
    `# render time by origin (s): ${[...timeOf]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([o, t]) => `${o} ${(t / 1000).toFixed(1)}`)
      .join("; ")}`,
  );
  console.log(`# renderer fuzz took ${Math.round((Date.now() - t0) / 1000)} s (seed ${SEED})`);
  assert.equal(
    failures.length,
    0,
    `${failures.length} of ${cases.length} cases failed (seed ${SEED}):\n${failures.slice(0, 30).join("\n")}`,
  );
});

test("the fuzz's checks catch what they look for (a renderer made to misbehave on purpose)", {
  timeout: LIMITS.start + 4 * LIMITS.action,
}, async () => {
  if (REPLAY) return;
  // A fresh page whose render() is wrapped to do, after the real renderer, what a broken one
  // would: insert a live <img> loading an off-host URL with an onerror handler, pollute
  // Object.prototype, leave an empty output for one case and never return on another.
  const control = await openSession();
  try {
    await control.page.evaluate((offHost) => {
      const real = window.mmulabTest.render;
      window.mmulabTest.render = async (payload, mime) => {
        await real(payload, mime);
        const out = document.querySelector(".mmulab-output");
        if (payload.control === "inject") {
          const img = document.createElement("img");
          img.setAttribute("src", `http://${offHost}/x.png`);
          img.setAttribute("onerror", "window.__pwned=1");
          out.appendChild(img);
          await new Promise((res) => setTimeout(res, 500));
        } else if (payload.control === "pollute") {
          Object.prototype.polluted = "yes";
        } else if (payload.control === "blank") {
          out.replaceChildren();
        } else if (payload.control === "hang") {
          for (;;) {}
        }
      };
    }, OFF_HOST);
    const base = { version: 1, kind: "walk" };
    run.cases = ["inject", "pollute", "blank", "hang"].map((control, i) => ({
      i,
      mime: "application/vnd.mmulab.walk+json",
      origin: `control ${control}`,
      text: JSON.stringify({ ...base, control }),
    }));
    run.at = Date.now();
    // The watchdog gives up on the page after CASE_LIMIT without a new fetch, naming the case.
    await assert.rejects(runCases(control, 0, run.cases.length), (e) => e.at === 3);
    // Reports are not awaited by the page; wait until all three are in.
    const deadline = Date.now() + LIMITS.action;
    while (control.log.reports.length < 3 && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 100));
    const [inject, pollute, blank] = [0, 1, 2].map((i) =>
      control.log.reports.find((r) => r.i === i),
    );
    assert.ok(inject.problems.includes("active element <img>"), JSON.stringify(inject));
    assert.ok(inject.problems.some((p) => /event attribute onerror/.test(p)));
    assert.ok(inject.problems.some((p) => /src=http:\/\/192\.0\.2\.1/.test(p)));
    assert.ok(inject.problems.includes("an injected string ran (window.__pwned set)"));
    assert.ok(control.log.offHost.some(([i, u]) => i === 0 && u.includes(OFF_HOST)));
    assert.ok(pollute.problems.includes("a built-in prototype changed"), JSON.stringify(pollute));
    assert.ok(pollute.problems.includes("Object.prototype.polluted polluted"));
    assert.equal(blank.outcome, "blank");
    assert.ok(blank.problems.includes("neither a visible view nor an error box"));
  } finally {
    await control.context.close().catch(() => undefined);
  }
});
