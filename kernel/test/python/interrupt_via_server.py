"""Interrupt a long cell through a real Jupyter server's REST API, then time the next cell.

Usage: /usr/bin/python3 interrupt_via_server.py <notebook_dir>
JUPYTER_PATH must hold kernels/mmulab. Starts `jupyter server --allow-root` on 127.0.0.1 with a
token, starts an mmulab kernel over REST, runs a long cell with a progress display over the
kernel's websocket, POSTs /api/kernels/<id>/interrupt, then runs `6 * 7`. Prints one JSON line
with what happened and the times measured; the caller asserts.
"""
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

from tornado import ioloop, websocket

LONG_CELL = """import { progress } from "@mmulab/kernel";
const steps = 2_000_000_000;
const bar = progress(steps, "long simulation");
let acc = 0;
for (let i = 1; i <= steps; i++) { acc = (acc + i * 7) % 1000003; bar.update(i); }
acc"""

# The same through the workload runner: a 16 x 2 GiB dirty_log_perf_test cycle (tens of seconds),
# with its phase-named bar; the interrupt arrives during a slice or while the runner awaits.
DIRTY_LOG_PERF_CELL = """import { runDirtyLogPerf } from "@mmulab/kernel";
await runDirtyLogPerf({ vcpus: 16, bytesPerVcpu: 2 * 2 ** 30, iterations: 2 })"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    nb_dir = sys.argv[1]
    long_cell = DIRTY_LOG_PERF_CELL if sys.argv[2:] == ["dirtylogperf"] else LONG_CELL
    port = free_port()
    token = secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    server = subprocess.Popen(
        [
            "/usr/bin/jupyter", "server", "--allow-root", "--no-browser",
            "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={nb_dir}", "--ServerApp.open_browser=False",
        ],
        stdout=subprocess.DEVNULL, stderr=open(os.environ.get("SERVER_LOG", os.devnull), "w"), env=env,
    )
    result = {}
    try:
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}

        def rest(method, path, body=None):
            data = json.dumps(body).encode() if body is not None else None
            req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                return json.loads(text) if text else None

        deadline = time.time() + 60
        while True:
            try:
                rest("GET", "/api/status")
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("jupyter server did not start (set SERVER_LOG=<file> to see its log)")
                time.sleep(0.2)

        kernel = rest("POST", "/api/kernels", {"name": "mmulab", "path": ""})
        kid = kernel["id"]
        result["kernel_name"] = kernel["name"]

        async def session():
            url = f"ws://127.0.0.1:{port}/api/kernels/{kid}/channels?token={token}"
            ws = await websocket.websocket_connect(url)
            sess = uuid.uuid4().hex

            # One outstanding read at a time; a timed-out read stays pending for the next wait.
            reader = {"future": None}

            def pending_read():
                if reader["future"] is None:
                    reader["future"] = asyncio.ensure_future(ws.read_message())
                return reader["future"]

            def request(msg_type, content):
                msg_id = uuid.uuid4().hex
                ws.write_message(json.dumps({
                    "header": {"msg_id": msg_id, "session": sess, "username": "test", "date": "",
                               "msg_type": msg_type, "version": "5.3"},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": content,
                }))
                return msg_id

            def execute(code):
                return request("execute_request", {"code": code, "silent": False, "store_history": True,
                                                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": False})

            async def until(pred, timeout):
                end = time.time() + timeout
                while time.time() < end:
                    try:
                        raw = await asyncio.wait_for(asyncio.shield(pending_read()), end - time.time())
                    except asyncio.TimeoutError:
                        break
                    reader["future"] = None
                    if raw is None:
                        raise RuntimeError("websocket closed")
                    m = json.loads(raw)
                    if pred(m):
                        return m
                raise TimeoutError("no matching message")

            # The kernel is ready when it answers a trivial cell.
            warm = execute("1")
            await until(lambda m: m["msg_type"] == "execute_reply" and m["parent_header"].get("msg_id") == warm, 60)

            long_id = execute(long_cell)
            seen = []

            def long_msg(m):
                if m["parent_header"].get("msg_id") == long_id:
                    seen.append(m)
                return m["msg_type"] == "update_display_data" and m["parent_header"].get("msg_id") == long_id

            # Let it run and update its progress display for a while.
            await until(long_msg, 30)
            await ioloop.IOLoop.current().run_in_executor(None, time.sleep, 1.5)
            t0 = time.time()
            await ioloop.IOLoop.current().run_in_executor(None, lambda: rest("POST", f"/api/kernels/{kid}/interrupt"))
            next_id = execute("6 * 7")
            answers = {}

            def collect(m):
                pid = m["parent_header"].get("msg_id")
                if pid == long_id:
                    seen.append(m)
                if pid == next_id:
                    answers.setdefault(m["msg_type"], m)
                return m["msg_type"] == "execute_reply" and pid == next_id

            reply = await until(collect, 30)
            result["next_cell_seconds"] = time.time() - t0
            result["next_status"] = reply["content"]["status"]
            er = answers.get("execute_result")
            result["next_result"] = er["content"]["data"]["text/plain"] if er else None
            errs = [m for m in seen if m["msg_type"] == "error"]
            result["long_error"] = {k: errs[0]["content"][k] for k in ("ename", "evalue")} if errs else None
            long_reply = [m for m in seen if m["msg_type"] == "execute_reply"]
            result["long_status"] = long_reply[0]["content"]["status"] if long_reply else None
            updates = [m for m in seen if m["msg_type"] == "update_display_data"]
            result["progress_updates"] = len(updates)
            result["progress_last"] = updates[-1]["content"]["data"]["text/plain"] if updates else None

            # Restart through REST: the kernel is replaced, state is gone, cells run again.
            t1 = time.time()
            await ioloop.IOLoop.current().run_in_executor(None, lambda: rest("POST", f"/api/kernels/{kid}/restart"))
            # Ready when the new kernel answers kernel_info (asked again until it does: a request
            # sent while the server reconnects may be lost). kernel_info does not count as a cell,
            # so the one `acc` cell below must get execution count 1.
            end = time.time() + 60
            while True:
                info_id = request("kernel_info_request", {})
                try:
                    await until(lambda m: m["msg_type"] == "kernel_info_reply" and m["parent_header"].get("msg_id") == info_id, 2)
                    break
                except TimeoutError:
                    if time.time() > end:
                        raise
            # `acc` was declared by the long cell: a fresh kernel does not know it.
            after_id = execute("acc")
            m = await until(lambda m: m["msg_type"] == "execute_reply" and m["parent_header"].get("msg_id") == after_id, 60)
            result["after_restart_reply"] = {k: m["content"].get(k) for k in ("status", "ename", "evalue", "execution_count")}
            result["restart_seconds"] = time.time() - t1
            ws.close()

        ioloop.IOLoop.current().run_sync(session, timeout=120)
        rest("DELETE", f"/api/kernels/{kid}")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
