/**
 * tslab compiles notebook cells with its bundled TypeScript 5.0 to CommonJS; the published
 * declarations (dist/cjs/*.d.ts) must type-check there. Builds dist first, then compiles a
 * consumer snippet importing "@mmulab/core" with TS 5.0 and runs the emitted CommonJS.
 *
 * Typical failure: "Type 'Uint32Array' is not generic (dist/cjs/x.d.ts)". TS 5.9 declares an
 * un-annotated `field = new Uint32Array(n)` as `Uint32Array<ArrayBuffer>`, which TS 5.0's lib
 * rejects. Fix: annotate public fields, `field: Uint32Array = new Uint32Array(n)`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

const require = createRequire(__filename);
const coreDir = join(__dirname, "..");
const repoRoot = join(coreDir, "..");

const SNIPPET = `
import { createVm, GuestPageTableBuilder, InvalidArgumentError, type AccessResult, type ReadResult, type WalkResult } from "@mmulab/core";
const vm = createVm({ maxPhysAddrBits: 46 });
vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 1 << 30, flags: 0 });
const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 0x100000, poolSize: 0x100000 });
b.map(0x400000, 0x200000, 0x1000, { writable: true, user: true });
vm.guestWrite64(0x200000, 0x1122334455667788n);
const vcpu = vm.createVcpu();
vcpu.setSregs(b.sregs({ nx: true }));
vcpu.setPkru(0);
vcpu.setRflags(2);
const r: AccessResult = vcpu.access(0x400000n, { write: true, user: true });
// Results read without narrowing first, as notebook cells do (tslab does not check strictly).
const loaded: ReadResult = vcpu.read(0x400000, { size: 2 });
const stored = vcpu.write(0x400008, 7n, { size: 1 }).gpa;
const loadedValue = loaded.value === undefined ? "none" : loaded.value.toString(16);
const w: WalkResult = vcpu.walk(0x400000);
let rejected = false;
try { vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x1000, memorySize: 4096, flags: 0 }); }
catch (e) { rejected = e instanceof InvalidArgumentError; }
const bundle = (w as unknown as Record<symbol, () => Record<string, unknown>>)[Symbol.for("Jupyter.display")]();
export const out = { r, levels: w.levels.length, rejected, mimes: Object.keys(bundle).sort(), value: vm.readPhys64(0x200000).toString(16), loadedValue, stored, errorCode: r.errorCode };
`;

describe("TypeScript 5.0 consumer (tslab's compiler)", () => {
  let ts: typeof import("typescript");
  beforeAll(() => {
    execFileSync(process.execPath, [join(coreDir, "scripts/build.mjs")], { stdio: "pipe" });
    const tslabTs = require.resolve("@tslab/typescript-for-tslab", {
      paths: [require.resolve("tslab/package.json", { paths: [repoRoot] })],
    });
    ts = require(tslabTs);
  }, 120_000);

  it("bundles TypeScript 5.0", () => {
    expect(ts.version).toMatch(/^5\.0\./);
  });

  it.each([true, false])(
    "compiles a consumer of @mmulab/core against dist/cjs/*.d.ts with no diagnostics (strict: %s), and the CommonJS runs",
    (strict) => {
      const dir = mkdtempSync(join(tmpdir(), "mmulab-ts50-"));
      const file = join(dir, "consumer.ts");
      writeFileSync(file, SNIPPET);
      const options: import("typescript").CompilerOptions = {
        module: ts.ModuleKind.CommonJS,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        target: ts.ScriptTarget.ES2020,
        strict,
        esModuleInterop: true,
        skipLibCheck: false,
        types: [],
        outDir: dir,
        baseUrl: dir,
        paths: { "@mmulab/core": [join(coreDir, "dist/cjs/index.d.ts")] },
      };
      const host = ts.createCompilerHost(options);
      const program = ts.createProgram([file], options, host);
      const emit = program.emit();
      const diags = ts.getPreEmitDiagnostics(program).concat(emit.diagnostics);
      const text = diags.map(
        (d) =>
          ts.flattenDiagnosticMessageText(d.messageText, "\n") +
          (d.file ? ` (${d.file.fileName})` : ""),
      );
      expect(text).toEqual([]);
      // The declarations came from dist, not from src.
      expect(program.getSourceFiles().some((f) => f.fileName.endsWith("dist/cjs/vcpu.d.ts"))).toBe(
        true,
      );
      const js = readFileSync(join(dir, "consumer.js"), "utf8").replace(
        'require("@mmulab/core")',
        `require(${JSON.stringify(join(coreDir, "dist/cjs/index.js"))})`,
      );
      const mod: { exports: Record<string, unknown> } = { exports: {} };
      new Function("require", "module", "exports", js)(
        createRequire(join(dirname(file), "x.js")),
        mod,
        mod.exports,
      );
      expect(mod.exports.out).toEqual({
        r: { fault: false, gpa: 0x200000 },
        levels: 4,
        rejected: true,
        mimes: ["application/vnd.mmulab.walk+json", "text/html", "text/plain"],
        value: "1122334455667788",
        // The guest's little-endian u16 at gva 0x400000 (gpa 0x200000): the low two bytes.
        loadedValue: "7788",
        stored: 0x200008,
        errorCode: undefined,
      });
    },
    60_000,
  );
});
