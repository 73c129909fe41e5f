"""Jobs that name an image run in real containers (rootful podman with runc on this host).

The image is built here from Debian's busybox-static (no registry is reachable), into a
container store of the test's own, configured the way a site configures it: ``container_env``
points podman at a containers.conf (runc, cgroupfs, no default ulimits: cgroup v1 hosts) and a
storage.conf.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest

from primage.client import Client
from primage.errors import BadRequest, Forbidden
from tests.harness import BUSYBOX as IMAGE
from tests.harness import RunningServer, eventually, podman, primage


@pytest.fixture
def container_server(container_env: dict[str, str], tmp_path: Path) -> Iterator[RunningServer]:
    env = {
        "PRIMAGE_CONTAINERS": "true",
        "PRIMAGE_CONTAINER_ENV": json.dumps(container_env),
        "PRIMAGE_CONCURRENCY": "2",
    }
    running = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        yield running
    finally:
        running.stop()


def _files(api: Client, space: str, count: int) -> None:
    api.create_space(space)
    for n in range(count):
        api.upload(space, f"in/scan{n}.dcm", f"DICM {n}\n".encode())


def test_htc_job_runs_in_containers_with_its_spaces(container_server: RunningServer) -> None:
    api = container_server.client()
    _files(api, "study", 3)
    api.create_space("atlas")
    api.upload("atlas", "labels.txt", b"tumour\n")
    job = api.submit_job(
        {
            "kind": "htc",
            "image": IMAGE,
            "inputs": {"space": "study", "glob": "in/*.dcm"},
            "spaces": ["atlas:ro"],
            "command": (
                "sha256sum {input} > {output_dir}/{input_stem}.sha256 && "
                'cat "$PRIMAGE_SPACE_ATLAS/labels.txt" && pwd && ls /sys/class/net && '
                "echo $PRIMAGE_INPUT"
            ),
        }
    )
    assert job.image is not None and job.image.startswith("localhost/busybox@sha256:")
    done = api.wait_job(job.id, timeout=120)
    assert done.state == "succeeded", api.tasks(job.id).tasks[0].message
    outputs = {f.name for f in api.listdir("study", f"outputs/{job.id}")}
    assert outputs == {"scan0.sha256", "scan1.sha256", "scan2.sha256"}
    line = api.read_bytes("study", f"outputs/{job.id}/scan0.sha256").decode()
    assert line.endswith("/spaces/study/in/scan0.dcm\n")  # tasks see /spaces/<name>
    log = b"".join(api.logs(job.id, 0)).decode().split()
    assert log[:3] == ["tumour", "/work", "lo"]  # ro atlas readable; /work; no network but lo
    assert log[3] == "/spaces/study/in/scan0.dcm"


def _command_lines() -> str:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # ended meanwhile
            found.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(found)


def test_task_variables_reach_the_container_whole_and_off_the_command_line(
    container_server: RunningServer,
) -> None:
    api = container_server.client()
    _files(api, "study", 2)
    job = api.submit_job(
        {
            "kind": "htc",
            "image": IMAGE,
            "inputs": {"space": "study", "glob": "in/*.dcm"},
            "files_per_task": 2,
            "env": {"API_KEY": "k3y-not-for-ps", "PATH": "/bin:/opt/tools"},
            "command": 'echo "$PRIMAGE_INPUTS" "$API_KEY" "$PATH"; sleep 2',
        }
    )
    eventually(lambda: api.tasks(job.id).tasks[0].state == "running", 30, "the task running")
    assert "k3y-not-for-ps" not in _command_lines()
    assert api.wait_job(job.id, timeout=60).state == "succeeded"
    printed = b"".join(api.logs(job.id, 0)).decode().splitlines()
    assert printed == [
        "/spaces/study/in/scan0.dcm",  # PRIMAGE_INPUTS: one path a line, both lines arrived
        "/spaces/study/in/scan1.dcm k3y-not-for-ps /bin:/opt/tools",  # PATH is the task's own
    ]


def test_read_only_space_is_read_only_in_the_container(container_server: RunningServer) -> None:
    api = container_server.client()
    _files(api, "study", 1)
    api.create_space("results")
    job = api.submit_job(
        {
            "image": IMAGE,
            "spaces": ["study:ro", "results"],
            "command": "echo x > /spaces/study/in/scan0.dcm; echo rc=$? > /spaces/results/rc",
        }
    )
    assert api.wait_job(job.id, timeout=60).state == "succeeded"
    assert api.read_bytes("results", "rc").strip() != b"rc=0"
    assert api.read_bytes("study", "in/scan0.dcm") == b"DICM 0\n"


def test_missing_image_is_refused_at_submission(container_server: RunningServer) -> None:
    api = container_server.client()
    api.create_space("study")
    with pytest.raises(BadRequest, match="image 'localhost/nope:1' not found"):
        api.submit_job({"image": "localhost/nope:1", "spaces": ["study"], "command": "true"})
    assert api.list_jobs().jobs == []  # nothing stored


def test_cancelled_container_task_stops_and_leaves_no_container(
    container_server: RunningServer, container_env: dict[str, str]
) -> None:
    api = container_server.client()
    api.create_space("study")
    job = api.submit_job({"image": IMAGE, "spaces": ["study"], "command": "sleep 600"})
    eventually(lambda: api.tasks(job.id).tasks[0].state == "running", 30, "the task running")
    started = time.monotonic()
    api.cancel_job(job.id)
    assert api.wait_job(job.id, timeout=30).state == "cancelled"
    assert time.monotonic() - started < 10
    left = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"],
        env={**os.environ, **container_env},
        capture_output=True,
        text=True,
    ).stdout
    assert f"primage-{job.id}-" not in left


def test_registry_tokens_follow_the_policy(
    registry: tuple[RunningServer, str], container_env: dict[str, str], tmp_path: Path
) -> None:
    server, host = registry
    admin = server.client()
    alice, bob = (admin.create_user(name).token for name in ("alice", "bob"))

    def as_user(name: str, token: str) -> list[str]:
        auth = str(tmp_path / f"auth-{name}.json")
        login = podman(container_env, "login", "--tls-verify=false", "--authfile", auth,
                       "-u", name, "-p", token, host)  # fmt: skip
        assert login.returncode == 0, login.stderr
        return ["--tls-verify=false", "--authfile", auth]

    alice_opts, bob_opts = as_user("alice", alice), as_user("bob", bob)
    assert podman(container_env, "tag", IMAGE, f"{host}/alice/busybox:1").returncode == 0
    pushed = podman(container_env, "push", *alice_opts, f"{host}/alice/busybox:1")
    assert pushed.returncode == 0, pushed.stderr

    assert podman(container_env, "tag", IMAGE, f"{host}/bob/busybox:1").returncode == 0
    refused = podman(container_env, "push", *alice_opts, f"{host}/bob/busybox:1")
    assert refused.returncode != 0
    assert "denied" in refused.stderr or "unauthorized" in refused.stderr

    stolen = podman(container_env, "pull", *bob_opts, f"{host}/alice/busybox:1")
    assert stolen.returncode != 0
    assert "denied" in stolen.stderr or "unauthorized" in stolen.stderr
    pulled = podman(container_env, "pull", *alice_opts, f"{host}/alice/busybox:1")
    assert pulled.returncode == 0, pulled.stderr

    seen = {i.repository: i.tags for i in server.client(alice).list_images()}
    assert seen == {"alice/busybox": ["1"]}
    assert server.client(bob).list_images() == []
    with pytest.raises(Forbidden):
        server.client(bob).remove_image("alice/busybox", "1")
    server.client(alice).remove_image("alice/busybox", "1")
    assert {i.repository: i.tags for i in admin.list_images()} == {"alice/busybox": []}
    assert [e.action for e in admin.audit(action="image.").entries] == ["image.delete"]


def test_registry_token_endpoint_refuses_bad_requests(registry: tuple[RunningServer, str]) -> None:
    server, _ = registry
    anonymous = httpx.get(f"{server.url}/registry/token", params={"service": "primage-registry"})
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
    wrong = httpx.get(
        f"{server.url}/registry/token",
        params={"service": "other"},
        auth=("admin", server.admin_token),
    )
    assert wrong.status_code == 400
    read_only = server.client().create_token("ro", read_only=True).token
    granted = httpx.get(
        f"{server.url}/registry/token",
        params={"service": "primage-registry", "scope": "repository:admin/x:pull,push"},
        auth=("admin", read_only),
    ).json()["token"]
    access = pyjwt.decode(granted, options={"verify_signature": False})["access"]
    assert access == [{"type": "repository", "name": "admin/x", "actions": ["pull"]}]


def test_job_image_is_pulled_from_the_registry_as_the_submitter(
    registry: tuple[RunningServer, str], container_env: dict[str, str], tmp_path: Path
) -> None:
    server, host = registry
    admin = server.client()
    alice, bob = (admin.create_user(name).token for name in ("alice", "bob"))
    auth = str(tmp_path / "auth.json")
    login = podman(container_env, "login", "--tls-verify=false", "--authfile", auth,
                   "-u", "alice", "-p", alice, host)  # fmt: skip
    assert login.returncode == 0, login.stderr
    private = f"{host}/alice/tools:1"
    assert podman(container_env, "tag", IMAGE, private).returncode == 0
    pushed = podman(container_env, "push", "--tls-verify=false", "--authfile", auth, private)
    assert pushed.returncode == 0, pushed.stderr
    assert podman(container_env, "rmi", private).returncode == 0  # not on this machine now

    for name, token in (("alice", alice), ("bob", bob)):
        server.client(token).create_space(f"s-{name}")
    job = {"image": private, "command": "echo pulled", "spaces": ["s-bob"]}
    with pytest.raises(BadRequest, match=r"cannot pull image .* as bob"):
        server.client(bob).submit_job(job)  # alice's image is not bob's to use

    mine = server.client(alice).submit_job({**job, "spaces": ["s-alice"]})
    assert mine.image is not None and mine.image.startswith(f"{host}/alice/tools@sha256:")
    assert server.client(alice).wait_job(mine.id, timeout=60).state == "succeeded"
    # the token minted for the pull was revoked once the job was stored
    minted = [t for t in server.client(alice).list_tokens() if t.name == "image-pull"]
    assert minted and all(t.revoked for t in minted)


def test_bootstrap_a_python_base_image_and_share_it(
    registry: tuple[RunningServer, str], container_env: dict[str, str], python_base: str
) -> None:
    """Debian's packages (mmdebstrap) → a Python image that makes venvs → library/."""
    server, host = registry
    ran = podman(
        container_env, "run", "--rm", "--network", "none", python_base, "sh", "-c",
        "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'print(6*7)' && echo $PIP_CERT",
    )  # fmt: skip
    assert ran.stdout.split() == ["42", "/etc/ssl/certs/ca-certificates.crt"], ran.stderr
    env = {
        **os.environ,
        "PRIMAGE_SERVER": server.url,
        "PRIMAGE_TOKEN": server.admin_token,
        "PRIMAGE_CONTAINER_ENV": json.dumps(container_env),
    }
    target = f"{host}/library/python:test"
    pushed = primage("image", "push", python_base, target, "--insecure", env=env)
    assert pushed.returncode == 0 and pushed.stdout.strip() == f"pushed {target}", pushed.stderr
    bob = server.client().create_user("bob").token
    assert {i.repository for i in server.client(bob).list_images()} == {"library/python"}


