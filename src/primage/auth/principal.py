"""The authenticated caller of a request and the limits (caveats) of the credential it used."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from primage.db.tables import User


@dataclass(frozen=True)
class Caveats:
    """Restrictions carried by a token. ``None`` means unrestricted on that axis."""

    space: str | None = None
    path_prefix: str | None = None  # normalised: no leading or trailing slash, never empty
    read_only: bool = False
    expires_at: dt.datetime | None = None

    @property
    def restricted(self) -> bool:
        return self.space is not None or self.read_only

    def allows_path(self, path: str) -> bool:
        if self.path_prefix is None:
            return True
        return path == self.path_prefix or path.startswith(self.path_prefix + "/")


@dataclass(frozen=True)
class Principal:
    """A user acting through one credential."""

    user_id: int
    name: str
    is_admin: bool
    group_ids: frozenset[int] = frozenset()
    group_names: frozenset[str] = frozenset()
    token_id: str | None = None
    expires_at: dt.datetime | None = None  # when the credential used stops working
    caveats: Caveats = field(default_factory=Caveats)
    # How the caller proved who they are: "token" (platform token), "oidc:<provider>" (the
    # provider's access token) or "session" (the web login's cookie).
    via: str = "token"
    csrf_token: str | None = field(default=None, repr=False)  # a web session's, for its writes


def of_user(user: User, **credential: Any) -> Principal:
    """A user acting with their groups, through the credential ``credential`` describes
    (token id, expiry, caveats, via…): the one way every kind of login builds its principal."""
    groups = user.groups
    return Principal(
        user_id=user.id,
        name=user.name,
        is_admin=user.is_admin,
        group_ids=frozenset(g.id for g in groups),
        group_names=frozenset(g.name for g in groups),
        **credential,
    )
