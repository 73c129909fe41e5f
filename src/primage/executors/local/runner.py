"""The local runner: a process of its own that starts tasks, waits, and records how they end.

The server starts one runner and talks to it in JSON lines (requests on stdin, events on stdout).
The runner, not the server, is the parent of the task processes, in its own session: when the
server dies the runner keeps waiting for the tasks already running, writes each one's exit code
into its folder, then exits without starting anything new. A restarted server reads those files
and re-attaches (adopts) the tasks still running. One thread per slot launches and waits:
``benchmarks/launchers.py`` measured it at 0.89x the time of ``xargs -P2`` for 3,000 short tasks
on 2 cores, against 1.45x for asyncio subprocesses and 1.67x for a ``sh`` wrapper per task.

Requests:  {"op": "run", "key": [job, index, attempt], "dir", "argv", "env", "cpus", "timeout",
            "owner": [uid, gid] of its work folder, when not the runner's,
            "cell": {"key", "argv", "log"}: run it in its job's sandbox (``cells.py``)}
           {"op": "watch", "key", "dir", "ref", "cpus", "timeout"}   (adopt a running process)
           {"op": "cancel", "key"}
Events:    {"ev": "started", "key", "ref", "at"}
           {"ev": "finished", "key", "outcome", "exit_code", "message", "at"}
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from primage.executors.local.cells import Cell
from primage.host import procs

GRACE_S = 3.0  # between SIGTERM and SIGKILL when a task is cancelled or times out
CELL_IDLE_S = 2.0  # a job's sandbox with no task left is closed after this long
EXIT_FILE_WAIT_S = 5.0  # for an adopted task: how long its old runner may take to record the end
FLUSH_S = 0.01  # events wait at most this long before they are sent to the server

Key = tuple[int, int, int]


class Item:
    """One attempt the runner was asked to run or watch."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        job, index, attempt = request["key"]
        self.key: Key = (job, index, attempt)
        self.dir: str = request["dir"]  # plain strings: pathlib costs show at 1,000 tasks/s
        self.cpus = int(request.get("cpus") or 1)
        self.timeout: float | None = request.get("timeout")
        self.pid: int | None = None
        self.stop_reason: str | None = None  # "cancelled" | "timed_out" once we kill it
        # A task in a cell: its host PID is known (or None for good), then it ended.
        self.started = threading.Event()
        self.ended = threading.Event()
        self.code: int | None = None
        self.failure = ""


