/**
 * Many machines: the points as a BullMQ flow on Redis (one child job per point, a parent that
 * collects them); `mmulab-worker --queue URL` runs them on any machine.
 *
 * The flow's parent sits in its own small queue (`mmulab-collect`) and is processed by the
 * submitting process, so workers need to know nothing but the points queue. Progress comes from
 * the points queue's event stream; the outcomes come from the parent once every child has
 * finished (its processed values and ignored failures), so an event the stream dropped costs a
 * late `onDone`, never a lost point.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import { InterruptedError, InvalidArgumentError, MmuLabError } from "@mmulab/core";
import { FlowProducer, Job, Queue, QueueEvents, Worker } from "bullmq";
import {
  COLLECT_QUEUE,
  checkReachable,
  POINTS_QUEUE,
  type PointJobData,
  parseQueueUrl,
} from "./queue_connection";
import { checkTaskRef, type SweepRecord, type TaskRef, taskKey } from "./tasks";
import type { PointJob, PointOutcome, Runner, RunnerHooks } from "./types";

export { QueueUnreachableError } from "./queue_connection";

/** Options of {@link queueRunner}. */
export interface QueueRunnerOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  url: string;
  /** Runs of a point whose task throws before it is recorded as failed (default 3). */
  attempts?: number;
  /** How long to wait for Redis before giving up, in ms (default 3000). */
  connectTimeoutMs?: number;
}

/** A queue run stopped by its abort signal. */

/**
 * How long finished jobs stay in Redis if nobody collects them (a submitter killed, or aborted
 * while points were running): long enough to look at, short enough not to pile up.
 */
const KEEP_UNCOLLECTED = { age: 24 * 3600 };
/** The first retry of a failed point waits this long, the next twice as long. */
const BACKOFF_MS = 200;
/** How often the submitter asks whether the flow's parent has completed. */
const POLL_MS = 250;

/**
 * A runner that submits the points to the BullMQ queue at `opts.url` and waits for the flow.
 *
 * The flow's id is a hash of the task and the point ids, and every job id derives from it, so
 * submitting the same points again while the flow is still in Redis (the submitter was killed)
 * waits for that flow instead of adding a second one. A task that throws is retried
 * (`attempts`, with backoff) and then becomes `{ ok: false, error }`; a worker that dies is not
 * a task failure: its points are put back and run by another worker.
 *
 * Aborting (`hooks.signal`) removes the flow's points that have not started and, when no point is
 * running, the whole flow; points already running finish on their workers and their jobs expire
 * from Redis after a day. The runner then closes its connections and rejects with
 * {@link InterruptedError}.
 */
export function queueRunner(opts: QueueRunnerOptions): Runner {
  if (opts === null || typeof opts !== "object")
    throw new InvalidArgumentError(
      "queueRunner options",
      opts,
      "{ url, attempts?, connectTimeoutMs? }",
    );
  const conn = parseQueueUrl(opts.url, "queue URL");
  const attempts = opts.attempts ?? 3;
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100)
    throw new InvalidArgumentError("attempts", opts.attempts, "an integer from 1 to 100");
  const connectTimeoutMs = opts.connectTimeoutMs ?? 3000;
  if (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 100)
    throw new InvalidArgumentError(
      "connectTimeoutMs",
      opts.connectTimeoutMs,
      "an integer number of ms, at least 100",
    );
  return (jobs, task, hooks) =>
    runFlow(conn, { attempts, connectTimeoutMs }, jobs, checkTaskRef(task), hooks);
}

