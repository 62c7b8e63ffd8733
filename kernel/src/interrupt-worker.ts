/**
 * The interrupt watchdog's worker thread (see interrupt.ts). It holds an inspector session on the
 * main thread and a SIGINT relay process; when a SIGINT arrives while a cell is in its async part
 * and the main thread does not handle it within {@link GRACE_MS}, the main thread is stuck in
 * synchronous code that started after an await: the worker terminates that execution.
 */
import { spawn } from "node:child_process";
import { Session } from "node:inspector";
import { parentPort, workerData } from "node:worker_threads";
import { GRACE_MS, RELAY_SOURCE, Slot } from "./interrupt-shared";

const state = (workerData as { state: Int32Array }).state;
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

relay.stdout.on("data", (chunk: Buffer) => {
  for (let i = 0; i < chunk.length; i++) onSigint();
});

function onSigint(): void {
  // Idle, or the synchronous part (Node's breakOnSigint stops that): not ours.
  if (Atomics.load(state, Slot.AsyncPart) !== 1) return;
  const cell = Atomics.load(state, Slot.Cell);
  const handled = Atomics.load(state, Slot.Handled);
  setTimeout(() => {
    const stuck =
      Atomics.load(state, Slot.AsyncPart) === 1 &&
      Atomics.load(state, Slot.Cell) === cell &&
      Atomics.load(state, Slot.Handled) === handled;
    if (!stuck) return;
    // Unwinds the main thread's current JavaScript (the cell's loop) up to the event loop; the
    // SIGINT still pending there then rejects the cell as interrupted.
    session.post("Runtime.terminateExecution", (err) => {
      if (err) report(`could not stop the cell: ${err.message}`);
    });
  }, GRACE_MS);
}
