"""Storms against the real mmulab kernel, driven the way Jupyter drives it.

jupyter_client's KernelManager starts the kernel from the installed kernelspec (its own process
group; interrupt_mode "signal", so interrupt_kernel() is a killpg SIGINT, as JupyterLab's
interrupt button through the server) and restarts it as the server does. A BlockingKernelClient
talks to it over zeromq. Nothing is mocked.

Storms, in order, on one kernel (then restarts, each with a fresh kernel):
  interrupts  100 interrupts during running cells of six kinds (one of them interrupted while
              it may still compile), each followed by a cell that must return the right value;
              some requests silent or without history
  throws      cells throwing non-Error values and hostile errors
  prints      a cell printing 100 MiB line by line, and one printing a 100 MiB string
  displays    display() of payloads that fail validation
  restarts    restart in the middle of a progress bar: the manager's restart (SIGINT, then
              shutdown_request restart=true), its kill+restart (now=True), and a client's own
              shutdown_request restart=true

Prints one JSON line of observations (the vitest test asserts on them) and, before it, a
human-readable line per storm on stderr. Every random choice comes from random.Random(SEED).

usage: storms.py <notebook-dir> [storm ...]   (default: every storm)
"""
import json
import os
import queue
import random
import signal
import sys
import time
from collections import defaultdict

from jupyter_client.manager import KernelManager

SEED = 16

SETUP = """import { display, progress, runDirtyLogPerf } from "@mmulab/kernel";
import { createVm } from "@mmulab/core";
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));"""

# Cells the interrupts hit. Each but "blind" shows something once it is really running (a
# display or a progress bar), so the interrupt is sent while the cell runs, not while it compiles.
CELLS = {
    # A synchronous loop: Node's vm breakOnSigint stops it.
    "sync_loop": 'display("spinning"); { let n = 0; while (true) n++; }',
    # A long synchronous simulator call with a progress bar: faulting in 8 GiB page by page.
    "sync_sim": """{
  const vm = createVm();
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 ** 33, flags: 0, userspaceAddr: 2 ** 40 });
  const vcpu = vm.createVcpu();
  const pages = 2 ** 21;
  const bar = progress(pages, "fault in 8 GiB");
  for (let gfn = 0; gfn < pages; gfn++) { vcpu.access(gfn * 4096, { write: true }); bar.update(gfn + 1); }
}""",
    # An asynchronous loop with a progress bar: the kernel's SIGINT handler rejects the await.
    "async_progress": """{
  const bar = progress(1_000_000_000, "async loop");
  for (let i = 1; i <= 1_000_000_000; i++) { bar.update(i); if (i % 1000 === 0) await new Promise((r) => setImmediate(r)); }
}""",
    # The workload runner: a long dirty_log_perf_test with its phase-named bar.
    "dirtylogperf": "await runDirtyLogPerf({ vcpus: 16, bytesPerVcpu: 2 * 2 ** 30, iterations: 2 })",
    # Synchronous code stuck after an await: the watchdog terminates it.
    "after_await": 'await sleep(5); display("stuck"); { let s = 0; while (true) s++; }',
    # No sign of life: interrupted at a random moment after the kernel started it, which may be
    # while it compiles.
    "blind": "{ let n = 0; while (true) n++; }",
}
# Kinds every interrupt must stop at once.
KINDS = ["sync_loop", "sync_sim", "async_progress", "after_await", "dirtylogperf", "blind"]


def log(text):
    sys.stderr.write(f"[storms] {text}\n")
    sys.stderr.flush()


