"""The agent inside one job's sandbox (a "cell"): it starts that job's tasks for the runner.

A sandbox costs about 10 ms to set up, ten times a short task's own cost, so the runner makes one
per job and sends it the job's tasks (``runner.Cell``). This agent runs inside it, as the
sandbox's uid, and needs nothing but the standard library: it is started as a plain file
(``python -I -S cell.py FD``), not as part of the package.

It talks over one ``SOCK_SEQPACKET`` socket (file descriptor FD), a JSON message a packet:

- in:  ``{"id": N, "argv": […], "cwd": …, "env": {…}}`` with two file descriptors attached
  (the task's stdout and stderr, opened by the runner in a folder the task cannot write);
- out: ``{"ev": "ready", "pid": P}`` first (its own PID), then
  ``{"ev": "started", "id": N, "pid": P}`` (P as this sandbox's pid namespace sees it),
  ``{"ev": "exited", "id": N, "code": C}`` (negative: killed by that signal), or
  ``{"ev": "failed", "id": N, "message": …}`` when it could not start.

When the socket closes it starts nothing more and exits once its tasks have ended. Stopping a task
is the runner's: it signals the task's process group from outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from typing import Any


def send(sock: socket.socket, lock: threading.Lock, **message: object) -> None:
    # The runner may be gone: the task still ends, and its exit is lost with it.
    with lock, contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


def start(
    sock: socket.socket, lock: threading.Lock, request: dict[str, Any], fds: list[int]
) -> subprocess.Popen[bytes] | None:
    task_id = request["id"]
    try:
        process = subprocess.Popen(
            request["argv"],
            cwd=request["cwd"],
            env=request["env"],
            stdin=subprocess.DEVNULL,
            stdout=fds[0],
            stderr=fds[1],
            start_new_session=True,  # its own process group: the runner stops it as one
        )
    except OSError as exc:
        os.write(fds[1], f"{request['argv'][0]}: {exc.strerror}\n".encode())
        send(sock, lock, ev="failed", id=task_id, message=f"cannot start: {exc.strerror}")
        return None
    finally:
        for fd in fds:
            os.close(fd)
    send(sock, lock, ev="started", id=task_id, pid=process.pid)
    return process


def wait(
    sock: socket.socket, lock: threading.Lock, process: subprocess.Popen[bytes], task_id: int
) -> None:
    send(sock, lock, ev="exited", id=task_id, code=process.wait())


def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    lock = threading.Lock()
    send(sock, lock, ev="ready", pid=os.getpid())  # the runner checks the mounts, then sends
    waiters: list[threading.Thread] = []
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        except OSError:
            break
        if not data:
            break  # the runner closed the cell
        request = json.loads(data)
        process = start(sock, lock, request, fds)
        if process is None:
            continue
        waiter = threading.Thread(
            target=wait, args=(sock, lock, process, request["id"]), daemon=True
        )
        waiter.start()
        waiters = [w for w in waiters if w.is_alive()] + [waiter]
    for waiter in waiters:
        waiter.join()


if __name__ == "__main__":
    main(int(sys.argv[1]))
