/**
 * `mmulab-worker --queue URL [--concurrency N]`: takes point jobs from the queue and runs each in
 * a child process (a BullMQ sandboxed processor). Run it on as many machines as you like.
 *
 * A worker that dies (killed, machine gone) stops renewing its jobs' locks; another worker's
 * stalled check puts those jobs back in the queue within about LOCK_MS + 2 × STALLED_MS, and that
 * does not use up one of the job's attempts (only a task that throws does).
 */
import os from "node:os";
import path from "node:path";
import { InvalidArgumentError } from "@mmulab/core";
import { type Job, Worker } from "bullmq";
import {
  checkReachable,
  POINTS_QUEUE,
  type PointJobData,
  parseQueueUrl,
  redact,
} from "./queue_connection";

/**
 * How long a job's lock lasts. The lock is renewed at half this by the worker's main process,
 * whose event loop stays free (points run in child processes), so a short lock is safe and lets
 * a dead worker's points move on in seconds rather than BullMQ's default 30 s.
 */
export const LOCK_MS = 5000;
/** How often a worker looks for stalled jobs (it takes two looks to move one back). */
export const STALLED_MS = 2000;
/** A point that stalls its worker this often (it crashes whole machines?) fails instead. */
const MAX_STALLED = 2;

const USAGE = `usage: mmulab-worker --queue redis://[user:password@]host:port[/db] [--concurrency N]

Runs mmulab sweep points from the BullMQ queue at the given Redis (rediss:// for TLS), each in a
child process, until interrupted (SIGINT/SIGTERM finish the running points, then exit; a second
signal exits at once).

  --queue URL        the Redis that the sweep submits to (required)
  --concurrency N    points run at once (default: the number of CPUs, ${os.availableParallelism()} here)
  --help             this text`;

/** The worker's command-line options. */
export interface WorkerArgs {
  queue: string;
  concurrency: number;
}

/** Parses the command line (`--flag value` or `--flag=value`); `undefined` means `--help`. */
export function parseWorkerArgs(argv: readonly string[]): WorkerArgs | undefined {
  let queue: string | undefined;
  let concurrency = os.availableParallelism();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") return undefined;
    const eq = arg.indexOf("=");
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (flag !== "--queue" && flag !== "--concurrency")
      throw new InvalidArgumentError("option", arg, "--queue URL, --concurrency N, --help");
    let value: string | undefined;
    if (eq > 0) value = arg.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined) throw new InvalidArgumentError(flag, value, "a value after it");
    if (flag === "--queue") {
      parseQueueUrl(value, "--queue");
      queue = value;
    } else {
      const n = Number(value);
      if (!/^[0-9]+$/.test(value) || n < 1 || n > 1024)
        throw new InvalidArgumentError("--concurrency", value, "an integer from 1 to 1024");
      concurrency = n;
    }
  }
  if (queue === undefined)
    throw new InvalidArgumentError("--queue", queue, "redis://host:port or rediss://host:port");
  return { queue, concurrency };
}

/** The worker: started, printing a line per point, until a signal closes it. */
export async function main(argv: readonly string[]): Promise<void> {
  let args: WorkerArgs | undefined;
  try {
    args = parseWorkerArgs(argv);
  } catch (e) {
    process.stderr.write(`mmulab-worker: ${(e as Error).message}\n(try --help)\n`);
    process.exitCode = 2;
    return;
  }
  if (args === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const conn = parseQueueUrl(args.queue, "--queue");
  try {
    await checkReachable(conn);
  } catch (e) {
    process.stderr.write(`mmulab-worker: ${(e as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  const worker = new Worker<PointJobData>(
    POINTS_QUEUE,
    path.join(__dirname, "queue_processor.js"),
    {
      connection: conn.options,
      concurrency: args.concurrency,
      useWorkerThreads: false,
      lockDuration: LOCK_MS,
      stalledInterval: STALLED_MS,
      maxStalledCount: MAX_STALLED,
      name: `${os.hostname()}:${process.pid}`,
    },
  );
  const started = new Map<string, number>();
  const say = (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);
  worker.on("active", (job: Job<PointJobData>) => {
    started.set(job.id!, Date.now());
    say(`start ${job.data.id}`);
  });
  worker.on("completed", (job: Job<PointJobData>) => {
    say(`done ${job.data.id} in ${Date.now() - (started.get(job.id!) ?? Date.now())} ms`);
    started.delete(job.id!);
  });
  worker.on("failed", (job: Job<PointJobData> | undefined, err: Error) => {
    if (job === undefined) return say(`failed: ${err.message}`);
    const final = job.attemptsMade >= (job.opts.attempts ?? 1);
    say(
      `failed ${job.data.id} (attempt ${job.attemptsMade} of ${job.opts.attempts ?? 1}${final ? ", final" : ", will retry"}): ${err.message}`,
    );
    started.delete(job.id!);
  });
  // Connection trouble after the start: ioredis reconnects by itself; say so once per message.
  let lastError = "";
  worker.on("error", (err: Error) => {
    if (err.message !== lastError) say(`error: ${err.message}`);
    lastError = err.message;
  });
  say(
    `mmulab-worker ${os.hostname()}:${process.pid} taking points from ${redact(args.queue)} (concurrency ${args.concurrency})`,
  );
  let closing = false;
  const stop = (signal: string) => {
    if (closing) {
      say(`${signal} again: exiting without waiting for running points`);
      process.exit(130);
    }
    closing = true;
    say(`${signal}: finishing running points, then exiting (again to exit now)`);
    worker.close().then(
      () => say("closed"),
      (e: Error) => {
        say(`close failed: ${e.message}`);
        process.exitCode = 1;
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}
