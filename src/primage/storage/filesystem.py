"""Operations on the files of one space, all through paths checked by ``storage.paths``."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import shutil
import stat as stat_mod
from collections.abc import Iterator
from pathlib import Path

from primage.errors import BadRequest, Conflict, NotFound
from primage.models.files import FileInfo
from primage.storage import reach
from primage.storage.paths import normalise_relpath, resolve


def _kind(mode: int) -> str:
    if stat_mod.S_ISREG(mode):
        return "file"
    if stat_mod.S_ISDIR(mode):
        return "directory"
    if stat_mod.S_ISLNK(mode):
        return "symlink"
    return "other"


def file_info(rel: str, st: os.stat_result) -> FileInfo:
    kind = _kind(st.st_mode)
    return FileInfo(
        path=rel,
        name=rel.rsplit("/", 1)[-1],
        type=kind,
        size=st.st_size if kind == "file" else 0,
        modified=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC),
    )


class SpaceFiles:
    """The folder of one space, with the space's name for error messages; ``folder``: the one
    folder the caller may reach (a folder-confined token's), checked on resolved paths.

    Reads go through :mod:`primage.storage.reach` (walked from the space's root, links followed
    only inside the space and the folder, the opened descriptor served); writes resolve their
    path once through :func:`primage.storage.paths.resolve`, then check the folder on it.
    """

    def __init__(self, space: str, root: Path, folder: str | None = None) -> None:
        self.space = space
        self.root = root
        self.folder = folder

    def path(self, rel: str) -> tuple[str, Path]:
        """A path to write: normalised, and its real location, inside the space and folder."""
        normal, target = resolve(self.root, rel)
        real = os.path.relpath(target, self.root.resolve())
        reach.check_folder(self.space, self.folder, "" if real == "." else real, rel)
        return normal, target

    def find(self, path: str) -> tuple[os.stat_result, FileInfo]:
        """What ``path`` is (a link: what it leads to, if it may be reached); NotFound if absent."""
        _, fd = reach.walk(self.space, self.root, path, self.folder)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return st, file_info(normalise_relpath(path), st)

    def stat(self, path: str) -> FileInfo:
        return self.find(path)[1]

    def open(self, path: str) -> tuple[FileInfo, int]:
        """A file opened for reading (the caller closes it) and what it is."""
        _, fd = reach.open_file(self.space, self.root, path, self.folder)
        return file_info(normalise_relpath(path), os.fstat(fd)), fd

    def listdir(self, path: str) -> list[tuple[os.stat_result, FileInfo]]:
        """A folder's entries, folders first, each with its stat (for recorded checksums)."""
        rel = normalise_relpath(path)
        _, fd = reach.open_folder(self.space, self.root, path, self.folder)
        entries = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    with contextlib.suppress(FileNotFoundError):  # gone while listed
                        st = entry.stat(follow_symlinks=False)
                        entries.append((st, file_info(child, st)))
        finally:
            os.close(fd)
        return sorted(entries, key=lambda e: (e[1].type != "directory", e[1].name))

    def walk(self, path: str) -> Iterator[tuple[os.stat_result, FileInfo]]:
        """Every folder and file below ``path`` (a folder before what it holds, empty ones too),
        depth first, without following symlinks; a file walks itself."""
        st, info = self.find(path)
        if not stat_mod.S_ISDIR(st.st_mode):
            yield st, info
            return
        rel = normalise_relpath(path)
        _, fd = reach.open_folder(self.space, self.root, path, self.folder)
        try:
            for current, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=fd):
                dirnames.sort()
                below = current.removeprefix(".").strip("/")
                base = "/".join(p for p in (rel, below) if p)
                for name in (*dirnames, *sorted(filenames)):
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:  # gone while listed
                        continue
                    if stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode):
                        yield st, file_info(f"{base}/{name}" if base else name, st)
        finally:
            os.close(fd)

    def target(self, path: str) -> tuple[int, str]:
        """Where a write of ``path`` lands, walked from the space's root (missing folders made):
        an open descriptor of its folder, which the caller closes, and its name there. A file
        stands in the way of a folder: Conflict."""
        try:
            _, fd, name = reach.parent_of(self.space, self.root, path, self.folder, create=True)
        except NotFound:
            raise Conflict(f"a file stands where a folder is needed for '{path}'") from None
        return fd, name

    def open_folder(self, path: str) -> int:
        """A folder opened for walking (the caller closes it): a tar of it, say."""
        return reach.open_folder(self.space, self.root, path, self.folder)[1]

    def mkdir(self, path: str, *, parents: bool) -> FileInfo:
        """Make a folder (and, with ``parents``, those above it), walked from the space's root."""
        rel = normalise_relpath(path)
        if not rel:
            raise BadRequest("the space's root folder always exists")
        try:
            if parents:
                _, fd = reach.walk(self.space, self.root, rel, self.folder, create=True)
                with _closing(fd):
                    st = os.fstat(fd)
                if not stat_mod.S_ISDIR(st.st_mode):
                    raise Conflict(f"a file stands in the way of folder '{rel}'")
                return file_info(rel, st)
            _, parent, name = reach.parent_of(self.space, self.root, rel, self.folder)
            with _closing(parent):
                os.mkdir(name, dir_fd=parent)
                return file_info(rel, os.stat(name, dir_fd=parent, follow_symlinks=False))
        except FileExistsError:
            raise Conflict(f"'{rel}' already exists in space '{self.space}'") from None
        except NotFound:
            raise NotFound(f"parent folder of '{rel}' does not exist; use parents=true") from None

    def move(
        self, source: str, destination: str, *, overwrite: bool, to: SpaceFiles | None = None
    ) -> FileInfo:
        """Move or rename (into the space ``to``, default this one), both ends walked from their
        space's root: no link on the way is followed, and a link that is moved moves as it is."""
        to = to or self
        src_rel, dst_rel = normalise_relpath(source), normalise_relpath(destination)
        if not src_rel or not dst_rel:
            raise BadRequest("the space's root folder cannot be moved or replaced")
        if to is self and (dst_rel == src_rel or dst_rel.startswith(src_rel + "/")):
            raise BadRequest(f"cannot move '{src_rel}' into itself")
        _, src_dir, src_name = reach.parent_of(self.space, self.root, src_rel, self.folder)
        with _closing(src_dir):
            try:
                os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"no file or folder '{src_rel}' in space '{self.space}'") from None
            dst_dir, dst_name = to.target(dst_rel)
            with _closing(dst_dir):
                if not overwrite and _exists(dst_name, dst_dir):
                    raise Conflict(
                        f"'{dst_rel}' already exists; replace it with overwrite=true "
                        "(primage mv --overwrite)"
                    )
                try:
                    os.replace(src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
                except OSError as exc:
                    if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.ENOTDIR, errno.EEXIST):
                        raise Conflict(f"cannot replace '{dst_rel}': {exc.strerror}") from None
                    raise
                moved = os.stat(dst_name, dir_fd=dst_dir, follow_symlinks=False)
        return file_info(dst_rel, moved)

    def copy_file(self, source: str, destination: str, to: SpaceFiles | None = None) -> None:
        """Copy one file (into the space ``to``, default this one): read through what
        :mod:`~primage.storage.reach` opened, written with ``O_NOFOLLOW`` in the walked folder."""
        _, src = reach.open_file(self.space, self.root, source, self.folder)
        with _closing(src):
            folder, name = (to or self).target(destination)
            with _closing(folder):
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    dst = os.open(name, flags, 0o666, dir_fd=folder)
                except IsADirectoryError:
                    raise Conflict(f"'{destination}' is a folder") from None
                except OSError as exc:  # ELOOP: a link stands there, and is not followed
                    raise Conflict(f"cannot write '{destination}': {exc.strerror}") from None
                with _closing(dst):
                    size = os.fstat(src).st_size
                    while size > 0 and (sent := os.sendfile(dst, src, None, size)):
                        size -= sent
                    shutil.copystat(f"/proc/self/fd/{src}", f"/proc/self/fd/{dst}")

    def remove(self, path: str, *, recursive: bool) -> int:
        """Delete a file, a link or a folder, walked from the space's root (a link is removed,
        never followed); the bytes of regular files that it freed."""
        rel = normalise_relpath(path)
        if not rel:
            raise BadRequest("cannot delete the space's root; delete the space instead")
        _, parent, name = reach.parent_of(self.space, self.root, rel, self.folder)
        with _closing(parent):
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"no file or folder '{rel}' in space '{self.space}'") from None
            if not stat_mod.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=parent)
                return st.st_size if stat_mod.S_ISREG(st.st_mode) else 0
            folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
            with _closing(folder):
                if not recursive and os.listdir(folder):
                    raise Conflict(
                        f"folder '{rel}' is not empty; delete it with its content: recursive=true "
                        "(primage rm -r)"
                    )
                freed = regular_bytes(folder)
            shutil.rmtree(name, dir_fd=parent)
            return freed


def regular_bytes(folder_fd: int) -> int:
    """The bytes of the regular files below an open folder (links not followed)."""
    total = 0
    for _, _, names, dir_fd in os.fwalk(".", dir_fd=folder_fd):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # gone meanwhile
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                total += st.st_size if stat_mod.S_ISREG(st.st_mode) else 0
    return total


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def usage(root: Path) -> tuple[int, int]:
    """Bytes and number of regular files below ``root``."""
    total = count = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat_mod.S_ISREG(st.st_mode):
                total += st.st_size
                count += 1
    return total, count
