"""A folder as a tar stream: produced as it is sent, one block at a time, never whole in memory."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE


def tar_stream(folder: Path, arcname: str) -> Iterator[bytes]:
    """Regular files and folders under ``folder``, named ``arcname/...``; links are left out."""
    for current, dirs, names in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(current, folder)
        base = arcname if rel == "." else f"{arcname}/{rel}"
        yield header(Path(current), base, tarfile.DIRTYPE)
        for name in sorted(names):
            path = Path(current) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield from member(path, f"{base}/{name}")
    yield b"\0" * (2 * BLOCK)


def header(path: Path, name: str, kind: bytes, size: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    stat = path.stat()
    info.type = kind
    info.size = size
    info.mtime = int(stat.st_mtime)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.PAX_FORMAT)


def member(path: Path, name: str) -> Iterator[bytes]:
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        yield header(path, name, tarfile.REGTYPE, size)
        left = size
        while left > 0:
            data = f.read(min(CHUNK, left))
            if not data:  # the file shrank while we sent it: pad to the size we announced
                data = b"\0" * left
            left -= len(data)
            yield data
        if size % BLOCK:
            yield b"\0" * (BLOCK - size % BLOCK)
