/**
 * Runs converted cells in this process. Takes the place of tslab's executor (whose converter it
 * still uses) for three things tslab's cannot do from outside:
 * - each cell runs as its own script, `<cell N>`, with its source map kept, so tracebacks name
 *   cell lines, also for a function of an earlier cell called later (cellmap.ts);
 * - a cell that stops early keeps the declarations whose initialisers ran (decls.ts);
 * - the kernel learns which phase a cell is in: compiling, synchronous, awaiting (the interrupt
 *   watchdog needs it).
 *
 * Values live in one `exports` object shared by all cells: the compiled cell stores each
 * top-level name there, and reads earlier cells' names from it (tslab's converter rewrites them).
 */
import Module, { createRequire } from "node:module";
import { dirname, extname, join, resolve } from "node:path";
import vm from "node:vm";
import type { Converter, ConvertResult } from "tslab/dist/converter";
import { getCodeMetadata } from "tslab/dist/metadata";
import { cellFilename, mapCell, type RanCell } from "./cellmap";
import { typescript } from "./converter";
import { declaredValueNames, withoutDeclarations } from "./decls";

/** Outcome of running one cell. */
export type RunResult =
  | { kind: "ok"; value?: { value: unknown } }
  | { kind: "compile"; result: ConvertResult }
  | {
      kind: "thrown";
      thrown: unknown;
      /** Names the cell declared and defined before it stopped: usable in later cells. */
      kept: string[];
      /** Names the cell declared but never reached: not defined afterwards. */
      lost: string[];
    };

/** Message of the error an awaiting cell is rejected with on interrupt. */
export const ASYNC_INTERRUPT_MESSAGE = "Interrupted asynchronously";

/** Where the running cell's script finds its `exports` and `require` (set before each run). */
const CELL_SCOPE = 'globalThis[Symbol.for("mmulab.kernel.cell")]';
const CELL_SCOPE_KEY = Symbol.for("mmulab.kernel.cell");

/**
 * TypeScript's CommonJS prologue `exports.a = exports.b = void 0;`: it would blank every name
 * the cell declares before any of them runs, so a cell that fails would wipe earlier values.
 * Replaced by an empty line (line numbers stay).
 */
const EXPORTS_PROLOGUE = /^exports\.[\w$]+ = (?:exports\.[\w$]+ = )*void 0;$/gm;

/**
 * Where a cell is, for the interrupt watchdog: compiling (the TypeScript transpile, before Node's
 * breakOnSigint is armed), running its synchronous part (under breakOnSigint), awaiting (its
 * asynchronous part), or done.
 */
export type CellPhase = "compile" | "sync" | "async" | "idle";

/** How long one run of {@link absorbStaleSigints} gives Node's SIGINT watchdog thread to wake. */
const ABSORB_MS = 30;

/**
 * Takes SIGINTs left over from earlier cells before a cell runs. A SIGINT that reaches the
 * process near the end of a run under breakOnSigint, before Node's SIGINT watchdog thread has woken
 * for it, stays counted in that thread's semaphore when the run ends, and the next run under
 * breakOnSigint, which would be the next cell, is stopped by it as soon as the thread wakes
 * (`SigintWatchdogHelper::Stop` and `RunSigintWatchdog`, node_watchdog.cc); on a loaded machine the
 * thread is often late. Runs that spin for {@link ABSORB_MS} under breakOnSigint take such counts
 * instead, until one ends without being stopped. Only done when a SIGINT came since the last time,
 * so an ordinary cell pays nothing.
 */
function absorbStaleSigints(): void {
  for (let i = 0; i < 4; i++) {
    try {
      vm.runInThisContext(`{ const end = Date.now() + ${ABSORB_MS}; while (Date.now() < end); }`, {
        breakOnSigint: true,
      });
      return;
    } catch {
      // A stale SIGINT, meant for a cell that has ended: taken; look for another.
    }
  }
}

/** Hooks of a {@link CellExecutor}. */
export interface ExecutorHooks {
  /** Called as a cell moves from phase to phase: compile, then sync, maybe async, then idle. */
  onPhase?(phase: CellPhase): void;
  /** How many SIGINTs the process has had so far (counted outside the main thread). */
  sigints?(): number;
}

