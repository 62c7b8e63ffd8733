/** What the interrupt watchdog's main-thread side and its worker share (see interrupt.ts). */

/** Slots of the shared Int32Array (a plain object: const enums do not cross files here). */
export const Slot = {
  /** The running cell's {@link Phase}. Written by the main thread. */
  Phase: 0,
  /** Counts cells started, so that a late decision cannot hit the next cell. */
  Cell: 1,
  /** Counts SIGINTs the main thread's handler ran for. */
  Handled: 2,
  /**
   * When the running cell started: {@link clock} at its compile phase. A SIGINT the relay got
   * before it was meant for an earlier cell (the relay's byte can reach the worker late).
   */
  Started: 3,
  /** {@link clock} when the running cell's synchronous part began (breakOnSigint armed). */
  SyncStarted: 4,
  /** Counts every SIGINT the relay got. Written by the worker. */
  Sigints: 5,
} as const;

export const SLOTS = 6;

/**
 * Milliseconds since `base` (the watchdog's creation, passed to the worker) as a 32-bit integer.
 * It wraps after 24 days; compare two with `((a - b) | 0) < 0`.
 */
export function clock(base: number, now = Date.now()): number {
  return (now - base) | 0;
}

/** Values of {@link Slot.Phase}. */
export const Phase = {
  /** No cell runs. */
  Idle: 0,
  /** The cell is being transpiled; Node's breakOnSigint is not armed yet. */
  Compile: 1,
  /** The cell's synchronous part runs under breakOnSigint. */
  Sync: 2,
  /** The cell awaits (its synchronous part is over). */
  Async: 3,
} as const;

/**
 * How long the main thread gets to act on a SIGINT itself before the worker steps in. A free main
 * thread runs its SIGINT handler within milliseconds, and breakOnSigint ends a synchronous part
 * at once; on a loaded machine a scheduling delay of some tens of milliseconds is common, and a
 * resent SIGINT that was not needed does no harm (it flags an interrupt the cell already has).
 */
export const RESEND_MS = 60;

/** How many times one SIGINT is resent to a cell that still has not stopped. */
export const RESENDS = 3;

/**
 * How long an awaiting cell's main thread gets, after a resent SIGINT, before the worker
 * concludes it is stuck in synchronous code that started after an await, and terminates it.
 */
export const GRACE_MS = 250;

/**
 * The SIGINT relay: a tiny process that writes a line per SIGINT it receives (the time it got it,
 * Date.now()) and leaves when its stdin closes (the kernel exited, however it ended). Signals go to
 * processes, and a worker thread cannot listen for them; the relay turns them into input the
 * worker reads on its own loop.
 */
export const RELAY_SOURCE = `
process.on("SIGINT", () => process.stdout.write(Date.now() + "\\n"));
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
`;
