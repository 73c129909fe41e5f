"""Streamed, atomic, checksummed uploads.

Bytes go to a temporary file outside every space (so no partial file is ever visible), are
hashed on the way, optionally fsynced, and only then renamed over the target. A failure at any
point removes the temporary file and leaves the old file intact.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from primage.errors import Conflict, InsufficientStorage


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Blocks:
    """Copies a stream of chunks into two preallocated buffers that take turns.

    ``feed`` yields each buffer as it fills; the caller must be done with a block before the
    one after next is yielded (write one block while the other fills). Reusing two buffers
    instead of growing new objects matters on VMs, where touching fresh memory is slow.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffers = (bytearray(size), bytearray(size))
        self._current = self._filled = 0

    def feed(self, chunk: bytes) -> Iterator[memoryview]:
        view = memoryview(chunk)
        while view:
            taken = min(len(view), self.size - self._filled)
            end = self._filled + taken
            self._buffers[self._current][self._filled : end] = view[:taken]
            self._filled, view = end, view[taken:]
            if self._filled == self.size:
                yield memoryview(self._buffers[self._current])
                self._current, self._filled = 1 - self._current, 0

    def rest(self) -> memoryview:
        """What is left in the current buffer at the end of the stream."""
        return memoryview(self._buffers[self._current])[: self._filled]


class Room(Protocol):
    """Room in a space's quota (``storage.quota.Reservation``)."""

    def ensure(self, size: int) -> None: ...
    def settle(self, added: int) -> None: ...
    def release(self) -> None: ...


class AtomicUpload:
    """One upload in progress. Use ``write`` for each chunk, then ``commit`` or ``abort``."""

    def __init__(
        self,
        *,
        space: str,
        staging: Path,
        target: Path,
        room: Room | None,
        fsync: bool,
        overwrite: bool = True,
    ) -> None:
        self.space = space
        self.target = target
        self.overwrite = overwrite
        self.room = room  # the space's quota, reserved as the upload grows (storage.quota)
        self.fsync = fsync
        self.size = 0
        self._hash = hashlib.sha256()
        staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=staging, prefix="upload-")
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=0)

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self.room is not None:
            self.room.ensure(self.size)
        self._hash.update(chunk)
        try:
            self._write_all(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(
                    f"disk full while writing to space '{self.space}' after {human(self.size)}"
                ) from None
            raise

    def _write_all(self, chunk: bytes | memoryview) -> None:
        # An unbuffered write may write less than asked (a disk filling up does exactly that)
        # without raising: write the rest; the next write then reports the real error.
        view = memoryview(chunk)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError(errno.ENOSPC, "no space left on device")
            view = view[written:]

    def commit(self) -> tuple[int, str]:
        """Make the file visible at its target; returns its size and SHA-256."""
        try:
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._tmp, 0o666 & ~current_umask())
            replaced = self._place()
        except BaseException:
            self.abort()
            raise
        if self.room is not None:
            self.room.settle(self.size - replaced)
        return self.size, self._hash.hexdigest()

    def _place(self) -> int:
        """Rename the file into place; the size of the file it replaced (0: none)."""
        name, space = self.target.name, self.space
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"a file stands where a folder is needed for '{name}'") from None
        if self.target.is_dir():
            raise Conflict(f"'{name}' is a folder in space '{space}'")
        if self.overwrite:
            try:
                st = os.lstat(self.target)
                replaced = st.st_size if stat.S_ISREG(st.st_mode) else 0
            except FileNotFoundError:
                replaced = 0
            os.replace(self._tmp, self.target)
            return replaced
        try:  # link, unlike rename, refuses an existing target: no window to lose a file in
            os.link(self._tmp, self.target)
        except FileExistsError:
            raise Conflict(f"'{name}' appeared in space '{space}' during the upload") from None
        self._tmp.unlink()
        return 0

    def abort(self) -> None:
        """Drop the temporary file and what it reserved (safe to call more than once)."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        if self.room is not None:
            self.room.release()


def current_umask() -> int:
    """The process's umask, read without changing it (what a new file's mode would honour)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022
