"""Tokens keep their limits in jobs: a read-only token runs nothing, a folder token's tasks see its
folder only, and a restricted token cannot change what wider rights made. Against a real server
whose tasks run in the real sandbox."""

from __future__ import annotations

import os

import httpx
import pytest

from primage.client import Client
from primage.errors import BadRequest, Forbidden
from tests.harness import RunningServer


@pytest.fixture
def platform(sandboxed_server: RunningServer) -> RunningServer:
    return sandboxed_server


@pytest.fixture
def alice(platform: RunningServer) -> Client:
    """alice's full token; her space 'lab' with a secret at its root and work in 'sub'."""
    client = platform.client(platform.client().create_user("alice").token)
    client.create_space("lab")
    client.upload("lab", "secret.txt", b"not for the folder token\n")
    client.upload("lab", "sub/scan.txt", b"in the folder\n")
    return client


def folder_token(platform: RunningServer, alice: Client) -> Client:
    return platform.client(alice.create_token("f", space="lab", path="sub").token)


def finished(client: Client, job_id: int) -> str:
    return client.wait_job(job_id, poll=0.2, timeout=60).state


def test_a_read_only_token_cannot_submit_jobs(platform: RunningServer, alice: Client) -> None:
    reader = platform.client(alice.create_token("r", read_only=True).token)
    with pytest.raises(Forbidden, match="read-only; it cannot submit jobs"):
        reader.submit_job({"command": "cat {spaces.lab}/secret.txt", "spaces": ["lab:ro"]})
    assert alice.list_jobs().total == 0


def test_a_folder_tokens_tasks_see_only_its_folder(platform: RunningServer, alice: Client) -> None:
    confined = folder_token(platform, alice)
    command = (
        "ls {spaces.lab}; cat {spaces.lab}/secret.txt; cat {spaces.lab}/sub/scan.txt; "
        "echo result > {output_dir}/out.txt"
    )
    job = confined.submit_job({"command": command, "spaces": ["lab"]})

    assert finished(confined, job.id) == "succeeded"  # the shell's status: its last command's

    log = b"".join(confined.logs(job.id, 0)).decode()
    errors = b"".join(confined.logs(job.id, 0, stream="stderr")).decode()
    assert log.splitlines()[0] == "sub" and "in the folder" in log
    assert "secret.txt: No such file" in errors
    assert "not for the folder token" not in log
    assert job.output_path == f"sub/outputs/{job.id}"  # inside its folder, where it may write
    assert alice.read_bytes("lab", f"sub/outputs/{job.id}/out.txt") == b"result\n"


def test_a_folder_token_cannot_read_or_write_outside_its_folder_through_a_job(
    platform: RunningServer, alice: Client
) -> None:
    confined = folder_token(platform, alice)
    outside = {"kind": "htc", "command": "cat {input}", "inputs": {"space": "lab", "files": []}}
    with pytest.raises(Forbidden, match="restricted to path 'sub'"):
        confined.submit_job({**outside, "inputs": {"space": "lab", "files": ["secret.txt"]}})
    with pytest.raises(Forbidden, match="restricted to path 'sub'"):
        confined.submit_job({"command": "true", "spaces": ["lab/other"]})
    with pytest.raises(Forbidden, match="restricted to path 'sub'"):
        confined.submit_job(
            {"command": "true", "spaces": ["lab"], "output": {"space": "lab", "path": "x"}}
        )
    assert alice.list_jobs().total == 0


def test_a_folder_token_cannot_cancel_or_remove_what_a_full_token_started(
    platform: RunningServer, alice: Client
) -> None:
    confined = folder_token(platform, alice)
    wide = alice.submit_job({"command": "sleep 30", "spaces": ["lab"]})
    own = confined.submit_job({"command": "sleep 30", "spaces": ["lab"]})

    with pytest.raises(Forbidden, match="submitted with wider rights"):
        confined.cancel_job(wide.id)
    confined.cancel_job(own.id)

    assert finished(confined, own.id) == "cancelled"
    alice.cancel_job(wide.id)
    assert finished(alice, wide.id) == "cancelled"
    with pytest.raises(Forbidden, match="submitted with wider rights"):
        confined.remove_job(wide.id)


def test_a_mounted_folder_that_is_a_link_out_of_its_space_is_never_bound(
    platform: RunningServer, alice: Client
) -> None:
    admin = platform.client()
    admin.create_space("other")
    admin.upload("other", "private.txt", b"the admin's\n")
    # What a task of alice's could have left in her space: a folder that is a link to another.
    storage = platform.data_dir / "spaces"
    os.symlink(storage / "other", storage / "lab" / "escape")
    read = "cat {spaces.lab}/escape/private.txt"
    job = alice.submit_job({"command": read, "spaces": ["lab/escape"]})

    assert finished(alice, job.id) == "failed"
    assert "leads outside space 'lab'" in alice.tasks(job.id).tasks[0].message
    assert b"the admin's" not in b"".join(alice.logs(job.id, 0))


def test_a_job_that_mounts_a_folder_keeps_its_inputs_and_outputs_in_it(
    platform: RunningServer, alice: Client
) -> None:
    htc = {"kind": "htc", "command": "cat {input}", "spaces": ["lab/sub:ro"]}
    with pytest.raises(BadRequest, match="outside folder 'sub'"):
        alice.submit_job({**htc, "inputs": {"space": "lab", "files": ["secret.txt"]}})
    job = alice.submit_job({**htc, "inputs": {"space": "lab", "files": ["sub/scan.txt"]}})
    assert finished(alice, job.id) == "succeeded"
    assert b"".join(alice.logs(job.id, 0)) == b"in the folder\n"


def test_space_tokens_see_neither_builds_nor_apps(platform: RunningServer, alice: Client) -> None:
    token = alice.create_token("s", space="lab").token
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/builds", "/builds/1", "/builds/1/logs", "/applications"):
        answer = httpx.get(f"{platform.url}{path}", headers=headers)
        assert answer.status_code == 403, (path, answer.text)
        assert "restricted to a space" in answer.json()["detail"]


def test_only_sandboxed_jobs_may_mount_one_folder(platform: RunningServer, alice: Client) -> None:
    """Podman and apps mount by path with no check after: they see whole spaces only."""
    folder = {"command": "true", "spaces": ["lab/sub"]}
    with pytest.raises(BadRequest, match="a job in a container sees whole spaces"):
        alice.submit_job({**folder, "image": "localhost/anything:1"})
    with pytest.raises(BadRequest, match="an interactive job sees whole spaces"):
        alice.submit_job({**folder, "kind": "interactive"})
    with pytest.raises(BadRequest, match="an app sees whole spaces"):
        alice.deploy_app(spec={"name": "web", "command": "sleep 60", "spaces": ["lab/sub"]})
    assert alice.list_jobs().total == 0