interface LoadableModule {
  filename: string;
  paths: string[];
  exports: unknown;
  require(id: string): unknown;
  _compile(code: string, filename: string): void;
}

interface ModuleStatics {
  _nodeModulePaths(dir: string): string[];
}

export class CellExecutor {
  /** Declarations of every name defined so far (TypeScript text the converter prepends). */
  private decls = "";
  private readonly values: Record<string, unknown> = {};
  private readonly exports: object;
  /** Names stored into `exports` by the running cell (undefined between cells). */
  private assigned: Set<string> | undefined;
  /** Local .ts modules the cells import, compiled by the converter, by absolute .js path. */
  private readonly sideOutputs = new Map<string, string>();
  private readonly sideModules = new Map<string, LoadableModule>();
  private readonly cellRequire: NodeJS.Require;
  private runs = 0;
  /** Every cell run so far by its script number, for tracebacks. */
  readonly cells = new Map<number, RanCell>();
  private rejectAwaiting: ((reason: unknown) => void) | undefined;
  /** The SIGINT count when stale SIGINTs were last absorbed. */
  private sigintsAbsorbed = 0;
  private readonly ts = typescript();

  constructor(
    rootDir: string,
    private readonly converter: Converter,
    private readonly hooks: ExecutorHooks = {},
  ) {
    const values = this.values;
    const record = (prop: string | symbol) => {
      if (typeof prop === "string") this.assigned?.add(prop);
    };
    this.exports = new Proxy(values, {
      // TypeScript re-exports an import as a getter; the value is read now so that a later cell
      // may bind the name to something else.
      defineProperty: (_target, prop, attrs) => {
        if (prop === "__esModule") return true;
        values[prop as string] = attrs.get ? attrs.get() : attrs.value;
        record(prop);
        return true;
      },
      set: (_target, prop, value) => {
        values[prop as string] = value;
        record(prop);
        return true;
      },
    });
    this.cellRequire = this.requireFrom(rootDir, createRequire(join(rootDir, "<notebook>.js")));
  }

  /** A `require` that loads the cells' local modules from the converter's output first. */
  private requireFrom(dir: string, base: NodeJS.Require): NodeJS.Require {
    const req = (id: string): unknown => {
      // tslab's own API, as tslab's executor offers it to cells.
      if (id === "tslab") return require("tslab");
      if (id.startsWith(".")) {
        const local = this.loadSideModule(resolve(dir, id));
        if (local !== undefined) return local.exports;
      }
      return base(id);
    };
    return Object.assign(req, {
      resolve: base.resolve,
      cache: base.cache,
      extensions: base.extensions,
      main: base.main,
    }) as NodeJS.Require;
  }

  private loadSideModule(path: string): LoadableModule | undefined {
    const file = extname(path) === "" ? `${path}.js` : path;
    const cached = this.sideModules.get(file);
    if (cached !== undefined) return cached;
    const code = this.sideOutputs.get(file);
    if (code === undefined) return undefined;
    const mod = new Module(file) as unknown as LoadableModule;
    mod.filename = file;
    mod.paths = (Module as unknown as ModuleStatics)._nodeModulePaths(dirname(file));
    mod.require = this.requireFrom(dirname(file), createRequire(file));
    // Cached before it runs, as Node does, so import cycles end.
    this.sideModules.set(file, mod);
    mod._compile(code, file);
    return mod;
  }

  /** Compiles and runs `src`; `label` names the cell in tracebacks (its execution count). */
  async run(src: string, label: string): Promise<RunResult> {
    const sigints = this.hooks.sigints?.() ?? 0;
    if (sigints !== this.sigintsAbsorbed) {
      absorbStaleSigints();
      this.sigintsAbsorbed = sigints;
    }
    this.hooks.onPhase?.("compile");
    try {
      return await this.compileAndRun(src, label);
    } finally {
      this.hooks.onPhase?.("idle");
    }
  }

