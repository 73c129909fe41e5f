"""A TOSCA topology of containers → the fields of an app spec (or, for INDIGO's Chronos, a job).

The application node is the one node derived from ``tosca.nodes.Container.Application``; the
nodes it is hosted on (a container runtime, then perhaps a ``tosca.nodes.Compute``) hold its
resources and, INDIGO's way, its ports and volumes in their ``host`` capability. The mapping
table is in docs/deploy-an-application.md; whatever a template says that has no meaning here is
a note in the result, never dropped in silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from toscaparser.nodetemplate import NodeTemplate

from primage.templates import Draft
from primage.templates.community import SPACES, app_name, primary_port, whole_cores
from primage.templates.functions import Evaluator, NotYetKnown, shown
from primage.templates.problems import Problems
from primage.templates.tosca import APPLICATION, CHRONOS, STORAGE, TOSCA_PARSER, parse, plain

IMAGE_ARTIFACT = "tosca.artifacts.Deployment.Image.Container.Docker"
METADATA_FIELDS = (
    "health_path", "strip_prefix", "replicas", "workdir", "idle_timeout", "startup_timeout",
    "port",
)  # fmt: skip
ACCESS_FIELDS = ("access", "access_group")
# An output naming one of these attributes of the application is its address: the app's URL.
ADDRESS_ATTRIBUTES = ("load_balancer_ips", "public_address", "ip_address", "endpoint", "url")
# Properties that mean something to Marathon, Chronos or Docker and nothing here, with why.
IGNORED = {
    "uris": "files are not fetched into the container; put them in a space and mount it",
    "labels": "labels steer Marathon's load balancer; the platform's proxy serves the app",
    "constraints": "placement constraints are Marathon's; the executor places the work",
    "privileged": "primage runs no privileged container",
    "force_pull_image": "the image is pulled once and pinned by its digest at deploy",
    "enable_https": "the platform's proxy serves the app (HTTPS is the platform's front door)",
    "epsilon": "a Chronos start window; the job starts when submitted",
}


@dataclass
class Node:
    """The application node read: the spec's shared fields, its evaluated properties, and the
    ports it and its hosts publish."""

    fields: dict[str, Any]
    props: dict[str, Any] = field(default_factory=dict)
    published: list[Any] = field(default_factory=list)


class Mapper:
    """One parsed template's application (or job) node, read into a spec's fields."""

    def __init__(self, document: dict[str, Any], inputs: Mapping[str, str], problems: Problems,
                 files: Mapping[str, str]) -> None:  # fmt: skip
        self.problems = problems
        self.notes: list[str] = []
        parsed = parse(document, inputs, problems, files)
        self.template = parsed.template
        self.deferred = parsed.deferred_outputs
        self.evaluate = Evaluator(self.template.topology_template, parsed.values)
        self.nodes = {n.name: n for n in self.template.nodetemplates or []}

    # -- values ----------------------------------------------------------------------------------

    def value(self, raw: Any, node: NodeTemplate, where: str) -> Any:
        """``raw`` evaluated; a value known only once deployed is noted and left out (None)."""
        try:
            return self.evaluate.value(raw, node, where)
        except NotYetKnown as unknown:
            self.evaluate.left_out.append((where, str(unknown)))
        except Exception as exc:  # a function tosca-parser cannot resolve (a wrong path)
            self.problems.add(f"{where}: cannot evaluate it ({plain(exc)})")
        return None

    def left_out(self) -> list[str]:
        return [
            f"{where}: {function} has no value before the deployment runs; left out"
            for where, function in self.evaluate.left_out
        ]

    def properties(self, node: NodeTemplate) -> dict[str, Any]:
        found = {}
        for prop in node.get_properties_objects():
            value = self.value(prop.value, node, f"node '{node.name}' property {prop.name}")
            if value is not None:
                found[prop.name] = value
        return found

    def written(self, node: NodeTemplate) -> dict[str, Any]:
        """The properties the template itself writes (not the types' defaults)."""
        return dict(node.entity_tpl.get("properties") or {})

    # -- the topology ----------------------------------------------------------------------------

    def application(self) -> NodeTemplate:
        apps = [n for n in self.nodes.values() if n.is_derived_from(APPLICATION)]
        chained = [n.name for n in apps if "parent_job" in _required(n)]
        if chained:
            raise self.problems.refuse(
                f"node '{chained[0]}' has a parent_job: a chain of Chronos jobs; primage runs "
                "one job per template: submit the parent first, the next once it has succeeded"
            )
        if len(apps) != 1:
            names = ", ".join(n.name for n in apps)
            raise self.problems.refuse(
                f"a template deploys one container application; this one has {len(apps)} "
                f"({names}): give each a template of its own"
                if apps
                else f"no container application ({APPLICATION} or a type derived from it)"
            )
        return apps[0]

    def hosts(self, node: NodeTemplate) -> list[NodeTemplate]:
        """The chain of nodes ``node`` is hosted on: its runtime, then that runtime's host."""
        found: list[NodeTemplate] = []
        while True:
            names = [
                r["host"] for r in node.requirements or [] if isinstance(r, dict) and "host" in r
            ]
            name = names[0] if names else None
            name = name.get("node") if isinstance(name, dict) else name
            if name not in self.nodes or self.nodes[name] in found:
                return found
            node = self.nodes[name]
            found.append(node)

    def host_properties(self, chain: list[NodeTemplate]) -> dict[str, Any]:
        """The ``host`` capabilities' properties along the chain: the nearest one wins."""
        found: dict[str, Any] = {}
        for node in chain:
            capability = (node.get_capabilities() or {}).get("host")
            for prop in capability.get_properties_objects() if capability else []:
                where = f"node '{node.name}' host property {prop.name}"
                value = self.value(prop.value, node, where)
                if value is not None:
                    found.setdefault(prop.name, value)
        return found

    def image(self, node: NodeTemplate) -> str | None:
        artifacts = node.entity_tpl.get("artifacts") or {}
        for name, artifact in artifacts.items():
            if isinstance(artifact, dict):
                if artifact.get("type", IMAGE_ARTIFACT) != IMAGE_ARTIFACT:
                    self.problems.add(
                        f"node '{node.name}' artifact '{name}' is a {artifact.get('type')}; "
                        f"primage runs images ({IMAGE_ARTIFACT})"
                    )
                    continue
                artifact = artifact.get("file")
            image = self.value(artifact, node, f"node '{node.name}' artifact {name}")
            return str(image) if image else None
        return None

    def environment(self, node: NodeTemplate, props: Mapping[str, Any]) -> dict[str, str]:
        """INDIGO's environment_variables, primage's environment, and the standard TOSCA way:
        the inputs of the Standard interface's create operation."""
        env: dict[str, Any] = {}
        for interface in node.interfaces or []:
            if interface.type in ("Standard", "tosca.interfaces.node.lifecycle.Standard") and (
                interface.name == "create"
            ):
                for key, raw in (interface.inputs or {}).items():
                    where = f"node '{node.name}' create input {key}"
                    env[key] = self.value(raw, node, where)
        for key in ("environment", "environment_variables"):
            env.update(props.get(key) or {})
        return {k: str(v) for k, v in env.items() if v is not None}

    def storage(self, app: NodeTemplate, chain: list[NodeTemplate]) -> list[str]:
        """Spaces from the storage nodes: an OnedataSpace's space, and a BlockStorage that
        the application, its runtime or its host attaches (its volume_id names the space)."""
        attached = {
            target.name
            for node in [app, *chain]
            for relationship, target in node.relationships.items()
            if relationship.is_derived_from("tosca.relationships.AttachesTo")
        }
        mounts = []
        for node in self.nodes.values():
            if not any(node.is_derived_from(kind) for kind in STORAGE):
                continue
            props = self.properties(node)
            onedata = node.is_derived_from("tosca.nodes.indigo.OnedataSpace")
            space = props.get("space") if onedata else props.get("volume_id")
            if not onedata and node.name not in attached:
                self.notes.append(f"node '{node.name}': storage nothing attaches; not mounted")
                continue
            if not space:
                self.problems.add(
                    f"node '{node.name}': name the space to mount in its "
                    f"{'space' if onedata else 'volume_id'} property"
                )
                continue
            read_only = (node.entity_tpl.get("metadata") or {}).get("read_only") in (True, "true")
            mounts.append(f"{space}:ro" if read_only else str(space))
            self.notes.append(
                f"node '{node.name}': space '{space}' mounted at {SPACES}{space}"
                + (" read-only" if read_only else "")
            )
        return mounts

    def volume(self, volume: Any, node: NodeTemplate) -> str | None:
        """INDIGO's ``SPACE:/spaces/SPACE[:MODE]`` as a mount's short form, ``SPACE[:MODE]``
        (which the spec reads, ``parse_mount``); any other container path is refused."""
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[1].startswith("/"):
            if parts[1] != f"{SPACES}{parts[0]}" or len(parts) > 3:
                self.problems.add(
                    f"node '{node.name}' volume '{volume}': primage mounts spaces at "
                    f"{SPACES}<space> (no other path, no volume driver); write "
                    f"'{parts[0]}' or '{parts[0]}:ro' and read it at {SPACES}{parts[0]}"
                )
                return None
            parts.pop(1)
        return ":".join(parts)

    def ports(self, listed: list[Any]) -> list[int]:
        """The published ports' numbers: the container's (``target``), else ``source``."""
        numbers = []
        for port in listed:
            number = port.get("target") or port.get("source") if isinstance(port, dict) else port
            if number is not None:
                numbers.append(number)
        return numbers

    def ignored(self, node: NodeTemplate, props: Mapping[str, Any]) -> None:
        for key, why in IGNORED.items():
            if key in self.written(node) and props.get(key) not in (None, False, [], {}):
                self.notes.append(f"node '{node.name}' {key}: ignored ({why})")

    # -- the results -----------------------------------------------------------------------------

    def common(self, node: NodeTemplate) -> Node:
        """What apps and jobs share: command, image, environment, spaces, resources."""
        props = self.properties(node)
        chain = self.hosts(node)
        host = self.host_properties(chain)
        self.ignored(node, props)
        cpus = host.get("num_cpus")
        resources = {
            "cpus": None if cpus is None else whole_cores(cpus, "num_cpus", self.notes),
            "memory": _bytes(host.get("mem_size")),
            "gpus": host.get("num_gpus") or None,
        }
        volumes = [(v, node) for v in props.get("volumes") or []]
        volumes += [(v, chain[0]) for v in host.get("volumes") or []]  # host: there is a chain
        spaces = [s for s in (self.volume(v, where) for v, where in volumes) if s]
        fields = {
            "name": app_name(node.name),
            "image": self.image(node),
            "command": props.get("command"),
            "env": self.environment(node, props),
            "spaces": [*spaces, *self.storage(node, chain)],
            "resources": {k: v for k, v in resources.items() if v is not None},
            "secrets": {k: str(v) for k, v in (props.get("secrets") or {}).items()},
        }
        published = [*(props.get("publish_ports") or []), *(host.get("publish_ports") or [])]
        return Node(fields, props, published)

    def app(self, node: NodeTemplate) -> dict[str, Any]:
        read = self.common(node)
        fields = read.fields
        metadata = dict(node.entity_tpl.get("metadata") or {})
        unknown = sorted(set(metadata) - {*METADATA_FIELDS, *ACCESS_FIELDS})
        if unknown:
            self.problems.add(
                f"node '{node.name}': metadata {', '.join(unknown)} is not an app field; known: "
                f"{', '.join((*METADATA_FIELDS, *ACCESS_FIELDS))}"
            )
        fields |= {k: v for k, v in metadata.items() if k in METADATA_FIELDS}
        ports = self.ports(read.published)
        fields["port"] = primary_port(ports, metadata.get("port"), fields["name"], self.notes)
        if "access" in metadata:
            fields["access"] = {"who": metadata["access"], "group": metadata.get("access_group")}
        return fields

    def job(self, node: NodeTemplate) -> dict[str, Any]:
        """A Chronos job: one batch task, run once when submitted."""
        read = self.common(node)
        fields, props = read.fields, read.props
        schedule = str(props.get("schedule") or "")
        if schedule and not schedule.startswith("R1/"):
            self.problems.add(
                f"node '{node.name}' schedule '{schedule}' repeats: primage runs a job once, "
                "when submitted (repeat it with cron and primage job submit)"
            )
        elif schedule.split("/")[1:2] not in ([], [""]):
            self.notes.append(f"schedule '{schedule}': the job runs now, when submitted")
        if read.published:
            self.notes.append(f"node '{node.name}': a job publishes no port; ports ignored")
        secrets = fields.pop("secrets")
        if secrets:
            self.notes.append("secrets: given to the job as environment variables")
            fields["env"] |= secrets
        fields["kind"] = "batch"
        if props.get("retries") is not None:
            fields["retries"] = {"count": props["retries"]}
        return fields

    def outputs(self, app: str, node: NodeTemplate) -> dict[str, Any]:
        """The outputs known now: the app's address (its URL), and those with no attribute."""
        found = {}
        for output in self.template.outputs or []:
            value = self.value(output.value, node, f"output {output.name}")
            if value is not None:
                found[output.name] = value
        for name, raw in self.deferred.items():
            attribute = raw.get("get_attribute") if isinstance(raw, dict) else None
            address = isinstance(attribute, list) and attribute[:2] in (
                [node.name, kind] for kind in ADDRESS_ATTRIBUTES
            )
            if address:
                found[name] = f"/apps/{app}/"
            else:
                self.evaluate.left_out.append((f"output {name}", shown(raw)))
        return found


def render(document: dict[str, Any], inputs: Mapping[str, str], problems: Problems,
           files: Mapping[str, str]) -> Draft:  # fmt: skip
    with TOSCA_PARSER:
        mapper = Mapper(document, inputs, problems, files)
        node = mapper.application()
        if node.is_derived_from(CHRONOS):
            fields, kind = mapper.job(node), "job"
        else:
            fields, kind = mapper.app(node), "app"
        problems.check()
        outputs = mapper.outputs(fields["name"], node) if kind == "app" else {}
        problems.check()
    found = {k: v for k, v in fields.items() if v not in (None, {}, [])}
    return Draft(kind, found, [*mapper.notes, *mapper.left_out()], outputs)  # type: ignore[arg-type]


def _required(node: NodeTemplate) -> set[str]:
    """The names of the requirements a node template writes (host, parent_job, …)."""
    return {name for r in node.requirements or [] if isinstance(r, dict) for name in r}


def _bytes(size: Any) -> int | None:
    from toscaparser.elements.scalarunit import ScalarUnit_Size

    if size is None:
        return None
    return int(ScalarUnit_Size(size).get_num_from_scalar_unit("B"))
