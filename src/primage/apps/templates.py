"""Templates in, an :class:`AppSpec` out: the project's own YAML, or TOSCA (``apps/tosca.py``).

The own format is the spec's fields under ``app:``, with optional ``inputs:`` that a deployment
fills (``--input space=scans``) and the template uses as ``{get_input: space}``, as TOSCA does::

    inputs:
      space: {description: the space to work in, default: samples}
    app:
      name: notebook
      command: jupyter server --port={port} --ServerApp.base_url={base_url} ...
      spaces: [{get_input: space}]
      workdir: {get_input: space}

A YAML syntax error is refused with its line and column; a missing input or a field the spec does
not know, naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from primage.documents import parse_yaml
from primage.errors import BadRequest
from primage.models.apps import AppSpec, app_from


def declared_inputs(declared: Any, given: Mapping[str, str], source: str) -> dict[str, Any]:
    """The inputs' values: those given, else their defaults (None for one declared
    ``required: false``, as TOSCA allows); unknown or missing ones refused."""
    if declared is None:
        declared = {}
    if not isinstance(declared, dict):
        raise BadRequest(f"{source}: inputs must map each input's name to its definition")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise BadRequest(f"{source}: unknown input {', '.join(unknown)} (the template's: {known})")
    values: dict[str, Any] = {}
    for name, definition in declared.items():
        if name in given:
            values[name] = given[name]
        elif isinstance(definition, dict) and "default" in definition:
            values[name] = definition["default"]
        elif isinstance(definition, dict) and definition.get("required") is False:
            values[name] = None
        else:
            raise BadRequest(f"{source}: input '{name}' is required: --input {name}=VALUE")
    return values


def resolve(node: Any, values: Mapping[str, Any], source: str) -> Any:
    """``node`` with every ``{get_input: NAME}`` replaced by the input's value."""
    if isinstance(node, dict):
        if set(node) == {"get_input"}:
            name = node["get_input"]
            if name not in values:
                raise BadRequest(f"{source}: get_input '{name}' names no input of the template")
            return values[name]
        return {key: resolve(value, values, source) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, values, source) for item in node]
    return node


def load(text: str, inputs: Mapping[str, str], source: str = "template") -> AppSpec:
    """The app a template describes, with ``inputs`` filled in."""
    document = parse_yaml(text, source)
    if not isinstance(document, dict):
        raise BadRequest(f"{source}: a template is a mapping (app:, inputs:, or TOSCA)")
    if "tosca_definitions_version" in document:
        from primage.apps.tosca import load as load_tosca  # heavy: loaded for TOSCA only

        return load_tosca(document, inputs, source)
    extra = sorted(set(document) - {"inputs", "app"})
    if extra or "app" not in document:
        raise BadRequest(
            f"{source}: a template has 'app:' (the app's fields) and optional 'inputs:'"
            + (f"; not {', '.join(extra)}" if extra else "")
        )
    values = declared_inputs(document.get("inputs"), inputs, source)
    return app_from(resolve(document["app"], values, source), source)