  private async compileAndRun(src: string, label: string): Promise<RunResult> {
    const meta = getCodeMetadata(src);
    if (meta.module !== undefined) {
      // tslab's `//%module: name` cell: registers a module later cells import as "./name".
      const diagnostics = this.converter.addModule(meta.module, src, meta);
      return diagnostics.length > 0 ? { kind: "compile", result: { diagnostics } } : { kind: "ok" };
    }
    const converted = this.converter.convert(this.decls, src);
    for (const side of converted.sideOutputs ?? []) {
      this.sideModules.delete(side.path);
      this.sideOutputs.set(side.path, side.data);
    }
    if (converted.diagnostics.length > 0) return { kind: "compile", result: converted };
    if (!converted.output) {
      this.decls = converted.declOutput ?? "";
      return { kind: "ok" };
    }
    const map = mapCell(converted.output.replace(EXPORTS_PROLOGUE, ""));
    const run = ++this.runs;
    this.cells.set(run, { label, map, wrapperLines: 1, codeLines: map.code.split("\n").length });
    const fn = converted.hasToplevelAwait ? "async function" : "function";
    const script = `(${fn} (exports, require) {\n${map.code}\n}).call(undefined, ${CELL_SCOPE}.exports, ${CELL_SCOPE}.require)`;
    const assigned = new Set<string>();
    this.assigned = assigned;
    (globalThis as Record<symbol, unknown>)[CELL_SCOPE_KEY] = {
      exports: this.exports,
      require: this.cellRequire,
    };
    try {
      // breakOnSigint: SIGINT stops the synchronous part (Node's watchdog thread). A SIGINT that
      // came while the cell compiled is lost when breakOnSigint is armed (node:vm takes the
      // process's SIGINT listeners off for the run, and the signal pending for them goes): the
      // interrupt watchdog sends it again (interrupt.ts).
      this.hooks.onPhase?.("sync");
      const result = vm.runInThisContext(script, {
        filename: cellFilename(run),
        breakOnSigint: true,
      });
      if (converted.hasToplevelAwait) await this.awaitCell(result as Promise<unknown>);
    } catch (thrown) {
      return this.stopped(src, converted, assigned, thrown);
    } finally {
      this.assigned = undefined;
    }
    this.decls = converted.declOutput ?? "";
    const last = converted.lastExpressionVar;
    if (last === undefined || !(last in this.values)) return { kind: "ok" };
    const value = this.values[last];
    delete this.values[last];
    // As tslab: undefined and null are not shown.
    return value == null ? { kind: "ok" } : { kind: "ok", value: { value } };
  }

  /** Declarations after a cell stopped early: the names it stored stay, the others go. */
  private stopped(
    src: string,
    converted: ConvertResult,
    assigned: ReadonlySet<string>,
    thrown: unknown,
  ): RunResult {
    const declared = declaredValueNames(this.ts, src);
    const lost = declared.filter((n) => !assigned.has(n));
    // A name an earlier cell defined and this one redeclared without reaching it: the converter
    // already replaced its declaration, so its old value goes too (no untyped leftovers).
    for (const name of lost) delete this.values[name];
    if (converted.lastExpressionVar) delete this.values[converted.lastExpressionVar];
    this.decls = withoutDeclarations(this.ts, converted.declOutput ?? this.decls, new Set(lost));
    return { kind: "thrown", thrown, kept: declared.filter((n) => assigned.has(n)), lost };
  }

  private async awaitCell(promise: Promise<unknown>): Promise<void> {
    this.hooks.onPhase?.("async");
    try {
      await new Promise((resolve, reject) => {
        this.rejectAwaiting = reject;
        promise.then(resolve, reject);
      });
    } finally {
      this.rejectAwaiting = undefined;
    }
  }

  /**
   * Stops waiting for an awaiting cell: its run ends as interrupted. The cell's own promise is
   * abandoned (JavaScript cannot cancel it). Returns whether a cell was awaiting.
   */
  interrupt(): boolean {
    const reject = this.rejectAwaiting;
    if (reject === undefined) return false;
    reject(new Error(ASYNC_INTERRUPT_MESSAGE));
    return true;
  }

  inspect(src: string, position: number) {
    return this.converter.inspect(this.decls, src, position);
  }

  complete(src: string, position: number) {
    return this.converter.complete(this.decls, src, position);
  }

  /** Forgets every declaration and value. */
  reset(): void {
    this.decls = "";
    for (const name of Object.keys(this.values)) delete this.values[name];
  }

  close(): void {
    this.converter.close();
  }
}
