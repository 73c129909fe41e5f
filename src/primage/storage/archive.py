"""A folder as a tar stream: produced as it is sent, one block at a time, never whole in memory."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from primage.storage import reach

CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE


def tar_stream(folder_fd: int, arcname: str) -> Iterator[bytes]:
    """Regular files and folders below an open folder (``storage.reach``), named
    ``arcname/...``; links are left out and never followed. Closes ``folder_fd`` when done."""
    try:
        for current, dirs, names, dir_fd in os.fwalk(".", dir_fd=folder_fd):
            dirs.sort()
            below = current.removeprefix(".").strip("/")
            base = f"{arcname}/{below}" if below else arcname
            yield header(os.fstat(dir_fd), base, tarfile.DIRTYPE)
            for name in sorted(names):
                fd = reach.open_below(dir_fd, name)
                if fd is not None:
                    with os.fdopen(fd, "rb") as f:
                        yield from member(f, f"{base}/{name}")
        yield b"\0" * (2 * BLOCK)
    finally:
        os.close(folder_fd)


def header(st: os.stat_result, name: str, kind: bytes, size: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mtime = int(st.st_mtime)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.PAX_FORMAT)


def member(f: BinaryIO, name: str) -> Iterator[bytes]:
    st = os.fstat(f.fileno())
    size = st.st_size
    yield header(st, name, tarfile.REGTYPE, size)
    left = size
    while left > 0:
        data = f.read(min(CHUNK, left))
        if not data:  # the file shrank while we sent it: pad to the size we announced
            data = b"\0" * left
        left -= len(data)
        yield data
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)
