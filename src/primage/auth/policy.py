"""Who may do what: the one place that decides. Routers ask; they never re-decide.

Space roles, from least to most: ``viewer`` (read), ``editor`` (read, write), ``manager`` (read,
write, change membership); the owner and admins may also delete the space. A token's caveats
(space, path prefix, read-only) cut every right down further, whatever the role.
"""

from __future__ import annotations

from enum import StrEnum

from primage.auth.principal import Caveats, Principal
from primage.db.tables import Space
from primage.errors import Forbidden, SandboxUnavailable
from primage.models.jobs import JobSpec, Mount


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


def folder_in(principal: Principal, space: str) -> str | None:
    """The one folder of ``space`` the caller's token may reach (None: all of it)."""
    caveats = principal.caveats
    return caveats.path_prefix if caveats.space == space else None


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


def check_submit(principal: Principal) -> None:
    """Submitting a job runs commands that write: a read-only token cannot."""
    if principal.caveats.read_only:
        raise Forbidden("this token is read-only; it cannot submit jobs; use another token")


def confine(principal: Principal, spec: JobSpec) -> JobSpec:
    """The job a folder-confined token may run: every mount of its space narrowed to its
    folder (a mount of a folder inside it stays; one outside it is refused), so that its
    tasks see that folder only. Other tokens' jobs are left as they are."""
    space, prefix = principal.caveats.space, principal.caveats.path_prefix
    mounts = spec.mounts()
    if space is None or prefix is None or space not in mounts:
        return spec
    named = {m.name: m for m in spec.spaces}
    mine = named.get(space)
    if mine is not None and mine.folder is not None:
        if not principal.caveats.allows_path(mine.folder):
            raise Forbidden(f"this token is restricted to path '{prefix}' of space '{space}'")
        return spec
    narrowed = Mount(name=space, folder=prefix, read_only=mounts[space])
    others = [m for m in spec.spaces if m.name != space]
    return spec.model_copy(update={"spaces": [*others, narrowed]})


def check_job(
    principal: Principal,
    owner_id: int,
    output_space: Space | None,
    what: str,
    confinement: tuple[str | None, str | None] = (None, None),
) -> None:
    """Seeing, cancelling or removing a job: its owner, a manager of its output space, admins.

    Anything but seeing is a change: a read-only token may only see, and a token confined to a
    space (or a folder) changes only jobs that were submitted with that ``confinement`` or a
    narrower one: a folder token cannot cancel the jobs its owner ran with a full token.
    """
    caveats = principal.caveats
    if what != "see" and caveats.read_only:
        raise Forbidden(f"this token is read-only; it cannot {what} jobs")
    if caveats.space is not None and (output_space is None or output_space.name != caveats.space):
        raise Forbidden(f"this token is restricted to space '{caveats.space}'")
    job_space, job_path = confinement
    if what != "see" and caveats.space is not None:
        within = job_space == caveats.space and (
            caveats.path_prefix is None or (job_path is not None and caveats.allows_path(job_path))
        )
        if not within:
            raise Forbidden(
                f"this token is restricted to {confined_to(caveats)}; the job was submitted "
                f"with wider rights, so only a token with them may {what} it"
            )
    if owner_id == principal.user_id or principal.is_admin:
        return
    role = role_on(principal, output_space) if output_space is not None else None
    if role is None or RANK[role] < RANK[Role.MANAGER]:
        raise Forbidden(f"only the job's owner or a manager of its space may {what} it")


def confined_to(caveats: Caveats) -> str:
    where = f"space '{caveats.space}'"
    return f"path '{caveats.path_prefix}' of {where}" if caveats.path_prefix else where


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
    principal: Principal,
    name: str,
    owner_id: int,
    who: str,
    group: str | None,
    spaces: list[tuple[Space, bool]],
) -> None:
    """Opening an app through the proxy: its owner, admins, and whom its ``access`` names.

    ``members``: those who may do to every space it mounts what the app can (``spaces``: each
    with its read-only flag): an app that writes a space opens only for its writers, so a viewer
    cannot write through it; viewers get in where every mount is read-only. ``group``: that
    group's members.
    """
    check_beyond_spaces(principal, "open apps")
    if owner_id == principal.user_id or principal.is_admin:
        return
    if who == "members" and spaces and all(may_use(principal, s, ro) for s, ro in spaces):
        return
    if who == "group" and group in principal.group_names:
        return
    allowed = {
        "owner": "its owner",
        "members": "those who may read (or, where it writes them, write) its spaces",
        "group": f"group {group}",
    }
    raise Forbidden(f"app '{name}' is open to {allowed.get(who, 'its owner')} only")


def may_use(principal: Principal, space: Space, read_only: bool) -> bool:
    role = role_on(principal, space)
    needed = NEEDS[Right.READ if read_only else Right.WRITE]
    return role is not None and RANK[role] >= RANK[needed]


def check_manage_app(principal: Principal, name: str, owner_id: int, what: str) -> None:
    """Seeing an app's details and logs, changing or removing it: its owner and admins; a
    read-only token only sees."""
    if what != "see" and principal.caveats.read_only:
        raise Forbidden(f"this token is read-only; it cannot {what} apps")
    check_beyond_spaces(principal, "manage apps")
    if owner_id != principal.user_id and not principal.is_admin:
        raise Forbidden(f"only the owner of app '{name}' may {what} it")


def check_beyond_spaces(principal: Principal, what: str) -> None:
    """Apps and builds belong to no one space: a token confined to a space reaches none."""
    if principal.caveats.space is not None:
        raise Forbidden(f"a token restricted to a space cannot {what}; use another token")


def check_deploy(principal: Principal) -> None:
    if principal.caveats.restricted:
        raise Forbidden("a restricted token cannot deploy apps; use an unrestricted token")
