"""Long-running services on this machine: start one, know if it still runs, stop it.

A service instance is a process in a session of its own (so that it outlives a server restart and
is adopted, like tasks), its output in ``<folder>/output.log``; its identity is PID and start time
(``procs.ref``), stored by the caller. Spaces it mounts read-only are read-only for it (the same
mount-namespace wrapper as tasks). This module is mechanism only: what to run, when to restart and
what the database says are the supervisor's (``primage.apps.supervisor``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from primage.host import procs

STOP_GRACE_S = 5.0


class Service:
    """A started instance: its process (when this server started it) and its external id."""

    def __init__(self, ref: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.ref = ref
        self.process = process

    @property
    def pid(self) -> int:
        return procs.parse_ref(self.ref)[0]

    def exit_code(self) -> int | None:
        """How it ended, or None while it runs (or when it ended unseen, before an adoption)."""
        if self.process is not None:
            return self.process.poll()
        return None if procs.alive(self.ref) else -1

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return procs.alive(self.ref)


def start(
    argv: Sequence[str],
    *,
    folder: Path,
    cwd: Path,
    env: Mapping[str, str],
    read_only: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
) -> Service:
    """Start ``argv`` in ``cwd``, output appended to ``folder/output.log``; ``pass_fds``: open
    descriptors it inherits (an app's listening socket)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "output.log", "ab") as log:
        process = subprocess.Popen(
            procs.read_only(sorted(read_only), list(argv)),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the server; its group is stopped as one
            pass_fds=tuple(pass_fds),
        )
    started = procs.start_time(process.pid)
    return Service(procs.ref(process.pid, started or 0), process)


def stop(service: Service, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM its process group, SIGKILL what is left of the group after ``grace`` seconds
    (blocking). The whole group: a leader that ends on SIGTERM may leave a child that does not
    (a shell's command ignoring it), which would keep the app's port."""
    pid = service.pid
    ours = service.process is not None  # our child: its group is ours even once it has ended
    if not service.running() and not (ours and group_alive(pid)):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while group_alive(pid, reap=service.process):
            if time.monotonic() >= deadline:
                os.killpg(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    if service.process is not None:
        service.process.wait()


def group_alive(pgid: int, reap: subprocess.Popen[bytes] | None = None) -> bool:
    """Does any process of the group still run? (``reap``: its leader, our child, reaped first
    so that its zombie does not count.)"""
    if reap is not None:
        reap.poll()
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    """A port nothing listens on now, on loopback (the app binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
