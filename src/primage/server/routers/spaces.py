"""Spaces: create, list, inspect, update, delete, and who may use them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from primage.auth import audit, entitlements, policy, provisioning
from primage.auth.policy import Right, Role
from primage.auth.principal import Principal
from primage.db import lookup, tables
from primage.errors import Conflict, NotFound
from primage.jobs.states import JOB_DONE
from primage.models import spaces as m
from primage.server.deps import Caller, State
from primage.storage.filesystem import usage
from primage.storage.paths import check_name

router = APIRouter(prefix="/spaces", tags=["spaces"])


def to_model(row: tables.Space, role: Role | None) -> m.Space:
    return m.Space(
        name=row.name,
        owner=row.owner.name,
        description=row.description,
        quota_bytes=row.quota_bytes,
        created_at=row.created_at,
        role=str(role or ""),
    )


def members(session: Session, row: tables.Space) -> list[m.Member]:
    found = []
    for member in row.members:
        subject: tables.User | tables.Group | None
        if member.subject_kind == "user":
            subject = session.get(tables.User, member.subject_id)
        else:
            subject = session.get(tables.Group, member.subject_id)
        if subject is not None:
            found.append(m.Member(kind=member.subject_kind, name=subject.name, role=member.role))
    return sorted(found, key=lambda x: (x.kind, x.name))


@router.post("", status_code=201, response_model=m.Space)
def create(body: m.SpaceCreate, caller: Caller, state: State) -> m.Space:
    policy.check_create_space(caller)
    check_name("space", body.name)
    with state.db.session() as session:
        row = tables.Space(
            name=body.name,
            owner_id=caller.user_id,
            description=body.description,
            quota_bytes=body.quota_bytes,
        )
        session.add(row)
        try:
            session.flush()  # the unique name is the one check, also against concurrent creates
        except IntegrityError:
            raise Conflict(f"space '{body.name}' already exists; choose another name") from None
        audit.record(session, caller, "space.create", f"space:{body.name}")
        state.store.create(body.name)  # inside the transaction: a failure here rolls back the row
        session.refresh(row)
        return to_model(row, Role.OWNER)


@router.get("", response_model=list[m.Space])
def list_spaces(caller: Caller, state: State) -> list[m.Space]:
    """The spaces the caller owns or is a member of (admins: all)."""
    with state.db.session() as session:
        query = select(tables.Space).options(selectinload(tables.Space.members))
        rows = session.scalars(query.order_by(tables.Space.name)).all()
        return [
            to_model(row, policy.role_on(caller, row))
            for row in rows
            if policy.can_list(caller, row)
        ]


def detail(session: Session, state: State, caller: Principal, name: str) -> m.SpaceDetail:
    row = lookup.space(session, name)
    role = policy.check_space(caller, row, Right.READ)
    size, count = usage(state.store.folder(name))
    row.used_bytes = size  # counted anyway: the quota's counter follows what jobs wrote
    return m.SpaceDetail(
        **to_model(row, role).model_dump(),
        size_bytes=size,
        file_count=count,
        members=members(session, row),
    )


@router.get("/{name}", response_model=m.SpaceDetail)
def show(name: str, caller: Caller, state: State) -> m.SpaceDetail:
    with state.db.session() as session:
        return detail(session, state, caller, name)


@router.patch("/{name}", response_model=m.SpaceDetail)
def update(name: str, body: m.SpaceUpdate, caller: Caller, state: State) -> m.SpaceDetail:
    with state.db.session() as session:
        row = lookup.space(session, name)
        policy.check_space(caller, row, Right.MANAGE)
        if body.description is not None:
            row.description = body.description
        if body.quota_bytes is not None:
            row.quota_bytes = body.quota_bytes or None
        audit.record(session, caller, "space.update", f"space:{name}", quota=row.quota_bytes)
        session.flush()
        return detail(session, state, caller, name)


@router.delete("/{name}", status_code=204)
async def delete(name: str, caller: Caller, state: State, force: bool = False) -> None:
    """Delete a space and its files. A space that still holds files needs `force=true`."""

    def remove() -> None:
        with state.db.session() as session:
            row = lookup.space(session, name)
            policy.check_space(caller, row, Right.DELETE)
            running = session.scalars(
                select(tables.Job.id).where(
                    tables.Job.spaces.contains(f",{name},"),
                    tables.Job.state.not_in(JOB_DONE),
                )
            ).all()
            if running:
                ids = ", ".join(map(str, running))
                raise Conflict(
                    f"space '{name}' is used by unfinished job(s) {ids}; "
                    "wait for them or cancel them (primage job cancel)"
                )
            _, count = usage(state.store.folder(name))
            if count and not force:
                raise Conflict(
                    f"space '{name}' still holds {count} files; delete them too with force=true "
                    "(primage space rm --force)"
                )
            session.delete(row)
            audit.record(session, caller, "space.delete", f"space:{name}", files=count)
            session.flush()
            state.store.destroy(name)

    await run_in_threadpool(remove)


def subject_id(session: Session, kind: str, name: str, *, sharing: bool = False) -> int:
    """A user's or group's id; sharing with a provider's group creates it if nobody of it has
    logged in yet (its members join it at their login)."""
    if sharing and kind == "group" and entitlements.is_provider_group(name):
        return provisioning.provider_group(session, name).id
    if kind == "group":
        return lookup.group(session, name).id
    try:
        return lookup.user(session, name).id
    except NotFound:
        if session.scalar(select(tables.Group.id).where(tables.Group.name == name)) is not None:
            raise NotFound(f"no user named '{name}'; '{name}' is a group: add --group "
                           "(kind=group)") from None  # fmt: skip
        raise NotFound(
            f"no user named '{name}': a user exists once they have logged in, or once an admin "
            f"created them (primage admin user create {name})"
        ) from None


@router.put("/{name}/members", response_model=m.SpaceDetail)
def share(name: str, body: m.ShareRequest, caller: Caller, state: State) -> m.SpaceDetail:
    """Give a user or a group a role on the space (replacing any role it had)."""
    with state.db.session() as session:
        row = lookup.space(session, name)
        policy.check_share(caller, row, Role(body.role))
        sid = subject_id(session, body.kind, body.name, sharing=True)
        if body.kind == "user" and sid == row.owner_id:
            raise Conflict(f"'{body.name}' owns space '{name}' already")
        existing = session.get(tables.SpaceMember, (row.id, body.kind, sid))
        if existing is None:
            row.members.append(
                tables.SpaceMember(subject_kind=body.kind, subject_id=sid, role=body.role)
            )
        else:
            policy.check_share(caller, row, Role(existing.role))
            existing.role = body.role
        audit.record(
            session,
            caller,
            "space.share",
            f"space:{name}",
            **{body.kind: body.name},
            role=body.role,
        )
        session.flush()
        return detail(session, state, caller, name)


@router.delete("/{name}/members/{kind}/{subject}", response_model=m.SpaceDetail)
def unshare(name: str, kind: str, subject: str, caller: Caller, state: State) -> m.SpaceDetail:
    with state.db.session() as session:
        row = lookup.space(session, name)
        policy.check_space(caller, row, Right.MANAGE)
        if kind not in ("user", "group"):
            raise NotFound(f"member kind must be 'user' or 'group', not '{kind}'")
        sid = subject_id(session, kind, subject)
        existing = session.get(tables.SpaceMember, (row.id, kind, sid))
        if existing is None:
            raise NotFound(f"{kind} '{subject}' is not a member of space '{name}'")
        policy.check_share(caller, row, Role(existing.role))
        row.members.remove(existing)
        audit.record(session, caller, "space.unshare", f"space:{name}", **{kind: subject})
        session.flush()
        return detail(session, state, caller, name)
