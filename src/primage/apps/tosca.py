"""TOSCA Simple Profile templates → an :class:`AppSpec`, parsed and validated by tosca-parser.

A template deploys one application node, of a container application type:

- ``tosca.nodes.Container.Application`` / ``…Application.Docker`` (the standard types): the image
  is its ``tosca.artifacts.Deployment.Image.Container.Docker`` artifact; the resources are the
  ``host`` capability (``num_cpus``, ``mem_size``) of the ``tosca.nodes.Compute`` its runtime is
  hosted on;
- ``tosca.nodes.indigo.Container.Application.Docker`` (INDIGO-DataCloud, as the original PRIMAGE
  platform used): ``command``, ``environment`` and ``publish_ports`` (the first one's ``source``
  is the app's port), hosted on a ``tosca.nodes.indigo.Container.Runtime.Docker`` whose ``host``
  capability holds ``num_cpus``, ``mem_size`` and ``volumes`` (spaces: ``SPACE`` or ``SPACE:ro``).

What TOSCA has no word for (health path, who may open it, idle timeout…) comes from the
application node's ``metadata`` (the spec's field names). ``inputs`` are filled from the
deployment (``get_input``); tosca-parser checks their types and that required ones are given.
Other node types are refused, naming them. ``imports`` of the INDIGO types (by name or URL) get
the definitions shipped beside this module (``tosca_types/indigo.yaml``): nothing is fetched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toscaparser.common.exception import ExceptionCollector, TOSCAException, ValidationError
from toscaparser.elements.nodetype import NodeType
from toscaparser.nodetemplate import NodeTemplate
from toscaparser.tosca_template import ToscaTemplate
from toscaparser.utils.yamlparser import load_yaml

from primage.apps.templates import declared_inputs, resolve
from primage.errors import BadRequest
from primage.models.apps import AppSpec, app_from

TYPES_FILE = Path(__file__).with_name("tosca_types") / "indigo.yaml"
APPLICATION = "tosca.nodes.Container.Application"
IMAGE_ARTIFACT = "tosca.artifacts.Deployment.Image.Container.Docker"
SUPPORTED = (
    APPLICATION,
    "tosca.nodes.Container.Runtime",
    "tosca.nodes.indigo.Container.Runtime.Docker",
    "tosca.nodes.Compute",
)
METADATA_FIELDS = (
    "health_path", "strip_prefix", "replicas", "workdir", "idle_timeout", "startup_timeout",
    "port",
)  # fmt: skip


def _with_types(document: dict[str, Any], source: str) -> dict[str, Any]:
    """The template with the INDIGO types inlined in place of its imports of them."""
    document = copy.deepcopy(document)
    for entry in document.pop("imports", None) or []:
        target = next(iter(entry.values())) if isinstance(entry, dict) else entry
        target = target.get("file", "") if isinstance(target, dict) else str(target)
        if "indigo" not in target and "custom_types" not in target:
            raise BadRequest(
                f"{source}: import '{target}' cannot be fetched here; only the INDIGO-DataCloud "
                "types are known (inline your own type definitions in the template)"
            )
    shipped = load_yaml(str(TYPES_FILE), True)
    for section in ("capability_types", "node_types"):
        document[section] = {**shipped[section], **(document.get(section) or {})}
    return document


def _check_types(document: dict[str, Any], source: str) -> None:
    """Every node's type known, and one primage deploys (or derived from one), by name."""
    nodes = (document.get("topology_template") or {}).get("node_templates") or {}
    custom = {**(document.get("node_types") or {}), **(document.get("capability_types") or {})}
    for name, node in nodes.items():
        kind = node.get("type") if isinstance(node, dict) else None
        try:
            found = NodeType(kind, custom)
        except Exception:  # tosca-parser reports an unknown type through its collector
            raise BadRequest(f"{source}: node '{name}' has unknown type '{kind}'") from None
        finally:
            ExceptionCollector.stop()
        if not any(found.is_derived_from(supported) for supported in SUPPORTED):
            raise BadRequest(
                f"{source}: node '{name}' has type {kind}, which primage does not deploy; "
                f"supported: {', '.join(SUPPORTED)} and types derived from them"
            )


def _parse(document: dict[str, Any], inputs: Mapping[str, str], source: str) -> ToscaTemplate:
    document = _with_types(document, source)
    _check_types(document, source)
    try:
        return ToscaTemplate(yaml_dict_tpl=document, a_file=False, parsed_params=dict(inputs))
    except (ValidationError, TOSCAException) as exc:
        raise BadRequest(f"{source}: not a valid TOSCA template: {_first_problem(exc)}") from None
    finally:
        ExceptionCollector.stop()


