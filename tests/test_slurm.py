"""The Slurm executor against a real slurmctld and slurmd on loopback: job arrays, logs,
cancellation, adoption after a server kill, options, and the sandbox inside the batch script."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from primage.client import Client
from primage.errors import BadRequest, Forbidden
from tests.harness import BUSYBOX, RunningServer, SlurmCluster, eventually, outputs, scans

ROOT = Path(__file__).resolve().parents[1]


def queue(cluster: SlurmCluster) -> list[dict[str, object]]:
    done = subprocess.run(
        ["squeue", "--json", "--states=all"], capture_output=True, text=True, check=True,
        env={**os.environ, **cluster.env},
    )  # fmt: skip
    jobs: list[dict[str, object]] = json.loads(done.stdout)["jobs"]
    return jobs


def test_an_htc_job_is_one_slurm_array_with_the_same_results_as_local(
    hpc: RunningServer, slurm_cluster: SlurmCluster
) -> None:
    api = hpc.client()
    scans(api, 6)
    job = {
        "kind": "htc",
        "inputs": {"space": "ct", "glob": "in/*.txt"},
        "command": "sha256sum {input} | cut -c1-64 > {output_dir}/{input_stem}.sha256; "
        "echo done {task_index}",
    }
    on_slurm = api.submit_job(
        {**job, "executor": "hpc", "executor_options": {"partition": "other"}}
    )
    on_local = api.submit_job(job)
    for each in (on_slurm, on_local):
        assert api.wait_job(each.id, poll=0.3, timeout=120).state == "succeeded"
    results = [outputs(api, "ct", j.id) for j in (on_slurm, on_local)]
    assert results[0] == results[1] and len(results[0]) == 6
    tasks = api.tasks(on_slurm.id).tasks
    arrays = {t.external_id.split("_")[0] for t in tasks if t.external_id}
    assert len(arrays) == 1, "one sbatch for the whole job"
    assert sorted(int(t.external_id.split("_")[1]) for t in tasks if t.external_id) == list(
        range(6)
    )
    ours = [j for j in queue(slurm_cluster) if str(j["array_job_id"]) in arrays]
    assert {j["partition"] for j in ours} == {"other"}, "executor_options reach sbatch"
    assert b"".join(api.logs(on_slurm.id, 3)) == b"done 3\n"
    shown = hpc.cli("executor", "ls", "--json")
    assert [(e["name"], e["kind"], e["healthy"]) for e in json.loads(shown.out)] == [
        ("local", "local", True), ("hpc", "slurm", True)
    ]  # fmt: skip


def test_the_segmentation_job_gives_the_same_lesions_on_slurm(hpc: RunningServer) -> None:
    from primage.samples import sample_images

    api = hpc.client()
    api.create_space("samples")
    for image in sample_images():
        api.upload("samples", f"images/{image.name}", image)
    import yaml

    spec = yaml.safe_load((ROOT / "examples" / "segmentation" / "job.yaml").read_text())
    spec["inputs"]["space"] = "samples"
    reports = []
    for executor in ("hpc", "local"):
        job = api.submit_job({**spec, "executor": executor})
        assert api.wait_job(job.id, poll=0.5, timeout=300).state == "succeeded"
        found = {}
        for entry in api.listdir("samples", f"outputs/{job.id}"):
            if entry.name.endswith(".json"):
                report = json.loads(api.read_bytes("samples", entry.path))
                found[entry.name] = (report["lesion_found"], report["volume_ml"])
        reports.append(found)
    assert reports[0] == reports[1] and len(reports[0]) == len(sample_images())


def test_cancel_a_running_array_and_refuse_what_slurm_lacks(
    hpc: RunningServer, slurm_cluster: SlurmCluster
) -> None:
    api = hpc.client()
    api.create_space("work")
    job = api.submit_job(
        {"kind": "htc", "array": 4, "spaces": ["work"], "executor": "hpc", "command": "sleep 300"}
    )
    eventually(lambda: api.job(job.id).counts.running == 4, 60, "4 elements running")
    api.cancel_job(job.id)
    done = api.wait_job(job.id, poll=0.3, timeout=60)
    assert done.state == "cancelled" and done.counts.cancelled == 4
    array = api.tasks(job.id).tasks[0].external_id.split("_")[0]
    states = {j["job_state"] for j in queue(slurm_cluster) if str(j["array_job_id"]) == array}
    assert states == {"CANCELLED"}

    base = {"spaces": ["work"], "command": "true", "executor": "hpc"}
    for extra, refusal in (
        ({"image": "localhost/x:1"}, "the 'hpc' executor has no containers support"),
        ({"network": True}, "the 'hpc' executor has no network support"),
        ({"executor_options": {"partition": "a b"}}, "executor_options for 'hpc' (slurm)"),
        ({"executor_options": {"nodes": 2}}, "nodes: unknown field"),
    ):
        with pytest.raises(BadRequest, match=re.escape(refusal)):
            api.submit_job({**base, **extra})


def alice_beside_bob(server: RunningServer) -> Client:
    """Bob, whose space 'bobs' holds secret.txt; alice (returned), whose space 'lab' holds
    secret.txt and sub/scan.txt."""
    admin = server.client()
    bob = Client(server.url, admin.create_user("bob").token)
    bob.create_space("bobs")
    bob.upload("bobs", "secret.txt", b"bob's\n")
    alice = Client(server.url, admin.create_user("alice").token)
    alice.create_space("lab")
    alice.upload("lab", "secret.txt", b"not for the folder token\n")
    alice.upload("lab", "sub/scan.txt", b"in the folder\n")
    return alice


def test_a_slurm_task_sees_only_its_own_spaces(hpc: RunningServer) -> None:
    alice = alice_beside_bob(hpc)
    secret = hpc.data_dir / "spaces" / "bobs" / "secret.txt"
    job = alice.submit_job(
        {"spaces": ["lab"], "executor": "hpc",
         "command": f"cat {secret} > {{spaces.lab}}/stolen; id -u; ls {hpc.data_dir}"}
    )  # fmt: skip
    alice.wait_job(job.id, poll=0.3, timeout=120)
    stderr = b"".join(alice.logs(job.id, 0, stream="stderr")).decode()
    assert "No such file" in stderr
    uid, *listed = b"".join(alice.logs(job.id, 0)).decode().split()
    assert uid == "64000", "as the sandbox's user, not root"
    assert listed == ["jobs", "spaces"], "of the data dir, only the ways to its space and work"
    assert alice.read_bytes("lab", "stolen") == b""


def test_a_job_wider_than_max_array_size_is_cut_into_arrays(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The test cluster's MaxArraySize is 1001: index values above 1000 are refused by sbatch."""
    executors = {"hpc": {"kind": "slurm", "slurm_conf": slurm_cluster.env["SLURM_CONF"],
                         "capacity": 4, "poll_seconds": 0.3, "max_array_size": 1000}}  # fmt: skip
    env = {"PRIMAGE_EXECUTORS": json.dumps(executors), "PRIMAGE_CONTAINERS": "false"}
    server = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        api = server.client()
        api.create_space("work")
        before = {str(j["array_job_id"]) for j in queue(slurm_cluster)}
        job = api.submit_job(
            {"kind": "htc", "array": 2500, "spaces": ["work"], "command": "sleep 300"}
        )

        def held() -> set[str]:
            return {str(j["array_job_id"]) for j in queue(slurm_cluster)} - before

        eventually(lambda: len(held()) == 3, 60, "three arrays in Slurm")
        assert api.job(job.id).counts.failed == 0
        api.cancel_job(job.id)
        assert api.wait_job(job.id, poll=0.5, timeout=120).counts.cancelled == 2500
    finally:
        server.stop()


