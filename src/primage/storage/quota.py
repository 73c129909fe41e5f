"""Quotas that hold under concurrency: an upload reserves its bytes before it writes them.

A space's ``used_bytes`` (what its files take, kept by the platform) plus its ``reserved_bytes``
(what uploads in flight may still add) never exceed its quota: each reservation is one
conditional UPDATE, granted whole or refused, so ten parallel uploads cannot all pass a check
made before their bodies arrived. A body of known length reserves it at once; one of unknown
length reserves ``STEP`` more each time it outgrows what it holds. An upload that replaces a
file needs room for the difference only. A committed upload turns its reservation into use (its
size less the file it really replaced), an aborted one releases it. Two uploads replacing the
same file at once may each count its old size as freed: the counter stays exact, and the quota
can be passed by at most that file's size.

Usage is a counter, not a walk of the space per upload. What the platform does not write
itself (job tasks, apps, WebDAV copies and deletes) is reconciled with the disk: when a job
ends, after such a WebDAV request, when a space is shown, and for every space at start, when
no upload can be in flight: one server per database (several servers need the lease of
issue 19 first).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import or_, select, update

from primage.db import Database, tables
from primage.errors import InsufficientStorage
from primage.storage.filesystem import usage
from primage.storage.spaces import SpaceStore
from primage.storage.transfer import human

STEP = 16 * 1024 * 1024
S = tables.Space


class Reservation:
    """The bytes one upload holds in its space; ``ensure`` as it grows, then settle or release."""

    def __init__(
        self, db: Database, space_id: int, name: str, quota: int | None, credit: int = 0
    ) -> None:
        self.db, self.space_id, self.name, self.quota = db, space_id, name, quota
        self.credit = credit  # the size of the file the upload replaces: what it frees
        self.held = 0

    def ensure(self, size: int, *, exact: bool = False) -> None:
        """Hold room for an upload of ``size`` bytes in all (``exact``: a declared length, no
        step ahead); InsufficientStorage, naming what is left, when the space has not got it."""
        need = size - self.credit
        if self.quota is None or need <= self.held:
            return
        more = need - self.held if exact else max(need - self.held, STEP)
        if not self._grant(more) and (exact or not self._grant(need - self.held)):
            raise InsufficientStorage(
                f"space '{self.name}' quota exceeded: {human(size)} would not fit, "
                f"{human(self.left())} left (uploads in flight count); delete files or ask for "
                "a larger quota"
            )

    def _grant(self, more: int) -> bool:
        fits = or_(S.quota_bytes.is_(None), S.used_bytes + S.reserved_bytes + more <= S.quota_bytes)
        statement = (
            update(S)
            .where(S.id == self.space_id, fits)
            .values(reserved_bytes=S.reserved_bytes + more)
        )
        with self.db.session() as session:
            granted = session.connection().execute(statement).rowcount == 1
        if granted:
            self.held += more
        return granted

    def left(self) -> int:
        with self.db.session() as session:
            row = session.execute(
                select(S.quota_bytes, S.used_bytes, S.reserved_bytes).where(S.id == self.space_id)
            ).one()
        quota, used, reserved = (int(v or 0) for v in row)
        return max(0, quota - used - reserved)

    def settle(self, added: int) -> None:
        """The upload is in place: ``added`` bytes more are used; what it held is released."""
        held, self.held = self.held, 0
        with self.db.session() as session:
            session.execute(
                update(S)
                .where(S.id == self.space_id)
                .values(used_bytes=S.used_bytes + added, reserved_bytes=S.reserved_bytes - held)
            )

    def release(self) -> None:
        """The upload failed: give back what it held (safe to call more than once)."""
        held, self.held = self.held, 0
        if held:
            with self.db.session() as session:
                session.execute(
                    update(S)
                    .where(S.id == self.space_id)
                    .values(reserved_bytes=S.reserved_bytes - held)
                )


def replaced_size(target: Path) -> int:
    """The size of the regular file an upload to ``target`` would replace (0: none)."""
    try:
        st = os.lstat(target)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


class Usage:
    """The spaces' usage counters, kept in step with their folders (``store``)."""

    def __init__(self, db: Database, store: SpaceStore) -> None:
        self.db, self.store = db, store

    def start(self) -> None:
        """At start, when no upload is in flight: nothing reserved, every space counted anew,
        and what crashed uploads left in the staging folder removed."""
        with self.db.session() as session:
            names = list(session.scalars(select(S.name)))
            session.execute(update(S).values(reserved_bytes=0))
        self.store.clear_staging()
        self.reconcile(names)

    def reconcile(self, names: Iterable[str]) -> None:
        """Set each space's usage to what its folder holds now (a walk of it)."""
        for name in names:
            folder = self.store.folder(name)
            used = usage(folder)[0] if folder.is_dir() else 0
            with self.db.session() as session:
                session.execute(update(S).where(S.name == name).values(used_bytes=used))

    def freed(self, space_id: int, nbytes: int) -> None:
        """Files of ``nbytes`` were removed from the space by the platform."""
        if nbytes:
            with self.db.session() as session:
                session.execute(
                    update(S).where(S.id == space_id).values(used_bytes=S.used_bytes - nbytes)
                )
