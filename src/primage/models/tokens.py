"""Platform API tokens."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class TokenCreate(BaseModel):
    name: str = Field("cli", min_length=1, max_length=128)
    expires_in_days: float | None = Field(
        None, gt=0, description="Lifetime in days; default from the server's token_ttl_days."
    )
    space: str | None = Field(None, description="Restrict the token to this space.")
    path: str | None = Field(None, description="Restrict it to this folder inside the space.")
    read_only: bool = Field(False, description="Allow reading only.")


class Token(BaseModel):
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
