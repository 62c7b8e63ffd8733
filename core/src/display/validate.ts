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

/** Whether `data` has at most `limit` JSON nodes (stops counting past the limit). */
function hasAtMostNodes(data: unknown, limit: number): boolean {
  let budget = limit;
  const stack: unknown[] = [data];
  while (stack.length > 0) {
    const node = stack.pop();
    if (--budget < 0) return false;
    if (node !== null && typeof node === "object") {
      for (const v of Array.isArray(node) ? node : Object.values(node)) stack.push(v);
    }
  }
  return true;
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

/** Plotly figures are not described by our schema; check the shape the renderers rely on. */
function validatePlotly(data: unknown): ValidationResult {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return fail(`plotly figure must be an object with a "data" array, got ${show(data)}`);
  }
  const traces = (data as { data?: unknown }).data;
  if (!Array.isArray(traces)) {
    return fail(`plotly figure.data must be an array of traces, got ${show(traces)}`);
  }
  const errors: string[] = [];
  traces.forEach((trace, i) => {
    if (trace === null || typeof trace !== "object" || Array.isArray(trace)) {
      errors.push(`figure.data[${i}] must be a trace object (value: ${show(trace)})`);
    }
  });
  return errors.length === 0 ? { ok: true } : fail(`invalid plotly figure: ${errors[0]}`, errors);
}

/**
 * Checks `data` against the schema for `mime` (one of the mmulab MIME types, or plotly's, which is
 * only checked for shape). The version is checked first so a payload written by a newer mmulab
 * gets a message saying so instead of a list of unknown properties.
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
  const first = validatorFor(target.definition, false);
  if (first(data)) return { ok: true };
  if (!hasAtMostNodes(data, FULL_REPORT_MAX_NODES)) {
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
