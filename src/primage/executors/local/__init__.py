"""The local executor: tasks run as processes on this machine, through a runner process.

Each attempt gets its own folder, ``<data_dir>/jobs/<job>/<index>.<attempt>/``, which holds
``stdout.log``, ``stderr.log``, ``pid`` (PID and start time: the external id) and ``exit`` (its
exit code, written by the runner when it ends); the task works in its ``work/`` folder, the only
part the task may write, so that it cannot forge what the runner records. Spaces are the real
folders under the storage root (``PRIMAGE_SPACE_<NAME>`` and ``{spaces.NAME}``).

Process tasks run in the sandbox (``sandbox.py``): an unprivileged uid that sees the system
read-only, its ``work/`` folder and exactly the spaces its job names (read-only where asked), with
no network unless the job asks for it (then outbound only). With ``sandbox = "off"`` they run as
the server's user, read-only spaces protected by a mount namespace of their own. Container tasks
are confined by the container runtime.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from primage.errors import PrimageError
from primage.executors.base import (
    Executor,
    ExecutorOptions,
    ExternalRef,
    Host,
    Outcome,
    Pull,
    TaskEvent,
    TaskKey,
    TaskRun,
    gone,
    utc,
)
from primage.executors.mounts import container_argv, space_binds
from primage.host import procs
from primage.host.containers import SPACES, Runtime
from primage.host.env import base_env
from primage.host.logs import follow_file
from primage.host.sandbox import Bind, Sandbox, sandboxed

log = logging.getLogger("primage.executors.local")

CELL_AGENT = str(Path(__file__).with_name("cell.py"))  # runs inside a job's sandbox


class LocalOptions(ExecutorOptions):
    concurrency: int | None = Field(
        None, ge=1, description="Cores' worth of tasks at once; default: the concurrency setting."
    )


class LocalExecutor(Executor):
    kind = "local"
    # apps: services as processes (apps/supervisor); network: outbound only, through slirp4netns
    supports = frozenset({"arrays", "apps", "network", "folders"})
    Options = LocalOptions

    def __init__(
        self,
        runs_dir: Path,
        storage_root: Path,
        slots: int,
        runtime: Runtime | None = None,
        sandbox: Sandbox | None = None,
        *,
        name: str = "local",
        description: str = "",
    ) -> None:
        super().__init__(name, description or "this machine")
        self.runtime = runtime
        #: Confines process tasks; None when off, or when it cannot be made (``sandbox.problem``).
        self.sandbox = sandbox if sandbox is not None and sandbox.problem is None else None
        if runtime is not None:
            self.supports = self.supports | {"containers", "app-containers"}
        self.runs_dir = runs_dir
        self.storage_root = storage_root
        self.slots = slots
        self._events: deque[TaskEvent] = deque()
        self._inflight: dict[TaskKey, str | None] = {}  # attempts the runner has, → external id
        self._timeouts: dict[TaskKey, float | None] = {}
        self._runner: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # the runner's stdin
        self._held_lock = threading.Lock()  # _inflight and _events change together
        self._closing = False
        self._env = base_env()

    @classmethod
    def from_config(cls, name: str, options: Any, host: Host) -> LocalExecutor:
        settings = host.settings
        return cls(
            settings.jobs_path,
            settings.storage_path,
            options.concurrency or settings.concurrency,
            host.runtime,
            host.sandbox,
            name=name,
            description=options.description,
        )

    @property
    def capacity(self) -> int:
        return self.slots

    def space_path(self, space: str, *, container: bool = False) -> str:
        return f"{SPACES}/{space}" if container else str(self.storage_root / space)

    def pin_image(self, image: str, pull: Pull | None = None) -> str:
        if self.runtime is None:
            return super().pin_image(image)
        return self.runtime.pin(image, pull)

    def folder(self, key: TaskKey) -> Path:
        return Path(self.folder_name(key))

    def folder_name(self, key: TaskKey) -> str:
        """An attempt's folder, as a string: built once per task launched."""
        return f"{self.runs_dir}/{key.job_id}/{key.index}.{key.attempt}"

    # -- the runner process ---------------------------------------------------------------------

    def _ensure_runner(self) -> subprocess.Popen[bytes]:
        if self._runner is None or self._runner.poll() is not None:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            self._runner = subprocess.Popen(
                [sys.executable, "-m", "primage.executors.local.runner", str(self.slots)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # outlives the server, to see running tasks to their end
            )
            reader = threading.Thread(
                target=self._read, args=(self._runner,), name="local-runner-events", daemon=True
            )
            reader.start()
        return self._runner

    def _send(self, requests: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r) + "\n" for r in requests).encode()
        with self._lock:
            runner = self._ensure_runner()
            assert runner.stdin is not None
            runner.stdin.write(data)
            runner.stdin.flush()

    def _read(self, runner: subprocess.Popen[bytes]) -> None:
        assert isinstance(runner.stdout, io.BufferedReader)
        stream = runner.stdout
        while chunk := stream.read1(1 << 16):  # whatever has arrived, many events at once
            while not chunk.endswith(b"\n") and (rest := stream.readline()):
                chunk += rest
            for line in chunk.splitlines():
                if line.strip():
                    with self._held_lock:  # an attempt leaves _inflight as its end is queued
                        self._events.extend(self._event(json.loads(line)))
            self.wake()
        runner.wait()
        if not self._closing:
            log.error(
                "the local runner exited (code %s); re-attaching its tasks", runner.returncode
            )
            refs = [
                ExternalRef(key, value, self._timeouts.get(key))
                for key, value in list(self._inflight.items())
            ]
            with self._held_lock:
                for ref in refs:  # those still running are watched again (_recover)
                    self._inflight.pop(ref.key, None)
                events, watches, orphans = self._recover(refs)
                events += [gone(ref) for ref in orphans]
                self._events.extend(events)
            if watches:
                self._send(watches)
            self.wake()

    def _event(self, raw: dict[str, Any]) -> list[TaskEvent]:
        key = TaskKey(*raw["key"])
        if raw["ev"] == "started":
            self._inflight[key] = raw["ref"]
            return [TaskEvent(key, "started", utc(raw["at"]), external_id=raw["ref"])]
        self._inflight.pop(key, None)
        self._timeouts.pop(key, None)
        events = []
        if "started_at" in raw:  # a short task: its start and end came in one event
            events.append(TaskEvent(key, "started", utc(raw["started_at"]), external_id=raw["ref"]))
        finished = TaskEvent(
            key,
            "finished",
            utc(raw["at"]),
            outcome=Outcome(raw["outcome"]),
            exit_code=raw.get("exit_code"),
            message=raw.get("message", ""),
        )
        return [*events, finished]

    # -- the contract ---------------------------------------------------------------------------

    async def submit(self, runs: Sequence[TaskRun]) -> None:
        requests = []
        for run in runs:
            self._inflight[run.key] = None
            self._timeouts[run.key] = run.timeout_s
            request = {
                "op": "run",
                "key": [run.key.job_id, run.key.index, run.key.attempt],
                "dir": self.folder_name(run.key),
                "argv": self._argv(run),
                "env": self._process_env(run),
                "cpus": run.cpus,
                "timeout": run.timeout_s,
            }
            if run.image is None and self.sandbox is not None:
                request["owner"] = self.sandbox.owner
                try:
                    request["cell"] = self._cell(run)
                except PrimageError as exc:  # a folder that vanished, or became a link out
                    request["argv"] = procs.failing(exc.detail)
            requests.append(request)
        await asyncio.to_thread(self._send, requests)

    def _argv(self, run: TaskRun) -> list[str]:
        if run.image is not None:
            return self._container_argv(run)
        argv = procs.argv_for(run.command)
        if self.sandbox is None:  # sandbox off: at least the read-only spaces stay read-only
            protected = sorted(self.space_path(name) for name, ro in run.mounts.items() if ro)
            argv = procs.read_only(protected, argv)
        limits = []
        if run.memory_bytes:
            limits.append(f"--as={run.memory_bytes}")
        if run.timeout_s:  # a CPU-time ceiling that holds even while the server is down
            limits.append(f"--cpu={int(run.timeout_s * run.cpus) + 1}")
        return ["prlimit", *limits, "--", *argv] if limits else argv

    def _cell(self, run: TaskRun) -> dict[str, Any]:
        """The sandbox a job's process tasks run in, one for all of them (``cells.py``): its
        spaces, and the job's folder, where each attempt may write its ``work/`` folder only.
        ``check``: the folders a task could swap for a link before the cell mounts them, with
        the inode the mount must show."""
        assert self.sandbox is not None
        job_folder = f"{self.runs_dir}/{run.key.job_id}"
        binds, check = space_binds(run, self.storage_root)
        argv = self.sandbox.wrap(
            [sys.executable, "-I", "-S", CELL_AGENT],
            binds=[*binds, Bind(job_folder, False)],
            workdir=job_folder,
            network="outbound" if run.network else "none",
        )
        log = f"{job_folder}/cell.log"
        return {"key": str(run.key.job_id), "argv": argv, "log": log, "check": check}

    def _process_env(self, run: TaskRun) -> dict[str, str]:
        """A process task's environment; for a container, podman's, which carries the task's
        variables for ``-e KEY`` to hand on."""
        if run.image is None:
            base = sandboxed(self._env) if self.sandbox is not None else self._env
            return base | dict(run.env)
        if self.runtime is None:
            return self._env
        return self.runtime.process_env(self._env, run.env)

    def _container_argv(self, run: TaskRun) -> list[str]:
        if self.runtime is None:  # a job accepted while containers were on, run after a restart
            return procs.failing("this server runs no containers now (setting containers)")
        work = work_folder(str(Path(self.folder_name(run.key)).resolve()))
        return container_argv(
            self.runtime, run, self.storage_root, workdir=work, base_env=self._env
        )

    async def events(self) -> list[TaskEvent]:
        drained = []
        while self._events:
            drained.append(self._events.popleft())
        return drained

    async def held(self) -> dict[TaskKey, str | None]:
        with self._held_lock:
            ending = {e.key: e.external_id for e in self._events if e.kind == "finished"}
            return ending | self._inflight

    async def cancel(self, keys: Sequence[TaskKey]) -> None:
        requests = [{"op": "cancel", "key": [k.job_id, k.index, k.attempt]} for k in keys]
        await asyncio.to_thread(self._send, requests)

    async def adopt(self, refs: Sequence[ExternalRef]) -> list[ExternalRef]:
        events, watches, orphans = await asyncio.to_thread(self._recover, refs)
        self._events.extend(events)
        if watches:
            await asyncio.to_thread(self._send, watches)
        self.wake()
        return orphans

    def _recover(
        self, refs: Sequence[ExternalRef]
    ) -> tuple[list[TaskEvent], list[dict[str, Any]], list[ExternalRef]]:
        """Sort attempts from before a restart: ended (events), still running (watch), lost."""
        events: list[TaskEvent] = []
        watches: list[dict[str, Any]] = []
        orphans: list[ExternalRef] = []
        now = utc()
        for ref in refs:
            folder = self.folder(ref.key)
            value = ref.value or procs.read_pid(folder)
            code = procs.read_exit(folder)
            if value is not None and ref.value is None:
                events.append(TaskEvent(ref.key, "started", now, external_id=value))
            if code is not None:
                message = (
                    "" if code == 0 else f"exit code {code}\n{procs.tail(folder / 'stderr.log')}"
                )
                events.append(
                    TaskEvent(
                        ref.key,
                        "finished",
                        now,
                        outcome=Outcome.EXITED,
                        exit_code=code,
                        message=message.strip(),
                    )
                )
            elif value is not None and procs.alive(value):
                self._inflight[ref.key] = value
                self._timeouts[ref.key] = ref.timeout_s
                watches.append(self._watch(ref.key, value, folder))
            else:
                orphans.append(ExternalRef(ref.key, value))
        return events, watches, orphans

    def _watch(self, key: TaskKey, value: str, folder: Path) -> dict[str, Any]:
        timeout = self._timeouts.get(key)
        try:
            started: float | None = (folder / "pid").stat().st_mtime
        except FileNotFoundError:
            started = None
        remaining = None
        if timeout is not None and started is not None:
            remaining = timeout - (utc().timestamp() - started)
        return {
            "op": "watch",
            "key": [key.job_id, key.index, key.attempt],
            "dir": str(folder),
            "ref": value,
            "timeout": timeout,
            "remaining": remaining,
        }

    async def logs(
        self, key: TaskKey, stream: Literal["stdout", "stderr"], *, follow: bool
    ) -> AsyncIterator[bytes]:
        async def running() -> bool:
            return key in self._inflight

        async for data in follow_file(self.folder(key) / f"{stream}.log", follow, running):
            yield data

    async def forget(self, job_id: int) -> None:
        await asyncio.to_thread(shutil.rmtree, self.runs_dir / str(job_id), True)

    async def close(self) -> None:
        """Stop the runner taking work; it sees running tasks to their end, then exits."""
        self._closing = True
        with self._lock:
            if self._runner is not None and self._runner.stdin is not None:
                self._runner.stdin.close()


def work_folder(attempt_folder: str) -> str:
    """Where a task works and writes: inside its attempt's folder (the runner makes it)."""
    return f"{attempt_folder}/work"
