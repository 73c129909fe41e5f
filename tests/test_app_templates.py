"""Templates to app specs, without a server: own YAML with inputs, TOSCA (INDIGO-DataCloud and
standard container types) through tosca-parser, and what is refused, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from primage.errors import BadRequest
from primage.models.apps import AppSpec
from primage.templates import render


def load(text: str, inputs: dict[str, str], source: str) -> AppSpec:
    spec = render(text, inputs, source).spec
    assert isinstance(spec, AppSpec)
    return spec


TEMPLATES = Path(__file__).resolve().parent / "templates"
NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook" / "template.yaml"


def test_the_notebook_template_fills_its_space_input() -> None:
    spec = load(NOTEBOOK.read_text(), {"space": "scans"}, "template.yaml")
    assert [m.name for m in spec.spaces] == ["scans"] and spec.workdir == "scans"
    assert spec.access.who == "members" and spec.idle_timeout == 4 * 3600
    command = spec.command or ""  # the token from the environment: no command line shows it
    assert "$PRIMAGE_APP_TOKEN" in command and "{app_token}" not in command
    assert "--allow-root" not in command and spec.health_path == "api"  # no login: probes too
    assert "--ip={ip}" in command and (spec.image, spec.executor) == (None, None)  # a process
    assert load(NOTEBOOK.read_text(), {}, "t").workdir == "samples"  # the input's default
    on_a_cluster = load(NOTEBOOK.read_text(), {"image": "r/nb:1", "executor": "kube"}, "t")
    assert (on_a_cluster.image, on_a_cluster.executor) == ("r/nb:1", "kube")


def test_indigo_template_maps_ports_environment_resources_and_volumes() -> None:
    text = (TEMPLATES / "viewer.indigo.yaml").read_text()
    spec = load(text, {"space": "reports", "image": "localhost/viewer:2"}, "viewer.indigo.yaml")
    assert (spec.name, spec.image, spec.port) == ("viewer", "localhost/viewer:2", 8080)
    assert spec.env == {"SITE": "reports"} and [m.name for m in spec.spaces] == ["reports"]
    assert (spec.resources.cpus, spec.resources.memory) == (1, 256_000_000)
    assert spec.strip_prefix and spec.access.who == "members"


def test_standard_template_takes_resources_from_the_compute_node() -> None:
    text = (TEMPLATES / "webapp.tosca.yaml").read_text()
    spec = load(text, {"image": "localhost/web:1"}, "webapp.tosca.yaml")
    assert (spec.name, spec.image, spec.port) == ("webapp", "localhost/web:1", 8080)
    assert spec.resources.memory == 128_000_000


@pytest.mark.parametrize(
    ("text", "inputs", "message"),
    [
        ("app: {name: x, command: [a\n", {}, r"line 2, column 1"),
        ("app: {name: X, command: a}\n", {}, "'X' cannot name an app"),
        ("app: {name: x}\n", {}, "give a command .* or an image"),
        ("app: {name: x, command: a, colour: red}\n", {}, "colour"),
        ("app: {name: x, command: a, workdir: s}\n", {}, "workdir 's' is not in a mounted space"),
        ("kind: app\n", {}, "a template has 'app:'"),
        ("app: {name: x, command: a}\n", {"space": "s"}, "unknown input space"),
    ],
)
def test_own_yaml_refusals_name_the_problem(
    text: str, inputs: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        load(text, inputs, "t.yaml")


def test_tosca_refusals_name_the_problem() -> None:
    viewer = (TEMPLATES / "viewer.indigo.yaml").read_text()
    with pytest.raises(BadRequest, match="input 'space' is required"):
        load(viewer, {}, "v")
    with pytest.raises(BadRequest, match='unknown field "comand"'):
        load(viewer.replace("command:", "comand:"), {"space": "s"}, "v")
    with pytest.raises(BadRequest, match=r"node 'docker_runtime' \(tosca\.nodes\.indigo\.Nope\)"):
        load(viewer.replace("Container.Runtime.Docker", "Nope"), {"space": "s"}, "v")
    with pytest.raises(BadRequest, match=r"'docker_runtime' volume 's:/data': primage mounts"):
        load(viewer.replace("- {get_input: space}", "- 's:/data'"), {"space": "s"}, "v")
    elsewhere = viewer.replace("https://raw.githubusercontent.com/indigo-dc/tosca-types/master/"
                               "custom_types.yaml", "https://example.org/x.yaml")  # fmt: skip
    with pytest.raises(BadRequest, match=r"import 'https://example\.org/x\.yaml' cannot be"):
        load(elsewhere, {"space": "s"}, "v")
    database = (TEMPLATES / "database.tosca.yaml").read_text()
    with pytest.raises(BadRequest, match=r"node 'db' has type tosca\.nodes\.Database"):
        load(database, {}, "d")
