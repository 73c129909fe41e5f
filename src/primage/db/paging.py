"""One page of a listing and how many rows the whole listing has."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


def page(
    session: Session, query: Select[Any], order: Any, limit: int, offset: int
) -> tuple[Sequence[Any], int]:
    """The rows ``offset`` to ``offset + limit`` of ``query`` in ``order``, and the total."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(order).limit(limit).offset(offset)).all()
    return rows, total