def proc_status(pid):
    """VmRSS and VmHWM of `pid` in bytes (Linux /proc)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def group_gone(pgid, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


class Client:
    """A kernel client that files every shell reply and IOPub message by its parent msg_id."""

    def __init__(self, km):
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.replies = defaultdict(list)
        self.control_replies = defaultdict(list)
        self.iopub = defaultdict(list)
        # (msg_id, silent, store_history) of every execute_request, in order
        self.sent = []
        self.drain()

    def drain(self):
        for get, box in (
            (self.kc.get_shell_msg, self.replies),
            (self.kc.get_iopub_msg, self.iopub),
            (self.kc.get_control_msg, self.control_replies),
        ):
            while True:
                try:
                    m = get(timeout=0)
                except queue.Empty:
                    break
                box[m["parent_header"].get("msg_id")].append(m)

    def execute(self, code, silent=False, store_history=True):
        msg_id = self.kc.execute(code, silent=silent, store_history=store_history)
        self.sent.append((msg_id, silent, store_history))
        return msg_id

    def wait_reply(self, msg_id, timeout):
        end = time.time() + timeout
        while not self.replies[msg_id]:
            left = end - time.time()
            if left <= 0:
                return None
            try:
                m = self.kc.get_shell_msg(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.replies[m["parent_header"].get("msg_id")].append(m)
        return self.replies[msg_id][0]

    def wait_iopub(self, msg_id, pred, timeout):
        """The first IOPub message of msg_id satisfying pred (None after timeout)."""
        end = time.time() + timeout
        seen = 0
        while True:
            box = self.iopub[msg_id]
            for m in box[seen:]:
                if pred(m):
                    return m
            seen = len(box)
            left = end - time.time()
            if left <= 0:
                return None
            try:
                m = self.kc.get_iopub_msg(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.iopub[m["parent_header"].get("msg_id")].append(m)

    def wait_idle(self, msg_id, timeout=30):
        return self.wait_iopub(
            msg_id,
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle",
            timeout,
        )

    def result_text(self, msg_id):
        for m in self.iopub[msg_id]:
            if m["msg_type"] == "execute_result":
                return m["content"]["data"].get("text/plain")
        return None

    def run(self, code, timeout=60, **kw):
        """Runs a cell to its idle status: (reply content or None, execute_result text)."""
        msg_id = self.execute(code, **kw)
        reply = self.wait_reply(msg_id, timeout)
        self.wait_idle(msg_id, timeout)
        return (reply["content"] if reply else None), self.result_text(msg_id)

    def control(self, msg_type, content, timeout=10):
        msg = self.kc.session.msg(msg_type, content)
        self.kc.control_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        end = time.time() + timeout
        while not self.control_replies[msg_id] and time.time() < end:
            try:
                m = self.kc.get_control_msg(timeout=0.5)
            except queue.Empty:
                continue
            self.control_replies[m["parent_header"].get("msg_id")].append(m)
        box = self.control_replies[msg_id]
        return msg_id, (box[0]["content"] if box else None)

    def accounting(self):
        """Replies per execute_request and the execution counts they carry, checked against
        Jupyter's rule: the counter goes up by one per request that stores history (silent
        implies no history); a reply carries its request's count, or the current one."""
        self.drain()
        counter = 0
        bad = []
        replies_per_request = defaultdict(int)
        for msg_id, silent, store in self.sent:
            box = self.replies[msg_id]
            replies_per_request[len(box)] += 1
            if not silent and store:
                counter += 1
            if len(box) != 1:
                bad.append({"msg_id": msg_id, "replies": len(box)})
                continue
            got = box[0]["content"].get("execution_count")
            if got != counter:
                bad.append({"msg_id": msg_id, "expected_count": counter, "got": got})
        busy_idle = 0
        for msg_id, _, _ in self.sent:
            states = [
                m["content"]["execution_state"]
                for m in self.iopub[msg_id]
                if m["msg_type"] == "status"
            ]
            if states == ["busy", "idle"]:
                busy_idle += 1
        return {
            "requests": len(self.sent),
            "replies_per_request": dict(replies_per_request),
            "count_errors": bad,
            "busy_then_idle": busy_idle,
            "last_count": counter,
        }

    def stop(self):
        self.kc.stop_channels()


def start_kernel(nb_dir):
    km = KernelManager(kernel_name="mmulab")
    km.start_kernel(cwd=nb_dir)
    return km


