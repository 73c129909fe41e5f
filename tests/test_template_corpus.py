"""Templates in the shapes the community writes them (tests/templates/community): INDIGO's
Marathon and Chronos types with the runtime's ports and volumes, the Simple Profile's container
chain, functions in every position, storage nodes, RADL, and the VM, cluster and HPC templates
primage refuses. Each renders to its spec, or gives its message; nothing here deploys (the
deployments are in test_apps.py and test_jobs_from_templates.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from primage.errors import BadRequest
from primage.templates import render

COMMUNITY = Path(__file__).resolve().parent / "templates" / "community"


def _render(template: str, inputs: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return render((COMMUNITY / template).read_text(), inputs or {}, template, **kwargs)


RENDERS = {  # template, inputs → what its spec must hold (a subset of its fields), and notes
    "marathon_rstudio.yaml": (
        {"rstudio_password": "s3cret"},
        {"name": "rstudio", "image": "rocker/rstudio", "port": 8787,
         "env": {"PASSWORD": "s3cret"}, "spaces": [{"name": "scans"}],
         "resources": {"memory": 2_000_000_000}},
        [r"labels: ignored", r"output endpoint: \{concat: .* has no value before"],
    ),
    "marathon_jupyter.yaml": (
        {"jupyter_token": "t0k"},
        {"command": "start-notebook.sh --NotebookApp.token=t0k", "port": 8888},
        [r"uris: ignored", r"force_pull_image: ignored", r"enable_https: ignored",
         r"num_cpus 0\.5: 1 \(whole cores here\)"],
    ),
    "marathon_deepaas.yaml": (
        {},
        {"port": 5000, "resources": {"memory": 4_000_000_000, "gpus": 1},
         "env": {"RCLONE_CONFIG": "/srv/.rclone.conf", "monitorPORT": "6006"}},
        [r"port 6006 is not published: an app serves one port, at /apps/deepaas-app/"],
    ),
    "indigo_whole_inputs.yaml": (
        {"env": "{MODE: prod, LEVEL: '3'}"},
        {"name": "minio-server", "env": {"MODE": "prod", "LEVEL": "3"}, "port": 9000},
        [],
    ),
    "functions_everywhere.yaml": (
        {},
        {"command": "httpd -f -p 8080 -h /srv", "port": 8080,
         "env": {"SPACE": "scans", "COMMAND_COPY": "httpd -f -p 8080 -h /srv"}},
        [],
    ),
    "optional_input.yaml": ({}, {"env": {"MODE": "plain"}}, []),  # no "None" for the proxy
    "onedata_app.yaml": (
        {"space": "scans"},
        {"spaces": [{"name": "scans"}]},
        [r"space 'scans' mounted at /spaces/scans"],
    ),
    "blockstorage.yaml": (
        {},
        {"spaces": [{"name": "atlas", "read_only": True}], "port": 8000},
        [r"space 'atlas' mounted at /spaces/atlas read-only", r"'unattached'.*not mounted"],
    ),
    "standard_interfaces.yaml": (
        {"site": "hospital-b"},
        {"name": "my-web-app", "image": "localhost/web:1", "health_path": "healthz",
         "env": {"SITE": "hospital-b", "WORKERS": "4"},
         "resources": {"cpus": 2, "memory": 1_000_000_000}},
        [],
    ),
    "standard_named.yaml": ({}, {"name": "mysql-container", "port": 3306}, []),
    "bad_output.yaml": ({}, {"command": "serve"}, [r"output where: .* left out"]),
    "chronos_job.yaml": (
        {"greeting": "hola"},
        {"kind": "batch", "command": "echo hola from $NAME", "image": "ubuntu:16.04",
         "env": {"NAME": "chronos"}, "retries": {"count": 2},
         "resources": {"memory": 1_000_000_000}},
        [],
    ),
    "chronos_onedata.yaml": (
        {"input_space_name": "scans", "output_space_name": "results"},
        {"spaces": [{"name": "scans", "read_only": True}, {"name": "results"}],
         "env": {"INPUT_ONEDATA_SPACE": "scans", "OUTPUT_ONEDATA_SPACE": "results",
                 "INPUT_PATH": ""}},
        [r"environment_variables\.INPUT_ONEDATA_TOKEN: \{get_attribute: .* left out"],
    ),
    "chronos_once.yaml": ({}, {"command": "true"}, [r"the job runs now, when submitted"]),
    "app.radl": (
        {},
        {"name": "viewer-app", "image": "localhost/viewer:1", "port": 8080,
         "env": {"SITE": "scans", "MODE": "ro"}, "spaces": [{"name": "scans"}],
         "resources": {"cpus": 1, "memory": 512_000_000}},
        [r"cpu\.count 0\.5: 1", r"port 9090 is not published"],
    ),
}  # fmt: skip

REFUSALS = {  # template, inputs → the message (a regular expression)
    "marathon_rstudio.yaml": ({}, r"input 'rstudio_password' is required"),
    "marathon_volume_driver.yaml": ({}, r"volume 'marathon:/data:rw:dvdi:rexray': primage "
                                        r"mounts spaces at /spaces/<space>"),
    "chronos_schedule.yaml": ({}, r"schedule 'R/2026-01-01T02:00:00Z/P1D' repeats"),
    "chronos_chain.yaml": ({}, r"node 'analyse' has a parent_job: a chain of Chronos jobs"),
    "two_apps.yaml": ({}, r"one container application; this one has 2 \(web, worker\)"),
    "vm_standard.yaml": ({}, r"^vm_standard.yaml: node 'server' \(tosca\.nodes\.Compute\) "
                             r"provisions virtual machines\. primage deploys container"),
    "vm_compute.yaml": ({}, r"node 'web_server' \(tosca\.nodes\.indigo\.Compute\) provisions "
                            r"virtual machines"),
    "kubernetes_cluster.yaml": ({}, r"node 'lrms_server' .* provisions a batch-system cluster"),
    "helm_chart.yaml": ({}, r"provisions a Helm chart"),
    "qcg_job.yaml": ({}, r"provisions a job on an HPC site .* to the Slurm executor"),
    "bad_version.yaml": ({}, r"tosca_definitions_version 'tosca_xyz' is not a TOSCA version; "
                             r"write tosca_simple_yaml_1_0"),
    "unknown_import.yaml": ({}, r"import 'custom_types/wordpress\.yaml' cannot be fetched here"),
    "relative_import.yaml": ({}, r"import 'my_types\.yaml' cannot be fetched here"),
    "several_problems.yaml": ({}, r"2 problems: \(1\) node 'db' has unknown type "
                                  r"'tosca\.nodes\.Database\.MySQL'.*\(2\) node 'cache'"),
    "unknown_field.yaml": ({}, r'"properties" of template "app" contains unknown field '
                               r'"comand"\.$'),
    "vm.radl": ({}, r"system 'front' boots a virtual machine \(one://"),
    "broken.radl": ({}, r"not valid RADL: Line 3"),
    "bad_mount.radl": ({}, r"disk\.1\.mount_path '/data': primage mounts spaces at"),
}  # fmt: skip


def _holds(found: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(found, dict) and all(
            k in found and _holds(found[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(found, list)
            and len(found) == len(expected)
            and all(_holds(f, e) for f, e in zip(found, expected, strict=True))
        )
    return bool(found == expected)


def test_the_corpus_has_every_shape_the_issue_lists() -> None:
    assert len(RENDERS) + len(REFUSALS) >= 25
    assert {p.name for p in COMMUNITY.iterdir()} - {"my_types.yaml"} <= {*RENDERS, *REFUSALS}


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_template_renders_to_its_spec_with_notes(name: str) -> None:
    inputs, expected, notes = RENDERS[name]
    found = _render(name, inputs)
    spec = found.spec.model_dump(mode="json")
    assert _holds(spec, expected), spec
    assert found.kind == ("job" if name.startswith("chronos") else "app")
    for note in notes:
        assert any(re.search(note, n) for n in found.notes), (note, found.notes)
    if not notes:
        assert found.notes == []


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_template_is_refused_saying_why(name: str) -> None:
    inputs, message = REFUSALS[name]
    with pytest.raises(BadRequest, match=message) as refused:
        _render(name, inputs)
    detail = refused.value.detail
    assert "ExceptionCollector" not in detail and "Traceback" not in detail
    assert "Error:" not in detail  # no Python type names


def test_types_are_checked_before_inputs() -> None:
    with pytest.raises(BadRequest) as refused:  # its password is required, but it is a VM
        _render("vm_compute.yaml")
    assert "admin_password" not in refused.value.detail


def test_imports_beside_the_template_and_the_given_name() -> None:
    beside = {"my_types.yaml": (COMMUNITY / "my_types.yaml").read_text()}
    found = _render("relative_import.yaml", files=beside)
    assert (found.spec.name, found.spec.command, found.spec.port) == (
        "viewer", "httpd -f -p 8080", 8080,
    )  # fmt: skip
    renamed = _render("standard_named.yaml", name="db")
    assert renamed.spec.name == "db"
    rstudio = _render("marathon_rstudio.yaml", {"rstudio_password": "x"})
    assert rstudio.outputs == {"rstudio_url": "/apps/rstudio/"}  # the app's address: its URL


TOSCA = "tosca_definitions_version: tosca_simple_yaml_1_0\n"
INDIGO = (
    TOSCA + "imports: [https://raw.githubusercontent.com/indigo-dc/tosca-types/master/"
    "custom_types.yaml]\n"
)
APP = "{type: tosca.nodes.indigo.Container.Application.Docker, properties: {command: x}"


@pytest.mark.parametrize(
    ("text", "inputs", "message"),
    [
        (TOSCA + "topology_template: hello\n", {}, r"topology_template: a mapping"),
        (TOSCA + "topology_template: {node_templates: [a]}\n", {}, r"node_templates: a mapping"),
        (TOSCA + "imports: hello\n", {}, r"imports: a list of files"),
        (INDIGO + "node_types: 3\n", {}, r"node_types: a mapping"),
        (INDIGO + f"topology_template: {{node_templates: {{a: {APP}, interfaces: 3}}}}}}\n", {},
         r"node 'a' interfaces: a mapping"),
        (INDIGO + "topology_template: {inputs: {n: {type: integer}}, node_templates: "
         f"{{a: {APP}}}}}}}\n", {"n": "many"}, r"input 'n': 'many' is not of type integer"),
        (INDIGO + f"topology_template: {{node_templates: {{a: {APP}, requirements: "
         "[{host: nope}]}}}\n", {}, r'Node template "nope" was not found'),
        ("system x (\n disk.0.image.url = 'docker://a' and cpu.count >= 'many'\n)\n", {},
         r"cpu\.count 'many' is not a number"),
        ("network n (outports = 'abc')\nsystem x (\n disk.0.image.url = 'docker://a' and "
         "net_interface.0.connection = 'n'\n)\n", {}, r"Invalid outports format"),
    ],
)  # fmt: skip
def test_malformed_templates_are_refused_never_a_crash(
    text: str, inputs: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        render(text, inputs, "t")
