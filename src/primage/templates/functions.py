"""TOSCA's functions evaluated where a template uses them: ``get_input``, ``get_property``,
``concat`` and ``token`` (through tosca-parser's function objects); ``get_attribute`` and
``get_operation_output`` have no value before a deployment runs (:class:`NotYetKnown`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from toscaparser import functions as tosca

RUNTIME_FUNCTIONS = ("get_attribute", "get_operation_output")


class NotYetKnown(Exception):
    """A value that exists once the deployment runs (an attribute), not when it is made."""

    def __init__(self, name: str, args: Any) -> None:
        super().__init__(shown({name: args}))


class Evaluator:
    """The values of one template's functions, its inputs' values given. An entry of a map or
    a list known only once deployed is left out, and said in :attr:`left_out`."""

    def __init__(self, topology: Any, inputs: Mapping[str, Any]) -> None:
        self.topology = topology
        self.inputs = inputs
        self.left_out: list[tuple[str, str]] = []  # (where, the function)

    def value(self, raw: Any, context: Any, where: str) -> Any:
        """``raw`` with every function in it (as a whole, or nested anywhere) evaluated."""
        if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in RUNTIME_FUNCTIONS:
            raise NotYetKnown(*next(iter(raw.items())))  # tosca-parser would check it strictly
        if isinstance(raw, tosca.GetAttribute | tosca.GetOperationOutput):
            raise NotYetKnown(raw.name, raw.args)
        found = tosca.get_function(self.topology, context, raw)
        if isinstance(found, tosca.Function):
            return self._call(found, context, where)
        if isinstance(raw, dict):
            entries = {}
            for key, item in raw.items():
                try:
                    entries[key] = self.value(item, context, f"{where}.{key}")
                except NotYetKnown as unknown:
                    self.left_out.append((f"{where}.{key}", str(unknown)))
            return entries
        if isinstance(raw, list):
            items = []
            for index, item in enumerate(raw):
                try:
                    items.append(self.value(item, context, f"{where}[{index}]"))
                except NotYetKnown as unknown:
                    self.left_out.append((f"{where}[{index}]", str(unknown)))
            return items
        return raw

    def _call(self, function: tosca.Function, context: Any, where: str) -> Any:
        if isinstance(function, tosca.GetInput):
            return self.inputs.get(function.input_name)
        if isinstance(function, tosca.GetProperty):
            return self.value(function.result(), context, where)
        if isinstance(function, tosca.Concat):
            return "".join(_text(self.value(arg, context, where)) for arg in function.args)
        if isinstance(function, tosca.Token):
            text, separators, index = function.args[0], function.args[1], function.args[2]
            parts = re.split(f"[{re.escape(separators)}]", _text(self.value(text, context, where)))
            return parts[index] if -len(parts) <= index < len(parts) else ""
        raise NotYetKnown(function.name, function.args)


def runtime_function(raw: Any) -> bool:
    """Whether ``raw`` is, or holds anywhere, a function known only once deployed."""
    if isinstance(raw, dict):
        if len(raw) == 1 and next(iter(raw)) in RUNTIME_FUNCTIONS:
            return True
        return any(runtime_function(v) for v in raw.values())
    if isinstance(raw, list):
        return any(runtime_function(v) for v in raw)
    return False


def shown(raw: Any) -> str:
    """A function as a template writes it, in flow YAML."""
    import yaml

    return str(yaml.safe_dump(raw, default_flow_style=True, width=10**6)).strip()


def _text(value: Any) -> str:
    return "" if value is None else str(value)
