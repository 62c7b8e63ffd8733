/**
 * Validation of display payloads against THE schema file, `core/schema/display.v1.schema.json`.
 *
 * The schema is imported as a JSON module through the package's own `./schema/*` export, so the
 * same statement works from `dist/cjs` (Node resolves the self-reference), from vitest and when
 * rspack bundles the lab extension — and there is never a second copy of the schema.
 */

import schema from "@mmulab/core/schema/display.v1.schema.json";
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import {
  DISPLAY_SCHEMA_VERSION,
  PAGETABLE_MIME,
  PLOTLY_MIME,
  WALK_MIME,
  WALK2D_MIME,
} from "./types";

/** Result of {@link validateDisplayPayload}. */
export type ValidationResult =
  | { ok: true }
  | {
      ok: false;
      /** One sentence for a person: what is wrong and where. */
      message: string;
      /** Every problem found, each `"<json path>: <problem> (value: <bad value>)"`. */
      errors: string[];
    };

/** The MIME types this module can check, with the schema definition each payload must match. */
const DEFINITION_OF: Readonly<Record<string, { definition: string; kind: string }>> = {
  [PAGETABLE_MIME]: { definition: "pagetable", kind: "pagetable" },
  [WALK_MIME]: { definition: "walk", kind: "walk" },
  [WALK2D_MIME]: { definition: "walk2d", kind: "walk2d" },
};

/** At most this many schema errors are reported; beyond that they only repeat the cause. */
const MAX_ERRORS = 20;

/**
 * Payloads with more JSON nodes than this get only the first problem reported: collecting every
 * error of a hostile 10 MB payload (70,000 bad entries) takes ajv many seconds, and a person needs
 * the first few problems, not seventy thousand.
 */
const FULL_REPORT_MAX_NODES = 20_000;

/** Two compilations of the schema: stop at the first error (every payload), or collect all. */
let compiled:
  | { first: Map<string, ValidateFunction>; all: Map<string, ValidateFunction> }
  | undefined;

/** Compiles the schema once, on first use (ajv compilation costs milliseconds, not worth paying at import). */
function validatorFor(definition: string, allErrors: boolean): ValidateFunction {
  if (compiled === undefined) {
    const id = (schema as { $id: string }).$id;
    const build = (all: boolean) => {
      const ajv = new Ajv({ allErrors: all, strict: true });
      ajv.addSchema(schema as object);
      const fns = new Map<string, ValidateFunction>();
      for (const { definition: name } of Object.values(DEFINITION_OF)) {
        const fn = ajv.getSchema(`${id}#/definitions/${name}`);
        if (fn === undefined) throw new Error(`display schema has no definitions.${name}`);
        fns.set(name, fn);
      }
      return fns;
    };
    compiled = { first: build(false), all: build(true) };
  }
  return (allErrors ? compiled.all : compiled.first).get(definition)!;
}

/**
 * Deepest nesting a payload may have. The deepest real payload, a 5-level page-table tree, nests
 * about 20 levels (payload, trees, tree, root, then entries, entry, child per table); a hostile
 * one nested 10^4 deep would overflow the stack of ajv's recursive validators and of the
 * renderers, so it is refused with its depth before either sees it. Plotly figures nest a few levels.
 */
export const MAX_PAYLOAD_DEPTH = 64;

/**
 * Size (JSON nodes) and depth (objects and arrays nested in each other, the payload itself being
 * depth 1) of a payload, each counted only up to its limit.
 */
function measure(data: unknown, nodeLimit: number): { nodesWithinLimit: boolean; depth: number } {
  let budget = nodeLimit;
  let depth = 0;
  // Iterative (a recursive walk would overflow on the very payloads this guards against).
  const stack: Array<[unknown, number]> = [[data, 1]];
  while (stack.length > 0) {
    const [node, d] = stack.pop()!;
    if (--budget < 0) return { nodesWithinLimit: false, depth };
    if (node === null || typeof node !== "object") continue;
    if (d > depth) depth = d;
    if (depth > MAX_PAYLOAD_DEPTH) break;
    for (const v of Array.isArray(node) ? node : Object.values(node)) stack.push([v, d + 1]);
  }
  return { nodesWithinLimit: stack.length === 0, depth };
}

