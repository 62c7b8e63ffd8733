/**
 * Sweep points: a grid of parameter lists expanded to its points (the cartesian product, in a
 * fixed order), or an explicit list; each point's stable id is a hash of its parameters and the
 * simulator version, so a re-run finds the points it already has.
 */
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "@mmulab/core";
import corePackage from "@mmulab/core/package.json";

/** A parameter value: what a Parquet column and a DuckDB WHERE can hold without surprises. */
export type ParamValue = number | string | boolean;
/** One point of a sweep: parameter name → value. */
export type Point = Readonly<Record<string, ParamValue>>;
/** A grid: parameter name → the values to try. */
export type Grid = Readonly<Record<string, readonly ParamValue[]>>;

/** The simulator version that enters every point id (results of another version are not reused). */
export const SIMULATOR_VERSION = `@mmulab/core@${corePackage.version}`;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkValue(where: string, v: unknown): asserts v is ParamValue {
  if (typeof v === "string" || typeof v === "boolean") return;
  if (typeof v === "number" && Number.isFinite(v)) return;
  throw new InvalidArgumentError(where, v, "a finite number, a string or a boolean");
}

function checkName(where: string, k: string): void {
  if (!NAME.test(k))
    throw new InvalidArgumentError(
      where,
      k,
      "a parameter name of letters, digits and _ (a column name)",
    );
}

/**
 * The points of `grid`: an object of non-empty value lists (the cartesian product, the first
 * parameter varying slowest, values in the order given), or an explicit non-empty list of
 * points. Duplicate points are an error (each point is one simulation and one result row).
 */
export function expandGrid(grid: Grid | readonly Point[]): Point[] {
  let points: Point[];
  if (Array.isArray(grid)) {
    if (grid.length === 0)
      throw new InvalidArgumentError("grid", grid, "a non-empty list of points");
    points = grid.map((p, i) => {
      if (p === null || typeof p !== "object" || Array.isArray(p))
        throw new InvalidArgumentError(`grid[${i}]`, p, "a point: an object of parameter values");
      for (const [k, v] of Object.entries(p)) {
        checkName(`grid[${i}] parameter`, k);
        checkValue(`grid[${i}].${k}`, v);
      }
      return { ...p };
    });
  } else {
    if (grid === null || typeof grid !== "object")
      throw new InvalidArgumentError(
        "grid",
        grid,
        "an object of parameter lists or a list of points",
      );
    const keys = Object.keys(grid);
    if (keys.length === 0)
      throw new InvalidArgumentError("grid", grid, "at least one parameter with a list of values");
    for (const k of keys) {
      checkName("grid parameter", k);
      const values = (grid as Record<string, unknown>)[k];
      if (!Array.isArray(values) || values.length === 0)
        throw new InvalidArgumentError(`grid.${k}`, values, "a non-empty list of values");
      for (const [i, v] of values.entries()) checkValue(`grid.${k}[${i}]`, v);
    }
    points = [{}];
    for (const k of keys) {
      const next: Point[] = [];
      for (const p of points) for (const v of (grid as Grid)[k]!) next.push({ ...p, [k]: v });
      points = next;
    }
  }
  const seen = new Map<string, number>();
  points.forEach((p, i) => {
    const id = pointId(p);
    const j = seen.get(id);
    if (j !== undefined)
      throw new InvalidArgumentError(
        `grid point ${i}`,
        p,
        `a point not already in the grid (same as point ${j})`,
      );
    seen.set(id, i);
  });
  return points;
}

/** JSON with keys sorted: one text per point, whatever order its keys were written in. */
export function canonicalJson(p: Point): string {
  return JSON.stringify(
    Object.fromEntries(
      Object.keys(p)
        .sort()
        .map((k) => [k, p[k]]),
    ),
  );
}

/** The point's stable id: 16 hex digits of sha256(simulator version, canonical parameters). */
export function pointId(p: Point, version: string = SIMULATOR_VERSION): string {
  return createHash("sha256")
    .update(`${version}\n${canonicalJson(p)}`)
    .digest("hex")
    .slice(0, 16);
}
