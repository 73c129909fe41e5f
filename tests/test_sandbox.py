"""The sandbox, tried as an attacker with an ordinary account would: bob's jobs and apps against
alice's space, the platform's own files, the host's loopback services and read-only mounts.

Everything is real: a server, its local executor, bubblewrap, slirp4netns. Under ``CI=true`` the
test command has installed bubblewrap and nothing here skips.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from primage.client import Client
from primage.errors import SandboxUnavailable
from primage.executors.local import CELL_AGENT
from primage.executors.local.cells import Cell
from primage.host.sandbox import Bind, Sandbox
from tests.harness import RunningServer, require_tool

PROBE = Path(__file__).with_name("sandbox_probe.py")
PROCESSES = {"PRIMAGE_CONCURRENCY": "2", "PRIMAGE_CONTAINERS": "false"}
SANDBOX_UID = 64000  # the default sandbox_uid


@pytest.fixture
def platform(sandboxed_server: RunningServer) -> RunningServer:
    return sandboxed_server


def bearer(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.current_token()}"}


def two_users(platform: RunningServer) -> tuple[Client, Client]:
    """alice with a space holding a secret, bob with a space holding the probe."""
    admin = platform.client()
    alice = platform.client(admin.create_user("alice").token)
    bob = platform.client(admin.create_user("bob").token)
    alice.create_space("alicesp")
    alice.upload("alicesp", "secret.txt", b"alice's patient data\n")
    bob.create_space("bobsp")
    bob.upload("bobsp", "probe.py", PROBE.read_bytes())
    return alice, bob


def probe(client: Client, *targets: str, spaces: list[str], **job: Any) -> dict[str, Any]:
    """Run the probe as a job of ``client``'s and return its report."""
    command = f"python {{spaces.bobsp}}/probe.py {' '.join(targets)}"
    submitted = client.submit_job({"command": command, "spaces": spaces, **job})
    done = client.wait_job(submitted.id, poll=0.2, timeout=60)
    task = client.tasks(submitted.id).tasks[0]
    assert done.state == "succeeded", task.message
    report: dict[str, Any] = json.loads(b"".join(client.logs(submitted.id, 0)))
    return report


def test_a_users_job_runs_unprivileged_and_sees_nothing_of_the_platform_or_others(
    platform: RunningServer,
) -> None:
    alice, bob = two_users(platform)
    data = platform.data_dir
    storage = data / "spaces"
    secrets = [
        data / "credentials.json", data / "secret.key", data / "primage.db",
        data / "registry" / "token.key", storage / "alicesp" / "secret.txt",
    ]  # fmt: skip
    folders = [data, storage, data / "jobs"]  # only the folders above its own mounts show
    write = f"write:{storage / 'alicesp' / 'planted.txt'}"
    forge = "write:../exit"  # the runner's record of how the attempt ended

    report = probe(bob, *map(str, secrets + folders), write, forge, spaces=["bobsp"])

    if os.geteuid() == 0:
        assert (report["uid"], report["gid"]) == (SANDBOX_UID, SANDBOX_UID)
    assert report["uid"] != 0 or os.geteuid() != 0
    assert report["capabilities"] == "0000000000000000"
    assert report["no_new_privs"] == "1"
    assert report["pids"] <= 3, "its own pid namespace: bwrap, the probe and little else"
    tried = report["tried"]
    for target in [*map(str, secrets), write, forge]:
        assert tried[target].startswith("refused"), f"{target}: {tried[target]}"
    assert tried[str(data)] == "listed: jobs,spaces"
    assert tried[str(storage)] == "listed: bobsp"
    assert tried[str(data / "jobs")] == "listed: 1"
    assert "planted.txt" not in [f.path for f in alice.listdir("alicesp")]
    assert alice.read_bytes("alicesp", "secret.txt") == b"alice's patient data\n"


