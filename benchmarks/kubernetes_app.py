"""An app's start on Kubernetes through the platform, beside the same objects applied with kubectl.

    ./run bench benchmarks/kubernetes_app.py [--rounds 5]

The test cluster of tests/kube.py and a platform whose executor ``kube`` is that cluster. In the
same run, alternating: the time from deploying an app (busybox's web server over a space) on
``kube`` to the first 200 through the platform's proxy, beside the time from ``kubectl apply``
of the same StatefulSet, Service and Secret (the backend's own manifests,
``app_objects.instance_objects``) to the first 200 from the pod itself. Both ask every 50 ms.
Target (issue 17): <= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from primage.executors.kubernetes import app_objects, objects
from tests import kube
from tests.harness import RunningServer

PAGE = b"<h1>bench</h1>\n"
APP = """
app:
  name: site
  executor: kube
  command: httpd -f -p {port} -h {spaces.bench}
  strip_prefix: true
  health_path: index.html
  spaces: [bench]
"""
POLL_S = 0.05


def first_ok(url: str, headers: dict[str, str] | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(url, headers=headers).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(POLL_S)
    sys.exit(f"no 200 from {url} within {timeout:g} s")


def by_platform(server: RunningServer) -> float:
    api = server.client()
    started = time.perf_counter()
    api.deploy_app(APP, source="bench.yaml")
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    first_ok(f"{server.url}/apps/site/index.html", admin)
    took = time.perf_counter() - started
    api.remove_app("site")
    return took


def by_hand(cluster: kube.KubeCluster, server: RunningServer, round_: int) -> float:
    """The same objects as the backend makes, applied by ``kubectl apply``; the pod asked
    directly at its IP (what the platform's proxy does)."""
    defaults = objects.PodDefaults(
        "hand", kube.NAMESPACE, f"hand{round_}",
        objects.SpaceVolume("hostPath", str(server.data_dir / "spaces")), 64000, 64000,
    )  # fmt: skip
    name = app_objects.instance_name(defaults, 1, 1, 0, "bench")
    labels = app_objects.instance_labels(defaults, 1, 1, 0)
    made = app_objects.instance_objects(
        defaults, name, labels, image=kube.BUSYBOX,
        argv=["httpd", "-f", "-p", "8080", "-h", "/spaces/bench"], env={},
        secrets={app_objects.TOKEN: "not-a-secret"}, mounts=[objects.SpaceMount("bench", False)],
        port=8080, health_path="/index.html", startup_s=120,
        limits=objects.resources(1, None, 0), workdir=None,
    )  # fmt: skip
    pod = made[0]["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 1  # as the platform's executor sets it (grace_seconds)
    folder = Path(tempfile.mkdtemp(prefix="app-"))
    manifest = folder / "app.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(made)}))
    config = f"--kubeconfig={cluster.kubeconfig}"
    ip = ["kubectl", config, "get", "pod", "-n", kube.NAMESPACE, app_objects.pod_name(name),
          "-o", "jsonpath={.status.podIP}"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(["kubectl", config, "apply", "-f", str(manifest)], check=True,
                   capture_output=True)  # fmt: skip
    address = ""
    while not address:
        address = subprocess.run(ip, capture_output=True, text=True).stdout.strip()
        if not address:
            time.sleep(POLL_S)
    first_ok(f"http://{address}:8080/index.html")
    took = time.perf_counter() - started
    subprocess.run(["kubectl", config, "delete", "-f", str(manifest), "--wait"],
                   capture_output=True)  # fmt: skip
    gone = ["kubectl", config, "wait", "-n", kube.NAMESPACE, "--for=delete",
            f"pod/{app_objects.pod_name(name)}", "--timeout=120s"]  # fmt: skip
    subprocess.run(gone, capture_output=True)  # the next round starts on an empty node
    shutil.rmtree(folder)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    def executors(cluster: kube.KubeCluster) -> dict[str, object]:
        return {"local": {"kind": "local"}, "kube": cluster.executor("bench")}

    with kube.platform_on_a_cluster(executors) as (cluster, server):
        api = server.client()
        api.create_space("bench")
        api.upload("bench", "index.html", PAGE)
        platform, hand = [], []
        for r in range(args.rounds):
            platform.append(by_platform(server))
            hand.append(by_hand(cluster, server, r))
            print(f"round {r + 1}: platform {platform[-1]:.2f} s, "
                  f"kubectl apply {hand[-1]:.2f} s", flush=True)  # fmt: skip
    p, h = statistics.median(platform), statistics.median(hand)
    print(f"app start on Kubernetes, deploy to first 200 (median of {args.rounds}): "
          f"platform {p:.2f} s, kubectl apply {h:.2f} s, ratio {p / h:.2f}x "
          "(target <= 1.3x)")  # fmt: skip


if __name__ == "__main__":
    main()
