/**
 * The TypeScript engine: tslab's converter (TypeScript → CommonJS, completion, quick info) and
 * the kernel's executor (runs cells in this process, keeps declarations between cells), wrapped
 * so that the outcome of a cell is a value — last expression, compile diagnostics or thrown
 * error with a traceback in cell lines.
 */
import { types } from "node:util";
import type { ConvertResult } from "tslab/dist/converter";
import { type PackageRoot, type RanCell, rewriteStack } from "./cellmap";
import { createCellConverter, isCompleteCode } from "./converter";
import { ASYNC_INTERRUPT_MESSAGE, CellExecutor, type ExecutorHooks } from "./executor";
import { safeInspect } from "./helpers";
import { coreDir, hookOwnPackageRequire, KERNEL_PACKAGE_DIR } from "./packages";
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
 * `SIGINT`" in Node 20, "Script execution interrupted." earlier) and the executor's async interrupt.
 */
const INTERRUPT_MESSAGE = new RegExp(
  `^Script execution (was )?interrupted|^${ASYNC_INTERRUPT_MESSAGE}$`,
);

/** Where a traceback's frames come from: the cells run so far and the packages to name. */
export interface FrameContext {
  cells: ReadonlyMap<number, RanCell>;
  roots: readonly PackageRoot[];
}

/**
 * `obj[key]`, or what reading it threw: a thrown value may have getters that throw (an Error
 * subclass overriding `message`, a proxy), and describing it must not throw again.
 */
function read(
  obj: object,
  key: string,
): { ok: true; value: unknown } | { ok: false; thrown: unknown } {
  try {
    return { ok: true, value: (obj as Record<string, unknown>)[key] };
  } catch (thrown) {
    return { ok: false, thrown };
  }
}

/** Whether `value` is an Error, also of another realm; false when asking throws (a proxy). */
function isError(value: unknown): value is Error {
  try {
    return value instanceof Error || types.isNativeError(value);
  } catch {
    return types.isNativeError(value);
  }
}

/**
 * What a getter threw, in one line: `Name: message` for an Error (no stack: it would show the
 * kernel's own frames), the inspected value otherwise.
 */
function brief(thrown: unknown): string {
  if (!isError(thrown)) return safeInspect(thrown, 0);
  try {
    return Error.prototype.toString.call(thrown);
  } catch {
    return "an Error whose name or message cannot be read";
  }
}

/**
 * A field of a thrown Error as text: a string as is, another value inspected; a getter that
 * threw gives `unreadable` with what it threw.
 */
function errorField(
  error: Error,
  key: "name" | "message",
): { text: string | undefined; unreadable?: string } {
  const r = read(error, key);
  if (!r.ok) return { text: undefined, unreadable: `its ${key} getter threw ${brief(r.thrown)}` };
  if (r.value === undefined) return { text: undefined };
  return { text: typeof r.value === "string" ? r.value : safeInspect(r.value, 0) };
}

/** The name of `value`'s constructor, when it can be read and is a non-empty string. */
function constructorName(value: object): string | undefined {
  const c = read(value, "constructor");
  if (!c.ok || typeof c.value !== "function") return undefined;
  const n = read(c.value, "name");
  return n.ok && typeof n.value === "string" && n.value !== "" ? n.value : undefined;
}

/**
 * Turns anything a cell threw into the Jupyter error triple; with `frames`, cell frames name cell
 * lines and the kernel's own frames are dropped. Never throws, whatever was thrown: errors whose
 * getters throw, cyclic objects, symbols, proxies, null and undefined all get a readable
 * ename/evalue ("Thrown" and the inspected value for anything that is not an Error).
 */