def storm_interrupts(c, rng, kinds, count, wait_s):
    out = []
    signs = {
        "sync_loop": lambda m: m["msg_type"] == "display_data",
        "sync_sim": lambda m: m["msg_type"] == "update_display_data",
        "async_progress": lambda m: m["msg_type"] == "update_display_data",
        "dirtylogperf": lambda m: m["msg_type"] == "update_display_data",
        "after_await": lambda m: m["msg_type"] == "display_data",
    }
    t_start = time.time()
    for i in range(count):
        kind = kinds[i % len(kinds)]
        # One in four check cells is queued behind the running cell before the interrupt.
        queued = rng.random() < 0.25
        # Some check cells store no history or are silent: the count must not move for them.
        mode = rng.choice(["plain", "plain", "plain", "no_history", "silent"])
        kw = {"store_history": mode == "plain", "silent": mode == "silent"}
        via = "signal"
        # interrupt_request on control also works for cells that leave the main thread free.
        if kind in ("async_progress", "dirtylogperf") and rng.random() < 0.3:
            via = "interrupt_request"
        long_id = c.execute(CELLS[kind])
        rec = {"i": i, "kind": kind, "via": via, "queued": queued, "mode": mode}
        if kind == "blind":
            # Once the kernel has started the cell (execute_input comes first), at a random
            # moment of its compilation or its first tenth of a second.
            started = c.wait_iopub(long_id, lambda m: m["msg_type"] == "execute_input", 30)
            rec["running_seen"] = started is not None
            time.sleep(rng.uniform(0.0, 0.1))
        else:
            sign = c.wait_iopub(long_id, signs[kind], 30)
            rec["running_seen"] = sign is not None
            if kind == "after_await":
                time.sleep(0.05)  # inside the loop
        check_code = f"{i} * 3 + 1"
        check_id = c.execute(check_code, **kw) if queued else None
        t0 = time.time()
        if via == "signal":
            c.km.interrupt_kernel()
        else:
            _, r = c.control("interrupt_request", {})
            rec["interrupt_reply"] = r and r.get("status")
        reply = c.wait_reply(long_id, wait_s)
        extra = 0
        while reply is None and extra < 3:
            # The interrupt was lost: say so, and get the kernel back for the next ones.
            extra += 1
            c.km.interrupt_kernel()
            reply = c.wait_reply(long_id, wait_s)
        rec["extra_interrupts"] = extra
        if reply is None:
            # Four SIGINTs did not stop it: the kernel is wedged. Say so, and restart it as a
            # user would, so that the storms after this one still run.
            rec["wedged"] = True
            log(f"interrupt cycle {i} ({kind}): four SIGINTs did not stop the cell; restarting")
            c.km.restart_kernel(now=True)
            c.kc.wait_for_ready(timeout=60)
            c.run(SETUP)
            out.append(rec)
            continue
        rec["reply_ms"] = round((time.time() - t0) * 1000)
        if reply is not None:
            rec["status"] = reply["content"]["status"]
            rec["ename"] = reply["content"].get("ename")
        idle = c.wait_idle(long_id, 30)
        rec["idle"] = idle is not None
        errors = [m["content"]["ename"] for m in c.iopub[long_id] if m["msg_type"] == "error"]
        rec["error_outputs"] = errors
        if check_id is None:
            check_id = c.execute(check_code, **kw)
        check = c.wait_reply(check_id, 30)
        c.wait_idle(check_id, 30)
        rec["check_status"] = check and check["content"]["status"]
        if check and check["content"]["status"] != "ok":
            rec["check_error"] = [check["content"].get("ename"), check["content"].get("evalue")]
        rec["check_value"] = c.result_text(check_id)
        rec["check_expected"] = None if mode == "silent" else str(i * 3 + 1)
        out.append(rec)
    elapsed = time.time() - t_start
    # The kernel is idle and well after the storm: a kernel_info round trip and one more cell.
    info = c.kc.kernel_info(reply=True, timeout=10)
    after = c.run("[1, 2, 3].map((x) => x * x).join()")
    return {
        "cycles": out,
        "seconds": round(elapsed, 1),
        "kernel_info": info["content"]["status"],
        "after": [after[0] and after[0]["status"], after[1]],
    }


