"""What a newcomer meets in their first hour with the CLI (issue 14): each trap, and its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from primage.images import apt_mirror
from tests.harness import RunningServer


def test_get_places_a_folder_as_rsync_does_every_time(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    api = sqlite_server.client()
    api.create_space("study")
    api.upload("study", "raw/patient01/a.dcm", b"a")
    api.upload("study", "raw/patient01/b/c.dcm", b"c")
    api.mkdir("study", "raw/patient01/empty")
    back = tmp_path / "back"
    for _ in range(2):  # the same result the second time: the folder goes inside DEST
        assert sqlite_server.cli("get", "study:raw/patient01", str(back)).code == 0
        assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*")) == [
            "patient01", "patient01/a.dcm", "patient01/b", "patient01/b/c.dcm", "patient01/empty"
        ]  # fmt: skip
    flat = tmp_path / "flat"
    assert sqlite_server.cli("get", "study:raw/patient01/", str(flat)).code == 0
    assert (flat / "a.dcm").read_bytes() == b"a" and (flat / "empty").is_dir()


def test_ls_lists_folders_recursively_and_the_recorded_checksums(
    sqlite_server: RunningServer,
) -> None:
    api = sqlite_server.client()
    api.create_space("study")
    sent = api.upload("study", "raw/ct.dcm", b"ct")
    api.mkdir("study", "raw/empty/deeper")
    flat = json.loads(sqlite_server.cli("ls", "study:raw", "--json").out)
    assert {e["path"]: e["sha256"] for e in flat} == {"raw/empty": None, "raw/ct.dcm": sent.sha256}
    tree = json.loads(sqlite_server.cli("ls", "study:", "-R", "--json").out)
    assert [(e["path"], e["type"]) for e in tree] == [
        ("raw", "directory"), ("raw/empty", "directory"), ("raw/ct.dcm", "file"),
        ("raw/empty/deeper", "directory"),
    ]  # fmt: skip
    assert next(e for e in tree if e["type"] == "file")["sha256"] == sent.sha256
    (sqlite_server.data_dir / "spaces" / "study" / "raw" / "ct.dcm").write_bytes(b"changed")
    again = json.loads(sqlite_server.cli("ls", "study:raw", "--json").out)
    assert [e["sha256"] for e in again] == [None, None], "a changed file has no checksum"


def test_sizes_need_a_unit_and_room(sqlite_server: RunningServer) -> None:
    bare = sqlite_server.cli("space", "create", "s", "--quota", "50")
    assert bare.code == 1
    assert bare.err.strip() == "error: quota '50' has no unit: write e.g. 50G (or 50B for bytes)"
    zero = sqlite_server.cli("space", "create", "s", "--quota", "0G")
    assert zero.code == 1 and "leaves no room" in zero.err and "quota_bytes" not in zero.err
    assert sqlite_server.cli("space", "create", "s", "--quota", "50G").code == 0


def test_errors_name_the_cli_flag_and_the_way_out(sqlite_server: RunningServer) -> None:
    api = sqlite_server.client()
    api.create_space("study")
    api.upload("study", "raw/a.dcm", b"a")
    assert "(primage rm -r)" in sqlite_server.cli("rm", "study:raw").err
    assert "(primage space rm --force)" in sqlite_server.cli("space", "rm", "study").err
    nobody = sqlite_server.cli("space", "share", "study", "alice")
    assert nobody.err.strip() == (
        "error: no user named 'alice': a user exists once they have logged in, or once an "
        "admin created them (primage admin user create alice)"
    )
    api.create_group("radiology")
    assert sqlite_server.cli("space", "share", "study", "radiology", "--group").code == 0
    unshare = sqlite_server.cli("space", "unshare", "study", "radiology")
    assert "'radiology' is a group: add --group" in unshare.err
    assert sqlite_server.cli("space", "unshare", "study", "radiology", "--group").code == 0
    local = sqlite_server.data_dir.parent / "scan.dcm"
    local.write_bytes(b"scan")
    assert sqlite_server.cli("put", str(local), "nosuch:").err.startswith("error: no space")
    created = sqlite_server.cli("admin", "user", "create", "bob")
    assert created.out.startswith("prm_")
    assert "their token is printed on standard output" in created.err


def test_job_files_are_checked_by_name_with_line_and_column(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: seg\ncomand: echo hi\nkind: hpc\nresources: {cpu: 2}\n")
    done = sqlite_server.cli("job", "submit", str(typo))
    assert done.code == 1
    for part in (
        "comand: unknown field (did you mean 'command'?)",
        "resources.cpu: unknown field (did you mean 'cpus'?)",
        "kind: Input should be 'batch', 'htc' or 'interactive'",
    ):
        assert part in done.err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: seg\n command: [oops\n")
    syntax = sqlite_server.cli("job", "submit", str(broken))
    assert (
        syntax.err.strip()
        == f"error: {broken}: line 2, column 9: mapping values are not allowed here"
    )
    sqlite_server.client().create_space("x")
    big = sqlite_server.cli("job", "submit", "-c", "true", "--cpus", "1000", "--space", "x")
    assert big.code == 1 and "at most" in big.err and "--cpus" in big.err
    spec = sqlite_server.cli("job", "spec")
    assert "resources.cpus  (integer = 1)" in spec.out and len(spec.out.splitlines()) < 100
    assert json.loads(sqlite_server.cli("job", "spec", "--json").out)["title"] == "JobSpec"


def test_a_failed_task_is_shown_with_space_paths_never_the_servers(
    sqlite_server: RunningServer,
) -> None:
    api = sqlite_server.client()
    api.create_space("study")
    api.upload("study", "raw/a.dcm", b"a")
    job = api.submit_job(
        {"kind": "htc", "inputs": {"space": "study", "glob": "raw/*.dcm"},
         "command": "echo cannot segment {input} >&2; pwd >&2; exit 3"}
    )  # fmt: skip
    api.wait_job(job.id, poll=0.2, timeout=60)
    shown = sqlite_server.cli("job", "show", str(job.id), env={"COLUMNS": "80"})
    assert "task 0: exit code 3" in shown.out
    assert "cannot segment study:raw/a.dcm" in shown.out and "<task folder>" in shown.out
    assert str(sqlite_server.data_dir) not in shown.out
    assert all(len(line) <= 80 for line in shown.out.splitlines()), shown.out


def test_builds_without_a_registry_are_refused_at_once(sqlite_server: RunningServer) -> None:
    done = sqlite_server.cli("build", "start", "https://example.org/x.git", "--tag", "admin/x:1")
    assert done.code == 1
    assert done.err.startswith("error: cannot build: this ")
    assert sqlite_server.client().list_builds() == []


def test_browser_login_without_a_provider_says_so(sqlite_server: RunningServer) -> None:
    import httpx

    answer = httpx.get(f"{sqlite_server.url}/auth/login")
    assert answer.status_code == 404
    assert "trusts no identity provider" in answer.json()["detail"]


def test_the_base_image_comes_from_this_machines_apt_source(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "site.sources").write_text(
        "Types: deb\nURIs: http://mirror.site.example/debian\nSuites: trixie trixie-updates\n"
        "Components: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n"
    )
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg] http://lan.example/debian bookworm main\n"
    )
    assert apt_mirror("trixie", tmp_path) == "http://mirror.site.example/debian"
    assert apt_mirror("bookworm", tmp_path) == "http://lan.example/debian"
    assert apt_mirror("sid", tmp_path) is None
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "primage", "image", "bootstrap", "--suite", "no-such-suite"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 1 and "give --mirror URL" in done.stderr


def test_registry_config_names_the_running_servers_realm(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    done = sqlite_server.cli("server", "registry-config", "--storage", str(tmp_path / "images"))
    assert done.code == 0, done.err
    assert f"    realm: {sqlite_server.url}/registry/token\n" in done.out
    status = sqlite_server.cli("server", "status")
    assert f"running at {sqlite_server.url}" in status.out


def test_the_api_docs_work_offline_and_offer_the_bearer_scheme(
    sqlite_server: RunningServer,
) -> None:
    import httpx

    page = httpx.get(f"{sqlite_server.url}/docs")
    assert page.status_code == 200
    assert "https://" not in page.text, "nothing is loaded from a CDN"
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    script = httpx.get(f"{sqlite_server.url}/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
    assert "https://" not in httpx.get(f"{sqlite_server.url}/redoc").text
    spec = httpx.get(f"{sqlite_server.url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["token"]["description"],
    }
    assert spec["paths"]["/spaces"]["get"]["security"] == [{"token": []}]
    descriptions = [
        op.get("description", "") for ops in spec["paths"].values() for op in ops.values()
    ]
    assert not [d for d in descriptions if "``" in d], "Markdown, not reStructuredText"
