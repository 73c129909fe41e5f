"""Submitting a job: check who may use which spaces, expand the inputs, store job and tasks.

Everything is checked before anything is stored, and job and tasks go in one transaction, so a
refused job leaves nothing behind and an accepted one is complete.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert
from sqlalchemy.orm import Session

from primage.apps import records
from primage.auth import policy, tokens
from primage.auth.crypto import SecretBox
from primage.auth.policy import Right
from primage.auth.principal import Principal
from primage.db import lookup, tables
from primage.errors import BadRequest, Conflict
from primage.executors.base import Executor, Pull
from primage.jobs.expand import OUTPUTS, expand
from primage.jobs.progress import pull_token_name
from primage.jobs.states import INTERACTIVE, JobState, TaskState
from primage.models.apps import AppSpec
from primage.models.jobs import JobSpec, Service
from primage.storage.paths import normalise_relpath
from primage.storage.spaces import SpaceStore


def prepare(executor: Executor, caller: Principal, spec: JobSpec) -> JobSpec:
    """The spec as it will be stored, checked for all that needs no database and no image: it
    is narrowed to the caller's token, and says where it goes with that executor's options."""
    policy.check_submit(caller)
    spec = policy.confine(caller, spec)
    options = executor.job_options(spec.executor_options)
    spec = spec.model_copy(update={"executor": executor.name, "executor_options": options})
    if (spec.image is not None or spec.kind == INTERACTIVE) and spec.folders():
        what = "an interactive job" if spec.kind == INTERACTIVE else "a job in a container"
        raise BadRequest(
            f"{what} sees whole spaces; mounting one folder "
            f"({', '.join(m.path for m in spec.spaces if m.folder)}) needs a batch or HTC job "
            "without an image, which the platform's sandbox confines to it"
        )
    if spec.folders():
        executor.require("folders", "the job mounts one folder of a space (its token's)")
    if spec.resources.cpus > executor.capacity:
        raise BadRequest(
            f"each task asks for {spec.resources.cpus} cores (resources.cpus, --cpus) but the "
            f"'{executor.name}' executor runs {executor.capacity} cores' worth of tasks at once: "
            f"ask for at most {executor.capacity}"
        )
    if spec.network:
        executor.require("network", "the job asks for network access")
    if spec.resources.gpus:
        executor.require("gpus", f"each task asks for {spec.resources.gpus} GPU(s)")
    if spec.kind == INTERACTIVE:
        executor.require("apps", "an interactive job runs a service")
    return spec


def submit(
    session: Session,
    store: SpaceStore,
    executor: Executor,
    caller: Principal,
    spec: JobSpec,
    max_tasks: int,
    box: SecretBox,
    image: str | None = None,
    pull: Pull | None = None,
) -> tables.Job:
    """Store a job whose spec ``prepare`` made: its spaces checked, its inputs expanded.
    ``image``: its image, pinned by digest (outside any transaction: it may pull); ``pull``: the
    credentials it was pulled with from the platform registry, if it was."""
    check_spaces(session, caller, spec)
    if spec.kind == INTERACTIVE:
        return submit_service(session, box, executor, caller, spec, image, pull)
    root = store.folder(spec.inputs.space) if spec.inputs else None
    tasks = expand(spec, root, max_tasks)
    folder = spec.folders().get(spec.inputs.space) if spec.inputs else None
    if spec.inputs and (folder is not None or caller.caveats.path_prefix is not None):
        files = [f for batch in tasks for f in batch]
        policy.check_space(caller, lookup.space(session, spec.inputs.space), Right.READ, *files)
        if folder is not None:
            within(spec.inputs.space, folder, files, "input")
    job = job_row(caller, spec, executor, image, len(tasks))
    session.add(job)
    session.flush()  # the id names the default output folder
    if image is not None and pull is not None and executor.pulls_on_nodes:
        keep_pull(session, caller, executor, job.id, image, pull)
    if spec.output_space is not None:
        path = normalise_relpath(spec.output.path or default_output(spec, job.id))
        space = lookup.space(session, spec.output_space)
        policy.check_space(caller, space, Right.WRITE, path)
        if (mounted := spec.folders().get(spec.output_space)) is not None:
            within(spec.output_space, mounted, [path], "output.path")
        job.output_path = output_folder(store, spec.output_space, path, spec.overwrite)
    rows = [
        {"job_id": job.id, "index": i, "inputs": "\n".join(files), "state": TaskState.PENDING}
        for i, files in enumerate(tasks)
    ]
    session.execute(insert(tables.Task), rows)
    return job


JOB_PULL_DAYS = 30  # the longest a job's pull credential lives: revoked when the job ends


def keep_pull(
    session: Session, caller: Principal, executor: Executor, job_id: int, image: str, pull: Pull
) -> None:
    """A pull credential of the job's own, for nodes that pull its image themselves: a
    read-only token of the submitter's, revoked when the job ends (``jobs/progress.py``)."""
    lifetime = dt.timedelta(days=JOB_PULL_DAYS)
    secret = tokens.issue_pull(session, caller.user_id, pull_token_name(job_id), lifetime)
    executor.keep_pull(job_id, image, Pull((caller.name, secret), pull.tls_verify))


