"""The executor contract: what the reconciler asks of every place that runs tasks.

The database is the single source of truth and executors never write it. The reconciler hands
them :class:`TaskRun` s, they report back through :class:`TaskEvent` s that the reconciler drains,
and each started task gets an external id (a PID, a pod name, a Slurm job id) that is stored with
the task, so that a restarted server can re-attach to work that kept running (``adopt``).

Subclasses override every abstract method; one that forgets fails when it is instantiated.
Capabilities an executor lacks are refused with its name (:meth:`Executor.require`), never faked.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError

from primage.errors import BadRequest, describe_invalid
from primage.models import Strict

if TYPE_CHECKING:
    from primage.apps.backends import InstanceBackend
    from primage.config import Settings
    from primage.host.containers import Runtime
    from primage.host.sandbox import Sandbox


@dataclass(frozen=True)
class TaskKey:
    """One attempt of one task: a task handed to an executor twice is two attempts."""

    job_id: int
    index: int
    attempt: int

    def __str__(self) -> str:
        return f"{self.job_id}/{self.index}.{self.attempt}"  # job/task.attempt, as in folders


@dataclass(frozen=True)
class TaskRun:
    """Everything an executor needs to run one attempt of a task, already rendered."""

    key: TaskKey
    command: str
    env: Mapping[str, str]
    mounts: Mapping[str, bool]  # space name → read-only
    folders: Mapping[str, str] = field(default_factory=dict)  # space → the one folder it sees
    cpus: int = 1
    memory_bytes: int | None = None
    gpus: int = 0
    timeout_s: float | None = None
    image: str | None = None  # pinned: repository@sha256:…
    network: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # the job's executor_options
    max_parallel: int | None = None  # the job's: at most so many of its tasks at once


@dataclass(frozen=True)
class Pull:
    """How to pull an image from the platform registry on someone's behalf."""

    credentials: tuple[str, str]  # user name, a short-lived read-only platform token
    tls_verify: bool


@dataclass(frozen=True)
class ExternalRef:
    """How an executor finds a task attempt again; ``value`` is None until it started."""

    key: TaskKey
    value: str | None
    timeout_s: float | None = None  # the attempt's wall-time limit, still enforced once adopted


def utc(timestamp: float | None = None) -> dt.datetime:
    """Now, or a Unix timestamp, as an aware UTC datetime."""
    if timestamp is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


class Outcome(StrEnum):
    EXITED = "exited"  # exit_code says how
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"  # the executor lost track of it (e.g. its process vanished while we were down)
    NOT_STARTED = "not_started"  # handed over but never started; may be handed over again


@dataclass(frozen=True)
class TaskEvent:
    key: TaskKey
    kind: Literal["started", "finished"]
    at: dt.datetime
    external_id: str | None = None
    outcome: Outcome | None = None
    exit_code: int | None = None
    message: str = ""


def gone(ref: ExternalRef) -> TaskEvent:
    """The end of an attempt that could not be re-attached: never started, or lost with its
    process while the server was down."""
    if ref.value is None:
        return TaskEvent(ref.key, "finished", utc(), outcome=Outcome.NOT_STARTED)
    return TaskEvent(
        ref.key,
        "finished",
        utc(),
        outcome=Outcome.LOST,
        message="its process ended while the server was down",
    )


@dataclass(frozen=True)
class Host:
    """What every executor kind is built with: the platform's settings, and this machine's
    container runtime and sandbox (None where there is none)."""

    settings: Settings
    runtime: Runtime | None
    sandbox: Sandbox | None


class ExecutorOptions(Strict):
    """Options every executor kind takes (a kind's own model adds to these)."""

    description: str = Field("", description="What it is, for 'primage executor ls'.")


class NoJobOptions(Strict):
    """An executor whose jobs take no executor_options."""


