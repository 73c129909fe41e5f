"""RADL (the Infrastructure Manager's language) → an app spec, as IM's Kubernetes connector
reads a container: one deployed ``system`` whose ``disk.0.image.url`` is ``docker://IMAGE``.

==============================  ===============================================
RADL                            app spec
==============================  ===============================================
``system NAME``                 ``name`` (``_`` → ``-``)
``disk.0.image.url``            ``image`` (``docker://`` taken off)
``command``                     ``command``
``environment.variables``       ``env`` (``['K=V', …]`` or ``'K=V,K2=V2'``)
``cpu.count``                   ``resources.cpus`` (whole cores, rounded up)
``memory.size``                 ``resources.memory``
``gpu.count``                   ``resources.gpus``
``outports`` of its network     ``port`` (the first; the others noted)
``disk.N.mount_path``           ``spaces``: ``/spaces/SPACE`` mounts SPACE
(always)                        ``strip_prefix`` (``templates.render``): served at /
==============================  ===============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from radl.radl import RADLParseException, system
from radl.radl_parse import parse_radl

from primage.templates import Draft
from primage.templates.community import SPACES, app_name, primary_port, whole_cores
from primage.templates.problems import Problems

DOCKER = "docker://"
MAX_DISKS = 64


def render(text: str, inputs: Mapping[str, str], problems: Problems) -> Draft:
    if inputs:
        raise problems.refuse(f"RADL has no inputs; drop {', '.join(sorted(inputs))}")
    try:
        document = parse_radl(text)
    except RADLParseException as exc:
        raise problems.refuse(f"not valid RADL: {exc}") from None
    except Exception as exc:  # the parser's own checks (a feature of the wrong kind…)
        raise problems.refuse(f"not valid RADL: {exc}") from None
    deployed = [d.id for d in document.deploys] or [s.name for s in document.systems]
    systems = [s for s in document.systems if s.name in deployed]
    if len(systems) != 1:
        names = ", ".join(s.name for s in systems) or "none"
        raise problems.refuse(
            f"a RADL template deploys one system (a container); this one deploys {names}"
        )
    found = systems[0]
    image = str(found.getValue("disk.0.image.url") or "")
    if not image.startswith(DOCKER):
        raise problems.refuse(
            f"system '{found.name}' boots a virtual machine ({image or 'no disk.0.image.url'}); "
            f"primage runs containers: set disk.0.image.url = '{DOCKER}IMAGE'"
        )
    notes: list[str] = []
    try:
        fields = _fields(document, found, image, notes, problems)
    except (ValueError, TypeError, RADLParseException) as exc:  # a value of the wrong kind
        raise problems.refuse(f"system '{found.name}': {exc}") from None
    problems.check()
    return Draft("app", {k: v for k, v in fields.items() if v not in (None, {}, [])}, notes)


def _fields(document: Any, found: system, image: str, notes: list[str],
            problems: Problems) -> dict[str, Any]:  # fmt: skip
    fields: dict[str, Any] = {
        "name": app_name(found.name),
        "image": image.removeprefix(DOCKER),
        "command": found.getValue("command"),
        "env": _environment(found.getValue("environment.variables"), problems),
        "spaces": _spaces(found, problems),
        "resources": _resources(found, notes),
    }
    ports = [p.get_local_port() for p in _outports(document, found)]
    fields["port"] = primary_port(ports, None, fields["name"], notes)
    return fields


def _environment(value: Any, problems: Problems) -> dict[str, str]:
    if value is None:
        return {}
    items = value if isinstance(value, list) else str(value).split(",")
    env = {}
    for item in items:
        key, sep, val = str(item).partition("=")
        if not sep or not key.strip():
            problems.add(f"environment.variables: '{item}' is not KEY=VALUE")
            continue
        env[key.strip()] = val
    return env


def _spaces(found: system, problems: Problems) -> list[str]:
    spaces = []
    for index in range(1, MAX_DISKS):
        path = found.getValue(f"disk.{index}.mount_path")
        if path is None:
            continue
        space = str(path).removeprefix(SPACES)
        if not str(path).startswith(SPACES) or "/" in space or not space:
            problems.add(
                f"disk.{index}.mount_path '{path}': primage mounts spaces at {SPACES}<space>; "
                f"write '{SPACES}SPACE'"
            )
            continue
        spaces.append(space)
    return spaces


def _resources(found: system, notes: list[str]) -> dict[str, int]:
    resources = {}
    cpus = found.getValue("cpu.count")
    if cpus is not None:
        resources["cpus"] = whole_cores(cpus, "cpu.count", notes)
    memory = _number(found, "memory.size")
    if memory is not None:
        resources["memory"] = int(memory)
    gpus = _number(found, "gpu.count")
    if gpus:
        resources["gpus"] = int(gpus)
    return resources


def _number(found: system, feature: str) -> float | None:
    value = found.getValue(feature)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{feature} '{value}' is not a number") from None


def _outports(document: Any, found: system) -> list[Any]:
    """The outports of the networks the system is connected to."""
    names = {
        found.getValue(f"net_interface.{i}.connection") for i in range(found.getNumNetworkIfaces())
    }
    ports: list[Any] = []
    for network in document.networks:
        if network.id in names:
            ports.extend(network.getOutPorts() or [])
    return ports
