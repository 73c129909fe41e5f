"""An HTC job on Kubernetes through the platform, beside the same pods applied with kubectl.

    ./run bench benchmarks/kubernetes_htc.py [--tasks 200] [--rounds 1]

The test cluster of tests/kube.py (kube-apiserver, controller manager, scheduler and one
kubelet v1.20.2 built from Debian's source, containerd) and a platform whose executor ``kube``
is that cluster. In the same run, alternating: wall time to all done of an HTC job of
``--tasks`` tasks (each writes its index into the space) submitted to the platform, beside the
same Jobs (the executor's own manifests, ``objects.task_job``) applied by a shell loop of
``kubectl apply -f`` and waited for with ``kubectl wait --for=condition=complete``.
Target (issue 17): <= 1.2x.
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
from primage.executors.base import TaskKey, TaskRun
from primage.executors.kubernetes import objects
from tests import kube
from tests.harness import RunningServer

COMMAND = "echo {i} > /spaces/bench/{out}/{i}"


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def by_platform(server: RunningServer, tasks: int) -> float:
    api = server.client()
    cpu = cpu_seconds(server.process.pid)
    started = time.perf_counter()
    job = api.submit_job({"kind": "htc", "array": tasks, "spaces": ["bench"], "executor": "kube",
                          "command": "echo {task_index} > {output_dir}/{task_index}"})  # fmt: skip
    done = api.wait_job(job.id, poll=0.2, timeout=3600)
    took = time.perf_counter() - started
    print(f"  the server's CPU time meanwhile: {cpu_seconds(server.process.pid) - cpu:.1f} s")
    if done.state != "succeeded":
        sys.exit(f"the platform's job ended {done.state}: {done.message}")
    api.remove_job(job.id)
    return took


def by_hand(cluster: kube.KubeCluster, server: RunningServer, tasks: int, round_: int) -> float:
    """The same Jobs as the executor makes, applied one ``kubectl apply`` at a time."""
    out = f"hand-{round_}"
    space = server.data_dir / "spaces" / "bench" / out
    space.mkdir()
    shutil.chown(space, group=64000)
    space.chmod(0o2775)
    defaults = objects.PodDefaults(
        "hand", kube.NAMESPACE, f"hand{round_}",
        objects.SpaceVolume("hostPath", str(server.data_dir / "spaces")), 64000, 64000,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="jobs-"))
    for i in range(tasks):
        run = TaskRun(TaskKey(round_, i, 1), "", {}, {"bench": False})
        job = objects.task_job(defaults, run, image=kube.BUSYBOX,
                               argv=["/bin/sh", "-c", COMMAND.format(i=i, out=out)],
                               mounts=[objects.SpaceMount("bench", False)])  # fmt: skip
        (folder / f"{i}.json").write_text(json.dumps(job))
    config = f"--kubeconfig={cluster.kubeconfig}"
    script = (
        f'for f in {folder}/*.json; do kubectl {config} apply -f "$f" > /dev/null || exit 1; done; '
        f"kubectl {config} wait -n {kube.NAMESPACE} --for=condition=complete --timeout=3600s "
        f"jobs -l app.kubernetes.io/instance=hand{round_} > /dev/null"
    )
    started = time.perf_counter()
    subprocess.run(["sh", "-c", script], check=True)
    took = time.perf_counter() - started
    written = len(list(space.iterdir()))
    if written != tasks:
        sys.exit(f"by hand: {written} of {tasks} outputs")
    subprocess.run(["kubectl", config, "delete", "-n", kube.NAMESPACE, "jobs", "-l",
                    f"app.kubernetes.io/instance=hand{round_}"], capture_output=True)  # fmt: skip
    shutil.rmtree(folder)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=2, help="the node's cores")
    parser.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="Jobs made ahead of those running (default: the executor's)",
    )
    args = parser.parse_args()

    def executors(cluster: kube.KubeCluster) -> dict[str, object]:
        settings = {**cluster.executor("bench"), "capacity": args.capacity}
        if args.prefetch is not None:
            settings["prefetch"] = args.prefetch
        return {"kube": settings}

    with kube.platform_on_a_cluster(executors) as (cluster, server):
        server.client().create_space("bench")
        platform, hand = [], []
        for r in range(args.rounds):
            platform.append(by_platform(server, args.tasks))
            hand.append(by_hand(cluster, server, args.tasks, r))
            print(f"round {r + 1}: platform {platform[-1]:.1f} s, "
                  f"kubectl loop {hand[-1]:.1f} s", flush=True)  # fmt: skip
    p, h = statistics.median(platform), statistics.median(hand)
    print(f"{args.tasks}-task HTC job, wall time to all done (median of {args.rounds}): "
          f"platform {p:.1f} s, kubectl apply loop {h:.1f} s, ratio {p / h:.2f}x "
          "(target <= 1.2x)")  # fmt: skip


if __name__ == "__main__":
    main()
