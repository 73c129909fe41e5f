"""Where the SDK and the CLI find the server and the credential, in order of precedence.

Server: the argument, ``PRIMAGE_SERVER``, the runtime file of a server running from the local
data dir, else the configured host and port (``http://127.0.0.1:8642`` by default).
Credential: the token argument, ``PRIMAGE_TOKEN``, the login kept by ``primage login`` for that
server (see :mod:`primage.login`), then, for a server on this machine, the admin credentials
file the server wrote at first start (mode 0600).
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from urllib.parse import urlsplit

import httpx

from primage import login
from primage.config import Settings

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _local_settings() -> Settings:
    return Settings()


def server_url(explicit: str | None = None) -> str:
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("PRIMAGE_SERVER"):
        return os.environ["PRIMAGE_SERVER"].rstrip("/")
    from primage.server.run import read_runtime

    settings = _local_settings()
    runtime = read_runtime(settings)
    if runtime is not None:
        return str(runtime["url"])
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"


class BearerToken(httpx.Auth):
    """A fixed token (platform token, or a provider's access token given as is)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def auth_for(server: str, explicit: str | None = None) -> httpx.Auth | None:
    """How to authenticate to ``server``; None when there is nothing to use."""
    if explicit:
        return BearerToken(explicit)
    if os.environ.get("PRIMAGE_TOKEN"):
        return BearerToken(os.environ["PRIMAGE_TOKEN"])
    kept = login.load(server)
    if kept is not None:
        return login.LoginAuth(kept)
    admin = local_admin_token(server)
    return BearerToken(admin) if admin else None


def local_admin_token(server: str) -> str | None:
    if urlsplit(server).hostname not in LOOPBACK:
        return None
    try:
        data = json.loads(_local_settings().admin_credentials_file.read_text())
    except (OSError, ValueError):
        return None
    token = data.get("token")
    return token if isinstance(token, str) else None