def _repository(folder: Path, test_script: str) -> str:
    """A git repository with a Dockerfile over the test image and a self-test."""
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"FROM {IMAGE}\nCOPY selftest.sh /app/selftest.sh\nRUN chmod +x /app/selftest.sh\n"
    )
    (folder / "selftest.sh").write_text(test_script)
    commit = ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "app"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], commit):
        subprocess.run(["git", *args], cwd=folder, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True
    ).stdout.strip()


def test_build_tests_then_pushes_and_a_failing_test_blocks_the_push(
    registry: tuple[RunningServer, str], tmp_path: Path
) -> None:
    server, _host = registry
    alice = server.client(server.client().create_user("alice").token)
    commit = _repository(tmp_path / "good", "#!/bin/sh\necho selftest ok\n")
    built = alice.start_build(
        (tmp_path / "good").as_uri(), "alice/app:1", test_command="/app/selftest.sh"
    )
    done = alice.wait_build(built.id, timeout=300)
    log = b"".join(alice.build_logs(built.id)).decode()
    assert done.state == "succeeded", log
    assert done.commit == commit and done.digest and done.digest.startswith("sha256:")
    assert "selftest ok" in log and "prm_" not in log  # the push token never reaches the log
    assert {i.repository: i.tags for i in alice.list_images()} == {"alice/app": ["1"]}

    _repository(tmp_path / "bad", "#!/bin/sh\necho 'test_segmentation FAILED' >&2\nexit 1\n")
    failed = alice.start_build(
        (tmp_path / "bad").as_uri(), "alice/app:2", test_command="/app/selftest.sh"
    )
    done = alice.wait_build(failed.id, timeout=300)
    assert done.state == "failed" and "tests failed" in done.message
    assert "test_segmentation FAILED" in b"".join(alice.build_logs(failed.id)).decode()
    assert {i.repository: i.tags for i in alice.list_images()} == {"alice/app": ["1"]}

    with pytest.raises(Forbidden, match="may not push to 'bob/app'"):
        alice.start_build((tmp_path / "good").as_uri(), "bob/app:1")
    broken = tmp_path / "broken"
    _repository(broken, "#!/bin/sh\n")
    (broken / "Dockerfile").write_text("FROM localhost/does-not-exist:1\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "x"],
                   cwd=broken, check=True)  # fmt: skip
    done = alice.wait_build(alice.start_build(broken.as_uri(), "alice/app:3").id, timeout=300)
    assert done.state == "failed" and "build failed" in done.message

    # Nothing outside the clone is read as a Dockerfile or a context: by path, or by a link.
    with pytest.raises(BadRequest, match=r"dockerfile '\.\./\.\./etc/shadow' must be"):
        alice.start_build(broken.as_uri(), "alice/app:4", dockerfile="../../etc/shadow")
    with pytest.raises(BadRequest, match="context '/etc' must be a path inside"):
        alice.start_build(broken.as_uri(), "alice/app:4", context="/etc")
    (broken / "Dockerfile").unlink()
    (broken / "Dockerfile").symlink_to("/etc/hostname")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "l"],
                   cwd=broken, check=True)  # fmt: skip
    done = alice.wait_build(alice.start_build(broken.as_uri(), "alice/app:4").id, timeout=300)
    assert done.state == "failed" and "the Dockerfile leads out of the repository" in done.message


