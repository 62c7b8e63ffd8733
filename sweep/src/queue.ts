/**
 * Many machines: the points as a BullMQ flow on Redis (one child job per point, a parent that
 * collects them); `mmulab-worker --queue URL` runs them on any machine.
 */
import type { Runner } from "./types";

/** Options of {@link queueRunner}. */
export interface QueueRunnerOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  url: string;
}

/** A runner that submits the points to the BullMQ queue at `opts.url` and waits for the flow. */
export function queueRunner(opts: QueueRunnerOptions): Runner {
  void opts;
  throw new Error("queueRunner: not built yet");
}
