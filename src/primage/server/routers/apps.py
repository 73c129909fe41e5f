"""Applications: deploy from a template, list, inspect, follow logs, update, stop, start, remove.

The apps themselves are reached at `/apps/<name>/` (`routers/proxy.py`); this is their
management API, under `/applications` so that no app path can shadow it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from primage import templates
from primage.apps import records
from primage.auth import audit, policy
from primage.auth.policy import Right
from primage.auth.principal import Principal
from primage.db import lookup, tables
from primage.db.tables import utcnow
from primage.errors import BadRequest, Conflict, NotFound
from primage.executors.base import Executor
from primage.host.logs import follow_file
from primage.jobs.submit import INTERACTIVE_PREFIX
from primage.models import apps as m
from primage.server.deps import Caller, State
from primage.server.pulls import registry_pull

router = APIRouter(prefix="/applications", tags=["applications"])
EVENTS_SHOWN = 30


def shown_spec(text: str) -> m.AppSpec:
    """The spec as the API shows it: secrets' names, never their values."""
    data = json.loads(text)
    data["secrets"] = dict.fromkeys(data.get("secrets", {}), "***")
    return m.AppSpec.model_validate(data)


def to_model(state: State, row: tables.App, ready: int) -> m.App:
    spec = json.loads(row.spec)
    return m.App(
        name=row.name,
        owner=row.owner.name,
        state=row.state,
        url=f"{state.settings.base_url}/apps/{row.name}/",
        replicas=spec.get("replicas", 1),
        ready=ready,
        generation=row.generation,
        message=row.message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_activity_at=row.last_activity_at,
    )


def ready_count(session: Session, row: tables.App) -> int:
    """Instances of the serving generation that answer their health check."""
    found = session.scalar(
        select(func.count()).where(
            tables.AppInstance.app_id == row.id,
            tables.AppInstance.generation == row.generation,
            tables.AppInstance.state == "ready",
        )
    )
    return found or 0


def find(session: Session, caller: Principal, name: str, what: str) -> tables.App:
    row = session.scalar(select(tables.App).where(tables.App.name == name))
    if row is None:
        raise NotFound(f"no app '{name}' (primage app ls lists yours)")
    policy.check_manage_app(caller, name, row.owner_id, what)
    return row


def check_spaces(session: Session, caller: Principal, spec: m.AppSpec) -> None:
    """404/403 before anything runs: every space must exist and allow the use the app makes."""
    for mount in spec.spaces:
        space = lookup.space(session, mount.name)
        paths = [mount.folder] if mount.folder else []
        policy.check_space(caller, space, Right.READ if mount.read_only else Right.WRITE, *paths)


def spec_of(body: m.AppDeploy) -> tuple[m.AppSpec, list[str]]:
    """The spec to deploy, and the notes of the template it comes from."""
    if (body.template is None) == (body.spec is None):
        raise BadRequest("give exactly one of 'template' (YAML, TOSCA or RADL text) or 'spec'")
    if body.spec is not None:
        data = body.spec if body.name is None else {**body.spec, "name": body.name}
        return m.app_from(data, body.source), []
    found = templates.render_app(
        body.template or "", body.inputs, body.source, name=body.name, files=body.files
    )
    assert isinstance(found.spec, m.AppSpec)
    return found.spec, found.notes


@dataclass(frozen=True)
class Placed:
    """Where an app runs and what: its spec with its executor named and its image pinned."""

    spec: m.AppSpec
    executor: Executor
    #: Its image is the platform registry's (pulled over TLS or not): an executor whose nodes
    #: pull it themselves gets a pull credential of the app's own (``records.keep_pull``).
    registry_tls: bool | None = None

    def keep_pull(self, session: Session, caller: Principal, app_id: int) -> None:
        if self.registry_tls is not None and self.executor.pulls_on_nodes and self.spec.image:
            records.keep_pull(session, caller, self.executor, app_id, self.spec.image,
                              self.registry_tls)  # fmt: skip


