"""The caller (whoami), and users and groups, which admins manage."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from primage.auth import audit, policy, tokens
from primage.db import lookup, tables
from primage.errors import Conflict
from primage.models import users as m
from primage.server.deps import Caller, State
from primage.storage.paths import check_name

router = APIRouter(tags=["users"])


def to_user(row: tables.User) -> m.User:
    groups = sorted(g.name for g in row.groups)
    return m.User(name=row.name, is_admin=row.is_admin, groups=groups, created_at=row.created_at)


def to_group(row: tables.Group) -> m.Group:
    return m.Group(name=row.name, members=sorted(u.name for u in row.members))


@router.get("/whoami", response_model=m.Me)
def whoami(caller: Caller) -> m.Me:
    caveats = caller.caveats
    return m.Me(
        name=caller.name,
        is_admin=caller.is_admin,
        groups=sorted(caller.group_names),
        token_id=caller.token_id,
        token_expires_at=caller.expires_at,
        restrictions={
            "space": caveats.space,
            "path": caveats.path_prefix,
            "read_only": caveats.read_only,
        },
        via=caller.via,
        csrf_token=caller.csrf_token,
    )


@router.post("/users", status_code=201, response_model=m.UserWithToken)
def create_user(body: m.UserCreate, caller: Caller, state: State) -> m.UserWithToken:
    """A local user and their first token (until OIDC login, how people get in)."""
    policy.check_admin(caller, "create users")
    check_name("user", body.name)
    try:
        with state.db.session() as session:
            user = tables.User(name=body.name, is_admin=body.is_admin)
            session.add(user)
            session.flush()
            _, secret = tokens.issue(
                session, user, name="first", lifetime=dt.timedelta(days=body.token_days)
            )
            audit.record(session, caller, "user.create", f"user:{body.name}", admin=body.is_admin)
            return m.UserWithToken(**to_user(user).model_dump(), token=secret)
    except IntegrityError:
        raise Conflict(f"user '{body.name}' already exists") from None


@router.get("/users", response_model=list[m.User])
def list_users(caller: Caller, state: State) -> list[m.User]:
    policy.check_admin(caller, "list users")
    with state.db.session() as session:
        return [to_user(u) for u in session.scalars(select(tables.User).order_by(tables.User.name))]


@router.post("/groups", status_code=201, response_model=m.Group)
def create_group(body: m.GroupCreate, caller: Caller, state: State) -> m.Group:
    policy.check_admin(caller, "create groups")
    check_name("group", body.name)
    try:
        with state.db.session() as session:
            group = tables.Group(name=body.name)
            session.add(group)
            session.flush()
            audit.record(session, caller, "group.create", f"group:{body.name}")
            return to_group(group)
    except IntegrityError:
        raise Conflict(f"group '{body.name}' already exists") from None


@router.get("/groups", response_model=list[m.Group])
def list_groups(caller: Caller, state: State) -> list[m.Group]:
    """Admins see every group; others see the groups they belong to."""
    with state.db.session() as session:
        query = select(tables.Group).order_by(tables.Group.name)
        if not caller.is_admin:
            query = query.where(tables.Group.id.in_(caller.group_ids))
        return [to_group(g) for g in session.scalars(query)]


@router.put("/groups/{group}/members/{user}", response_model=m.Group)
def add_member(group: str, user: str, caller: Caller, state: State) -> m.Group:
    policy.check_admin(caller, "change group membership")
    with state.db.session() as session:
        row, member = lookup.group(session, group), lookup.user(session, user)
        if member not in row.members:
            row.members.append(member)
            audit.record(session, caller, "group.add", f"group:{group}", user=user)
        changed = to_group(row)
    state.principals.clear()  # after the commit: group rights are part of a principal
    return changed


@router.delete("/groups/{group}/members/{user}", response_model=m.Group)
def remove_member(group: str, user: str, caller: Caller, state: State) -> m.Group:
    policy.check_admin(caller, "change group membership")
    with state.db.session() as session:
        row, member = lookup.group(session, group), lookup.user(session, user)
        if member in row.members:
            row.members.remove(member)
            audit.record(session, caller, "group.remove", f"group:{group}", user=user)
        changed = to_group(row)
    state.principals.clear()  # after the commit: group rights are part of a principal
    return changed
