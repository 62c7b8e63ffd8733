// The lab's user workspace: `npm start` serves workspace/ (gitignored), not notebooks/, so
// opening, running and saving notebooks and File > New never touch tracked files, and the
// notebooks the tests execute stay exactly what notebooks/src builds.
//
// The shipped notebooks (notebooks/*.ipynb, notebooks/teacher/*.ipynb) are copied in on first
// start. A manifest records what each copy was when copied; a later start refreshes a copy the
// user has not changed when the shipped notebook changed, keeps an edited copy (and says where
// the new shipped version is), and does not bring back a copy the user deleted.
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const DEFAULT_WORKSPACE = path.join(repo, "workspace");
export const SHIPPED = path.join(repo, "notebooks");
/** The manifest, inside the workspace (a dot file: the file browser hides it). */
export const MANIFEST = ".mmulab-shipped.json";

const sha256 = (file) => createHash("sha256").update(readFileSync(file)).digest("hex");

/** Shipped notebooks as workspace-relative paths (posix separators), sorted. */
export function shippedNotebooks(shipped = SHIPPED) {
  const list = [];
  for (const sub of ["", "teacher"]) {
    const dir = path.join(shipped, sub);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort())
      if (f.endsWith(".ipynb")) list.push(sub === "" ? f : `${sub}/${f}`);
  }
  return list;
}

/**
 * Brings `workspace` up to date with the shipped notebooks. Returns what it did per notebook:
 * `copied` (new), `updated` (unchanged by the user, shipped version changed), `kept` (the user
 * edited it; the shipped version changed), `current`, or `deleted` (the user removed it).
 */
export function prepareWorkspace(workspace = DEFAULT_WORKSPACE, shipped = SHIPPED) {
  mkdirSync(workspace, { recursive: true });
  const manifestFile = path.join(workspace, MANIFEST);
  let manifest = {};
  if (existsSync(manifestFile)) {
    try {
      manifest = JSON.parse(readFileSync(manifestFile, "utf8"));
    } catch (e) {
      throw new Error(`${manifestFile} is not valid JSON (${e.message}); delete it to re-copy`);
    }
  }
  const report = {};
  for (const rel of shippedNotebooks(shipped)) {
    const src = path.join(shipped, rel);
    const dst = path.join(workspace, rel);
    const srcHash = sha256(src);
    const was = manifest[rel];
    if (!existsSync(dst)) {
      if (was !== undefined) {
        report[rel] = "deleted";
        continue;
      }
      mkdirSync(path.dirname(dst), { recursive: true });
      copyFileSync(src, dst);
      manifest[rel] = srcHash;
      report[rel] = "copied";
      continue;
    }
    const dstHash = sha256(dst);
    if (dstHash === srcHash) {
      manifest[rel] = srcHash;
      report[rel] = "current";
    } else if (was !== undefined && dstHash === was) {
      copyFileSync(src, dst);
      manifest[rel] = srcHash;
      report[rel] = "updated";
    } else report[rel] = "kept";
  }
  writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  return report;
}
