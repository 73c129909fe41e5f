"""TOSCA documents read and checked: their imports, node types, inputs, then tosca-parser's own
validation, with every problem said in the template's terms (its nodes, its inputs).

Order matters to the user: the version and the types are checked before the inputs, so that a
template primage cannot deploy is refused before it asks for a password. Imports of INDIGO's
published types (by their known URLs) get the definitions shipped in ``types/``; an import of
a file beside the template is read from the files the CLI sends with it; any other is refused,
naming it: nothing is fetched.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from toscaparser.common.exception import ExceptionCollector
from toscaparser.dataentity import DataEntity
from toscaparser.elements.nodetype import NodeType
from toscaparser.tosca_template import ToscaTemplate

from primage.templates import import_target
from primage.templates.functions import runtime_function
from primage.templates.own import declared_inputs
from primage.templates.problems import Problems

TYPES_FILE = Path(__file__).with_name("types") / "indigo_custom_types.yaml"
# The published INDIGO types, at any branch or tag: raw.githubusercontent.com or github.com/raw.
INDIGO_IMPORT = re.compile(r"indigo-dc/tosca-types/(?:raw/|blob/)?[\w.-]+/custom_types\.ya?ml$")
TYPE_SECTIONS = (
    "data_types", "capability_types", "artifact_types", "relationship_types", "node_types",
    "interface_types", "policy_types", "group_types",
)  # fmt: skip

APPLICATION = "tosca.nodes.Container.Application"
CHRONOS = "tosca.nodes.indigo.Container.Application.Docker.Chronos"
RUNTIMES = ("tosca.nodes.Container.Runtime", "tosca.nodes.indigo.Container.Runtime.Docker")
COMPUTE = "tosca.nodes.Compute"
STORAGE = ("tosca.nodes.BlockStorage", "tosca.nodes.indigo.OnedataSpace")
DEPLOYED = (APPLICATION, *RUNTIMES, COMPUTE, *STORAGE)
WHAT_PRIMAGE_DEPLOYS = (
    "primage deploys container applications (tosca.nodes.Container.Application.Docker, or "
    "INDIGO's Docker, Marathon and Chronos types) on a container runtime, with spaces as storage"
)
# INDIGO's other types (not shipped here) by what they provision, the first match winning.
CATEGORIES = (
    ("tosca.nodes.indigo.LRMS.", "a batch-system cluster (its front end and worker nodes)"),
    ("tosca.nodes.indigo.ElasticCluster", "an elastic cluster of virtual machines"),
    ("tosca.nodes.indigo.Helm.", "a Helm chart, on a Kubernetes cluster"),
    ("tosca.nodes.indigo.Kubernetes.", "a Helm chart, on a Kubernetes cluster"),
    ("tosca.nodes.indigo.Mesos", "a Mesos cluster"),
    ("tosca.nodes.indigo.Qcg.", "a job on an HPC site (QCG)"),
    ("tosca.nodes.indigo.Grid.", "a grid job"),
    ("tosca.nodes.indigo.Batch.", "a job on a batch system"),
    ("tosca.nodes.indigo.Compute", "virtual machines"),
    ("tosca.nodes.indigo.", "software the Infrastructure Manager installs on virtual machines"),
)
INSTEAD = {
    "virtual machines": "run your software in a container image (primage build) as an app",
    "a job on an HPC site (QCG)": "submit a batch job (primage job submit) to the Slurm executor",
    "a grid job": "submit a batch job (primage job submit)",
    "a job on a batch system": "submit a batch job (primage job submit)",
}
NODE_SECTIONS = (
    ("properties", dict), ("capabilities", dict), ("interfaces", dict), ("artifacts", dict),
    ("metadata", dict), ("requirements", list),
)  # fmt: skip
YAML_TYPES = ("list", "map", "integer", "float", "boolean")
# tosca-parser keeps its problems in one class-level list, which its function objects append to
# as well: one template at a time, from parsing to the last function evaluated (reentrant).
TOSCA_PARSER = threading.RLock()


@dataclass
class Parsed:
    template: ToscaTemplate
    values: dict[str, Any]  # every input's value: given, or its default
    # Outputs with an attribute: answered (or noted) by the caller, unseen by tosca-parser,
    # which refuses the whole template for an attribute its types do not declare.
    deferred_outputs: dict[str, Any]


def parse(document: dict[str, Any], inputs: Mapping[str, str], problems: Problems,
          files: Mapping[str, str]) -> Parsed:  # fmt: skip
    """The template, checked; every problem found so far refused at once."""
    version = document.get("tosca_definitions_version")
    if version not in ToscaTemplate.VALID_TEMPLATE_VERSIONS:
        raise problems.refuse(
            f"tosca_definitions_version '{version}' is not a TOSCA version; write "
            "tosca_simple_yaml_1_0 (or tosca_simple_yaml_1_2, tosca_simple_yaml_1_3)"
        )
    _check_shape(document, problems)
    problems.check()
    document = _with_imports(document, problems, files)
    _check_types(document, problems)
    problems.check()
    declared = (document.get("topology_template") or {}).get("inputs")
    values = _typed(declared, declared_inputs(declared, inputs, problems), problems)
    problems.check()
    given = {k: v for k, v in values.items() if k in inputs}
    topology = document.get("topology_template") or {}
    outputs = topology.get("outputs") or {}
    deferred = {
        name: output.get("value") if isinstance(output, dict) else output
        for name, output in outputs.items()
        if runtime_function(output)
    }
    if deferred:
        kept = {k: v for k, v in outputs.items() if k not in deferred}
        document = {**document, "topology_template": {**topology, "outputs": kept}}
    with _collecting() as collected:
        try:
            template = ToscaTemplate(yaml_dict_tpl=document, a_file=False, parsed_params=given)
        except Exception as exc:  # tosca-parser raises its collected problems, or its own bug
            for problem in collected() or [exc]:
                problems.add(plain(problem))
            problems.check()
            raise
    return Parsed(template, values, deferred)


@contextmanager
def _collecting() -> Iterator[Any]:
    with TOSCA_PARSER:
        try:
            yield lambda: list(ExceptionCollector.getExceptions())
        finally:
            ExceptionCollector.stop()
            ExceptionCollector.clear()


def plain(problem: BaseException) -> str:
    """tosca-parser's message without its class name, its tracebacks or 'Refer to…' hints."""
    if isinstance(problem, AttributeError | TypeError):  # tosca-parser met an odd shape
        return (
            "a section of the template has the wrong shape (a mapping or a list where it "
            "has a single value, or the reverse)"
        )
    lines = str(problem).strip().splitlines()
    text = lines[0].strip() if lines else "tosca-parser could not read the template"
    if isinstance(problem, KeyError) and len(text) > 1 and text[0] == text[-1] == "'":
        text = text[1:-1]  # a KeyError's message comes quoted
    return re.sub(r"\s*Refer to the definition to verify valid values\.?", "", text)


