"""The storage root: one folder per space, plus a staging area for uploads in flight."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from pathlib import Path

from primage.errors import Conflict
from primage.storage.filesystem import SpaceFiles
from primage.storage.paths import check_name

STAGING = ".staging"  # uploads in flight; same filesystem as the spaces so rename is atomic
TRASH = ".trash"  # spaces being deleted


class SpaceStore:
    """The spaces' folders. With ``group`` (the sandbox's, when the server is root), each space
    belongs to that group, setgid and group-writable, so that what the server and sandboxed tasks
    write there stays readable and writable by both (the server runs with umask 002 then)."""

    def __init__(self, root: Path, group: int | None = None) -> None:
        self.root = root
        self.group = group
        self.staging = root / STAGING
        root.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        self._empty_trash()
        if group is not None:
            self._share_existing(group)

    def folder(self, name: str) -> Path:
        return self.root / check_name("space", name)

    def files(self, name: str, folder: str | None = None) -> SpaceFiles:
        """The space's files; ``folder``: the only folder of it the caller may reach."""
        return SpaceFiles(name, self.folder(name), folder)

    def create(self, name: str) -> None:
        folder = self.folder(name)
        try:
            folder.mkdir(mode=0o755)
        except FileExistsError:
            raise Conflict(
                f"a folder for space '{name}' already exists under {self.root}; move it away"
            ) from None
        if self.group is not None:
            share(folder, self.group)

    def _share_existing(self, group: int) -> None:
        """Spaces made before the sandbox was on: give them to its group, once."""
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            if st.st_gid == group and st.st_mode & stat.S_ISGID:
                continue
            share(Path(entry.path), group)
            for dirpath, dirnames, filenames in os.walk(entry.path):
                for name in dirnames + filenames:
                    share(Path(dirpath, name), group)

    def destroy(self, name: str) -> None:
        """Delete a space's folder: renamed out of sight at once, then removed."""
        folder = self.folder(name)
        if not folder.exists():
            return
        trash = self.root / TRASH / f"{name}-{uuid.uuid4().hex}"
        trash.parent.mkdir(exist_ok=True)
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _empty_trash(self) -> None:
        """Finish deletions a crash interrupted."""
        shutil.rmtree(self.root / TRASH, ignore_errors=True)

    def clear_staging(self) -> None:
        """Remove what uploads left in the staging folder: only when none is in flight (at
        start: one server per database, see ``storage.quota``)."""
        for leftover in self.staging.iterdir():
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def share(path: Path, group: int) -> None:
    """``path`` (never a link's target) to ``group``, group-writable; folders setgid, so that
    what is made in them belongs to the group too."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return
    os.chown(path, -1, group, follow_symlinks=False)
    extra = stat.S_IWGRP | (stat.S_ISGID | stat.S_IXGRP if stat.S_ISDIR(st.st_mode) else 0)
    os.chmod(path, stat.S_IMODE(st.st_mode) | extra)
