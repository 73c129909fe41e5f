"""The reconciler: a loop in the server that moves tasks from the database to the executor and back.

Each turn drains the executor's events, records them, hands ready tasks to the executor so that it
never runs dry, asks it to stop the tasks of cancelled jobs, and closes finished jobs, all in one
transaction. Turns are triggered by events (a short pause lets them batch) and by a heartbeat. At
start it first re-attaches to the tasks an earlier server left running (``adopt``).

Every ``sync_s`` seconds a turn is also a sync: it compares what the executor holds (``held``)
with the tasks the database has queued or running there, and fixes what drifted: a task the
executor no longer holds is lost (run again, not counted as a failure); an attempt the executor
runs that the database does not (a replaced attempt, a job it no longer has) is cancelled.

The executor keeps up to ``capacity`` tasks running; the reconciler keeps a few more queued in it
(``prefetch``) so that a task ending starts the next one without waiting for a database turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Row, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from primage.db import Database, tables
from primage.db.tables import UTCDateTime
from primage.executors.base import (
    Executor,
    ExternalRef,
    Outcome,
    TaskEvent,
    TaskKey,
    TaskRun,
    gone,
    utc,
)
from primage.jobs import states
from primage.jobs.expand import TaskFactory
from primage.jobs.progress import close_if_done
from primage.jobs.states import JobState, TaskState
from primage.models.jobs import JobSpec, Retries

log = logging.getLogger("primage.jobs")

HEARTBEAT_S = 1.0
BATCH_PAUSE_S = 0.1  # after a wake-up, let more events arrive so that they share a transaction
LOST_LIMIT = 3  # times a task may vanish with its process (not its fault) before it fails

T = tables.Task


@dataclass
class Turn:
    """What one transaction decided for the executor to do next."""

    runs: list[TaskRun] = field(default_factory=list)
    cancel: list[TaskKey] = field(default_factory=list)
    written: set[str] = field(default_factory=set)  # spaces that jobs which ended could write
    ended: list[int] = field(default_factory=list)  # jobs this turn closed


@dataclass(frozen=True)
class JobInfo:
    spec: JobSpec
    tasks: TaskFactory


class Reconciler:
    def __init__(
        self,
        db: Database,
        executor: Executor,
        *,
        prefetch: int | None = None,
        observe: Callable[[Sequence[TaskEvent]], None] | None = None,
        written: Callable[[set[str]], None] | None = None,
        sync_s: float | None = None,
        services: Callable[[], list[TaskEvent]] | None = None,
    ) -> None:
        self.db = db
        self.executor = executor
        # The jobs this loop runs: those routed to its executor. An interactive job's one task
        # is its app's, which the app supervisor starts, watches and ends (apps/supervisor.py);
        # it is never handed out nor adopted here: its events come from ``services``.
        self._ours = and_(
            tables.Job.executor == executor.name, tables.Job.kind != states.INTERACTIVE
        )
        #: Interactive jobs' task events (the app supervisor's), recorded like the executor's.
        self.services = services
        self.observe = observe  # told of every event once it is recorded (metrics)
        self.written = written  # told, in a thread, of spaces that ended jobs wrote (quotas)
        self.prefetch = prefetch or executor.prefetch
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: dict[int, JobInfo] = {}
        self._cancel_sent: set[TaskKey] = set()
        self._task: asyncio.Task[None] | None = None
        self._carry: list[TaskEvent] = []
        self.sync_s = sync_s  # how often a turn compares the executor with the database
        self._next_sync = time.monotonic() + (sync_s or 0)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.executor.wake = self.poke
        await self.adopt()
        self._task = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.executor.close()

    def poke(self) -> None:
        """Ask for a turn soon; safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), HEARTBEAT_S)
                await asyncio.sleep(BATCH_PAUSE_S)
            except TimeoutError:
                pass
            self._wakeup.clear()
            sync = self.sync_s is not None and time.monotonic() >= self._next_sync
            try:
                await self.turn(sync=sync)
            except Exception:  # one bad turn must not stop the platform's jobs
                log.exception("reconciler turn failed; retrying at the next one")

    async def turn(self, *, sync: bool = False) -> None:
        """One transaction; with ``sync``, one that also fixes drift (see the module's text)."""
        held = None
        if sync:
            if self.sync_s is not None:
                self._next_sync = time.monotonic() + self.sync_s
            try:  # before draining: what ends meanwhile is drained
                held = await self.executor.held()
            except Exception as exc:  # the cluster not answering: this turn is a plain one
                log.warning("executor %s: cannot say what it holds: %s", self.executor.name, exc)
        events = self._carry + await self.executor.events()
        if self.services is not None:
            events += self.services()
        self._carry = []
        try:
            decided = await asyncio.to_thread(self._transaction, events, held=held)
        except Exception:
            self._carry = events  # nothing was recorded: try them again at the next turn
            raise
        if self.observe is not None:
            self.observe(events)
        if decided.cancel:
            await self.executor.cancel(decided.cancel)
        if decided.runs:
            await self.executor.submit(decided.runs)
        if decided.written and self.written is not None:
            await asyncio.to_thread(self.written, decided.written)
        if decided.ended:
            await self.executor.ended(decided.ended)

    async def adopt(self) -> None:
        """Re-attach to what an earlier server left queued or running; requeue what is gone."""
        refs = await asyncio.to_thread(self._active_refs)
        if not refs:
            return
        orphans = await self.executor.adopt(refs)
        events = [gone(ref) for ref in orphans]
        log.info("adopted %d task(s), %d to run again", len(refs) - len(orphans), len(orphans))
        await asyncio.to_thread(self._transaction, events, hand_out=False)

    def _active_refs(self) -> list[ExternalRef]:
        with self.db.session() as session:
            rows = session.execute(
                select(T.job_id, T.index, T.attempt, T.external_id)
                .join(tables.Job, tables.Job.id == T.job_id)
                .where(T.state.in_(states.TASK_ACTIVE), self._ours)
            ).all()
            return [
                ExternalRef(
                    TaskKey(job_id, index, attempt),
                    external_id,
                    self._job(session, job_id).spec.timeout,
                )
                for job_id, index, attempt, external_id in rows
            ]

    # -- one transaction ------------------------------------------------------------------------

    def _transaction(
        self,
        events: Sequence[TaskEvent],
        *,
        hand_out: bool = True,
        held: dict[TaskKey, str | None] | None = None,
    ) -> Turn:
        decided = Turn()
        with self.db.session() as session:
            touched = self._record(session, events)
            decided.cancel = self._cancellations(session)
            if held is not None:
                ended = {e.key for e in events if e.kind == "finished"}
                lost, forgotten = self._drift(session, held, ended)
                touched |= self._record(session, lost)
                decided.cancel += forgotten
            if hand_out:
                decided.runs = self._hand_out(session)
            decided.written, decided.ended = self._close_jobs(session, touched)
        return decided

    def _drift(
        self, session: Session, held: dict[TaskKey, str | None], ended: set[TaskKey]
    ) -> tuple[list[TaskEvent], list[TaskKey]]:
        """Tasks queued or running here that the executor does not hold (their end, as lost);
        attempts it holds that are not the database's current ones (to cancel)."""
        rows = session.execute(
            select(T.job_id, T.index, T.attempt, T.external_id)
            .join(tables.Job, tables.Job.id == T.job_id)
            .where(T.state.in_(states.TASK_ACTIVE), self._ours)
        ).all()
        active = {TaskKey(job, index, attempt): ref for job, index, attempt, ref in rows}
        now = utc()
        why = f"the '{self.executor.name}' executor no longer holds it (found by the sync)"
        lost = [
            TaskEvent(key, "finished", now, outcome=Outcome.LOST, message=why)
            if ref is not None
            else TaskEvent(key, "finished", now, outcome=Outcome.NOT_STARTED)
            for key, ref in active.items()
            if key not in held and key not in ended
        ]
        forgotten = [key for key in held if key not in active and key not in ended]
        if lost or forgotten:
            log.warning(
                "executor %s drifted from the database: %d task(s) lost (run again): %s; "
                "%d attempt(s) it runs that the database does not (cancelled): %s",
                self.executor.name,
                len(lost),
                ", ".join(str(e.key) for e in lost[:10]),
                len(forgotten),
                ", ".join(map(str, forgotten[:10])),
            )
        return lost, forgotten

    def _record(self, session: Session, events: Sequence[TaskEvent]) -> set[int]:
        """Apply the executor's events; returns the jobs they touched."""
        started: dict[TaskKey, TaskEvent] = {}
        finished: dict[TaskKey, TaskEvent] = {}
        for event in events:
            (started if event.kind == "started" else finished)[event.key] = event
        if started:
            self._mark_started(session, [e for k, e in started.items() if k not in finished])
        successes = [e for e in finished.values() if ok(e)]
        if successes:
            self._mark_succeeded(session, successes, started)
        others = [e for e in finished.values() if not ok(e)]
        if others:
            self._mark_failed(session, others, started)
        jobs = {k.job_id for k in started} | {k.job_id for k in finished}
        if started:
            session.execute(
                update(tables.Job)
                .where(tables.Job.id.in_({k.job_id for k in started}))
                .where(tables.Job.state == JobState.PENDING)
                .values(state=JobState.RUNNING, started_at=min(e.at for e in started.values())),
            )
        return jobs

    @staticmethod
    def _key_match() -> ColumnElement[bool]:
        return and_(
            T.job_id == bindparam("k_job"),
            T.index == bindparam("k_index"),
            T.attempt == bindparam("k_attempt"),
        )

    def _mark_started(self, session: Session, events: Sequence[TaskEvent]) -> None:
        if not events:
            return
        stmt = (
            update(T)
            .where(self._key_match(), T.state == TaskState.QUEUED)
            .values(
                state=TaskState.RUNNING,
                started_at=bindparam("s", type_=UTCDateTime()),
                external_id=bindparam("x"),
            )
        )
        session.connection().execute(
            stmt, [key_params(e.key) | {"s": e.at, "x": e.external_id} for e in events]
        )

    def _mark_succeeded(
        self, session: Session, events: Sequence[TaskEvent], started: dict[TaskKey, TaskEvent]
    ) -> None:
        stmt = (
            update(T)
            # or_ rather than IN: an expanding IN cannot be part of an executemany
            .where(self._key_match(), or_(*(T.state == s for s in states.TASK_ACTIVE)))
            .values(
                state=TaskState.SUCCEEDED,
                exit_code=0,
                message=bindparam("m"),
                finished_at=bindparam("f", type_=UTCDateTime()),
                started_at=func.coalesce(T.started_at, bindparam("s", type_=UTCDateTime())),
                external_id=func.coalesce(bindparam("x"), T.external_id),
            )
        )
        params = []
        for e in events:
            begin = started.get(e.key)
            params.append(
                key_params(e.key)
                | {
                    "f": e.at,
                    "m": e.message,
                    "s": begin.at if begin else e.at,
                    "x": begin.external_id if begin else None,
                }
            )
        session.connection().execute(stmt, params)

    def _mark_failed(
        self, session: Session, events: Sequence[TaskEvent], started: dict[TaskKey, TaskEvent]
    ) -> None:
        """Failures, timeouts, cancellations and lost tasks: few, so decided row by row."""
        for event in events:
            row = session.get(T, (event.key.job_id, event.key.index))
            if row is None or row.attempt != event.key.attempt:
                continue  # a late event from an attempt that was already replaced
            if row.state not in states.TASK_ACTIVE:
                continue
            begin = started.get(event.key)
            if begin is not None:
                row.external_id = begin.external_id
                row.started_at = row.started_at or begin.at
            self._fail(row, event, self._job(session, row.job_id).spec.retries)

    @staticmethod
    def _fail(row: tables.Task, event: TaskEvent, retries: Retries) -> None:
        """A non-success: retried, requeued or final, per the job's retries and the outcome."""
        row.exit_code = event.exit_code
        row.finished_at = event.at
        row.message = event.message
        if event.outcome is Outcome.CANCELLED:
            move(row, TaskState.CANCELLED)
            row.message = "cancelled"
            row.exit_code = None  # stopped by the platform, not the program's own exit
        elif event.outcome is Outcome.NOT_STARTED:
            move(row, TaskState.PENDING)
            row.attempt -= 1  # it never ran: its number (and folder) are free for the next one
        elif event.outcome is Outcome.LOST and row.attempt <= retries.count + LOST_LIMIT:
            move(row, TaskState.PENDING)  # not the task's fault: not counted as a failure
        else:
            row.failures += 1
            if row.failures <= retries.count:
                move(row, TaskState.PENDING)
                wait = retries.backoff * 2 ** (row.failures - 1)
                row.not_before = event.at + dt.timedelta(seconds=wait)
                row.message = (
                    f"attempt {row.attempt} failed, retrying in {wait:g} s: {event.message}"
                )
            else:
                move(row, TaskState.FAILED)
                row.message = event.message or f"failed ({event.outcome})"

    def _cancellations(self, session: Session) -> list[TaskKey]:
        rows = session.execute(
            select(T.job_id, T.index, T.attempt)
            .join(tables.Job, tables.Job.id == T.job_id)
            .where(tables.Job.cancel_requested, T.state.in_(states.TASK_ACTIVE))
            .where(self._ours)
        ).all()
        keys = [TaskKey(job, index, attempt) for job, index, attempt in rows]
        fresh = [k for k in keys if k not in self._cancel_sent]
        self._cancel_sent = set(keys)
        return fresh

    def _hand_out(self, session: Session) -> list[TaskRun]:
        """Pending tasks for the executor, oldest job first, so that it never runs dry: up to
        ``prefetch`` queued or running in all, and no more of a job than its ``max_parallel``."""
        room = self.prefetch - self._active(session)
        if room <= 0:
            return []
        now = utc()
        ready = (
            T.state == TaskState.PENDING,
            ~tables.Job.cancel_requested,
            self._ours,
            (T.not_before.is_(None)) | (T.not_before <= now),
        )
        jobs = session.scalars(
            select(T.job_id)
            .join(tables.Job, tables.Job.id == T.job_id)
            .where(*ready)
            .group_by(T.job_id)
            .order_by(T.job_id)
        ).all()
        rows: list[Row[int, int, int, str]] = []
        for job_id in jobs:
            take = room - len(rows)
            limit = self._job(session, job_id).spec.max_parallel
            if limit is not None:
                take = min(take, limit - self._active(session, job_id))
            if take <= 0:
                continue
            rows += session.execute(
                select(T.job_id, T.index, T.attempt, T.inputs)
                .join(tables.Job, tables.Job.id == T.job_id)
                .where(T.job_id == job_id, *ready)
                .order_by(T.index)
                .limit(take)
            ).all()
            if len(rows) >= room:
                break
        if not rows:
            return []
        session.connection().execute(
            update(T)
            .where(T.job_id == bindparam("k_job"), T.index == bindparam("k_index"))
            .where(T.state == TaskState.PENDING)
            .values(state=TaskState.QUEUED, attempt=bindparam("a")),
            [{"k_job": job, "k_index": index, "a": attempt + 1} for job, index, attempt, _ in rows],
        )
        runs = []
        for job, index, attempt, inputs in rows:  # (a Row's .index is tuple.index: unpack)
            info = self._job(session, job)
            key = TaskKey(job, index, attempt + 1)
            files = inputs.split("\n") if inputs else []
            runs.append(info.tasks.run(key, files))
        return runs

    def _active(self, session: Session, job_id: int | None = None) -> int:
        """Tasks queued in or running on the executor: all of this loop's, or one job's."""
        query = (
            select(func.count())
            .select_from(T)
            .join(tables.Job, tables.Job.id == T.job_id)
            .where(T.state.in_(states.TASK_ACTIVE), self._ours)
        )
        if job_id is not None:
            query = query.where(T.job_id == job_id)
        return session.scalar(query) or 0

    def _close_jobs(self, session: Session, jobs: Iterable[int]) -> tuple[set[str], list[int]]:
        """Close the jobs that are done; the spaces they could write, and those closed now."""
        written: set[str] = set()
        closed: list[int] = []
        for job_id in jobs:
            if close_if_done(session, job_id):
                info = self._jobs.pop(job_id, None)
                if info is not None:
                    written |= {name for name, ro in info.spec.mounts().items() if not ro}
                closed.append(job_id)
        return written, closed

    def _job(self, session: Session, job_id: int) -> JobInfo:
        info = self._jobs.get(job_id)
        if info is None:
            job = session.get(tables.Job, job_id)
            assert job is not None
            spec = JobSpec.model_validate_json(job.spec)
            contained = job.image is not None
            paths = {
                name: self.executor.space_path(name, container=contained) for name in spec.mounts()
            }
            info = JobInfo(spec, TaskFactory(spec, job.output_path, paths, job.image))
            self._jobs[job_id] = info
        return info


def move(row: tables.Task, new: TaskState) -> None:
    """Change a task's state, only along the transitions ``jobs/states.py`` allows."""
    old = TaskState(row.state)
    if not states.can_move(old, new):
        raise ValueError(f"task {row.job_id}/{row.index} cannot go from {old} to {new}")
    row.state = new


def ok(event: TaskEvent) -> bool:
    return event.outcome is Outcome.EXITED and event.exit_code == 0


def key_params(key: TaskKey) -> dict[str, int]:
    return {"k_job": key.job_id, "k_index": key.index, "k_attempt": key.attempt}
