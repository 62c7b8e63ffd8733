/**
 * The packages a notebook always gets from the kernel's own installation: `@mmulab/core` and
 * `@mmulab/kernel`, whatever folder the notebook is in. Every other import resolves from the
 * notebook's folder upward, as in Node.
 *
 * Types and run time are hooked apart but follow the same rule: TypeScript gets `paths` entries
 * (see converter.ts), `require` gets {@link hookOwnPackageRequire}. Both hold for the whole kernel
 * process, so a notebook's own helper modules and the packages next to it that import mmulab see
 * the same copy as the kernel (one copy also means one display session, one set of classes).
 */
import { existsSync, realpathSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";

/** Folder of @mmulab/kernel (holds package.json and dist/). */
export const KERNEL_PACKAGE_DIR = resolve(__dirname, "..");

/** The names hooked: the package itself or one of its subpaths. */
const OWN_PACKAGE = /^@mmulab\/(core|kernel)(\/|$)/;

/** True when `request` names @mmulab/core or @mmulab/kernel (or a subpath of either). */
export function isOwnPackage(request: string): boolean {
  return OWN_PACKAGE.test(request);
}

/** Folder of the @mmulab/core the kernel itself runs with (resolved as Node would from the kernel). */
export function coreDir(): string {
  const fromKernel = createRequire(join(KERNEL_PACKAGE_DIR, "package.json"));
  return dirname(fromKernel.resolve("@mmulab/core/package.json"));
}

/**
 * Where Node's lookup from the kernel's package finds `name`, as a path through node_modules (not
 * the symlink's target): TypeScript treats a module whose path has a node_modules segment as an
 * external library, and only those may lie outside the notebook's folder (a JSON import of
 * another path fails with TS6059). Undefined when no node_modules folder on the way holds `name`.
 */
function installedDir(name: string): string | undefined {
  const lookup = (Module as unknown as ModuleInternals)._nodeModulePaths(KERNEL_PACKAGE_DIR);
  return lookup.map((dir) => join(dir, name)).find((dir) => existsSync(join(dir, "package.json")));
}

/** `installed` when it is the same folder as `real` (through a link), else `real`. */
function sameOr(installed: string | undefined, real: string): string {
  return installed !== undefined && realpathSync(installed) === realpathSync(real)
    ? installed
    : real;
}

/**
 * TypeScript `paths` mapping both packages (and their subpaths) to the kernel's copies. Paths are
 * tried before node_modules, so they win over a copy next to the notebook. Under moduleResolution
 * node10, which tslab uses, a subpath such as `@mmulab/core/display` is found through the stub
 * folder core ships for resolvers that ignore package.json `exports`.
 */
export function ownPackagePaths(): Record<string, string[]> {
  const core = sameOr(installedDir("@mmulab/core"), coreDir());
  const kernel = sameOr(installedDir("@mmulab/kernel"), KERNEL_PACKAGE_DIR);
  return {
    "@mmulab/core": [core],
    "@mmulab/core/*": [join(core, "*")],
    "@mmulab/kernel": [kernel],
    "@mmulab/kernel/*": [join(kernel, "*")],
  };
}

interface ModuleInternals {
  _resolveFilename(request: string, parent: unknown, isMain: boolean, options?: unknown): string;
  _nodeModulePaths(dir: string): string[];
}

let hooked = false;

/**
 * Makes `require("@mmulab/core…")` and `require("@mmulab/kernel…")` resolve as if called from
 * the kernel's package, for every module of this process; other names are left alone. Idempotent.
 *
 * Node 20 has no public resolve hook for CommonJS (module.registerHooks came in 22.15), so this
 * wraps Module._resolveFilename, as tslab's executor itself builds on Module internals.
 */
export function hookOwnPackageRequire(): void {
  if (hooked) return;
  hooked = true;
  const internals = Module as unknown as ModuleInternals;
  const original = internals._resolveFilename;
  // A module standing at the kernel's package.json: resolution starts in its node_modules chain.
  const anchorFile = join(KERNEL_PACKAGE_DIR, "package.json");
  const anchor = new Module(anchorFile);
  anchor.filename = anchorFile;
  anchor.paths = internals._nodeModulePaths(KERNEL_PACKAGE_DIR);
  internals._resolveFilename = function (request, parent, isMain, options) {
    if (typeof request === "string" && isOwnPackage(request) && parent !== anchor) {
      // The kernel package itself has no `exports` to self-reference; its own folder is the answer.
      const kernelRest = /^@mmulab\/kernel(\/.*)?$/.exec(request);
      const target = kernelRest ? KERNEL_PACKAGE_DIR + (kernelRest[1] ?? "") : request;
      return original.call(this, target, anchor, isMain, undefined);
    }
    return original.call(this, request, parent, isMain, options);
  };
}
