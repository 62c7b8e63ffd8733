/**
 * Interrupts that the main thread alone would miss.
 *
 * SIGINT reaches a cell in four states. Its synchronous part runs under vm's breakOnSigint, which
 * Node's own watchdog thread stops. While it awaits with the main thread free, the kernel's SIGINT
 * handler rejects it. Two cases escape both:
 * - a SIGINT that arrives while the cell compiles, before breakOnSigint is armed: arming it takes
 *   the process's SIGINT listeners off for the run (node:vm, `sigintHandlersWrap`), and the
 *   signal pending for them is lost (neither breakOnSigint nor the JS handler ever sees it);
 * - synchronous code that starts after an await (`await x; while (true) {}`) runs outside
 *   breakOnSigint and blocks the main thread, so no JavaScript handler there ever runs.
 *
 * For these a worker thread keeps an inspector session on the main thread and a SIGINT relay
 * process in the kernel's process group (Jupyter interrupts with killpg, so the relay gets the
 * same signal), and follows each SIGINT (interrupt-worker.ts). A cell still in its synchronous
 * part shortly after the signal never saw it: the worker sends the kernel the SIGINT again, now
 * under breakOnSigint. For an awaiting cell whose handler has not run, the worker asks the main
 * thread to interrupt that cell; if the main thread does not act, it is stuck, and the worker
 * sends Runtime.terminateExecution: the stuck code unwinds, the event loop runs again, and the
 * pending SIGINT (or the worker's request) rejects the cell as usual. The kernel, its declarations and the next cells carry on. A SIGINT sent to the kernel's pid alone
 * (not its group) misses the relay: then only the first two states are covered.
 *
 * Cost of the termination: V8 drops the promise reactions queued behind the stuck one in the same
 * microtask checkpoint (process.nextTick callbacks survive). Those belong to the stuck cell itself,
 * since Node runs each timer's and each I/O callback's reactions in their own checkpoint.
 */
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { CellPhase } from "./executor";
import { clock, Phase, SLOTS, Slot } from "./interrupt-shared";

const PHASES: Record<CellPhase, number> = {
  idle: Phase.Idle,
  compile: Phase.Compile,
  sync: Phase.Sync,
  async: Phase.Async,
};

export class InterruptWatchdog {
  private readonly state = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  private readonly base = Date.now();
  private worker: Worker | undefined;

  /**
   * Starts the worker (and through it the relay); `log` gets its diagnostics, `interrupt` is
   * called when the worker finds an awaiting cell that missed its SIGINT.
   */
  start(log: (text: string) => void, interrupt: () => void): void {
    const worker = new Worker(join(__dirname, "interrupt-worker.js"), {
      workerData: { state: this.state, base: this.base },
    });
    // The kernel exits on shutdown_request; the watchdog must never keep it alive.
    worker.unref();
    worker.on("message", (m: string | { interrupt: number }) => {
      if (typeof m === "string") return log(`interrupt watchdog: ${m}`);
      // Only the cell the worker meant, and only while it still awaits.
      if (
        m.interrupt !== Atomics.load(this.state, Slot.Cell) ||
        Atomics.load(this.state, Slot.Phase) !== Phase.Async
      )
        return;
      this.sigintHandled();
      interrupt();
    });
    worker.on("error", (e) => log(`interrupt watchdog failed: ${e.stack ?? e.message}`));
    this.worker = worker;
  }

  /** The executor's hook: the running cell's phase changed. */
  phase(phase: CellPhase): void {
    if (phase === "compile") {
      Atomics.store(this.state, Slot.Started, clock(this.base));
      Atomics.add(this.state, Slot.Cell, 1);
    } else if (phase === "sync") Atomics.store(this.state, Slot.SyncStarted, clock(this.base));
    Atomics.store(this.state, Slot.Phase, PHASES[phase]);
  }

  /** How many SIGINTs the relay has seen (the executor's `sigints` hook). */
  sigints(): number {
    return Atomics.load(this.state, Slot.Sigints);
  }

  /** The main thread's SIGINT handler ran: the main thread is not stuck. */
  sigintHandled(): void {
    Atomics.add(this.state, Slot.Handled, 1);
  }

  stop(): Promise<number> | undefined {
    return this.worker?.terminate();
  }
}