class Runner:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.free = slots
        self.queue: deque[Item] = deque()
        self.active: dict[Key, Item] = {}
        self.cond = threading.Condition()
        self.closing = False
        self.out_lock = threading.Lock()
        self.out_ready = threading.Condition(self.out_lock)
        self.outbox: list[dict[str, Any]] = []
        self.unsent_starts: dict[tuple[int, ...], dict[str, Any]] = {}
        self.server_gone = False
        self.cells: dict[str, Cell] = {}
        self.cells_lock = threading.Lock()

    # -- talking to the server ------------------------------------------------------------------

    def emit(self, **event: Any) -> None:
        """Queue an event for the server; they leave in batches (``flush``), not one by one."""
        event["at"] = time.time()
        key = tuple(event["key"])
        with self.out_lock:
            started = self.unsent_starts.pop(key, None)
            if started is not None:  # ended before its start was sent: one event says both
                started["merged"] = True
                event["ref"] = started["ref"]
                event["started_at"] = started["at"]
            elif event["ev"] == "started":
                self.unsent_starts[key] = event
            self.outbox.append(event)
            if len(self.outbox) == 1:
                self.out_ready.notify()

    def flush(self) -> None:
        """Send what was emitted at most every ``FLUSH_S``: one write for many short tasks."""
        while True:
            with self.out_lock:
                while not self.outbox:
                    self.out_ready.wait()
                events, self.outbox = self.outbox, []
                self.unsent_starts.clear()
            lines = [json.dumps(e) for e in events if e.get("merged") is None]
            if lines and not self.server_gone:
                try:
                    sys.stdout.write("\n".join(lines) + "\n")
                    sys.stdout.flush()
                except (BrokenPipeError, OSError):
                    self.server_gone = True  # keep going: exit codes still land in task folders
            time.sleep(FLUSH_S)

    def serve(self) -> None:
        workers = [threading.Thread(target=self.work, daemon=True) for _ in range(self.slots)]
        for worker in workers:
            worker.start()
        threading.Thread(target=self.flush, daemon=True).start()
        threading.Thread(target=self.close_idle_cells, daemon=True).start()
        for line in sys.stdin:
            request = json.loads(line)
            op = request["op"]
            if op == "cancel":
                job, index, attempt = request["key"]
                self.cancel((job, index, attempt))
            else:
                with self.cond:
                    item = Item(request)
                    # Adopted tasks are already running: they take their slots first.
                    (self.queue.appendleft if op == "watch" else self.queue.append)(item)
                    self.cond.notify()
        # The server is gone or stopping: start nothing new, see the running tasks to their end.
        with self.cond:
            self.closing = True
            self.queue.clear()
            self.cond.notify_all()
        for worker in workers:
            worker.join()
        with self.cells_lock:
            for cell in self.cells.values():
                cell.close()
        time.sleep(2 * FLUSH_S)  # the last events out, in case the server is still listening

    # -- slots ----------------------------------------------------------------------------------

    def work(self) -> None:
        while True:
            with self.cond:
                while not self.closing and not (
                    self.queue and self.free >= min(self.queue[0].cpus, self.slots)
                ):
                    self.cond.wait()
                if not self.queue:
                    return
                item = self.queue.popleft()
                need = min(item.cpus, self.slots)
                self.free -= need
                self.active[item.key] = item
            try:
                if item.request["op"] == "watch":
                    self.watch(item)
                else:
                    self.run(item)
            except Exception as exc:  # a bug here must not take the slot, or the runner, down
                self.emit(ev="finished", key=item.key, outcome="lost", message=f"runner: {exc}")
            finally:
                with self.cond:
                    self.free += need
                    self.active.pop(item.key, None)
                    self.cond.notify_all()

    def cancel(self, key: Key) -> None:
        with self.cond:
            for item in self.queue:
                if item.key == key:
                    self.queue.remove(item)
                    self.emit(ev="finished", key=key, outcome="cancelled", message="cancelled")
                    return
            item = self.active.get(key)  # type: ignore[assignment]
        if item is None:
            return
        item.stop_reason = "cancelled"  # a task whose PID is not known yet is stopped once it is
        if item.pid is not None:
            threading.Thread(target=self.stop, args=(item.pid,), daemon=True).start()

    @staticmethod
    def stop(pid: int) -> None:
        """SIGTERM the task's process group, then SIGKILL what is left after the grace time."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + GRACE_S
            while time.monotonic() < deadline:
                time.sleep(0.05)
                os.killpg(pid, 0)
            os.killpg(pid, signal.SIGKILL)

    # -- one attempt ----------------------------------------------------------------------------

    def run(self, item: Item) -> None:
        request = item.request
        workdir = f"{item.dir}/work"
        os.makedirs(workdir, exist_ok=True)
        if request.get("owner"):  # the task's uid writes here, and only here
            os.chown(workdir, *request["owner"])
        if request.get("cell"):
            self.run_in_cell(item, workdir)
            return
        with (
            open(f"{item.dir}/stdout.log", "wb") as out,
            open(f"{item.dir}/stderr.log", "wb") as err,
        ):
            try:
                process = subprocess.Popen(
                    request["argv"],
                    cwd=workdir,
                    env=request["env"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # its own process group: kill it and its children
                )
            except OSError as exc:
                err.write(f"{request['argv'][0]}: {exc.strerror}\n".encode())
                self.finish(item, 127, f"cannot start {request['argv'][0]!r}: {exc.strerror}")
                return
        self.launched(item, process.pid)
        try:
            code = process.wait(timeout=item.timeout)
        except subprocess.TimeoutExpired:
            item.stop_reason = "timed_out"
            self.stop(process.pid)
            code = process.wait()
        self.finish(item, code)

    def launched(self, item: Item, pid: int) -> None:
        """A task started (PID ``pid`` on this host): record its identity, tell the server."""
        item.pid = pid
        started = procs.start_time(pid)
        ref = procs.ref(pid, started or 0)
        write_small(f"{item.dir}/pid", ref)
        self.emit(ev="started", key=item.key, ref=ref)

    def run_in_cell(self, item: Item, workdir: str) -> None:
        """Run the attempt in its job's sandbox; wait for it as for a process of our own."""
        request = item.request
        cell = self.cell_for(request["cell"], request["env"])

        def started(pid: int | None) -> None:
            if pid is not None:
                self.launched(item, pid)
                if item.stop_reason == "cancelled":  # cancelled before we knew its PID
                    threading.Thread(target=self.stop, args=(pid,), daemon=True).start()
            item.started.set()

        def ended(code: int | None, message: str) -> None:
            item.code, item.failure = code, message
            item.started.set()
            item.ended.set()

        try:
            with (
                open(f"{item.dir}/stdout.log", "wb") as out,
                open(f"{item.dir}/stderr.log", "wb") as err,
            ):
                fds = (out.fileno(), err.fileno())
                cell.run(request["argv"], workdir, request["env"], fds, started, ended)
            if not item.ended.wait(item.timeout):
                item.stop_reason = "timed_out"
                item.started.wait()
                if item.pid is not None:
                    self.stop(item.pid)
                item.ended.wait()
        finally:
            self.release(request["cell"]["key"], cell)
        if item.code is None:
            self.emit(ev="finished", key=item.key, outcome="lost", message=item.failure)
            return
        self.finish(item, item.code, item.failure)

    def cell_for(self, spec: dict[str, Any], env: dict[str, str]) -> Cell:
        """The job's sandbox: the one running, or a new one."""
        with self.cells_lock:
            cell = self.cells.get(spec["key"])
            if cell is None or cell.ended:
                cell = Cell(spec["argv"], spec["log"], env, spec.get("check", ()))
                self.cells[spec["key"]] = cell
            cell.users += 1
            return cell

    def release(self, key: str, cell: Cell) -> None:
        """A task of the cell's is done: the cell is closed once it has had none for a while."""
        with self.cells_lock:
            cell.users -= 1
            if cell.users == 0:
                cell.idle_since = time.monotonic()

    def close_idle_cells(self) -> None:
        """Close the cells that had no task for ``CELL_IDLE_S`` (one thread for all: a timer per
        task would cost a thread each, hundreds a second in an HTC job)."""
        while True:
            time.sleep(CELL_IDLE_S / 2)
            cutoff = time.monotonic() - CELL_IDLE_S
            with self.cells_lock:
                idle = [k for k, c in self.cells.items() if c.users == 0 and c.idle_since < cutoff]
                closing = [self.cells.pop(key) for key in idle]
            for cell in closing:
                cell.close()

    def watch(self, item: Item) -> None:
        """Wait for a process another runner started (before a restart) and learn how it ended."""
        pid, _ = procs.parse_ref(item.request["ref"])
        item.pid = pid
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            fd = None
        if fd is not None:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                remaining = item.request.get("remaining")
                if not poller.poll(None if remaining is None else max(0.0, remaining) * 1000):
                    item.stop_reason = "timed_out"
                    self.stop(pid)
                    poller.poll()
            finally:
                os.close(fd)
        deadline = time.monotonic() + EXIT_FILE_WAIT_S
        while (code := procs.read_exit(Path(item.dir))) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if code is None:
            self.emit(
                ev="finished",
                key=item.key,
                outcome=item.stop_reason or "lost",
                message="its process ended while the server was down; exit code unknown",
            )
            return
        self.finish(item, code, record=False)

    def finish(self, item: Item, code: int, message: str = "", *, record: bool = True) -> None:
        if record:
            write_small(f"{item.dir}/exit", str(code))
        outcome = item.stop_reason or "exited"
        if not message:
            message = describe(code, item)
        self.emit(ev="finished", key=item.key, outcome=outcome, exit_code=code, message=message)


def write_small(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


def describe(code: int, item: Item) -> str:
    """Why an attempt ended, with the end of its stderr when it failed."""
    if item.stop_reason == "timed_out":
        head = f"timed out after {item.timeout:g} s"
    elif item.stop_reason == "cancelled":
        head = "cancelled"
    elif code == 0:
        return ""
    elif code < 0:
        head = f"killed by {signal.Signals(-code).name}"
    else:
        head = f"exit code {code}"
    stderr = procs.tail(Path(item.dir) / "stderr.log")
    return f"{head}\n{stderr}" if stderr else head


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C for the server is not for the tasks
    Runner(int(sys.argv[1])).serve()


if __name__ == "__main__":
    main()
