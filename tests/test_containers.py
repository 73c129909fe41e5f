"""Jobs that name an image run in real containers (rootful podman with runc on this host).

The image is built here from Debian's busybox-static (no registry is reachable), into a
container store of the test's own, configured the way a site configures it: ``container_env``
points podman at a containers.conf (runc, cgroupfs, no default ulimits: cgroup v1 hosts) and a
storage.conf.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from primage.client import Client
from primage.errors import BadRequest
from tests.harness import RunningServer, require

IMAGE = "localhost/busybox:test"


def _missing() -> str | None:
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman runc)"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed (apt-get install busybox-static)"
    if os.geteuid() != 0:
        return "these tests run rootful podman"
    return None


@pytest.fixture(scope="session")
def container_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require(_missing())
    work = tmp_path_factory.mktemp("containers")
    (work / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n'
        'runtime = "runc"\nevents_logger = "file"\n'
    )
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/storage"\nrunroot = "{work}/run"\n'
    )
    env = {
        "CONTAINERS_CONF": str(work / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
    }
    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["podman", "import", "--change", 'CMD ["/bin/sh"]', "-", IMAGE],
        stdin=tar.stdout,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    tar.wait()
    return env


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
    deadline = time.monotonic() + 30
    while api.tasks(job.id).tasks[0].state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
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
