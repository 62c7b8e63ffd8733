/**
 * A sweep's results in DuckDB: an in-memory database with a view `results` over the sweep's
 * Parquet file, so a cell can `SELECT … GROUP BY` at once.
 *
 * ```ts
 * const db = await sweepResults(result);       // or an id, or the sweep's folder
 * const rows = await db.query("SELECT backing, avg(pages_4k) AS p FROM results GROUP BY backing");
 * db.close();
 * ```
 */
import fs from "node:fs";
import path from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import { InvalidArgumentError } from "@mmulab/core";

/** Options of {@link sweepResults}. */
export interface SweepResultsOptions {
  /** Folder holding the sweeps, as given to `sweep`; default `./sweeps`. */
  dir?: string;
}

/** A row of a query: column name → value (see {@link queryRows} for the types). */
export type QueryRow = Record<string, unknown>;

/** A DuckDB connection with the view `results`, and a way to close it. */
export interface SweepDb {
  /** The connection itself, for everything {@link SweepDb.query} does not cover. */
  readonly connection: DuckDBConnection;
  /** Absolute path of the Parquet file behind the view. */
  readonly parquet: string;
  /** {@link queryRows} on this connection. */
  query(sql: string): Promise<QueryRow[]>;
  /** Closes the connection and its database. */
  close(): void;
}

/**
 * Runs `sql` and returns its rows as objects. DuckDB's BIGINT and HUGEINT (the Parquet INT64
 * columns of the counts, and every `sum`/`count` over them) arrive as JavaScript bigints, which
 * neither arithmetic with numbers nor plotly nor JSON accept; here each bigint within ±2^53 is a
 * number, and one beyond stays a bigint (exact). Other values are DuckDB's JS forms
 * (`getRowObjectsJS`): numbers, strings, booleans, null, Date for timestamps.
 */
export async function queryRows(connection: DuckDBConnection, sql: string): Promise<QueryRow[]> {
  const reader = await connection.runAndReadAll(sql);
  return reader.getRowObjectsJS().map((row) => {
    const out: QueryRow = {};
    for (const [k, v] of Object.entries(row)) out[k] = typeof v === "bigint" ? safeNumber(v) : v;
    return out;
  });
}

function safeNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v)
    : v;
}

/** The Parquet file of a sweep given by result, folder or id. */
function parquetOf(idOrDir: string | { dir: string }, opts: SweepResultsOptions): string {
  let dir: string;
  if (typeof idOrDir === "object" && idOrDir !== null && typeof idOrDir.dir === "string")
    dir = idOrDir.dir;
  else if (typeof idOrDir === "string" && idOrDir !== "")
    dir = fs.existsSync(path.join(idOrDir, "manifest.json"))
      ? idOrDir
      : path.join(opts.dir ?? "sweeps", idOrDir);
  else
    throw new InvalidArgumentError(
      "sweep",
      idOrDir,
      "a sweep id, a sweep's folder or a SweepResult",
    );
  const file = path.resolve(dir, "results.parquet");
  if (!fs.existsSync(file))
    throw new InvalidArgumentError(
      "sweep",
      idOrDir,
      `a finished sweep with at least one record (no ${file})`,
    );
  return file;
}

/**
 * Opens an in-memory DuckDB with a view `results` over the sweep's `results.parquet`: one row
 * per point, `point_id`, the parameters, then the record's columns. Close it when done.
 * @throws InvalidArgumentError when the sweep has no results file.
 */
export async function sweepResults(
  idOrDir: string | { dir: string },
  opts: SweepResultsOptions = {},
): Promise<SweepDb> {
  const parquet = parquetOf(idOrDir, opts);
  const instance = await DuckDBInstance.create(":memory:");
  const connection = await instance.connect();
  try {
    const literal = `'${parquet.replaceAll("'", "''")}'`;
    await connection.run(`CREATE VIEW results AS SELECT * FROM read_parquet(${literal})`);
  } catch (e) {
    connection.closeSync();
    instance.closeSync();
    throw e;
  }
  return {
    connection,
    parquet,
    query: (sql) => queryRows(connection, sql),
    close() {
      connection.closeSync();
      instance.closeSync();
    },
  };
}
