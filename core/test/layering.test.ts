/**
 * core/src's import layering (errors/display < arch < era < kvm < mmu < cpu < x86 < inspect < guest
 * < vm/vcpu < index/internal, mmu_audit only above the model) and "no import cycles, type-only
 * ones included" are enforced by biome (biome.json: noRestrictedImports per folder in `overrides`,
 * suspicious/noImportCycles with ignoreTypes: false), run by `npm run lint` and `npm test`.
 *
 * This file proves the rules can fail: it writes probe files (__layering_probe_<random>_*.test.ts,
 * each with one representative violation) into the folders they belong to, lints them with biome,
 * expects a non-zero exit and the rule's name against each probe, and removes the probes in
 * `finally`. A control probe with only allowed imports must get no diagnostic, and the real
 * core/src must pass.
 *
 * Typical failure: "expected exit 0 ... lint/style/noRestrictedImports" on the real tree means a
 * file imports upward; fix the import (or move the code down a layer), not biome.json.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

const repoRoot = join(__dirname, "..", "..");
const biomeBin = join(repoRoot, "node_modules", "@biomejs", "biome", "bin", "biome");

interface Lint {
  code: number | null;
  out: string;
}

/** Runs `biome lint <paths>` from the repo root (so biome.json applies) and collects its output. */
function biomeLint(paths: string[]): Promise<Lint> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [biomeBin, "lint", "--colors=off", "--max-diagnostics=none", ...paths],
      { cwd: repoRoot, env: { ...process.env, NO_COLOR: "1" } },
    );
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

/**
 * A unique probe path (relative to the repo root) in core/src/<folder>. The `.test.ts` ending keeps
 * it out of `npm run build` (tsconfig.build.json excludes *.test.ts under src), so a build running
 * meanwhile (ts50-consumer.test.ts builds dist/) emits nothing for it into dist/.
 */
function probePath(folder: string, suffix = ""): string {
  return `core/src/${folder}/__layering_probe_${tag}${suffix}.test.ts`;
}
const tag = randomBytes(4).toString("hex");
const moduleOf = (path: string) => `./${path.replace(/^.*\//, "").replace(/\.ts$/, "")}`;

interface Probe {
  what: string;
  path: string;
  source: string;
  /** The rule expected against this file, or null for a control that must stay clean. */
  rule: string | null;
  /** Text of the configured message expected in the output. */
  message?: string;
}

const cycleA = probePath("arch", "_cycle_a");
const cycleB = probePath("arch", "_cycle_b");
const PROBES: Probe[] = [
  {
    what: "mmu/ (L4) importing inspect/views (L7)",
    path: probePath("mmu", "_up"),
    source: 'import * as views from "../inspect/views";\n\nexport const probe = views;\n',
    rule: "lint/style/noRestrictedImports",
    message: "mmu/ is L4",
  },
  {
    what: "kvm/ (L3) importing mmu/mmu (L4), type-only",
    path: probePath("kvm", "_up"),
    source: 'import type { VmMmu } from "../mmu/mmu";\n\nexport type Probe = VmMmu;\n',
    rule: "lint/style/noRestrictedImports",
    message: "kvm/ is L3",
  },
  {
    what: "x86/ importing mmu/mmu_audit (audit code)",
    path: probePath("x86", "_audit"),
    source: 'import * as audit from "../mmu/mmu_audit";\n\nexport const probe = audit;\n',
    rule: "lint/style/noRestrictedImports",
    message: "mmu_audit.ts is audit code",
  },
  {
    what: "a type-only import cycle inside arch/ (a -> b)",
    path: cycleA,
    source: `import type { B } from "${moduleOf(cycleB)}";\n\nexport interface A {\n  b?: B;\n}\n`,
    rule: "lint/suspicious/noImportCycles",
  },
  {
    what: "a type-only import cycle inside arch/ (b -> a)",
    path: cycleB,
    source: `import type { A } from "${moduleOf(cycleA)}";\n\nexport interface B {\n  a?: A;\n}\n`,
    rule: "lint/suspicious/noImportCycles",
  },
  {
    what: "control: mmu/ importing arch/, display/, errors.ts, kvm/ and mmu/",
    path: probePath("mmu", "_control"),
    source: [
      'import * as constants from "../arch/constants";',
      'import * as display from "../display";',
      'import * as errors from "../errors";',
      'import * as stats from "../kvm/stats";',
      'import * as spte from "./spte";',
      "",
      "export const probe = [constants, display, errors, stats, spte];",
      "",
    ].join("\n"),
    rule: null,
  },
];

/** The file's own diagnostics: biome prints "<path>:<line>:<col> lint/<group>/<rule> ━━━". */
function diagnosticsFor(lint: Lint, path: string): string[] {
  return lint.out.split("\n").filter((l) => l.startsWith(`${path}:`) && l.includes(" lint/"));
}

describe("core/src import layering (biome)", () => {
  it("finds biome", () => {
    expect(existsSync(biomeBin), `biome launcher not found at ${biomeBin}; run npm install`).toBe(
      true,
    );
  });

  it("passes on the real core/src", async () => {
    const lint = await biomeLint(["core/src"]);
    expect(lint.code, lint.out).toBe(0);
  });

  describe("fails on violations", () => {
    // One biome run over all probes (a run costs about a second); the probes exist only during it.
    let lint: Lint;
    beforeAll(async () => {
      try {
        for (const p of PROBES) writeFileSync(join(repoRoot, p.path), p.source);
        lint = await biomeLint(PROBES.map((p) => p.path));
      } finally {
        for (const p of PROBES) rmSync(join(repoRoot, p.path), { force: true });
      }
    });

    it("exits non-zero and leaves no probe behind", () => {
      expect(lint.code, lint.out).not.toBe(0);
      for (const p of PROBES) expect(existsSync(join(repoRoot, p.path)), p.path).toBe(false);
    });

    for (const p of PROBES) {
      it(`${p.what}: ${p.rule ?? "no diagnostic"}`, () => {
        const diags = diagnosticsFor(lint, p.path);
        const rule = p.rule;
        if (rule === null) {
          expect(diags, lint.out).toEqual([]);
          return;
        }
        expect(diags.length, lint.out).toBeGreaterThan(0);
        for (const d of diags) expect(d).toContain(rule);
        if (p.message) expect(lint.out).toContain(p.message);
      });
    }
  });
});
