"""Log files a process writes: read from an offset, and follow them while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path


async def follow_file(
    path: Path, follow: bool, running: Callable[[], Awaitable[bool]], pause: float = 0.25
) -> AsyncIterator[bytes]:
    """A log file's content; with ``follow``, what it grows by too, while ``running()``."""
    offset = 0
    while True:
        data = await asyncio.to_thread(read_from, path, offset)
        offset += len(data)
        if data:
            yield data
        elif not follow or not await running():
            return
        else:
            await asyncio.sleep(pause)


def read_from(path: Path, offset: int, limit: int = 1 << 20) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""
