"""Browser sessions from the web login: an opaque cookie, a row per session, CSRF for writes.

The cookie holds 256 random bits; the database keeps only their SHA-256, so a copy of the
database opens no session. Each session has its own CSRF token, which a state-changing request
made with the cookie must repeat in the ``X-CSRF-Token`` header or a ``csrf_token`` form field
(synchroniser-token pattern; the cookie is also ``SameSite=Lax`` and ``HttpOnly``).

Group membership is re-checked at the provider every ``membership_check_seconds`` with the
session's refresh token (kept encrypted): a user removed from the required group loses the
session at the next check, and one whose refresh token was revoked is logged out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets

from sqlalchemy import delete
from sqlalchemy.orm import Session

from primage.auth import oidc, provisioning, tokens
from primage.auth.crypto import SecretBox
from primage.auth.oidc import Provider, Providers
from primage.auth.principal import Principal, of_user
from primage.config import Settings
from primage.db import Database
from primage.db.tables import WebSession, utcnow
from primage.errors import Forbidden, ProviderUnavailable, Unauthenticated

COOKIE = "primage_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_CHECK = dt.timedelta(seconds=30)  # when the provider was down at a re-check
log = logging.getLogger("primage.auth")


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create(
    session: Session,
    settings: Settings,
    box: SecretBox,
    principal: Principal,
    provider: str,
    refresh_token: str | None,
) -> str:
    """A new session for a user who just logged in; returns the cookie's value."""
    cookie = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(
        WebSession(
            id_hash=_hash(cookie),
            user_id=principal.user_id,
            provider=provider,
            csrf_token=secrets.token_urlsafe(32),
            refresh_token=box.seal(refresh_token) if refresh_token else None,
            created_at=now,
            expires_at=now + dt.timedelta(hours=settings.session_hours),
            checked_at=now,
        )
    )
    return cookie


def find(session: Session, cookie: str) -> WebSession | None:
    """The live session a cookie opens, if any."""
    row = session.get(WebSession, _hash(cookie))
    return row if row is not None and row.expires_at > utcnow() else None


def end(session: Session, box: SecretBox, cookie: str) -> tuple[WebSession | None, str | None]:
    """Delete a session; returns it and its refresh token (to revoke at the provider)."""
    row = session.get(WebSession, _hash(cookie))
    if row is None:
        return None, None
    refresh = box.open(row.refresh_token) if row.refresh_token else None
    session.delete(row)
    return row, refresh


def _recheck(
    db: Database, box: SecretBox, provider: Provider, row: WebSession, every: dt.timedelta
) -> None:
    """Refresh at the provider and re-admit; if the provider is down, try again soon."""
    refresh = box.open(row.refresh_token) if row.refresh_token else None
    if refresh is None:
        return
    try:
        reply = provider.token_request(
            "membership check", {"grant_type": "refresh_token", "refresh_token": refresh}
        )
        access = str(reply.get("access_token", ""))
        claims = (
            provider.verify_jwt(access)
            if oidc.looks_like_jwt(access)
            else provider.introspect(access)
        )
        identity = provider.identify(access, claims)
    except ProviderUnavailable as exc:
        log.warning("session re-check postponed: %s", exc.detail)
        with db.session() as session:
            fresh = session.get(WebSession, row.id_hash)
            if fresh is not None:
                fresh.checked_at = utcnow() - every + RETRY_CHECK
        return
    except Unauthenticated:
        with db.session() as session:
            session.execute(delete(WebSession).where(WebSession.id_hash == row.id_hash))
        raise Unauthenticated(
            f"your login at provider '{provider.name}' has ended; log in again"
        ) from None
    with db.session() as session:
        outcome = provisioning.admit(session, provider.settings, identity, via="session")
        fresh = session.get(WebSession, row.id_hash)
        if isinstance(outcome, Forbidden):
            if fresh is not None:
                session.delete(fresh)
        elif fresh is not None:
            fresh.checked_at = utcnow()
            if reply.get("refresh_token"):  # providers may rotate it
                fresh.refresh_token = box.seal(str(reply["refresh_token"]))
    if isinstance(outcome, Forbidden):
        raise outcome


def authenticate(
    db: Database, settings: Settings, box: SecretBox, providers: Providers, cookie: str
) -> Principal:
    """The principal of a session cookie, re-checking membership when it is due."""
    with db.session() as session:
        row = session.get(WebSession, _hash(cookie))
        if row is None or row.expires_at <= utcnow():
            raise Unauthenticated("your session has ended; log in again at /auth/login")
        tokens.check_not_suspended(row.user)
        session.expunge(row)
    every = dt.timedelta(seconds=settings.membership_check_seconds)
    if row.checked_at + every <= utcnow() and row.provider in providers.by_name:
        _recheck(db, box, providers.get(row.provider), row, every)
    with db.session() as session:
        fresh = session.get(WebSession, row.id_hash)
        if fresh is None:
            raise Unauthenticated("your session has ended; log in again at /auth/login")
        return of_user(
            fresh.user, expires_at=row.expires_at, via="session", csrf_token=row.csrf_token
        )


def check_csrf(principal: Principal, method: str, sent: str | None) -> None:
    """A state-changing request made with the session cookie must carry the session's token."""
    if principal.via != "session" or method in SAFE_METHODS:
        return
    expected = principal.csrf_token or ""
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden(
            f"missing or wrong CSRF token: send the session's token (GET /whoami) in the "
            f"{CSRF_HEADER} header or a '{CSRF_FIELD}' form field"
        )
