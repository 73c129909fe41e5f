"""Submitting a job: check who may use which spaces, expand the inputs, store job and tasks.

Everything is checked before anything is stored, and job and tasks go in one transaction, so a
refused job leaves nothing behind and an accepted one is complete.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from primage.auth import policy
from primage.auth.policy import Right
from primage.auth.principal import Principal
from primage.db import lookup, tables
from primage.errors import BadRequest, Conflict
from primage.executors.base import Executor, Pull
from primage.jobs.expand import OUTPUTS, expand
from primage.jobs.states import JobState, TaskState
from primage.models.jobs import JobSpec
from primage.storage.paths import normalise_relpath
from primage.storage.spaces import SpaceStore


def submit(
    session: Session,
    store: SpaceStore,
    executor: Executor,
    caller: Principal,
    spec: JobSpec,
    max_tasks: int,
    pull: Pull | None = None,
) -> tables.Job:
    check_spaces(session, caller, spec)
    image = executor.pin_image(spec.image, pull) if spec.image is not None else None
    root = store.folder(spec.inputs.space) if spec.inputs else None
    tasks = expand(spec, root, max_tasks)
    if spec.inputs and caller.caveats.path_prefix is not None:  # a token confined to a folder
        files = [f for batch in tasks for f in batch]
        policy.check_space(caller, lookup.space(session, spec.inputs.space), Right.READ, *files)
    job = tables.Job(
        name=spec.name,
        kind=spec.kind,
        owner_id=caller.user_id,
        spec=spec.model_dump_json(exclude_defaults=True),
        state=JobState.PENDING,
        executor=executor.name,
        image=image,
        output_space=spec.output_space,
        spaces="".join(f",{name}" for name in sorted(spec.mounts())) + ",",
        task_count=len(tasks),
    )
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
