"""An HTC job on Slurm through the platform, beside the same job array submitted by hand.

    ./run bench benchmarks/slurm_htc.py [--tasks 1000] [--big 10000] [--cpus 16] [--rounds 1]

A Slurm cluster of Debian's slurm-wlm on loopback (tests/harness.py, ``--cpus`` slots on one
node) and a platform whose executor ``hpc`` is that cluster. In the same run, alternating:

1. Wall time to all done of an HTC job of ``--tasks`` tasks (each writes its index into the
   space), submitted to the platform, beside ``sbatch --array=0-N-1`` of a script doing the same
   submitted by hand and followed with ``squeue`` until it is gone. Target (issue 15): <= 1.2x.
   The platform's tasks run in its sandbox (bubblewrap, one per task); ``--sandbox off`` measures
   without it.
2. Submitting a ``--big``-task job: the time from POST /jobs until Slurm holds every element, and
   how many sbatch calls that took (arrays in squeue). Target: <= 2 s, a handful of calls. The
   partition is down meanwhile, so that elements starting on this same machine do not take the
   CPU from the submission being measured.
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
from primage.client import Client
from tests.harness import RunningServer, SlurmCluster

WAITING = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"}  # not ended yet


def squeue(cluster: SlurmCluster) -> list[dict[str, object]]:
    done = subprocess.run(["squeue", "--json"], capture_output=True, text=True, check=True,
                          env={**os.environ, **cluster.env})  # fmt: skip
    found: list[dict[str, object]] = json.loads(done.stdout)["jobs"]
    return found


def by_platform(server: RunningServer, tasks: int) -> float:
    api = server.client()
    started = time.perf_counter()
    job = api.submit_job({"kind": "htc", "array": tasks, "spaces": ["bench"], "executor": "hpc",
                          "command": "echo {task_index} > {output_dir}/{task_index}"})  # fmt: skip
    done = api.wait_job(job.id, poll=0.2, timeout=3600)
    took = time.perf_counter() - started
    if done.state != "succeeded":
        sys.exit(f"the platform's job ended {done.state}: {done.message}")
    return took


def by_hand(cluster: SlurmCluster, work: Path, tasks: int) -> float:
    out = work / f"hand-{time.monotonic_ns()}"
    out.mkdir()
    script = out / "array.sh"
    script.write_text(f"#!/bin/sh\necho $SLURM_ARRAY_TASK_ID > {out}/$SLURM_ARRAY_TASK_ID\n")
    env = {**os.environ, **cluster.env}
    started = time.perf_counter()
    done = subprocess.run(
        ["sbatch", "--parsable", f"--array=0-{tasks - 1}", f"--output={out}/%A_%a.out",
         str(script)], capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    array = done.stdout.strip().split(";")[0]
    while any(str(j["array_job_id"]) == array and j["job_state"] in WAITING
              for j in squeue(cluster)):  # fmt: skip
        time.sleep(0.2)
    took = time.perf_counter() - started
    written = len([p for p in out.iterdir() if p.name.isdigit()])
    if written != tasks:
        sys.exit(f"by hand: {written} of {tasks} outputs")
    return took


def submit_big(server: RunningServer, cluster: SlurmCluster, tasks: int) -> tuple[float, int]:
    api = server.client()
    before = {str(j["array_job_id"]) for j in squeue(cluster)}
    cluster.scontrol("update", "PartitionName=debug", "State=DOWN")  # queued, none started
    try:
        return _submit_big(api, cluster, tasks, before)
    finally:
        cluster.scontrol("update", "PartitionName=debug", "State=UP")


def _submit_big(
    api: Client, cluster: SlurmCluster, tasks: int, before: set[str]
) -> tuple[float, int]:
    started = time.perf_counter()
    job = api.submit_job({"kind": "htc", "array": tasks, "spaces": ["bench"], "executor": "hpc",
                          "command": "sleep 600"})  # fmt: skip

    def held() -> tuple[int, set[str]]:
        count, arrays = 0, set()
        for record in squeue(cluster):
            array = str(record["array_job_id"])
            if array in before or record["job_state"] not in WAITING:
                continue
            arrays.add(array)
            text = str(record.get("array_task_string") or "")
            if record.get("array_task_id") is not None:
                count += 1
            for part in filter(None, text.split("%")[0].split(",")):
                first, _, last = part.partition("-")
                count += int(last or first) - int(first) + 1
        return count, arrays

    while (found := held())[0] < tasks:
        if time.perf_counter() - started > 300:
            sys.exit(f"Slurm holds {found[0]} of {tasks} elements after 300 s")
        time.sleep(0.05)
    took = time.perf_counter() - started
    api.cancel_job(job.id)
    api.wait_job(job.id, poll=0.5, timeout=600)
    return took, len(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--cpus", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sandbox", choices=("on", "off"), default="on")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        sys.exit("cannot run: apt-get install slurm-wlm munge")
    work = Path(tempfile.mkdtemp(prefix="primage-bench-slurm-"))
    with SlurmCluster.running(work / "slurm", cpus=args.cpus) as cluster:
        executors = {"hpc": {"kind": "slurm", "slurm_conf": cluster.env["SLURM_CONF"],
                             "capacity": args.cpus, "poll_seconds": 0.5}}  # fmt: skip
        env = {"PRIMAGE_EXECUTORS": json.dumps(executors), "PRIMAGE_SANDBOX": args.sandbox,
               "PRIMAGE_CONTAINERS": "false"}  # fmt: skip
        server = RunningServer.start(work / "data", f"sqlite:///{work / 'db'}", env=env)
        try:
            server.client().create_space("bench")
            platform, hand = [], []
            for _ in range(args.rounds):
                platform.append(by_platform(server, args.tasks))
                hand.append(by_hand(cluster, work, args.tasks))
                print(f"  round: platform {platform[-1]:.1f} s, by hand {hand[-1]:.1f} s")
            a, b = statistics.median(platform), statistics.median(hand)
            print(
                f"{args.tasks}-task HTC job on Slurm (sandbox {args.sandbox}): platform "
                f"{a:.1f} s, sbatch --array by hand {b:.1f} s: {a / b:.2f}x (target <= 1.2)"
            )
            took, calls = submit_big(server, cluster, args.big)
            print(f"submitting a {args.big}-task job: {took:.2f} s until Slurm holds every "
                  f"element, {calls} sbatch calls (target <= 2 s, a handful)")  # fmt: skip
        finally:
            server.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
