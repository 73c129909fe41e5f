"""The exception hierarchy shared by the server, the SDK and the CLI.

Each error has a stable ``code`` and an HTTP ``status``. The server turns one into
``{"error": code, "detail": text}``; the SDK turns that body back into the same class; the CLI
prints ``detail`` as one line and exits non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar


class PrimageError(Exception):
    """Base class: something the caller can read and act on."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


class BadRequest(PrimageError):
    code = "bad_request"
    status = 400


class UnsafePath(BadRequest):
    code = "unsafe_path"


class Unauthenticated(PrimageError):
    code = "unauthenticated"
    status = 401


class Forbidden(PrimageError):
    code = "forbidden"
    status = 403


class NotFound(PrimageError):
    code = "not_found"
    status = 404


class MethodNotAllowed(PrimageError):
    code = "method_not_allowed"
    status = 405


class Conflict(PrimageError):
    code = "conflict"
    status = 409


class PayloadTooLarge(PrimageError):
    code = "payload_too_large"
    status = 413


class RangeNotSatisfiable(PrimageError):
    code = "range_not_satisfiable"
    status = 416


class InsufficientStorage(PrimageError):
    code = "insufficient_storage"
    status = 507


class ServerUnavailable(PrimageError):
    """The client could not reach the server at all (never sent by the server)."""

    code = "server_unavailable"
    status = 503


class AppUnavailable(PrimageError):
    """An app exists but no instance of it is ready to answer."""

    code = "app_unavailable"
    status = 503


class SandboxUnavailable(PrimageError):
    """This server cannot confine the processes it would run for a user."""

    code = "sandbox_unavailable"
    status = 503


class NotConfigured(PrimageError):
    """What was asked needs a part of the platform its operator has not set up (the message
    names the setting)."""

    code = "not_configured"
    status = 503


class ProviderUnavailable(PrimageError):
    """A trusted identity provider could not be reached to check a token."""

    code = "provider_unavailable"
    status = 503


def _all_subclasses(cls: type[PrimageError]) -> list[type[PrimageError]]:
    found: list[type[PrimageError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def from_response(status: int, code: str | None, detail: str) -> PrimageError:
    """Rebuild the error a server sent, falling back on the status when the code is unknown."""
    classes = _all_subclasses(PrimageError)
    for cls in classes:
        if cls.code == code:
            return cls(detail)
    for cls in classes:
        if cls.status == status and cls.__base__ is PrimageError:
            return cls(detail)
    error = PrimageError(detail)
    return error


def describe_invalid(
    errors: Iterable[Mapping[str, Any]],
    skip: tuple[str, ...] = (),
    known: Callable[[tuple[Any, ...]], Sequence[str]] | None = None,
) -> str:
    """pydantic's validation errors as one line: ``field.path: what is wrong; …``. ``known``
    gives the field names at a location, for "did you mean" on an unknown field."""
    problems = []
    for error in errors:
        where = ".".join(str(p) for p in error["loc"] if p not in skip) or "value"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden" and known is not None:
            message = "unknown field" + _did_you_mean(str(error["loc"][-1]), known(error["loc"]))
        problems.append(message if where == "value" else f"{where}: {message}")
    return "; ".join(problems)


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(choices)})" if choices else ""
