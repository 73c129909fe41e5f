"""Finding rows by the names users type, with a 404 that names what was missing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from primage.db import tables
from primage.errors import NotFound


def space(session: Session, name: str) -> tables.Space:
    row = session.scalar(select(tables.Space).where(tables.Space.name == name))
    if row is None:
        raise NotFound(f"no space named '{name}' (primage space ls lists yours)")
    return row


def user(session: Session, name: str) -> tables.User:
    row = session.scalar(select(tables.User).where(tables.User.name == name))
    if row is None:
        raise NotFound(f"no user named '{name}'")
    return row


def group(session: Session, name: str) -> tables.Group:
    row = session.scalar(select(tables.Group).where(tables.Group.name == name))
    if row is None:
        raise NotFound(f"no group named '{name}'")
    return row
