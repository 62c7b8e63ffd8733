/** What the interrupt watchdog's main-thread side and its worker share (see interrupt.ts). */

/** Slots of the shared Int32Array (a plain object: const enums do not cross files here). */
export const Slot = {
  /** 1 while a cell awaits (its synchronous part is over), else 0. Written by the main thread. */
  AsyncPart: 0,
  /** Counts cells that entered their async part, so a late decision cannot hit the next cell. */
  Cell: 1,
  /** Counts SIGINTs the main thread's handler ran for. */
  Handled: 2,
} as const;

export const SLOTS = 3;

/**
 * How long the main thread gets to handle a SIGINT itself before the worker concludes it is
 * stuck. An awaiting cell's SIGINT handler runs within milliseconds when the thread is free.
 */
export const GRACE_MS = 250;

/**
 * The SIGINT relay: a tiny process that writes one byte per SIGINT it receives and leaves when its
 * stdin closes (the kernel exited, however it ended). Signals go to processes, and a worker thread
 * cannot listen for them; the relay turns them into input the worker reads on its own loop.
 */
export const RELAY_SOURCE = `
process.on("SIGINT", () => process.stdout.write("i"));
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
`;