def test_a_folder_token_and_a_link_out_reach_nothing_more_on_slurm(hpc: RunningServer) -> None:
    """A job submitted with a token confined to one folder sees that folder only on Slurm too,
    a read-only token runs nothing, and a symbolic link in the space to another space leads
    nowhere inside the sandbox."""
    alice = alice_beside_bob(hpc)
    spaces = hpc.data_dir / "spaces"
    (spaces / "lab" / "sub" / "bob").symlink_to(spaces / "bobs")
    folder = Client(hpc.url, alice.create_token("f", space="lab", path="sub").token)
    lab = spaces / "lab"
    job = folder.submit_job(
        {"spaces": ["lab"], "executor": "hpc",
         "command": f"cat {lab}/sub/scan.txt; cat {lab}/secret.txt; cat {lab}/sub/bob/secret.txt"}
    )  # fmt: skip
    folder.wait_job(job.id, poll=0.3, timeout=120)
    assert b"".join(folder.logs(job.id, 0)) == b"in the folder\n"
    stderr = b"".join(folder.logs(job.id, 0, stream="stderr")).decode()
    assert stderr.count("No such file") == 2, stderr
    reader = Client(hpc.url, alice.create_token("r", read_only=True).token)
    with pytest.raises(Forbidden):
        reader.submit_job({"spaces": ["lab"], "executor": "hpc", "command": "true"})