def _first_problem(exc: Exception) -> str:
    """tosca-parser's error list without its tracebacks: its first problems, on one line."""
    lines = [line.strip() for line in str(exc).splitlines()]
    found = [ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception"))]
    return "; ".join(found[:3]) or (lines[-1] if lines else str(exc))


def _application(template: ToscaTemplate, source: str) -> NodeTemplate:
    apps = [n for n in template.nodetemplates or [] if n.is_derived_from(APPLICATION)]
    if len(apps) != 1:
        raise BadRequest(
            f"{source}: a template deploys one container application "
            f"({APPLICATION} or a type derived from it); this one has {len(apps)}"
        )
    return apps[0]


def _hosts(node: NodeTemplate, template: ToscaTemplate) -> list[NodeTemplate]:
    """The chain of nodes ``node`` is hosted on: its runtime, then that runtime's Compute."""
    by_name = {n.name: n for n in template.nodetemplates}
    found: list[NodeTemplate] = []
    while True:
        names = [r["host"] for r in node.requirements or [] if isinstance(r, dict) and "host" in r]
        name = names[0] if names else None
        name = name.get("node") if isinstance(name, dict) else name
        if name not in by_name or by_name[name] in found:
            return found
        node = by_name[name]
        found.append(node)


def _host_properties(chain: list[NodeTemplate]) -> dict[str, Any]:
    """num_cpus, mem_size, volumes: the first the hosting chain says."""
    found: dict[str, Any] = {}
    for node in chain:
        capability = (node.get_capabilities() or {}).get("host")
        if capability is None:
            continue
        for prop in capability.get_properties_objects():
            if prop.value is not None:
                found.setdefault(prop.name, prop.value)
    return found


def _image(node: NodeTemplate, values: Mapping[str, Any], source: str) -> str | None:
    artifacts = resolve(node.entity_tpl.get("artifacts") or {}, values, source)
    for name, artifact in artifacts.items():
        if isinstance(artifact, str):
            return artifact
        if artifact.get("type", IMAGE_ARTIFACT) != IMAGE_ARTIFACT:
            raise BadRequest(f"{source}: artifact '{name}' is not a {IMAGE_ARTIFACT}")
        return str(artifact.get("file"))
    return None


def _mount(volume: str, source: str) -> str:
    """``SPACE``, ``SPACE:ro`` or INDIGO's ``SPACE:/spaces/SPACE[:ro]`` → ``SPACE[:ro]``."""
    parts = volume.split(":")
    if len(parts) >= 2 and parts[1].startswith("/"):
        if parts[1] != f"/spaces/{parts[0]}":
            raise BadRequest(
                f"{source}: volume '{volume}': spaces are mounted at /spaces/<space>; "
                f"write '{parts[0]}' or '{parts[0]}:ro'"
            )
        parts.pop(1)
    return ":".join(parts)


def _memory(size: Any) -> int | None:
    from toscaparser.elements.scalarunit import ScalarUnit_Size

    if size is None:
        return None
    return int(ScalarUnit_Size(size).get_num_from_scalar_unit("B"))


def load(document: dict[str, Any], inputs: Mapping[str, str], source: str) -> AppSpec:
    declared = (document.get("topology_template") or {}).get("inputs")
    values = declared_inputs(declared, inputs, source)
    template = _parse(document, inputs, source)
    node = _application(template, source)
    props = {p.name: p.value for p in node.get_properties_objects()}
    props = resolve(props, values, source)
    host = resolve(_host_properties(_hosts(node, template)), values, source)
    ports = props.get("publish_ports") or []
    metadata = {k: v for k, v in (node.entity_tpl.get("metadata") or {}).items()}
    unknown = sorted(set(metadata) - {*METADATA_FIELDS, "access", "access_group"})
    if unknown:
        raise BadRequest(
            f"{source}: node '{node.name}': metadata {', '.join(unknown)} is not an app "
            f"field; known: {', '.join((*METADATA_FIELDS, 'access', 'access_group'))}"
        )
    spec: dict[str, Any] = {
        "name": node.name,
        "image": _image(node, values, source),
        "command": props.get("command"),
        "env": {k: str(v) for k, v in (props.get("environment") or {}).items()},
        "spaces": [_mount(str(v), source) for v in host.get("volumes") or []],
        "resources": {
            k: v
            for k, v in (("cpus", host.get("num_cpus")), ("memory", _memory(host.get("mem_size"))))
            if v is not None
        },
        **{k: v for k, v in metadata.items() if k in METADATA_FIELDS},
    }
    if ports and "port" not in spec:
        spec["port"] = ports[0].get("source") or ports[0].get("target")
    if "access" in metadata:
        spec["access"] = {"who": metadata["access"], "group": metadata.get("access_group")}
    return app_from({k: v for k, v in spec.items() if v is not None}, source)
