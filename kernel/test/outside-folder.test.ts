/**
 * A notebook in a folder outside the repository (under os.tmpdir(), no node_modules above it that
 * holds mmulab) executed by the real `jupyter nbconvert --execute` with our kernel: it imports
 * @mmulab/core (and a subpath) and @mmulab/kernel from the kernel's installation, draws a
 * page-table tree and a plotly figure, and still imports a package installed next to it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, expect, it } from "vitest";
import { codeCell, executeNotebook, type NbOutput, REPO_ROOT } from "./support";

// The contract with the lab extension and with plotly's own JupyterLab renderer.
const TREE_MIME = "application/vnd.mmulab.pagetable+json";
const PLOTLY_MIME = "application/vnd.plotly.v1+json";

const code = codeCell;

const CELLS = [
  code(
    [
      'import { createVm, GuestPageTableBuilder } from "@mmulab/core";',
      'import { display, plotSpteLevels, SpteSeries } from "@mmulab/kernel";',
      "const MiB = 2 ** 20;",
      'const vm = createVm({ mmu: "tdp" });',
      'vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0, backing: "4k" });',
      'const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: MiB });',
      "tables.map(0x40000000, 16 * MiB, 64 * 1024, { user: true, writable: true });",
      "const vcpu = vm.createVcpu();",
      "vcpu.setSregs({ ...tables.sregs({ nx: true }), cpl: 3 });",
      "const series = new SpteSeries();",
      'series.record("boot", vm.stats);',
      "for (let gva = 0x40000000; gva < 0x40000000 + 64 * 1024; gva += 4096) vcpu.access(gva, { user: true });",
      'series.record("touched", vm.stats);',
    ].join("\n"),
  ),
  code("display(tables.snapshot());"),
  code('plotSpteLevels(series, "outside the repository");'),
  // A subpath of @mmulab/core, typed: the constant's literal type is checked at compile time.
  code(
    'import { PAGETABLE_MIME } from "@mmulab/core/display";\nconst m: "application/vnd.mmulab.pagetable+json" = PAGETABLE_MIME;\nm',
  ),
  // A JSON subpath (exports "./package.json"): TypeScript must see it as a library file, not as a
  // source outside the notebook's folder (TS6059).
  code('import corePkg from "@mmulab/core/package.json";\ncorePkg.name + "@" + corePkg.version'),
  // A package installed next to the notebook still resolves from the notebook's folder.
  code('import { twice } from "tiny-local-pkg";\ntwice(21)'),
];

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

it("runs a notebook outside the repository: mmulab from the kernel, other packages from the notebook's folder", () => {
  const dir = mkdtempSync(join(tmpdir(), "mmulab-outside-"));
  created.push(dir);
  // Really outside: no path from the folder up to / passes through the repository.
  expect(relative(REPO_ROOT, dir).startsWith("..")).toBe(true);

  const pkg = join(dir, "node_modules", "tiny-local-pkg");
  mkdirSync(pkg, { recursive: true });
  writeFileSync(
    join(pkg, "package.json"),
    JSON.stringify({ name: "tiny-local-pkg", version: "1.0.0", main: "index.js" }),
  );
  writeFileSync(join(pkg, "index.js"), "exports.twice = (n) => 2 * n;\n");
  writeFileSync(join(pkg, "index.d.ts"), "export declare function twice(n: number): number;\n");
  // A stale copy of @mmulab/core next to the notebook: the kernel's own copy must still win.
  const stale = join(dir, "node_modules", "@mmulab", "core");
  mkdirSync(stale, { recursive: true });
  writeFileSync(
    join(stale, "package.json"),
    JSON.stringify({
      name: "@mmulab/core",
      version: "0.0.0",
      main: "index.js",
      types: "index.d.ts",
    }),
  );
  writeFileSync(join(stale, "index.js"), 'throw new Error("stale @mmulab/core was loaded");\n');
  writeFileSync(join(stale, "index.d.ts"), "export declare const stale: true;\n");

  const { result: r, cells } = executeNotebook(dir, CELLS);
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  const outputs = cells!.map((c) => c.outputs ?? []);
  const errors = outputs.flat().filter((o) => o.output_type === "error");
  expect(errors.map((e) => `${e.ename}: ${e.evalue}`)).toEqual([]);

  const mimes = (cell: NbOutput[]) => cell.flatMap((o) => Object.keys(o.data ?? {}));
  expect(mimes(outputs[1]!)).toContain(TREE_MIME);
  expect(mimes(outputs[2]!)).toContain(PLOTLY_MIME);
  // The tree holds the guest's tables: its payload names the 4-level mode it was built with.
  const tree = outputs[1]!.find((o) => o.data?.[TREE_MIME])!.data![TREE_MIME] as object;
  expect(JSON.stringify(tree)).toContain("4-level");
  const plain = (cell: NbOutput[]) => {
    const t = cell.find((o) => o.output_type === "execute_result")?.data?.["text/plain"];
    return Array.isArray(t) ? t.join("") : t;
  };
  expect(plain(outputs[3]!)).toBe(TREE_MIME);
  // The kernel's core (not the stale 0.0.0 copy next to the notebook).
  const core = JSON.parse(readFileSync(join(REPO_ROOT, "core", "package.json"), "utf8"));
  expect(plain(outputs[4]!)).toBe(`@mmulab/core@${core.version}`);
  expect(plain(outputs[5]!)).toBe("42");
});