def test_a_folder_swapped_for_a_link_before_its_task_starts_runs_nothing(
    hpc: RunningServer, slurm_cluster: SlurmCluster
) -> None:
    """The server checks a job's folder when it submits the array; the compute node mounts it
    by path when the element starts, maybe much later. A folder swapped meanwhile for a link to
    another user's space is caught inside the sandbox, before the task runs. (The partition is
    held down so that the element waits while the folder is swapped.)"""
    alice = alice_beside_bob(hpc)
    folder = Client(hpc.url, alice.create_token("f", space="lab", path="sub").token)
    lab = hpc.data_dir / "spaces" / "lab"
    slurm_cluster.scontrol("update", "PartitionName=other", "State=DOWN")
    try:
        job = folder.submit_job(
            {"spaces": ["lab"], "executor": "hpc", "executor_options": {"partition": "other"},
             "command": f"cat {lab}/sub/secret.txt {lab}/sub/scan.txt"}
        )  # fmt: skip
        arrays = hpc.data_dir / "jobs" / "slurm-hpc" / str(job.id)
        eventually(
            lambda: [j["job_state"] for j in queue(slurm_cluster)
                     if j["current_working_directory"] == str(arrays)] == ["PENDING"],
            60,
            "the element pending in Slurm",
        )  # fmt: skip
        (lab / "sub").rename(lab / "moved")
        (lab / "sub").symlink_to(hpc.data_dir / "spaces" / "bobs")
    finally:
        slurm_cluster.scontrol("update", "PartitionName=other", "State=UP")
    assert folder.wait_job(job.id, poll=0.3, timeout=120).state == "failed"
    task = folder.tasks(job.id).tasks[0]
    assert task.exit_code == 125 and "changed before the task started" in task.message
    assert b"".join(folder.logs(job.id, 0)) == b"", "nothing of bob's, nothing at all"


@pytest.fixture
def hpc_containers(
    slurm_cluster: SlurmCluster, container_env: dict[str, str], tmp_path: Path
) -> Iterator[RunningServer]:
    """A server whose Slurm executor runs jobs with an image in podman on the compute node
    (here the same machine, sharing the test image store)."""
    executors = {"hpc": {"kind": "slurm", "slurm_conf": slurm_cluster.env["SLURM_CONF"],
                         "capacity": 4, "poll_seconds": 0.3, "containers": True}}  # fmt: skip
    env = {
        "PRIMAGE_EXECUTORS": json.dumps(executors),
        "PRIMAGE_CONTAINERS": "true",
        "PRIMAGE_CONTAINER_ENV": json.dumps(container_env),
    }
    running = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        yield running
    finally:
        running.stop()


