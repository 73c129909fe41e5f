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

    def listdir(self, path: str) -> list[FileInfo]:
        rel = normalise_relpath(path)
        _, fd = reach.open_folder(self.space, self.root, path, self.folder)
        entries = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    with contextlib.suppress(FileNotFoundError):  # gone while listed
                        entries.append(file_info(child, entry.stat(follow_symlinks=False)))
        finally:
            os.close(fd)
        return sorted(entries, key=lambda e: (e.type != "directory", e.name))

    def walk(self, path: str) -> Iterator[FileInfo]:
        """Every file below ``path``, depth first, without following symlinks."""
        st, info = self.find(path)
        if not stat_mod.S_ISDIR(st.st_mode):
            yield info
            return
        rel = normalise_relpath(path)
        _, fd = reach.open_folder(self.space, self.root, path, self.folder)
        try:
            for current, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=fd):
                dirnames.sort()
                below = current.removeprefix(".").strip("/")
                base = "/".join(p for p in (rel, below) if p)
                for name in sorted(filenames):
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:  # gone while listed
                        continue
                    if stat_mod.S_ISREG(st.st_mode):
                        yield file_info(f"{base}/{name}" if base else name, st)
        finally:
            os.close(fd)

    def open_folder(self, path: str) -> int:
        """A folder opened for walking (the caller closes it): a tar of it, say."""
        return reach.open_folder(self.space, self.root, path, self.folder)[1]

    def _stat(self, rel: str, target: Path) -> os.stat_result:
        try:
            return target.stat()
        except FileNotFoundError:
            raise NotFound(f"no file or folder '{rel}' in space '{self.space}'") from None

    def mkdir(self, path: str, *, parents: bool) -> FileInfo:
        rel, target = self.path(path)
        if not rel:
            raise BadRequest("the space's root folder always exists")
        try:
            if parents:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.mkdir()
        except FileExistsError:
            raise Conflict(f"'{rel}' already exists in space '{self.space}'") from None
        except FileNotFoundError:
            raise NotFound(f"parent folder of '{rel}' does not exist; use parents=true") from None
        except NotADirectoryError:
            raise Conflict(f"a file stands in the way of folder '{rel}'") from None
        return file_info(rel, target.stat())

    def move(self, source: str, destination: str, *, overwrite: bool) -> FileInfo:
        src_rel, src = self.path(source)
        dst_rel, dst = self.path(destination)
        if not src_rel or not dst_rel:
            raise BadRequest("the space's root folder cannot be moved or replaced")
        self._stat(src_rel, src)
        if dst_rel == src_rel or dst_rel.startswith(src_rel + "/"):
            raise BadRequest(f"cannot move '{src_rel}' into itself")
        if os.path.lexists(dst) and not overwrite:
            raise Conflict(f"'{dst_rel}' already exists; pass overwrite=true to replace it")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.ENOTDIR, errno.EEXIST):
                raise Conflict(f"cannot replace '{dst_rel}': {exc.strerror}") from None
            raise
        return file_info(dst_rel, dst.lstat())

    def remove(self, path: str, *, recursive: bool) -> int:
        """Delete a file, a link or a folder; the bytes of regular files that it freed."""
        rel, target = self.path(path)
        if not rel:
            raise BadRequest("cannot delete the space's root; delete the space instead")
        st = self._stat(rel, target) if not os.path.islink(target) else target.lstat()
        if stat_mod.S_ISDIR(st.st_mode) and not os.path.islink(target):
            if not recursive and any(target.iterdir()):
                raise Conflict(f"folder '{rel}' is not empty; pass recursive=true to delete it")
            freed, _ = usage(target)
            shutil.rmtree(target)
            return freed
        target.unlink()
        return st.st_size if stat_mod.S_ISREG(st.st_mode) else 0


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
