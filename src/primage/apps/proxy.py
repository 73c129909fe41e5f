"""The authenticated proxy in front of every app: ``/apps/<name>/…``, HTTP and WebSocket.

The platform decides who may open an app (``policy.check_open_app``) before a byte reaches it;
the app listens on loopback only and is sent its own credential (``Authorization: token <app
token>``, which Jupyter and others accept), never the caller's: a platform token or session cookie
stays with the platform. A refusal is the platform's JSON 401/403, never the app's login page.
A browser's cookie opens an app only from the platform's own origin (no cross-site requests
or WebSocket hijacking). Every proxied request counts as activity for idle culling.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping

import aiohttp
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from primage.apps.supervisor import Route, Supervisor
from primage.auth import policy
from primage.auth.principal import Principal
from primage.auth.sessions import COOKIE
from primage.config import Settings
from primage.db import Database, tables
from primage.errors import AppUnavailable, Forbidden, NotFound
from primage.models.jobs import Mount, parse_mount

# Headers that belong to one connection (RFC 9110 §7.6.1), or that the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "authorization", "content-length",
    }
)  # fmt: skip
WEBSOCKET_OWN = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
     "sec-websocket-protocol", "origin"}
)  # fmt: skip
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent")  # only the caller's go on
ACCESS_TTL_S = 5.0
ACCESS_KEPT = 10_000  # decisions kept at most; all are dropped past that


class Proxy:
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor) -> None:
        self.settings, self.db, self.supervisor = settings, db, supervisor
        self._session: aiohttp.ClientSession | None = None
        self._allowed: dict[tuple[int, str | None, str], tuple[float, int]] = {}

    def http(self) -> aiohttp.ClientSession:
        """The one client of the apps, made in the server's event loop on first use. aiohttp,
        not httpx: httpx's pool checks every idle connection on each request, which tripled
        the latency at 20 clients (benchmarks/app_start.py)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # the apps' own limits apply
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=300),
                auto_decompress=False,  # bytes pass as the app sent them
                skip_auto_headers=SKIP_AUTO_HEADERS,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, principal: Principal, name: str) -> tuple[Route, int]:
        """Where to send ``principal``'s traffic for app ``name``, and the app's id; 404 for
        no such app, 403 for someone it is not open to, 503 while no instance is ready.
        Decisions are kept a few seconds: most requests cost no database query, nor thread."""
        key = (principal.user_id, principal.token_id, name)
        cached = self._allowed.get(key)
        if cached is not None and cached[0] > time.monotonic():
            app_id = cached[1]
        else:
            app_id = await run_in_threadpool(self._check, principal, name)
            if len(self._allowed) >= ACCESS_KEPT:
                self._allowed.clear()
            self._allowed[key] = (time.monotonic() + ACCESS_TTL_S, app_id)
        route = self.supervisor.routes.get(name)
        if route is None:
            raise AppUnavailable(
                f"app '{name}' has no instance ready to answer (primage app show {name} says why)"
            )
        self.supervisor.touch(app_id)
        return route, app_id

    def _check(self, principal: Principal, name: str) -> int:
        with self.db.session() as session:
            row = session.scalar(select(tables.App).where(tables.App.name == name))
            if row is None:
                raise NotFound(f"no app '{name}'")
            spec = json.loads(row.spec)
            access = spec.get("access", {})
            mounts = [Mount.model_validate(parse_mount(m)) for m in spec.get("spaces", [])]
            found = session.scalars(
                select(tables.Space).where(tables.Space.name.in_([m.name for m in mounts]))
            ).all()
            by_name = {space.name: space for space in found}
            spaces = [(by_name[m.name], m.read_only) for m in mounts if m.name in by_name]
            policy.check_open_app(
                principal, name, row.owner_id, access.get("who", "owner"), access.get("group"),
                spaces,
            )  # fmt: skip
            return row.id

    def check_origin(self, headers: Mapping[str, str], host: str | None) -> None:
        """A request that came with the session cookie must come from the platform's pages."""
        origin = headers.get("origin")
        if origin is None:
            return  # not a cross-site browser request: browsers send Origin on those
        allowed = {self.settings.base_url.rstrip("/")}
        if host:
            allowed |= {f"http://{host}", f"https://{host}"}
        if origin.rstrip("/") not in allowed:
            raise Forbidden(f"requests from {origin} may not use your platform session")


def upstream_headers(
    headers: Iterable[tuple[str, str]],
    route: Route,
    caller: Principal,
    *,
    websocket: bool,
    origin: tuple[str, str, str],
) -> list[tuple[str, str]]:
    """The caller's headers as the app gets them: its own credential instead of the
    caller's, the platform's session cookie removed, who is asking added, and ``origin``
    (host, scheme, client address) as the platform saw it: what a client sent as
    ``X-Forwarded-*`` or ``Forwarded`` is not passed on, since it could say anything."""
    drop = HOP_BY_HOP | (WEBSOCKET_OWN if websocket else frozenset()) | {"cookie", "forwarded"}
    kept = [
        (k, v)
        for k, v in headers
        if k.lower() not in drop and not k.lower().startswith("x-forwarded-")
    ]
    cookies = [
        part.strip()
        for k, v in headers
        if k.lower() == "cookie"
        for part in v.split(";")
        if part.strip() and not part.strip().startswith(f"{COOKIE}=")
    ]
    if cookies:
        kept.append(("cookie", "; ".join(cookies)))
    host, scheme, client = origin
    return [
        *[(k, v) for k, v in kept if not k.lower().startswith("x-primage-")],
        ("authorization", f"token {route.token}"),
        ("x-primage-user", caller.name),
        ("x-forwarded-host", host),
        ("x-forwarded-proto", scheme),
        ("x-forwarded-for", client),
    ]


def downstream_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP - {"content-length"}]
