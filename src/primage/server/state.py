"""What every request handler shares: settings, the database and the storage root."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from primage.config import Settings
from primage.db import Database
from primage.server.metrics import Metrics
from primage.storage.spaces import SpaceStore


@dataclass
class Platform:
    settings: Settings
    db: Database
    store: SpaceStore
    metrics: Metrics


def platform(request: Request) -> Platform:
    value: Platform = request.app.state.platform
    return value
