/**
 * The protocol handler with the real tslab engine, without sockets: requests go in through
 * `handle`, and every reply/publication lands in a recording outbox.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../src/engine";
import { codePointToUtf16, KernelHandler, type Outbox, utf16ToCodePoint } from "../src/handler";
import { type Message, makeHeader } from "../src/wire";
import { REPO_ROOT } from "./support";

interface Sent {
  kind: "publish" | "reply";
  msgType: string;
  content: Record<string, unknown>;
  parentId: string | undefined;
}

const sent: Sent[] = [];
const outbox: Outbox = {
  publish: (msgType, content, parent) =>
    sent.push({
      kind: "publish",
      msgType,
      content: content as Record<string, unknown>,
      parentId: parent?.header.msg_id,
    }),
  reply: (request, msgType, content) =>
    sent.push({
      kind: "reply",
      msgType,
      content: content as Record<string, unknown>,
      parentId: request.header.msg_id,
    }),
};

let shutdowns: boolean[] = [];
let handler: KernelHandler;
let detach: () => void;

beforeAll(() => {
  handler = new KernelHandler(new Engine(process.cwd()), outbox, {
    log: () => {},
    onShutdown: (restart) => shutdowns.push(restart),
  });
  detach = handler.attach();
});
afterAll(() => detach());

function request(msgType: string, content: Record<string, unknown>): Message {
  return {
    identities: [],
    header: makeHeader(msgType, "test"),
    parent_header: {},
    metadata: {},
    content,
    buffers: [],
  };
}

/** Sends one request and returns what the handler sent for it. */
async function send(msgType: string, content: Record<string, unknown>): Promise<Sent[]> {
  const msg = request(msgType, content);
  await handler.handle(msg, "shell");
  return sent.filter((s) => s.parentId === msg.header.msg_id);
}

function only(out: Sent[], msgType: string): Sent {
  const found = out.filter((s) => s.msgType === msgType);
  expect(found, `${msgType} in ${JSON.stringify(out.map((s) => s.msgType))}`).toHaveLength(1);
  return found[0]!;
}

const exec = (code: string, extra: Record<string, unknown> = {}) =>
  send("execute_request", { code, silent: false, store_history: true, ...extra });

/**
 * A cell prefix: a TDP VM (MAXPHYADDR 46: 4-level EPT) with 1 GiB of 4 KiB pages, a 4-level
 * guest mapping one page at 0x400000, a vCPU `vcpu`.
 */
const GUEST_CELL =
  'import { createVm, GuestPageTableBuilder } from "@mmulab/core";\n' +
  'const vm = createVm({ mmu: "tdp", maxPhysAddrBits: 46 });\n' +
  "vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 1 << 30, flags: 0 });\n" +
  'const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 0x100000, poolSize: 0x100000 });\n' +
  "b.map(0x400000, 0x200000, 0x1000, { writable: true, user: true });\n" +
  "const vcpu = vm.createVcpu();\n" +
  "vcpu.setSregs(b.sregs({ nx: true }));\n";
