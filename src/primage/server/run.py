"""Running the server: bind, announce where it listens (runtime file), serve, clean up."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import uvicorn

from primage.config import Settings
from primage.server.app import create_app
from primage.server.bootstrap import write_private


def read_runtime(settings: Settings) -> dict[str, object] | None:
    """What a running server of this data dir wrote about itself, if it is still alive."""
    try:
        info: dict[str, object] = json.loads(settings.runtime_file.read_text())
        os.kill(int(str(info["pid"])), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def serve(settings: Settings) -> None:
    """Serve until interrupted. Port 0 picks a free port; the runtime file says which."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    host, port = sock.getsockname()[:2]
    settings = settings.model_copy(update={"port": port})  # base_url names the real port
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    runtime: Path = settings.runtime_file
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
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        runtime.unlink(missing_ok=True)
