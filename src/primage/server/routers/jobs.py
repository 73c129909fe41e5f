"""Jobs: submit, list, inspect, follow logs, cancel, remove, and download outputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Literal

import anyio
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from primage.auth import audit, policy
from primage.auth.policy import RANK, Role
from primage.auth.principal import Principal
from primage.config import Settings
from primage.db import lookup, tables
from primage.db.paging import page
from primage.errors import BadRequest, NotFound
from primage.executors.base import TaskKey
from primage.jobs import states
from primage.jobs.progress import close_if_done, task_counts
from primage.jobs.states import JobState, TaskState
from primage.jobs.submit import prepare, service_name, submit
from primage.models import BIGINT_MAX
from primage.models import jobs as m
from primage.server.deps import Caller, State
from primage.server.params import Id, Offset
from primage.server.pulls import registry_pull
from primage.storage.archive import tar_stream
from primage.storage.paths import as_space_paths

router = APIRouter(prefix="/jobs", tags=["jobs"])

T = tables.Task


def to_model(job: tables.Job, counts: dict[TaskState, int]) -> m.Job:
    return m.Job(
        id=job.id,
        name=job.name,
        kind=job.kind,
        owner=job.owner.name,
        state=job.state,
        executor=job.executor,
        output_space=job.output_space,
        output_path=job.output_path,
        task_count=job.task_count,
        counts=m.JobCounts(**{str(k): v for k, v in counts.items()}),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        message=job.message,
    )


def detail(session: Session, job: tables.Job, base_url: str) -> m.JobDetail:
    model = to_model(job, task_counts(session, job.id))
    spec = m.JobSpec.model_validate_json(job.spec)
    url = None
    if job.kind == states.INTERACTIVE and job.state not in states.JOB_DONE:
        url = f"{base_url}/apps/{service_name(job.id)}/"
    return m.JobDetail(**model.model_dump(), spec=spec, image=job.image, url=url)


def find(session: Session, caller: Principal, job_id: int, what: str) -> tables.Job:
    """The job, if the caller may `what` it; 404 for a job that does not exist."""
    job = session.get(tables.Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id} (primage job ls lists yours)")
    space = output_space(session, job)
    policy.check_job(caller, job.owner_id, space, what, (job.confined_space, job.confined_path))
    return job


def output_space(session: Session, job: tables.Job) -> tables.Space | None:
    if job.output_space is None:
        return None
    return session.scalar(select(tables.Space).where(tables.Space.name == job.output_space))


@router.post("", status_code=201, response_model=m.JobDetail)
def create(spec: m.JobSpec, caller: Caller, state: State) -> m.JobDetail:
    """Submit a job; it is checked, expanded into tasks and stored before this returns."""
    executor = state.executors.get(spec.executor)
    name = executor.name
    policy.check_executor(caller, name, state.settings.executor_groups.get(name))
    if spec.image is None and executor.sandboxed_by_host:
        policy.check_unconfined(caller, state.sandbox.problem, "jobs without an image")
    spec = prepare(executor, caller, spec)  # what needs no database, before any pull
    with registry_pull(state, caller, spec.image) as pull:
        # pinned before any transaction is open: resolving, or pulling, may take a while
        image = executor.pin_image(spec.image, pull) if spec.image is not None else None
        with state.db.session() as session:
            job = submit(
                session,
                state.store,
                executor,
                caller,
                spec,
                state.settings.max_tasks_per_job,
                state.box,
                image,
                pull,
            )
            session.flush()
            audit.record(session, caller, "job.submit", f"job:{job.id}", tasks=job.task_count)
            result = detail(session, job, state.settings.base_url)
    state.poke(name)
    state.supervisor.wake()
    return result


@router.get("", response_model=m.JobPage)
def list_jobs(
    caller: Caller,
    state: State,
    job_state: Sequence[JobState] = Query(
        (), alias="state", description="Only jobs in these states."
    ),
    owner: str | None = Query(None, description="Only this user's jobs."),
    space: str | None = Query(None, description="Only jobs that use this space."),
    limit: int = Query(50, ge=1, le=1000),
    offset: Offset = 0,
) -> m.JobPage:
    """Newest first: the caller's jobs and the jobs in spaces they manage (admins: all)."""
    with state.db.session() as session:
        query = select(tables.Job)
        if not caller.is_admin or caller.caveats.restricted:
            query = query.where(visible(session, caller))
        if job_state:
            query = query.where(tables.Job.state.in_([JobState(s) for s in job_state]))
        if owner is not None:
            query = query.where(tables.Job.owner_id == lookup.user(session, owner).id)
        if space is not None:
            query = query.where(tables.Job.spaces.contains(f",{space},"))
        rows, total = page(session, query, tables.Job.id.desc(), limit, offset)
        counts = counts_of(session, [job.id for job in rows])
        jobs = [to_model(job, counts.get(job.id, {})) for job in rows]
        return m.JobPage(jobs=jobs, total=total, offset=offset)


