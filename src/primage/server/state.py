"""What every request handler shares: settings, database, storage root, executor, reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from primage.auth.cache import PrincipalCache
from primage.config import Settings
from primage.db import Database
from primage.executors.base import Executor
from primage.jobs.reconciler import Reconciler
from primage.server.metrics import Metrics
from primage.storage.spaces import SpaceStore


@dataclass
class Platform:
    settings: Settings
    db: Database
    store: SpaceStore
    metrics: Metrics
    executor: Executor
    reconciler: Reconciler
    principals: PrincipalCache = field(default_factory=PrincipalCache)


async def platform(request: Request) -> Platform:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread."""
    value: Platform = request.app.state.platform
    return value
