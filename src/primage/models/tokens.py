"""Platform API tokens."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from primage.models import Model, Strict

MIN_TOKEN_DAYS = 1 / 86400  # a second: a token already expired when it is made is a mistake
MAX_TOKEN_DAYS = 36_500  # a hundred years; past this, expiry dates overflow


class TokenCreate(Strict):
    name: str = Field("cli", min_length=1, max_length=128)
    expires_in_days: float | None = Field(
        None,
        ge=MIN_TOKEN_DAYS,
        le=MAX_TOKEN_DAYS,
        description="Lifetime in days (at least a second); default the server's token_ttl_days.",
    )
    space: str | None = Field(None, description="Restrict the token to this space.")
    path: str | None = Field(None, description="Restrict it to this folder inside the space.")
    read_only: bool = Field(False, description="Allow reading only.")


class Token(Model):
    id: str
    name: str
    user: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked: bool
    space: str | None
    path: str | None
    read_only: bool
    parent_id: str | None


class TokenSecret(Token):
    token: str = Field(description="The secret: shown this once, never stored in plain text.")
