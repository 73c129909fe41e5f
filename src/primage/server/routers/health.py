"""Liveness and Prometheus metrics (both public: they reveal no user data)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from primage import __version__
from primage.server.deps import State

router = APIRouter(tags=["health"])


@router.get("/health")
def health(state: State) -> dict[str, str]:
    """The server is up and its database answers."""
    with state.db.session() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__, "database": state.db.engine.dialect.name}


@router.get("/metrics", include_in_schema=False)
def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
