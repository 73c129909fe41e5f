"""The project's own template format: an app spec's fields under ``app:``, with ``inputs:``.

Optional ``inputs:`` are filled by a deployment (``--input space=scans``) and used as
``{get_input: space}``, as TOSCA does::

    inputs:
      space: {description: the space to work in, default: samples}
    app:
      name: notebook
      command: jupyter server --port={port} --ServerApp.base_url={base_url} ...
      spaces: [{get_input: space}]
      workdir: {get_input: space}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from primage.templates.problems import Problems


def declared_inputs(declared: Any, given: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """The inputs' values: those given, else their defaults (None for one declared
    ``required: false``, as TOSCA allows); each unknown or missing one a problem."""
    if declared is None:
        declared = {}
    if not isinstance(declared, dict):
        problems.add("inputs must map each input's name to its definition")
        return {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        problems.add(f"unknown input {', '.join(unknown)} (the template's: {known})")
    values: dict[str, Any] = {}
    for name, definition in declared.items():
        if name in given:
            values[name] = given[name]
        elif isinstance(definition, dict) and "default" in definition:
            values[name] = definition["default"]
        elif isinstance(definition, dict) and definition.get("required") in (False, "no"):
            values[name] = None
        else:
            problems.add(f"input '{name}' is required: --input {name}=VALUE")
    return values


def resolve(node: Any, values: Mapping[str, Any], problems: Problems) -> Any:
    """``node`` with every ``{get_input: NAME}`` replaced by the input's value."""
    if isinstance(node, dict):
        if set(node) == {"get_input"}:
            name = node["get_input"]
            if name not in values:
                problems.add(f"get_input '{name}' names no input of the template")
            return values.get(name)
        return {key: resolve(value, values, problems) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, values, problems) for item in node]
    return node


def render(document: dict[str, Any], inputs: Mapping[str, str], problems: Problems) -> Any:
    """The app's fields, inputs filled in (validated by the caller)."""
    extra = sorted(set(document) - {"inputs", "app"})
    if extra or "app" not in document:
        raise problems.refuse(
            "a template has 'app:' (the app's fields) and optional 'inputs:'"
            + (f"; not {', '.join(extra)}" if extra else "")
        )
    values = declared_inputs(document.get("inputs"), inputs, problems)
    problems.check()
    found = resolve(document["app"], values, problems)
    problems.check()
    return found
