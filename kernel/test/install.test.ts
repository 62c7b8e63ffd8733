/** `mmulab-kernel install --prefix P`: kernelspec with absolute argv, and the lab extension copy. */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { expect, it } from "vitest";
import { KERNEL_ROOT, REPO_ROOT } from "./support";

it("writes kernels/mmulab/kernel.json with an absolute argv and copies the built lab extension", () => {
  const prefix = mkdtempSync(join(tmpdir(), "mmulab-install-"));
  const r = spawnSync(
    process.execPath,
    [join(KERNEL_ROOT, "bin", "mmulab-kernel.js"), "install", "--prefix", prefix],
    {
      encoding: "utf8",
    },
  );
  expect(r.status, r.stderr).toBe(0);
  const data = join(prefix, "share", "jupyter");
  const spec = JSON.parse(readFileSync(join(data, "kernels", "mmulab", "kernel.json"), "utf8"));
  expect(spec.display_name).toBe("TypeScript (mmulab)");
  expect(spec.language).toBe("typescript");
  expect(spec.interrupt_mode).toBe("signal");
  expect(spec.argv.slice(2)).toEqual(["kernel", "--connection-file", "{connection_file}"]);
  expect(isAbsolute(spec.argv[0]) && existsSync(spec.argv[0])).toBe(true);
  expect(isAbsolute(spec.argv[1]) && existsSync(spec.argv[1])).toBe(true);
  expect(spec.argv.join(" ")).not.toMatch(/python/);

  const built = join(REPO_ROOT, "lab-extension", "labextension");
  const copied = join(data, "labextensions", "@mmulab", "lab-extension");
  if (existsSync(join(built, "package.json"))) {
    expect(readdirSync(copied).sort()).toEqual(readdirSync(built).sort());
    expect(readFileSync(join(copied, "package.json"), "utf8")).toBe(
      readFileSync(join(built, "package.json"), "utf8"),
    );
  } else {
    console.log(
      "lab extension not built (lab-extension/labextension missing): only the kernelspec was checked",
    );
    expect(existsSync(copied)).toBe(false);
  }
});

it("rejects unknown arguments with usage", () => {
  const r = spawnSync(
    process.execPath,
    [join(KERNEL_ROOT, "bin", "mmulab-kernel.js"), "install", "--sys-prefix"],
    {
      encoding: "utf8",
    },
  );
  expect(r.status).toBe(2);
  expect(r.stderr).toContain('unknown argument "--sys-prefix"');
  expect(r.stderr).toContain("usage:");
});

it("resolves @mmulab/core with full types from notebooks/", () => {
  // The kernel runs in the notebook's folder; cells compile against core's .d.ts.
  const script = `
    const { Engine } = require(${JSON.stringify(join(KERNEL_ROOT, "dist", "engine.js"))});
    const e = new Engine(process.cwd());
    (async () => {
      const ok = await e.execute('import { createVm } from "@mmulab/core";\\nimport { display } from "@mmulab/kernel";\\ntypeof createVm');
      const typed = await e.execute("const notANumber: number = createVm;");
      console.log(JSON.stringify({ ok, typed }));
      e.close();
    })();`;
  const r = spawnSync(process.execPath, ["-e", script], {
    cwd: join(REPO_ROOT, "notebooks"),
    encoding: "utf8",
  });
  expect(r.status, r.stderr).toBe(0);
  const { ok, typed } = JSON.parse(r.stdout.trim().split("\n").pop()!);
  expect(ok).toEqual({ ok: true, hasValue: true, value: "function" });
  // A type error proves the declarations were read (not `any`).
  expect(typed.ok).toBe(false);
  expect(typed.error.ename).toBe("TSCompileError");
  expect(typed.error.evalue).toMatch(
    /^1:7 - error TS2322: Type '\(.*\) => \w+' is not assignable to type 'number'/,
  );
});
