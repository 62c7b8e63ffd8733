/**
 * Starts a kernel process: engine + handler + zeromq transport, signal and error handlers.
 */
import { totalmem } from "node:os";
import { getHeapStatistics } from "node:v8";
import { setHostMemoryInfo } from "@mmulab/core";
import { Engine } from "./engine";
import { KernelHandler } from "./handler";
import { InterruptWatchdog } from "./interrupt";
import { readConnectionFile, ZmqTransport } from "./transport";

/** Runs the kernel for `connectionFile` until shutdown_request. */
export async function runKernel(connectionFile: string): Promise<void> {
  const realStderr = process.stderr.write.bind(process.stderr);
  const log = (text: string) => {
    realStderr(`[mmulab-kernel] ${text}\n`);
  };
  const conn = readConnectionFile(connectionFile);
  // Every VM's default memory budget is half the machine's RAM, and its JS-heap budget half of
  // V8's heap limit: core runs in browsers too and cannot ask the OS, so the kernel tells it.
  setHostMemoryInfo({
    totalBytes: totalmem(),
    heapLimitBytes: getHeapStatistics().heap_size_limit,
  });
  // Compile nothing yet, but create the converter now: the first cell should not pay for it.
  const watchdog = new InterruptWatchdog();
  const engine = new Engine(process.cwd(), {
    onPhase: (phase) => watchdog.phase(phase),
    sigints: () => watchdog.sigints(),
  });
  const transport = new ZmqTransport(conn, log);
  const handler = new KernelHandler(engine, transport, {
    log,
    onShutdown: () => {
      // Let zeromq flush the reply, then leave.
      setTimeout(() => {
        detach();
        transport.close();
        engine.close();
        // The worker goes first: Node would wait on exit for its inspector session to disconnect.
        void Promise.resolve(watchdog.stop()).finally(() => process.exit(0));
      }, 50);
    },
  });
  const detach = handler.attach();
  // SIGINT: a synchronous cell is stopped by vm's breakOnSigint (this handler is disabled while it
  // runs); an awaiting cell is rejected here, and progress loops see interruptRequested; code stuck
  // after an await is first unwound by the watchdog (interrupt.ts), then this handler runs.
  process.on("SIGINT", () => {
    watchdog.sigintHandled();
    handler.interrupt();
  });
  watchdog.start(log, () => handler.interrupt());
  process.on("uncaughtException", (err) => {
    process.stderr.write(`Uncaught exception: ${err.stack ?? String(err)}\n`);
  });
  process.on("unhandledRejection", (reason) => {
    // An interrupted async cell keeps running until its next progress update, which then rejects
    // the cell's (already abandoned) promise: expected, not worth a message.
    if (reason instanceof Error && reason.name === "Interrupted") return;
    process.stderr.write(
      `Unhandled promise rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}\n`,
    );
  });
  await transport.start(handler);
  log(`started (pid ${process.pid}, cwd ${process.cwd()})`);
}
