/**
 * The real kernel process over real zeromq sockets, spoken to from here with zeromq's client
 * sockets: signing, kernel_info, compile errors with line:column, and requests sent back to back
 * behind a failing cell are all answered.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { writeConnectionFile } from "../src/transport";
import { decode, encode, type Message, makeHeader } from "../src/wire";
import { KERNEL_ROOT, REPO_ROOT } from "./support";

const KEY = "9f1c2d3e-wire-level-test-key";

let kernel: ChildProcess;
let shell: zmq.Dealer;
let control: zmq.Dealer;
let iopub: zmq.Subscriber;
const iopubMessages: Message[] = [];
const session = "wire-level-client";
let stderr = "";

beforeAll(async () => {
  // Under kernel/ so cells resolve @mmulab/kernel through the workspace's node_modules.
  mkdirSync(join(KERNEL_ROOT, "test-artifacts"), { recursive: true });
  const dir = mkdtempSync(join(KERNEL_ROOT, "test-artifacts", "wire-"));
  const connFile = join(dir, "kernel.json");
  const {
    shell_port: shellPort,
    control_port: controlPort,
    iopub_port: iopubPort,
  } = await writeConnectionFile(connFile, KEY);
  kernel = spawn(
    process.execPath,
    [join(KERNEL_ROOT, "bin", "mmulab-kernel.js"), "kernel", "--connection-file", connFile],
    {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  kernel.stderr!.on("data", (d) => {
    stderr += String(d);
  });
  shell = new zmq.Dealer();
  control = new zmq.Dealer();
  iopub = new zmq.Subscriber();
  shell.connect(`tcp://127.0.0.1:${shellPort}`);
  control.connect(`tcp://127.0.0.1:${controlPort}`);
  iopub.connect(`tcp://127.0.0.1:${iopubPort}`);
  iopub.subscribe();
  void (async () => {
    for await (const frames of iopub) iopubMessages.push(decode(frames, KEY));
  })().catch(() => {});
  // Ready when kernel_info is answered (the kernel binds after creating the compiler) and IOPub
  // delivers: a late subscriber misses the first messages, so repeat until a status arrives.
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await request(shell, "kernel_info_request", {}, 2000);
      if (iopubMessages.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    } catch (e) {
      if (Date.now() > deadline)
        throw new Error(`kernel did not start: ${(e as Error).message}\n${stderr}`);
    }
  }
});

afterAll(async () => {
  if (kernel.exitCode === null) kernel.kill("SIGKILL");
  for (const s of [shell, control, iopub]) s?.close();
});

function send(sock: zmq.Dealer, msgType: string, content: Record<string, unknown>): Message {
  const msg: Message = {
    identities: [],
    header: makeHeader(msgType, session),
    parent_header: {},
    metadata: {},
    content,
    buffers: [],
  };
  void sock.send(encode(msg, KEY));
  return msg;
}

async function receive(sock: zmq.Dealer, timeoutMs: number): Promise<Message> {
  sock.receiveTimeout = timeoutMs;
  return decode(await sock.receive(), KEY);
}

async function request(
  sock: zmq.Dealer,
  msgType: string,
  content: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<Message> {
  const msg = send(sock, msgType, content);
  for (;;) {
    const reply = await receive(sock, timeoutMs);
    if ((reply.parent_header as { msg_id?: string }).msg_id === msg.header.msg_id) return reply;
  }
}

/** IOPub messages answering `msg`, once its idle status arrived. */
async function outputsOf(msg: Message): Promise<Message[]> {
  const id = msg.header.msg_id;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const mine = iopubMessages.filter(
      (m) => (m.parent_header as { msg_id?: string }).msg_id === id,
    );
    if (mine.some((m) => m.header.msg_type === "status" && m.content.execution_state === "idle"))
      return mine;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no idle status for ${msg.header.msg_type}`);
}

describe("kernel over zeromq", () => {
  it("signs replies and answers kernel_info on shell and control", async () => {
    const r1 = await request(shell, "kernel_info_request", {});
    expect(r1.header.msg_type).toBe("kernel_info_reply");
    expect(r1.content.status).toBe("ok");
    const r2 = await request(control, "kernel_info_request", {});
    expect(r2.header.msg_type).toBe("kernel_info_reply");
  });

  it("language_info of kernel_info_reply is what every committed notebook carries", async () => {
    const reply = await request(shell, "kernel_info_request", {});
    const info = reply.content.language_info as Record<string, unknown>;
    const dirs = [join(REPO_ROOT, "notebooks"), join(REPO_ROOT, "notebooks", "teacher")];
    const files = dirs.flatMap((d) =>
      readdirSync(d)
        .filter((f) => f.endsWith(".ipynb"))
        .map((f) => join(d, f)),
    );
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const nb = JSON.parse(readFileSync(file, "utf8")) as { metadata: Record<string, unknown> };
      // JupyterLab writes the reply's object into the metadata as is: key order counts on save.
      expect(JSON.stringify(info), file).toBe(JSON.stringify(nb.metadata.language_info));
    }
  });

  it("answers every request sent back to back behind a failing cell", async () => {
    const cells = ['throw new Error("first fails")', "let x: number = 'no';", "6 * 7", '"last"'];
    const sent = cells.map((code) =>
      send(shell, "execute_request", { code, silent: false, store_history: true }),
    );
    const replies = new Map<string, Message>();
    while (replies.size < sent.length) {
      const r = await receive(shell, 30_000);
      replies.set((r.parent_header as { msg_id: string }).msg_id, r);
    }
    const statuses = sent.map((m) => replies.get(m.header.msg_id)!.content.status);
    expect(statuses).toEqual(["error", "error", "ok", "ok"]);
    const counts = sent.map((m) => replies.get(m.header.msg_id)!.content.execution_count as number);
    expect(counts.slice(1).map((c, i) => c - counts[i]!)).toEqual([1, 1, 1]);
    const compile = replies.get(sent[1]!.header.msg_id)!.content;
    // `x` is at column 5 of line 1 (1-based).
    expect(compile.evalue).toMatch(/^1:5 - error TS2322/);
    const out = await outputsOf(sent[2]!);
    const result = out.find((m) => m.header.msg_type === "execute_result")!;
    expect((result.content.data as Record<string, string>)["text/plain"]).toBe("42");
    const errOut = await outputsOf(sent[0]!);
    const err = errOut.find((m) => m.header.msg_type === "error")!;
    expect(err.content.ename).toBe("Error");
    expect(err.content.evalue).toBe("first fails");
  });

  it("SIGINT stops an awaiting cell, its progress display says so, and the next cell runs", async () => {
    const code =
      'import { progress } from "@mmulab/kernel";\n' +
      "const bar = progress(1_000_000_000, 'async sim');\n" +
      "for (let i = 1; i <= 1_000_000_000; i++) { bar.update(i); if (i % 1000 === 0) await new Promise((r) => setImmediate(r)); }";
    const long = send(shell, "execute_request", { code, silent: false, store_history: true });
    // wait until the progress display is updating, then interrupt as Jupyter does
    const deadline = Date.now() + 30_000;
    const mine = () =>
      iopubMessages.filter(
        (m) => (m.parent_header as { msg_id?: string }).msg_id === long.header.msg_id,
      );
    while (
      !mine().some((m) => m.header.msg_type === "update_display_data") &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    kernel.kill("SIGINT");
    const next = send(shell, "execute_request", {
      code: "6 * 7",
      silent: false,
      store_history: true,
    });
    const replies = new Map<string, Message>();
    while (replies.size < 2) {
      const r = await receive(shell, 30_000);
      replies.set((r.parent_header as { msg_id: string }).msg_id, r);
    }
    expect(replies.get(long.header.msg_id)!.content.ename).toBe("Interrupted");
    expect(replies.get(next.header.msg_id)!.content.status).toBe("ok");
    await outputsOf(long);
    const updates = mine().filter((m) => m.header.msg_type === "update_display_data");
    const last = updates[updates.length - 1]!.content.data as Record<string, string>;
    expect(last["text/plain"]).toMatch(/^async sim: \d+\/1000000000 \(\d+%\) interrupted$/);
    expect(kernel.exitCode).toBe(null);
  });

  it("shuts down on shutdown_request", async () => {
    const r = await request(control, "shutdown_request", { restart: false });
    expect(r.content).toEqual({ status: "ok", restart: false });
    const code = await new Promise<number | null>((resolve) => {
      if (kernel.exitCode !== null) resolve(kernel.exitCode);
      kernel.on("exit", (c) => resolve(c));
    });
    expect(code).toBe(0);
  });
});
