/**
 * The dist build (scripts/build.mjs) replaces reads of numeric consts by their values. Build into
 * a temporary directory and check it against the sources as vitest compiles them (esbuild, no
 * inlining): every inlined literal equals the exported constant it names, and no exported numeric
 * constant is still read through an exports object.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const core = path.resolve(__dirname, "..");
let out = "";

function files(dir: string, ext: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p, ext) : p.endsWith(ext) ? [p] : [];
  });
}

/** name -> value of every exported number constant of src (names exported twice must agree). */
async function exportedNumbers(): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  const ambiguous = new Set<string>();
  for (const f of files(path.join(core, "src"), ".ts")) {
    if (f.endsWith(".d.ts") || f.endsWith(".test.ts")) continue;
    const mod = (await import(f)) as Record<string, unknown>;
    for (const [k, v] of Object.entries(mod)) {
      if (typeof v !== "number" || !/^[A-Z][A-Z0-9_]*$/.test(k)) continue;
      if (values.has(k) && values.get(k) !== v) ambiguous.add(k);
      values.set(k, v);
    }
  }
  for (const k of ambiguous) values.delete(k);
  return values;
}

describe("dist build: numeric constants inlined", () => {
  beforeAll(() => {
    out = mkdtempSync(path.join(tmpdir(), "mmulab-build-"));
    execFileSync(process.execPath, [path.join(core, "scripts/build.mjs"), "--outDir", out], {
      cwd: core,
      stdio: "pipe",
    });
  }, 120_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("each inlined literal is the value of the constant it names", async () => {
    const values = await exportedNumbers();
    let checked = 0;
    const wrong: string[] = [];
    for (const f of files(out, ".js")) {
      const js = readFileSync(f, "utf8");
      for (const m of js.matchAll(/(\(-)?([0-9][0-9.e+]*)\)? \/\* ([A-Z][A-Z0-9_]*) \*\//g)) {
        const name = m[3]!;
        if (!values.has(name)) continue; // a module's own const: not importable to compare
        const v = (m[1] ? -1 : 1) * Number(m[2]);
        checked++;
        if (v !== values.get(name)) wrong.push(`${path.relative(out, f)}: ${name} = ${v}`);
      }
    }
    expect(wrong).toEqual([]);
    // The walker alone names a few dozen; far fewer means the transform did not run.
    expect(checked).toBeGreaterThan(200);
  });

  it("no exported numeric constant is read through an exports object", async () => {
    const values = await exportedNumbers();
    const reads: string[] = [];
    for (const f of files(out, ".js")) {
      // Re-exports stay getters (`Object.defineProperty(exports, "X", { get ... })`).
      const js = readFileSync(f, "utf8")
        .split("\n")
        .filter((l) => !l.startsWith("Object.defineProperty(exports, "))
        .join("\n");
      for (const m of js.matchAll(/\b(exports|\w+_1)\.([A-Z][A-Z0-9_]*)\b(\s*=(?!=))?/g)) {
        if (m[3] !== undefined || !values.has(m[2]!)) continue; // a definition, or not a number
        reads.push(`${path.relative(out, f)}: ${m[0]}`);
      }
    }
    expect(reads).toEqual([]);
  });
});
