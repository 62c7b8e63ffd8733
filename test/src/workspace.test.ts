// `npm start` serves workspace/, a copy of the shipped notebooks (scripts/workspace.mjs), so the
// lab never writes a tracked file. What a later start does with each copy depends on who changed
// what since it was copied.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MANIFEST, prepareWorkspace, shippedNotebooks } from "../../scripts/workspace.mjs";

let dir: string;
let shipped: string;
let ws: string;
const nb = (name: string) => JSON.stringify({ cells: [], metadata: { name }, nbformat: 4 });

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "mmulab-ws-"));
  shipped = path.join(dir, "notebooks");
  ws = path.join(dir, "workspace");
  mkdirSync(path.join(shipped, "teacher"), { recursive: true });
  writeFileSync(path.join(shipped, "a.ipynb"), nb("a"));
  writeFileSync(path.join(shipped, "b.ipynb"), nb("b"));
  writeFileSync(path.join(shipped, "teacher", "a.ipynb"), nb("ta"));
  writeFileSync(path.join(shipped, "notes.txt"), "not a notebook");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const read = (...p: string[]) => readFileSync(path.join(...p), "utf8");

describe("prepareWorkspace", () => {
  it("lists the top-level and teacher notebooks only", () => {
    expect(shippedNotebooks(shipped)).toEqual(["a.ipynb", "b.ipynb", "teacher/a.ipynb"]);
  });

  it("copies every shipped notebook on first start, byte for byte", () => {
    const r = prepareWorkspace(ws, shipped);
    expect(r).toEqual({ "a.ipynb": "copied", "b.ipynb": "copied", "teacher/a.ipynb": "copied" });
    for (const f of ["a.ipynb", "b.ipynb", "teacher/a.ipynb"])
      expect(read(ws, f)).toBe(read(shipped, f));
    expect(existsSync(path.join(ws, "notes.txt"))).toBe(false);
    expect(existsSync(path.join(ws, MANIFEST))).toBe(true);
  });

  it("a second start with nothing changed changes nothing", () => {
    prepareWorkspace(ws, shipped);
    const before = read(ws, MANIFEST);
    const r = prepareWorkspace(ws, shipped);
    expect(Object.values(r)).toEqual(["current", "current", "current"]);
    expect(read(ws, MANIFEST)).toBe(before);
  });

  it("refreshes an untouched copy, keeps an edited one, does not bring back a deleted one", () => {
    prepareWorkspace(ws, shipped);
    writeFileSync(path.join(shipped, "a.ipynb"), nb("a, version 2"));
    writeFileSync(path.join(shipped, "b.ipynb"), nb("b, version 2"));
    const mine = nb("b with my outputs");
    writeFileSync(path.join(ws, "b.ipynb"), mine);
    rmSync(path.join(ws, "teacher", "a.ipynb"));
    const r = prepareWorkspace(ws, shipped);
    expect(r).toEqual({ "a.ipynb": "updated", "b.ipynb": "kept", "teacher/a.ipynb": "deleted" });
    expect(read(ws, "a.ipynb")).toBe(nb("a, version 2"));
    expect(read(ws, "b.ipynb")).toBe(mine);
    expect(existsSync(path.join(ws, "teacher", "a.ipynb"))).toBe(false);
  });

  it("keeps a same-named notebook it did not copy itself", () => {
    mkdirSync(ws, { recursive: true });
    writeFileSync(path.join(ws, "a.ipynb"), nb("someone else's a"));
    expect(prepareWorkspace(ws, shipped)["a.ipynb"]).toBe("kept");
    expect(read(ws, "a.ipynb")).toBe(nb("someone else's a"));
  });

  it("refuses a damaged manifest, naming it, and copies nothing", () => {
    mkdirSync(ws, { recursive: true });
    writeFileSync(path.join(ws, MANIFEST), "{not json");
    expect(() => prepareWorkspace(ws, shipped)).toThrow(path.join(ws, MANIFEST));
    expect(existsSync(path.join(ws, "a.ipynb"))).toBe(false);
  });
});