THROWS = [
    ("number", "throw 42;"),
    ("string", 'throw "str";'),
    ("null", "throw null;"),
    ("undefined", "throw undefined;"),
    ("object", "throw { a: 1 };"),
    ("symbol", "throw Symbol();"),
    ("rejected_string", 'await Promise.reject("nope");'),
    ("rejected_object", "await Promise.reject({ code: 7 });"),
    (
        "message_getter_throws",
        'class Sneaky extends Error { get message(): string { throw new Error("message getter"); } }\nthrow new Sneaky();',
    ),
    (
        "name_getter_throws",
        'class Nameless extends Error { get name(): string { throw 1; } }\nthrow new Nameless("named badly");',
    ),
    (
        "stack_getter_throws",
        'const stackless = new Error("stack getter");\nObject.defineProperty(stackless, "stack", { get() { throw null; } });\nthrow stackless;',
    ),
    ("cyclic_object", "const cyc: any = { name: 'cyc' };\ncyc.self = cyc;\nthrow cyc;"),
    ("cyclic_error", 'const ce: any = new Error("cyclic cause");\nce.cause = ce;\nthrow ce;'),
    (
        "inspect_throws",
        'throw { [Symbol.for("nodejs.util.inspect.custom")]() { throw new Error("inspect fails"); } };',
    ),
    (
        "proxy",
        "throw new Proxy({}, { get() { throw 1; }, ownKeys() { throw 2; }, getPrototypeOf() { throw 3; } });",
    ),
    ("null_prototype", "throw Object.create(null);"),
    (
        "display_method_throws_null",
        '({ [Symbol.for("Jupyter.display")]() { throw null; } })',
    ),
    (
        "display_method_throws_getter_error",
        'class E2 extends Error { get message(): string { throw undefined; } }\n({ [Symbol.for("Jupyter.display")]() { throw new E2(); } })',
    ),
]


def storm_throws(c):
    out = {}
    for name, code in THROWS:
        msg_id = c.execute(code)
        reply = c.wait_reply(msg_id, 30)
        c.wait_idle(msg_id, 30)
        errs = [m["content"] for m in c.iopub[msg_id] if m["msg_type"] == "error"]
        rc = reply["content"] if reply else {}
        out[name] = {
            "status": rc.get("status"),
            "ename": rc.get("ename"),
            "evalue": rc.get("evalue"),
            "has_count": isinstance(rc.get("execution_count"), int),
            "error_outputs": len(errs),
            "error_output_matches": bool(errs)
            and errs[0]["ename"] == rc.get("ename")
            and errs[0]["evalue"] == rc.get("evalue"),
            "traceback_strings": bool(errs) and all(isinstance(t, str) for t in errs[0]["traceback"]),
        }
    out["_after"] = list(c.run("6 * 7"))
    out["_after"][0] = out["_after"][0] and out["_after"][0]["status"]
    return out


MIB = 2**20


def storm_prints(c):
    pid = c.km.provisioner.process.pid
    out = {"before": proc_status(pid)}
    # 1 Mi lines of 99 characters and a newline: 100 MiB; each line starts with its number.
    cases = {
        "lines": "for (let i = 0; i < 1048576; i++) console.log(String(i).padStart(8, \"0\") + \"x\".repeat(91));",
        "giant": 'console.log("y".repeat(100 * 2 ** 20));',
    }
    for name, code in cases.items():
        t0 = time.time()
        msg_id = c.execute(code)
        reply = c.wait_reply(msg_id, 120)
        t_reply = time.time() - t0
        c.wait_idle(msg_id, 120)
        t_idle = time.time() - t0
        streams = [m["content"] for m in c.iopub[msg_id] if m["msg_type"] == "stream"]
        stdout = "".join(s["text"] for s in streams if s["name"] == "stdout")
        stderr = "".join(s["text"] for s in streams if s["name"] == "stderr")
        rec = {
            "status": reply and reply["content"]["status"],
            "reply_seconds": round(t_reply, 2),
            "idle_seconds": round(t_idle, 2),
            "stream_messages": len(streams),
            "stdout_bytes": len(stdout.encode()),
            "stderr": stderr[-400:],
            "stdout_tail": stdout[-400:],
            "mem": proc_status(pid),
        }
        # The prefix that arrived, compared with what the cell printed, computed here.
        if name == "lines":
            expect = "".join(f"{i:08d}" + "x" * 91 + "\n" for i in range(1048576))
        else:
            expect = "y" * (100 * MIB) + "\n"
        body = stdout
        cut = body.find("\n[mmulab-kernel] output truncated")
        rec["truncated"] = cut >= 0
        if cut >= 0:
            body = body[:cut]
        rec["received_body_bytes"] = len(body.encode())
        rec["body_is_prefix"] = expect.startswith(body)
        rec["printed_bytes"] = len(expect.encode())
        out[name] = rec
        del expect, body, stdout
        # Outputs of this size are not kept by the harness after they are checked.
        c.iopub[msg_id] = [m for m in c.iopub[msg_id] if m["msg_type"] != "stream"]
    out["after"] = list(c.run("6 * 7"))
    out["after"][0] = out["after"][0] and out["after"][0]["status"]
    return out


