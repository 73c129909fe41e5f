"""The audit log: who did what to which resource, and when.

Every change that matters for security (tokens, sharing, deletions, jobs, accounts) calls
:func:`record` inside the transaction that makes the change, so the log has an entry exactly when
the change happened. Entries name the actor by user name (it outlives the account) and the token
used, never a secret. Admins read it with ``GET /admin/audit`` or ``primage admin audit``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from primage.auth.principal import Principal
from primage.db import tables

ACTIONS = (
    "user.create",
    "user.login",
    "user.logout",
    "user.suspend",
    "user.reinstate",
    "group.create",
    "group.add",
    "group.remove",
    "token.create",
    "token.revoke",
    "space.create",
    "space.update",
    "space.delete",
    "space.share",
    "space.unshare",
    "file.delete",
    "job.submit",
    "job.cancel",
    "job.remove",
    "app.deploy",
    "app.update",
    "app.stop",
    "app.start",
    "app.remove",
    "image.delete",
    "build.start",
    "build.hook",
)


def record(session: Session, actor: Principal, action: str, target: str, **detail: Any) -> None:
    """Add an entry to the current transaction."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    session.add(
        tables.AuditEvent(
            actor=actor.name,
            token_id=actor.token_id,
            action=action,
            target=target,
            detail=json.dumps(detail, sort_keys=True, default=str) if detail else "",
        )
    )
