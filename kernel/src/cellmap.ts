/**
 * Where a line of compiled cell code came from, and tracebacks rewritten in cell terms.
 *
 * A converted cell carries two inline source maps (converter.ts): TypeScript's emit (cell → ES
 * module, in tslab's source that starts with one added `export {};` line) and tslab's CommonJS
 * step (ES module → the code that runs). A position in the running code is looked up in the
 * second, then the first.
 */
import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { dirname, resolve, sep } from "node:path";

const MAP_COMMENT = /^\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/gm;

/** Lines tslab puts before the cell's first line in the source TypeScript maps to. */
const TSLAB_PREFIX_LINES = 1;

/** The code to run and how its lines map back to the cell. */
export interface MappedCell {
  /** The compiled code without its map comments. */
  code: string;
  /** 1-based cell line and column of a 1-based position in `code`, if mapped. */
  cellPosition(line: number, column: number): { line: number; column: number } | undefined;
}

function decodeMap(base64: string): SourceMap | undefined {
  try {
    return new SourceMap(JSON.parse(Buffer.from(base64, "base64").toString("utf8")));
  } catch {
    return undefined;
  }
}

/** Splits converted output into code and a position lookup. */
export function mapCell(output: string): MappedCell {
  const maps = [...output.matchAll(MAP_COMMENT)].map((m) => decodeMap(m[1]!));
  const code = output.replace(MAP_COMMENT, "").replace(/\s+$/, "\n");
  const toEsm = maps.length >= 2 ? maps[0] : undefined;
  const toCjs = maps.length >= 2 ? maps[maps.length - 1] : undefined;
  return {
    code,
    cellPosition(line, column) {
      if (!toEsm || !toCjs) return undefined;
      const mid = toCjs.findEntry(line - 1, column - 1) as Partial<SourceMapPosition>;
      if (mid.originalLine === undefined || mid.originalColumn === undefined) return undefined;
      const src = toEsm.findEntry(
        mid.originalLine,
        mid.originalColumn,
      ) as Partial<SourceMapPosition>;
      if (src.originalLine === undefined || src.originalColumn === undefined) return undefined;
      const cellLine = src.originalLine - TSLAB_PREFIX_LINES + 1;
      return cellLine >= 1 ? { line: cellLine, column: src.originalColumn + 1 } : undefined;
    },
  };
}

interface SourceMapPosition {
  originalLine: number;
  originalColumn: number;
}

/** A compiled cell as the traceback rewriter sees it. */
export interface RanCell {
  /** How the cell is named in tracebacks: its execution count. */
  label: string;
  map: MappedCell;
  /** Lines of the wrapper before the cell's code (the code's line 1 is script line this + 1). */
  wrapperLines: number;
  /** Script lines holding the cell's code; frames past them are the wrapper's own call. */
  codeLines: number;
}

/** Paths shown by package name instead of where they are installed. */
export interface PackageRoot {
  name: string;
  dir: string;
}

/** Frames of the kernel's machinery: Node's vm and internals, tslab, the kernel's own modules. */
const MACHINERY = [
  /\(node:|at node:/,
  /[\\/]tslab[\\/]dist[\\/]/,
  /[\\/]kernel[\\/](dist|src)[\\/](cellmap|cli|converter|engine|executor|handler|interrupt|kernel|packages|session|transport|wire)\.[jt]s:/,
  /^\s*at new Promise \(<anonymous>\)$/,
];

/** A cell's script name: `<cell N>`, N numbering every run of this process. */
export function cellFilename(run: number): string {
  return `<cell ${run}>`;
}

const CELL_FRAME = /<cell (\d+)>:(\d+):(\d+)/;

/**
 * Rewrites the frames of an error stack: cell frames become `Cell [n], line L:C`, frames of the
 * kernel's machinery go, paths inside `roots` read `@mmulab/core/…`. Keeps the header lines.
 */
export function rewriteStack(
  lines: string[],
  cells: ReadonlyMap<number, RanCell>,
  roots: readonly PackageRoot[],
): string[] {
  const out: string[] = [];
  for (const line of lines) {
    if (!/^\s+at /.test(line)) {
      out.push(line);
      continue;
    }
    if (MACHINERY.some((re) => re.test(line))) continue;
    const m = CELL_FRAME.exec(line);
    if (m) {
      const cell = cells.get(Number(m[1]));
      if (cell === undefined) {
        out.push(line);
        continue;
      }
      const scriptLine = Number(m[2]) - cell.wrapperLines;
      // The wrapper calling the cell's function (last line): not the user's code.
      if (scriptLine < 1 || scriptLine > cell.codeLines) continue;
      const pos = cell.map.cellPosition(scriptLine, Number(m[3]));
      const where = pos
        ? `Cell [${cell.label}], line ${pos.line}:${pos.column}`
        : `Cell [${cell.label}], compiled line ${scriptLine}:${m[3]}`;
      // Calls through `exports` (an earlier cell's function) show the proxy as receiver: noise.
      out.push(line.replace(CELL_FRAME, where).replace(/\bat (async )?Proxy\./, "at $1"));
      continue;
    }
    out.push(packageFrame(line, roots));
  }
  return out;
}

/** Source maps of package files by path (null: the file has none). Built files do not change. */
const packageMaps = new Map<string, SourceMap | null>();

function packageMap(file: string): SourceMap | null {
  let map = packageMaps.get(file);
  if (map === undefined) {
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, "utf8")));
    } catch {
      map = null;
    }
    packageMaps.set(file, map);
  }
  return map;
}

const FILE_POSITION = /([^\s()]+\.[cm]?js):(\d+):(\d+)/;

/**
 * A frame inside one of `roots` by package name; through the package's source map when it ships
 * one with its sources (`@mmulab/core/src/kvm/memslot.ts:106:15`, not the built .js).
 */
function packageFrame(line: string, roots: readonly PackageRoot[]): string {
  const m = FILE_POSITION.exec(line);
  const root = m ? roots.find((r) => m[1]!.startsWith(r.dir + sep)) : undefined;
  if (!m || !root) return line;
  const [whole, file, l, c] = m as unknown as [string, string, string, string];
  const shown = (path: string, at: string) =>
    line.replace(
      whole,
      `${root.name}/${path
        .slice(root.dir.length + 1)
        .split(sep)
        .join("/")}:${at}`,
    );
  const entry = packageMap(file)?.findEntry(Number(l) - 1, Number(c) - 1) as
    | Partial<SourceMapPosition & { originalSource: string }>
    | undefined;
  if (entry?.originalSource !== undefined && entry.originalLine !== undefined) {
    const source = entry.originalSource.startsWith("file://")
      ? new URL(entry.originalSource).pathname
      : resolve(dirname(file), entry.originalSource);
    if (source.startsWith(root.dir + sep))
      return shown(source, `${entry.originalLine + 1}:${(entry.originalColumn ?? 0) + 1}`);
  }
  return shown(file, `${l}:${c}`);
}
