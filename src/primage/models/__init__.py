"""Pydantic schemas of the REST API: one module per resource, shared by server and SDK."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from primage.errors import BadRequest, describe_invalid

M = TypeVar("M", bound=BaseModel)

#: The largest integer both databases store (a BIGINT): every id, size and count is below it.
BIGINT_MAX = 2**63 - 1


class Model(BaseModel):
    """Every schema's base: validators are built on first use, not at import (the CLI's
    start-up imports the SDK's schemas and uses one or two)."""

    model_config = ConfigDict(defer_build=True)


class Strict(Model):
    """A request body (or part of one): a field the API does not know is an error, never
    silently dropped."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


def validated(model: type[M], data: Any, source: str, fields: str) -> M:
    """``data`` as a ``model``, or BadRequest naming each wrong field and what to write
    instead; ``fields`` names some of its fields, for data that is not even a mapping."""
    if not isinstance(data, dict):
        raise BadRequest(f"{source}: expected a mapping of fields ({fields}, …)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(f"{source}: {describe_invalid(exc.errors())}") from None
