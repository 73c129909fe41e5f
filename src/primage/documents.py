"""The YAML and JSON documents users write (job files, app templates), parsed so that a syntax
error names the line and column, as the editor shows them."""

from __future__ import annotations

import json
from typing import Any

from primage.errors import BadRequest


def parse_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise BadRequest(f"{source}: {where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise BadRequest(f"{source}: not YAML: {exc}") from None


def parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{source}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def parse(text: str, source: str) -> Any:
    """A ``.json`` file as JSON, anything else as YAML (of which JSON is a part)."""
    return parse_json(text, source) if source.endswith(".json") else parse_yaml(text, source)