describe("KernelHandler", () => {
  it("answers kernel_info with status and language_info, between busy and idle", async () => {
    const out = await send("kernel_info_request", {});
    expect(out.map((s) => `${s.kind}:${s.msgType}`)).toEqual([
      "publish:status",
      "reply:kernel_info_reply",
      "publish:status",
    ]);
    expect(out[0]!.content.execution_state).toBe("busy");
    expect(out[2]!.content.execution_state).toBe("idle");
    const c = out[1]!.content as {
      status: string;
      protocol_version: string;
      language_info: { name: string; file_extension: string };
    };
    expect(c.status).toBe("ok");
    expect(c.protocol_version).toBe("5.3");
    expect(c.language_info.name).toBe("typescript");
    expect(c.language_info.file_extension).toBe(".ts");
  });

  it("publishes execute_input and an execute_result with the execution count", async () => {
    const out = await exec("const base = 40;\nbase + 2");
    const input = only(out, "execute_input").content;
    const result = only(out, "execute_result").content as {
      execution_count: number;
      data: Record<string, string>;
    };
    const reply = only(out, "execute_reply").content;
    expect(input.execution_count).toBe(result.execution_count);
    expect(reply.execution_count).toBe(result.execution_count);
    expect(reply.status).toBe("ok");
    expect(result.data["text/plain"]).toBe("42");
    // the next cell gets the next count
    const next = only(await exec("base"), "execute_reply").content;
    expect(next.execution_count).toBe((result.execution_count as number) + 1);
  });

  it("silent execution sends no execute_input and keeps the count", async () => {
    const before = only(await exec("1"), "execute_reply").content.execution_count as number;
    const out = await exec("2", { silent: true, store_history: false });
    expect(out.some((s) => s.msgType === "execute_input" || s.msgType === "execute_result")).toBe(
      false,
    );
    expect(only(out, "execute_reply").content.execution_count).toBe(before);
  });

  it("reports a compile error with the cell's line:column", async () => {
    const code = 'let fine = 1;\nconst wrong: number = "text";';
    // TypeScript reports TS2322 at the declared name: line 2, column of `wrong`, 1-based.
    const column = code.split("\n")[1]!.indexOf("wrong") + 1;
    const out = await exec(code);
    const err = only(out, "error").content as {
      ename: string;
      evalue: string;
      traceback: string[];
    };
    expect(err.ename).toBe("TSCompileError");
    expect(err.evalue).toContain(`2:${column} - error TS2322`);
    // the traceback shows the line and a caret under `wrong` (5 characters)
    expect(err.traceback.slice(1, 3)).toEqual([
      `    ${code.split("\n")[1]}`,
      `    ${" ".repeat(column - 1)}^^^^^`,
    ]);
    const reply = only(out, "execute_reply").content;
    expect(reply.status).toBe("error");
    expect(reply.ename).toBe("TSCompileError");
    expect(out.some((s) => s.msgType === "stream")).toBe(false);
  });

  it("reports a thrown error with ename/evalue/traceback and runs the requests queued behind it", async () => {
    const a = request("execute_request", { code: 'throw new RangeError("no such gfn 0x42")' });
    const b = request("execute_request", { code: '"still here"' });
    // Both arrive before the first finishes, as when a notebook runs all cells.
    await Promise.all([handler.handle(a, "shell"), handler.handle(b, "shell")]);
    const outA = sent.filter((s) => s.parentId === a.header.msg_id);
    const err = only(outA, "error").content as {
      ename: string;
      evalue: string;
      traceback: string[];
    };
    expect(err.ename).toBe("RangeError");
    expect(err.evalue).toBe("no such gfn 0x42");
    expect(err.traceback[0]).toBe("RangeError: no such gfn 0x42");
    expect(err.traceback.some((l) => /tslab[\\/]dist/.test(l))).toBe(false);
    const outB = sent.filter((s) => s.parentId === b.header.msg_id);
    expect(only(outB, "execute_reply").content.status).toBe("ok");
    expect(
      (only(outB, "execute_result").content.data as Record<string, string>)["text/plain"],
    ).toBe("still here");
  });

  /** The error a cell published and its execution count. */
  async function failing(code: string): Promise<{ traceback: string[]; count: number }> {
    const out = await exec(code);
    const err = only(out, "error").content as { traceback: string[] };
    return {
      traceback: err.traceback,
      count: only(out, "execute_input").content.execution_count as number,
    };
  }

  /** 1-based line and column of the first `needle` in `code`. */
  function positionOf(code: string, needle: string): string {
    const lines = code.split("\n");
    const line = lines.findIndex((l) => l.includes(needle));
    return `${line + 1}:${lines[line]!.indexOf(needle) + 1}`;
  }

  it("a runtime error's traceback names the cell line that threw, without the kernel's frames", async () => {
    const code = 'const first = 1;\nconst second = first + 1;\nthrow new RangeError("third line");';
    const { traceback, count } = await failing(code);
    // V8 places an error at its construction: the `new` of line 3.
    expect(traceback.slice(0, 2)).toEqual([
      "RangeError: third line",
      `    at Cell [${count}], line ${positionOf(code, "new RangeError")}`,
    ]);
    for (const line of traceback) {
      expect(line).not.toMatch(/node:|evalmachine|tslab[\\/]dist|kernel[\\/](dist|src)[\\/]/);
    }
  });

  it("a function of an earlier cell throwing when a later cell calls it: both cells' lines", async () => {
    const define =
      'function checkGfn(gfn: number) {\n  if (gfn > 0xff) {\n    throw new RangeError("gfn " + gfn + " is outside the slot");\n  }\n  return gfn;\n}';
    const defined = await exec(define);
    const defineCount = only(defined, "execute_input").content.execution_count as number;
    const call = "const ok = checkGfn(1);\ncheckGfn(0x100);";
    const { traceback, count } = await failing(call);
    expect(traceback.slice(0, 3)).toEqual([
      "RangeError: gfn 256 is outside the slot",
      `    at checkGfn (Cell [${defineCount}], line ${positionOf(define, "new RangeError")})`,
      `    at Cell [${count}], line ${positionOf(call, "checkGfn(0x100)")}`,
    ]);
  });

  it("frames inside @mmulab/core show the package name and core's TypeScript source line", async () => {
    const code =
      'import { createVm } from "@mmulab/core";\nconst bad = createVm({ mmu: "tdp" });\nbad.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 1, flags: 0 });';
    const out = await exec(code);
    const err = only(out, "error").content as { ename: string; traceback: string[] };
    const count = only(out, "execute_input").content.execution_count as number;
    expect(err.traceback.join("\n")).not.toContain(REPO_ROOT);
    // The top frame is where core constructs the error: that line of core's source says so.
    const top = /\(@mmulab\/core\/(src\/[\w/]+\.ts):(\d+):\d+\)$/.exec(err.traceback[1]!);
    expect(top, err.traceback[1]).not.toBeNull();
    const source = readFileSync(join(REPO_ROOT, "core", top![1]!), "utf8").split("\n");
    expect(source[Number(top![2]) - 1]).toContain(`new ${err.ename}(`);
    expect(err.traceback).toContain(
      `    at Cell [${count}], line ${positionOf(code, "setUserMemoryRegion")}`,
    );
  });

  const resultText = (out: Sent[]) =>
    (only(out, "execute_result").content.data as Record<string, string>)["text/plain"];

  it("a cell that throws keeps the declarations whose initialisers ran, and says which are gone", async () => {
    const code = [
      'import { createVm } from "@mmulab/core";',
      'const keptVm = createVm({ mmu: "tdp" });',
      "const keptCount = 3;",
      "keptVm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 1, flags: 0 });",
      "const neverSet = 4;",
    ].join("\n");
    const { traceback } = await failing(code);
    expect(traceback.slice(-2)).toEqual([
      "defined before the cell stopped: createVm, keptVm, keptCount",
      "not defined (not reached): neverSet",
    ]);
    // The vm is there, typed (the next cell compiles against it) and usable.
    const next = await exec(
      'keptVm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 4096, flags: 0 });\ntypeof keptVm.createVcpu + " " + keptCount',
    );
    expect(only(next, "execute_reply").content.status).toBe("ok");
    expect(resultText(next)).toBe("function 3");
    const gone = only(await exec("neverSet"), "error").content;
    expect(gone.ename).toBe("TSCompileError");
    expect(gone.evalue).toMatch(/Cannot find name 'neverSet'/);
  });

  it("an interrupted async cell keeps what it declared before the interrupt", async () => {
    const msg = request("execute_request", {
      code: "const beforeWait = 41;\nawait new Promise((r) => setTimeout(r, 5_000));\nconst afterWait = 1;",
    });
    const done = handler.handle(msg, "shell");
    setTimeout(() => handler.interrupt(), 300);
    await done;
    const out = sent.filter((s) => s.parentId === msg.header.msg_id);
    const err = only(out, "error").content as { ename: string; traceback: string[] };
    expect(err.ename).toBe("Interrupted");
    expect(err.traceback).toContain("defined before the cell stopped: beforeWait");
    expect(resultText(await exec("beforeWait + 1"))).toBe("42");
  });

  it("a name redeclared by a failing cell before its initialiser ran is reported gone, not left stale", async () => {
    await exec("let stale = 1;");
    const { traceback } = await failing('throw new Error("early");\nlet stale = 2;');
    expect(traceback.at(-1)).toBe("not defined (not reached): stale");
    expect(only(await exec("stale"), "error").content.ename).toBe("TSCompileError");
  });

  it("forwards stdout and stderr as stream messages", async () => {
    const out = await exec('process.stdout.write("to out\\n"); process.stderr.write("to err\\n");');
    const streams = out
      .filter((s) => s.msgType === "stream")
      .map((s) => [s.content.name, s.content.text]);
    expect(streams).toEqual([
      ["stdout", "to out\n"],
      ["stderr", "to err\n"],
    ]);
  });

  it("uses Symbol.for('Jupyter.display') for the execute_result bundle", async () => {
    const out = await exec(
      'const shown = { [Symbol.for("Jupyter.display")]() { return { "text/html": "<i>x</i>", "text/plain": "x" }; } };\nshown',
    );
    const data = only(out, "execute_result").content.data as Record<string, string>;
    expect(data).toEqual({ "text/html": "<i>x</i>", "text/plain": "x" });
  });

  it("display() sends ONE display_data with every MIME type of the bundle", async () => {
    const out = await exec(
      'import { display } from "@mmulab/kernel";\n' +
        'display({ version: 1, kind: "walk", mode: "4-level", gva: "0x1000", access: { write: true, user: false, fetch: false },' +
        ' levels: [], result: { fault: true, vector: 14, errorCode: 2, reason: "not present" } });',
    );
    const shown = only(out, "display_data").content as { data: Record<string, unknown> };
    expect(Object.keys(shown.data).sort()).toEqual([
      "application/vnd.mmulab.walk+json",
      "text/html",
      "text/plain",
    ]);
    expect(only(out, "execute_reply").content.status).toBe("ok");
  });

  it("a core object (walk result) is an execute_result carrying the walk MIME type, validated", async () => {
    const out = await exec(`${GUEST_CELL}vcpu.walk(0x400000)`);
    expect(only(out, "execute_reply").content.status).toBe("ok");
    const data = only(out, "execute_result").content.data as Record<string, unknown>;
    expect(Object.keys(data).sort()).toEqual([
      "application/vnd.mmulab.walk+json",
      "text/html",
      "text/plain",
    ]);
    const walk = data["application/vnd.mmulab.walk+json"] as { gva: string; levels: unknown[] };
    // 4-level paging walks PML4, PDPT, PD, PT for a 4 KiB mapping.
    expect(walk.gva).toBe("0x400000");
    expect(walk.levels).toHaveLength(4);
  });

  it("a 2-D walk is an execute_result carrying the walk2d MIME type; a bad walk2d payload is refused", async () => {
    const out = await exec(`${GUEST_CELL}vcpu.walk2d(0x400000)`);
    expect(only(out, "execute_reply").content.status).toBe("ok");
    const data = only(out, "execute_result").content.data as Record<string, unknown>;
    expect(Object.keys(data).sort()).toEqual([
      "application/vnd.mmulab.walk2d+json",
      "text/html",
      "text/plain",
    ]);
    // 4-level guest on 4-level EPT (MAXPHYADDR 46), 4 KiB host pages: (4 + 1)(4 + 1) - 1.
    const w = data["application/vnd.mmulab.walk2d+json"] as {
      references: number;
      columns: unknown[];
    };
    expect(w.references).toBe(24);
    expect(w.columns).toHaveLength(5);
    const bad = await exec(
      'import { display } from "@mmulab/kernel";\n' +
        'display({ version: 1, kind: "walk2d", mode: "4-level", eptLevels: 3, eptAccessDirty: true, gva: "0x1000",' +
        " access: { write: false, user: false, fetch: false }, columns: [], references: 0, violations: 0," +
        ' result: { fault: false, gpa: "0x1000" } });',
    );
    expect(bad.some((m) => m.msgType === "display_data")).toBe(false);
    expect((only(bad, "error").content as { evalue: string }).evalue).toMatch(/eptLevels/);
  });

  it("a payload failing the schema is a clear error in the cell and nothing is displayed", async () => {
    const out = await exec(
      'import { display } from "@mmulab/kernel";\n' +
        'display({ version: 1, kind: "pagetable", trees: [{ kind: "guest", format: "4-level", root: { level: 9, name: "PML4", size: 512, entries: [] } }] });',
    );
    expect(out.some((s) => s.msgType === "display_data")).toBe(false);
    const err = only(out, "error").content as { ename: string; evalue: string };
    expect(err.ename).toBe("DisplayError");
    expect(err.evalue).toContain("payload.trees[0].root.level");
    expect(err.evalue).toContain("(value: 9)");
  });

  it("plot() sends plotly JSON with an offline HTML fallback", async () => {
    const out = await exec(
      'import { plotSpteLevels } from "@mmulab/kernel";\n' +
        "plotSpteLevels([{ pages_4k: 512, pages_2m: 0, pages_1g: 0 }, { stat: { pages_4k: 0, pages_2m: 1, pages_1g: 0 } }]);",
    );
    const data = only(out, "display_data").content.data as Record<string, unknown>;
    const fig = data["application/vnd.plotly.v1+json"] as { data: { name: string; y: number[] }[] };
    expect(fig.data.map((t) => [t.name, t.y])).toEqual([
      ["pages_4k", [512, 0]],
      ["pages_2m", [0, 1]],
      ["pages_1g", [0, 0]],
    ]);
    expect(String(data["text/html"])).toContain("<svg");
    expect(String(data["text/html"])).not.toMatch(/<script|cdn/i);
  });

  it("progress: display_data then update_display_data with the same display_id; stops on interrupt", async () => {
    const code =
      'import { progress } from "@mmulab/kernel";\n' +
      "const bar = progress(1000000000, 'sim');\n" +
      "for (let i = 1; i <= 1000000000; i++) { bar.update(i); if (i % 1000 === 0) await new Promise((r) => setImmediate(r)); }";
    const msg = request("execute_request", { code });
    const done = handler.handle(msg, "shell");
    setTimeout(() => handler.interrupt(), 300);
    await done;
    const out = sent.filter((s) => s.parentId === msg.header.msg_id);
    const first = only(out, "display_data").content as { transient: { display_id: string } };
    const updates = out.filter((s) => s.msgType === "update_display_data");
    expect(updates.length).toBeGreaterThan(0);
    for (const u of updates)
      expect((u.content.transient as { display_id: string }).display_id).toBe(
        first.transient.display_id,
      );
    const last = updates[updates.length - 1]!.content.data as Record<string, string>;
    expect(last["text/plain"]).toMatch(/^sim: \d+\/1000000000 \(\d+%\) interrupted$/);
    const err = only(out, "error").content;
    expect(err.ename).toBe("Interrupted");
    // and the kernel answers the next cell
    expect(only(await exec("7 * 6"), "execute_reply").content.status).toBe("ok");
  });

  it("runDirtyLogPerf: a bar through every phase, then the result as a table and a plotly figure", async () => {
    // 4 vCPUs x 16 MiB, 2 iterations: dirty_log_perf_test's phases are populate, enable,
    // 2 x (dirty, get), disable = 7; the populate pass touches 4 x 4096 pages, one fault each,
    // and the guest walk reads its PML4 and PDPT pages (1 GiB guest pages), one fault each.
    const vcpus = 4;
    const pages = (16 * 2 ** 20) / 4096;
    const phases = 2 + 2 * 2 + 1;
    const msg = request("execute_request", {
      code:
        'import { runDirtyLogPerf } from "@mmulab/kernel";\n' +
        `await runDirtyLogPerf({ vcpus: ${vcpus}, bytesPerVcpu: ${pages * 4096}, iterations: 2 })`,
    });
    await handler.handle(msg, "shell");
    const out = sent.filter((s) => s.parentId === msg.header.msg_id);
    expect(only(out, "execute_reply").content.status).toBe("ok");
    const displays = out.filter((s) => s.msgType === "display_data");
    expect(displays).toHaveLength(2); // the bar, then the table
    const first = displays[0]!.content.data as Record<string, string>;
    const table = String((displays[1]!.content.data as Record<string, string>)["text/html"]);
    expect(table).toContain("<table");
    expect(table).toContain("iteration 2 get dirty log");
    expect(first["text/plain"]).toMatch(
      new RegExp(
        `^dirty_log_perf_test: 0/${phases * 1000} \\(0%\\) · populate memory \\(1/${phases}\\)$`,
      ),
    );
    const updates = out.filter((s) => s.msgType === "update_display_data");
    const last = updates[updates.length - 1]!.content.data as Record<string, string>;
    expect(last["text/plain"]).toBe(
      `dirty_log_perf_test: ${phases * 1000}/${phases * 1000} (100%) done · disable dirty logging (${phases}/${phases})`,
    );
    const result = only(out, "execute_result").content.data as Record<string, unknown>;
    expect(String(result["text/html"])).toContain("<table");
    expect(String(result["text/html"])).toContain("populate memory");
    expect(String(result["text/html"])).toContain("<svg");
    const fig = result["application/vnd.plotly.v1+json"] as {
      data: { name: string; x: string[]; y: number[] }[];
    };
    const faults = fig.data.find((t) => t.name === "faults")!;
    expect(faults.x).toHaveLength(phases);
    expect(faults.y[0]).toBe(vcpus * pages + 2);
  });

  it("runDirtyLogPerf stops on interrupt between slices, the bar says so, the kernel answers", async () => {
    // 8 vCPUs x 4 GiB: 8 M accesses a pass, far longer than the 1.5 s before the interrupt.
    const msg = request("execute_request", {
      code:
        'import { runDirtyLogPerf } from "@mmulab/kernel";\n' +
        "await runDirtyLogPerf({ vcpus: 8, bytesPerVcpu: 4 * 2 ** 30, iterations: 2 })",
    });
    const t0 = Date.now();
    const done = handler.handle(msg, "shell");
    setTimeout(() => handler.interrupt(), 1500);
    await done;
    console.log(`runDirtyLogPerf interrupted: cell ended ${Date.now() - t0} ms after it started`);
    const out = sent.filter((s) => s.parentId === msg.header.msg_id);
    expect(only(out, "error").content.ename).toBe("Interrupted");
    const updates = out.filter((s) => s.msgType === "update_display_data");
    const last = updates[updates.length - 1]!.content.data as Record<string, string>;
    expect(last["text/plain"]).toMatch(/^dirty_log_perf_test: \d+\/\d+ \(\d+%\) interrupted · /);
    expect(only(await exec("7 * 6"), "execute_reply").content.status).toBe("ok");
  });

  it("runSweep: a bar of points with running/failed counts, then the result table; a failing point is listed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mmulab-kernel-sweep-"));
    try {
      // 2 x 2 = 4 points. 1 vCPU x 1 MiB cannot be backed by 2 MiB host pages (a slot holds
      // whole host pages), so exactly that thp point fails; the other three finish.
      const msg = request("execute_request", {
        code:
          'import { runSweep } from "@mmulab/kernel";\n' +
          `const sw = await runSweep({ vcpus: [1, 2], bytesPerVcpu: [2 ** 20], backing: ["4k", "thp"] }, "populate", { dir: ${JSON.stringify(dir)}, workers: 2 });`,
      });
      await handler.handle(msg, "shell");
      const out = sent.filter((s) => s.parentId === msg.header.msg_id);
      expect(only(out, "execute_reply").content.status).toBe("ok");
      const id = String(
        (only(await exec("sw.id"), "execute_result").content.data as Record<string, string>)[
          "text/plain"
        ],
      ).replaceAll("'", "");
      expect(id).toMatch(/^[0-9a-f]{16}$/);
      const displays = out.filter((s) => s.msgType === "display_data");
      expect(displays).toHaveLength(2); // the bar, then the table
      const first = displays[0]!.content.data as Record<string, string>;
      expect(first["text/plain"]).toBe(`sweep ${id.slice(0, 8)}: 0/4 (0%) · running 0, failed 0`);
      const updates = out.filter((s) => s.msgType === "update_display_data");
      const last = updates[updates.length - 1]!.content.data as Record<string, string>;
      expect(last["text/plain"]).toBe(
        `sweep ${id.slice(0, 8)}: 4/4 (100%) done · running 0, failed 1`,
      );
      const table = displays[1]!.content.data as Record<string, string>;
      expect(table["text/plain"]).toContain(
        `sweep ${id} (populate): 4 points, 3 done, 1 failed, 0 skipped`,
      );
      expect(table["text/html"]).toContain("<table");
      const failed = only(await exec("sw.failed.map((f) => f.point)"), "execute_result").content
        .data as Record<string, string>;
      expect(failed["text/plain"]).toContain("backing: 'thp'");
      expect(failed["text/plain"]).toContain("vcpus: 1");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runSweep stops its pool on interrupt: the bar says interrupted, no point finishes afterwards", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mmulab-kernel-sweep-"));
    try {
      // 20 points of 4 vCPUs x 1 GiB on 4 KiB pages, ~0.4 s each: far longer than 1.5 s.
      const msg = request("execute_request", {
        code:
          'import { runSweep } from "@mmulab/kernel";\n' +
          `await runSweep({ seed: [...Array(20).keys()], vcpus: [4], bytesPerVcpu: [2 ** 30] }, "populate", { dir: ${JSON.stringify(dir)}, workers: 2 })`,
      });
      const t0 = Date.now();
      const done = handler.handle(msg, "shell");
      setTimeout(() => handler.interrupt(), 1500);
      await done;
      console.log(`runSweep interrupted: cell ended ${Date.now() - t0} ms after it started`);
      const out = sent.filter((s) => s.parentId === msg.header.msg_id);
      expect(only(out, "error").content.ename).toBe("Interrupted");
      const updates = out.filter((s) => s.msgType === "update_display_data");
      const last = updates[updates.length - 1]!.content.data as Record<string, string>;
      expect(last["text/plain"]).toMatch(/^sweep [0-9a-f]{8}: \d+\/20 \(\d+%\) interrupted · /);
      // The pool's threads are gone: no point is stored after the interrupt took effect.
      await new Promise((r) => setTimeout(r, 300));
      const [sweepDir] = readdirSync(dir);
      const stored = () => readdirSync(join(dir, sweepDir!, "points")).length;
      const before = stored();
      expect(before).toBeLessThan(20);
      await new Promise((r) => setTimeout(r, 1500));
      expect(stored()).toBe(before);
      expect(only(await exec("7 * 6"), "execute_reply").content.status).toBe("ok");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("inspect shows TSDoc {@link X} of a core method as X (markdown: `X`), never the raw tag", async () => {
    // The expectation comes from core's source: the doc comment above setUserMemoryRegion.
    const src = readFileSync(join(REPO_ROOT, "core", "src", "kvm", "kvm_main.ts"), "utf8");
    const method = src.indexOf("  setUserMemoryRegion(");
    const doc = src.slice(src.lastIndexOf("/**", method), method);
    const linked = [...doc.matchAll(/\{@link\s+([\w.]+)\s*\}/g)].map((m) => m[1]!);
    expect(linked.length, "core's doc of setUserMemoryRegion has a {@link}").toBeGreaterThan(0);
    const code =
      'import { createVm } from "@mmulab/core";\nconst vm = createVm({ mmu: "tdp" });\nvm.setUserMemoryRegion';
    const insp = only(
      await send("inspect_request", { code, cursor_pos: code.length - 2, detail_level: 0 }),
      "inspect_reply",
    ).content;
    const data = insp.data as Record<string, string>;
    expect(insp.found).toBe(true);
    expect(data["text/plain"]).toContain("setUserMemoryRegion(region: UserMemoryRegion)");
    for (const name of linked) {
      expect(data["text/plain"]).toMatch(new RegExp(`\\b${name}\\b`));
      expect(data["text/markdown"]).toContain(`\`${name}\``);
    }
    expect(data["text/plain"]).not.toContain("{@");
    expect(data["text/markdown"]).not.toContain("{@");
  });

  it("inspect inside a call's parentheses or right after a name shows the callee's doc", async () => {
    const head = 'import { createVm } from "@mmulab/core";\nconst vm = createVm({ mmu: "tdp" });\n';
    for (const tail of [
      "vm.setUserMemoryRegion",
      "vm.setUserMemoryRegion(",
      "vm.setUserMemoryRegion({ slot: 0, flags: Math.max(1, 2), ",
    ]) {
      const code = head + tail;
      const insp = only(
        await send("inspect_request", { code, cursor_pos: code.length, detail_level: 0 }),
        "inspect_reply",
      ).content;
      expect(insp.found, tail).toBe(true);
      expect((insp.data as Record<string, string>)["text/plain"], tail).toContain(
        "setUserMemoryRegion(region: UserMemoryRegion)",
      );
    }
    // Nothing to show is still an answer: not found, no data.
    const none = only(
      await send("inspect_request", { code: "   ", cursor_pos: 1, detail_level: 0 }),
      "inspect_reply",
    ).content;
    expect(none.found).toBe(false);
  });

  it("inspect renders every inline-link form as its label, in the doc and in tags", async () => {
    const code = [
      "class Foo {}",
      "/**",
      " * A {@link Foo}, {@link Foo | the foo}, {@linkcode Foo}, {@linkplain Foo plain words},",
      " * {@link Missing}, {@link https://example.com | the site}.",
      " * @param n how many {@link Foo}s",
      " * @throws {@link RangeError} when n < 0",
      " */",
      "function make(n: number): Foo[] { return []; }",
      "make",
    ].join("\n");
    const insp = only(
      await send("inspect_request", { code, cursor_pos: code.length - 1, detail_level: 0 }),
      "inspect_reply",
    ).content;
    const data = insp.data as Record<string, string>;
    expect(data["text/plain"]).toBe(
      [
        "function make(n: number): Foo[]",
        "",
        "A Foo, the foo, Foo, plain words,",
        "Missing, the site.",
        "",
        "@param n how many Foos",
        "@throws RangeError when n < 0",
      ].join("\n"),
    );
    expect(data["text/markdown"]).toContain(
      "A `Foo`, the foo, `Foo`, plain words,\n`Missing`, [the site](https://example.com).",
    );
    expect(data["text/markdown"]).toContain("*@param* `n` — how many `Foo`s");
    expect(data["text/markdown"]).toContain("*@throws* `RangeError` when n < 0");
  });

  it("answers is_complete, complete, inspect, comm_info and history", async () => {
    expect(
      only(await send("is_complete_request", { code: "const a = 1;" }), "is_complete_reply").content
        .status,
    ).toBe("complete");
    expect(
      only(await send("is_complete_request", { code: "if (a) {" }), "is_complete_reply").content
        .status,
    ).toBe("incomplete");
    // cursor_pos counts code points: "😀" is one, though two UTF-16 units.
    const code = 'const s = "😀"; Math.ma';
    const cp = [...code].length;
    const comp = only(
      await send("complete_request", { code, cursor_pos: cp }),
      "complete_reply",
    ).content;
    expect(comp.matches).toContain("max");
    expect(comp.cursor_end).toBe(cp);
    expect(comp.cursor_start).toBe(cp - 2);
    const insp = only(
      await send("inspect_request", { code: "Math.max", cursor_pos: 6, detail_level: 0 }),
      "inspect_reply",
    ).content;
    expect(insp.found).toBe(true);
    expect(String((insp.data as Record<string, string>)["text/plain"])).toContain("max(");
    expect(only(await send("comm_info_request", {}), "comm_info_reply").content).toEqual({
      status: "ok",
      comms: {},
    });
    const hist = only(
      await send("history_request", { hist_access_type: "tail", n: 1, output: false, raw: true }),
      "history_reply",
    ).content;
    expect(hist.status).toBe("ok");
    expect((hist.history as unknown[]).length).toBe(1);
  });

  it("shutdown_request replies and calls onShutdown", async () => {
    shutdowns = [];
    const out = await send("shutdown_request", { restart: true });
    expect(
      only(
        out.filter((s) => s.kind === "reply"),
        "shutdown_reply",
      ).content,
    ).toEqual({ status: "ok", restart: true });
    expect(shutdowns).toEqual([true]);
  });
});

