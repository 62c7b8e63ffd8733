/**
 * tslab's converter (cell → CommonJS, quick info, completion) loaded as a private copy whose
 * TypeScript is wrapped, so the kernel can add compiler options tslab does not expose.
 *
 * tslab builds its compiler host inside createConverter from a fixed options object, and the
 * TypeScript module's exports are non-configurable getters, so neither can be patched from
 * outside. Loading converter.js through a Module whose `require` hands it a Proxy of TypeScript
 * changes only what this copy sees; the rest of tslab and the process keep the real module.
 */
import Module, { createRequire } from "node:module";
import type { Converter, ConverterOptions } from "tslab/dist/converter";
import * as converterTypes from "tslab/dist/converter";
import { ownPackagePaths } from "./packages";

type TypeScript = typeof import("@tslab/typescript-for-tslab");
type ConverterModule = typeof converterTypes;

const TS_MODULE = "@tslab/typescript-for-tslab";

/** The parts of a CommonJS Module instance used here (load is not in @types/node). */
interface LoadableModule {
  require(id: string): unknown;
  load(filename: string): void;
  exports: unknown;
}

let loaded: ConverterModule | undefined;

/** The private converter module (loaded once: its TypeScript wrapper reads options per call). */
function converterModule(): ConverterModule {
  if (loaded !== undefined) return loaded;
  const file = require.resolve("tslab/dist/converter");
  const ts = typescript();
  const wrapped = new Proxy(ts, {
    get(target, key) {
      if (key === "createWatchCompilerHost") return createWatchCompilerHost(target);
      if (key === "transpileModule") return transpileModule(target);
      return Reflect.get(target, key);
    },
  });
  const mod = new Module(file) as unknown as LoadableModule;
  const plainRequire = mod.require.bind(mod);
  // The compiled module's `require` calls mod.require, so overriding it on the instance suffices.
  mod.require = (id: string) => (id === TS_MODULE ? wrapped : plainRequire(id));
  mod.load(file);
  loaded = mod.exports as ConverterModule;
  return loaded;
}

/**
 * Wraps createWatchCompilerHost (called once per converter) to add the kernel's options:
 * `paths` so that `@mmulab/core` and `@mmulab/kernel` resolve to the kernel's own copies with
 * their types, wherever the notebook is (`paths` is tried before node_modules and keeps
 * TypeScript's resolution cache, unlike a custom resolver); and an inline source map, because
 * tslab's emit callback keeps only .js outputs (a separate .map file would be dropped).
 */
function createWatchCompilerHost(ts: TypeScript): TypeScript["createWatchCompilerHost"] {
  return ((rootFiles: string[], options: Record<string, unknown>, ...rest: unknown[]) => {
    const extended = {
      ...options,
      paths: { ...(options.paths as object | undefined), ...ownPackagePaths() },
      // `paths` without baseUrl are relative to this; ours are absolute, but TypeScript asks.
      // (baseUrl itself would also make bare names resolve against the folder: not wanted.)
      pathsBasePath: ts.sys.getCurrentDirectory(),
      inlineSourceMap: true,
    };
    return (ts.createWatchCompilerHost as (...args: unknown[]) => unknown)(
      rootFiles,
      extended,
      ...rest,
    );
  }) as TypeScript["createWatchCompilerHost"];
}

/**
 * Wraps transpileModule, which tslab uses only to turn its ES module output into CommonJS, to
 * append that step's source map inline too. The input's own map comment stays in the text, so a
 * converted cell ends with two maps: cell → ES module first, ES module → CommonJS last
 * (cellmap.ts composes them).
 */
function transpileModule(ts: TypeScript): TypeScript["transpileModule"] {
  return (input, options) =>
    ts.transpileModule(input, {
      ...options,
      compilerOptions: { ...options.compilerOptions, inlineSourceMap: true },
    });
}

/** The TypeScript module of tslab's converter (the compiler cells are checked with). */
export function typescript(): TypeScript {
  return createRequire(require.resolve("tslab/dist/converter"))(TS_MODULE) as TypeScript;
}

/** A tslab converter that resolves the kernel's own packages from the kernel's installation. */
export function createCellConverter(options: ConverterOptions): Converter {
  return converterModule().createConverter(options);
}

/** tslab's completeness check (needs no compiler host, so the shared module serves). */
export const isCompleteCode = converterTypes.isCompleteCode;
