"""Image builds: start one, list them, read one, follow its log."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from primage import builds as building
from primage.auth import audit, policy
from primage.auth.principal import Principal
from primage.db import tables
from primage.errors import BadRequest, Forbidden, NotConfigured, NotFound, UnsafePath
from primage.models import builds as m
from primage.server.deps import Caller, State
from primage.server.params import Id
from primage.storage.paths import normalise_relpath

router = APIRouter(prefix="/builds", tags=["builds"])
TAG_RE = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+:[\w][\w.-]{0,127}$"
)


def to_model(row: tables.Build) -> m.Build:
    duration = None
    if row.started_at and row.finished_at:
        duration = (row.finished_at - row.started_at).total_seconds()
    return m.Build(
        id=row.id,
        owner=row.owner.name,
        source=row.source,
        ref=row.ref,
        commit=row.commit,
        context=row.context,
        tag=row.tag,
        state=row.state,
        digest=row.digest,
        message=row.message,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_s=duration,
    )


def _find(state: State, caller: Principal, build_id: int) -> tables.Build:
    policy.check_beyond_spaces(caller, "see builds")
    with state.db.session() as session:
        row = session.get(tables.Build, build_id)
        if row is None or (row.owner_id != caller.user_id and not caller.is_admin):
            raise NotFound(f"no build {build_id} of yours (primage build ls lists them)")
        session.expunge(row)
        return row


def check_tag(caller: Principal, tag: str) -> None:
    """A tag the caller may push to, in the registry's syntax."""
    if not TAG_RE.fullmatch(tag):
        raise BadRequest(f"tag '{tag}' is not namespace/repository:tag, e.g. alice/seg:1.0")
    repository = tag.rsplit(":", 1)[0]
    if caller.caveats.restricted:
        raise Forbidden("a restricted token cannot start builds; use an unrestricted token")
    if not policy.registry_actions(caller, "repository", repository, ("push",)):
        raise Forbidden(
            f"you may not push to '{repository}': use your namespace ('{caller.name}/…') "
            "or a group's"
        )


def in_repository(path: str, what: str) -> str:
    """A path inside the repository, canonical ('.' for its root); 400 for one that leaves
    it. The rules are those of a path in a space (`storage.paths`)."""
    try:
        return normalise_relpath(path) or "."
    except UnsafePath:
        raise BadRequest(
            f"{what} '{path}' must be a path inside the repository, without '..'"
        ) from None


def queue_build(state: State, actor: Principal, owner_id: int, body: m.BuildRequest) -> m.Build:
    if state.builder.problem is not None:
        raise NotConfigured(f"cannot build: {state.builder.problem}")
    if body.source.startswith("-") or not body.source.strip():
        raise BadRequest("source must be a git URL, e.g. https://host/group/project.git")
    context = in_repository(body.context, "context")
    dockerfile = in_repository(body.dockerfile, "dockerfile")
    with state.db.session() as session:
        row = tables.Build(
            owner_id=owner_id,
            source=body.source,
            ref=body.ref,
            context=context,
            dockerfile=dockerfile,
            tag=body.tag,
            test_command=body.test_command,
            state=building.QUEUED,
        )
        session.add(row)
        session.flush()
        audit.record(session, actor, "build.start", f"build:{row.id}", tag=body.tag)
        made = to_model(row)
    state.builder.enqueue(made.id)
    return made


@router.post("", status_code=201, response_model=m.Build)
def start(body: m.BuildRequest, caller: Caller, state: State) -> m.Build:
    """Queue a build; it pushes to `tag` only if the build and its tests succeed."""
    check_tag(caller, body.tag)
    return queue_build(state, caller, caller.user_id, body)


@router.get("", response_model=list[m.Build])
def list_builds(caller: Caller, state: State) -> list[m.Build]:
    """Your builds, newest first (admins: everyone's)."""
    policy.check_beyond_spaces(caller, "see builds")
    with state.db.session() as session:
        query = select(tables.Build).order_by(tables.Build.id.desc()).limit(200)
        if not caller.is_admin:
            query = query.where(tables.Build.owner_id == caller.user_id)
        return [to_model(row) for row in session.scalars(query)]


@router.get("/{build_id}", response_model=m.Build)
def show(build_id: Id, caller: Caller, state: State) -> m.Build:
    return to_model(_find(state, caller, build_id))  # the owner is loaded with the row


@router.get("/{build_id}/logs", response_class=StreamingResponse)
async def logs(
    build_id: Id, caller: Caller, state: State, follow: bool = False
) -> StreamingResponse:
    """The build's log; with `follow` it streams until the build ends."""
    _find(state, caller, build_id)
    path = state.builder.log_path(build_id)

    def done() -> bool:
        with state.db.session() as session:
            row = session.get(tables.Build, build_id)
            return row is None or row.state in (building.SUCCEEDED, building.FAILED)

    async def body() -> AsyncIterator[bytes]:
        offset = 0
        while True:
            finished = await asyncio.to_thread(done)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            offset += len(data)
            if data:
                yield data
            if not follow or finished:
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")
