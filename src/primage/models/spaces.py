"""Spaces and their members."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from primage.models import BIGINT_MAX, Model, Strict


class SpaceCreate(Strict):
    name: str = Field(description="1-63 lowercase letters, digits, '.', '_' or '-'.")
    description: str = ""
    quota_bytes: int | None = Field(
        None, ge=1, le=BIGINT_MAX, description="Largest total size; none = no limit."
    )


class SpaceUpdate(Strict):
    description: str | None = None
    quota_bytes: int | None = Field(
        None, ge=0, le=BIGINT_MAX, description="New quota; 0 removes the limit."
    )


class Member(Model):
    kind: Literal["user", "group"]
    name: str
    role: Literal["viewer", "editor", "manager"]


class Space(Model):
    name: str
    owner: str
    description: str
    quota_bytes: int | None
    created_at: dt.datetime
    role: str = Field(description="The caller's role on this space.")


class SpaceDetail(Space):
    size_bytes: int
    file_count: int
    members: list[Member]


class ShareRequest(Strict):
    kind: Literal["user", "group"] = "user"
    name: str
    role: Literal["viewer", "editor", "manager"] = "viewer"
