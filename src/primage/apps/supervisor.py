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

Where instances run is the instance backend's (``apps/backends.py``: on this machine, processes
and containers); what runs when is decided here. Stops and health checks run in threads of their
own, so that an app slow to stop or to answer holds up no other app. Instances outlive the server;
a restarted server adopts them through the backend, as the job reconciler adopts tasks. Only
``ready`` instances of the serving generation receive traffic.

An interactive job's one task is its app's: the supervisor reports the app's start and end as
task events (``job_events``), which the job reconciler records like an executor's, and never
writes task rows itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import delete, select

from primage.apps import records
from primage.apps.backends import Backends, InstanceError
from primage.apps.launch import Launch, container_name
from primage.auth.crypto import SecretBox
from primage.config import Settings
from primage.db import Database, tables
from primage.db.tables import utcnow
from primage.executors.base import Outcome, TaskEvent, TaskKey, utc
from primage.host import procs
from primage.host.containers import Runtime
from primage.host.sandbox import Sandbox
from primage.jobs.states import INTERACTIVE, JOB_DONE, TASK_ACTIVE
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
WORKERS = 16  # threads for stops and health checks: so many slow instances at once block none

Key = tuple[int, int, int]  # an instance: app, generation, index


@dataclass
class Route:
    """Where the proxy sends an app's traffic: its ready instances, round-robin."""

    addresses: list[str]  # host:port of each
    token: str
    prefix: str  # what the app sees before the request's path: /apps/<name>/ or /
    _turn: Iterator[int] = field(default_factory=lambda: itertools.count())

    def next_address(self) -> str:
        return self.addresses[next(self._turn) % len(self.addresses)]


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        box: SecretBox,
        backend: Backends,
        runtime: Runtime | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.settings, self.db, self.box, self.runtime = settings, db, box, runtime
        self.backend = backend
        self.sandbox = sandbox  # confines process apps; None: off, or cannot be made
        self.folder = settings.data_dir / "apps"
        self.routes: dict[str, Route] = {}
        self._known: set[Key] = set()  # instances this server started or adopted
        self._unhealthy: dict[Key, int] = {}
        self._checked: dict[Key, float] = {}
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="app-instances")
        self._stops: dict[Key, Future[None]] = {}  # stops under way
        self._stopped_refs: set[str] = set()  # instances stopped, not to be stopped again
        self._checks: dict[Key, Future[bool]] = {}  # health checks under way, or answered
        #: Interactive jobs' task events, for the job reconciler (``job_events``).
        self._job_events: dict[str, list[TaskEvent]] = {}  # by the jobs' executor
        self._events_lock = threading.Lock()
        self._reported: dict[int, str] = {}  # job → the last event sent for its task
        self.on_job_event: Callable[[str], None] = lambda executor: None
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
        await asyncio.to_thread(self._pool.shutdown)  # stops under way end first
        self._http.close()
        self.backend.close()

    def job_events(self, executor: str) -> list[TaskEvent]:
        """What happened to the tasks of an executor's interactive jobs since the last call
        (never blocks)."""
        with self._events_lock:
            return self._job_events.pop(executor, [])

    def wake(self) -> None:
        """Ask for a turn now; safe from any thread."""
        if self._event_loop is not None and not self._event_loop.is_closed():
            self._event_loop.call_soon_threadsafe(self._wake.set)

    async def settle(self, app_id: int) -> None:
        """Run a turn for one app now (stopping, removing), the loop held off meanwhile, and
        once more when the stops it began have ended."""
        async with self._lock:
            await asyncio.to_thread(self._reconcile, app_id)
        stops = [f for key, f in list(self._stops.items()) if key[0] == app_id]
        if stops:  # waited for without the lock: other apps' turns go on meanwhile
            await asyncio.gather(*map(asyncio.wrap_future, stops), return_exceptions=True)
            async with self._lock:
                await asyncio.to_thread(self._reconcile, app_id)

    def log_path(self, app_id: int, generation: int, index: int) -> Path:
        """An instance's output."""
        return self.backend.log_path(app_id, generation, index)

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
        self._report_jobs()

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
            if self._stop_all(app, instances):  # all ended: nothing runs any more
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
        try:
            in_pods = self.backend.of(spec.executor).in_pods
        except InstanceError as exc:
            self._fail(app, instances, target, str(exc), events)
            return
        runtime = None if in_pods else self.runtime
        launch = Launch(self.settings, app.name, app.id, spec, token, runtime, self.sandbox,
                        in_pod=in_pods)  # fmt: skip
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
        now = utcnow()
        if row.state == "crashed":
            if key in self._stops:  # the last one is still stopping (its port, its files)
                return None
            if row.not_before is None or now >= row.not_before:
                return self._launch(row, launch, events)
            return None
        code = self._ended(row)
        if code is not None:
            self._forget(key)
            how = "ended" if code == -1 else f"exited with code {code}"
            tail = procs.tail(self.backend.log_path(row.app_id, row.generation, row.index))
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
        elif row.state == "ready" and (key in self._checks or self._due(key)):
            healthy = self._healthy(row, launch)
            if healthy is None:  # asked; the answer comes at a later turn
                return None
            failures = 0 if healthy else self._unhealthy.get(key, 0) + 1
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
        self._starting = True
        try:
            started = self.backend.start(launch, row.generation, row.index)
        except InstanceError as exc:
            row.message = str(exc)
            return f"instance {row.index}: {row.message}"
        self._known.add((row.app_id, row.generation, row.index))
        self._stopped_refs.discard(row.external_id or "")
        row.state, row.port, row.external_id = "starting", started.port, started.ref
        row.started_at, row.not_before = utcnow(), None
        events.append(
            f"instance {row.index} (generation {row.generation}) started on port {started.port}"
        )
        return None

    def _due(self, key: Key) -> bool:
        """Is a ready instance's periodic health check due?"""
        now = time.monotonic()
        if now - self._checked.get(key, 0.0) < HEALTH_EVERY_S:
            return False
        self._checked[key] = now
        return True

    def _healthy(self, row: tables.AppInstance, launch: Launch) -> bool | None:
        """The answer of the instance's health check, asked in a thread of its own: None
        until it has come (a check waits up to the client's timeout; other apps do not)."""
        key = (row.app_id, row.generation, row.index)
        asked = self._checks.get(key)
        if asked is None:
            address = self.backend.address(row.external_id or "", row.port or 0)
            url = f"http://{address}{launch.prefix}{launch.spec.health_path.lstrip('/')}"
            asked = self._checks[key] = self._pool.submit(self._check, url, launch.token)
            asked.add_done_callback(lambda _: self.wake())
        if not asked.done():
            return None
        del self._checks[key]
        return asked.result()

    def _check(self, url: str, token: str) -> bool:
        try:
            response = self._http.get(url, headers={"Authorization": f"token {token}"})
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

    def _ended(self, row: tables.AppInstance) -> int | None:
        """None while the instance runs (adopting it from its external id after a restart);
        else how it ended: its exit code, or -1 when that is unknown."""
        key = (row.app_id, row.generation, row.index)
        ref = row.external_id
        if ref is None:
            return -1
        if key not in self._known:
            if row.state not in ("starting", "ready") or not self.backend.adopt(ref):
                return -1
            self._known.add(key)
            log.info("adopted app instance %s (%s)", key, ref)
        return self.backend.status(ref)

    def _stop_instance(self, row: tables.AppInstance, container: bool) -> None:
        """Stop an instance, in a thread of its own (``_stops`` until it has ended)."""
        key = (row.app_id, row.generation, row.index)
        self._forget(key)
        ref = row.external_id
        if ref is None or key in self._stops or ref in self._stopped_refs:
            return
        name = container_name(*key) if container else None
        stop = self._pool.submit(self.backend.stop, ref, container=name)
        self._stops[key] = stop
        stop.add_done_callback(lambda _: self._stopped(key, ref))

    def _stopped(self, key: Key, ref: str) -> None:
        stop = self._stops.pop(key, None)
        self._stopped_refs.add(ref)
        if stop is not None and stop.exception() is not None:
            log.error("stopping app instance %s: %s", key, stop.exception())
        self.wake()

    def _forget(self, key: Key) -> None:
        """What this server keeps of an instance that ended."""
        self._known.discard(key)
        for kept in (self._unhealthy, self._checked, self._checks):
            kept.pop(key, None)

    def _containers(self, app: tables.App) -> bool:
        """Does any generation of the app run in containers?"""
        specs = [app.spec, app.pending_spec] if app.pending_spec else [app.spec]
        return any(json.loads(text).get("image") for text in specs)

    def _stop_all(self, app: tables.App, instances: list[tables.AppInstance]) -> bool:
        """Stop every instance; whether all have ended."""
        self.routes.pop(app.name, None)
        for row in instances:
            self._stop_instance(row, self._containers(app))
        if any(key[0] == app.id for key in list(self._stops)):
            return False
        self._stopped_refs -= {row.external_id for row in instances if row.external_id}
        return True

    def _route(self, app: tables.App, instances: list[tables.AppInstance]) -> None:
        addresses = [
            self.backend.address(i.external_id or "", i.port or 0)
            for i in instances
            if i.generation == app.generation and i.state == "ready" and i.port is not None
        ]
        if not addresses:
            self.routes.pop(app.name, None)
            return
        spec = self._spec(app.spec)
        prefix = "/" if spec.strip_prefix else f"/apps/{app.name}/"
        route = self.routes.get(app.name)
        if route is None or route.addresses != addresses:
            self.routes[app.name] = Route(addresses, self.box.open(app.app_token) or "", prefix)

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
                if stored.job_id is not None and stored.state == "failed":
                    self._report(stored.job_id, self._executor(stored), stored.name, "failed",
                                 None, stored.message)  # fmt: skip
                    stored.state = "removing"  # a job's app ends with it: removed next turn
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
            if row.job_id is not None:  # its task's end, for the job reconciler
                self._report(row.job_id, self._executor(row), row.name, "stopped", row.state,
                             row.message)  # fmt: skip
            if row.state == "removing" or row.job_id is not None:  # a job's app ends with it
                records.revoke_pull(session, row)
                session.delete(row)
                shutil.rmtree(self.folder / str(app.id), ignore_errors=True)  # its logs
                self.backend.forget(app.id)
            else:
                row.state = "stopped"
                session.add_all(tables.AppEvent(app_id=app.id, message=e) for e in events)
        self._activity.pop(app.id, None)

    # -- interactive jobs -----------------------------------------------------------------------

    def _report_jobs(self) -> None:
        """Tell the job reconciler how the apps of interactive jobs stand, from the database
        (so that nothing is missed across a restart): a task whose app serves has started; one
        whose app failed or is gone has ended. It records each once; repeats are ignored."""
        with self.db.session() as session:
            rows = session.execute(  # from the jobs not ended (indexed): few, whatever runs
                select(tables.Job.id, tables.Job.executor)
                .add_columns(tables.App.name, tables.App.state, tables.App.message)
                .join(tables.Task, (tables.Task.job_id == tables.Job.id) & (tables.Task.index == 0))
                .outerjoin(tables.App, tables.App.job_id == tables.Job.id)
                .where(tables.Job.state.not_in(sorted(JOB_DONE)), tables.Job.kind == INTERACTIVE)
                .where(tables.Task.state.in_(TASK_ACTIVE))
            ).all()
        active = {job_id for job_id, *_ in rows}
        self._reported = {j: sent for j, sent in self._reported.items() if j in active}
        for job_id, executor, name, state, message in rows:
            how = "gone" if name is None else state
            self._report(job_id, executor, name, how, state, message)

    def _executor(self, app: tables.App) -> str:
        """The executor an interactive job's app runs on: its job's."""
        return str(json.loads(app.spec).get("executor") or self.backend.default)

    def _report(
        self,
        job_id: int,
        executor: str,
        name: str | None,
        how: str,
        state: str | None,
        message: str | None,
    ) -> None:
        """One event for an interactive job's task: ``how`` is the app's state, or ``stopped``
        (its instances ended; ``state`` says why: idle or removed), or ``gone``."""
        key = TaskKey(job_id, 0, 1)
        sent = self._reported.get(job_id)
        event = None
        if how == "running" and sent is None:
            event = TaskEvent(key, "started", utc(), external_id=name)
        elif how == "failed" and sent != "finished":
            event = TaskEvent(key, "finished", utc(), outcome=Outcome.EXITED, message=message or "")
        elif how == "stopped" and sent != "finished":
            idle = state == "stopping"  # stopped for want of traffic: it did its work
            outcome = Outcome.EXITED if idle else Outcome.CANCELLED
            event = TaskEvent(key, "finished", utc(), outcome=outcome,
                              exit_code=0 if idle else None, message=message or "")  # fmt: skip
        elif how == "gone" and sent != "finished":
            gone = "its service is gone (it ended while the server was down)"
            event = TaskEvent(key, "finished", utc(), outcome=Outcome.EXITED, message=gone)
        if event is None:
            return
        self._reported[job_id] = event.kind
        with self._events_lock:
            self._job_events.setdefault(executor, []).append(event)
        self.on_job_event(executor)

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
