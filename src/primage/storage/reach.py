"""One way to reach a file in a space: walked from the space's root, immune to links and races.

A path is walked component by component from a descriptor of the space's folder (``dir_fd``,
``O_PATH | O_NOFOLLOW``), so a folder swapped for a link meanwhile is never followed. A symbolic
link met on the way is followed only while its target stays in the same space (relative, or
absolute into the space's own folder); the path it resolves to must lie in the caller's folder
(a folder-confined token's), so a link cannot lead such a token out. The result is an open
descriptor, and callers serve *that* (``/proc/self/fd/N``, ``os.fwalk``), never the path again:
no check-then-open by name.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from primage.errors import BadRequest, Conflict, Forbidden, NotFound, UnsafePath
from primage.storage.paths import normalise_relpath

MAX_LINKS = 40  # as the kernel's own limit: a loop of links ends here
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def allows(folder: str | None, rel: str) -> bool:
    """Is ``rel`` inside ``folder`` (None: the whole space)?"""
    return folder is None or rel == folder or rel.startswith(folder + "/")


def check_folder(space: str, folder: str | None, rel: str, path: str) -> None:
    if not allows(folder, rel):
        via = f" (through a link: it is '{rel}')" if rel != normalise_relpath(path) else ""
        raise Forbidden(f"this token is restricted to path '{folder}'; '{path}' is outside it{via}")


def walk(
    space: str, root: Path, path: str, folder: str | None = None, *, create: bool = False
) -> tuple[str, int]:
    """The resolved path of ``path`` in the space and an ``O_PATH`` descriptor of it (the
    caller closes it). UnsafePath for a link out of the space, Forbidden outside ``folder``,
    NotFound for what is not there; with ``create``, missing folders are made on the way (each
    inside ``folder``, or above it on the way there)."""
    parts = [p for p in normalise_relpath(path).split("/") if p]
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[int, str]] = []  # the folders walked into, each a descriptor
    hops = 0
    try:
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":  # only from a link's target
                if not stack:
                    raise UnsafePath(f"'{path}' leads outside space '{space}' through a link")
                os.close(stack.pop()[0])
                continue
            here = stack[-1][0] if stack else root_fd
            try:
                if create:
                    make_folder(space, folder, [n for _, n in stack], name, here, path)
                fd = os.open(name, PATH_FLAGS, dir_fd=here)
            except (FileNotFoundError, NotADirectoryError):
                missing = normalise_relpath(path)
                raise NotFound(f"no file or folder '{missing}' in space '{space}'") from None
            except OSError as exc:  # changed while it was being walked
                changed = f"'{path}' changed while it was read ({exc.strerror}); try again"
                raise Conflict(changed) from None
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink("", dir_fd=fd)  # the link opened, not the name again
                finally:
                    os.close(fd)
                hops += 1
                if hops > MAX_LINKS:
                    raise UnsafePath(f"'{path}' goes through more than {MAX_LINKS} links")
                if target.startswith("/"):
                    inner = inside_root(root, target)
                    if inner is None:
                        raise UnsafePath(f"'{path}' is a link that leads outside space '{space}'")
                    while stack:
                        os.close(stack.pop()[0])
                    target = inner
                parts = [*target.split("/"), *parts]
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise NotFound(f"'{name}' in '{path}' is a file, not a folder")
            stack.append((fd, name))
        rel = "/".join(name for _, name in stack)
        check_folder(space, folder, rel, path)
        found = stack.pop()[0] if stack else os.dup(root_fd)
        return rel, found
    finally:
        for fd, _ in stack:
            os.close(fd)
        os.close(root_fd)


def make_folder(
    space: str, folder: str | None, above: list[str], name: str, dir_fd: int, path: str
) -> None:
    """``name`` as a folder in the open folder ``dir_fd`` (at ``above``), unless it exists."""
    made = "/".join([*above, name])
    if not (allows(folder, made) or (folder is not None and allows(made, folder))):
        check_folder(space, folder, made, path)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, dir_fd=dir_fd)


def parent_of(
    space: str, root: Path, path: str, folder: str | None = None, *, create: bool = False
) -> tuple[str, int, str]:
    """Where a write of ``path`` lands: its resolved path, an ``O_PATH`` descriptor of its
    folder (the caller closes it) and its name there, to rename, link or unlink relative to
    that descriptor: a folder swapped for a link meanwhile is never followed."""
    rel = normalise_relpath(path)
    if not rel:
        raise BadRequest("give a path inside the space, not the space itself")
    head, _, name = rel.rpartition("/")
    resolved, fd = walk(space, root, head, folder if head else None, create=create)
    target = f"{resolved}/{name}" if resolved else name
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise NotFound(f"'{resolved}' in space '{space}' is a file, not a folder")
        check_folder(space, folder, target, path)
    except (Forbidden, NotFound):
        os.close(fd)
        raise
    return target, fd, name


def inside_root(root: Path, target: str) -> str | None:
    """An absolute link target as a path inside the space, or None when it leads out."""
    real = os.path.realpath(root)
    if target == real or target.startswith(real + "/"):
        return target[len(real) :].lstrip("/")
    return None


def open_file(space: str, root: Path, path: str, folder: str | None = None) -> tuple[str, int]:
    """A regular file, opened for reading: its resolved path and descriptor (caller closes)."""
    rel, found = walk(space, root, path, folder)
    try:
        mode = os.fstat(found).st_mode
        if stat.S_ISDIR(mode):
            raise BadRequest(
                f"'{rel or '/'}' is a folder; list it with GET /spaces/{space}/files/{rel}"
            )
        if not stat.S_ISREG(mode):
            raise BadRequest(f"'{rel}' in space '{space}' is not a regular file")
        return rel, os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(found)


def open_folder(space: str, root: Path, path: str, folder: str | None = None) -> tuple[str, int]:
    """A folder, opened for listing and walking (``os.scandir``, ``os.fwalk``)."""
    rel, found = walk(space, root, path, folder)
    try:
        if not stat.S_ISDIR(os.fstat(found).st_mode):
            raise BadRequest(f"'{rel}' in space '{space}' is a file, not a folder")
        return rel, os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(found)


def open_below(dir_fd: int, name: str) -> int | None:
    """A regular file ``name`` in an open folder, opened for reading; None for anything else
    (a link is never followed, a FIFO never waited on)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:  # a link (ELOOP), or gone meanwhile
        return None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    return None


def identity(space: str, root: Path, folder: str) -> tuple[str, tuple[int, int]]:
    """A folder of a space to mount: its real path (links inside the space resolved) and its
    (device, inode), which what is mounted there must still have (``executors/local/cells``)."""
    rel, fd = walk(space, root, folder)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise NotFound(f"'{rel}' in space '{space}' is a file, not a folder to mount")
    return f"{os.path.realpath(root)}/{rel}", (st.st_dev, st.st_ino)
