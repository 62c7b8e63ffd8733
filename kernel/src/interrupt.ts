/**
 * Interrupting a cell stuck after an await.
 *
 * SIGINT reaches a cell in three states. Its synchronous part runs under vm's breakOnSigint, which
 * Node's own watchdog thread stops. While it awaits with the main thread free, the kernel's SIGINT
 * handler rejects it. But synchronous code that starts after an await (`await x; while (true) {}`)
 * runs outside breakOnSigint and blocks the main thread, so no JavaScript handler there ever runs.
 *
 * For that case a worker thread keeps an inspector session on the main thread and a SIGINT relay
 * process in the kernel's process group (Jupyter interrupts with killpg, so the relay gets the
 * same signal). If the main thread has not handled a SIGINT shortly after it arrived during a
 * cell's async part, the worker sends Runtime.terminateExecution: the stuck code unwinds, the
 * event loop runs again, and the pending SIGINT rejects the cell as usual. The kernel, its
 * declarations and the next cells carry on. A SIGINT sent to the kernel's pid alone (not its
 * group) misses the relay: then only the first two states are covered, as before.
 *
 * Cost of the termination: V8 drops the promise reactions queued behind the stuck one in the same
 * microtask checkpoint (process.nextTick callbacks survive). Those belong to the stuck cell itself,
 * since Node runs each timer's and each I/O callback's reactions in their own checkpoint.
 */
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { SLOTS, Slot } from "./interrupt-shared";

export class InterruptWatchdog {
  private readonly state = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  private worker: Worker | undefined;

  /** Starts the worker (and through it the relay); `log` gets its diagnostics. */
  start(log: (text: string) => void): void {
    const worker = new Worker(join(__dirname, "interrupt-worker.js"), {
      workerData: { state: this.state },
    });
    // The kernel exits on shutdown_request; the watchdog must never keep it alive.
    worker.unref();
    worker.on("message", (text: string) => log(`interrupt watchdog: ${text}`));
    worker.on("error", (e) => log(`interrupt watchdog failed: ${e.stack ?? e.message}`));
    this.worker = worker;
  }

  /** The executor's hook: a cell enters (true) or leaves (false) its async part. */
  asyncPart(running: boolean): void {
    if (running) Atomics.add(this.state, Slot.Cell, 1);
    Atomics.store(this.state, Slot.AsyncPart, running ? 1 : 0);
  }

  /** The main thread's SIGINT handler ran: the main thread is not stuck. */
  sigintHandled(): void {
    Atomics.add(this.state, Slot.Handled, 1);
  }

  stop(): Promise<number> | undefined {
    return this.worker?.terminate();
  }
}
