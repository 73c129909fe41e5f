"""Where the SDK and the CLI find the server and the credential, in order of precedence.

Server: the argument (``--server``), ``PRIMAGE_SERVER``, the runtime file of a server running from
the local data dir (``PRIMAGE_DATA_DIR``, see :mod:`primage.local`), else the configured host
and port (``http://127.0.0.1:8642`` by default).
Credential: the token argument (``--token``), ``PRIMAGE_TOKEN``, the login kept by ``primage
login`` for that server (see :mod:`primage.login`), then, for a server on this machine, the admin
credentials file the server wrote at first start (mode 0600).

Each choice carries the reason it was made, so that an error can say which server was reached
with which credential, and what to change when that was not the one meant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from primage import login
from primage.errors import BadRequest
from primage.local import Local, local

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Choice:
    """A server URL or a credential, and why it was the one taken."""

    value: str
    why: str


def _checked(url: str, source: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f": write http://{url} (or https://{url})" if "://" not in url else ""
        raise BadRequest(f"{source} '{url}' is not an http(s) URL{hint}")
    return url


def locate(explicit: str | None = None) -> Choice:
    """The server to talk to, and why."""
    if explicit:
        return Choice(_checked(explicit, "--server"), "given with --server")
    if os.environ.get("PRIMAGE_SERVER"):
        return Choice(_checked(os.environ["PRIMAGE_SERVER"], "PRIMAGE_SERVER"), "PRIMAGE_SERVER")
    here = local()
    runtime = here.running()
    if runtime is not None:
        return Choice(str(runtime["url"]), f"the server running from {here.data_dir}")
    return Choice(
        here.default_url,
        f"the default address, as no server runs from {here.data_dir} (set PRIMAGE_DATA_DIR "
        "to the data dir of the server you started, or PRIMAGE_SERVER to its URL)",
    )


def server_url(explicit: str | None = None) -> str:
    return locate(explicit).value


class BearerToken(httpx.Auth):
    """A fixed token (platform token, or a provider's access token given as is)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def auth_for(server: str, explicit: str | None = None) -> tuple[httpx.Auth | None, str]:
    """How to authenticate to ``server`` and where that credential came from."""
    if explicit:
        return BearerToken(explicit), "the token given with --token"
    if os.environ.get("PRIMAGE_TOKEN"):
        return BearerToken(os.environ["PRIMAGE_TOKEN"]), "the token in PRIMAGE_TOKEN"
    kept = login.load(server)
    if kept is not None:
        return login.LoginAuth(kept), f"your login kept in {login.credentials_file()}"
    admin = local_admin_token(server)
    if admin is not None:
        return BearerToken(admin.value), admin.why
    return None, "no credential (primage login, --token or PRIMAGE_TOKEN)"


def local_admin_token(server: str, here: Local | None = None) -> Choice | None:
    """The admin token a server on this machine wrote into its data dir (``here``: the local
    platform's, by default)."""
    if urlsplit(server).hostname not in LOOPBACK:
        return None
    path = (here or local()).admin_credentials_file
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    token = data.get("token")
    return Choice(token, f"the local admin's token in {path}") if isinstance(token, str) else None
