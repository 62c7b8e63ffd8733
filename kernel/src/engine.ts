/**
 * The TypeScript engine: tslab's converter (TypeScript → CommonJS, completion, quick info) and
 * executor (runs cells in this process, keeps declarations between cells), wrapped so that the
 * outcome of a cell is a value — last expression, compile diagnostics or thrown error — instead
 * of text tslab would print to the console.
 */
import { inspect as nodeInspect, types } from "node:util";
import type { Converter, ConvertResult } from "tslab/dist/converter";
import { createExecutor, type Executor } from "tslab/dist/executor";
import { createCellConverter, isCompleteCode } from "./converter";
import { hookOwnPackageRequire } from "./packages";
import { type RenderedQuickInfo, renderQuickInfo } from "./quickinfo";

/** The Jupyter error triple. */
export interface CellError {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** Outcome of one cell. */
export type CellOutcome =
  | { ok: true; hasValue: false }
  | { ok: true; hasValue: true; value: unknown }
  | { ok: false; error: CellError; interrupted: boolean };

/** Error name reported for TypeScript diagnostics. */
export const COMPILE_ERROR = "TSCompileError";
/** Error name reported for an interrupted cell. */
export const INTERRUPTED = "Interrupted";

/**
 * Messages of interrupted execution: Node's vm breakOnSigint ("Script execution was interrupted by
 * `SIGINT`" in Node 20, "Script execution interrupted." earlier) and tslab's async interrupt.
 */
const INTERRUPT_MESSAGE = /^Script execution (was )?interrupted|^Interrupted asynchronously$/;

/** Frames of the kernel's own machinery, dropped from tracebacks so the cell's frames stand out. */
const INTERNAL_FRAME =
  /node:internal|[\\/]tslab[\\/]dist[\\/]|[\\/]kernel[\\/]dist[\\/]|^\s*at new Promise \(<anonymous>\)/;

/** Turns anything a cell threw into the Jupyter error triple. */
export function toCellError(thrown: unknown): { error: CellError; interrupted: boolean } {
  // isNativeError also holds for errors of other realms (vm contexts, test runners).
  if (thrown instanceof Error || types.isNativeError(thrown)) {
    if (INTERRUPT_MESSAGE.test(thrown.message)) {
      return {
        error: {
          ename: INTERRUPTED,
          evalue: "execution interrupted (SIGINT)",
          traceback: [`${INTERRUPTED}: execution interrupted (SIGINT)`],
        },
        interrupted: true,
      };
    }
    const stack = (thrown.stack ?? `${thrown.name}: ${thrown.message}`).split("\n");
    // Node prefixes errors thrown at a script's top level with "file:line / source / ^ / blank";
    // the traceback starts at the "Name: message" line.
    const head = stack.findIndex((line) => line.startsWith(`${thrown.name}`));
    const traceback = stack
      .slice(Math.max(0, head))
      .filter((line, i) => i === 0 || !INTERNAL_FRAME.test(line));
    return {
      error: { ename: thrown.name || "Error", evalue: thrown.message, traceback },
      interrupted: false,
    };
  }
  const evalue = nodeInspect(thrown, { depth: 2 });
  return {
    error: { ename: "Thrown", evalue, traceback: [`uncaught value thrown: ${evalue}`] },
    interrupted: false,
  };
}

/**
 * Formats TypeScript diagnostics with 1-based line:column in the cell. The evalue is the first
 * diagnostic; the traceback lists each one followed by its source line and a caret under the
 * column (diagnostics in other files, e.g. a module the cell imports, have no source line here).
 */
export function diagnosticsError(result: ConvertResult, code = ""): CellError {
  const source = code.split("\n");
  const heads: string[] = [];
  const traceback: string[] = [];
  for (const d of result.diagnostics) {
    const where = `${d.fileName ? `${d.fileName} ` : ""}${d.start.line + 1}:${d.start.character + 1}`;
    const head = `${where} - error TS${d.code}: ${d.messageText}`;
    heads.push(head);
    traceback.push(head);
    const line = d.fileName ? undefined : source[d.start.line];
    if (line !== undefined) {
      const width =
        d.end.line === d.start.line ? Math.max(1, d.end.character - d.start.character) : 1;
      traceback.push(`    ${line}`, `    ${" ".repeat(d.start.character)}${"^".repeat(width)}`);
    }
  }
  return { ename: COMPILE_ERROR, evalue: heads[0] ?? "compile error", traceback };
}

/** Result of a completion request in cell coordinates. */
export interface Completion {
  start: number;
  end: number;
  matches: string[];
}

/**
 * One TypeScript session: cells share declarations and values, modules resolve from `rootDir`
 * (the notebook's folder) upward, except @mmulab/core and @mmulab/kernel, which always come from
 * the kernel's installation (packages.ts).
 */
export class Engine {
  private readonly executor: Executor;
  /** Result of the last `convert` the executor made; tslab prints diagnostics, we keep them. */
  private lastConvert: ConvertResult | undefined;
  private lastValue: { value: unknown } | undefined;
  private lastThrown: { thrown: unknown } | undefined;

