"""Pydantic schemas of the REST API: one module per resource, shared by server and SDK."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from primage.errors import BadRequest, describe_invalid

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, source: str, fields: str) -> M:
    """``data`` as a ``model``, or BadRequest naming each wrong field and what to write
    instead; ``fields`` names some of its fields, for data that is not even a mapping."""
    if not isinstance(data, dict):
        raise BadRequest(f"{source}: expected a mapping of fields ({fields}, …)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(f"{source}: {describe_invalid(exc.errors())}") from None