def _check_shape(document: dict[str, Any], problems: Problems) -> None:
    """The sections tosca-parser expects as mappings (or a list) are: it fails on others."""
    if not isinstance(document.get("imports") or [], list):
        problems.add("imports: a list of files (- URL, or - NAME: URL)")
    for section in TYPE_SECTIONS:
        if not isinstance(document.get(section) or {}, dict):
            problems.add(f"{section}: a mapping of each type's name to its definition")
    topology = document.get("topology_template")
    if not isinstance(topology, dict):
        problems.add("topology_template: a mapping with node_templates (and inputs, outputs)")
        return
    for section in ("inputs", "node_templates", "outputs"):
        entries = topology.get(section) or {}
        if not isinstance(entries, dict):
            problems.add(f"topology_template.{section}: a mapping of names to definitions")
            continue
        for name, entry in entries.items():
            if not isinstance(entry, dict) and section != "inputs":
                problems.add(f"{section[:-1].replace('_', ' ')} '{name}': a mapping of fields")
    nodes = topology.get("node_templates")
    for name, node in nodes.items() if isinstance(nodes, dict) else ():
        if not isinstance(node, dict):
            continue
        for key, kind in NODE_SECTIONS:
            if not isinstance(node.get(key) or kind(), kind):
                what = "a list" if kind is list else "a mapping"
                problems.add(f"node '{name}' {key}: {what}")


def _indigo_types() -> dict[str, Any]:
    """The shipped INDIGO definitions: read once, a copy each time (tosca-parser may write)."""
    return copy.deepcopy(_read_indigo_types())


@functools.cache
def _read_indigo_types() -> dict[str, Any]:
    return dict(yaml.safe_load(TYPES_FILE.read_text()))


