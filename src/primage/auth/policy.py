"""Who may do what: the one place that decides. Routers ask; they never re-decide.

Space roles, from least to most: ``viewer`` (read), ``editor`` (read, write), ``manager`` (read,
write, change membership); the owner and admins may also delete the space. A token's caveats
(space, path prefix, read-only) cut every right down further, whatever the role.
"""

from __future__ import annotations

from enum import StrEnum

from primage.auth.principal import Principal
from primage.db.tables import Space
from primage.errors import Forbidden, SandboxUnavailable


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    MANAGER = "manager"
    OWNER = "owner"


class Right(StrEnum):
    READ = "read"
    WRITE = "write"
    MANAGE = "manage"
    DELETE = "delete"


RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.MANAGER: 3, Role.OWNER: 4}
NEEDS = {
    Right.READ: Role.VIEWER,
    Right.WRITE: Role.EDITOR,
    Right.MANAGE: Role.MANAGER,
    Right.DELETE: Role.OWNER,
}
SHAREABLE_ROLES = (Role.VIEWER, Role.EDITOR, Role.MANAGER)


def role_on(principal: Principal, space: Space) -> Role | None:
    """The caller's highest role on a space, from ownership, direct or group membership."""
    if space.owner_id == principal.user_id or principal.is_admin:
        return Role.OWNER
    roles = [
        Role(m.role)
        for m in space.members
        if (m.subject_kind == "user" and m.subject_id == principal.user_id)
        or (m.subject_kind == "group" and m.subject_id in principal.group_ids)
    ]
    return max(roles, key=RANK.__getitem__, default=None)


def _check_caveats(principal: Principal, space: str, right: Right, paths: tuple[str, ...]) -> None:
    caveats = principal.caveats
    if caveats.space is not None and caveats.space != space:
        raise Forbidden(f"this token is restricted to space '{caveats.space}'")
    if caveats.read_only and right is not Right.READ:
        raise Forbidden(f"this token is read-only; {right} access to space '{space}' needs another")
    if right in (Right.MANAGE, Right.DELETE) and caveats.path_prefix is not None:
        raise Forbidden(f"this token is restricted to path '{caveats.path_prefix}'")
    for path in paths:
        if not caveats.allows_path(path):
            raise Forbidden(f"this token is restricted to path '{caveats.path_prefix}'")


def check_space(principal: Principal, space: Space, right: Right, *paths: str) -> Role:
    """Raise Forbidden naming the missing right unless the caller has it on these paths."""
    _check_caveats(principal, space.name, right, paths)
    role = role_on(principal, space)
    if role is None or RANK[role] < RANK[NEEDS[right]]:
        raise Forbidden(f"you need {right} access to space '{space.name}' (role {NEEDS[right]})")
    return role


def can_list(principal: Principal, space: Space) -> bool:
    caveats = principal.caveats
    if caveats.space is not None and caveats.space != space.name:
        return False
    return role_on(principal, space) is not None


def check_create_space(principal: Principal) -> None:
    if principal.caveats.restricted:
        raise Forbidden("a restricted token cannot create spaces; use an unrestricted token")


def check_admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise Forbidden(f"only platform admins may {what}")
    if principal.caveats.restricted:
        raise Forbidden(f"a restricted token cannot {what}, even an admin's")


def check_share(principal: Principal, space: Space, role: Role) -> None:
    """Sharing needs the manager right; only the owner (or an admin) may appoint managers."""
    mine = check_space(principal, space, Right.MANAGE)
    if role not in SHAREABLE_ROLES:
        raise Forbidden(f"role '{role}' cannot be given; choose viewer, editor or manager")
    if role is Role.MANAGER and mine is not Role.OWNER:
        raise Forbidden(f"only the owner of space '{space.name}' may appoint managers")


def check_executor(principal: Principal, executor: str, groups: list[str] | None) -> None:
    """Running jobs on an executor: its groups' members (admins always), or everyone if open."""
    if groups is None or principal.is_admin or principal.group_names & set(groups):
        return
    raise Forbidden(f"only members of {' or '.join(groups)} may run jobs on executor '{executor}'")