/** The failure for a payload nested deeper than {@link MAX_PAYLOAD_DEPTH}, or undefined. */
function depthFailure(what: string, data: unknown): ValidationResult | undefined {
  const { depth } = measure(data, Number.POSITIVE_INFINITY);
  if (depth <= MAX_PAYLOAD_DEPTH) return undefined;
  return fail(
    `${what} nests more than ${MAX_PAYLOAD_DEPTH} levels of objects and arrays; at most ${MAX_PAYLOAD_DEPTH} are allowed (a page-table tree needs about 20)`,
  );
}

/** Short, single-line rendering of a value for error messages. */
function show(value: unknown): string {
  let text: string;
  if (value === undefined) text = "undefined";
  else if (typeof value === "bigint") text = `${value}n`;
  else if (typeof value === "function") text = "a function";
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Follows a JSON pointer (ajv's `instancePath`) into `data`. */
function valueAt(data: unknown, pointer: string): unknown {
  if (pointer === "") return data;
  let node: unknown = data;
  for (const raw of pointer.slice(1).split("/")) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** Turns one ajv error into "path: problem (value: ...)". */
function describe(data: unknown, error: ErrorObject): string {
  const path = `payload${error.instancePath.replace(/\/(\d+)(?=\/|$)/g, "[$1]").replace(/\//g, ".")}`;
  const params = error.params as Record<string, unknown>;
  let problem = error.message ?? error.keyword;
  if (error.keyword === "additionalProperties") {
    problem = `has unknown property "${String(params.additionalProperty)}"`;
  } else if (error.keyword === "required") {
    problem = `lacks required property "${String(params.missingProperty)}"`;
  } else if (error.keyword === "enum") {
    problem = `must be one of ${show(params.allowedValues)}`;
  } else if (error.keyword === "const") {
    problem = `must be ${show(params.allowedValue)}`;
  }
  const shown =
    error.keyword === "required" || error.keyword === "additionalProperties"
      ? ""
      : ` (value: ${show(valueAt(data, error.instancePath))})`;
  return `${path} ${problem}${shown}`;
}

function fail(message: string, errors: string[] = [message]): ValidationResult {
  return { ok: false, message, errors };
}

/**
 * Plotly trace types that fetch from the internet when drawn: map tiles and styles (the map and
 * mapbox families) and country outlines (geo traces load topojson from plotly's CDN). The
 * renderers run on untrusted notebooks and load nothing off-host, so these are refused.
 */
export const PLOTLY_NETWORK_TRACE_TYPES: ReadonlySet<string> = new Set([
  "scattergeo",
  "choropleth",
  "scattermap",
  "choroplethmap",
  "densitymap",
  "scattermapbox",
  "choroplethmapbox",
  "densitymapbox",
]);

/** Traces a figure may have: plotly spends about a millisecond per trace even on empty ones. */
export const MAX_PLOTLY_TRACES = 1000;

/**
 * Points a figure may draw as one SVG element each (bars, markers, text, boxes, pie slices): on a
 * 2-core machine plotly takes about 0.75 ms per bar, so 10^5 bars block the page for over a minute.
 * Lines, heatmaps, histograms (binned) and WebGL traces draw many points at a fixed cost and are
 * not counted.
 */
export const MAX_PLOTLY_SVG_POINTS = 10_000;

/** Trace types plotly draws with one SVG element per point. */
const PER_POINT_TRACE_TYPES: ReadonlySet<string> = new Set([
  "bar",
  "funnel",
  "waterfall",
  "box",
  "violin",
  "ohlc",
  "candlestick",
  "pie",
  "funnelarea",
  "scatterpolar",
  "scatterternary",
  "scattercarpet",
  "scattersmith",
  "barpolar",
]);

/**
 * Points of `trace` drawn one SVG element each: the longest array among its top-level properties
 * for a per-point type, or a scatter (plotly's default type) whose mode draws markers or text;
 * 0 otherwise.
 */
function svgPoints(trace: Record<string, unknown>): number {
  const type = trace.type ?? "scatter";
  const mode = trace.mode;
  const perPoint =
    (typeof type === "string" && PER_POINT_TRACE_TYPES.has(type)) ||
    (type === "scatter" && typeof mode === "string" && /markers|text/.test(mode));
  if (!perPoint) return 0;
  let n = 0;
  for (const v of Object.values(trace)) if (Array.isArray(v) && v.length > n) n = v.length;
  return n;
}

/** Whether `value` is an image source plotly may draw without a request: a `data:` URL. */
function isInlineImage(value: unknown): boolean {
  return typeof value === "string" && /^\s*data:/i.test(value);
}

/**
 * Characters a string of a figure may have (titles, labels, hover templates; image `source` data
 * URLs excepted): plotly lays out text glyph by glyph, and a 10 MB title blocks the page for over
 * a minute.
 */
export const MAX_PLOTLY_STRING = 10_000;

/**
 * Problems of a figure's strings, as "path: problem": a `source` (layout images, image traces,
 * template images) that plotly would load from a URL, or a string longer than
 * {@link MAX_PLOTLY_STRING}. Iterative: the figure's depth was checked, but not its width.
 */
function stringProblems(figure: object): string[] {
  const found: string[] = [];
  const stack: Array<[unknown, string]> = [[figure, "figure"]];
  while (stack.length > 0 && found.length < MAX_ERRORS) {
    const [node, path] = stack.pop()!;
    if (node === null || typeof node !== "object") continue;
    for (const [k, v] of Object.entries(node)) {
      const at = Array.isArray(node) ? `${path}[${k}]` : `${path}.${k}`;
      if (k === "source" && typeof v === "string") {
        if (!isInlineImage(v))
          found.push(`${at} must be a data: URL; plotly would load ${show(v)} from the network`);
      } else if (typeof v === "string" && v.length > MAX_PLOTLY_STRING) {
        found.push(`${at} has ${v.length} characters; at most ${MAX_PLOTLY_STRING} are allowed`);
      } else if (v !== null && typeof v === "object") stack.push([v, at]);
    }
  }
  return found;
}

/**
 * Plotly figures are not described by our schema; check the shape the renderers rely on, and that
 * drawing the figure requests nothing from the network (no map or geo traces, no image URLs) and
 * stays within the sizes plotly draws in a few seconds.
 */
function validatePlotly(data: unknown): ValidationResult {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return fail(`plotly figure must be an object with a "data" array, got ${show(data)}`);
  }
  const traces = (data as { data?: unknown }).data;
  if (!Array.isArray(traces)) {
    return fail(`plotly figure.data must be an array of traces, got ${show(traces)}`);
  }
  const deep = depthFailure("plotly figure", data);
  if (deep) return deep;
  if (traces.length > MAX_PLOTLY_TRACES) {
    return fail(
      `plotly figure.data has ${traces.length} traces; at most ${MAX_PLOTLY_TRACES} are drawn (merge traces, or plot fewer series)`,
    );
  }
  const errors: string[] = [];
  let points = 0;
  traces.forEach((trace, i) => {
    if (trace === null || typeof trace !== "object" || Array.isArray(trace)) {
      errors.push(`figure.data[${i}] must be a trace object (value: ${show(trace)})`);
      return;
    }
    const type = (trace as { type?: unknown }).type;
    if (typeof type === "string" && PLOTLY_NETWORK_TRACE_TYPES.has(type)) {
      errors.push(
        `figure.data[${i}].type ${show(type)} draws a map whose tiles or outlines plotly fetches from the internet; not drawn (allowed: any trace type except ${[...PLOTLY_NETWORK_TRACE_TYPES].join(", ")})`,
      );
    }
    points += svgPoints(trace as Record<string, unknown>);
  });
  if (points > MAX_PLOTLY_SVG_POINTS) {
    errors.push(
      `plotly figure draws ${points} bars, markers or other per-point shapes; at most ${MAX_PLOTLY_SVG_POINTS} are allowed (use lines, a histogram, a heatmap or scattergl for more points)`,
    );
  }
  if (errors.length < MAX_ERRORS) errors.push(...stringProblems(data));
  const shown = errors.slice(0, MAX_ERRORS);
  return shown.length === 0 ? { ok: true } : fail(`invalid plotly figure: ${shown[0]}`, shown);
}

/**
 * Checks `data` against the schema for `mime` (one of the mmulab MIME types, or plotly's, which is
 * checked for shape, network use and size). The version is checked first so a payload written by
 * a newer mmulab gets a message saying so instead of a list of unknown properties; a payload
 * nested deeper than {@link MAX_PAYLOAD_DEPTH} is refused before the schema is applied.
 */
export function validateDisplayPayload(mime: string, data: unknown): ValidationResult {
  if (mime === PLOTLY_MIME) return validatePlotly(data);
  const target = DEFINITION_OF[mime];
  if (target === undefined) {
    return fail(
      `unknown display MIME type ${show(mime)}; allowed: ${[...Object.keys(DEFINITION_OF), PLOTLY_MIME].join(", ")}`,
    );
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return fail(`${mime} payload must be a JSON object, got ${show(data)}`);
  }
  const version = (data as { version?: unknown }).version;
  if (typeof version !== "number" || !Number.isInteger(version) || version < 1) {
    return fail(
      `${mime} payload.version must be a positive integer (this mmulab supports version ${DISPLAY_SCHEMA_VERSION}), got ${show(version)}`,
    );
  }
  if (version > DISPLAY_SCHEMA_VERSION) {
    return fail(
      `payload version ${version} is newer than the supported version ${DISPLAY_SCHEMA_VERSION}: it was written by a newer mmulab; update mmulab (kernel and lab extension) to show it`,
    );
  }
  const kind = (data as { kind?: unknown }).kind;
  if (kind !== target.kind) {
    return fail(`${mime} payload.kind must be "${target.kind}", got ${show(kind)}`);
  }
  const deep = depthFailure(`${mime} payload`, data);
  if (deep) return deep;
  const first = validatorFor(target.definition, false);
  if (first(data)) return { ok: true };
  if (!measure(data, FULL_REPORT_MAX_NODES).nodesWithinLimit) {
    const error = describe(data, first.errors![0]!);
    return fail(
      `invalid ${mime} payload: ${error} (further problems of a payload this large are not listed)`,
      [error],
    );
  }
  const all = validatorFor(target.definition, true);
  all(data);
  // allErrors reports every problem; oneOf branches can repeat one, so drop exact repeats.
  const errors = [...new Set((all.errors ?? []).map((e) => describe(data, e)))];
  const shown = errors.slice(0, MAX_ERRORS);
  const rest = errors.length > 1 ? ` (and ${errors.length - 1} more problem(s))` : "";
  return fail(`invalid ${mime} payload: ${shown[0]}${rest}`, shown);
}

/**
 * Like {@link validateDisplayPayload} but throws a `TypeError` carrying every problem, for callers
 * that must not send or draw a bad payload.
 */
export function assertDisplayPayload(mime: string, data: unknown): void {
  const result = validateDisplayPayload(mime, data);
  if (!result.ok) {
    const details = result.errors.length > 1 ? `\n  ${result.errors.join("\n  ")}` : "";
    throw new TypeError(`${result.message}${details}`);
  }
}
