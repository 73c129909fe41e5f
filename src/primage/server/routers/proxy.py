"""`/apps/<name>/…`: every app, HTTP and WebSocket, behind the platform's authentication
(`apps/proxy.py` decides and rewrites; this module moves the bytes). HTTP is served by
:class:`ProxyMiddleware`, ahead of the router; WebSockets by the route below."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import RedirectResponse
from multidict import CIMultiDict
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from primage.apps.proxy import downstream_headers, upstream_headers
from primage.apps.supervisor import Route
from primage.auth.principal import Principal
from primage.auth.sessions import SAFE_METHODS
from primage.errors import AppUnavailable, PrimageError
from primage.server import errors
from primage.server.deps import identify
from primage.server.state import Platform

router = APIRouter(tags=["apps"], include_in_schema=False)  # the WebSocket side


async def _admit(
    state: Platform, connection: Request | WebSocket, name: str, unsafe: bool
) -> tuple[Principal, Route, int]:
    """Who asks, where their traffic goes, and the app's id; or the refusal."""
    principal, cookie = await identify(connection, state)
    if cookie and unsafe:
        state.proxy.check_origin(connection.headers, connection.headers.get("host"))
    route, app_id = await state.proxy.open(principal, name)
    return principal, route, app_id


def _rest(connection: Request | WebSocket, name: str) -> str:
    """The path below /apps/<name>/ exactly as the client sent it (still percent-encoded:
    %2F stays %2F), with the query."""
    raw: bytes = connection.scope.get("raw_path") or connection.url.path.encode()
    rest = raw.decode("latin-1").removeprefix(f"/apps/{name}/")
    return f"{rest}?{connection.url.query}" if connection.url.query else rest


PROXIED = SimpleNamespace(path="/apps/{name}/{path}")


class ProxyMiddleware:
    """HTTP to `/apps/<name>/…` served before the router: a proxied request needs none of
    FastAPI's routing, dependencies or response classes, which cost more than the hop itself
    (`benchmarks/app_start.py`). Everything else goes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/apps/"):
            await self.app(scope, receive, send)
            return
        name, slash, _ = path.removeprefix("/apps/").partition("/")
        scope["route"] = PROXIED  # the metrics' label
        request = Request(scope, receive)
        if not slash:
            await RedirectResponse(f"/apps/{name}/", status_code=308)(scope, receive, send)
            return
        try:
            await _forward(request.app.state.platform, request, name, send)
        except PrimageError as exc:
            await errors.response(exc)(scope, receive, send)


def origin(connection: HTTPConnection) -> tuple[str, str, str]:
    """Host, scheme and client address of a request as the platform received it."""
    scheme = "https" if connection.url.scheme in ("https", "wss") else "http"
    client = connection.client.host if connection.client is not None else ""
    return connection.headers.get("host", ""), scheme, client


async def _forward(state: Platform, request: Request, name: str, send: Send) -> None:
    principal, route, _ = await _admit(state, request, name, request.method not in SAFE_METHODS)
    url = f"http://{route.next_address()}{route.prefix}{_rest(request, name)}"
    headers = upstream_headers(
        request.headers.items(), route, principal, websocket=False, origin=origin(request)
    )
    body = request.stream() if request.method not in ("GET", "HEAD") else None
    try:
        answer = await state.proxy.http().request(
            request.method, url, headers=CIMultiDict(headers), data=body, allow_redirects=False
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AppUnavailable(f"app '{name}' did not answer: {exc.__class__.__name__}") from None
    try:
        raw = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in downstream_headers(answer.headers.items())]  # fmt: skip
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        async for chunk in answer.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        answer.release()


@router.websocket("/apps/{name}/{path:path}")
async def forward_websocket(websocket: WebSocket, name: str, path: str) -> None:
    state: Platform = websocket.app.state.platform
    try:
        principal, route, app_id = await _admit(state, websocket, name, unsafe=True)
    except PrimageError as exc:
        await websocket.send_denial_response(errors.response(exc))
        return
    url = f"ws://{route.next_address()}{route.prefix}{_rest(websocket, name)}"
    headers = upstream_headers(
        websocket.headers.items(), route, principal, websocket=True, origin=origin(websocket)
    )
    offered = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    try:
        upstream = await connect(
            url, additional_headers=headers, subprotocols=offered or None, max_size=None
        )
    except Exception as exc:  # refused, unreachable, or not a WebSocket there
        refused = AppUnavailable(f"app '{name}' refused the WebSocket: {exc}")
        await websocket.send_denial_response(errors.response(refused))
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _pump(websocket, upstream, lambda: state.supervisor.touch(app_id))


async def _pump(
    websocket: WebSocket, upstream: ClientConnection, touch: Callable[[], None]
) -> None:
    """Messages both ways until either side closes; then the other is closed too. Each one
    is activity: a notebook used through its kernel alone is in use."""

    async def down() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                touch()
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)

    async def up() -> None:
        with contextlib.suppress(WebSocketDisconnect, ConnectionClosed):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                touch()
                if message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
                elif message.get("text") is not None:
                    await upstream.send(message["text"])

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await upstream.close()
    with contextlib.suppress(RuntimeError):
        await websocket.close()
