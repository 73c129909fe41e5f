"""The app supervisor: keeps every app's instances as its spec says, and tells the proxy where
to send each app's traffic.

Declarative state in, a reconciliation loop out (the Dask/Kubernetes way): the database says what
each app should be (its spec, a pending update, its state), and each turn — every second, or at
once when the API changes something — moves what runs toward it:

- an instance missing from the spec's replicas is started, one beyond them stopped;
- a starting instance becomes ``ready`` when its health check answers, and is restarted when it
  does not within ``startup_timeout``;
- an instance that exits is restarted after a backoff (1, 2, 4 … 60 s). One that never became
  ready three times running fails the app, with its exit code and the end of its output;
- an update (``pending_spec``) starts the next generation beside the serving one, and switches
  traffic and stops the old one only once every new instance is ready: if the new generation
  fails, the old one goes on serving;
- an app without traffic through the proxy for ``idle_timeout`` is stopped.

Instances outlive the server (sessions of their own); a restarted server adopts them by their PID
and start time, as the job reconciler adopts tasks. Only ``ready`` instances of the serving
generation receive traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from primage.apps.launch import Launch, container_name
from primage.auth.crypto import SecretBox
from primage.config import Settings
from primage.db import Database, tables
from primage.db.tables import utcnow
from primage.host import procs, services
from primage.host.containers import Runtime
from primage.host.sandbox import Sandbox
from primage.jobs.progress import close_if_done
from primage.jobs.states import TASK_DONE, JobState, TaskState
from primage.models.apps import AppSpec

log = logging.getLogger("primage.apps")

TURN_S = 1.0
SPECS_KEPT = 256  # parsed specs kept (apps by versions); all are dropped past that
STARTING_TURN_S = 0.2  # while an instance starts: it serves as soon as it answers
MAX_BACKOFF_S = 60.0
EARLY_CRASHES = 3  # an instance that never became ready fails the app after this many exits
HEALTH_FAILURES = 3  # consecutive failed checks of a ready instance before it is restarted
HEALTH_EVERY_S = 10.0  # how often a ready instance is checked (a starting one: every turn)
ACTIVE = ("deploying", "running", "updating")
STOPPING = ("stopping", "removing")


@dataclass
class Route:
    """Where the proxy sends an app's traffic: its ready instances, round-robin."""

    ports: list[int]
    token: str
    prefix: str  # what the app sees before the request's path: /apps/<name>/ or /
    _turn: Iterator[int] = field(default_factory=lambda: itertools.count())

    def next_port(self) -> int:
        return self.ports[next(self._turn) % len(self.ports)]


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        box: SecretBox,
        runtime: Runtime | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.settings, self.db, self.box, self.runtime = settings, db, box, runtime
        self.sandbox = sandbox  # confines process apps; None: off, or cannot be made
        self.folder = settings.data_dir / "apps"
        self.routes: dict[str, Route] = {}
        self._services: dict[tuple[int, int, int], services.Service] = {}
        self._unhealthy: dict[tuple[int, int, int], int] = {}
        self._checked: dict[tuple[int, int, int], float] = {}
        self._starting = False  # an instance was starting at the last turn
        self._activity: dict[int, dt.datetime] = {}
        self._touched: set[int] = set()  # apps with traffic since the last turn
        self._specs: dict[str, AppSpec] = {}  # stored spec text → spec
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._turning: asyncio.Future[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._http = httpx.Client(timeout=2.0)

    # -- what the API and the proxy ask ---------------------------------------------------------

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop(), name="app-supervisor")

    async def stop(self) -> None:
        """Stop supervising; the instances keep running, to be adopted by the next server."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._turning is not None:  # a turn already in its thread finishes first
            await asyncio.gather(self._turning, return_exceptions=True)
        self._http.close()

    def wake(self) -> None:
        """Ask for a turn now; safe from any thread."""
        if self._event_loop is not None and not self._event_loop.is_closed():
            self._event_loop.call_soon_threadsafe(self._wake.set)

    async def settle(self, app_id: int) -> None:
        """Run a turn for one app now (stopping, removing), the loop held off meanwhile."""
        async with self._lock:
            await asyncio.to_thread(self._reconcile, app_id)

    def log_path(self, app_id: int, generation: int, index: int) -> Path:
        """An instance's output (the folder is Launch.folder's)."""
        return self.folder / str(app_id) / f"{generation}.{index}" / "output.log"

    def touch(self, app_id: int) -> None:
        """Proxied traffic: the app is in use (idle culling counts from the last touch)."""
        self._activity[app_id] = utcnow()
        self._touched.add(app_id)

    # -- the loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # before the turn: a wake during it asks for the next one
            try:
                async with self._lock:
                    self._turning = asyncio.ensure_future(asyncio.to_thread(self._turn))
                    await asyncio.shield(self._turning)  # cancelled or not, it runs to its end
            except Exception:  # one bad turn must not stop supervision
                log.exception("app supervisor turn")
            pause = STARTING_TURN_S if self._starting else TURN_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    def _turn(self) -> None:
        self._starting = False
        with self.db.session() as session:
            ids = session.scalars(
                select(tables.App.id).where(tables.App.state.in_(ACTIVE + STOPPING))
            ).all()
        for app_id in ids:
            self._reconcile(app_id)
        self._save_activity()

    def _reconcile(self, app_id: int) -> None:
        with self.db.session() as session:
            app = session.get(tables.App, app_id)
            if app is None:
                return
            instances = list(
                session.scalars(
                    select(tables.AppInstance).where(tables.AppInstance.app_id == app_id)
                ).all()
            )
            session.expunge_all()
        events: list[str] = []
        seen = (app.state, app.pending_spec)
        if app.state in STOPPING:
            self._stop_all(app, instances)
            self._finish_stop(app, events)
            return
        if self._idle(app):
            limit = self._spec(app.spec).idle_timeout or 0
            app.state, app.message = "stopping", f"stopped after {limit:g} s without traffic"
            events.append(app.message)
        else:
            self._advance(app, instances, events)
        if events:  # every change a turn makes is an event: none, nothing to write
            self._save(app, seen, instances, events)

    # -- one app --------------------------------------------------------------------------------

    def _advance(
        self, app: tables.App, instances: list[tables.AppInstance], events: list[str]
    ) -> None:
        updating = app.pending_spec is not None
        spec = self._spec(app.pending_spec or app.spec)
        target = app.generation + 1 if updating else app.generation
        token = self.box.open(app.app_token) or ""
        launch = Launch(self.settings, app.name, app.id, spec, token, self.runtime, self.sandbox)
        current = [i for i in instances if i.generation == target]
        for index in range(spec.replicas):
            if not any(i.index == index for i in current):
                row = tables.AppInstance(
                    app_id=app.id,
                    generation=target,
                    index=index,
                    state="crashed",  # not started yet: launched right away
                    restarts=0,
                    ever_ready=False,
                    message="",
                )
                instances.append(row)
                current.append(row)
        failure = None  # a generation's replicas never change: an update makes a new one
        for row in current:
            failure = self._step(row, launch, events) or failure
        ready = [i for i in current if i.state == "ready"]
        if failure is not None:
            self._fail(app, instances, target, failure, events)
        elif updating and len(ready) == spec.replicas:
            self._switch(app, instances, target, events)
        elif not updating and len(ready) == spec.replicas and app.state == "deploying":
            app.state, app.message = "running", ""
            events.append(f"running: {len(ready)} of {spec.replicas} ready")
        self._route(app, instances)

    def _step(self, row: tables.AppInstance, launch: Launch, events: list[str]) -> str | None:
        """Move one instance on; the reason the app fails, if it does."""
        key = (row.app_id, row.generation, row.index)
        service = self._service(row)
        now = utcnow()
        if row.state == "crashed":
            if row.not_before is None or now >= row.not_before:
                return self._launch(row, launch, events)
            return None
        if service is None or not service.running():
            code = service.exit_code() if service is not None else None
            self._forget(key)
            how = "ended" if code in (None, -1) else f"exited with code {code}"
            tail = procs.tail(launch.folder(row.generation, row.index) / "output.log")
            row.message = f"{how}\n{tail}".strip()
            events.append(f"instance {row.index} {how}")
            return self._crashed(row)
        if row.state == "starting":
            self._starting = True
            if self._healthy(row, launch):
                row.state, row.ever_ready, row.message = "ready", True, ""
                events.append(f"instance {row.index} ready on port {row.port}")
            elif row.started_at and now - row.started_at > dt.timedelta(
                seconds=launch.spec.startup_timeout
            ):
                self._stop_instance(row, launch.runtime is not None)
                row.message = f"not healthy within {launch.spec.startup_timeout:g} s"
                events.append(f"instance {row.index} {row.message}; restarting")
                return self._crashed(row)
        elif row.state == "ready" and self._due(key):
            failures = 0 if self._healthy(row, launch) else self._unhealthy.get(key, 0) + 1
            self._unhealthy[key] = failures
            if failures >= HEALTH_FAILURES:
                self._stop_instance(row, launch.runtime is not None)
                row.message = f"failed {failures} health checks"
                events.append(f"instance {row.index} {row.message}; restarting")
                return self._crashed(row)
        return None

    def _crashed(self, row: tables.AppInstance) -> str | None:
        row.state = "crashed"
        row.restarts += 1
        if not row.ever_ready and row.restarts >= EARLY_CRASHES:
            return f"instance {row.index} never became ready ({row.restarts} tries): {row.message}"
        backoff = min(MAX_BACKOFF_S, 2.0 ** (row.restarts - 1))
        row.not_before = utcnow() + dt.timedelta(seconds=backoff)
        return None

    def _launch(self, row: tables.AppInstance, launch: Launch, events: list[str]) -> str | None:
        fixed = launch.fixed_port()
        port = fixed or services.free_port()
        if fixed is not None and services.port_taken(fixed):
            row.message = f"port {fixed} is already in use on this machine"
            return f"instance {row.index}: {row.message}"
        self._starting = True
        try:
            service = launch.start(row.generation, row.index, port)
        except OSError as exc:
            row.message = f"cannot start {exc.filename or 'the command'}: {exc.strerror}"
            return f"instance {row.index}: {row.message}"
        self._services[(row.app_id, row.generation, row.index)] = service
        row.state, row.port, row.external_id = "starting", port, service.ref
        row.started_at, row.not_before = utcnow(), None
        events.append(f"instance {row.index} (generation {row.generation}) started on port {port}")
        return None

    def _due(self, key: tuple[int, int, int]) -> bool:
        """Is a ready instance's periodic health check due?"""
        now = time.monotonic()
        if now - self._checked.get(key, 0.0) < HEALTH_EVERY_S:
            return False
        self._checked[key] = now
        return True

    def _healthy(self, row: tables.AppInstance, launch: Launch) -> bool:
        url = f"http://127.0.0.1:{row.port}{launch.prefix}{launch.spec.health_path.lstrip('/')}"
        try:
            response = self._http.get(url, headers={"Authorization": f"token {launch.token}"})
        except httpx.HTTPError:
            return False
        return response.status_code < 400

    def _switch(
        self, app: tables.App, instances: list[tables.AppInstance], target: int, events: list[str]
    ) -> None:
        """The new generation is ready: it serves, the old one stops."""
        for row in instances:
            if row.generation != target and row.state != "stopped":
                self._stop_instance(row, self._containers(app))
                row.state = "stopped"
        app.spec, app.pending_spec, app.generation = app.pending_spec or app.spec, None, target
        app.state, app.message = "running", ""
        events.append(f"updated: generation {target} serves")

    def _fail(
        self,
        app: tables.App,
        instances: list[tables.AppInstance],
        target: int,
        reason: str,
        events: list[str],
    ) -> None:
        for row in instances:
            if row.generation == target:
                self._stop_instance(row, self._containers(app))
                row.state = "stopped"
        if app.pending_spec is not None:  # the serving generation goes on
            app.pending_spec, app.state = None, "running"
            app.message = f"update failed, generation {app.generation} still serves: {reason}"
        else:
            app.state, app.message = "failed", reason
        events.append(app.message)

    def _idle(self, app: tables.App) -> bool:
        if app.state != "running":
            return False
        limit = self._spec(app.spec).idle_timeout
        if limit is None:
            return False
        last = self._activity.get(app.id) or app.last_activity_at or app.updated_at
        return utcnow() - last > dt.timedelta(seconds=limit)

    # -- instances ------------------------------------------------------------------------------

    def _service(self, row: tables.AppInstance) -> services.Service | None:
        """This server's handle on the instance, or one adopted from its external id."""
        key = (row.app_id, row.generation, row.index)
        found = self._services.get(key)
        adoptable = row.external_id is not None and row.state in ("starting", "ready")
        if found is None and adoptable and procs.alive(row.external_id or ""):
            found = self._services[key] = services.Service(row.external_id or "")
            log.info("adopted app instance %s (%s)", key, row.external_id)
        return found

    def _stop_instance(self, row: tables.AppInstance, container: bool) -> None:
        """Stop an instance; a container is also removed before this returns (podman's own
        removal after --rm comes a moment after its process ends)."""
        service = self._service(row)
        self._forget((row.app_id, row.generation, row.index))
        if container and self.runtime is not None:
            self.runtime.remove(container_name(row.app_id, row.generation, row.index))
        if service is not None:
            services.stop(service)

    def _forget(self, key: tuple[int, int, int]) -> None:
        """What this server keeps of an instance that ended."""
        for kept in (self._services, self._unhealthy, self._checked):
            kept.pop(key, None)

    def _containers(self, app: tables.App) -> bool:
        """Does any generation of the app run in containers?"""
        specs = [app.spec, app.pending_spec] if app.pending_spec else [app.spec]
        return any(json.loads(text).get("image") for text in specs)

    def _stop_all(self, app: tables.App, instances: list[tables.AppInstance]) -> None:
        for row in instances:
            self._stop_instance(row, self._containers(app))
        self.routes.pop(app.name, None)

    def _route(self, app: tables.App, instances: list[tables.AppInstance]) -> None:
        ports = [
            i.port
            for i in instances
            if i.generation == app.generation and i.state == "ready" and i.port is not None
        ]
        if not ports:
            self.routes.pop(app.name, None)
            return
        spec = self._spec(app.spec)
        prefix = "/" if spec.strip_prefix else f"/apps/{app.name}/"
        route = self.routes.get(app.name)
        if route is None or route.ports != ports:
            self.routes[app.name] = Route(ports, self.box.open(app.app_token) or "", prefix)

    # -- the database ---------------------------------------------------------------------------

    def _spec(self, text: str) -> AppSpec:
        """A stored spec, its secrets opened: parsed once per version of it, not every turn."""
        found = self._specs.get(text)
        if found is None:
            data = json.loads(text)
            sealed = data.get("secrets", {})
            data["secrets"] = {k: self.box.open(v) or "" for k, v in sealed.items()}
            found = AppSpec.model_validate(data)
            if len(self._specs) >= SPECS_KEPT:
                self._specs.clear()
            self._specs[text] = found
        return found

    def _save(
        self,
        app: tables.App,
        seen: tuple[str, str | None],
        instances: list[tables.AppInstance],
        events: list[str],
    ) -> None:
        """Write the turn's outcome. The app's own fields only if the API did not change its
        state or start an update meanwhile (it wins: the next turn works from its change)."""
        with self.db.session() as session:
            stored = session.get(tables.App, app.id)
            if stored is None:  # removed meanwhile
                return
            if (stored.state, stored.pending_spec) == seen:
                stored.state, stored.message = app.state, app.message
                stored.spec, stored.pending_spec = app.spec, app.pending_spec
                stored.generation = app.generation
                if events:
                    stored.updated_at = utcnow()
                self._follow(session, stored, stopped=False)
            for row in instances:
                if row.state == "stopped":
                    session.execute(
                        delete(tables.AppInstance).where(
                            tables.AppInstance.app_id == row.app_id,
                            tables.AppInstance.generation == row.generation,
                            tables.AppInstance.index == row.index,
                        )
                    )
                else:
                    session.merge(row)
            session.add_all(tables.AppEvent(app_id=app.id, message=e) for e in events)

    def _finish_stop(self, app: tables.App, events: list[str]) -> None:
        with self.db.session() as session:
            session.execute(delete(tables.AppInstance).where(tables.AppInstance.app_id == app.id))
            row = session.get(tables.App, app.id)
            if row is None:
                return
            self._follow(session, row, stopped=True)
            if row.state == "removing" or row.job_id is not None:  # a job's app ends with it
                session.delete(row)
                shutil.rmtree(self.folder / str(app.id), ignore_errors=True)  # its logs
            else:
                row.state = "stopped"
                session.add_all(tables.AppEvent(app_id=app.id, message=e) for e in events)
        self._activity.pop(app.id, None)

    @staticmethod
    def _follow(session: Session, app: tables.App, *, stopped: bool) -> None:
        """An interactive job's one task follows its app (``jobs/submit.py``): running once it
        serves, failed with it; once its instances are ``stopped``, succeeded if it stopped for
        want of traffic, else cancelled. A failed job's app is removed at the next turn."""
        if app.job_id is None:
            return
        task = session.get(tables.Task, (app.job_id, 0))
        job = session.get(tables.Job, app.job_id)
        if task is None or job is None or task.state in TASK_DONE:
            return
        now = utcnow()
        if app.state == "running" and task.state == TaskState.QUEUED:
            task.state, task.started_at, task.external_id = TaskState.RUNNING, now, app.name
            job.state, job.started_at = JobState.RUNNING, now
            return
        if app.state == "failed":
            outcome = TaskState.FAILED
        elif stopped:
            outcome = TaskState.SUCCEEDED if app.state == "stopping" else TaskState.CANCELLED
        else:
            return
        task.state, task.finished_at = outcome, now
        task.message = app.message or ("cancelled" if outcome == TaskState.CANCELLED else "")
        if app.state == "failed":
            app.state = "removing"
        session.flush()
        close_if_done(session, app.job_id)

    def _save_activity(self) -> None:
        """Last proxied traffic, written once a turn rather than on every request."""
        touched, self._touched = self._touched, set()
        if not touched:
            return
        with self.db.session() as session:
            for app_id in touched:
                at = self._activity.get(app_id)
                if at is None:
                    continue
                row = session.get(tables.App, app_id)
                if row is not None:
                    row.last_activity_at = at
