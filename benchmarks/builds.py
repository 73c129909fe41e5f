"""What the build cache saves: the segmentation example built from git by the platform, then
built again after one source file changed.

    ./run bench benchmarks/builds.py [--repeat 3]

Each round starts from an empty layer cache (only the base image, bootstrapped from Debian's
packages once, is kept): a first build (clone, ``podman build`` with the dependencies from PyPI,
the example's tests in the image, push to the platform registry), then a commit that changes one
source file and a rebuild. Prints the builds' durations as the platform records them (clone to
push), medians, and their ratio. The registry keeps its blobs from round to round, which makes
later first builds' pushes cheaper: the ratio is, if anything, worse than a cold one.
Target (issue 6): the rebuild <= 0.3x the first build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from primage.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import PYTHON_BASE, platform_with_registry, podman, podman_store, primage

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "segmentation"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@lab"]


def bootstrap(env: dict[str, str]) -> None:
    trust = ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    made = primage(
        "image", "bootstrap", "--name", PYTHON_BASE, *trust, timeout=900,
        env={**os.environ, "PRIMAGE_CONTAINER_ENV": json.dumps(env)},
    )  # fmt: skip
    if made.returncode != 0:
        sys.exit(f"bootstrap failed: {made.stderr}")


def repository(folder: Path) -> None:
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(EXAMPLE, folder, ignore=ignore)
    for git in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "app"]):
        subprocess.run([*GIT, *git], cwd=folder, check=True)


def change_one_file(folder: Path, note: str) -> None:
    source = folder / "src" / "primage_segmentation" / "cli.py"
    source.write_text(source.read_text() + f"\n# {note}\n")
    subprocess.run([*GIT, "commit", "-qam", note], cwd=folder, check=True)


def build(api: Client, folder: Path, tag: str) -> float:
    """One build through the platform; its duration as recorded (clone to push)."""
    made = api.start_build(folder.as_uri(), tag, test_command="python -m pytest -q tests")
    done = api.wait_build(made.id, timeout=1800)
    if done.state != "succeeded" or done.duration_s is None:
        sys.exit(f"build {done.id} failed: {done.message}")
    return done.duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for tool in ("podman", "runc", "mmdebstrap", "docker-registry", "git"):
        if shutil.which(tool) is None:
            sys.exit(f"cannot run: {tool} is not installed (./run test installs it)")
    work = Path(tempfile.mkdtemp(prefix="primage-bench-builds-", dir=Path.home()))
    (work / "store").mkdir()
    env = podman_store(work / "store")
    first: list[float] = []
    rebuild: list[float] = []
    try:
        bootstrap(env)
        with platform_with_registry(work, env) as (server, _host):
            alice = server.client(server.client().create_user("alice").token)
            for n in range(1, args.repeat + 1):
                # an empty layer cache: everything but the base image goes
                podman(env, "image", "prune", "--all", "--force",
                       "--filter", f"reference!={PYTHON_BASE}")  # fmt: skip
                repository(work / f"repo{n}")
                first.append(build(alice, work / f"repo{n}", f"alice/segmentation:{n}"))
                change_one_file(work / f"repo{n}", f"change {n}")
                rebuild.append(build(alice, work / f"repo{n}", f"alice/segmentation:{n}b"))
                print(f"round {n}: first {first[-1]:.1f} s, rebuild {rebuild[-1]:.1f} s")
    finally:
        podman(env, "system", "reset", "--force")
        shutil.rmtree(work, ignore_errors=True)
    a, b = statistics.median(first), statistics.median(rebuild)
    print(f"\nfirst build (clone, build, tests in the image, push): median {a:.1f} s")
    print(f"rebuild after one source file changed:              median {b:.1f} s")
    print(f"ratio rebuild / first: {b / a:.2f}  (target <= 0.3)")


if __name__ == "__main__":
    main()
