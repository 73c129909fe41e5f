"""Users and groups."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from primage.models import Model, Strict
from primage.models.tokens import MAX_TOKEN_DAYS, MIN_TOKEN_DAYS


class UserCreate(Strict):
    name: str
    is_admin: bool = False
    token_days: float = Field(
        30, ge=MIN_TOKEN_DAYS, le=MAX_TOKEN_DAYS, description="Lifetime of the first token it gets."
    )


class User(Model):
    name: str
    is_admin: bool
    groups: list[str]
    created_at: dt.datetime


class UserWithToken(User):
    token: str = Field(description="The user's first API token, shown this once.")


class Me(Model):
    name: str
    is_admin: bool
    groups: list[str]
    token_id: str | None
    token_expires_at: dt.datetime | None
    restrictions: dict[str, str | bool | None]
    via: str = Field(
        "token", description="How you authenticated: token, oidc:<provider> or session."
    )
    csrf_token: str | None = Field(
        None, description="With a web session: send it as X-CSRF-Token on writes."
    )


class GroupCreate(Strict):
    name: str


class Group(Model):
    name: str
    members: list[str]
