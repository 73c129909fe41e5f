"""Request dependencies: the platform state and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from primage.auth import tokens
from primage.auth.principal import Principal
from primage.errors import Unauthenticated
from primage.server.state import Platform, platform


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if not header:
        raise Unauthenticated(
            "no token: send 'Authorization: Bearer <token>' (primage token create)"
        )
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("unsupported Authorization header: use 'Bearer <token>'")
    return value.strip()


async def current_principal(
    request: Request, state: Annotated[Platform, Depends(platform)]
) -> Principal:
    """The caller; a token seen in the last seconds costs no database query and no thread."""
    raw = bearer(request)
    cached = state.principals.get(raw)
    if cached is not None:
        return cached

    def lookup() -> Principal:
        with state.db.session() as session:
            return tokens.authenticate(session, raw)

    principal = await run_in_threadpool(lookup)
    state.principals.put(raw, principal)
    return principal


State = Annotated[Platform, Depends(platform)]
Caller = Annotated[Principal, Depends(current_principal)]
