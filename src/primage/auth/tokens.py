"""Platform API tokens: random, shown once, stored as a SHA-256 hash, restricted by caveats.

A token reads ``prm_<id>_<secret>``: the id finds the row, the secret is compared in constant
time with the stored hash. A SHA-256 is enough (no slow KDF) because the secret has 256 random
bits; nothing a person chose is hashed here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from primage.auth.principal import Caveats, Principal, of_user
from primage.db.tables import Token, User, utcnow
from primage.errors import BadRequest, Forbidden, Unauthenticated
from primage.storage.paths import normalise_relpath

PREFIX = "prm_"
ID_HEX = 16


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(raw: str) -> tuple[str, str]:
    body = raw.removeprefix(PREFIX)
    token_id, sep, secret = body[:ID_HEX], body[ID_HEX : ID_HEX + 1], body[ID_HEX + 1 :]
    if not raw.startswith(PREFIX) or sep != "_" or not secret:
        raise Unauthenticated("malformed token: platform tokens look like prm_<id>_<secret>")
    return token_id, secret


def issue(
    session: Session,
    user: User,
    *,
    name: str,
    lifetime: dt.timedelta,
    caveats: Caveats = Caveats(),
    parent_id: str | None = None,
) -> tuple[Token, str]:
    """Create a token and return its row and its only plaintext copy."""
    token_id, secret = secrets.token_hex(ID_HEX // 2), secrets.token_urlsafe(32)
    expires = utcnow() + lifetime
    if caveats.expires_at is not None:
        expires = min(expires, caveats.expires_at)
    row = Token(
        id=token_id,
        user_id=user.id,
        parent_id=parent_id,
        name=name,
        secret_hash=_hash(secret),
        expires_at=expires,
        space=caveats.space,
        path_prefix=caveats.path_prefix,
        read_only=caveats.read_only,
    )
    session.add(row)
    session.flush()
    return row, f"{PREFIX}{token_id}_{secret}"


def authenticate(session: Session, raw: str) -> Principal:
    """The principal a token stands for, or Unauthenticated saying why not."""
    token_id, secret = _split(raw)
    row = session.get(Token, token_id)
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise Unauthenticated("invalid token: check it was copied whole, or create a new one")
    if row.revoked_at is not None:
        raise Unauthenticated(f"token '{row.name}' was revoked; create a new one")
    if row.expires_at <= utcnow():
        raise Unauthenticated(f"token '{row.name}' expired at {row.expires_at:%Y-%m-%d %H:%M} UTC")
    user = row.user
    check_not_suspended(user)
    return of_user(user, token_id=row.id, expires_at=row.expires_at, caveats=caveats_of(row))


def check_not_suspended(user: User) -> None:
    if user.suspended_reason is not None:
        raise Forbidden(f"account '{user.name}' is suspended: {user.suspended_reason}")


def caveats_of(row: Token) -> Caveats:
    return Caveats(
        space=row.space,
        path_prefix=row.path_prefix,
        read_only=row.read_only,
        expires_at=row.expires_at,
    )


def narrow(parent: Caveats, *, space: str | None, path: str | None, read_only: bool) -> Caveats:
    """Caveats for a child token: what was asked, refused if it exceeds the parent's."""
    if path is not None and space is None and parent.space is None:
        raise BadRequest(
            "a path restriction needs a space: space=NAME with path=PREFIX "
            "(primage token create --space NAME --path PREFIX)"
        )
    if parent.space is not None and space not in (None, parent.space):
        raise Forbidden(f"this token is restricted to space '{parent.space}'")
    prefix = (normalise_relpath(path) or None) if path is not None else None
    if parent.path_prefix is not None:
        if prefix is None:
            prefix = parent.path_prefix
        elif not parent.allows_path(prefix):
            raise Forbidden(f"this token is restricted to path '{parent.path_prefix}'")
    return Caveats(
        space=space or parent.space,
        path_prefix=prefix,
        read_only=read_only or parent.read_only,
        expires_at=parent.expires_at,
    )


def descendants(session: Session, token_id: str) -> list[Token]:
    """Every token created, directly or not, through ``token_id``."""
    found: list[Token] = []
    frontier = [token_id]
    while frontier:
        children = session.scalars(select(Token).where(Token.parent_id.in_(frontier))).all()
        found.extend(children)
        frontier = [child.id for child in children]
    return found


def revoke(session: Session, row: Token) -> int:
    """Revoke a token and everything made from it; returns how many were revoked."""
    now = utcnow()
    rows = [row, *descendants(session, row.id)]
    for each in rows:
        if each.revoked_at is None:
            each.revoked_at = now
    return len(rows)


def issue_pull(session: Session, user_id: int, name: str, lifetime: dt.timedelta) -> str:
    """A read-only token of the user's that nodes pull a job's or an app's image with, under
    a name of the job's or app's own (``revoke_named`` ends it with them)."""
    user = session.get(User, user_id)
    assert user is not None
    _, secret = issue(session, user, name=name, lifetime=lifetime,
                      caveats=Caveats(read_only=True))  # fmt: skip
    return secret


def revoke_named(session: Session, user_id: int, name: str) -> None:
    """Revoke the user's live tokens of that name (a job's or an app's pull credential)."""
    for row in session.scalars(
        select(Token).where(
            Token.user_id == user_id, Token.name == name, Token.revoked_at.is_(None)
        )
    ):
        revoke(session, row)
