"""The door of a process app's sandbox: ``python -I -S relay.py FD PORT -- APP…``.

A process app runs in a network namespace of its own (``apps/launch.py``), so nothing on this
machine but the server reaches it: not other users' apps, not tasks. The server binds a listening
socket on its own loopback and hands it in as FD; this relay, inside the sandbox, starts the app,
accepts on FD and carries each connection to the app's PORT on the sandbox's own loopback. It
ends with the app, with the app's exit code. Standard library only: it runs as a plain file.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys

CHUNK = 1 << 16


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def carry(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection from the server, to the app."""
    try:
        app_reader, app_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:  # not listening yet: the server's health check retries
        writer.close()
        return
    await asyncio.gather(pipe(reader, app_writer), pipe(app_reader, writer))
    for each in (writer, app_writer):
        each.close()


async def serve(listener: socket.socket, port: int, app: subprocess.Popen[bytes]) -> int:
    server = await asyncio.start_server(lambda r, w: carry(port, r, w), sock=listener, limit=CHUNK)
    async with server:
        while (code := app.poll()) is None:
            await asyncio.sleep(0.2)
    return code


def main(argv: list[str]) -> int:
    fd, port, separator, *command = argv
    assert separator == "--", "usage: relay.py FD PORT -- APP..."
    listener = socket.socket(fileno=int(fd))
    app = subprocess.Popen(command)  # same process group: stopping the app's group stops both
    return asyncio.run(serve(listener, int(port), app))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
