"""Every error leaves the server as JSON: ``{"error": code, "detail": text}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from primage.errors import PrimageError, describe_invalid

log = logging.getLogger("primage.server")

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}


def _validation_detail(exc: RequestValidationError) -> str:
    return "invalid request: " + describe_invalid(exc.errors(), skip=("body",))


def response(exc: PrimageError) -> JSONResponse:
    """An error as the client gets it: its JSON, its status, and the challenge of a 401."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(PrimageError)
    async def primage_error(_request: Request, exc: PrimageError) -> JSONResponse:
        return response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        body = {"error": "bad_request", "detail": _validation_detail(exc)}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        detail = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code != 404:
            detail = str(exc.detail)
        return JSONResponse({"error": code, "detail": detail}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        body = {"error": "internal", "detail": "internal error; the server log has the details"}
        return JSONResponse(body, status_code=500)
