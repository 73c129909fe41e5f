"""The FastAPI app factory: settings in, a ready platform out."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from primage import __version__
from primage.apps.backends import Backends, LocalBackend
from primage.apps.proxy import Proxy
from primage.apps.supervisor import Supervisor
from primage.auth.crypto import SecretBox
from primage.auth.oidc import Providers
from primage.auth.registry import RegistryKey
from primage.builds import Builder
from primage.config import Settings
from primage.dav.gateway import MOUNT, Gateway
from primage.db import Database
from primage.executors.base import Host
from primage.executors.registry import Executors, build_executors
from primage.host.containers import Runtime
from primage.host.sandbox import Sandbox
from primage.jobs.reconciler import Reconciler
from primage.server import errors
from primage.server.bootstrap import ensure_admin
from primage.server.metrics import Metrics, MetricsMiddleware
from primage.server.routers import (
    apps,
    audit,
    auth,
    builds,
    executors,
    files,
    health,
    hooks,
    jobs,
    proxy,
    registry,
    spaces,
    templates,
    tokens,
    users,
)
from primage.server.state import Confinement, Platform
from primage.storage.quota import Usage
from primage.storage.spaces import SpaceStore

log = logging.getLogger("primage.server")


def build_platform(settings: Settings) -> Platform:
    """Open the database (migrating it), the storage root, and create the admin if needed."""
    # Patient images and the admin credentials live here: owner-only when the platform creates it.
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = Database(settings.db_url)
    db.upgrade()
    if ensure_admin(settings, db):
        log.info("created user 'admin'; its token is in %s", settings.admin_credentials_file)
    runtime = Runtime.from_settings(settings)
    sandbox = Sandbox.from_settings(settings)
    usable = sandbox if sandbox is not None and sandbox.problem is None else None
    owner = usable.owner if usable is not None else None
    if owner is not None:
        os.umask(0o002)  # folders the server makes in spaces stay writable by the sandbox group
    store = SpaceStore(settings.storage_path, group=owner[1] if owner else None)
    counters = Usage(db, store)
    counters.start()  # nothing is in flight yet: usage counted anew, crashed uploads cleared
    available = Executors.of(
        build_executors(settings.executors, Host(settings, runtime, usable)),
        settings.default_executor,
    )
    metrics = Metrics()
    box = SecretBox(settings)
    folder = settings.data_dir / "apps"
    backends = {
        e.name: e.instance_backend(folder) or LocalBackend(folder, runtime)
        for e in available
        if "apps" in e.supports
    }
    host = available.host
    supervisor = Supervisor(
        settings, db, box, Backends(backends, host.name if host else None, folder), runtime, usable
    )
    platform = Platform(
        settings=settings,
        db=db,
        store=store,
        usage=counters,
        sandbox=Confinement.of(sandbox),
        metrics=metrics,
        executors=available,
        reconcilers={
            e.name: Reconciler(
                db,
                e,
                observe=metrics.task_events,
                written=counters.reconcile,
                sync_s=settings.sync_seconds,
                services=partial(supervisor.job_events, e.name) if e.name in backends else None,
            )
            for e in available
        },
        providers=Providers(settings.oidc_providers),
        box=box,
        registry=RegistryKey(settings.data_dir / "registry"),
        builder=Builder(settings, db, runtime),
        supervisor=supervisor,
        proxy=Proxy(settings, db, supervisor),
    )
    # interactive jobs' events reach their reconciler at once
    supervisor.on_job_event = lambda executor: platform.poke(executor)
    return platform


def create_app(settings: Settings | None = None) -> FastAPI:
    platform = build_platform(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for loop in platform.reconcilers.values():
            await loop.start()
        platform.builder.start()
        await platform.supervisor.start()
        yield
        await platform.supervisor.stop()
        await platform.proxy.close()
        platform.builder.stop()
        for loop in platform.reconcilers.values():
            await loop.stop()
        platform.providers.close()
        platform.db.dispose()

    app = FastAPIOffline(  # /docs and /redoc served from the package: they work offline
        static_url="/docs/assets",
        title="primage",
        version=__version__,
        summary="A research cloud for medical imaging: spaces, jobs and applications.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    errors.install(app)
    routers = (
        health, auth, users, tokens, spaces, files, jobs, executors, apps, proxy, audit,
        registry, hooks, builds, templates,
    )  # fmt: skip
    for module in routers:
        app.include_router(module.router)
    app.mount(MOUNT, WSGIMiddleware(Gateway(platform), workers=32))  # type: ignore[arg-type]
    app.add_middleware(proxy.ProxyMiddleware)  # /apps/<name>/…: inside the metrics
    app.add_middleware(MetricsMiddleware, metrics=platform.metrics)
    return app