async function runFlow(
  conn: ReturnType<typeof parseQueueUrl>,
  opts: { attempts: number; connectTimeoutMs: number },
  jobs: readonly PointJob[],
  task: TaskRef,
  hooks: RunnerHooks,
): Promise<void> {
  const { signal } = hooks;
  if (signal?.aborted) throw new InterruptedError("queue run interrupted before it started");
  if (jobs.length === 0) return;
  const serverMs = await checkReachable(conn, opts.connectTimeoutMs);

  // Workers run elsewhere: a relative module path means the submitter's directory.
  const sent: TaskRef =
    typeof task === "string" || !task.module.startsWith(".")
      ? task
      : { module: path.resolve(task.module), export: task.export };
  const ids = jobs.map((j) => j.id).sort();
  const flowId = createHash("sha256")
    .update(`${taskKey(task)}\n${ids.join("\n")}`)
    .digest("hex")
    .slice(0, 16);
  const parentId = `sweep-${flowId}`;
  const pointOf = new Map<string, string>();
  for (const j of jobs) pointOf.set(`${flowId}-${j.id}`, j.id);

  const connection = conn.options;
  const producer = new FlowProducer({ connection });
  const collectQueue = new Queue(COLLECT_QUEUE, { connection });
  // The parent needs processing to complete; the submitter does it, so no worker has to.
  const collector = new Worker(COLLECT_QUEUE, (job: Job) => job.getDependenciesCount(), {
    connection,
  });
  // Events from just before the flow is added (server clock): none missed, none older replayed.
  const events = new QueueEvents(POINTS_QUEUE, { connection, lastEventId: `${serverMs}-0` });
  const closeAll = () =>
    Promise.allSettled([events.close(), collector.close(), collectQueue.close(), producer.close()]);

  const started = new Set<string>();
  const finished = new Set<string>();
  let hookError: unknown;
  const call = (f: () => void) => {
    try {
      f();
    } catch (e) {
      hookError ??= e;
    }
  };
  const start = (id: string) => {
    if (started.has(id) || finished.has(id)) return;
    started.add(id);
    call(() => hooks.onStart(id));
  };
  const done = (outcome: PointOutcome) => {
    if (finished.has(outcome.id)) return;
    start(outcome.id);
    finished.add(outcome.id);
    call(() => hooks.onDone(outcome));
  };
  events.on("active", ({ jobId }) => {
    const id = pointOf.get(jobId);
    if (id !== undefined) start(id);
  });
  events.on("completed", ({ jobId, returnvalue }) => {
    const id = pointOf.get(jobId);
    if (id === undefined) return;
    const record = (
      typeof returnvalue === "string" ? JSON.parse(returnvalue) : returnvalue
    ) as SweepRecord;
    done({ id, ok: true, record });
  });
  // Emitted when a job fails for good (a retried attempt emits "retrying"/"delayed" instead).
  events.on("failed", ({ jobId, failedReason }) => {
    const id = pointOf.get(jobId);
    if (id !== undefined) done({ id, ok: false, error: failedReason });
  });
  // ioredis reconnects on its own; without a listener an 'error' would crash the process.
  for (const e of [events, collector, collectQueue, producer] as {
    on(ev: "error", f: () => void): void;
  }[])
    e.on("error", () => {});

  let interrupted = false;
  const onAbort = () => {
    interrupted = true;
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await events.waitUntilReady();
    let parent = await Job.fromId(collectQueue, parentId);
    if (parent === undefined) {
      const data: Omit<PointJobData, "id" | "point"> = { task: sent };
      await producer.add({
        name: "collect",
        queueName: COLLECT_QUEUE,
        data: { flowId, points: jobs.length },
        opts: {
          jobId: parentId,
          removeOnComplete: KEEP_UNCOLLECTED,
          removeOnFail: KEEP_UNCOLLECTED,
        },
        children: jobs.map((j) => ({
          name: "point",
          queueName: POINTS_QUEUE,
          data: { ...data, id: j.id, point: j.point } satisfies PointJobData,
          opts: {
            jobId: `${flowId}-${j.id}`,
            attempts: opts.attempts,
            backoff: { type: "exponential", delay: BACKOFF_MS },
            // A point that failed for good is a result, not a reason to hold the parent back.
            ignoreDependencyOnFailure: true,
            removeOnComplete: KEEP_UNCOLLECTED,
            removeOnFail: KEEP_UNCOLLECTED,
          },
        })),
      });
      parent = await Job.fromId(collectQueue, parentId);
    }
    for (;;) {
      if (interrupted) break;
      if (hookError !== undefined) throw hookError;
      const state = parent === undefined ? "unknown" : await parent.getState();
      if (state === "completed") break;
      if (state === "failed" || state === "unknown")
        throw new MmuLabError(
          `queue flow ${parentId} at ${conn.address} ${state === "failed" ? `failed: ${parent?.failedReason}` : "was removed by someone else"}`,
        );
      await sleep(POLL_MS, signal);
    }
    if (interrupted) {
      // Stopped first: with its children removed the parent would be ready, and processing it
      // would lock it against removal.
      await collector.close();
      await abandon(parent);
      throw new InterruptedError(
        `queue run interrupted: ${finished.size} of ${jobs.length} points done; points not started were removed from ${conn.address}`,
      );
    }
    // The parent keeps each child's value (and each failed child's reason) after the child itself
    // is gone, keyed by the child's Redis key, which ends in its job id.
    const values = await parent!.getChildrenValues<SweepRecord>();
    const failures = await parent!.getIgnoredChildrenFailures();
    const byPoint = (o: Record<string, unknown>) =>
      new Map(
        Object.entries(o).map(([key, v]) => [pointOf.get(key.slice(key.lastIndexOf(":") + 1)), v]),
      );
    const records = byPoint(values);
    const errors = byPoint(failures);
    for (const j of jobs) {
      if (records.has(j.id)) done({ id: j.id, ok: true, record: records.get(j.id) as SweepRecord });
      else if (errors.has(j.id)) done({ id: j.id, ok: false, error: String(errors.get(j.id)) });
      else
        done({ id: j.id, ok: false, error: `the queue at ${conn.address} has no result for it` });
    }
    if (hookError !== undefined) throw hookError;
    await parent!.remove().catch(() => {});
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await closeAll();
  }
}

/**
 * After an abort: remove the whole flow, or, while a point is running (its worker holds the lock,
 * so Redis refuses), the points not started; the rest expires after {@link KEEP_UNCOLLECTED}.
 */
async function abandon(parent: Job | undefined): Promise<void> {
  if (parent === undefined) return;
  if (
    await parent.remove().then(
      () => true,
      () => false,
    )
  )
    return;
  await parent.removeUnprocessedChildren().catch(() => {});
  await parent.remove().catch(() => {});
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
