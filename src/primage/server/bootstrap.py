"""First start: create the admin and hand its token to the CLI on this machine (as Jupyter does)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from sqlalchemy import func, select

from primage.auth import tokens
from primage.config import Settings
from primage.db import Database, tables

ADMIN = "admin"


def write_private(path: Path, data: dict[str, object]) -> None:
    """Write JSON readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def ensure_admin(settings: Settings, db: Database) -> bool:
    """Create the first admin and its credentials file when the platform has no user yet."""
    with db.session() as session:
        if session.scalar(select(func.count()).select_from(tables.User)):
            return False
        admin = tables.User(name=ADMIN, is_admin=True)
        session.add(admin)
        session.flush()
        _, secret = tokens.issue(
            session,
            admin,
            name="local-admin",
            lifetime=dt.timedelta(days=settings.max_token_ttl_days),
        )
        write_private(settings.admin_credentials_file, {"user": ADMIN, "token": secret})
    return True
