"""Running the server: bind, announce where it listens (runtime file), serve, clean up."""

from __future__ import annotations

import os
import signal
import socket
import time
from errno import EADDRINUSE
from types import FrameType

import uvicorn

from primage.config import Settings
from primage.errors import PrimageError
from primage.local import url_of
from primage.server.app import create_app
from primage.server.bootstrap import write_private


def serve(settings: Settings) -> None:
    """Serve until interrupted. Port 0 picks a free port; the runtime file says which."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        taken = " (another primage server or program uses it)" if exc.errno == EADDRINUSE else ""
        raise PrimageError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}{taken}; "
            "choose another port with --port N or PRIMAGE_PORT=N (0 picks a free one)"
        ) from None
    host, port = sock.getsockname()[:2]
    settings = settings.model_copy(update={"port": port})  # base_url names the real port
    app = create_app(settings)
    url = url_of(host, port)
    runtime = settings.local.runtime_file
    write_private(runtime, {"url": url, "pid": os.getpid(), "started": time.time()})
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=settings.access_log,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    print(f"primage serving on {url} (data in {settings.data_dir})", flush=True)
    print(f"sandbox: {app.state.platform.sandbox.line}", flush=True)
    podman = app.state.platform.builder.runtime
    print(f"containers: {podman.line if podman else 'off (setting containers)'}", flush=True)
    # After its graceful shutdown uvicorn restores the SIGTERM handler it found and raises the
    # signal again: this one ends the process through the `finally` below (exit 0), not by the
    # signal's default action, which would leave the runtime file behind.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        runtime.unlink(missing_ok=True)


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)