DISPLAYS = {
    # x86 paging has levels 1 (PTE) to 5 (PML5E): 9 is no level.
    "bad_level": 'display({ version: 1, kind: "pagetable", trees: [{ kind: "guest", format: "4-level", root: { level: 9, name: "PML4", size: 512, entries: [] } }] });',
    "missing_fields": 'import { displayBundle } from "@mmulab/kernel";\ndisplayBundle({ "application/vnd.mmulab.walk+json": { version: 1, kind: "walk" } } as any);',
    "bad_result_bundle": '({ [Symbol.for("Jupyter.display")]() { return { "application/vnd.mmulab.pagetable+json": { version: 2 } }; } })',
    "cyclic_json": 'import { displayBundle as db2 } from "@mmulab/kernel";\nconst loop: any = {}; loop.loop = loop;\ndb2({ "application/json": loop });',
    "bigint_json": 'import { displayBundle as db3 } from "@mmulab/kernel";\ndb3({ "application/json": { big: 10n } } as any);',
    "not_a_bundle": 'import { displayBundle as db4 } from "@mmulab/kernel";\ndb4(null as any);',
}


def storm_displays(c):
    out = {}
    for name, code in DISPLAYS.items():
        msg_id = c.execute(code)
        reply = c.wait_reply(msg_id, 30)
        c.wait_idle(msg_id, 30)
        rc = reply["content"] if reply else {}
        out[name] = {
            "status": rc.get("status"),
            "ename": rc.get("ename"),
            "evalue": rc.get("evalue"),
            "displayed": sum(
                1 for m in c.iopub[msg_id] if m["msg_type"] in ("display_data", "execute_result")
            ),
        }
    out["_after"] = list(c.run("6 * 7"))
    out["_after"][0] = out["_after"][0] and out["_after"][0]["status"]
    return out


# Restarts need a fresh kernel each: their cells import only @mmulab/kernel (a fresh kernel's
# first compile of @mmulab/core's types takes seconds).
RESTART_SETUP = 'import { progress } from "@mmulab/kernel";'
ASYNC_BAR = CELLS["async_progress"]
SYNC_BAR = """{
  const bar = progress(2_000_000_000, "sync loop");
  let acc = 0;
  for (let i = 1; i <= 2_000_000_000; i++) { acc = (acc + i * 7) % 1000003; bar.update(i); }
}"""


