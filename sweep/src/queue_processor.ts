/**
 * The sandboxed processor of `mmulab-worker`: BullMQ loads this file in a child process and
 * calls it per point job, so a task that crashes or leaks takes down only that child.
 */
import type { SandboxedJob } from "bullmq";
import type { PointJobData } from "./queue_connection";
import { runPoint, type SweepRecord } from "./tasks";

/** Runs the job's point; a throw fails this attempt (BullMQ retries, then records the error). */
export default async function processPoint(job: SandboxedJob<PointJobData>): Promise<SweepRecord> {
  return runPoint(job.data.task, job.data.point);
}
