"""Canonical application 1 in containers, the whole path a developer takes: the example's git
repository is built by the platform over the bootstrapped Python base, its tests run inside the
built image, the image is pushed to the private registry, and the canonical HTC job
(``examples/segmentation/job.yaml``) runs with ``--image`` over the real sample images, on this
machine, on a Slurm cluster and on Kubernetes. Its results match the same job run as
processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from primage.client import Client
from primage.errors import BadRequest
from primage.samples import sample_images
from tests.harness import (
    RunningServer,
    git_repository,
    podman_store,
    primage,
)
from tests.kube import NAMESPACE, KubeCluster

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "segmentation"


def _reports(api: Client, space: str, folder: str) -> dict[str, float | dict[str, str] | None]:
    """Input file name → lesion volume in mL (None: no lesion), from the job's JSON reports, and
    under "software" the library versions that made them (one set, or the lists differ)."""
    found: dict[str, float | dict[str, str] | None] = {}
    for info in api.listdir(space, folder):
        if info.path.endswith(".json"):
            report = json.loads(api.read_bytes(space, info.path))
            volume = report["volume_ml"] if report["lesion_found"] else None
            found[Path(report["input"]).name] = volume
            assert found.setdefault("software", report["software"]) == report["software"]
    return found


def test_segmentation_image_is_built_tested_pushed_and_runs_the_canonical_job(
    clusters_with_registry: tuple[RunningServer, str],
    python_base: str,
    kube_cluster: KubeCluster,
    tmp_path: Path,
) -> None:
    server, host = clusters_with_registry
    token = server.client().create_user("alice").token
    alice = server.client(token)
    env = {**os.environ, "PRIMAGE_SERVER": server.url, "PRIMAGE_TOKEN": token}
    folder = git_repository(tmp_path / "lab", EXAMPLE)

    built = primage(  # a folder inside the repository: its root is cloned, the folder built
        "build", "start", str(folder), "--tag", "alice/segmentation:1",
        "--test", "python -m pytest -q tests", "--follow", env=env, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    assert " passed" in built.stdout  # the example's own tests, inside the image
    build = alice.list_builds()[0]
    assert build.state == "succeeded" and build.digest is not None
    assert (build.source, build.context) == ((tmp_path / "lab").as_uri(), "examples/segmentation")

    alice.create_space("scans")
    images = sample_images()
    for path in images:
        alice.upload("scans", f"images/{path.name}", path)
    job_file = str(EXAMPLE / "job.yaml")
    runs = {}
    image = ["--image", f"{host}/alice/segmentation:1"]
    for how, extra in (
        ("containers", image),
        ("containers on Slurm", [*image, "--executor", "hpc"]),
        ("pods on Kubernetes", [*image, "--executor", "kube"]),
        ("processes", []),
    ):
        done = primage(
            "job", "submit", job_file, "--input", "scans:images/*", *extra, "--wait", "--json",
            env=env, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        runs[how] = json.loads(done.stdout)

    in_containers = runs["containers"]
    assert in_containers["image"] == f"{host}/alice/segmentation@{build.digest}"  # provenance
    assert in_containers["task_count"] == len(images)
    outputs = {i.name for i in alice.listdir("scans", in_containers["output_path"])}
    for path in images:
        stem = path.name.removesuffix(".gz").rsplit(".", 1)[0]
        assert {f"{stem}_mask.nii.gz", f"{stem}_overlay.png", f"{stem}.json"} <= outputs
    assert _reports(alice, "scans", in_containers["output_path"]) == _reports(
        alice, "scans", runs["processes"]["output_path"]
    )
    on_slurm = runs["containers on Slurm"]
    assert (on_slurm["executor"], on_slurm["image"]) == ("hpc", in_containers["image"])
    nodes = {**os.environ, **podman_store(tmp_path / "node")}
    listed = ["podman", "images", "--digests", "--format", "{{.Digest}}"]
    pulled = subprocess.run(listed, env=nodes, capture_output=True, text=True, check=True).stdout
    assert build.digest in pulled, "the node pulled the image by its digest, as alice"
    credential = [t for t in alice.list_tokens() if t.name == f"job-{on_slurm['id']}-pull"]
    assert [t.revoked for t in credential] == [True], "the job's pull credential ended with it"
    bob = server.client(server.client().create_user("bob").token)
    bob.create_space("bobs")
    for executor in ("hpc", "kube"):
        with pytest.raises(BadRequest, match=r"cannot pull image .* as bob"):  # not his to run
            bob.submit_job({"image": f"{host}/alice/segmentation:1", "executor": executor,
                            "spaces": ["bobs"], "command": "true"})  # fmt: skip
    assert _reports(alice, "scans", on_slurm["output_path"]) == _reports(
        alice, "scans", in_containers["output_path"]
    )
    on_kube = runs["pods on Kubernetes"]
    assert (on_kube["executor"], on_kube["image"]) == ("kube", in_containers["image"])
    assert _reports(alice, "scans", on_kube["output_path"]) == _reports(
        alice, "scans", in_containers["output_path"]
    ), "the same lesions from pods, pulled by the node with alice's job credential"
    credential = [t for t in alice.list_tokens() if t.name == f"job-{on_kube['id']}-pull"]
    assert [t.revoked for t in credential] == [True], "the job's pull credential ended with it"
    secrets = kube_cluster.get(f"/api/v1/namespaces/{NAMESPACE}/secrets?labelSelector="
                               f"primage.io/job={on_kube['id']}")  # fmt: skip
    assert not secrets["items"], "and its pull Secret was deleted when the job ended"
    auth = server.data_dir / "jobs" / "slurm-hpc" / str(on_slurm["id"]) / "auth.json"
    assert not auth.exists(), "as was its credential on the Slurm nodes"
