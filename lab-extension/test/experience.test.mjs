// The notebook experience as a new user meets it (issue 13), in the JupyterLab `npm start` serves,
// on a workspace prepared the way `npm start` prepares workspace/ (scripts/workspace.mjs): open a
// shipped notebook and save it, start a notebook from the launcher, ask for a tooltip, run a
// cell that throws and one that loops after an await and interrupt it; afterwards the page has
// no errors and the repository's `git status` is what it was.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { DEFAULT_WORKSPACE, prepareWorkspace, SHIPPED } from "../../scripts/workspace.mjs";
import {
  activeNotebook,
  artifacts,
  assertCleanPage,
  budget,
  LIMITS,
  launchBrowser,
  newPage,
  openLab,
  prerequisite,
  repo,
  shutDown,
  startTestLab,
  TIMEOUT,
} from "./helpers.mjs";

const gitStatus = () =>
  execFileSync("git", ["status", "--porcelain", "--untracked-files=all"], {
    cwd: repo,
    encoding: "utf8",
  });

/** The TSDoc of `name` in `file` (core source), as written: what a tooltip must show. */
function tsdocOf(file, name) {
  const src = readFileSync(path.join(repo, "core", "src", file), "utf8");
  const at = src.indexOf(`  ${name}(`);
  assert.ok(at > 0, `${name} not found in ${file}`);
  const open = src.lastIndexOf("/**", at);
  return src
    .slice(open + 3, src.indexOf("*/", open))
    .split("\n")
    .map((l) => l.replace(/^\s*\*\s?/, ""))
    .join(" ")
    .trim();
}

const ws = path.join(artifacts, "experience-workspace");
let lab;
let browser;
let page;
let pageErrors;
let consoleErrors;
let httpErrors;
let external;
let statusBefore;
const created = prerequisite("creating a notebook from the launcher");

before(
  async () => {
    statusBefore = gitStatus();
    rmSync(ws, { recursive: true, force: true });
    assert.notEqual(ws, DEFAULT_WORKSPACE);
    prepareWorkspace(ws);
    lab = await startTestLab({ root: ws, name: "experience" });
    browser = await launchBrowser();
    ({ page, pageErrors, consoleErrors, external, httpErrors } = await newPage(browser));
  },
  { timeout: TIMEOUT.setup },
);

after(() => shutDown(browser, lab), { timeout: LIMITS.action });

/**
 * Types `code` into the last cell of the notebook in front (a new one when the last is not
 * empty) and runs it with Shift+Enter. Returns the output area of that cell.
 */
async function runNewCell(code) {
  const nb = activeNotebook(page);
  const cells = nb.locator(".jp-Notebook .jp-Cell");
  let index = (await cells.count()) - 1;
  await cells.nth(index).locator(".cm-content").click();
  if (((await cells.nth(index).locator(".cm-content").textContent()) ?? "").trim() !== "") {
    await page.keyboard.press("Escape");
    await page.keyboard.press("b");
    index++;
    await cells.nth(index).locator(".cm-content").click();
  }
  // insertText: no auto-indent or bracket closing from the editor.
  await page.keyboard.insertText(code);
  await page.keyboard.press("Shift+Enter");
  return cells.nth(index).locator(".jp-OutputArea");
}

/** Waits until the kernel of the notebook in front is idle again. */
const idle = () =>
  activeNotebook(page)
    .locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    .waitFor({ state: "attached", timeout: LIMITS.run });

