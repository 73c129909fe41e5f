"""Submitting a job: check who may use which spaces, expand the inputs, store job and tasks.

Everything is checked before anything is stored, and job and tasks go in one transaction, so a
refused job leaves nothing behind and an accepted one is complete.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from primage.apps import records
from primage.auth import policy
from primage.auth.crypto import SecretBox
from primage.auth.policy import Right
from primage.auth.principal import Principal
from primage.db import lookup, tables
from primage.errors import BadRequest, Conflict
from primage.executors.base import Executor, Pull
from primage.jobs.expand import OUTPUTS, expand
from primage.jobs.states import INTERACTIVE, JobState, TaskState
from primage.models.apps import AppSpec
from primage.models.jobs import JobSpec, Service
from primage.storage.paths import normalise_relpath
from primage.storage.spaces import SpaceStore


def submit(
    session: Session,
    store: SpaceStore,
    executor: Executor,
    caller: Principal,
    spec: JobSpec,
    max_tasks: int,
    box: SecretBox,
    pull: Pull | None = None,
) -> tables.Job:
    check_spaces(session, caller, spec)
    if spec.kind == INTERACTIVE:
        executor.require("apps", "an interactive job runs a service")
    image = executor.pin_image(spec.image, pull) if spec.image is not None else None
    if spec.kind == INTERACTIVE:
        return submit_service(session, box, executor, caller, spec, image)
    root = store.folder(spec.inputs.space) if spec.inputs else None
    tasks = expand(spec, root, max_tasks)
    if spec.inputs and caller.caveats.path_prefix is not None:  # a token confined to a folder
        files = [f for batch in tasks for f in batch]
        policy.check_space(caller, lookup.space(session, spec.inputs.space), Right.READ, *files)
    job = job_row(caller, spec, executor, image, len(tasks))
    session.add(job)
    session.flush()  # the id names the default output folder
    if spec.output_space is not None:
        path = normalise_relpath(spec.output.path or f"{OUTPUTS}/{job.id}")
        space = lookup.space(session, spec.output_space)
        policy.check_space(caller, space, Right.WRITE, path)
        job.output_path = output_folder(store, spec.output_space, path, spec.overwrite)
    rows = [
        {"job_id": job.id, "index": i, "inputs": "\n".join(files), "state": TaskState.PENDING}
        for i, files in enumerate(tasks)
    ]
    session.execute(insert(tables.Task), rows)
    return job


def job_row(
    caller: Principal, spec: JobSpec, executor: Executor, image: str | None, tasks: int
) -> tables.Job:
    return tables.Job(
        name=spec.name,
        kind=spec.kind,
        owner_id=caller.user_id,
        spec=spec.model_dump_json(exclude_defaults=True),
        state=JobState.PENDING,
        executor=executor.name,
        image=image,
        output_space=spec.output_space,
        spaces="".join(f",{name}" for name in sorted(spec.mounts())) + ",",
        task_count=tasks,
    )


def submit_service(
    session: Session,
    box: SecretBox,
    executor: Executor,
    caller: Principal,
    spec: JobSpec,
    image: str | None,
) -> tables.Job:
    """An interactive job: one task that stands for an app (``job-<id>``), which the app
    supervisor runs and reports on; the job ends when the app is idle, fails or is cancelled."""
    job = job_row(caller, spec, executor, image, 1)
    session.add(job)
    session.flush()
    session.add(tables.Task(job_id=job.id, index=0, state=TaskState.QUEUED, attempt=1))
    records.create(session, box, caller, service_app(job.id, spec, image), job_id=job.id)
    return job


def service_app(job_id: int, spec: JobSpec, image: str | None) -> AppSpec:
    """The app an interactive job runs: one instance, open to its owner, ended when idle."""
    service = spec.service or Service()
    return AppSpec(
        name=service_name(job_id),
        image=image,
        command=spec.command,
        port=service.port,
        health_path=service.health_path,
        strip_prefix=service.strip_prefix,
        resources=spec.resources,
        env=spec.env,
        spaces=spec.spaces,
        idle_timeout=service.idle_timeout,
    )


def service_name(job_id: int) -> str:
    return f"job-{job_id}"


def check_spaces(session: Session, caller: Principal, spec: JobSpec) -> None:
    """403/404 before anything runs: every mounted space must exist and allow its use."""
    for name, read_only in spec.mounts().items():
        space = lookup.space(session, name)
        paths: list[str] = []
        if spec.inputs and name == spec.inputs.space and spec.inputs.files:
            paths = [normalise_relpath(f) for f in spec.inputs.files]
        if name == spec.output_space and spec.output.path:
            paths.append(normalise_relpath(spec.output.path))
        policy.check_space(caller, space, Right.READ if read_only else Right.WRITE, *paths)


def output_folder(store: SpaceStore, space: str, path: str, overwrite: bool) -> str:
    """Create the job's output folder; an existing one is refused unless overwrite is asked."""
    if not path:
        raise BadRequest("output.path cannot be the space itself; name a folder in it")
    folder = store.folder(space) / path
    if folder.exists() and not overwrite:
        raise Conflict(
            f"output folder '{path}' already exists in space '{space}'; "
            "choose another output.path or allow it with overwrite (--overwrite)"
        )
    if folder.exists() and not folder.is_dir():
        raise Conflict(f"'{path}' in space '{space}' is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return path
