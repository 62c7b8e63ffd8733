#!/usr/bin/env node
// Round-trip of a trivial cell through the real kernel process over zeromq: from sending
// execute_request to receiving both execute_reply (shell) and the idle status (IOPub).
// Prints p50/p95 over 50 cells after 5 warm-up cells. Needs `npm run build` first.
// Usage: node kernel/bench/roundtrip.mjs [cells=50]
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const zmq = require("zeromq");
const { decode, encode, makeHeader } = require("./dist/wire.js");
const { writeConnectionFile } = require("./dist/transport.js");

const CELLS = Number(process.argv[2] ?? 50);
const WARMUP = 5;
const KEY = "bench-key";

const dir = mkdtempSync(join(tmpdir(), "mmulab-bench-"));
const conn = join(dir, "conn.json");
const { shell_port: shellPort, iopub_port: iopubPort } = await writeConnectionFile(conn, KEY);
const started = Date.now();
const kernel = spawn(
  process.execPath,
  [join(root, "bin", "mmulab-kernel.js"), "kernel", "--connection-file", conn],
  {
    cwd: dir,
    stdio: ["ignore", "inherit", "pipe"],
  },
);
kernel.stderr.resume();

const shell = new zmq.Dealer();
const iopub = new zmq.Subscriber();
shell.connect(`tcp://127.0.0.1:${shellPort}`);
iopub.connect(`tcp://127.0.0.1:${iopubPort}`);
iopub.subscribe();

const idle = new Map();
let iopubSeen = 0;
(async () => {
  for await (const frames of iopub) {
    const m = decode(frames, KEY);
    iopubSeen++;
    if (m.header.msg_type === "status" && m.content.execution_state === "idle") {
      idle.get(m.parent_header.msg_id)?.();
    }
  }
})().catch(() => {});

async function roundtrip(msgType, content, waitIdle = true) {
  const header = makeHeader(msgType, "bench");
  const gotIdle = waitIdle ? new Promise((resolve) => idle.set(header.msg_id, resolve)) : null;
  const t0 = process.hrtime.bigint();
  await shell.send(
    encode({ identities: [], header, parent_header: {}, metadata: {}, content }, KEY),
  );
  for (;;) {
    const r = decode(await shell.receive(), KEY);
    if (r.parent_header.msg_id === header.msg_id) break;
  }
  await gotIdle;
  idle.delete(header.msg_id);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

shell.receiveTimeout = 60000;
// zeromq's pending receive does not keep Node's event loop alive before the peer binds.
const keepAlive = setInterval(() => {}, 1000);
// Ready once kernel_info is answered AND IOPub delivers (a subscriber joins late and misses the
// first messages): repeat kernel_info until a status message arrives, as jupyter_client does.
const startup = await roundtrip("kernel_info_request", {}, false);
while (iopubSeen === 0) {
  await roundtrip("kernel_info_request", {}, false);
  await new Promise((r) => setTimeout(r, 50));
}
const readyMs = Date.now() - started;
const times = [];
for (let i = 0; i < WARMUP + CELLS; i++) {
  const ms = await roundtrip("execute_request", {
    code: `${i} + 1`,
    silent: false,
    store_history: true,
  });
  if (i >= WARMUP) times.push(ms);
}
times.sort((a, b) => a - b);
const pct = (p) => times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)];
console.log(
  `kernel ready (first kernel_info answered) after ${readyMs} ms (that request: ${startup.toFixed(1)} ms)`,
);
console.log(
  `trivial cell round-trip over ${CELLS} cells: p50 ${pct(50).toFixed(2)} ms, p95 ${pct(95).toFixed(2)} ms, ` +
    `min ${times[0].toFixed(2)} ms, max ${times[times.length - 1].toFixed(2)} ms (goal p50 < 100 ms)`,
);
clearInterval(keepAlive);
kernel.kill("SIGKILL");
shell.close();
iopub.close();
process.exit(0);
