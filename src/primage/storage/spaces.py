"""The storage root: one folder per space, plus a staging area for uploads in flight."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

from primage.errors import Conflict
from primage.storage.filesystem import SpaceFiles
from primage.storage.paths import check_name

STAGING = ".staging"  # uploads in flight; same filesystem as the spaces so rename is atomic
TRASH = ".trash"  # spaces being deleted
STALE_AFTER = 3600  # seconds without a write after which a staged upload is abandoned


class SpaceStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / STAGING
        root.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        self._empty_trash()

    def folder(self, name: str) -> Path:
        return self.root / check_name("space", name)

    def files(self, name: str) -> SpaceFiles:
        return SpaceFiles(name, self.folder(name))

    def create(self, name: str) -> None:
        try:
            self.folder(name).mkdir(mode=0o755)
        except FileExistsError:
            raise Conflict(
                f"a folder for space '{name}' already exists under {self.root}; move it away"
            ) from None

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
        """Finish deletions a crash interrupted; clear uploads a crash left half-written.

        An upload in flight (perhaps another server's, on a shared storage root) is written to
        all the time, so only staged files untouched for ``STALE_AFTER`` seconds are removed.
        """
        shutil.rmtree(self.root / TRASH, ignore_errors=True)
        cutoff = time.time() - STALE_AFTER
        for leftover in self.staging.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
