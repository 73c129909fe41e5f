"""The CLI's and SDK's login at an identity provider, and the credentials it keeps.

``primage login`` runs the OAuth 2.0 device authorization grant (RFC 8628) against the provider
the server names in ``GET /auth/providers``: it prints a URL and a code, the user approves in any
browser, and the refresh token is kept in the credentials file (``PRIMAGE_CREDENTIALS``, default
``<user config dir>/primage/credentials.json``, mode 0600), one entry per server. Access tokens
are then refreshed before they expire, by :class:`LoginAuth`, on every request.

``primage login --token-command 'oidc-token egi'`` keeps a command instead (oidc-agent and
similar tools): it is run for a fresh access token whenever the last one is about to expire.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from primage.errors import BadRequest, PrimageError, ProviderUnavailable, Unauthenticated

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EARLY = 30.0  # refresh this many seconds before an access token expires
COMMAND_TIMEOUT = 60.0


def credentials_file() -> Path:
    explicit = os.environ.get("PRIMAGE_CREDENTIALS")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_config_dir("primage")) / "credentials.json"


@dataclass
class Login:
    """What is kept for one server: how to get a fresh access token for it."""

    server: str
    provider: str
    issuer: str
    client_id: str
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    refresh_token: str | None = None
    token_command: str | None = None
    access_token: str | None = None
    expires_at: float = 0.0

    @property
    def fresh(self) -> bool:
        return self.access_token is not None and self.expires_at - EARLY > time.time()


# -- the credentials file ----------------------------------------------------------------------


def _read() -> dict[str, Any]:
    try:
        data = json.loads(credentials_file().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read {credentials_file()}: {exc}; delete it and log in") from None
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    """Replace the file atomically, readable by its owner only from the first byte."""
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(temp, path)


@contextlib.contextmanager
def _file_lock() -> Iterator[None]:
    """Exclusive across processes, so a rotated refresh token is never used twice."""
    path = credentials_file().with_name(credentials_file().name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load(server: str) -> Login | None:
    entry = _read().get("servers", {}).get(server)
    if not isinstance(entry, dict):
        return None
    try:
        return Login(**entry)
    except TypeError:
        return None


def save(login: Login) -> None:
    record = asdict(login)
    if login.token_command:  # the command is asked each time: no token is kept for it
        record.update(access_token=None, expires_at=0.0)
    data = _read()
    data.setdefault("servers", {})[login.server] = record
    _write(data)


def forget(server: str) -> Login | None:
    data = _read()
    entry = data.get("servers", {}).pop(server, None)
    if entry is not None:
        _write(data)
    try:
        return Login(**entry) if isinstance(entry, dict) else None
    except TypeError:
        return None


# -- talking to the provider -------------------------------------------------------------------


def _post(url: str, data: dict[str, str], what: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.post(url, data=data, timeout=30)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"cannot reach the identity provider for {what}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


def discover(issuer: str) -> dict[str, Any]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=30)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ProviderUnavailable(f"cannot read the provider's metadata at {url}: {exc}") from None
    return document


def _expiry(access_token: str, expires_in: object) -> float:
    if isinstance(expires_in, int | float):
        return time.time() + float(expires_in)
    import jwt  # only for providers that do not say expires_in; costs 30 ms at CLI start

    with contextlib.suppress(jwt.PyJWTError):
        exp = jwt.decode(access_token, options={"verify_signature": False}).get("exp")
        if isinstance(exp, int | float):
            return float(exp)
    return time.time() + 60.0  # unknown: ask again in a minute


def device_login(
    server: str,
    provider: dict[str, Any],
    tell: Callable[[str, str, str | None], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Login:
    """Run the device flow; ``tell(url, user_code, url_with_code)`` shows the user what to do."""
    metadata = discover(str(provider["issuer"]))
    endpoint = metadata.get("device_authorization_endpoint")
    if not endpoint:
        raise BadRequest(
            f"provider '{provider['name']}' offers no device flow; use "
            "'primage login --token-command ...' with a token from oidc-agent or similar"
        )
    status, started = _post(
        str(endpoint),
        {"client_id": str(provider["client_id"]), "scope": str(provider["scopes"])},
        "the device login",
    )
    if status != 200 or "device_code" not in started:
        why = started.get("error_description") or started.get("error") or f"HTTP {status}"
        raise Unauthenticated(f"provider '{provider['name']}' refused the device login: {why}")
    tell(
        str(started["verification_uri"]),
        str(started["user_code"]),
        started.get("verification_uri_complete"),
    )
    interval = float(started.get("interval", 5))
    deadline = time.monotonic() + float(started.get("expires_in", 600))
    while time.monotonic() < deadline:
        status, reply = _post(
            str(metadata["token_endpoint"]),
            {
                "grant_type": DEVICE_GRANT,
                "device_code": str(started["device_code"]),
                "client_id": str(provider["client_id"]),
            },
            "the device login",
        )
        if status == 200:
            access = str(reply["access_token"])
            return Login(
                server=server,
                provider=str(provider["name"]),
                issuer=str(provider["issuer"]),
                client_id=str(provider["client_id"]),
                token_endpoint=str(metadata["token_endpoint"]),
                revocation_endpoint=metadata.get("revocation_endpoint"),
                refresh_token=reply.get("refresh_token"),
                access_token=access,
                expires_at=_expiry(access, reply.get("expires_in")),
            )
        error = reply.get("error")
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            raise Unauthenticated(f"login not completed: {reply.get('error_description') or error}")
        sleep(interval)
    raise Unauthenticated("login not completed in time: run 'primage login' again")


def refresh(login: Login) -> Login:
    """A new access token: from the token command, or with the refresh token."""
    if login.token_command:
        login.access_token = run_token_command(login.token_command)
        login.expires_at = _expiry(login.access_token, None)
        return login
    if not login.refresh_token or not login.token_endpoint:
        raise Unauthenticated("your login has no refresh token: run 'primage login' again")
    status, reply = _post(
        login.token_endpoint,
        {
            "grant_type": "refresh_token",
            "refresh_token": login.refresh_token,
            "client_id": login.client_id,
        },
        "refreshing your login",
    )
    if status != 200 or "access_token" not in reply:
        why = reply.get("error_description") or reply.get("error") or f"HTTP {status}"
        raise Unauthenticated(f"your login has ended ({why}): run 'primage login' again")
    login.access_token = str(reply["access_token"])
    login.expires_at = _expiry(login.access_token, reply.get("expires_in"))
    login.refresh_token = reply.get("refresh_token") or login.refresh_token  # may rotate
    return login


def run_token_command(command: str) -> str:
    """Run e.g. ``oidc-token egi`` and return the access token it prints."""
    try:
        done = subprocess.run(
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise Unauthenticated(f"token command '{command}' did not run: {exc}") from None
    token = done.stdout.strip()
    if done.returncode != 0 or not token or len(token.split()) != 1:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise Unauthenticated(f"token command '{command}' gave no token: {why[0]}")
    return token


def revoke(login: Login) -> None:
    """Best effort: the provider forgets the refresh token."""
    if login.refresh_token and login.revocation_endpoint:
        with contextlib.suppress(PrimageError):
            _post(
                login.revocation_endpoint,
                {
                    "token": login.refresh_token,
                    "token_type_hint": "refresh_token",
                    "client_id": login.client_id,
                },
                "logging out",
            )


class LoginAuth(httpx.Auth):
    """Bearer auth from a stored login: a fresh access token on every request, refreshed (and
    saved) shortly before it expires."""

    def __init__(self, login: Login) -> None:
        self.login = login
        self._lock = threading.Lock()  # parallel transfers must not refresh twice

    def token(self) -> str:
        with self._lock:
            if not self.login.fresh:
                with _file_lock():  # other primage processes may be refreshing the same login
                    kept = None if self.login.token_command else load(self.login.server)
                    if kept is not None and kept.fresh:
                        self.login = kept  # one of them just did
                    else:
                        self.login = refresh(self.login)
                        save(self.login)  # keep the new (possibly rotated) refresh token
            assert self.login.access_token is not None
            return self.login.access_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request
