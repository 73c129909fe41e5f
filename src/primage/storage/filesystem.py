"""Operations on the files of one space, all through paths checked by ``storage.paths``."""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import stat as stat_mod
from collections.abc import Iterator
from pathlib import Path

from primage.errors import BadRequest, Conflict, NotFound
from primage.models.files import FileInfo
from primage.storage.paths import resolve


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
    """The folder of one space, with the space's name for error messages."""

    def __init__(self, space: str, root: Path) -> None:
        self.space = space
        self.root = root

    def path(self, rel: str) -> tuple[str, Path]:
        return resolve(self.root, rel)

    def _stat(self, rel: str, target: Path) -> os.stat_result:
        try:
            return target.stat()
        except FileNotFoundError:
            raise NotFound(f"no file or folder '{rel}' in space '{self.space}'") from None

    def find(self, path: str) -> tuple[Path, os.stat_result, FileInfo]:
        """The real path, its stat result and its info, resolved once; NotFound if absent."""
        rel, target = self.path(path)
        st = self._stat(rel, target)
        return target, st, file_info(rel, st)

    def stat(self, path: str) -> FileInfo:
        return self.find(path)[2]

    def listdir(self, path: str) -> list[FileInfo]:
        rel, target = self.path(path)
        if not stat_mod.S_ISDIR(self._stat(rel, target).st_mode):
            raise BadRequest(f"'{rel}' in space '{self.space}' is a file, not a folder")
        entries = []
        with os.scandir(target) as it:
            for entry in it:
                child = f"{rel}/{entry.name}" if rel else entry.name
                entries.append(file_info(child, entry.stat(follow_symlinks=False)))
        return sorted(entries, key=lambda e: (e.type != "directory", e.name))

    def walk(self, path: str) -> Iterator[FileInfo]:
        """Every file below ``path``, depth first, without following symlinks."""
        target, st, info = self.find(path)
        if not stat_mod.S_ISDIR(st.st_mode):
            yield info
            return
        root = self.root.resolve()
        for dirpath, dirnames, filenames in os.walk(target):
            dirnames.sort()
            base = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                child = name if base == "." else f"{base}/{name}"
                st = os.lstat(os.path.join(dirpath, name))
                if stat_mod.S_ISREG(st.st_mode):
                    yield file_info(child, st)

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

    def remove(self, path: str, *, recursive: bool) -> None:
        rel, target = self.path(path)
        if not rel:
            raise BadRequest("cannot delete the space's root; delete the space instead")
        st = self._stat(rel, target) if not os.path.islink(target) else target.lstat()
        if stat_mod.S_ISDIR(st.st_mode) and not os.path.islink(target):
            if not recursive and any(target.iterdir()):
                raise Conflict(f"folder '{rel}' is not empty; pass recursive=true to delete it")
            shutil.rmtree(target)
        else:
            target.unlink()


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


def quota_allowance(quota: int | None, files: SpaceFiles, target: os.PathLike[str]) -> int | None:
    """Bytes a write to ``target`` may add: quota minus usage, plus the file it replaces."""
    if quota is None:
        return None
    used, _ = usage(files.root)
    replaced = os.stat(target).st_size if os.path.isfile(target) else 0
    return max(quota - used + replaced, 0)
