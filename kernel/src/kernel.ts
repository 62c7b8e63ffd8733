/**
 * Starts a kernel process: engine + handler + zeromq transport, signal and error handlers.
 */
import { Engine } from "./engine";
import { KernelHandler } from "./handler";
import { readConnectionFile, ZmqTransport } from "./transport";

/** Runs the kernel for `connectionFile` until shutdown_request. */
export async function runKernel(connectionFile: string): Promise<void> {
  const realStderr = process.stderr.write.bind(process.stderr);
  const log = (text: string) => {
    realStderr(`[mmulab-kernel] ${text}\n`);
  };
  const conn = readConnectionFile(connectionFile);
  // Compile nothing yet, but create the converter now: the first cell should not pay for it.
  const engine = new Engine(process.cwd());
  const transport = new ZmqTransport(conn, log);
  const handler = new KernelHandler(engine, transport, {
    log,
    onShutdown: () => {
      // Let zeromq flush the reply, then leave.
      setTimeout(() => {
        detach();
        transport.close();
        engine.close();
        process.exit(0);
      }, 50);
    },
  });
  const detach = handler.attach();
  // SIGINT: a synchronous cell is stopped by vm's breakOnSigint (this handler is disabled while it
  // runs); an awaiting cell is rejected here, and progress loops see interruptRequested.
  process.on("SIGINT", () => handler.interrupt());
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
