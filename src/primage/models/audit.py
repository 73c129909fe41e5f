"""Audit log entries as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from primage.models import Model


class AuditEntry(Model):
    id: int
    at: dt.datetime
    actor: str
    token_id: str | None
    action: str
    target: str
    detail: dict[str, Any]


class AuditPage(Model):
    entries: list[AuditEntry]
    total: int
    offset: int
