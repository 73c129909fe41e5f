"""Templates run for real: an INDIGO Chronos job submitted with ``primage job submit`` and a
TOSCA application run as a process, both reached as a user would, through the CLI and the
proxy; and neither reaches another user's space by naming it as an input."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.harness import RunningServer

CHRONOS = """\
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo_custom_types: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    input_space_name: {type: string}
    output_space_name: {type: string}
  node_templates:
    count_scans:
      type: tosca.nodes.indigo.Container.Application.Docker.Chronos
      properties:
        command: 'ls "$PRIMAGE_SPACE_SCANS" | wc -l > "$PRIMAGE_SPACE_RESULTS/$REPORT"'
        environment_variables:
          REPORT: count.txt
          TOKEN: {get_attribute: [input_space, token]}
        retries: 1
      requirements:
        - host: docker_runtime
    docker_runtime:
      type: tosca.nodes.indigo.Container.Runtime.Docker
      capabilities:
        host:
          properties: {num_cpus: 1.0, mem_size: 256 MB}
    input_space:
      type: tosca.nodes.indigo.OnedataSpace
      metadata: {read_only: true}
      properties: {space: {get_input: input_space_name}}
    output_space:
      type: tosca.nodes.indigo.OnedataSpace
      properties: {space: {get_input: output_space_name}}
"""

WEB = """\
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo_custom_types: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    space: {type: string}
  node_templates:
    report_server:
      type: tosca.nodes.indigo.Container.Application.Docker
      metadata: {strip_prefix: "true"}
      properties:
        command: python3 -m http.server {port} --bind 127.0.0.1 --directory "$PRIMAGE_SPACE_REPORTS"
      interfaces:
        Standard:
          create:
            inputs: {SERVED: {get_input: space}}
      requirements:
        - host: runtime
    runtime:
      type: tosca.nodes.indigo.Container.Runtime.Docker
      capabilities:
        host:
          properties: {num_cpus: 1, mem_size: 256 MB}
    data:
      type: tosca.nodes.indigo.OnedataSpace
      properties: {space: {get_input: space}}
"""


def _template(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_chronos_template_runs_as_a_job_over_its_onedata_spaces(
    sandboxed_server: RunningServer, tmp_path: Path
) -> None:
    server = sandboxed_server
    admin = server.client()
    alice_token, bob_token = admin.create_user("alice").token, admin.create_user("bob").token
    alice = server.client(alice_token)
    alice.create_space("scans")
    alice.create_space("results")
    for name in ("a.dcm", "b.dcm", "c.nii"):
        alice.upload("scans", name, b"image")
    job = _template(tmp_path, "count.yaml", CHRONOS)
    inputs = ["--set", "input_space_name=scans", "--set", "output_space_name=results"]

    done = server.cli("job", "submit", job, *inputs, "--wait", "--json", token=alice_token)
    assert done.code == 0, done.out + done.err
    finished = json.loads(done.out)
    spec = finished["spec"]
    assert (finished["state"], spec["kind"], spec["retries"]["count"]) == ("succeeded", "batch", 1)
    assert alice.read_bytes("results", "count.txt").strip() == b"3"
    assert "TOKEN: {get_attribute: [input_space, token]} has no value" in done.err  # noted
    assert "space 'scans' mounted at /spaces/scans read-only" in done.err

    given = [a.replace("--set", "--input") for a in inputs]
    app = server.cli("app", "deploy", job, *given, token=alice_token)  # not an application
    assert app.code != 0 and "run it with 'primage job submit count.yaml'" in app.err

    bob = server.cli("job", "submit", job, *inputs, token=bob_token)  # alice's spaces
    assert bob.code != 0 and "scans" in bob.err and "Traceback" not in bob.err
    looking = alice.create_token("look", read_only=True).token  # it writes to 'results'
    confined = alice.create_token("one-folder", space="scans", path="a.dcm").token
    for token, why in ((looking, "this token is read-only; it cannot submit jobs"),
                       (confined, "this token is restricted to space 'scans'")):  # fmt: skip
        refused = server.cli("job", "submit", job, *inputs, token=token)
        assert refused.code != 0 and why in refused.err, refused.err
    assert admin.list_jobs().total == 1  # none of those was stored


def test_a_tosca_application_renders_then_serves_as_a_process(
    sandboxed_server: RunningServer, tmp_path: Path
) -> None:
    server = sandboxed_server
    admin = server.client()
    alice_token, bob_token = admin.create_user("alice").token, admin.create_user("bob").token
    alice = server.client(alice_token)
    alice.create_space("reports")
    alice.upload("reports", "index.html", b"<p>2 lesions</p>\n")
    web = _template(tmp_path, "web.yaml", WEB)
    shown = server.cli("app", "render", web, "--input", "space=reports", token=alice_token)
    assert shown.code == 0, shown.out + shown.err
    assert "name: report-server" in shown.out and "SERVED: reports" in shown.out
    assert "note: node 'data': space 'reports' mounted at /spaces/reports" in shown.out
    assert alice.list_apps() == []  # rendering deploys nothing

    made = server.cli("app", "deploy", web, "--input", "space=reports", token=alice_token)
    assert made.code == 0, made.out + made.err
    page = httpx.get(f"{server.url}/apps/report-server/index.html",
                     headers={"Authorization": f"Bearer {alice_token}"})  # fmt: skip
    assert page.status_code == 200 and page.text == "<p>2 lesions</p>\n"

    bob = server.cli("app", "deploy", web, "--input", "space=reports", "--name", "mine",
                     token=bob_token)  # fmt: skip
    assert bob.code != 0 and "reports" in bob.err
    looking = alice.create_token("look", read_only=True).token
    confined = alice.create_token("one-file", space="reports", path="index.html").token
    for token in (looking, confined):
        refused = server.cli("app", "deploy", web, "--input", "space=reports", "--name", "again",
                             token=token)  # fmt: skip
        assert refused.code != 0 and "restricted token cannot deploy" in refused.err
    assert [a.name for a in alice.list_apps()] == ["report-server"]
    alice.remove_app("report-server")


def test_the_cli_sends_only_the_imports_inside_the_templates_folder(tmp_path: Path) -> None:
    """A relative import is read beside the template; one that leaves its folder, by ``..`` or
    through a symbolic link, is not read (the server then refuses it, naming it)."""
    from primage.cli.templates import read_template

    folder, outside = tmp_path / "lab", tmp_path / "private"
    folder.mkdir()
    outside.mkdir()
    (folder / "types.yaml").write_text("node_types: {}\n")
    (outside / "secret.yaml").write_text("password: s3cret\n")
    (folder / "linked.yaml").symlink_to(outside / "secret.yaml")
    template = folder / "app.yaml"
    template.write_text(
        "tosca_definitions_version: tosca_simple_yaml_1_0\n"
        "imports: [types.yaml, linked.yaml, ../private/secret.yaml, https://example.org/x.yaml]\n"
    )
    text, files = read_template(template)
    assert text.startswith("tosca_definitions_version") and files == {
        "types.yaml": "node_types: {}\n"
    }
