"""The Slurm executor: a job's tasks as Slurm job arrays, driven as a login node drives them.

The server talks to the cluster with the commands of a login node (``sbatch``, ``squeue --json``,
``scancel``; ADR 0008 says why not slurmrestd), so a site needs nothing but a submit host:

- ``submit`` writes, for each task attempt, a script in its folder under ``work_dir`` (on the
  cluster's shared filesystem), then one ``sbatch --array`` per job and chunk of at most
  ``max_array_size`` indexes (Slurm's ``MaxArraySize`` bounds index values): the array index is
  the task index less the chunk's first, and the array's script runs that index's attempt.
  Resources become ``--cpus-per-task``, ``--mem``, ``--time`` and ``--gres=gpu:N``, the job's
  ``max_parallel`` the array's ``%`` throttle; the job's ``executor_options``
  and the operator's options ``--partition``, ``--account``, ``--qos``, ``--gres`` and
  ``--constraint``. The Slurm ids of an array's elements are written beside it at once
  (``array-<id>.ids``), so a restarted server finds elements still pending.
- A task runs in its attempt's ``work/`` folder (made by the element when it starts), in the
  platform's sandbox when the server has one (the same bubblewrap confinement as on the local
  executor: only its spaces, read-only where asked, no network; built once per array as the
  shell function ``confined``, which checks a job's folders again once mounted), with the task's
  variables; its stdout and stderr go to ``stdout.log`` and ``stderr.log`` there (``primage job
  logs`` reads them, live with ``--follow``), and its exit code to ``exit``.
- With ``containers``, a task with an image runs as ``podman run`` on the node, as on the local
  executor; the script removes the container when Slurm signals the element (scancel, --time).
  An image of the platform registry is pinned through the registry's API and pulled by the node
  with the job's own credential (``keep_pull``).
- ``events`` polls ``squeue --json --states=all`` for the platform's arrays every
  ``poll_seconds``: an element seen running is ``started`` (external id ``<array job>_<index>``),
  one that ended is ``finished`` with the code its ``exit`` file holds; ``TIMEOUT`` is a time-out,
  ``CANCELLED`` a cancellation, a node failure or an element gone with no exit code is *lost*
  (run again, not counted as a failure).
- ``adopt`` after a restart takes every element back by its id; ``cancel`` is ``scancel``;
  ``held`` lists the executor's arrays the cluster still has (``squeue --json --me``, those under
  ``work_dir``) for the reconciler's sync.

The storage root must be the same path on the server and on the compute nodes (a shared
filesystem): tasks see their spaces where the local executor shows them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
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
    utc,
)
from primage.executors.mounts import container_argv, space_binds, verified
from primage.executors.registry import ConfigError
from primage.host import procs
from primage.host.containers import SPACES, Runtime, task_container
from primage.host.env import base_env
from primage.host.logs import follow_file
from primage.host.sandbox import Bind, Sandbox, sandboxed
from primage.models import Strict
from primage.registry_client import resolve_digest, split_reference

log = logging.getLogger("primage.executors.slurm")

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$"  # a partition, account, QOS, GRES or feature
ENDED = {
    "COMPLETED": Outcome.EXITED,
    "FAILED": Outcome.EXITED,
    "OUT_OF_MEMORY": Outcome.EXITED,
    "TIMEOUT": Outcome.TIMED_OUT,
    "DEADLINE": Outcome.TIMED_OUT,
    "CANCELLED": Outcome.CANCELLED,
    "NODE_FAIL": Outcome.LOST,
    "BOOT_FAIL": Outcome.LOST,
    "PREEMPTED": Outcome.LOST,
}
AUTH_FILE = "auth.json"  # a job's pull credential, beside its arrays (keep_pull)
RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED"}


class SlurmOptions(ExecutorOptions):
    """What an operator configures for a Slurm cluster (``executors.NAME`` with kind slurm)."""

    work_dir: Path | None = Field(
        None,
        description="Scripts and logs of the tasks, on the cluster's shared filesystem; "
        "default <jobs_dir>/slurm-<name>.",
    )
    slurm_conf: Path | None = Field(
        None, description="SLURM_CONF for sbatch, squeue and scancel; default: theirs."
    )
    capacity: int = Field(
        64, ge=1, description="Cores' worth of the platform's tasks the cluster runs at once."
    )
    partition: str | None = Field(None, pattern=NAME, description="Default partition.")
    account: str | None = Field(None, pattern=NAME, description="Default account.")
    qos: str | None = Field(None, pattern=NAME, description="Default QOS.")
    directives: list[str] = Field(
        default_factory=list,
        description="More sbatch options for every array, e.g. ['--exclusive'] (operators only).",
    )
    max_array_size: int = Field(
        1000, ge=1, le=4_000_000, description="The cluster's MaxArraySize: indexes per sbatch."
    )
    poll_seconds: float = Field(2.0, gt=0, description="How often squeue is asked.")
    prefetch: int = Field(
        10_000, ge=1, description="Tasks handed to Slurm ahead of those running (its queue)."
    )
    containers: bool = Field(
        False,
        description="The compute nodes run containers with the server's container_command and "
        "container_env (podman): jobs with an image run there in one, with the same mounts as "
        "on this machine, as the digest pinned at submission. The nodes pull an image of the "
        "platform registry themselves, with the job's own credential; any other must be in "
        "their store already.",
    )
    container_command: list[str] | None = Field(
        None, description="The runtime on the nodes and its options; default: container_command."
    )
    container_env: dict[str, str] | None = Field(
        None, description="The runtime's environment on the nodes; default: container_env."
    )


class SlurmJobOptions(Strict):
    """What a job file may ask of Slurm (``executor_options``)."""

    partition: str | None = Field(None, pattern=NAME, description="Partition to run in.")
    account: str | None = Field(None, pattern=NAME, description="Account to charge.")
    qos: str | None = Field(None, pattern=NAME, description="Quality of service.")
    gres: str | None = Field(None, pattern=NAME, description="Generic resources, e.g. gpu:1.")
    constraint: str | None = Field(None, pattern=NAME, description="Node features required.")


@dataclass
class Element:
    """One task attempt handed to Slurm."""

    key: TaskKey
    folder: Path
    slurm_id: str | None = None  # <array job>_<index>, once sbatch answered
    started: bool = False
    cancelled: bool = False
    timeout_s: float | None = None


class SlurmExecutor(Executor):
    kind = "slurm"
    supports = frozenset({"arrays", "gpus", "folders"})
    Options = SlurmOptions
    JobOptions = SlurmJobOptions

    def __init__(
        self, name: str, options: SlurmOptions, storage_root: Path, work_dir: Path,
        sandbox: Sandbox | None, runtime: Runtime | None = None,
    ) -> None:  # fmt: skip
        super().__init__(name, options.description or "a Slurm cluster")
        self.options = options
        self.storage_root = storage_root
        self.work_dir = work_dir
        self.sandbox = sandbox
        #: How the server pins images (its own runtime) and the nodes run them (theirs).
        self.runtime = runtime
        self.node_runtime = runtime
        if runtime is not None:
            self.supports = self.supports | {"containers"}
            self.pulls_on_nodes = True  # images of the platform registry, by digest
            if options.container_command is not None or options.container_env is not None:
                self.node_runtime = Runtime(
                    options.container_command or runtime.command,
                    runtime.env if options.container_env is None else options.container_env,
                    runtime.options,
                )
        self._env = {**os.environ}
        if options.slurm_conf is not None:
            self._env["SLURM_CONF"] = str(options.slurm_conf)
        self._elements: dict[TaskKey, Element] = {}
        self._events: list[TaskEvent] = []
        self._lock = threading.Lock()
        self._polled = 0.0
        self._task_env = base_env()

    @classmethod
    def from_config(cls, name: str, options: Any, host: Host) -> SlurmExecutor:
        settings = host.settings
        work = options.work_dir or settings.jobs_path / f"slurm-{name}"
        if options.containers and host.runtime is None:
            raise ConfigError(
                f"executor '{name}': containers = true needs containers on the server too (it "
                "pins each job's image by digest): install podman there, or set the server's "
                "own containers = true"
            )
        runtime = host.runtime if options.containers else None
        return cls(name, options, settings.storage_path, work, host.sandbox, runtime)

    @property
    def capacity(self) -> int:
        return self.options.capacity

    @property
    def prefetch(self) -> int:
        return self.options.prefetch

    def space_path(self, space: str, *, container: bool = False) -> str:
        return f"{SPACES}/{space}" if container else str(self.storage_root / space)

    def pin_image(self, image: str, pull: Pull | None = None) -> str:
        """An image of the platform registry is resolved through the registry's API, not
        pulled here (the nodes pull it, ``keep_pull``); any other, from this machine's store."""
        if self.runtime is None:
            return super().pin_image(image)
        if pull is not None:
            return resolve_digest(image, pull)
        return self.runtime.pin(image)

    def keep_pull(self, job_id: int, image: str, pull: Pull) -> None:
        """The job's credential as a containers-auth.json beside its arrays, readable by the
        server's user only (the user the cluster runs its tasks as)."""
        host, _, _ = split_reference(image)
        user, password = pull.credentials
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        folder = self.work_dir / str(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / AUTH_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": {host: {"auth": auth}}, "tls_verify": pull.tls_verify}, f)

    def health(self) -> str | None:
        missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
        if missing:
            return f"{', '.join(missing)} not found on the server (apt-get install slurm-client)"
        done = self._slurm(["squeue", "--noheader", "--jobs=0"], check=False)
        if done.returncode != 0 and "Invalid job id" not in done.stderr:
            return f"squeue failed: {(done.stderr.strip().splitlines() or ['no message'])[-1]}"
        return None

    # -- commands -------------------------------------------------------------------------------

    def _slurm(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, env=self._env, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise PrimageError(f"{argv[0]} failed on executor '{self.name}': {why}")
        return done

    def folder(self, key: TaskKey) -> Path:
        return self.work_dir / str(key.job_id) / f"{key.index}.{key.attempt}"

    # -- the contract ---------------------------------------------------------------------------

    async def submit(self, runs: Sequence[TaskRun]) -> None:
        by_job: dict[int, list[TaskRun]] = {}
        for run in runs:
            by_job.setdefault(run.key.job_id, []).append(run)
        for job_runs in by_job.values():
            for chunk in chunks(job_runs, self.options.max_array_size):
                await asyncio.to_thread(self._submit_array, chunk)

    def _submit_array(self, runs: Sequence[TaskRun]) -> None:
        """One sbatch for tasks whose indexes span less than MaxArraySize: the array index is
        the task index less the first one's (Slurm bounds index values, not their count). One
        script holds every task of the array (a branch each), so that a 10,000-task job is ten
        files and ten sbatch calls, not 10,000 of each."""
        first = runs[0]
        base = first.key.index
        job_dir = self.work_dir / str(first.key.job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for run in runs:
                self._elements[run.key] = Element(run.key, self.folder(run.key),
                                                  timeout_s=run.timeout_s)  # fmt: skip
        batch = job_dir / f"array-{first.key.index}.{first.key.attempt}.sh"
        batch.write_text(self._array_script(runs, base))
        indexes = [r.key.index - base for r in runs]
        argv = ["sbatch", "--parsable", *self._directives(first, indexes)]
        try:
            done = self._slurm([*argv, str(batch)])
        except PrimageError as exc:
            self._not_started(runs, exc.detail)
            return
        array_id = done.stdout.strip().split(";")[0]
        lines = []
        with self._lock:
            for run in runs:
                element = self._elements[run.key]
                element.slurm_id = f"{array_id}_{run.key.index - base}"
                lines.append(f"{run.key.index} {run.key.attempt} {element.slurm_id}\n")
        (job_dir / f"array-{array_id}.ids").write_text("".join(lines))  # for adopt
        self.wake()

    def _not_started(self, runs: Sequence[TaskRun], why: str) -> None:
        """sbatch refused the array: its attempts end as failures that say why."""
        with self._lock:
            for run in runs:
                self._elements.pop(run.key, None)
                self._events.append(
                    TaskEvent(run.key, "started", utc(), external_id="sbatch")
                )  # the attempt counts: a refusal of the cluster is the job's to fix
                self._events.append(
                    TaskEvent(run.key, "finished", utc(), outcome=Outcome.EXITED, exit_code=125,
                              message=why)
                )  # fmt: skip
        self.wake()

    def _directives(self, run: TaskRun, indexes: Iterable[int]) -> list[str]:
        """The sbatch options of one array: what the job asks, then the operator's defaults."""
        job_dir = self.work_dir / str(run.key.job_id)
        throttle = f"%{run.max_parallel}" if run.max_parallel else ""
        args = [
            f"--array={ranges(indexes)}{throttle}",
            f"--job-name=primage-{run.key.job_id}",
            f"--output={job_dir}/slurm-%A_%a.out",
            f"--chdir={job_dir}",
            f"--cpus-per-task={run.cpus}",
            "--kill-on-invalid-dep=yes",
        ]
        if run.memory_bytes:
            args.append(f"--mem={max(1, -(-run.memory_bytes // (1024 * 1024)))}M")
        if run.timeout_s:
            args.append(f"--time={max(1, -(-int(run.timeout_s) // 60))}")
        if run.gpus and not run.options.get("gres"):  # gres given: it says which GPUs
            args.append(f"--gres=gpu:{run.gpus}")
        for option in ("partition", "account", "qos", "gres", "constraint"):
            value = run.options.get(option) or getattr(self.options, option, None)
            if value:
                args.append(f"--{option}={value}")
        return [*args, *self.options.directives]

    def _array_script(self, runs: Sequence[TaskRun], base: int) -> str:
        """One job's array as a shell script: what all its tasks share once at the top (the
        environment, and the sandbox as a function ``confined ATTEMPT ARGV…``: its spaces and
        folder checks are the job's), then a branch per task, chosen by the array index."""
        first = runs[0]
        env, own = self._task_env, frozenset[str]()
        header = ""
        if first.image is not None:
            assert self.node_runtime is not None
            env = self.node_runtime.process_env(self._task_env, {})
            own = frozenset(env)  # podman's own: a task's variables never replace them
        elif self.sandbox is not None:
            env = sandboxed(self._task_env)
            header = self._confined(first)
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
        pull = self._pull_options(first.key.job_id) if first.image is not None else []
        branches = [
            f"  {run.key.index - base})\n{self._task_script(run, own, pull)};;" for run in runs
        ]
        return (
            "#!/bin/sh\n" + exports + header + 'case "$SLURM_ARRAY_TASK_ID" in\n'
            + "\n".join(branches) + "\n"
            '  *) echo "primage: no task $SLURM_ARRAY_TASK_ID in this array" >&2; exit 125 ;;\n'
            "esac\n"
        )  # fmt: skip

    def _confined(self, run: TaskRun) -> str:
        """The shell function that runs an attempt of ``run``'s job in the platform's sandbox:
        its spaces (each folder checked again once mounted), its own work folder, no network;
        or, when a folder cannot be mounted safely, says why and exits 125."""
        assert self.sandbox is not None
        try:
            binds, check = space_binds(run, self.storage_root)
        except PrimageError as exc:  # a folder that vanished, or became a link out
            return f"confined() {{\n  {shlex.join(procs.failing(exc.detail))}\n}}\n"
        work = f"{self.work_dir / str(run.key.job_id)}/{_ATTEMPT}/work"
        argv = self.sandbox.wrap(
            verified([_ARGV], check), binds=[*binds, Bind(work, False)], workdir=work
        )
        return f"confined() {{\n  a=$1; shift\n  {' '.join(map(_shell_word, argv))}\n}}\n"

    def _task_script(self, run: TaskRun, own: frozenset[str], pull: list[str]) -> str:
        """The lines that run one attempt on a compute node: confined as on this machine, its
        output in its folder, its exit code recorded where the server reads it."""
        q = shlex.quote
        folder = self.folder(run.key)
        work = str(folder / "work")
        argv = procs.argv_for(run.command)
        chown = ""
        if run.image is not None:
            argv = self._container(run, work, pull)
        elif self.sandbox is not None:
            argv = ["confined", folder.name, *argv]
            if self.sandbox.owner is not None:
                chown = f" && chown {self.sandbox.owner[0]}:{self.sandbox.owner[1]} {q(work)}"
        else:
            protected = sorted(self.space_path(n) for n, ro in run.mounts.items() if ro)
            argv = procs.read_only(protected, argv)
        exports = "".join(
            f"    export {k}={q(v)}\n" for k, v in sorted(run.env.items()) if k not in own
        )
        out, err, code = (q(str(folder / n)) for n in ("stdout.log", "stderr.log", "exit"))
        line = f"{shlex.join(argv)} > {out} 2> {err} < /dev/null"
        if run.image is not None:  # scancel or --time: the container is removed, not orphaned
            assert self.node_runtime is not None
            name = task_container(run.key.job_id, run.key.index, run.key.attempt)
            stop = shlex.join([*self.node_runtime.command, "rm", "--force", "--time", "1", name])
            line = f"{line} &\n    trap {q(stop + ' > /dev/null 2>&1')} TERM\n    wait $!"
        return (
            f"    mkdir -p {q(work)}{chown} && cd {q(work)} || exit 125\n"
            f"{exports}"
            f"    {line}\n"
            "    code=$?\n"
            f'    echo "$code" > {code}.tmp && mv {code}.tmp {code}\n'
            '    exit "$code"\n'
        )

    def _pull_options(self, job_id: int) -> list[str]:
        """How a node gets the job's image: pulled by digest with the job's own credential
        when it is from the platform registry (``keep_pull``), else never (it has it)."""
        auth = self.work_dir / str(job_id) / AUTH_FILE
        try:
            verify = json.loads(auth.read_text()).get("tls_verify", True)
        except FileNotFoundError:
            return ["--pull", "never"]
        return ["--pull", "missing", "--authfile", str(auth), f"--tls-verify={str(verify).lower()}"]

    def _container(self, run: TaskRun, work: str, pull: list[str]) -> list[str]:
        """The ``podman run`` of one attempt on a node, as the local executor's: its spaces at
        /spaces/NAME (read-only where asked), its work folder at /work, no network (the task's
        variables are handed on by name from the script's environment)."""
        runtime = self.node_runtime
        assert runtime is not None
        return container_argv(
            runtime,
            run,
            self.storage_root,
            workdir=work,
            base_env=self._task_env,
            sig_proxy=False,  # Slurm signals every process of the job: the script stops it
            pull=pull,
        )

    async def events(self) -> list[TaskEvent]:
        if time.monotonic() - self._polled >= self.options.poll_seconds:
            self._polled = time.monotonic()
            try:
                await asyncio.to_thread(self._poll)
            except (PrimageError, subprocess.TimeoutExpired, ValueError) as exc:
                log.warning("executor %s: cannot read the queue: %s", self.name, exc)
        with self._lock:
            found, self._events = self._events, []
        return found

    def _poll(self) -> None:
        with self._lock:
            arrays = sorted({e.slurm_id.split("_")[0] for e in self._elements.values()
                             if e.slurm_id})  # fmt: skip
        if not arrays:
            return
        done = self._slurm(["squeue", "--json", "--states=all", f"--jobs={','.join(arrays)}"],
                           check=False)  # fmt: skip
        if done.returncode != 0 and "Invalid job id" not in done.stderr:
            raise PrimageError(done.stderr.strip() or "squeue failed")
        records = json.loads(done.stdout)["jobs"] if done.returncode == 0 else []
        states: dict[str, str] = {}
        pending: set[str] = set()
        for record in records:
            array = str(record.get("array_job_id") or record["job_id"])
            task = record.get("array_task_id")
            if task is None:  # elements not started yet, listed as one record: 0-99%4
                pending |= {f"{array}_{i}" for i in parse_ranges(record.get("array_task_string"))}
            else:
                states[f"{array}_{task}"] = str(record["job_state"])
        now = utc()
        with self._lock:
            for key, element in list(self._elements.items()):
                if element.slurm_id is None or element.slurm_id in pending:
                    continue
                state = states.get(element.slurm_id)
                if state in RUNNING and not element.started:
                    element.started = True
                    self._events.append(
                        TaskEvent(key, "started", now, external_id=element.slurm_id)
                    )
                elif state in ENDED or state is None:
                    self._finish(element, state, now)

    def _finish(self, element: Element, state: str | None, now: Any) -> None:
        """An element that ended (``state``), or that the queue no longer knows (None)."""
        key = element.key
        if not element.started:
            self._events.append(TaskEvent(key, "started", now, external_id=element.slurm_id))
        code = read_exit(element.folder)
        outcome = ENDED.get(state or "", Outcome.EXITED)
        if element.cancelled or state == "CANCELLED":
            outcome = Outcome.CANCELLED
        elif outcome is Outcome.EXITED and code is None:
            outcome = Outcome.LOST  # gone without the exit code its script writes
        message = ""
        if outcome is Outcome.TIMED_OUT:
            message = f"timed out after {element.timeout_s or 0:g} s (Slurm --time)"
        elif outcome is Outcome.LOST:
            message = (
                f"Slurm element {element.slurm_id} ended ({state or 'gone'}) without an exit code"
            )
        elif code:
            message = f"exit code {code}\n{procs.tail(element.folder / 'stderr.log')}".strip()
        self._events.append(TaskEvent(key, "finished", now, outcome=outcome, exit_code=code,
                                      message=message))  # fmt: skip
        self._elements.pop(key, None)

    async def held(self) -> dict[TaskKey, str | None]:
        """The arrays of this executor the cluster has queued or running (its ``work_dir``),
        taken back where this server lost track of them, with those it tracks still; elements
        no ids file names (work the platform forgot entirely) are cancelled here."""
        listed = await asyncio.to_thread(self._listed)
        submitted = await asyncio.to_thread(self._submitted, {job for job, _ in listed.values()})
        by_id = {slurm_id: key for key, slurm_id in submitted.items()}
        unknown = []
        with self._lock:
            for slurm_id, (_, running) in listed.items():
                key = by_id.get(slurm_id)
                if key is None:
                    unknown.append(slurm_id)
                elif key not in self._elements:
                    log.warning("executor %s: took %s (%s) back", self.name, key, slurm_id)
                    self._elements[key] = Element(key, self.folder(key), slurm_id, running)
            found: dict[TaskKey, str | None] = {
                e.key: e.external_id for e in self._events if e.kind == "finished"
            }
            found |= {key: e.slurm_id if e.started else None for key, e in self._elements.items()}
        if unknown:
            log.warning("executor %s: cancelling %s: no task of the platform", self.name, unknown)
            await asyncio.to_thread(self._slurm, ["scancel", *unknown], check=False)
        return found

    def _listed(self) -> dict[str, tuple[int, bool]]:
        """Slurm id → (job, running) of every element of this executor's arrays still queued
        or running: the cluster's own view, whatever this server remembers."""
        done = self._slurm(["squeue", "--json", "--me"])
        listed: dict[str, tuple[int, bool]] = {}
        for record in json.loads(done.stdout)["jobs"]:
            name = str(record.get("name", ""))
            job = name.removeprefix("primage-")
            cwd = str(record.get("current_working_directory", "")).rstrip("/")
            if not job.isdigit() or cwd != str(self.work_dir / job):
                continue
            array = str(record.get("array_job_id") or record["job_id"])
            task = record.get("array_task_id")
            if task is None:
                for index in parse_ranges(record.get("array_task_string")):
                    listed[f"{array}_{index}"] = (int(job), False)
            else:
                listed[f"{array}_{task}"] = (int(job), record.get("job_state") in RUNNING)
        return listed

    async def cancel(self, keys: Sequence[TaskKey]) -> None:
        ids = []
        with self._lock:
            for key in keys:
                element = self._elements.get(key)
                if element is not None:
                    element.cancelled = True
                    if element.slurm_id:
                        ids.append(element.slurm_id)
        if ids:
            await asyncio.to_thread(self._slurm, ["scancel", *ids], check=False)
        self._polled = 0.0  # read the queue at the next turn
        self.wake()

    async def adopt(self, refs: Sequence[ExternalRef]) -> list[ExternalRef]:
        orphans = []
        submitted = await asyncio.to_thread(self._submitted, {r.key.job_id for r in refs})
        with self._lock:
            for ref in refs:
                folder = self.folder(ref.key)
                slurm_id = ref.value or submitted.get(ref.key)
                if slurm_id is None:  # sbatch never answered for it: it was not submitted
                    orphans.append(ref)
                    continue
                element = Element(ref.key, folder, slurm_id, started=ref.value is not None,
                                  timeout_s=ref.timeout_s)  # fmt: skip
                self._elements[ref.key] = element
        self._polled = 0.0
        return orphans

    def _submitted(self, jobs: Iterable[int]) -> dict[TaskKey, str]:
        """The Slurm id of every attempt sbatch took, from the ids files written at submit."""
        found = {}
        for job_id in jobs:
            for ids in (self.work_dir / str(job_id)).glob("array-*.ids"):
                for line in ids.read_text().splitlines():
                    index, attempt, slurm_id = line.split()
                    found[TaskKey(job_id, int(index), int(attempt))] = slurm_id
        return found

    def logs(
        self, key: TaskKey, stream: Literal["stdout", "stderr"], *, follow: bool
    ) -> AsyncIterator[bytes]:
        async def running() -> bool:
            return key in self._elements

        return follow_file(self.folder(key) / f"{stream}.log", follow, running)

    async def ended(self, job_ids: Sequence[int]) -> None:
        """Their pull credentials go (revoked already); their logs stay until ``forget``."""
        for job_id in job_ids:
            (self.work_dir / str(job_id) / AUTH_FILE).unlink(missing_ok=True)

    async def forget(self, job_id: int) -> None:
        await asyncio.to_thread(shutil.rmtree, self.work_dir / str(job_id), True)

    async def close(self) -> None:
        """Nothing to stop: the cluster keeps running the arrays; the next server adopts them."""


# Stand-ins in the sandbox's argv for what the function ``confined`` is given: the attempt's
# folder name (``$a``) and the task's argv (``"$@"``).
_ATTEMPT, _ARGV = "\0attempt\0", "\0argv\0"


def _shell_word(word: str) -> str:
    if word == _ARGV:
        return '"$@"'
    return '"$a"'.join(shlex.quote(part) for part in word.split(_ATTEMPT))


def chunks(runs: Sequence[TaskRun], span: int) -> Iterator[list[TaskRun]]:
    """Runs in index order, cut where the indexes of one chunk would span ``span`` or more."""
    chunk: list[TaskRun] = []
    for run in sorted(runs, key=lambda r: r.key.index):
        if chunk and run.key.index - chunk[0].key.index >= span:
            yield chunk
            chunk = []
        chunk.append(run)
    if chunk:
        yield chunk


def ranges(indexes: Iterable[int]) -> str:
    """0,1,2,5,7,8 → '0-2,5,7-8' (sbatch --array's syntax)."""
    parts: list[str] = []
    ordered = sorted(set(indexes))
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def parse_ranges(text: object) -> list[int]:
    """'0-3,7%2' → [0, 1, 2, 3, 7] (squeue's array_task_string; the throttle dropped)."""
    if not isinstance(text, str) or not text:
        return []
    found: list[int] = []
    for part in text.split("%")[0].split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?(?::(\d+))?", part.strip())
        if match:
            first, last, step = match.group(1), match.group(2), match.group(3)
            found += range(int(first), int(last or first) + 1, int(step or 1))
    return found


def read_exit(folder: Path) -> int | None:
    text = read_text(folder / "exit")
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
