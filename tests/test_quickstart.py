"""The quick start's main command, and the server commands it relies on, as a new user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import free_port


def primage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "primage", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_demo_starts_a_platform_and_round_trips_the_samples(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PRIMAGE_SERVER", "PRIMAGE_TOKEN")}
    env |= {
        "PRIMAGE_DATA_DIR": str(tmp_path / "data"),
        "PRIMAGE_PORT": str(port),
        "PRIMAGE_CONFIG": str(tmp_path / "none.toml"),
        "COLUMNS": "200",
    }
    try:
        demo = primage("demo", env=env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert f"http://127.0.0.1:{port}" in demo.stdout
        assert "identical to the originals" in demo.stdout
        assert "samples:images/CT_small.dcm" in demo.stdout

        again = primage("demo", env=env)  # a second run reuses the running server and space
        assert again.returncode == 0, again.stderr

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
