/**
 * The interrupt watchdog's worker thread (see interrupt.ts). It holds an inspector session on the
 * main thread and a SIGINT relay process, and follows each SIGINT that reaches a running cell
 * until the cell has acted on it:
 * - still compiling: wait until it runs;
 * - still in its synchronous part {@link RESEND_MS} later: the SIGINT came before Node's
 *   breakOnSigint was armed, which swallows it; send the kernel a SIGINT again, which
 *   breakOnSigint now catches;
 * - awaiting and the main thread's handler has not run: ask the main thread to interrupt that
 *   cell (the same swallowing may have happened while it compiled), and if it still has not
 *   acted {@link GRACE_MS} later, the main thread is stuck in synchronous code that started after
 *   an await: terminate that execution.
 */
import { spawn } from "node:child_process";
import { Session } from "node:inspector";
import { parentPort, workerData } from "node:worker_threads";
import { clock, GRACE_MS, Phase, RELAY_SOURCE, RESEND_MS, RESENDS, Slot } from "./interrupt-shared";

const { state, base } = workerData as { state: Int32Array; base: number };
const report = (text: string) => parentPort?.postMessage(text);

const session = new Session();
session.connectToMainThread();

// Same process group as the kernel (not detached): Jupyter's killpg reaches it too.
const relay = spawn(process.execPath, ["-e", RELAY_SOURCE], {
  stdio: ["pipe", "pipe", "inherit"],
});
relay.on("error", (e) => report(`SIGINT relay failed to start: ${e.message}`));
relay.on("exit", (code, signal) => {
  report(
    `SIGINT relay exited (${signal ?? code}): interrupts reach async cells only between awaits`,
  );
});

let pending = "";
relay.stdout.setEncoding("utf8");
relay.stdout.on("data", (chunk: string) => {
  const lines = (pending + chunk).split("\n");
  pending = lines.pop() ?? "";
  for (const line of lines) onSigint(Number(line));
});

/** A SIGINT the relay got at `at` (Date.now()). */
function onSigint(at: number): void {
  Atomics.add(state, Slot.Sigints, 1);
  // No cell runs: the main thread's handler takes it (it flags nothing that outlives a cell).
  if (Atomics.load(state, Slot.Phase) === Phase.Idle) return;
  // Sent before this cell started (the relay's line came late): it was meant for an earlier
  // cell, which has acted on it or ended.
  if (Number.isFinite(at) && ((clock(base, at) - Atomics.load(state, Slot.Started)) | 0) < 0)
    return;
  follow(at, Atomics.load(state, Slot.Cell), Atomics.load(state, Slot.Handled), 0);
}

/** Sends the kernel process a SIGINT of its own: breakOnSigint or the main handler takes it. */
function resend(): void {
  try {
    process.kill(process.pid, "SIGINT");
  } catch (e) {
    report(`could not resend SIGINT: ${(e as Error).message}`);
  }
}

/**
 * Checks `cell`, `delay` ms from now, against the SIGINT the relay got at `at` (Date.now()), when
 * `handled` was current.
 */
function follow(
  at: number,
  cell: number,
  handled: number,
  resends: number,
  delay = RESEND_MS,
): void {
  setTimeout(() => {
    const phase = Atomics.load(state, Slot.Phase);
    // That cell is over (interrupted, or it ended first): nothing to do.
    if (Atomics.load(state, Slot.Cell) !== cell || phase === Phase.Idle) return;
    if (phase === Phase.Compile) return follow(at, cell, handled, resends);
    if (phase === Phase.Sync) {
      // A SIGINT that came after breakOnSigint was armed is Node's watchdog thread's to act on,
      // however late it wakes on a loaded machine: sending another would stay counted there and
      // stop the next cell (see absorbStaleSigints in executor.ts).
      const armed = Atomics.load(state, Slot.SyncStarted);
      if (Number.isFinite(at) && ((clock(base, at) - armed) | 0) > 0) return;
      if (resends >= RESENDS) return;
      resend();
      return follow(at, cell, handled, resends + 1);
    }
    // Awaiting: the main thread's handler rejects the cell when it runs.
    if (Atomics.load(state, Slot.Handled) !== handled) return;
    if (resends === 0) {
      // Not a signal this time: a signal could land in the next cell if this one ends first. A
      // message names the cell, and the main thread acts on it only if that cell still awaits.
      parentPort?.postMessage({ interrupt: cell });
      return follow(at, cell, handled, 1, GRACE_MS);
    }
    // Unwinds the main thread's current JavaScript (the cell's loop) up to the event loop; the
    // SIGINT or the request pending there then rejects the cell as interrupted.
    session.post("Runtime.terminateExecution", (err) => {
      if (err) report(`could not stop the cell: ${err.message}`);
    });
  }, delay);
}