def test_a_read_only_space_cannot_be_remounted_writable(platform: RunningServer) -> None:
    _, bob = two_users(platform)
    bob.upload("bobsp", "scan.txt", b"original\n")
    command = (
        'mount -o remount,bind,rw "$PRIMAGE_SPACE_BOBSP"; '
        'unshare -Urm sh -c "mount -o remount,bind,rw $PRIMAGE_SPACE_BOBSP"; '
        'echo tampered > "$PRIMAGE_SPACE_BOBSP/scan.txt" || exit 3'
    )
    job = bob.submit_job({"command": command, "spaces": ["bobsp:ro"]})

    done = bob.wait_job(job.id, poll=0.2, timeout=60)

    assert done.state == "failed" and bob.tasks(job.id).tasks[0].exit_code == 3
    assert bob.read_bytes("bobsp", "scan.txt") == b"original\n"


def test_tasks_have_no_network_and_with_it_never_reach_the_hosts_services(
    platform: RunningServer,
) -> None:
    _, bob = two_users(platform)
    port = urlparse(platform.url).port
    loopback = f"127.0.0.1:{port}"  # the server itself, as a task on the host would reach it
    gateway = f"10.0.2.2:{port}"  # the host's loopback as slirp4netns would forward it

    offline = probe(bob, loopback, spaces=["bobsp"])
    online = probe(bob, loopback, gateway, spaces=["bobsp"], network=True)

    assert offline["interfaces"] == ["lo"]
    assert offline["tried"][loopback].startswith("refused")
    assert online["interfaces"] == ["lo", "tap0"]
    assert online["tried"][loopback].startswith("refused")
    assert online["tried"][gateway].startswith("refused")


def test_what_tasks_leave_is_not_root_owned_and_later_jobs_of_others_may_change_it(
    platform: RunningServer,
) -> None:
    alice, bob = two_users(platform)
    alice.share("alicesp", "bob", "editor")
    alice.mkdir("alicesp", "made/by/upload", parents=True)
    result = "{spaces.alicesp}/made/by/upload/result.txt"
    first = alice.submit_job({"command": f"echo alice > {result}", "spaces": ["alicesp"]})
    assert alice.wait_job(first.id, poll=0.2, timeout=60).state == "succeeded"
    second = bob.submit_job({"command": f"echo bob >> {result}", "spaces": ["alicesp"]})

    assert bob.wait_job(second.id, poll=0.2, timeout=60).state == "succeeded"
    assert alice.read_bytes("alicesp", "made/by/upload/result.txt") == b"alice\nbob\n"
    written = platform.data_dir / "spaces" / "alicesp" / "made" / "by" / "upload" / "result.txt"
    if os.geteuid() == 0:
        assert written.stat().st_uid == SANDBOX_UID


def test_a_process_app_runs_in_the_sandbox_and_reaches_no_other_app(
    platform: RunningServer,
) -> None:
    alice, bob = two_users(platform)
    web = "python -m http.server --bind 127.0.0.1 {port}"
    alice.deploy_app(spec={"name": "alices", "command": web, "strip_prefix": True})
    assert alice.wait_app("alices", timeout=60).state == "running"
    alices_port = alice.app("alices").instances[0].port
    data = platform.data_dir
    targets = [
        str(data / "credentials.json"), str(data / "spaces" / "alicesp"),
        f"127.0.0.1:{alices_port}",  # alice's app, around the proxy
        f"127.0.0.1:{urlparse(platform.url).port}",  # the server's own port
    ]  # fmt: skip
    command = (
        f"sh -c 'python {{spaces.bobsp}}/probe.py {' '.join(targets)} > {{spaces.bobsp}}/app.json;"
        " exec python -m http.server --bind 127.0.0.1 {port}'"
    )
    bob.deploy_app(
        spec={"name": "web", "command": command, "spaces": ["bobsp"], "strip_prefix": True}
    )

    app = bob.wait_app("web", timeout=60)

    assert app.state == "running", app.message
    report = json.loads(bob.read_bytes("bobsp", "app.json"))
    assert report["uid"] != 0 or os.geteuid() != 0
    assert all(outcome.startswith("refused") for outcome in report["tried"].values()), report
    assert report["capabilities"] == "0000000000000000"
    assert report["interfaces"] == ["lo", "tap0"]  # its own network: outbound only
    through_proxy = httpx.get(f"{platform.url}/apps/web/", headers=bearer(bob))
    assert through_proxy.status_code == 200
    bob.remove_app("web")
    alice.remove_app("alices")


