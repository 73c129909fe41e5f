"""Platform API tokens: create (possibly restricted), list, revoke."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from primage.auth import audit, tokens
from primage.auth.principal import Principal
from primage.db import lookup, tables
from primage.errors import BadRequest, Forbidden, NotFound
from primage.models import tokens as m
from primage.server.deps import Caller, State
from primage.storage.paths import check_name

router = APIRouter(prefix="/tokens", tags=["tokens"])


def to_model(row: tables.Token) -> m.Token:
    return m.Token(
        id=row.id,
        name=row.name,
        user=row.user.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        space=row.space,
        path=row.path_prefix,
        read_only=row.read_only,
        parent_id=row.parent_id,
    )


def visible(session: Session, caller: Principal) -> list[tables.Token]:
    """An unrestricted token sees all its user's tokens; a restricted one, those it made."""
    if not caller.caveats.restricted:
        query = select(tables.Token).where(tables.Token.user_id == caller.user_id)
        return list(session.scalars(query.order_by(tables.Token.created_at)))
    assert caller.token_id is not None
    own = session.get(tables.Token, caller.token_id)
    return [row for row in [own, *tokens.descendants(session, caller.token_id)] if row]


@router.post("", status_code=201, response_model=m.TokenSecret)
def create(body: m.TokenCreate, caller: Caller, state: State) -> m.TokenSecret:
    """A new token, never more powerful than the one used to create it."""
    settings = state.settings
    days = body.expires_in_days or settings.token_ttl_days
    if days > settings.max_token_ttl_days:
        raise BadRequest(f"tokens live at most {settings.max_token_ttl_days} days; ask for fewer")
    caveats = tokens.narrow(
        caller.caveats, space=body.space, path=body.path, read_only=body.read_only
    )
    with state.db.session() as session:
        if caveats.space is not None:
            check_name("space", caveats.space)
            lookup.space(session, caveats.space)
        user = session.get(tables.User, caller.user_id)
        assert user is not None
        row, secret = tokens.issue(
            session,
            user,
            name=body.name,
            lifetime=dt.timedelta(days=days),
            caveats=caveats,
            parent_id=caller.token_id,
        )
        audit.record(
            session,
            caller,
            "token.create",
            f"token:{row.id}",
            name=body.name,
            space=caveats.space,
            path=caveats.path_prefix,
            read_only=caveats.read_only,
            days=days,
        )
        return m.TokenSecret(**to_model(row).model_dump(), token=secret)


@router.get("", response_model=list[m.Token])
def list_tokens(caller: Caller, state: State) -> list[m.Token]:
    with state.db.session() as session:
        return [to_model(row) for row in visible(session, caller)]


@router.delete("/{token_id}", response_model=m.Token)
def revoke(token_id: str, caller: Caller, state: State) -> m.Token:
    """Revoke a token and every token made from it."""
    with state.db.session() as session:
        row = session.get(tables.Token, token_id)
        if row is None or (row.user_id != caller.user_id and not caller.is_admin):
            raise NotFound(f"no token with id '{token_id}' (primage token ls lists yours)")
        if caller.caveats.restricted and row not in visible(session, caller):
            raise Forbidden("a restricted token may revoke only itself and tokens it made")
        tokens.revoke(session, row)
        audit.record(session, caller, "token.revoke", f"token:{row.id}", owner=row.user.name)
        revoked = to_model(row)
    state.principals.clear()  # after the commit, so no request re-caches the old state
    return revoked
