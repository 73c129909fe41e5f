"""Pulling an image from the platform registry on a user's behalf, at submission or deployment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from primage.auth import tokens
from primage.auth.principal import Caveats, Principal
from primage.db import tables
from primage.executors.base import Pull
from primage.server.state import Platform


@contextmanager
def registry_pull(state: Platform, caller: Principal, image: str | None) -> Iterator[Pull | None]:
    """Credentials to pull ``image`` from the platform registry as the caller: a read-only
    platform token of ten minutes, revoked once the job or app is stored. None for other images."""
    registry = state.settings.registry_url
    host = urlsplit(registry).netloc if registry else None
    if image is None or host is None or not image.startswith(host + "/"):
        yield None
        return
    with state.db.session() as session:
        user = session.get(tables.User, caller.user_id)
        assert user is not None
        row, secret = tokens.issue(
            session,
            user,
            name="image-pull",
            lifetime=dt.timedelta(minutes=10),
            caveats=Caveats(read_only=True),
        )
        token_id = row.id
    try:
        yield Pull((caller.name, secret), tls_verify=urlsplit(str(registry)).scheme == "https")
    finally:
        with state.db.session() as session:
            token = session.get(tables.Token, token_id)
            if token is not None:
                tokens.revoke(session, token)
