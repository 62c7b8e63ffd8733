/**
 * Real parts for the queue tests: a redis-server on a free loopback port and mmulab-worker
 * processes, each in its own process group so a test can SIGKILL exactly what it started.
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";

export const WORKER_BIN = path.resolve(__dirname, "../bin/mmulab-worker.js");

/** A process group a test started, with everything it printed so far. */
export interface Started {
  proc: ChildProcess;
  out: string[];
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited: Promise<number | string>;
}

const groups: ChildProcess[] = [];

/** A port nothing listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function start(cmd: string, args: string[]): Started {
  const proc = spawn(cmd, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  groups.push(proc);
  const out: string[] = [];
  let partial = "";
  const take = (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop()!;
    out.push(...lines);
  };
  proc.stdout!.on("data", take);
  proc.stderr!.on("data", take);
  const exited = new Promise<number | string>((resolve) =>
    proc.on("exit", (code, signal) => resolve(code ?? signal ?? "?")),
  );
  return { proc, out, exited };
}

/** Waits until a line of `s` matches `re` (or fails after `ms`, showing what it printed). */
export async function waitForLine(s: Started, re: RegExp, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!s.out.some((l) => re.test(l))) {
    if (s.proc.exitCode !== null || Date.now() - t0 > ms)
      throw new Error(`no line matching ${re} (exit ${s.proc.exitCode}):\n${s.out.join("\n")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A throwaway redis-server: no persistence, loopback only. */
export async function startRedis(
  extra: string[] = [],
): Promise<{ url: string; port: number; server: Started }> {
  const port = await freePort();
  const server = start("redis-server", [
    ...extra,
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
  ]);
  await waitForLine(server, /Ready to accept connections/);
  return { url: `redis://127.0.0.1:${port}`, port, server };
}

/** `mmulab-worker --queue url --concurrency 1`, once it has said it is taking points. */
export async function startWorker(url: string): Promise<Started> {
  const w = runWorker(["--queue", url, "--concurrency", "1"]);
  await waitForLine(w, /taking points from/);
  return w;
}

/** `mmulab-worker` with any arguments (for its argument checks). */
export function runWorker(args: string[]): Started {
  return start(process.execPath, [WORKER_BIN, ...args]);
}

/** SIGKILLs one started process group (gone already is fine). */
export function killGroup(p: ChildProcess): void {
  try {
    process.kill(-p.pid!, "SIGKILL");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
  }
}

/** SIGKILLs every process group started since the last call (for afterEach). */
export function killAll(): void {
  for (const p of groups.splice(0)) killGroup(p);
}
