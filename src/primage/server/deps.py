"""Request dependencies: the platform state and the authenticated caller.

A caller proves who they are with one of:

- ``Authorization: Bearer prm_…``: a platform token;
- ``Authorization: Bearer <access token>`` from a trusted OpenID Connect provider (a JWT checked
  against the provider's cached keys, or an opaque token checked by introspection);
- the ``primage_session`` cookie of the web login; its writes must carry the CSRF token.

A credential seen in the last seconds costs no database query, no provider call and no thread.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError
from starlette.requests import HTTPConnection

from primage.auth import provisioning, sessions, tokens
from primage.auth.principal import Principal
from primage.errors import Forbidden, Unauthenticated
from primage.server.state import Platform, platform

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def bearer(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("unsupported Authorization header: use 'Bearer <token>'")
    return value.strip()


def _from_provider(state: Platform, raw: str) -> Principal:
    identity = state.providers.authenticate(raw)
    provider = state.providers.get(identity.provider).settings
    for attempt in range(2):  # a first login racing another request of the same user
        try:
            with state.db.session() as session:
                outcome = provisioning.admit(session, provider, identity, f"oidc:{provider.name}")
            break
        except IntegrityError:
            if attempt:
                raise
    if isinstance(outcome, Forbidden):
        state.principals.clear()  # the account may just have been suspended: its tokens too
        raise outcome
    return outcome


def authenticate(state: Platform, raw: str, *, cookie: bool) -> Principal:
    """The principal behind a credential (blocking: database and provider calls)."""
    if cookie:
        return sessions.authenticate(state.db, state.settings, state.box, state.providers, raw)
    if raw.startswith(tokens.PREFIX) or not state.providers:
        with state.db.session() as session:
            return tokens.authenticate(session, raw)
    return _from_provider(state, raw)


def bearer_or_basic(header: str) -> str:
    """The token in ``Bearer <token>``, or the password of Basic credentials, for clients that
    only do Basic (WebDAV mounts, ``podman login``): the user name is ignored."""
    scheme, _, value = header.partition(" ")
    if not header:
        raise Unauthenticated(
            "no credentials: send a platform token or an access token as 'Bearer <token>', "
            "or as the password of Basic authentication (any user name)"
        )
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("malformed Basic credentials") from None
        if password:
            return password
    raise Unauthenticated("use 'Bearer <token>', or Basic with the token as the password")


async def csrf_sent(request: Request) -> str | None:
    sent = request.headers.get(sessions.CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(sessions.CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent


async def identify(connection: HTTPConnection, state: Platform) -> tuple[Principal, bool]:
    """The caller of a request or WebSocket, and whether they came with the session cookie."""
    raw, cookie = bearer(connection), False
    if raw is None:
        raw, cookie = connection.cookies.get(sessions.COOKIE), True
    if raw is None:
        raise Unauthenticated(
            "no credentials: send 'Authorization: Bearer <token>' (primage login, or primage "
            "token create), or log in at /auth/login"
        )
    key = f"session:{raw}" if cookie else raw
    principal = state.principals.get(key)
    if principal is None:
        principal = await run_in_threadpool(authenticate, state, raw, cookie=cookie)
        state.principals.put(key, principal)
    return principal, cookie


#: Declares the bearer scheme in the OpenAPI (the Authorize button of /docs); reading the header
#: and every check stay in :func:`identify`.
DOCUMENTED_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A platform token (primage token create; primage token current prints the "
    "CLI's), or an access token of a trusted identity provider.",
)


async def current_principal(
    request: Request,
    state: Annotated[Platform, Depends(platform)],
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(DOCUMENTED_BEARER)],
) -> Principal:
    principal, cookie = await identify(request, state)
    if cookie and request.method not in sessions.SAFE_METHODS:
        sessions.check_csrf(principal, request.method, await csrf_sent(request))
    return principal


State = Annotated[Platform, Depends(platform)]
Caller = Annotated[Principal, Depends(current_principal)]