def test_webhooks_start_builds_only_when_signed(
    registry: tuple[RunningServer, str], tmp_path: Path
) -> None:
    server, _ = registry
    token = server.client().create_user("alice").token
    alice = server.client(token)
    commit = _repository(tmp_path / "app", "#!/bin/sh\necho ok\n")
    made = httpx.post(
        f"{server.url}/builds/hooks",
        json={
            "source": (tmp_path / "app").as_uri(),
            "tag": "alice/app:{branch}",
            "test_command": "/app/selftest.sh",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert made.status_code == 201, made.text
    hook = made.json()
    body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
    signature = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
    github = {"X-GitHub-Event": "push", "Content-Type": "application/json"}

    forged = httpx.post(
        hook["github_url"],
        content=body,
        headers={**github, "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert forged.status_code == 401
    wrong_token = httpx.post(
        hook["gitlab_url"],
        content=body,
        headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"},
    )
    assert wrong_token.status_code == 401
    assert alice.list_builds() == []  # nothing started

    signed = httpx.post(
        hook["github_url"], content=body, headers={**github, "X-Hub-Signature-256": signature}
    )
    assert signed.status_code == 202, signed.text
    done = alice.wait_build(signed.json()["build"], timeout=300)
    assert done.state == "succeeded" and done.commit == commit and done.tag == "alice/app:main"

    gitlab_body = json.dumps({"ref": "refs/heads/dev", "checkout_sha": commit}).encode()
    by_gitlab = httpx.post(
        hook["gitlab_url"],
        content=gitlab_body,
        headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": hook["secret"]},
    )
    assert by_gitlab.status_code == 202
    assert alice.wait_build(by_gitlab.json()["build"], timeout=300).tag == "alice/app:dev"


def test_on_a_cgroup_v1_host_the_platform_configures_its_own_podman(
    container_env: dict[str, str], tmp_path: Path
) -> None:
    """Without a containers.conf of the operator's, podman's defaults fail on cgroup v1 ("error
    setting rlimit type 7"): the platform writes one into its data dir and runs podman with it."""
    from primage.config import Settings
    from primage.host.containers import Runtime, cgroup_v1

    store_only = {k: v for k, v in container_env.items() if k != "CONTAINERS_CONF"}
    settings = Settings(data_dir=tmp_path / "data", containers=True, container_env=store_only)
    runtime = Runtime.from_settings(settings)
    assert runtime is not None
    if not cgroup_v1():
        assert "CONTAINERS_CONF" not in runtime.env  # podman's defaults work on cgroup v2
        return
    assert runtime.env["CONTAINERS_CONF"] == str(tmp_path / "data" / "containers.conf")
    done = subprocess.run(
        [*runtime.command, "run", "--rm", "--network", "none", IMAGE, "echo", "ran"],
        env={**os.environ, **runtime.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ran", done.stderr
    explicit = Settings(data_dir=tmp_path / "other", containers=True, container_env=container_env)
    mine = Runtime.from_settings(explicit)
    assert mine is not None and mine.env["CONTAINERS_CONF"] == container_env["CONTAINERS_CONF"]