def test_jobs_with_an_image_run_in_containers_on_the_compute_node(
    hpc_containers: RunningServer, container_env: dict[str, str]
) -> None:
    """The same container as on this machine: its spaces at /spaces (read-only where asked),
    no other user's; cancelling stops it and leaves no container behind."""
    server = hpc_containers
    alice = alice_beside_bob(server)
    alice.create_space("study")
    for n in range(3):
        alice.upload("study", f"in/scan{n}.dcm", f"DICM {n}\n".encode())
    alice.create_space("atlas")
    alice.upload("atlas", "labels.txt", b"tumour\n")
    spaces = server.data_dir / "spaces"
    (spaces / "atlas" / "bob").symlink_to(spaces / "bobs")  # a link to his space, by its path
    job = alice.submit_job(
        {"kind": "htc", "image": BUSYBOX, "executor": "hpc", "spaces": ["atlas:ro"],
         "inputs": {"space": "study", "glob": "in/*.dcm"},
         "command": "sha256sum {input} > {output_dir}/{input_stem}.sha256 && "
                    'cat "$PRIMAGE_SPACE_ATLAS/labels.txt" && ls /spaces && pwd && '
                    '{ touch "$PRIMAGE_SPACE_ATLAS/x" 2>/dev/null || echo read-only; } && '
                    f'{{ cat "$PRIMAGE_SPACE_ATLAS/bob/secret.txt" {spaces}/bobs/secret.txt '
                    "2>/dev/null || echo nothing of bob; }"}
    )  # fmt: skip
    assert job.image is not None and job.image.startswith("localhost/busybox@sha256:")
    done = alice.wait_job(job.id, poll=0.3, timeout=120)
    assert done.state == "succeeded", alice.tasks(job.id).tasks[0].message
    outputs = {f.name for f in alice.listdir("study", f"outputs/{job.id}")}
    assert outputs == {"scan0.sha256", "scan1.sha256", "scan2.sha256"}
    line = alice.read_bytes("study", f"outputs/{job.id}/scan0.sha256").decode()
    assert line.endswith("/spaces/study/in/scan0.dcm\n")
    shown = b"tumour\natlas\nstudy\n/work\nread-only\nnothing of bob\n"
    assert b"".join(alice.logs(job.id, 0)) == shown
    assert all("_" in (t.external_id or "") for t in alice.tasks(job.id).tasks), "Slurm ids"

    sleeper = alice.submit_job(
        {"image": BUSYBOX, "executor": "hpc", "spaces": ["study"], "command": "sleep 600"}
    )
    eventually(lambda: alice.job(sleeper.id).counts.running == 1, 60, "the container running")

    def containers() -> str:
        return subprocess.run(
            ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
            env={**os.environ, **container_env}, check=True,
        ).stdout  # fmt: skip

    eventually(lambda: f"primage-{sleeper.id}-0-1" in containers(), 60, "its container")
    alice.cancel_job(sleeper.id)
    assert alice.wait_job(sleeper.id, poll=0.3, timeout=60).state == "cancelled"
    eventually(lambda: f"primage-{sleeper.id}-" not in containers(), 60, "no container left")


def test_gpus_and_max_parallel_reach_sbatch(
    hpc: RunningServer, slurm_cluster: SlurmCluster
) -> None:
    """``resources.gpus`` is ``--gres=gpu:N`` (the test cluster has no GPUs: slurmctld refuses
    it, and the task says so); an executor without GPUs refuses the job at submission; a job's
    ``max_parallel`` is its array's ``%`` throttle."""
    api = hpc.client()
    api.create_space("work")
    gpu = {"spaces": ["work"], "command": "true", "resources": {"gpus": 1}}
    with pytest.raises(BadRequest, match="the 'local' executor has no gpus support"):
        api.submit_job(gpu)
    refused = api.submit_job({**gpu, "executor": "hpc"})
    assert api.wait_job(refused.id, poll=0.3, timeout=60).state == "failed"
    message = api.tasks(refused.id).tasks[0].message
    assert "Invalid generic resource (gres) specification" in message, message

    slurm_cluster.scontrol("update", "PartitionName=other", "State=DOWN")
    try:
        job = api.submit_job(
            {"kind": "htc", "array": 4, "max_parallel": 2, "spaces": ["work"], "executor": "hpc",
             "executor_options": {"partition": "other"}, "command": "true"}
        )  # fmt: skip
        arrays = str(hpc.data_dir / "jobs" / "slurm-hpc" / str(job.id))
        eventually(
            lambda: [j["array_max_tasks"] for j in queue(slurm_cluster)
                     if j["current_working_directory"] == arrays] == [2],
            60,
            "the array pending, throttled to 2",
        )  # fmt: skip
    finally:
        slurm_cluster.scontrol("update", "PartitionName=other", "State=UP")
    assert api.wait_job(job.id, poll=0.3, timeout=120).state == "succeeded"
