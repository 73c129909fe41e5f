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
from collections.abc import Callable, Iterator
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


Target = Callable[[], tuple[int, str]]  # an open folder (the caller closes it) and a name in it


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
        target: Target,
        room: Room | None,
        fsync: bool,
        overwrite: bool = True,
    ) -> None:
        self.space = space
        self.target = target  # where it lands, walked to again when it does
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

    def commit(self) -> tuple[int, str, os.stat_result]:
        """Make the file visible at its target; its size, SHA-256 and what it is in place."""
        try:
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._tmp, 0o666 & ~current_umask())
            folder, name = self.target()  # walked now, from the space's root: no link followed
            try:
                replaced = self._place(folder, name)
                placed = os.stat(name, dir_fd=folder, follow_symlinks=False)
            finally:
                os.close(folder)
        except BaseException:
            self.abort()
            raise
        if self.room is not None:
            self.room.settle(self.size - replaced)
        return self.size, self._hash.hexdigest(), placed

    def _place(self, folder: int, name: str) -> int:
        """Rename the file to ``name`` in the open ``folder``; the size of what it replaced."""
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise Conflict(f"'{name}' is a folder in space '{self.space}'")
        if self.overwrite:
            os.replace(self._tmp, name, dst_dir_fd=folder)  # a link there is replaced, not followed
            return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0
        try:  # link, unlike rename, refuses an existing target: no window to lose a file in
            os.link(self._tmp, name, dst_dir_fd=folder, follow_symlinks=False)
        except FileExistsError:
            raise Conflict(f"'{name}' appeared in space '{self.space}' during the upload") from None
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
