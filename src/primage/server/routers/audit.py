"""The audit log, for platform admins."""

from __future__ import annotations

import datetime as dt
import json

from fastapi import APIRouter, Query
from sqlalchemy import select

from primage.auth import policy
from primage.auth.audit import ACTIONS
from primage.db import tables
from primage.db.paging import page
from primage.errors import BadRequest
from primage.models.audit import AuditEntry, AuditPage
from primage.server.deps import Caller, State
from primage.server.params import Offset

router = APIRouter(prefix="/admin", tags=["admin"])

A = tables.AuditEvent


@router.get("/audit", response_model=AuditPage)
def audit_log(
    caller: Caller,
    state: State,
    actor: str | None = Query(None, description="Only what this user did."),
    action: str | None = Query(None, description="e.g. token.create, or a prefix: 'space.'"),
    target: str | None = Query(None, description="e.g. space:ct, job:3, token:<id>"),
    since: dt.datetime | None = Query(None, description="ISO time; naive means UTC."),
    limit: int = Query(100, ge=1, le=10_000),
    offset: Offset = 0,
) -> AuditPage:
    """Newest first: who did what to which resource, and when."""
    policy.check_admin(caller, "read the audit log")
    query = select(A)
    if actor is not None:
        query = query.where(A.actor == actor)
    if action is not None:
        if not any(a.startswith(action) for a in ACTIONS):
            raise BadRequest(f"no audit action '{action}'; known: {', '.join(ACTIONS)}")
        query = query.where(A.action.startswith(action))
    if target is not None:
        query = query.where(A.target == target)
    if since is not None:
        query = query.where(A.at >= (since if since.tzinfo else since.replace(tzinfo=dt.UTC)))
    with state.db.session() as session:
        rows, total = page(session, query, A.id.desc(), limit, offset)
        entries = [
            AuditEntry(
                id=r.id,
                at=r.at,
                actor=r.actor,
                token_id=r.token_id,
                action=r.action,
                target=r.target,
                detail=json.loads(r.detail) if r.detail else {},
            )
            for r in rows
        ]
    return AuditPage(entries=entries, total=total, offset=offset)