def placed(state: State, caller: Principal, spec: m.AppSpec) -> Placed:
    """The executor the app runs on (its own, or this machine's), what it may run there, and
    its image pinned by digest (pulled as the caller from the platform registry if need be):
    every instance, and every restart, runs the same image."""
    executor = state.apps_on(spec.executor, f"app '{spec.name}'")
    if spec.resources.gpus:
        executor.require("gpus", f"app '{spec.name}' asks for {spec.resources.gpus} GPU(s)")
    named = spec.model_copy(update={"executor": executor.name})
    if spec.image is None:
        if executor.sandboxed_by_host:
            policy.check_unconfined(caller, state.sandbox.problem, "apps without an image")
        return Placed(named, executor)
    executor.require("app-containers", f"app '{spec.name}' names image '{spec.image}'")
    with registry_pull(state, caller, spec.image) as pull:
        image = executor.pin_image(spec.image, pull)
    tls = pull.tls_verify if pull is not None else None
    return Placed(named.model_copy(update={"image": image}), executor, tls)


@router.post("", status_code=201)
async def deploy(body: m.AppDeploy, caller: Caller, state: State) -> m.AppDeployed:
    """Deploy an app from a template (own YAML, TOSCA or RADL, with inputs) or a spec; the
    answer's notes say what the template asks that was left out, and why."""
    policy.check_deploy(caller)
    spec, notes = await run_in_threadpool(spec_of, body)
    if spec.name.startswith(INTERACTIVE_PREFIX):
        raise BadRequest(
            f"app names '{INTERACTIVE_PREFIX}<id>' are the platform's, for interactive jobs; "
            "deploy it under another name (--name)"
        )
    place = await run_in_threadpool(placed, state, caller, spec)
    spec = place.spec

    def store() -> m.AppDeployed:
        with state.db.session() as session:
            check_spaces(session, caller, spec)
            row = records.create(session, state.box, caller, spec)
            session.flush()
            place.keep_pull(session, caller, row.id)
            session.refresh(row)
            made = to_model(state, row, 0)
            return m.AppDeployed(**made.model_dump(), notes=notes)

    made = await run_in_threadpool(store)
    state.supervisor.wake()
    return made


@router.get("")
async def list_apps(caller: Caller, state: State) -> list[m.App]:
    """Your apps (all of them for admins)."""
    policy.check_beyond_spaces(caller, "see apps")

    def load() -> list[m.App]:
        with state.db.session() as session:
            query = select(tables.App).order_by(tables.App.name)
            if not caller.is_admin:
                query = query.where(tables.App.owner_id == caller.user_id)
            rows = session.scalars(query).all()
            return [to_model(state, r, ready_count(session, r)) for r in rows]

    return await run_in_threadpool(load)


@router.get("/{name}")
async def show(name: str, caller: Caller, state: State) -> m.AppDetail:
    """State, replicas ready, URL, instances and the latest events."""

    def load() -> m.AppDetail:
        with state.db.session() as session:
            row = find(session, caller, name, "see")
            instances = session.scalars(
                select(tables.AppInstance)
                .where(tables.AppInstance.app_id == row.id)
                .order_by(tables.AppInstance.generation, tables.AppInstance.index)
            ).all()
            events = session.scalars(
                select(tables.AppEvent)
                .where(tables.AppEvent.app_id == row.id)
                .order_by(tables.AppEvent.id.desc())
                .limit(EVENTS_SHOWN)
            ).all()
            return m.AppDetail(
                **to_model(state, row, ready_count(session, row)).model_dump(),
                spec=shown_spec(row.spec),
                instances=[
                    m.Instance(
                        index=i.index,
                        generation=i.generation,
                        state=i.state,
                        external_id=i.external_id,
                        port=i.port,
                        restarts=i.restarts,
                        started_at=i.started_at,
                        message=i.message,
                    )
                    for i in instances
                ],
                events=[m.AppEvent(at=e.at, message=e.message) for e in events],
            )

    return await run_in_threadpool(load)


