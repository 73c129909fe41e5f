"""What a container costs per task: an HTC job with ``image:`` beside the same job as processes,
and beside ``podman run`` in a shell loop (xargs, as many at once as the platform's slots).

    ./run bench benchmarks/containers.py [--tasks 500] [--slots 2] [--repeat 3]

Every task runs ``true``. The image is a busybox-static image built here (no registry needed);
podman runs rootful with runc and cgroupfs, configured through ``container_env`` the way the
platform's settings describe it. Prints seconds per job (medians) and the ratios.
Target (issue 6): the job in containers <= 1.2x the shell loop of ``podman run``.
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import RunningServer, import_busybox, podman_store

IMAGE = "localhost/busybox:bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            sys.exit(f"cannot run: {tool} is not installed (apt-get install podman runc)")

    work = Path(tempfile.mkdtemp(prefix="primage-bench-containers-", dir=Path.home()))
    env = podman_store(work)
    import_busybox(env, IMAGE, work / "rootfs")
    server = RunningServer.start(
        work / "data",
        f"sqlite:///{work / 'db.sqlite'}",
        env={
            "PRIMAGE_CONCURRENCY": str(args.slots),
            "PRIMAGE_CONTAINERS": "true",
            "PRIMAGE_CONTAINER_ENV": json.dumps(env),
        },
    )
    results: dict[str, list[float]] = {"containers": [], "processes": [], "podman loop": []}
    try:
        api = server.client()
        api.create_space("bench")
        spec = {"kind": "htc", "array": args.tasks, "command": "true", "spaces": ["bench"]}
        for _ in range(args.repeat):
            for name, extra in (("containers", {"image": IMAGE}), ("processes", {})):
                start = time.perf_counter()
                job = api.submit_job({**spec, **extra})
                done = api.wait_job(job.id, poll=0.2, timeout=3600)
                results[name].append(time.perf_counter() - start)
                assert done.state == "succeeded", done.message
                api.remove_job(job.id)
            loop = (
                f"seq {args.tasks} | xargs -P {args.slots} -I{{}} "
                f"podman run --rm --network none --pull never {IMAGE} true"
            )
            start = time.perf_counter()
            subprocess.run(loop, shell=True, check=True, env={**os.environ, **env})
            results["podman loop"].append(time.perf_counter() - start)
    finally:
        server.stop()
        subprocess.run(
            ["podman", "system", "reset", "--force"],
            env={**os.environ, **env},
            capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"{args.tasks} tasks of 'true', {args.slots} at a time, median of {args.repeat} rounds")
    for name, seconds in medians.items():
        print(f"  {name:12} {seconds:7.1f} s  ({args.tasks / seconds:6.1f} tasks/s)")
    ratio = medians["containers"] / medians["podman loop"]
    print(f"containers / podman loop: {ratio:.2f}x (target <= 1.2)")
    print(f"containers / processes:   {medians['containers'] / medians['processes']:.1f}x")


if __name__ == "__main__":
    main()