class Executor(abc.ABC):
    """Runs task attempts and reports what happened to them.

    - ``submit(runs)``: accept attempts; may return before they run. Queued attempts start as
      capacity frees up; each reports ``started`` (with its external id) then ``finished``.
    - ``events()``: drain what happened since the last call (never blocks).
    - ``cancel(keys)``: stop these attempts; each reports ``finished`` with ``CANCELLED``.
    - ``adopt(refs)``: re-attach to attempts started before a restart; returns the refs it could
      NOT adopt (never started, or gone), for the reconciler to run again.
    - ``held()``: the attempts it holds now (queued, running, or ended with the end not yet
      drained by ``events()``), as its backend sees them; the reconciler's periodic sync
      compares them with the database (a task it lost, a task the database forgot).
    - ``logs(key, stream, follow)``: the attempt's stdout or stderr, as it grows when following.
    - ``ended(job_ids)``: these jobs have ended; drop what only their tasks needed (pull
      credentials).
    - ``forget(job_id)``: remove what it keeps of a finished job (logs, working folders).
    - ``close()``: stop accepting work; running attempts may keep running, to be adopted later.
    """

    kind: ClassVar[str]
    supports: frozenset[str]  # capabilities; an instance may add some its configuration allows
    #: The operator's options of this kind (``executors.NAME`` in the settings).
    Options: ClassVar[type[ExecutorOptions]] = ExecutorOptions
    #: What a job may give as ``executor_options`` here.
    JobOptions: ClassVar[type[BaseModel]] = NoJobOptions

    #: Whether the machines that run its tasks pull a job's image themselves (given a pull
    #: credential of the job's own, ``keep_pull``), rather than this server pulling it.
    pulls_on_nodes = False
    #: Whether tasks without an image run in this machine's sandbox (the server refuses them to
    #: non-admins where it has none); False where the executor confines them itself (pods).
    sandboxed_by_host = True
    #: Whether stdout and stderr are one log (Kubernetes keeps one per container): ``logs``
    #: then serves both as ``stdout``, and ``stderr`` is refused saying so.
    one_log = False

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        #: Called (from any thread) when events are waiting; the reconciler sets it.
        self.wake: Callable[[], None] = lambda: None

    @classmethod
    @abc.abstractmethod
    def from_config(cls, name: str, options: Any, host: Host) -> Executor:
        """The executor ``name`` as configured (``options``: a validated ``cls.Options``)."""

    def job_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """A job's ``executor_options`` checked against this kind's schema, or a 400."""
        if given and not self.JobOptions.model_fields:
            raise BadRequest(
                f"the '{self.name}' executor ({self.kind}) takes no executor_options: remove "
                f"{', '.join(sorted(given))}"
            )
        try:
            return self.JobOptions.model_validate(dict(given)).model_dump(exclude_unset=True)
        except ValidationError as exc:
            fields = list(self.JobOptions.model_fields)
            found = describe_invalid(exc.errors(), known=lambda _loc: fields)
            raise BadRequest(f"executor_options for '{self.name}' ({self.kind}): {found}") from None

    def health(self) -> str | None:
        """Why it cannot run tasks now, or None when it can."""
        return None

    def require(self, capability: str, why: str) -> None:
        if capability not in self.supports:
            have = ", ".join(sorted(self.supports)) or "none"
            raise BadRequest(
                f"{why}, but the '{self.name}' executor has no {capability} support "
                f"(it supports: {have})"
            )

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """Cores' worth of tasks that run at once."""

    @property
    def prefetch(self) -> int:
        """Tasks to keep handed to it beyond those running: a queue of its own to start from."""
        return max(8 * self.capacity, 256)

    @abc.abstractmethod
    def space_path(self, space: str, *, container: bool = False) -> str:
        """The path at which tasks see a space (a real folder, or /spaces/<name> in a container)."""

    def pin_image(self, image: str, pull: Pull | None = None) -> str:
        """The image reference tasks will run, pinned by digest (executors with containers);
        ``pull``: credentials to fetch it from the platform registry if it is not here."""
        self.require("containers", f"the job asks for image '{image}'")
        raise NotImplementedError

    def keep_pull(self, job_id: int, image: str, pull: Pull) -> None:
        """Keep the job's pull credential where its tasks' nodes find it (``pulls_on_nodes``);
        it is revoked when the job ends."""
        raise NotImplementedError(f"the '{self.name}' executor's nodes pull no images")

    def keep_app_pull(self, app_id: int, image: str, pull: Pull) -> None:
        """Keep an app's pull credential where its instances' nodes find it (``pulls_on_nodes``);
        it is revoked, and removed by its instance backend's ``forget``, with the app."""
        raise NotImplementedError(f"the '{self.name}' executor's nodes pull no app images")

    def instance_backend(self, folder: Path) -> InstanceBackend | None:
        """Where its apps' instances run, when it runs apps beyond this machine's processes
        and containers (``apps/backends.py``); ``folder`` keeps their output. None: on this
        machine (``LocalBackend``)."""
        return None

    @abc.abstractmethod
    async def submit(self, runs: Sequence[TaskRun]) -> None: ...

    @abc.abstractmethod
    async def events(self) -> list[TaskEvent]: ...

    @abc.abstractmethod
    async def cancel(self, keys: Sequence[TaskKey]) -> None: ...

    @abc.abstractmethod
    async def adopt(self, refs: Sequence[ExternalRef]) -> list[ExternalRef]: ...

    @abc.abstractmethod
    async def held(self) -> dict[TaskKey, str | None]:
        """Every attempt submitted or adopted whose end ``events()`` has not returned yet, with
        its external id (None before it started). It must hold even while attempts end: an
        attempt missing here and from the next ``events()`` is taken as lost and run again."""

    @abc.abstractmethod
    def logs(
        self, key: TaskKey, stream: Literal["stdout", "stderr"], *, follow: bool
    ) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def ended(self, job_ids: Sequence[int]) -> None:
        """These jobs have ended: drop what only their running tasks needed (their pull
        credentials, revoked by then). Their logs stay until ``forget``."""
        return None  # nothing kept beyond what ``forget`` removes

    @abc.abstractmethod
    async def forget(self, job_id: int) -> None:
        """Remove what the executor keeps of a finished job (logs, working folders)."""