def visible(session: Session, caller: Principal) -> ColumnElement[bool]:
    """The SQL condition for jobs the caller may see; same rule as policy.check_job."""
    spaces = session.scalars(select(tables.Space).options(selectinload(tables.Space.members))).all()
    managed = [
        s.name
        for s in spaces
        if policy.can_list(caller, s)
        and RANK[policy.role_on(caller, s) or Role.VIEWER] >= RANK[Role.MANAGER]
    ]
    mine = tables.Job.owner_id == caller.user_id
    if caller.caveats.space is not None:
        mine = mine & (tables.Job.output_space == caller.caveats.space)
    return or_(mine, tables.Job.output_space.in_(managed))


def counts_of(session: Session, job_ids: list[int]) -> dict[int, dict[TaskState, int]]:
    found: dict[int, dict[TaskState, int]] = {}
    rows = session.execute(
        select(T.job_id, T.state, func.count())
        .where(T.job_id.in_(job_ids))
        .group_by(T.job_id, T.state)
    ).all()
    for job_id, task_state, n in rows:
        found.setdefault(job_id, {})[TaskState(task_state)] = n
    return found


@router.get("/{job_id}", response_model=m.JobDetail)
def show(job_id: Id, caller: Caller, state: State) -> m.JobDetail:
    with state.db.session() as session:
        return detail(session, find(session, caller, job_id, "see"), state.settings.base_url)


@router.get("/{job_id}/tasks", response_model=m.TaskPage)
def tasks(
    job_id: Id,
    caller: Caller,
    state: State,
    task_state: Sequence[TaskState] = Query((), alias="state", description="Only these states."),
    limit: int = Query(100, ge=1, le=10_000),
    offset: Offset = 0,
) -> m.TaskPage:
    """The job's tasks in index order, optionally only those in some states."""
    with state.db.session() as session:
        find(session, caller, job_id, "see")
        query = select(T).where(T.job_id == job_id)
        if task_state:
            query = query.where(T.state.in_([TaskState(s) for s in task_state]))
        rows, total = page(session, query, T.index, limit, offset)
        return m.TaskPage(
            tasks=[task_model(t, state.settings) for t in rows], total=total, offset=offset
        )


def task_model(t: tables.Task, settings: Settings) -> m.Task:
    return m.Task(
        index=t.index,
        state=t.state,
        inputs=t.inputs.split("\n") if t.inputs else [],
        attempt=t.attempt,
        failures=t.failures,
        exit_code=t.exit_code,
        external_id=t.external_id,
        started_at=t.started_at,
        finished_at=t.finished_at,
        message=as_space_paths(t.message, settings.storage_path, settings.jobs_path),
    )


