"""``/apps/<name>/…``: every app, HTTP and WebSocket, behind the platform's authentication
(``apps/proxy.py`` decides and rewrites; this module moves the bytes)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from primage.apps.proxy import downstream_headers, upstream_headers
from primage.apps.supervisor import Route
from primage.auth.principal import Principal
from primage.auth.sessions import SAFE_METHODS
from primage.errors import PrimageError
from primage.server.deps import State, identify
from primage.server.state import Platform

router = APIRouter(tags=["apps"], include_in_schema=False)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _admit(
    state: Platform, connection: Request | WebSocket, name: str, unsafe: bool
) -> tuple[Principal, Route]:
    principal, cookie = await identify(connection, state)
    if cookie and unsafe:
        state.proxy.check_origin(connection.headers, connection.headers.get("host"))
    route, _ = await state.proxy.open(principal, name)
    return principal, route


def _rest(connection: Request | WebSocket, name: str) -> str:
    """The path below /apps/<name>/ exactly as the client sent it (still percent-encoded:
    %2F stays %2F), with the query."""
    raw: bytes = connection.scope.get("raw_path") or connection.url.path.encode()
    rest = raw.decode("latin-1").removeprefix(f"/apps/{name}/")
    return f"{rest}?{connection.url.query}" if connection.url.query else rest


@router.api_route("/apps/{name}", methods=METHODS)
async def to_folder(name: str) -> Response:
    return RedirectResponse(f"/apps/{name}/", status_code=308)


@router.api_route("/apps/{name}/{path:path}", methods=METHODS)
async def forward(name: str, path: str, request: Request, state: State) -> Response:
    principal, route = await _admit(state, request, name, request.method not in SAFE_METHODS)
    url = f"http://127.0.0.1:{route.next_port()}{route.prefix}{_rest(request, name)}"
    headers = upstream_headers(request.headers.items(), route, principal, websocket=False)
    headers.append(("x-forwarded-host", request.headers.get("host", "")))
    body = request.stream() if request.method not in ("GET", "HEAD") else None
    sent = state.proxy.client.build_request(request.method, url, headers=headers, content=body)
    try:
        answer = await state.proxy.client.send(sent, stream=True)
    except httpx.HTTPError as exc:
        detail = f"app '{name}' did not answer: {exc.__class__.__name__}"
        return JSONResponse({"error": "app_unavailable", "detail": detail}, status_code=502)
    response = StreamingResponse(
        answer.aiter_raw(),
        status_code=answer.status_code,
        background=BackgroundTask(answer.aclose),
    )
    for key, value in downstream_headers(answer.headers.multi_items()):
        response.headers.append(key, value)  # repeated ones too (Set-Cookie)
    return response


@router.websocket("/apps/{name}/{path:path}")
async def forward_websocket(websocket: WebSocket, name: str, path: str) -> None:
    state: Platform = websocket.app.state.platform
    try:
        principal, route = await _admit(state, websocket, name, unsafe=True)
    except PrimageError as exc:
        await websocket.send_denial_response(JSONResponse(exc.to_json(), status_code=exc.status))
        return
    url = f"ws://127.0.0.1:{route.next_port()}{route.prefix}{_rest(websocket, name)}"
    headers = upstream_headers(websocket.headers.items(), route, principal, websocket=True)
    offered = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    try:
        upstream = await connect(
            url, additional_headers=headers, subprotocols=offered or None, max_size=None
        )
    except Exception as exc:  # refused, unreachable, or not a WebSocket there
        detail = f"app '{name}' refused the WebSocket: {exc}"
        await websocket.send_denial_response(
            JSONResponse({"error": "app_unavailable", "detail": detail}, status_code=502)
        )
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _pump(websocket, upstream)


async def _pump(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Messages both ways until either side closes; then the other is closed too."""

    async def down() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
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
