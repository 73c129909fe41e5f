"""Templates in, a spec out: what an application or a job template becomes, before it runs.

Three languages, one result (:class:`Rendered`): the project's own YAML (``own.py``), TOSCA —
the Simple Profile's container types and INDIGO-DataCloud's, as PRIMAGE's partners write them
(``tosca.py``, ``containers.py``) — and the Infrastructure Manager's RADL (``radl.py``). A
container application becomes an :class:`AppSpec`; an INDIGO Chronos job a :class:`JobSpec`.
What a template says that the platform does not do is a note, never dropped in silence; what
it cannot do is refused with every problem found at once (``problems.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from primage.documents import parse_yaml
from primage.errors import BadRequest
from primage.models.apps import AppSpec, app_from
from primage.models.jobs import JobSpec, spec_from
from primage.templates.problems import Problems

Kind = Literal["app", "job"]


@dataclass
class Rendered:
    """What a template becomes: an app or a job spec, and what was left out of it and why."""

    kind: Kind
    spec: AppSpec | JobSpec
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # TOSCA outputs known before it runs


@dataclass
class Draft:
    """A template's result before validation: the spec's fields."""

    kind: Kind
    fields: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


def render(
    text: str,
    inputs: Mapping[str, str],
    source: str = "template",
    *,
    name: str | None = None,
    files: Mapping[str, str] | None = None,
) -> Rendered:
    """The spec ``text`` describes with ``inputs`` filled in; ``name`` renames it; ``files``
    are the texts of the template's relative imports (the files beside it)."""
    problems = Problems(source)
    community = True  # a TOSCA or RADL template, written for other platforms
    if source.endswith(".radl") or _looks_like_radl(text):
        from primage.templates.radl import render as render_radl

        draft = render_radl(text, inputs, problems)
    else:
        document = parse_yaml(text, source)
        if not isinstance(document, dict):
            raise BadRequest(f"{source}: a template is a mapping (app:, inputs:, or TOSCA)")
        if "tosca_definitions_version" in document:
            from primage.templates.containers import render as render_tosca  # heavy: on use

            draft = render_tosca(document, inputs, problems, files or {})
        else:
            from primage.templates import own

            draft, community = Draft("app", own.render(document, inputs, problems)), False
    if community and draft.kind == "app":  # its container expects to be served at /
        draft.fields.setdefault("strip_prefix", True)
    if name is not None:
        draft.fields["name"] = name
    validate = app_from if draft.kind == "app" else spec_from
    spec = validate(draft.fields, source)
    return Rendered(draft.kind, spec, draft.notes, draft.outputs)


def render_app(text: str, inputs: Mapping[str, str], source: str, **kwargs: Any) -> Rendered:
    """An application template, or a refusal saying what the template is instead."""
    found = render(text, inputs, source, **kwargs)
    if found.kind != "app":
        raise BadRequest(
            f"{source}: this template is a batch job (INDIGO Chronos), not an application: "
            f"run it with 'primage job submit {source}'"
        )
    return found


def import_target(entry: Any) -> str:
    """What a TOSCA ``imports`` entry names: ``- FILE``, ``- NAME: FILE``, ``- NAME: {file: …}``."""
    target = next(iter(entry.values()), "") if isinstance(entry, dict) else entry
    return str(target.get("file", "") if isinstance(target, dict) else target)


def _looks_like_radl(text: str) -> bool:
    """RADL's top-level words (``system NAME (``, ``network NAME (``, ``deploy NAME N``)."""
    import re

    return re.search(r"^\s*(system|network)\s+[\w.-]+\s*\(", text, re.MULTILINE) is not None