def job_row(
    caller: Principal, spec: JobSpec, executor: Executor, image: str | None, tasks: int
) -> tables.Job:
    return tables.Job(
        name=spec.name,
        kind=spec.kind,
        owner_id=caller.user_id,
        confined_space=caller.caveats.space,
        confined_path=caller.caveats.path_prefix,
        spec=spec.model_dump_json(exclude_defaults=True),
        state=JobState.PENDING,
        executor=executor.name,
        image=image,
        output_space=spec.output_space,
        spaces="".join(f",{name}" for name in sorted(spec.mounts())) + ",",
        task_count=tasks,
    )


def default_output(spec: JobSpec, job_id: int) -> str:
    """``outputs/<id>`` in the output space, or in the one folder of it the job mounts (a
    folder-confined token's jobs mount its folder: the only place it may write)."""
    folder = spec.folders().get(spec.output_space or "")
    return f"{folder}/{OUTPUTS}/{job_id}" if folder else f"{OUTPUTS}/{job_id}"


def submit_service(
    session: Session,
    box: SecretBox,
    executor: Executor,
    caller: Principal,
    spec: JobSpec,
    image: str | None,
    pull: Pull | None = None,
) -> tables.Job:
    """An interactive job: one task that stands for an app (``job-<id>``), which the app
    supervisor runs on the job's executor and reports on; the job ends when the app is idle,
    fails or is cancelled."""
    job = job_row(caller, spec, executor, image, 1)
    session.add(job)
    session.flush()
    session.add(tables.Task(job_id=job.id, index=0, state=TaskState.QUEUED, attempt=1))
    app_spec = service_app(job.id, spec, image, executor.name)
    app = records.create(session, box, caller, app_spec, job_id=job.id)
    if image is not None and pull is not None and executor.pulls_on_nodes:
        records.keep_pull(session, caller, executor, app.id, image, pull.tls_verify)
    return job


def service_app(job_id: int, spec: JobSpec, image: str | None, executor: str) -> AppSpec:
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
        executor=executor,
    )


INTERACTIVE_PREFIX = "job-"  # app names of interactive jobs: no user's app may take one


def service_name(job_id: int) -> str:
    return f"{INTERACTIVE_PREFIX}{job_id}"


def check_spaces(session: Session, caller: Principal, spec: JobSpec) -> None:
    """403/404 before anything runs: every mounted space must exist and allow its use."""
    folders = spec.folders()
    for name, read_only in spec.mounts().items():
        space = lookup.space(session, name)
        paths: list[str] = [folders[name]] if name in folders else []
        if spec.inputs and name == spec.inputs.space and spec.inputs.files:
            paths = [normalise_relpath(f) for f in spec.inputs.files]
        if name == spec.output_space and spec.output.path:
            paths.append(normalise_relpath(spec.output.path))
        policy.check_space(caller, space, Right.READ if read_only else Right.WRITE, *paths)


def within(space: str, folder: str, paths: list[str], what: str) -> None:
    """The tasks see only ``folder`` of ``space``: what they read or write must lie in it."""
    for path in paths:
        if path != folder and not path.startswith(folder + "/"):
            raise BadRequest(
                f"{what} '{path}' is outside folder '{folder}', the only part of space "
                f"'{space}' the tasks see; mount more of the space or choose a path in it"
            )


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
