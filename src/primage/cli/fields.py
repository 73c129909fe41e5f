"""A schema's fields as a list to read (``job spec``, ``app spec``): name, type, default, meaning.

Nested objects are flattened to dotted names (``resources.cpus``), lists of objects to
``spaces[].path``; ``--json`` on those commands gives the JSON Schema itself.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from typing import Any

import typer


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return dict(defs[node["$ref"].rsplit("/", 1)[-1]])
    return node


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node = _resolve(node, defs)
    if "anyOf" in node:
        kinds = [_type(n, defs) for n in node["anyOf"] if n.get("type") != "null"]
        return " or ".join(kinds) or "null"
    if "enum" in node:
        return "|".join(str(v) for v in node["enum"])
    if node.get("type") == "array":
        return f"list of {_type(node.get('items', {}), defs)}"
    if node.get("type") == "object" and "properties" not in node:
        return "mapping"
    return str(node.get("title") if "properties" in node else node.get("type", "any"))


def _object(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a field holds, directly, as an option or as list items."""
    node = _resolve(node, defs)
    for option in node.get("anyOf", []):
        found = _object(option, defs)
        if found is not None:
            return found
    if node.get("type") == "array":
        return _object(node.get("items", {}), defs)
    return node if "properties" in node else None


def rows(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(name, type and default, description) of each field, nested fields after their parent."""
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    for name, node in schema.get("properties", {}).items():
        kind = _type(node, defs)
        if name in required:
            kind += ", required"
        elif "default" in node and node["default"] not in (None, [], {}):
            kind += f" = {json.dumps(node['default'])}"
        yield prefix + name, kind, node.get("description", "")
        inner = _object(node, defs)
        if inner is not None:
            mark = "[]" if _resolve(node, defs).get("type") == "array" else ""
            yield from rows({**inner, "$defs": defs}, f"{prefix}{name}{mark}.")


def print_fields(schema: dict[str, Any]) -> None:
    width = min(shutil.get_terminal_size((100, 24)).columns, 100)
    if schema.get("description"):
        typer.echo(textwrap.fill(" ".join(schema["description"].split()), width) + "\n")
    for name, kind, description in rows(schema):
        typer.echo(f"{name}  ({kind})")
        if description:
            text = " ".join(description.split())
            typer.echo(textwrap.fill(text, width, initial_indent="    ", subsequent_indent="    "))


def print_schema(schema: dict[str, Any], as_json: bool) -> None:
    """A ``spec`` command's output: the field list, or with ``--json`` the JSON Schema."""
    if as_json:
        typer.echo(json.dumps(schema, indent=2))
    else:
        print_fields(schema)
