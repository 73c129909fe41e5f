"""From a provider's identity to a platform user: created at first login, kept in step after.

Each check of a provider's token (or of a web session) calls :func:`admit`:

- someone outside the provider's required groups is refused with 403 naming the groups; if they
  had an account, it is suspended, which stops their platform tokens and sessions too;
- someone inside gets an account at first sight (named after ``preferred_username`` when free),
  their suspension for leaving the group is lifted, their admin flag follows the provider's admin
  groups, and their provider-managed group memberships follow their entitlements. Memberships an
  admin made by hand are never touched.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from primage.auth import audit, entitlements
from primage.auth.oidc import Identity
from primage.auth.principal import Principal, of_user
from primage.config import ProviderSettings
from primage.db.tables import Group, GroupMember, User, utcnow
from primage.db.tables import Identity as IdentityRow
from primage.errors import Forbidden
from primage.storage.paths import NAME_RE

LEFT_GROUP = "not a member of the required group at provider"
SEEN_EVERY = dt.timedelta(minutes=5)


def _record(session: Session, who: User, action: str, target: str, /, **detail: object) -> None:
    """An audit entry for a change the provider's word made, with the user as its actor."""
    actor = Principal(user_id=who.id, name=who.name, is_admin=who.is_admin)
    audit.record(session, actor, action, target, **detail)


def _free_name(session: Session, identity: Identity) -> str:
    """A user name from the provider's username (or subject) that nobody has yet."""
    wanted = identity.username or identity.subject.split("@")[0]
    base = re.sub(r"[^a-z0-9._-]+", "-", wanted.lower()).strip("-._")[:48] or "user"
    if not NAME_RE.fullmatch(base):
        base = f"u-{base}"[:48]
    taken = set(session.scalars(select(User.name).where(User.name.startswith(base))))
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


def provider_group(session: Session, name: str) -> Group:
    """A provider's group, created on first mention: by a member's login, or by sharing a space
    with it before any member has logged in."""
    group = session.scalar(select(Group).where(Group.name == name))
    if group is None:
        group = Group(name=name)
        session.add(group)
        session.flush()
    return group


def _sync_groups(session: Session, user: User, identity: Identity) -> None:
    wanted = entitlements.group_names(identity.entitlements)
    managed = {
        member.group_id: member
        for member in session.scalars(
            select(GroupMember).where(
                GroupMember.user_id == user.id, GroupMember.provider == identity.provider
            )
        )
    }
    have = {row.name: row for row in session.scalars(select(Group).where(Group.id.in_(managed)))}
    for name in sorted(set(have) - wanted):
        session.delete(managed[have[name].id])
        _record(
            session,
            user,
            "group.remove",
            f"group:{name}",
            user=user.name,
            provider=identity.provider,
        )
    local = {g.id for g in user.groups} - set(managed)
    for name in sorted(wanted - set(have)):
        group = provider_group(session, name)
        if group.id in local:
            continue  # an admin added them by hand; leave that membership alone
        session.add(GroupMember(group_id=group.id, user_id=user.id, provider=identity.provider))
        _record(
            session,
            user,
            "group.add",
            f"group:{name}",
            user=user.name,
            provider=identity.provider,
        )
    session.flush()
    session.expire(user, ["groups"])


def admit(
    session: Session, provider: ProviderSettings, identity: Identity, via: str
) -> Principal | Forbidden:
    """The principal for a verified identity, or the refusal if the provider's groups say no.

    A refusal is returned rather than raised so that the suspension it records is committed.
    """
    link = session.get(IdentityRow, (identity.provider, identity.subject))
    required = provider.required_groups
    if required and not entitlements.holds_any(identity.entitlements, required):
        if link is not None and link.user.suspended_reason is None:
            link.user.suspended_reason = f"{LEFT_GROUP} '{provider.name}'"
            _record(
                session,
                link.user,
                "user.suspend",
                f"user:{link.user.name}",
                reason="left the required group",
                provider=provider.name,
            )
        return Forbidden(
            f"you are not a member of the group this platform requires ({' or '.join(required)} "
            f"at provider '{provider.name}'); ask the group's managers to add you"
        )
    if link is None:
        user = User(name=_free_name(session, identity))
        session.add(user)
        session.flush()
        link = IdentityRow(
            provider=identity.provider, subject=identity.subject, user=user, seen_at=utcnow()
        )
        session.add(link)
        _record(
            session,
            user,
            "user.create",
            f"user:{user.name}",
            provider=provider.name,
            subject=identity.subject,
        )
    user = link.user
    if user.suspended_reason is not None:
        if not user.suspended_reason.startswith(LEFT_GROUP):
            return Forbidden(f"account '{user.name}' is suspended: {user.suspended_reason}")
        user.suspended_reason = None
        _record(session, user, "user.reinstate", f"user:{user.name}", provider=provider.name)
    if provider.admin_groups:
        user.is_admin = entitlements.holds_any(identity.entitlements, provider.admin_groups)
    now, seen = utcnow(), (identity.email, identity.display_name)
    if (link.email, link.display_name) != seen or now - link.seen_at > SEEN_EVERY:
        link.email, link.display_name, link.seen_at = *seen, now  # not a write per request
    _sync_groups(session, user, identity)
    return of_user(user, expires_at=identity.expires_at, via=via)