def _with_imports(document: dict[str, Any], problems: Problems,
                  files: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    """The template with its imports' types merged in, its own last (they win)."""
    merged: dict[str, dict[str, Any]] = {section: {} for section in TYPE_SECTIONS}
    for entry in document.get("imports") or []:
        target = import_target(entry)
        if INDIGO_IMPORT.search(target):
            imported = _indigo_types()
        elif target in files:
            try:
                imported = yaml.safe_load(files[target])
            except yaml.YAMLError as exc:
                problems.add(f"import '{target}' is not YAML ({str(exc).splitlines()[0]})")
                continue
            if not isinstance(imported, dict):
                problems.add(f"import '{target}' is not a TOSCA definitions file")
                continue
        else:
            problems.add(
                f"import '{target}' cannot be fetched here: only INDIGO-DataCloud's types "
                "(https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types"
                ".yaml) are known; deploy from the template's folder, with the file beside it, "
                "or write its types into the template"
            )
            continue
        for section in TYPE_SECTIONS:
            merged[section].update(imported.get(section) or {})
    found = {k: v for k, v in document.items() if k != "imports"}
    found["topology_template"] = _whole_cpus_as_floats(document.get("topology_template"))
    for section in TYPE_SECTIONS:
        types = {**merged[section], **(document.get(section) or {})}
        if types:
            found[section] = types
    return found


def _whole_cpus_as_floats(topology: Any) -> Any:
    """``num_cpus: 1`` as ``1.0`` where INDIGO's runtime types say float: templates write both."""
    if not isinstance(topology, dict):
        return topology
    topology = copy.deepcopy(topology)
    for node in (topology.get("node_templates") or {}).values():
        capabilities = node.get("capabilities") if isinstance(node, dict) else None
        for capability in (capabilities or {}).values():
            props = capability.get("properties") if isinstance(capability, dict) else None
            if isinstance(props, dict) and type(props.get("num_cpus")) is int:
                props["num_cpus"] = float(props["num_cpus"])
    for definition in (topology.get("inputs") or {}).values():
        float_type = isinstance(definition, dict) and definition.get("type") == "float"
        if float_type and type(definition.get("default")) is int:
            definition["default"] = float(definition["default"])
    return topology


def category(kind: str) -> str | None:
    """What an INDIGO type that primage does not ship provisions, by its name."""
    return next((what for prefix, what in CATEGORIES if kind.startswith(prefix)), None)


def _provisions(found: list[tuple[str, str, str]]) -> str:
    """One refusal for the nodes that provision what primage does not: each, then instead."""
    listed = "; ".join(f"node '{name}' ({kind}) provisions {what}" for name, kind, what in found)
    instead = INSTEAD.get(found[0][2], "deploy its services as container applications")
    return f"{listed}. {WHAT_PRIMAGE_DEPLOYS}: {instead}"


def _check_types(document: dict[str, Any], problems: Problems) -> None:
    """Every node's type known, and one that primage deploys (or derived from one)."""
    nodes = (document.get("topology_template") or {}).get("node_templates")
    if not isinstance(nodes, dict) or not nodes:
        problems.add("topology_template.node_templates is empty: nothing to deploy")
        return
    custom: dict[str, Any] = {}
    for section in TYPE_SECTIONS:
        custom.update(document.get(section) or {})
    kinds: dict[str, NodeType] = {}
    provisions: list[tuple[str, str, str]] = []  # (node, type, what it provisions)
    for name, node in nodes.items():
        kind = node.get("type") if isinstance(node, dict) else None
        if not isinstance(kind, str):
            problems.add(f"node '{name}' has no type")
            continue
        if kind not in custom and category(kind) is not None:
            provisions.append((name, kind, category(kind) or ""))
            continue
        with _collecting():
            try:
                kinds[name] = NodeType(kind, custom)
            except Exception:  # an unknown type, reported through tosca-parser's collector
                problems.add(
                    f"node '{name}' has unknown type '{kind}' (define it under node_types, "
                    "or import the file that does)"
                )
    has_application = any(k.is_derived_from(APPLICATION) for k in kinds.values())
    for name, found in kinds.items():
        if not any(found.is_derived_from(root) for root in DEPLOYED):
            problems.add(
                f"node '{name}' has type {found.type}, which primage does not deploy; "
                f"{WHAT_PRIMAGE_DEPLOYS}"
            )
        elif not has_application and found.is_derived_from(COMPUTE):
            provisions.append((name, found.type, "virtual machines"))
    if provisions:
        problems.add(_provisions(provisions))


def _typed(declared: Any, values: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """Each input's value as its declared type: text from the command line parsed as YAML
    for lists and maps, and checked as TOSCA checks it (integers, sizes, …)."""
    typed: dict[str, Any] = {}
    for name, value in values.items():
        definition = declared.get(name) if isinstance(declared, dict) else None
        kind = definition.get("type", "string") if isinstance(definition, dict) else "string"
        if value is None:
            typed[name] = None
            continue
        if kind != "string" and isinstance(value, str):  # from the command line: YAML
            try:
                value = yaml.safe_load(value) if kind in YAML_TYPES else value
            except yaml.YAMLError:
                problems.add(f"input '{name}': '{value}' is not of type {kind} (write it as YAML)")
                continue
        if kind == "float" and type(value) is int:
            value = float(value)
        try:
            typed[name] = DataEntity.validate_datatype(kind, value)
        except Exception:  # tosca-parser's ValueError or its own type errors
            problems.add(f"input '{name}': '{value}' is not of type {kind}")
    return typed