def storm_restarts(nb_dir):
    """Three restarts of one KernelManager in a row, each in the middle of a progress bar; the
    kernel each one starts is the next one's victim."""
    out = {}
    t_start = time.time()
    km = start_kernel(nb_dir)
    c = Client(km)
    log(f"restarts: first kernel ready after {time.time() - t_start:.1f} s")
    try:
        for how, cell in (
            ("manager", SYNC_BAR),
            ("manager_now", ASYNC_BAR),
            ("client_shutdown", ASYNC_BAR),
        ):
            rec = {}
            t_setup = time.time()
            c.run(RESTART_SETUP)
            c.run("const before = 41;")
            rec["setup_seconds"] = round(time.time() - t_setup, 2)
            long_id = c.execute(cell)
            sign = c.wait_iopub(long_id, lambda m: m["msg_type"] == "update_display_data", 30)
            rec["progress_seen"] = sign is not None
            queued_id = c.execute("before + 1")
            old_pid = km.provisioner.process.pid
            old_pgid = os.getpgid(old_pid)
            t0 = time.time()
            if how == "manager":
                km.restart_kernel(now=False)
            elif how.startswith("manager_now"):
                km.restart_kernel(now=True)
            else:
                _, r = c.control("shutdown_request", {"restart": True})
                rec["shutdown_reply"] = r
                # The process leaves by itself; the manager then starts a new one as its
                # restarter does when a kernel dies.
                end = time.time() + 10
                while km.is_alive() and time.time() < end:
                    time.sleep(0.05)
                rec["exited_by_itself"] = not km.is_alive()
                rec["exit_code"] = km.provisioner.process.poll() if km.provisioner else None
                km.restart_kernel(now=True)
            rec["restart_seconds"] = round(time.time() - t0, 2)
            t_gone = time.time()
            rec["old_group_gone"] = group_gone(old_pgid, 10)
            rec["gone_seconds"] = round(time.time() - t_gone, 2)
            # What the old kernel answered before it went: at most one reply per request.
            c.drain()
            rec["long_replies"] = [
                (r["content"]["status"], r["content"].get("ename")) for r in c.replies[long_id]
            ]
            rec["queued_replies"] = [
                (r["content"]["status"], r["content"].get("ename")) for r in c.replies[queued_id]
            ]
            last = [
                m["content"]["data"]["text/plain"]
                for m in c.iopub[long_id]
                if m["msg_type"] == "update_display_data"
            ]
            rec["bar_last"] = last[-1] if last else None
            t_ready = time.time()
            c.kc.wait_for_ready(timeout=60)
            rec["ready_seconds"] = round(time.time() - t_ready, 2)
            t1 = time.time()
            r1 = c.run("typeof before")
            r2 = c.run("6 * 7")
            rec["first_cell_seconds"] = round(time.time() - t1, 2)
            rec["after"] = [
                [r[0] and r[0]["status"], r[0] and r[0]["execution_count"], r[1]] for r in (r1, r2)
            ]
            rec["new_pid_differs"] = km.provisioner.process.pid != old_pid
            out[how] = rec
            log(f"restart {how}: {json.dumps(rec)}")
    finally:
        t_end = time.time()
        c.stop()
        pgid = os.getpgid(km.provisioner.process.pid) if km.has_kernel else None
        km.shutdown_kernel(now=False)
        log(f"restarts: final shutdown took {time.time() - t_end:.1f} s")
        out["final_group_gone"] = pgid is None or group_gone(pgid, 10)
        if not out["final_group_gone"]:
            os.killpg(pgid, signal.SIGKILL)  # we started it: clean up, and report it
    return out


def main():
    # A runner that gives up on us sends SIGTERM: leave through the finally blocks, which shut
    # the kernels down, instead of leaving them running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    nb_dir = sys.argv[1]
    storms = sys.argv[2:] or [
        "interrupts",
        "throws",
        "prints",
        "displays",
        "restarts",
    ]
    rng = random.Random(SEED)
    result = {}
    timings = {}
    one_kernel = [s for s in storms if s != "restarts"]
    if one_kernel:
        km = start_kernel(nb_dir)
        pgid = os.getpgid(km.provisioner.process.pid)
        c = Client(km)
        try:
            setup = c.run(SETUP)
            result["setup"] = setup[0] and setup[0]["status"]
            for storm in one_kernel:
                t0 = time.time()
                if storm == "interrupts":
                    result[storm] = storm_interrupts(c, rng, KINDS, 100, 10)
                elif storm == "throws":
                    result[storm] = storm_throws(c)
                elif storm == "prints":
                    result[storm] = storm_prints(c)
                elif storm == "displays":
                    result[storm] = storm_displays(c)
                timings[storm] = round(time.time() - t0, 1)
                log(f"{storm}: {timings[storm]} s")
            result["accounting"] = c.accounting()
            result["alive"] = km.is_alive()
        finally:
            c.stop()
            km.shutdown_kernel()
            result["group_gone"] = group_gone(pgid, 10)
            if not result["group_gone"]:
                os.killpg(pgid, signal.SIGKILL)  # we started it: clean up, and report it
    if "restarts" in storms:
        t0 = time.time()
        result["restarts"] = storm_restarts(nb_dir)
        timings["restarts"] = round(time.time() - t0, 1)
        log(f"restarts: {timings['restarts']} s")
    result["timings"] = timings
    print(json.dumps(result))


if __name__ == "__main__":
    main()