@router.get("/{job_id}/tasks/{index}/logs", response_class=StreamingResponse)
async def logs(
    job_id: Id,
    index: int,
    caller: Caller,
    state: State,
    stream: Literal["stdout", "stderr"] = "stdout",
    follow: bool = False,
    attempt: int | None = Query(
        None, ge=1, le=BIGINT_MAX, description="Default: the latest attempt."
    ),
) -> StreamingResponse:
    """A task's output; with `follow` it streams until the task ends (like `tail -f`)."""

    ran_on: list[str] = []

    def current() -> tables.Task:
        with state.db.session() as session:
            ran_on[:] = [find(session, caller, job_id, "see").executor]
            task = session.get(T, (job_id, index))
            if task is None:
                raise NotFound(f"job {job_id} has no task {index}")
            return task

    task = await run_in_threadpool(current)
    executor = state.executor_of(ran_on[0])
    if stream == "stderr" and executor.one_log:
        raise BadRequest(
            f"the '{executor.name}' executor ({executor.kind}) keeps one log per task, stdout "
            "and stderr together: read it as stdout (without --stderr)"
        )

    async def body() -> AsyncIterator[bytes]:
        nonlocal task
        if follow:  # a task not handed out yet has no log: wait for it to start or end
            while task.attempt == 0 and task.state not in states.TASK_DONE:
                await asyncio.sleep(0.5)
                task = await run_in_threadpool(current)
        if task.attempt == 0:
            return
        key = TaskKey(job_id, index, attempt or task.attempt)
        async for chunk in executor.logs(key, stream, follow=follow):
            yield chunk

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


@router.post("/{job_id}/cancel", response_model=m.JobDetail)
def cancel(job_id: Id, caller: Caller, state: State) -> m.JobDetail:
    """Stop a job: tasks not started never start; running ones are stopped (SIGTERM, SIGKILL)."""
    closed = False
    with state.db.session() as session:
        job = find(session, caller, job_id, "cancel")
        if job.state not in states.JOB_DONE:
            audit.record(session, caller, "job.cancel", f"job:{job_id}")
            job.cancel_requested = True
            session.execute(
                update(T)
                .where(T.job_id == job_id, T.state == TaskState.PENDING)
                .values(state=TaskState.CANCELLED, message="cancelled before it started")
            )
            session.execute(  # an interactive job's service: the app supervisor stops it
                update(tables.App).where(tables.App.job_id == job_id).values(state="removing")
            )
            session.flush()
            closed = close_if_done(session, job_id)  # none of its tasks had started
        result = detail(session, job, state.settings.base_url)
    if closed:
        anyio.from_thread.run(state.executor_of(job.executor).ended, [job_id])
    state.poke(job.executor)
    state.supervisor.wake()
    return result


@router.delete("/{job_id}", status_code=204)
async def remove(job_id: Id, caller: Caller, state: State) -> None:
    """Forget a finished job: its record and logs. Its outputs stay in the space."""

    def delete() -> str:
        with state.db.session() as session:
            job = find(session, caller, job_id, "remove")
            states.check_removable(JobState(job.state))
            session.delete(job)
            audit.record(session, caller, "job.remove", f"job:{job_id}", name=job.name)
            return job.executor

    ran_on = await run_in_threadpool(delete)
    if ran_on in state.executors.by_name:
        await state.executor_of(ran_on).forget(job_id)


@router.get("/{job_id}/output", response_class=StreamingResponse)
def output(job_id: Id, caller: Caller, state: State) -> StreamingResponse:
    """The job's output folder as a tar stream, named after the job (`job-<id>/...`)."""
    with state.db.session() as session:
        job = find(session, caller, job_id, "see")
        if job.output_space is None or job.output_path is None:
            raise NotFound(f"job {job_id} has no output folder (it mounts no writable space)")
        space = lookup.space(session, job.output_space)
        policy.check_space(caller, space, policy.Right.READ, job.output_path)
    files = state.store.files(job.output_space, policy.folder_in(caller, job.output_space))
    try:  # walked from the space's root: a task that made the folder a link out gets nothing
        folder = files.open_folder(job.output_path)
    except NotFound:
        gone = f"job {job_id}'s output folder '{job.output_path}' is gone from the space"
        raise NotFound(gone) from None
    name = f"job-{job_id}"
    return StreamingResponse(
        tar_stream(folder, name),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}.tar"'},
    )
