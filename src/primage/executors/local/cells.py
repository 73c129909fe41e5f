"""One sandbox per job: the runner's end of a cell (the agent inside is ``cell.py``).

Setting a sandbox up costs about 10 ms, ten times a short task, so the runner starts one per job
(bwrap with the job's spaces and its folder, the agent inside) and hands it the job's tasks with
their log files' descriptors; the agent starts each and says when it ended. Inside the sandbox
a task has a PID of its namespace's; the runner needs the host's (to stop a task, and as the
external id that a restarted server adopts by), so :meth:`Cell.run` finds it below the agent.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primage.host import procs

READY_S = 60.0  # for a cell to start and show its mounts
Started = Callable[[int | None], None]  # the host PID (None: it ended before it was seen)
Ended = Callable[[int | None, str], None]  # exit code (None: lost with the cell), message


@dataclass
class Pending:
    started: Started
    ended: Ended
    pid: int | None = None  # on the host, once known


class Cell:
    """A running sandbox for one job's tasks; ``argv`` starts it, the agent's FD appended."""

    def __init__(
        self,
        argv: Sequence[str],
        log: str,
        env: dict[str, str],
        check: Sequence[tuple[str, int, int]] = (),
    ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = log
        self.check = list(check)  # (path, device, inode) each mounted folder must have
        self.failure = ""  # why the cell ended, when it was not asked to
        self._ready = threading.Event()
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*argv, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # like tasks: it outlives the runner, to finish them
            )
        theirs.close()
        self.sock = ours
        self.users = 0  # tasks handed to it or about to be (the runner counts)
        self.idle_since = time.monotonic()  # when users last fell to 0
        self._pending: dict[int, Pending] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._agent: int | None = None  # the agent's host PID, once found
        self._assigned: set[int] = set()  # host PIDs of its tasks that have not ended
        self.ended = False
        threading.Thread(target=self._read, name="cell-events", daemon=True).start()

    def run(
        self, argv: list[str], cwd: str, env: dict[str, str], fds: Sequence[int],
        started: Started, ended: Ended,
    ) -> None:  # fmt: skip
        """Start ``argv`` in the cell, ``fds`` its stdout and stderr; ``started`` and then
        ``ended`` are called from the cell's reader thread. Nothing is sent before the cell has
        shown that it mounted what was checked."""
        if not self._ready.wait(READY_S):
            self.failure = f"its job's sandbox did not start within {READY_S:g} s"
            self._kill()
        with self._lock:
            if self.ended:
                ended(None, self._why_ended())
                return
            task_id = next(self._ids)
            self._pending[task_id] = Pending(started, ended)
        message = json.dumps({"id": task_id, "argv": argv, "cwd": cwd, "env": env}).encode()
        try:
            socket.send_fds(self.sock, [message], list(fds))
        except OSError:
            with self._lock:
                self._pending.pop(task_id, None)
            ended(None, self._why_ended())

    def close(self) -> None:
        """Start nothing more; the agent exits once its tasks have ended."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            event = json.loads(data)
            if event["ev"] == "ready":
                self._verify(event["pid"])
                continue
            with self._lock:
                pending = self._pending.get(event["id"])
                if pending is not None and event["ev"] != "started":
                    del self._pending[event["id"]]
            if pending is not None:
                self._deliver(event, pending)
        with self._lock:
            self.ended = True
            left, self._pending = list(self._pending.values()), {}
        self._ready.set()  # a task waiting to be sent learns that the cell is gone
        self.sock.close()
        self.process.wait()
        for pending in left:
            pending.ended(None, self._why_ended())

    def _deliver(self, event: dict[str, Any], pending: Pending) -> None:
        try:
            if event["ev"] == "started":
                pending.pid = self._task_pid(event["pid"])
                pending.started(pending.pid)
                return
            self._assigned.discard(pending.pid or 0)
            if event["ev"] == "exited":
                pending.ended(event["code"], "")
            else:
                pending.ended(127, event["message"])
        except Exception as exc:  # a bug here must not stop every other task's events
            pending.ended(None, f"runner: {exc!r}")

    def _verify(self, inner: int) -> None:
        """Each folder mounted in the cell must be the one checked before: bwrap mounts by path,
        so a task of another job could have swapped a folder for a link in between."""
        agent = self._agent = self._host_pid(inner)
        for path, device, inode in self.check:
            try:
                st = os.stat(f"/proc/{agent}/root{path}")
                same = (st.st_dev, st.st_ino) == (device, inode)
            except OSError:
                same = False
            if agent is None or not same:
                self.failure = (
                    f"folder '{path}' changed while its job's sandbox was made (a link put in "
                    "its place?); nothing ran"
                )
                self._kill()
                return
        self._ready.set()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.close()

    def _why_ended(self) -> str:
        if self.failure:
            return self.failure
        tail = procs.tail(Path(self.log))
        return "its job's sandbox ended unexpectedly" + (f": {tail}" if tail else "")

    def _task_pid(self, inner: int) -> int | None:
        """The host PID of the task the cell's namespace calls ``inner``: a child of the agent
        (whose one thread starts them all) not assigned yet; when two are, the one whose
        ``NSpid`` says so. None: it ended before it was seen."""
        if self._agent is None:
            return None
        try:
            with open(f"/proc/{self._agent}/task/{self._agent}/children") as f:
                found = [int(p) for p in f.read().split()]
        except OSError:
            return None
        new = [pid for pid in found if pid not in self._assigned]
        if len(new) != 1:
            new = [pid for pid in new if namespace_pids(pid)[-1:] == [inner]]
        if not new:
            return None
        self._assigned.add(new[0])
        return new[0]

    def _host_pid(self, inner: int) -> int | None:
        """The host PID of the process in the cell that its namespace calls ``inner`` (the
        agent's, once: a walk down from the cell's first process)."""
        queue = [self.process.pid]
        while queue:
            parent = queue.pop(0)
            for child in children(parent):
                ids = namespace_pids(child)
                if len(ids) > 1 and ids[-1] == inner:
                    return child
                queue.append(child)
        return None


def children(pid: int) -> list[int]:
    """The PIDs of ``pid``'s children (every thread's), from /proc."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:  # the thread or the process ended meanwhile
            continue
    return found


def namespace_pids(pid: int) -> list[int]:
    """The process's PID in each pid namespace it is in, the host's first (``NSpid``)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(p) for p in line.split()[1:]]
    except OSError:  # it ended meanwhile (ESRCH while reading)
        pass
    return []