@router.patch("/{name}")
async def update(name: str, body: m.AppUpdate, caller: Caller, state: State) -> m.App:
    """Reconfigure: the new generation starts beside the serving one and takes over once all
    its instances are ready."""

    def store() -> m.App:
        with state.db.session() as session:
            row = find(session, caller, name, "update")
            if row.state not in ("running", "deploying"):
                raise Conflict(f"app '{name}' is {row.state}; update it once it runs")
            if row.pending_spec is not None:
                raise Conflict(f"app '{name}' is already being updated; wait for it to finish")
            current = json.loads(row.spec)
            changes = body.model_dump(mode="json", exclude_none=True)
            merged = m.app_from({**current, **changes}, f"update of {name}")
            if "image" in changes or merged.image is None:  # pinned anew, or still confined
                place = placed(state, caller, merged)
                merged = place.spec
                place.keep_pull(session, caller, row.id)
            stored = merged.model_dump(mode="json", exclude_defaults=True)
            stored["secrets"] = current.get("secrets", {})  # sealed already: kept as they are
            row.pending_spec = json.dumps(stored)
            row.state, row.updated_at = "updating", utcnow()
            changed = ", ".join(sorted(changes)) or "nothing"
            session.add(tables.AppEvent(app_id=row.id, message=f"update ({changed}) started"))
            audit.record(session, caller, "app.update", f"app:{name}", changed=sorted(changes))
            return to_model(state, row, ready_count(session, row))

    made = await run_in_threadpool(store)
    state.supervisor.wake()
    return made


async def _set_state(state: State, caller: Principal, name: str, what: str, to: str) -> int:
    def store() -> int:
        with state.db.session() as session:
            row = find(session, caller, name, what)
            if to == "deploying" and row.state not in ("stopped", "failed"):
                raise Conflict(f"app '{name}' is {row.state}; only a stopped app is started")
            row.state, row.message = to, ""
            if to == "deploying":
                row.last_activity_at = utcnow()
            audit.record(session, caller, f"app.{what}", f"app:{name}")
            return row.id

    return await run_in_threadpool(store)


@router.post("/{name}/stop")
async def stop(name: str, caller: Caller, state: State) -> m.AppDetail:
    """Stop every instance; the app stays, to be started again."""
    app_id = await _set_state(state, caller, name, "stop", "stopping")
    await state.supervisor.settle(app_id)
    return await show(name, caller, state)


@router.post("/{name}/start")
async def start(name: str, caller: Caller, state: State) -> m.AppDetail:
    """Start a stopped (or failed, or idle-culled) app again."""
    await _set_state(state, caller, name, "start", "deploying")
    state.supervisor.wake()
    return await show(name, caller, state)


@router.delete("/{name}", status_code=204)
async def remove(name: str, caller: Caller, state: State) -> None:
    """Undeploy: stop its instances and forget it. The spaces it used are untouched."""
    app_id = await _set_state(state, caller, name, "remove", "removing")
    await state.supervisor.settle(app_id)


@router.get("/{name}/logs")
async def logs(
    name: str,
    caller: Caller,
    state: State,
    instance: int = Query(0, ge=0, lt=m.MAX_REPLICAS, description="Which instance."),
    follow: bool = Query(False, description="Keep streaming while the app runs."),
) -> StreamingResponse:
    """An instance's output (stdout and stderr) of the serving generation."""

    def locate() -> tuple[int, int, str]:
        with state.db.session() as session:
            row = find(session, caller, name, "see")
            return row.id, row.generation, row.state

    app_id, generation, _ = await run_in_threadpool(locate)
    path = state.supervisor.log_path(app_id, generation, instance)
    if not path.exists():
        raise NotFound(f"app '{name}' has no instance {instance} with output yet")

    async def running() -> bool:
        try:
            return (await run_in_threadpool(locate))[2] in ("deploying", "running", "updating")
        except NotFound:
            return False

    return StreamingResponse(follow_file(path, follow, running, 0.5), media_type="text/plain")
