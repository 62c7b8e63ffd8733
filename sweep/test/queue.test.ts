/**
 * Issue 14's acceptance for many machines: a sweep submitted as a BullMQ flow to a real Redis,
 * run by real mmulab-worker processes, one of them SIGKILLed mid-run. The expectations come from
 * running the same points in this process with runPoint, one after another.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { InvalidArgumentError } from "@mmulab/core";
import { Queue } from "bullmq";
import { afterEach, describe, expect, it } from "vitest";
import { InterruptedError, QueueUnreachableError, queueRunner } from "../src";
import { expandGrid, type Point, pointId } from "../src/grid";
import { COLLECT_QUEUE, POINTS_QUEUE, parseQueueUrl } from "../src/queue_connection";
import { runPoint, type SweepRecord, type TaskRef } from "../src/tasks";
import type { PointOutcome } from "../src/types";
import { freePort, killAll, killGroup, runWorker, startRedis, startWorker } from "./queue_harness";

afterEach(killAll);

const MIB = 2 ** 20;

/** Runs `points` through a queue runner, recording every hook call. */
async function submit(url: string, task: TaskRef, points: Point[], onDone?: (n: number) => void) {
  const starts: string[] = [];
  const outcomes: PointOutcome[] = [];
  await queueRunner({ url, attempts: 2 })(
    points.map((p) => ({ id: pointId(p), point: p })),
    task,
    {
      onStart: (id) => starts.push(id),
      onDone: (o) => {
        outcomes.push(o);
        onDone?.(outcomes.length);
      },
    },
  );
  return { starts, outcomes };
}