def test_without_a_sandbox_only_admins_run_processes(tmp_path: Path) -> None:
    """A machine without bubblewrap: ordinary users' jobs are refused with the fix, admins' run;
    the server says at start which mode it is in."""
    venv_only = {**PROCESSES, "PATH": str(Path(sys.executable).parent)}
    running = RunningServer.start(
        tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", env=venv_only
    )
    try:
        admin = running.client()
        bob = running.client(admin.create_user("bob").token)
        bob.create_space("bobsp")
        with pytest.raises(SandboxUnavailable, match="install bubblewrap"):
            bob.submit_job({"command": "/bin/true", "spaces": ["bobsp"]})
        with pytest.raises(SandboxUnavailable, match="install bubblewrap"):
            bob.deploy_app(spec={"name": "web", "command": "/bin/sleep 60"})
        job = admin.submit_job({"command": "/bin/true"})
        assert admin.wait_job(job.id, poll=0.2, timeout=60).state == "succeeded"
    finally:
        running.stop()
    assert "sandbox: unavailable: bwrap" in (tmp_path / "data.log").read_text()


def test_the_server_says_when_an_admin_turned_the_sandbox_off(tmp_path: Path) -> None:
    running = RunningServer.start(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        env={**PROCESSES, "PRIMAGE_SANDBOX": "off"},
    )
    running.stop()
    assert 'sandbox: off (sandbox = "off")' in (tmp_path / "data.log").read_text()


def test_a_cell_whose_folder_was_swapped_before_it_mounted_it_runs_nothing(
    tmp_path: Path,
) -> None:
    """bwrap mounts by path: the cell checks that each folder it mounted is the one the server
    checked (device and inode), so a folder swapped for a link in between runs no task."""
    require_tool("bwrap", "bubblewrap")
    folder, job = tmp_path / "space" / "sub", tmp_path / "jobs" / "1"
    folder.mkdir(parents=True)
    job.mkdir(parents=True)
    sandbox = Sandbox(SANDBOX_UID, SANDBOX_UID, hidden=[])
    argv = sandbox.wrap(
        [sys.executable, "-I", "-S", CELL_AGENT],
        binds=[Bind(str(folder), True), Bind(str(job), False)],
        workdir=str(job),
    )
    st = folder.stat()

    def first_task(name: str, inode: int) -> tuple[int | None, str]:
        """How /bin/true ends in a cell told the folder must have ``inode``."""
        check = [(str(folder), st.st_dev, inode)]
        cell = Cell(argv, str(job / f"{name}.log"), dict(os.environ), check)
        outcome: list[tuple[int | None, str]] = []
        done = threading.Event()

        def ended(code: int | None, message: str) -> None:
            outcome.append((code, message))
            done.set()

        with open(job / "out", "wb") as out:
            fds = (out.fileno(), out.fileno())
            cell.run(["/bin/true"], str(job), {}, fds, lambda _: None, ended)
        assert done.wait(60)
        cell.close()
        return outcome[0]

    outcomes = {"checked": first_task("checked", st.st_ino)}
    outcomes["swapped"] = first_task("swapped", st.st_ino + 1)
    assert outcomes["checked"] == (0, "")
    code, message = outcomes["swapped"]
    assert code is None and "changed while its job's sandbox was made" in message