export function toCellError(
  thrown: unknown,
  frames: FrameContext = { cells: new Map(), roots: [] },
): { error: CellError; interrupted: boolean } {
  if (isError(thrown)) {
    const m = errorField(thrown, "message");
    const message =
      m.text ?? (m.unreadable !== undefined ? `<message unreadable: ${m.unreadable}>` : "");
    if (INTERRUPT_MESSAGE.test(message)) {
      return {
        error: {
          ename: INTERRUPTED,
          evalue: "execution interrupted (SIGINT)",
          traceback: [`${INTERRUPTED}: execution interrupted (SIGINT)`],
        },
        interrupted: true,
      };
    }
    // An unreadable name falls back to the class's: ename stays a name, the evalue the message.
    const n = errorField(thrown, "name");
    const name = n.text || constructorName(thrown) || "Error";
    const rawStack = read(thrown, "stack");
    const stack = (
      rawStack.ok && typeof rawStack.value === "string" ? rawStack.value : `${name}: ${message}`
    ).split("\n");
    // Node prefixes errors thrown at a script's top level with "file:line / source / ^ / blank";
    // the traceback starts at the "Name: message" line.
    const head = stack.findIndex((line) => line.startsWith(name));
    let traceback: string[];
    try {
      traceback = rewriteStack(stack.slice(Math.max(0, head)), frames.cells, frames.roots);
    } catch {
      traceback = stack;
    }
    if (n.unreadable !== undefined) traceback.push(`(name unreadable: ${n.unreadable})`);
    return { error: { ename: name, evalue: message, traceback }, interrupted: false };
  }
  const evalue = safeInspect(thrown);
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

const IDENT = /[\w$]/;

/**
 * Where to ask TypeScript for quick info when the user inspects at `cursor`: the cursor itself;
 * the last character of a name the cursor sits right after (`vm.setUserMemoryRegion|`); and the
 * callee of the innermost call whose parentheses are still open before the cursor
 * (`vm.setUserMemoryRegion({ slot: 0, |`), as IPython answers inside a call. Brackets inside
 * string literals and comments are not told apart: a wrong guess only finds other info.
 */
export function inspectPositions(code: string, cursor: number): number[] {
  const at = [cursor];
  if (cursor > 0 && IDENT.test(code[cursor - 1]!)) at.push(cursor - 1);
  let depth = 0;
  for (let i = cursor - 1; i >= 0; i--) {
    const ch = code[i]!;
    if (ch === ")" || ch === "]" || ch === "}") depth++;
    else if (ch === "[" || ch === "{") depth = Math.max(0, depth - 1);
    else if (ch === "(") {
      if (depth > 0) {
        depth--;
        continue;
      }
      let j = i - 1;
      while (j >= 0 && /\s/.test(code[j]!)) j--;
      // Generic arguments (`f<T>(`) are not skipped: the name must touch the parenthesis.
      if (j >= 0 && IDENT.test(code[j]!)) at.push(j);
      break;
    }
  }
  return at;
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
  private readonly executor: CellExecutor;
  private readonly roots: PackageRoot[];

  constructor(rootDir: string = process.cwd(), hooks: ExecutorHooks = {}) {
    hookOwnPackageRequire();
    this.executor = new CellExecutor(
      rootDir,
      createCellConverter({ isJS: false, isBrowser: false }),
      hooks,
    );
    this.roots = [
      { name: "@mmulab/core", dir: coreDir() },
      { name: "@mmulab/kernel", dir: KERNEL_PACKAGE_DIR },
    ];
  }

  /**
   * Compiles and runs one cell; `label` names it in tracebacks (the execution count). Never
   * throws: every failure is an outcome.
   */
  async execute(code: string, label: string | number = "?"): Promise<CellOutcome> {
    let r: Awaited<ReturnType<CellExecutor["run"]>>;
    try {
      r = await this.executor.run(code, String(label));
    } catch (e) {
      return { ok: false, ...toCellError(e) };
    }
    if (r.kind === "compile") {
      return { ok: false, error: diagnosticsError(r.result, code), interrupted: false };
    }
    if (r.kind === "thrown") {
      // toCellError never throws, so the kept/lost note below is always added.
      const { error, interrupted } = toCellError(r.thrown, {
        cells: this.executor.cells,
        roots: this.roots,
      });
      // Say what the stopped cell left behind: its completed declarations stay usable.
      const notes: string[] = [];
      if (r.kept.length > 0) notes.push(`defined before the cell stopped: ${r.kept.join(", ")}`);
      if (r.lost.length > 0) notes.push(`not defined (not reached): ${r.lost.join(", ")}`);
      if (notes.length > 0) error.traceback.push("", ...notes);
      return { ok: false, error, interrupted };
    }
    return r.value !== undefined
      ? { ok: true, hasValue: true, value: r.value.value }
      : { ok: true, hasValue: false };
  }

  /** Completion candidates at `cursor` (a UTF-16 offset in `code`). */
  complete(code: string, cursor: number): Completion {
    const info = this.executor.complete(code, cursor);
    return { start: info.start, end: info.end, matches: info.candidates };
  }

  /**
   * Quick info (type and doc, inline links as their labels) at `cursor`, or undefined. Tried at
   * each of {@link inspectPositions}: Shift+Tab is pressed with the cursor after a name or
   * inside a call's parentheses as often as on the name itself.
   */
  inspect(code: string, cursor: number): RenderedQuickInfo | undefined {
    for (const at of inspectPositions(code, cursor)) {
      const info = this.executor.inspect(code, at);
      if (info) return renderQuickInfo(info);
    }
    return undefined;
  }

  /** Whether `code` is a complete cell; for incomplete code, the indent of the next line. */
  isComplete(code: string): { status: "complete" } | { status: "incomplete"; indent: string } {
    const r = isCompleteCode(code);
    return r.completed ? { status: "complete" } : { status: "incomplete", indent: r.indent ?? "" };
  }

  /** Rejects the pending await of an async cell; returns whether a cell was awaiting. */
  interrupt(): boolean {
    return this.executor.interrupt();
  }

  /** Forgets every declaration and value. */
  reset(): void {
    this.executor.reset();
  }

  close(): void {
    this.executor.close();
  }
}
