#!/usr/bin/env node
// Builds the .ipynb files under notebooks/ from their sources in notebooks/src/*.nb.txt.
// One source gives the student notebook and, when it has solution cells, the teacher's copy
// under notebooks/teacher/: the two cannot drift because neither is edited by hand.
//
// Source format: cells start with a marker line
//   %% markdown            a markdown cell
//   %% code                a code cell
//   %% solution            a code cell whose body is the teacher's answer; an optional
//   %% student             section after it replaces the body in the student copy
// Everything up to the next "%% " marker line belongs to the cell; blank edges are trimmed.
//
// `--check` builds in memory and exits 1 when a committed .ipynb differs from its source.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const notebooksDir = path.resolve(here, "..");
const srcDir = path.join(notebooksDir, "src");

const MARKER = /^%% (markdown|code|solution|student)\s*$/;

/** Parses a source into cells: {kind, body, student?}. */
export function parseSource(text, file) {
  const cells = [];
  let cur = null;
  let lineNo = 0;
  for (const line of text.split("\n")) {
    lineNo++;
    const m = MARKER.exec(line);
    if (!m) {
      if (!cur) {
        if (line.trim() === "") continue;
        throw new Error(`${file}:${lineNo}: text before the first "%% <kind>" marker`);
      }
      cur.lines.push(line);
      continue;
    }
    const kind = m[1];
    if (kind === "student") {
      if (cur?.kind !== "solution" || cur.studentLines) {
        throw new Error(
          `${file}:${lineNo}: "%% student" must directly follow a "%% solution" cell`,
        );
      }
      cur.studentLines = [];
      cur.lines = cur.studentLines;
      continue;
    }
    cur = { kind, lines: [] };
    cur.bodyLines = cur.lines;
    cells.push(cur);
  }
  const trim = (lines) =>
    lines
      .join("\n")
      .replace(/^\s*\n/, "")
      .replace(/\s+$/, "");
  return cells.map((c) => ({
    kind: c.kind,
    body: trim(c.bodyLines),
    student: c.studentLines ? trim(c.studentLines) : undefined,
  }));
}

function sourceLines(body) {
  const lines = body.split("\n");
  return lines.map((l, i) => (i < lines.length - 1 ? `${l}\n` : l));
}

/** Makes an nbformat 4.5 notebook for one audience ("student" or "teacher"). */
export function toNotebook(cells, name, audience) {
  return {
    cells: cells.map((c, i) => {
      const id = `${name}-${String(i).padStart(3, "0")}`;
      if (c.kind === "markdown") {
        return { cell_type: "markdown", id, metadata: {}, source: sourceLines(c.body) };
      }
      const body =
        c.kind === "solution" && audience === "student"
          ? (c.student ?? "// your answer here")
          : c.body;
      const metadata = c.kind === "solution" ? { tags: ["exercise"] } : {};
      return {
        cell_type: "code",
        execution_count: null,
        id,
        metadata,
        outputs: [],
        source: sourceLines(body),
      };
    }),
    metadata: {
      kernelspec: { display_name: "TypeScript (mmulab)", language: "typescript", name: "mmulab" },
      language_info: {
        name: "typescript",
        file_extension: ".ts",
        mimetype: "text/typescript",
        version: "5.0",
      },
      mmulab: { generatedFrom: `src/${name}.nb.txt`, audience },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

/** Every notebook this source tree produces: [{path, json}]. */
export function buildAll() {
  const out = [];
  for (const f of readdirSync(srcDir)
    .filter((n) => n.endsWith(".nb.txt"))
    .sort()) {
    const name = f.replace(/\.nb\.txt$/, "");
    const cells = parseSource(readFileSync(path.join(srcDir, f), "utf8"), f);
    const hasSolutions = cells.some((c) => c.kind === "solution");
    const text = (audience) => `${JSON.stringify(toNotebook(cells, name, audience), null, 1)}\n`;
    out.push({ path: path.join(notebooksDir, `${name}.ipynb`), json: text("student") });
    if (hasSolutions) {
      out.push({
        path: path.join(notebooksDir, "teacher", `${name}.ipynb`),
        json: text("teacher"),
      });
    }
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const { path: p, json } of buildAll()) {
    const rel = path.relative(notebooksDir, p);
    if (check) {
      if (!existsSync(p) || readFileSync(p, "utf8") !== json) {
        console.error(`stale: notebooks/${rel} differs from its source; run npm run notebooks`);
        stale++;
      }
    } else {
      mkdirSync(path.dirname(p), { recursive: true });
      writeFileSync(p, json);
      console.log(`wrote notebooks/${rel}`);
    }
  }
  process.exit(stale ? 1 : 0);
}
