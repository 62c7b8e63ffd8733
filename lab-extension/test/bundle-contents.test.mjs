// The built extension (labextension/static/*.js) must hold no simulator code: src/ imports only
// "@mmulab/core/display" (the display payload protocol), and the bundler must not have pulled in
// the model (arch/ era/ kvm/ mmu/ cpu/ x86/), inspect/ or guest/. Checked with marker strings that
// survive minification (string literals found only in simulator code): each must be in core's
// built simulator JS (core/dist/cjs outside display/, in code, not only in a comment), must not
// be in core's display JS (which the extension does bundle), and must be in no extension chunk.
//
// Typical failure: `chunk 409.<hash>.js holds simulator marker "handle_changed_spte"`: a file of
// src/ imports "@mmulab/core" or "@mmulab/core/internal" (or display/ now imports the model);
// import from "@mmulab/core/display" only.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const extDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const staticDir = path.join(extDir, "labextension", "static");
const coreCjs = path.resolve(extDir, "..", "core", "dist", "cjs");

/** Marker -> the core/src file whose string literal it is (for the failure messages). */
const MARKERS = {
  handle_changed_spte: "mmu/tdp_mmu.ts",
  "seed-2010 self-check": "mmu/mmu.ts",
  kvm_mmu_page_set_translation: "mmu/mmu_internal.ts",
  kvm_mmu_page_fault: "cpu/ept.ts",
  KVM_SET_NR_MMU_PAGES: "x86/x86.ts",
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: "kvm/kvm_main.ts",
  mmu_notifier_invalidate: "kvm/kvm_main.ts",
  legacy_direct: "era/features.ts",
  "table gfn outside memslots": "inspect/walk.ts",
  "MMU switches": "inspect/machine_display.ts",
  "a 32-bit entry in 32-bit paging": "guest/pgtable_builder.ts",
};

/** Every .js file under `dir`, recursively, as [path relative to dir, text]. */
function jsFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith(".js")) continue;
    const p = path.join(e.parentPath ?? e.path, e.name);
    out.push([path.relative(dir, p), readFileSync(p, "utf8")]);
  }
  return out;
}

/** tsc output without its comment lines (JSDoc and // comments name `kvm_mmu_page_fault` too). */
function codeOnly(js) {
  return js
    .split("\n")
    .filter((l) => !/^\s*(\/\/|\/\*|\*)/.test(l))
    .join("\n");
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

test("the lab extension's chunks hold no simulator code (marker strings of core's model)", () => {
  assert.ok(existsSync(coreCjs), `${coreCjs} missing: run npm run build -w @mmulab/core`);
  assert.ok(
    existsSync(staticDir),
    `${staticDir} missing: run npm run build (or npm run build -w @mmulab/lab-extension)`,
  );

  const core = jsFiles(coreCjs);
  const display = core.filter(([p]) => p.split(path.sep)[0] === "display");
  const simulator = core.filter(([p]) => p.split(path.sep)[0] !== "display");
  assert.ok(display.length > 0, `no display JS in ${coreCjs}/display`);
  assert.ok(simulator.length > 0, `no simulator JS in ${coreCjs}`);
  const simulatorCode = simulator.map(([, js]) => codeOnly(js)).join("\n");

  // The markers must mean something: in the simulator's code as a string literal, not in display/.
  for (const [marker, where] of Object.entries(MARKERS)) {
    assert.match(
      simulatorCode,
      new RegExp(`["'\`]${escapeRegExp(marker)}`),
      `marker "${marker}" (${where}) is no longer a string literal in core/dist/cjs: pick another marker`,
    );
    for (const [p, js] of display) {
      assert.ok(
        !js.includes(marker),
        `marker "${marker}" is in core/dist/cjs/${p}, which the extension bundles: pick another marker`,
      );
    }
  }

  const chunks = readdirSync(staticDir)
    .filter((f) => f.endsWith(".js"))
    .map((f) => [f, readFileSync(path.join(staticDir, f), "utf8")]);
  assert.ok(chunks.length > 0, `no .js chunk in ${staticDir}`);
  const found = [];
  for (const [chunk, js] of chunks) {
    for (const [marker, where] of Object.entries(MARKERS)) {
      if (js.includes(marker)) {
        found.push(`chunk ${chunk} holds simulator marker "${marker}" (core/src/${where})`);
      }
    }
  }
  const bytes = chunks.reduce((n, [, js]) => n + Buffer.byteLength(js), 0);
  console.log(
    `bundle-contents: ${chunks.length} chunks, ${bytes} bytes checked against ` +
      `${Object.keys(MARKERS).length} simulator markers (each found in core/dist/cjs's ${simulator.length} simulator JS files)`,
  );
  assert.deepEqual(found, [], found.join("\n"));
});