describe("the notebook experience in the lab npm start serves", () => {
  test("a shipped notebook opened and saved is byte for byte the shipped file", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    const name = "01-page-walk-lab.ipynb";
    const left = budget(LIMITS.open);
    await openLab(page, lab, name, left);
    const nb = activeNotebook(page);
    await nb
      .locator(".jp-KernelName", { hasText: "TypeScript (mmulab)" })
      .waitFor({ timeout: left() });
    // The kernel answered kernel_info (its language_info reached the model) once it is idle.
    await nb
      .locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
      .waitFor({ state: "attached", timeout: left() });
    await nb.locator(".jp-Notebook .jp-Cell").first().click();
    await page.keyboard.press("Control+s");
    // The save round trip ends with the tab's dirty mark gone.
    await page
      .locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current:not(.jp-mod-dirty)")
      .waitFor({ timeout: left() });
    const saved = readFileSync(path.join(ws, name), "utf8");
    const shipped = readFileSync(path.join(SHIPPED, name), "utf8");
    assert.deepEqual(JSON.parse(saved).metadata, JSON.parse(shipped).metadata);
    assert.equal(saved, shipped, "JupyterLab's save changed the notebook");
  });

  test("the launcher offers the mmulab kernel first and starts a notebook on it", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    await page.goto(lab.url);
    await page.waitForSelector("body[data-mmulab-ready=true]", { state: "attached" });
    await page.locator(".lm-MenuBar-itemLabel", { hasText: /^File$/ }).click();
    await page.locator(".lm-Menu-itemLabel", { hasText: /^New Launcher$/ }).click();
    const cards = page.locator(".jp-Launcher:visible .jp-LauncherCard[data-category='Notebook']");
    await cards.first().waitFor();
    assert.equal(await cards.first().getAttribute("title"), "TypeScript (mmulab)");
    await cards.first().click();
    await page
      .locator(".lm-TabBar-tab.lm-mod-current", { hasText: /Untitled\d*\.ipynb/ })
      .waitFor();
    const nb = activeNotebook(page);
    await nb.locator(".jp-KernelName", { hasText: "TypeScript (mmulab)" }).waitFor();
    await nb
      .locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
      .waitFor({ state: "attached", timeout: LIMITS.open });
    const r = await fetch(`${lab.base}/api/sessions?token=${lab.token}`);
    const sessions = (await r.json()).map((s) => `${s.path}: ${s.kernel?.name}`);
    assert.ok(
      sessions.some((s) => /^Untitled\d*\.ipynb: mmulab$/.test(s)),
      sessions.join(", "),
    );
    created.done();
  });

  test("Shift+Tab on vm.setUserMemoryRegion shows its TSDoc, links as plain names", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    created.check();
    await runNewCell('import { createVm } from "@mmulab/core";\nconst vm = createVm();');
    await idle();
    const cells = activeNotebook(page).locator(".jp-Notebook .jp-Cell");
    await cells.last().locator(".cm-content").click();
    await page.keyboard.insertText("vm.setUserMemoryRegion(");
    await page.keyboard.press("Shift+Tab");
    const tip = page.locator(".jp-Tooltip");
    await tip.waitFor({ timeout: LIMITS.run });
    await page.screenshot({ path: path.join(artifacts, "experience-tooltip.png") });
    const text = (await tip.textContent()).replace(/\s+/g, " ");
    const doc = tsdocOf("kvm/kvm_main.ts", "setUserMemoryRegion");
    // The doc's first sentence, with {@link X} read as X.
    const first = doc.split(". ")[0].replace(/\{@link\s+([^}\s|]+)[^}]*\}/g, "$1");
    assert.ok(text.includes("KVM_SET_USER_MEMORY_REGION"), text);
    assert.ok(text.includes("InvalidArgumentError"), text);
    assert.ok(!text.includes("{@link"), `raw link markup in the tooltip: ${text}`);
    assert.ok(text.includes(first.replaceAll("`", "")) || text.includes(first), text);
    await page.keyboard.press("Escape");
    // Leave the half-typed call out of later cells.
    await page.keyboard.press("Enter");
    await page.keyboard.press("Control+a");
    await page.keyboard.press("Delete");
    await page.keyboard.press("Escape");
  });

  test("a cell that throws shows a frame with the cell's own line number", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    created.check();
    const out = await runNewCell(
      'const before = "declared before the throw";\nconst n = 2;\nthrow new Error("boom on line " + (n + 1));',
    );
    const err = out.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']");
    await err.waitFor({ timeout: LIMITS.run });
    const text = await err.textContent();
    await out.screenshot({ path: path.join(artifacts, "experience-error.png") });
    assert.match(text, /boom on line 3/);
    // A frame names the cell and line 3, not the compiled script or the kernel's files.
    assert.match(text, /(line 3\b|:3:\d+)/, text);
    assert.doesNotMatch(text, /evalmachine|node:vm|node:internal|dist[\\/]cjs/, text);
  });

  test("a synchronous loop after an await stops on interrupt and the kernel lives on", {
    timeout: TIMEOUT.notebook,
  }, async () => {
    created.check();
    const out = await runNewCell(
      "let spins = 0;\nawait new Promise((r) => setTimeout(r, 100));\nwhile (true) spins++;",
    );
    const nb = activeNotebook(page);
    await nb
      .locator(".jp-Notebook-ExecutionIndicator[data-status='busy']")
      .waitFor({ state: "attached", timeout: LIMITS.run });
    // Well past the await: the loop is running.
    await page.waitForTimeout(1500);
    await page.locator(".lm-MenuBar-itemLabel", { hasText: /^Kernel$/ }).click();
    await page.locator(".lm-Menu-itemLabel", { hasText: /^Interrupt Kernel$/ }).click();
    await idle();
    assert.match(await out.textContent(), /Interrupt/);
    // The same kernel still runs cells and still has the earlier declarations.
    const next = await runNewCell("typeof vm.setUserMemoryRegion + ' ' + (spins > 0)");
    await next.locator(".jp-OutputArea-output", { hasText: "function true" }).waitFor({
      timeout: LIMITS.run,
    });
  });

  test("no uncaught exception, no console error, nothing fetched from outside 127.0.0.1", () => {
    assertCleanPage({ pageErrors, httpErrors, consoleErrors, external });
  });

  test("after all of that, git status is what it was", async () => {
    await shutDown(browser, lab);
    browser = undefined;
    lab = undefined;
    assert.equal(gitStatus(), statusBefore);
  });
});
