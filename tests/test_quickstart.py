"""The quick start's main command, and the server commands it relies on, as a new user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.harness import free_port, primage

JOB = str(Path(__file__).parents[1] / "examples" / "segmentation" / "job.yaml")


def test_demo_starts_a_platform_and_segments_the_samples_in_an_htc_job(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PRIMAGE_SERVER", "PRIMAGE_TOKEN")}
    env |= {
        "PRIMAGE_DATA_DIR": str(tmp_path / "data"),
        "PRIMAGE_PORT": str(port),
        "PRIMAGE_CONFIG": str(tmp_path / "none.toml"),
        "COLUMNS": "200",
    }
    try:
        demo = primage("demo", "--job", JOB, env=env)  # what ./run demo runs
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert f"http://127.0.0.1:{port}" in demo.stdout
        assert "identical to the originals" in demo.stdout
        assert "samples:images/CT_small.dcm" in demo.stdout
        assert "job 1 succeeded: 7/7 tasks succeeded" in demo.stdout
        rows = {line.split()[0]: line.split() for line in demo.stdout.splitlines() if line}
        assert float(rows["example4d.nii.gz"][2]) > 0  # a lesion volume in mL
        assert rows["standard.nii.gz"][2:4] == ["no", "lesion"]
        assert "'no lesion' is a valid result" in demo.stdout
        assert "samples:outputs/1/" in demo.stdout

        again = primage("demo", "--job", JOB, env=env)  # reuses the running server and space
        assert again.returncode == 0, again.stderr
        assert "job 2 succeeded" in again.stdout
        listing = primage("ls", "samples:outputs/1", "--json", env=env)
        names = [entry["name"] for entry in json.loads(listing.stdout)]
        assert sum(n.endswith("_mask.nii.gz") for n in names) == 7
        assert sum(n.endswith("_overlay.png") for n in names) == 7

        status = primage("server", "status", env=env)
        assert status.returncode == 0 and f":{port}" in status.stdout
        listed = primage("ls", "samples:images", "--json", env=env)
        assert listed.returncode == 0 and "example4d.nii.gz" in listed.stdout
    finally:
        stop = primage("server", "stop", env=env)
    assert stop.returncode == 0, stop.stderr
    after = primage("server", "status", env=env)
    assert after.returncode == 1 and "no server is running" in after.stderr
    unreachable = primage("space", "ls", env=env)
    assert unreachable.returncode == 1
    assert "cannot reach the primage server" in unreachable.stderr