describe("cursor conversion", () => {
  it("maps code points to UTF-16 offsets and back", () => {
    const s = "a😀b";
    expect(codePointToUtf16(s, 2)).toBe(3);
    expect(utf16ToCodePoint(s, 3)).toBe(2);
    expect(codePointToUtf16(s, 3)).toBe(4);
  });
});

describe("SpteSeries", () => {
  it("copies the counts at record time, so a live stats object can be recorded repeatedly", async () => {
    const { SpteSeries, spteLevelFigure } = await import("../src/helpers");
    const live = { pages_4k: 1, pages_2m: 0, pages_1g: 0 };
    const series = new SpteSeries().record("a", live);
    live.pages_4k = 512;
    live.pages_2m = 3;
    series.record("b", { stats: live });
    const fig = spteLevelFigure(series.steps);
    expect(fig.data.map((t) => [t.name, t.x, t.y])).toEqual([
      ["pages_4k", ["a", "b"], [1, 512]],
      ["pages_2m", ["a", "b"], [0, 3]],
      ["pages_1g", ["a", "b"], [0, 0]],
    ]);
    expect(() => series.record("c", { pages_4k: -1, pages_2m: 0, pages_1g: 0 })).toThrow(
      "steps[2].pages_4k must be a non-negative integer count, got -1",
    );
  });
});