/** Records as JSON, sorted by point id: what "byte-identical results" compares. */
function recordsJson(entries: [string, SweepRecord][]): string {
  return JSON.stringify(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Point ids from the workers' "done <id>" lines. */
function doneLines(out: string[]): string[] {
  return out.flatMap((l) => /\bdone ([0-9a-f]{16})\b/.exec(l)?.[1] ?? []);
}

/** Point ids from the workers' "start <id>" lines. */
function startLines(out: string[]): string[] {
  return out.flatMap((l) => /\bstart ([0-9a-f]{16})\b/.exec(l)?.[1] ?? []);
}

describe("queueRunner with mmulab-worker processes", () => {
  it("runs 50 points on two workers, one SIGKILLed mid-run: each point once, records as in-process", async () => {
    // 2 × 5 × 5 = 50 distinct points; populate takes ~20–130 ms each at these sizes.
    const points = expandGrid({
      vcpus: [1, 2],
      bytesPerVcpu: [256 * MIB, 384 * MIB, 512 * MIB, 768 * MIB, 1024 * MIB],
      seed: [1, 2, 3, 4, 5],
    });
    const expected = recordsJson(points.map((p) => [pointId(p), runPoint("populate", p)]));

    const { url } = await startRedis();
    const victim = await startWorker(url);
    const survivor = await startWorker(url);
    let killedAt = 0;
    let inFlightAtKill: string[] = [];
    const t0 = Date.now();
    const starts: string[] = [];
    const outcomes: PointOutcome[] = [];
    await queueRunner({ url })(
      points.map((p) => ({ id: pointId(p), point: p })),
      "populate",
      {
        onStart: (id) => starts.push(id),
        onDone: (o) => {
          outcomes.push(o);
          if (outcomes.length === 10) {
            // Both workers are busy all the time, so the victim is in the middle of a point.
            killGroup(victim.proc);
            killedAt = Date.now();
            const done = new Set(outcomes.map((x) => x.id));
            inFlightAtKill = starts.filter((id) => !done.has(id));
          }
        },
      },
    );
    const total = Date.now() - t0;

    expect(killedAt).toBeGreaterThan(0);
    expect(await victim.exited).toBe("SIGKILL");
    expect(inFlightAtKill.length).toBeGreaterThanOrEqual(1);
    // Every point exactly once, all of them succeeded.
    const ids = outcomes.map((o) => o.id);
    expect(new Set(ids).size).toBe(50);
    expect([...ids].sort()).toEqual(points.map((p) => pointId(p)).sort());
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    expect(new Set(starts).size).toBe(starts.length);
    expect(recordsJson(outcomes.map((o) => [o.id, (o as { record: SweepRecord }).record]))).toBe(
      expected,
    );
    // No point completed twice in the queue either: each "done" line names a different point,
    // and the survivor ran every point the victim did not finish.
    const victimDone = doneLines(victim.out);
    const survivorDone = doneLines(survivor.out);
    expect(new Set([...victimDone, ...survivorDone]).size).toBe(
      victimDone.length + survivorDone.length,
    );
    // A SIGKILL can land after the victim finished a point in Redis and before it printed its
    // "done" line; such a point was started by the victim and must not have run on the survivor.
    const printed = new Set([...victimDone, ...survivorDone]);
    const unprinted = ids.filter((id) => !printed.has(id));
    expect(unprinted.length).toBeLessThanOrEqual(1);
    for (const id of unprinted) expect(startLines(victim.out)).toContain(id);
    expect(printed.size + unprinted.length).toBe(50);
    console.log(
      `50 points in ${total} ms; victim killed after ${killedAt - t0} ms with ${inFlightAtKill.length} in flight, ` +
        `had done ${victimDone.length} (+${unprinted.length} killed before its done line); survivor did ${survivorDone.length}`,
    );
  }, 120_000);

  it("records a task's error for the points it throws on, after its attempts; the others finish", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mmulab-queue-"));
    const module = path.join(dir, "task.js");
    writeFileSync(
      module,
      `exports.triple = (p) => {
  if (p.x % 3 === 0) throw new Error("x=" + p.x + " is a multiple of 3");
  return { y: p.x * 3 };
};\n`,
    );
    const task = { module, export: "triple" };
    const points = expandGrid({ x: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
    const { url } = await startRedis();
    const worker = await startWorker(url);
    const { outcomes } = await submit(url, task, points);

    expect(outcomes.length).toBe(9);
    for (const p of points) {
      const got = outcomes.find((o) => o.id === pointId(p))!;
      if ((p.x as number) % 3 === 0)
        expect(got).toEqual({ id: pointId(p), ok: false, error: `x=${p.x} is a multiple of 3` });
      else expect(got).toEqual({ id: pointId(p), ok: true, record: runPoint(task, p) });
    }
    // attempts: 2 — each throwing point ran twice, the first failure retried.
    for (const x of [3, 6, 9]) {
      const id = pointId({ x });
      expect(
        worker.out.filter((l) => l.includes(`failed ${id} (attempt 1 of 2, will retry)`)).length,
      ).toBe(1);
      expect(
        worker.out.filter((l) => l.includes(`failed ${id} (attempt 2 of 2, final)`)).length,
      ).toBe(1);
    }
  }, 60_000);

  it("puts a killed worker's running point back for another worker, without using an attempt", async () => {
    // A task that takes 1.5 s, so the kill surely lands while it runs.
    const dir = mkdtempSync(path.join(os.tmpdir(), "mmulab-queue-"));
    const module = path.join(dir, "slow.js");
    writeFileSync(
      module,
      "exports.slow = (p) => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500); return { twice: p.n * 2 }; };\n",
    );
    const task = { module, export: "slow" };
    const { url } = await startRedis();
    const victim = await startWorker(url);
    let rescuer: Awaited<ReturnType<typeof startWorker>> | undefined;
    const t0 = Date.now();
    const outcomes: PointOutcome[] = [];
    // attempts: 1 — were the kill counted as a failed attempt, the point would fail.
    await queueRunner({ url, attempts: 1 })([{ id: pointId({ n: 21 }), point: { n: 21 } }], task, {
      onStart: () => {
        killGroup(victim.proc);
        startWorker(url).then((w) => {
          rescuer = w;
        });
      },
      onDone: (o) => outcomes.push(o),
    });
    expect(outcomes).toEqual([{ id: pointId({ n: 21 }), ok: true, record: { twice: 42 } }]);
    expect(doneLines(victim.out)).toEqual([]);
    expect(doneLines(rescuer!.out)).toEqual([pointId({ n: 21 })]);
    // Lock 5 s, then up to two stalled checks 2 s apart, then the 1.5 s point.
    expect(Date.now() - t0).toBeLessThan(15_000);
  }, 60_000);

  it("works with a password-protected Redis, and a wrong password fails fast", async () => {
    const { port } = await startRedis(["--requirepass", "s3cret"]);
    const url = `redis://:s3cret@127.0.0.1:${port}`;
    const worker = await startWorker(url);
    const points = expandGrid({ vcpus: [1, 2], seed: [1] });
    const { outcomes } = await submit(url, "populate", points);
    expect(outcomes.map((o) => (o.ok ? o.record : o.error))).toEqual(
      outcomes.map((o) => runPoint("populate", points.find((p) => pointId(p) === o.id)!)),
    );
    expect(worker.out.join("\n")).not.toContain("s3cret");
    const wrong = submit(`redis://:nope@127.0.0.1:${port}`, "populate", points);
    await expect(wrong).rejects.toThrow(QueueUnreachableError);
    await expect(wrong).rejects.toThrow(`redis://127.0.0.1:${port}`);
  }, 60_000);

  it("removes the points not started when aborted, and rejects with InterruptedError", async () => {
    const { url } = await startRedis();
    const points = expandGrid({ vcpus: [1], seed: [1, 2, 3, 4, 5] });
    const ac = new AbortController();
    const starts: string[] = [];
    // No worker: the points wait in the queue until the abort.
    const run = queueRunner({ url })(
      points.map((p) => ({ id: pointId(p), point: p })),
      "populate",
      { onStart: (id) => starts.push(id), onDone: () => {}, signal: ac.signal },
    );
    setTimeout(() => ac.abort(), 500);
    await expect(run).rejects.toThrow(InterruptedError);
    expect(starts).toEqual([]);
    const connection = parseQueueUrl(url).options;
    for (const name of [POINTS_QUEUE, COLLECT_QUEUE]) {
      const q = new Queue(name, { connection });
      const counts = await q.getJobCounts();
      await q.close();
      expect(
        Object.values(counts).reduce((a, b) => a + b, 0),
        `${name}: ${JSON.stringify(counts)}`,
      ).toBe(0);
    }
  }, 30_000);
});

describe("queue URLs and connections", () => {
  it("refuses URLs that are not redis://host:port or rediss://host:port, naming them", () => {
    for (const url of [
      "http://127.0.0.1:6379",
      "127.0.0.1:6379",
      "redis://127.0.0.1",
      "redis://127.0.0.1:6379/x",
      "redis://127.0.0.1:6379?db=1",
      "",
    ]) {
      expect(() => queueRunner({ url }), url).toThrow(InvalidArgumentError);
      expect(() => queueRunner({ url }), url).toThrow(JSON.stringify(url));
    }
    expect(() => queueRunner({ url: 6379 as unknown as string })).toThrow(InvalidArgumentError);
    // The password never appears in a message.
    expect(() => queueRunner({ url: "http://:s3cret@h:1" })).toThrow('"http://:***@h:1"');
    expect(parseQueueUrl("rediss://user:p%40ss@cache.example:6380/2")).toEqual({
      options: {
        host: "cache.example",
        port: 6380,
        db: 2,
        username: "user",
        password: "p@ss",
        tls: { servername: "cache.example" },
      },
      address: "rediss://cache.example:6380/2",
    });
  });

  it("fails fast on an unreachable Redis, naming the address but not the password", async () => {
    const port = await freePort();
    const t0 = Date.now();
    const run = submit(`redis://:s3cret@127.0.0.1:${port}`, "populate", [{ seed: 1 }]);
    await expect(run).rejects.toThrow(QueueUnreachableError);
    await expect(run).rejects.toThrow(`redis://127.0.0.1:${port}`);
    await run.catch((e: Error) => expect(e.message).not.toContain("s3cret"));
    expect(Date.now() - t0).toBeLessThan(5000);

    const w = runWorker(["--queue", `redis://:s3cret@127.0.0.1:${port}`]);
    expect(await w.exited).toBe(1);
    expect(w.out.join("\n")).toContain(
      `cannot reach the queue's Redis at redis://127.0.0.1:${port}`,
    );
    expect(w.out.join("\n")).not.toContain("s3cret");
  });

  it("mmulab-worker checks its arguments and answers --help", async () => {
    const cases: [string[], number, string][] = [
      [["--help"], 0, "usage: mmulab-worker --queue"],
      [[], 2, "invalid --queue: undefined"],
      [["--queue"], 2, "invalid --queue: undefined; allowed: a value after it"],
      [["--queue", "http://x:1"], 2, 'invalid --queue: "http://x:1"'],
      [["--queue=redis://x:1", "--concurrency", "0"], 2, 'invalid --concurrency: "0"'],
      [["--queue=redis://x:1", "--concurrency=1.5"], 2, 'invalid --concurrency: "1.5"'],
      [["--queue=redis://x:1", "--threads", "2"], 2, 'invalid option: "--threads"'],
    ];
    for (const [args, code, text] of cases) {
      const w = runWorker(args);
      expect(await w.exited, args.join(" ")).toBe(code);
      expect(w.out.join("\n"), args.join(" ")).toContain(text);
    }
  });
});