  constructor(rootDir: string = process.cwd()) {
    hookOwnPackageRequire();
    const real = createCellConverter({ isJS: false, isBrowser: false });
    // Record each conversion so compile errors come back as structured diagnostics.
    const recording: Converter = {
      convert: (prev, src) => {
        const r = real.convert(prev, src);
        this.lastConvert = r;
        return r;
      },
      inspect: (prev, src, pos) => real.inspect(prev, src, pos),
      complete: (prev, src, pos) => real.complete(prev, src, pos),
      close: () => real.close(),
      addModule: (name, content, meta) => real.addModule(name, content, meta),
    };
    let browser: Converter | undefined;
    const convs = {
      node: recording,
      get browser(): Converter {
        browser ??= createCellConverter({ isJS: false, isBrowser: true });
        return browser;
      },
      close: () => {
        real.close();
        browser?.close();
      },
    };
    // tslab's executor reports through this console: log(value) for the last expression,
    // error(thrown) for a runtime error, error(format, ...) for diagnostics (kept via lastConvert).
    this.executor = createExecutor(rootDir, convs, {
      log: (value: unknown) => {
        this.lastValue = { value };
      },
      error: (first: unknown, ...rest: unknown[]) => {
        if (typeof first === "string" && first.startsWith("%s%d:%d") && rest.length > 0) return;
        this.lastThrown = { thrown: first };
      },
    });
  }

  /** Compiles and runs one cell. Never throws: every failure is an outcome. */
  async execute(code: string): Promise<CellOutcome> {
    this.lastConvert = undefined;
    this.lastValue = undefined;
    this.lastThrown = undefined;
    let ok: boolean;
    try {
      ok = await this.executor.execute(code);
    } catch (e) {
      return { ok: false, ...toCellError(e) };
    }
    // Set by the executor's callbacks during execute(); TS cannot see that, hence the re-typing.
    const thrown = this.lastThrown as { thrown: unknown } | undefined;
    const converted = this.lastConvert as ConvertResult | undefined;
    const value = this.lastValue as { value: unknown } | undefined;
    if (!ok) {
      if (thrown !== undefined) return { ok: false, ...toCellError(thrown.thrown) };
      if (converted !== undefined && converted.diagnostics.length > 0) {
        return { ok: false, error: diagnosticsError(converted, code), interrupted: false };
      }
      return {
        ok: false,
        error: { ename: "Error", evalue: "cell failed", traceback: ["cell failed"] },
        interrupted: false,
      };
    }
    if (value !== undefined) return { ok: true, hasValue: true, value: value.value };
    return { ok: true, hasValue: false };
  }

  /** Completion candidates at `cursor` (a UTF-16 offset in `code`). */
  complete(code: string, cursor: number): Completion {
    const info = this.executor.complete(code, cursor);
    return { start: info.start, end: info.end, matches: info.candidates };
  }

  /** Quick info (type and doc, inline links as their labels) at `cursor`, or undefined. */
  inspect(code: string, cursor: number): RenderedQuickInfo | undefined {
    const info = this.executor.inspect(code, cursor);
    if (!info) return undefined;
    return renderQuickInfo(info);
  }

  /** Whether `code` is a complete cell; for incomplete code, the indent of the next line. */
  isComplete(code: string): { status: "complete" } | { status: "incomplete"; indent: string } {
    const r = isCompleteCode(code);
    return r.completed ? { status: "complete" } : { status: "incomplete", indent: r.indent ?? "" };
  }

  /** Rejects the pending await of an async cell (tslab's asynchronous interrupt). */
  interrupt(): void {
    this.executor.interrupt();
  }

  /** Forgets every declaration and value. */
  reset(): void {
    this.executor.reset();
  }

  close(): void {
    this.executor.close();
  }
}