def check_unconfined(principal: Principal, problem: str | None, what: str) -> None:
    """Running a user's command as a process with no sandbox to put it in (``problem`` says why
    none can be made): only admins, who are trusted with the machine; others wait for the fix."""
    if problem is not None and not principal.is_admin:
        raise SandboxUnavailable(f"this server cannot confine {what}: {problem}")


def check_job(principal: Principal, owner_id: int, output_space: Space | None, what: str) -> None:
    """Seeing, cancelling or removing a job: its owner, a manager of its output space, admins.

    Anything but seeing is a change: a read-only token may only see.
    """
    if what != "see" and principal.caveats.read_only:
        raise Forbidden(f"this token is read-only; it cannot {what} jobs")
    if principal.caveats.space is not None and (
        output_space is None or output_space.name != principal.caveats.space
    ):
        raise Forbidden(f"this token is restricted to space '{principal.caveats.space}'")
    if owner_id == principal.user_id or principal.is_admin:
        return
    role = role_on(principal, output_space) if output_space is not None else None
    if role is None or RANK[role] < RANK[Role.MANAGER]:
        raise Forbidden(f"only the job's owner or a manager of its space may {what} it")


def can_see_job(principal: Principal, owner_id: int, output_space: Space | None) -> bool:
    try:
        check_job(principal, owner_id, output_space, "see")
    except Forbidden:
        return False
    return True


REGISTRY_ACTIONS = frozenset({"pull", "push", "delete", "*"})
SHARED_NAMESPACE = "library"  # images everyone may pull; admins publish them


def registry_actions(
    principal: Principal, kind: str, name: str, asked: tuple[str, ...]
) -> tuple[str, ...]:
    """The registry actions granted on ``kind:name``, out of those asked.

    A user pushes and pulls in their own namespace (``alice/…``) and their local groups'
    (``neuro/…``), pulls the shared ``library/…``; admins do anything, the catalog included. A
    read-only token only pulls; a token restricted to a space gets nothing from the registry.
    """
    if principal.caveats.space is not None:
        return ()
    if principal.is_admin:
        allowed = set(REGISTRY_ACTIONS)
    elif kind != "repository":
        allowed = set()
    else:
        namespace = name.split("/", 1)[0] if "/" in name else ""
        if namespace and (namespace == principal.name or namespace in principal.group_names):
            allowed = {"pull", "push", "delete"}
        elif namespace == SHARED_NAMESPACE:
            allowed = {"pull"}
        else:
            allowed = set()
    if principal.caveats.read_only:
        allowed &= {"pull"}
    return tuple(action for action in asked if action in allowed)


def check_open_app(
    principal: Principal, name: str, owner_id: int, who: str, group: str | None, spaces: list[Space]
) -> None:
    """Opening an app through the proxy: its owner, admins, and whom its ``access`` names
    (``members``: those who may read every space it mounts; ``group``: that group's members)."""
    if principal.caveats.space is not None:
        raise Forbidden("a token restricted to a space cannot open apps; use another token")
    if owner_id == principal.user_id or principal.is_admin:
        return
    if who == "members" and spaces and all(role_on(principal, s) for s in spaces):
        return
    if who == "group" and group in principal.group_names:
        return
    allowed = {"owner": "its owner", "members": "members of its spaces", "group": f"group {group}"}
    raise Forbidden(f"app '{name}' is open to {allowed.get(who, 'its owner')} only")


def check_manage_app(principal: Principal, name: str, owner_id: int, what: str) -> None:
    """Seeing an app's details and logs, changing or removing it: its owner and admins; a
    read-only token only sees."""
    if what != "see" and principal.caveats.read_only:
        raise Forbidden(f"this token is read-only; it cannot {what} apps")
    if principal.caveats.space is not None:
        raise Forbidden("a token restricted to a space cannot manage apps")
    if owner_id != principal.user_id and not principal.is_admin:
        raise Forbidden(f"only the owner of app '{name}' may {what} it")


def check_deploy(principal: Principal) -> None:
    if principal.caveats.restricted:
        raise Forbidden("a restricted token cannot deploy apps; use an unrestricted token")
