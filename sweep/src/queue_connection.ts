/**
 * What the submitting side (queue.ts) and the workers (queue_worker.ts) share: the queue names,
 * a point job's data, and the Redis connection named by a `--queue` URL, checked before BullMQ
 * gets it (BullMQ retries an unreachable Redis forever; a sweep should say so in seconds).
 */
import { InvalidArgumentError, MmuLabError } from "@mmulab/core";
import { Redis } from "ioredis";
import type { Point } from "./grid";
import type { TaskRef } from "./tasks";

/** The queue of point jobs, one per point; every `mmulab-worker` takes from it. */
export const POINTS_QUEUE = "mmulab-points";
/** The queue of the flows' parent jobs, processed by the submitting process itself. */
export const COLLECT_QUEUE = "mmulab-collect";

/** A point job's data: enough for a worker on another machine to run it. */
export interface PointJobData {
  id: string;
  point: Point;
  task: TaskRef;
}

/** A Redis connection from a queue URL, and the address to name in messages (no password). */
export interface QueueConnection {
  /** What both ioredis and BullMQ take as connection options. */
  options: {
    host: string;
    port: number;
    db: number;
    username?: string;
    password?: string;
    tls?: { servername: string };
  };
  address: string;
}

const URL_SHAPE = "redis://[user:password@]host:port[/db] or rediss://… (TLS)";

/**
 * Parses `redis://[user:password@]host:port[/db]` or `rediss://…`. The port is required: a
 * default would hide a typo'd URL pointing at some other Redis.
 */
export function parseQueueUrl(url: unknown, argument = "queue URL"): QueueConnection {
  if (typeof url !== "string") throw new InvalidArgumentError(argument, url, URL_SHAPE);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidArgumentError(argument, redact(url), URL_SHAPE);
  }
  const tls = u.protocol === "rediss:";
  const db = u.pathname === "" || u.pathname === "/" ? 0 : Number(u.pathname.slice(1));
  if (
    (u.protocol !== "redis:" && !tls) ||
    u.hostname === "" ||
    u.port === "" ||
    !Number.isInteger(db) ||
    db < 0 ||
    u.search !== "" ||
    u.hash !== ""
  )
    throw new InvalidArgumentError(argument, redact(url), URL_SHAPE);
  // URL keeps IPv6 literals in brackets; sockets want them bare.
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const options: QueueConnection["options"] = { host, port: Number(u.port), db };
  if (u.username !== "") options.username = decodeURIComponent(u.username);
  if (u.password !== "") options.password = decodeURIComponent(u.password);
  if (tls) options.tls = { servername: host };
  return { options, address: `${u.protocol}//${u.host}${db ? `/${db}` : ""}` };
}

/** The URL with its password replaced, for messages and logs. */
export function redact(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*:)[^@/]*@/i, "$1***@");
}

/** Redis is not reachable (or refused our credentials) at `address`. */
export class QueueUnreachableError extends MmuLabError {
  constructor(
    readonly address: string,
    reason: string,
  ) {
    super(`cannot reach the queue's Redis at ${address}: ${reason}`);
  }
}

/**
 * Connects once, without retries, and asks the time: a wrong host, a closed port, a bad password or a
 * TLS mismatch is a {@link QueueUnreachableError} within `timeoutMs`. Returns the server's clock
 * in ms (event stream ids count in it, and this machine's clock may differ).
 */
export async function checkReachable(conn: QueueConnection, timeoutMs = 3000): Promise<number> {
  const client = new Redis({
    ...conn.options,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  // ioredis also reports the failure as an 'error' event; the rejection below carries it.
  client.on("error", () => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    const [sec, usec] = (await Promise.race([
      client.connect().then(() => client.time()),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
      }),
    ])) as [number | string, number | string];
    return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  } catch (e) {
    throw new QueueUnreachableError(conn.address, (e as Error).message);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}
