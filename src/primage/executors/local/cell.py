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

Tasks start with ``posix_spawn`` (a vfork: a fraction of ``subprocess.Popen``'s cost) from the one
thread that reads requests, which is why it may change its own working folder for each; one
thread reaps them all. When the socket closes it starts nothing more and exits once its tasks
have ended. Stopping a task is the runner's: it signals the task's process group from outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import threading
from typing import Any


class Agent:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self.children: dict[int, object] = {}  # PID → the runner's task id
        self.changed = threading.Condition()
        self.closing = False

    def send(self, **message: object) -> None:
        # The runner may be gone: the task still ends, and its exit is lost with it.
        with self.send_lock, contextlib.suppress(OSError):
            self.sock.send(json.dumps(message).encode())

    def start(self, request: dict[str, Any], fds: list[int]) -> None:
        task_id, argv, env = request["id"], request["argv"], request["env"]
        path = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fds[0], 1),
            (os.POSIX_SPAWN_DUP2, fds[1], 2),
        ]
        try:
            if path is None:
                raise FileNotFoundError(2, "No such file or directory")
            os.chdir(request["cwd"])
            with self.changed:  # the reaper must not see it end before it is known
                pid = os.posix_spawn(path, argv, env, file_actions=actions, setsid=True)
                self.children[pid] = task_id
                self.changed.notify()
        except OSError as exc:
            os.write(fds[1], f"{argv[0]}: {exc.strerror}\n".encode())
            self.send(ev="failed", id=task_id, message=f"cannot start: {exc.strerror}")
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.send(ev="started", id=task_id, pid=pid)

    def reap(self) -> None:
        """Wait for any task to end and say how; return once closing and none is left."""
        while True:
            with self.changed:
                while not self.children:
                    if self.closing:
                        return
                    self.changed.wait()
            pid, status = os.wait()
            with self.changed:
                task_id = self.children.pop(pid, None)
            if task_id is not None:
                self.send(ev="exited", id=task_id, code=os.waitstatus_to_exitcode(status))

    def serve(self) -> None:
        reaper = threading.Thread(target=self.reap, daemon=True)
        reaper.start()
        self.send(ev="ready", pid=os.getpid())  # the runner checks the mounts, then sends
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, 2)
            except OSError:
                break
            if not data:
                break  # the runner closed the cell
            for fd in fds:
                os.set_inheritable(fd, False)  # only the task they are for gets them
            self.start(json.loads(data), fds)
        with self.changed:
            self.closing = True
            self.changed.notify()
        reaper.join()


def main(fd: int) -> None:
    os.set_inheritable(fd, False)  # no task inherits the runner's line
    Agent(socket.socket(fileno=fd)).serve()


if __name__ == "__main__":
    main(int(sys.argv[1]))
