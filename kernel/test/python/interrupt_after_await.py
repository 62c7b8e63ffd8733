"""A cell stuck in a synchronous loop after an await, interrupted the way Jupyter does it.

jupyter_client's KernelManager starts the mmulab kernel (in its own process group) and
interrupt_kernel() sends SIGINT to that group, as JupyterLab's interrupt button does through the
server. Prints one JSON line of observations; the vitest test asserts on them.

usage: interrupt_after_await.py <notebook-dir>
"""
import json
import os
import signal
import sys
import time

from jupyter_client.manager import KernelManager


def main():
    result = {}
    km = KernelManager(kernel_name="mmulab")
    km.start_kernel(cwd=sys.argv[1])
    pgid = os.getpgid(km.provisioner.process.pid)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def wait_reply(msg_id, timeout):
            end = time.time() + timeout
            while True:
                m = kc.get_shell_msg(timeout=max(0.1, end - time.time()))
                if m["parent_header"].get("msg_id") == msg_id:
                    return m["content"]

        def result_of(msg_id):
            # IOPub outputs of msg_id up to its idle status.
            text = None
            while True:
                m = kc.get_iopub_msg(timeout=30)
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                if m["msg_type"] == "execute_result":
                    text = m["content"]["data"]["text/plain"]
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    return text

        def run(code, timeout=60):
            msg_id = kc.execute(code)
            reply = wait_reply(msg_id, timeout)
            return reply["status"], result_of(msg_id)

        result["before"] = run("const before = 41;")[0]

        stuck = kc.execute("await new Promise((r) => setTimeout(r, 10));\nlet spins = 0;\nwhile (true) { spins++; }")
        time.sleep(1.5)  # well inside the loop
        t0 = time.time()
        km.interrupt_kernel()
        reply = wait_reply(stuck, 20)
        result["stuck_seconds"] = time.time() - t0
        result["stuck_reply"] = {k: reply.get(k) for k in ("status", "ename")}
        result_of(stuck)

        result["next"] = run("1 + 1")
        result["kept"] = run("before + 1")
        # Declared by the stuck cell before its loop: kept, with the value it had when stopped.
        result["spins_kept"] = run("spins > 0")

        # An interrupt while idle must not reach the next cell, which awaits and then computes.
        km.interrupt_kernel()
        time.sleep(0.6)
        result["after_idle_interrupt"] = run(
            "await new Promise((r) => setTimeout(r, 400));\nlet n = 0;\nfor (let i = 0; i < 3e7; i++) n += i % 3;\nn > 0 ? 2 + 2 : -1"
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
        # Everything the kernel started (its SIGINT relay) must be gone with it.
        end = time.time() + 10
        while True:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                result["group_gone"] = True
                break
            if time.time() > end:
                result["group_gone"] = False
                os.killpg(pgid, signal.SIGKILL)  # we started it: clean up, and report it
                break
            time.sleep(0.1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
