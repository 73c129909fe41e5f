"""The WebDAV gateway at ``/dav``: authentication and the platform's policy in front of WsgiDAV.

Every request is authenticated like the REST API (a platform token or a provider's access token,
as ``Bearer``, or as the password of ``Basic`` for clients that only do Basic, e.g. davfs2 and
Windows) and authorised by :mod:`primage.auth.policy` before WsgiDAV sees it:

- ``GET HEAD PROPFIND OPTIONS`` need read access to the path; the root lists the caller's spaces;
- ``PUT DELETE MKCOL PROPPATCH LOCK UNLOCK`` need write access; ``COPY`` read on the source and
  write on the destination; ``MOVE`` write on both;
- a token's caveats apply as in the API: a read-only token is read-only here, a path-restricted
  one is confined to its folder;
- spaces themselves are created, renamed and deleted through the API only.

Errors are the API's JSON (``{"error", "detail"}``) with its status codes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session
from wsgidav import util
from wsgidav.dav_error import (
    HTTP_NO_CONTENT,
    HTTP_NOT_MODIFIED,
    DAVError,
    as_DAVError,
    get_http_status_string,
)
from wsgidav.dir_browser import WsgiDavDirBrowser
from wsgidav.mw.base_mw import BaseMiddleware
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from primage.auth import policy
from primage.auth.policy import Right
from primage.auth.principal import Principal
from primage.dav.provider import CONFINED, SPACE, VISIBLE, SpaceProvider, split
from primage.db import lookup, tables
from primage.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    PrimageError,
)
from primage.server.deps import authenticate, bearer_or_basic
from primage.server.state import Platform
from primage.storage.paths import normalise_relpath

log = logging.getLogger("primage.dav")
MOUNT = "/dav"
SPACE_TTL = 2.0  # seconds a space's members are reused: how long a change of sharing may take
READ = frozenset({"GET", "HEAD", "PROPFIND", "OPTIONS"})
CHANGES_USAGE = frozenset({"DELETE", "COPY", "MOVE"})  # other than PUT, which counts itself
REALM = "primage"
StartResponse = Any


def _target(environ: dict[str, Any]) -> str | None:
    """The destination path of a COPY or MOVE, inside the gateway."""
    header = environ.get("HTTP_DESTINATION")
    if not isinstance(header, str):
        return None
    path = unquote(urlsplit(header).path)
    if not path.startswith(MOUNT + "/") and path != MOUNT:
        raise BadRequest(f"destination {header!r} is outside {MOUNT}/")
    return path.removeprefix(MOUNT) or "/"


ERROR_CODES = {
    400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 412: "precondition_failed", 413: "payload_too_large", 415: "unsupported",
    423: "locked", 507: "insufficient_storage",
}  # fmt: skip


class JsonErrors(BaseMiddleware):  # type: ignore[misc]
    """WsgiDAV's errors as the API's JSON (``{"error", "detail"}``), in place of its HTML
    pages: the start of a response is held until its first bytes, so an error raised before
    them can still become one."""

    def is_disabled(self) -> bool:
        return False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        held = util.SubAppStartResponse()
        try:
            body = self.next_app(environ, held)
            chunks = iter(body)
            first = next(chunks, None)
        except Exception as exc:
            yield from dav_error_json(exc, start_response)
            return
        start_response(held.status, held.response_headers, held.exc_info)
        if first is not None:
            yield first
        yield from chunks
        if hasattr(body, "close"):
            body.close()


def dav_error_json(exc: Exception, start_response: StartResponse) -> Iterable[bytes]:
    error = exc if isinstance(exc, DAVError) else as_DAVError(exc)
    if error.value in (HTTP_NO_CONTENT, HTTP_NOT_MODIFIED):  # not errors: no body at all
        start_response(get_http_status_string(error), [("Content-Length", "0")])
        return [b""]
    if error.value >= 500 and error.value != 507:
        log.error("WebDAV request failed", exc_info=exc)
    detail = error.context_info or get_http_status_string(error)
    code = ERROR_CODES.get(error.value, "webdav_error")
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(get_http_status_string(error), headers + (error.add_headers or []))
    return [body]


class Gateway:
    """The WSGI application mounted at ``/dav``."""

    def __init__(self, state: Platform) -> None:
        self.state = state
        self._spaces: dict[str, tuple[float, tables.Space]] = {}
        self._lock = threading.Lock()
        self.provider = provider = SpaceProvider(
            state.store, state.db, state.settings.fsync_uploads
        )
        self.dav = WsgiDAVApp(
            {
                "provider_mapping": {"/": provider},
                "mount_path": MOUNT,
                # authentication and authorisation happen here, before WsgiDAV
                "middleware_stack": [JsonErrors, WsgiDavDirBrowser, RequestResolver],
                "http_authenticator": {"domain_controller": None},
                "simple_dc": {"user_mapping": {}},
                "block_size": 1024 * 1024,  # bytes per read and write (default 8 KiB: slow)
                "lock_storage": True,  # class 2: in-memory locks, as davfs2 and Windows expect
                "property_manager": True,
                "dir_browser": {"enable": True, "davmount": False, "ms_sharepoint_support": False},
                "verbose": 0,
                "logging": {"enable": False, "enable_loggers": []},
            }
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            principal = self._authenticate(environ)
            self._authorize(environ, principal)
        except PrimageError as exc:
            return self._error(exc, start_response)
        environ["wsgidav.auth.user_name"] = principal.name
        environ["wsgidav.auth.realm"] = REALM
        environ["wsgidav.auth.roles"] = []
        environ["wsgidav.auth.permissions"] = []
        if environ["REQUEST_METHOD"] == "MKCOL" and self._exists(environ):
            # clients (rclone) send one before every upload into a folder: answer it cheaply
            return self._error(MethodNotAllowed("the folder exists already"), start_response)
        served: Iterable[bytes] = self.dav(environ, start_response)
        if environ["REQUEST_METHOD"] in CHANGES_USAGE:  # done by WsgiDAV: count from the disk
            self.state.usage.reconcile(environ.get(VISIBLE, ()))
        return served

    def _space(self, session: Session, name: str) -> tables.Space:
        """A space and its members, as read at most ``SPACE_TTL`` seconds ago: a client sends
        several requests per file, and each would otherwise cost the same two queries."""
        now = time.monotonic()
        with self._lock:
            cached = self._spaces.get(name)
        if cached is not None and now - cached[0] < SPACE_TTL:
            return cached[1]
        row = lookup.space(session, name)
        row.members  # noqa: B018 - loaded now, read after the session
        session.expunge(row)
        with self._lock:
            if len(self._spaces) > 1024:
                self._spaces.clear()
            self._spaces[name] = (now, row)
        return row

    def _exists(self, environ: dict[str, Any]) -> bool:
        try:
            return os.path.lexists(self.provider._loc_to_file_path(unquote(environ["PATH_INFO"])))
        except DAVError:
            return False

    def _authenticate(self, environ: dict[str, Any]) -> Principal:
        raw = bearer_or_basic(str(environ.get("HTTP_AUTHORIZATION", "")))
        cached = self.state.principals.get(raw)
        if cached is not None:
            return cached
        principal = authenticate(self.state, raw, cookie=False)
        self.state.principals.put(raw, principal)
        return principal

    def _authorize(self, environ: dict[str, Any], principal: Principal) -> None:
        method = environ["REQUEST_METHOD"].upper()
        # What is checked is what WsgiDAV will serve: '..' (sent as '%2e%2e' too) is refused,
        # never normalised after the check.
        space, rel = split(unquote(environ.get("PATH_INFO", "/")))
        rel = normalise_relpath(rel)
        environ[CONFINED] = (principal.caveats.space, principal.caveats.path_prefix)
        with self.state.db.session() as session:
            if not space:
                if method not in READ:
                    raise Forbidden(
                        "spaces are created and deleted with the API: primage space create NAME"
                    )
                spaces = session.scalars(select(tables.Space))
                environ[VISIBLE] = {s.name for s in spaces if policy.can_list(principal, s)}
                return
            visible = {space}
            right = Right.READ if method in READ or method == "COPY" else Right.WRITE
            if not rel and method == "MKCOL":
                raise Forbidden("spaces are created with the API: primage space create NAME")
            if not rel and method in ("DELETE", "MOVE"):
                raise Forbidden(f"delete or rename space '{space}' with the API, not WebDAV")
            row = self._space(session, space)
            policy.check_space(principal, row, right, rel)
            environ[SPACE] = (row.id, row.quota_bytes)
            destination = _target(environ) if method in ("COPY", "MOVE") else None
            if destination is not None:
                dest_space, dest_rel = split(destination)
                dest_rel = normalise_relpath(dest_rel)
                if not dest_space or not dest_rel:
                    raise Forbidden("a COPY or MOVE must land inside a space")
                dest_row = self._space(session, dest_space)
                policy.check_space(principal, dest_row, Right.WRITE, dest_rel)
                visible.add(dest_space)
        environ[VISIBLE] = visible

    @staticmethod
    def _error(exc: PrimageError, start_response: StartResponse) -> list[bytes]:
        body = json.dumps(exc.to_json()).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if exc.status == 401:
            headers.append(("WWW-Authenticate", f'Basic realm="{REALM}"'))
        start_response(f"{exc.status} {HTTPStatus(exc.status).phrase}", headers)
        return [body]
