"""Pydantic schemas of the REST API: one module per resource, shared by server and SDK."""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar, get_args

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
        known = partial(field_names, model)
        raise BadRequest(f"{source}: {describe_invalid(exc.errors(), known=known)}") from None


def field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields of the model found at ``loc`` (its last part, the field, left out)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(str(part))
        current = _model_in(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or inside Optional, list or dict."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
