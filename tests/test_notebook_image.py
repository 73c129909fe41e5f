"""Canonical application 2 in its image on Kubernetes: the notebook's Dockerfile is built by the
platform over the bootstrapped Python base and pushed to the private registry; the template
deploys it on the cluster (a StatefulSet whose pod pulls the image by digest with the app's own
credential); its notebook runs through the proxy's HTTP and WebSocket, as test_apps runs it on
this machine, and writes the filtered images into the space the pod mounts."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx

from primage.samples import sample_images
from tests.harness import RunningServer, git_repository, primage
from tests.kube import NAMESPACE, KubeCluster
from tests.notebook import run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook"


def test_the_notebook_image_runs_on_kubernetes_behind_the_proxy(
    clusters_with_registry: tuple[RunningServer, str],
    python_base: str,
    kube_cluster: KubeCluster,
    kube_instance: str,
    tmp_path: Path,
) -> None:
    server, host = clusters_with_registry
    token = server.client().create_user("alice").token
    alice = server.client(token)
    env = {**os.environ, "PRIMAGE_SERVER": server.url, "PRIMAGE_TOKEN": token}
    built = primage(
        "build", "start", str(git_repository(tmp_path / "lab", NOTEBOOK)),
        "--tag", "alice/notebook:1", "--follow", env=env, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    digest = alice.list_builds()[0].digest
    assert digest is not None

    alice.create_space("scans")
    images = sample_images()
    for path in images:
        alice.upload("scans", f"images/{path.name}", path)
    deployed = primage(
        "app", "deploy", str(NOTEBOOK / "template.yaml"), "--space", "scans",
        "--input", f"image={host}/alice/notebook:1", "--input", "executor=kube",
        env=env, timeout=400,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    app = alice.app("notebook")
    assert app.state == "running", app.message
    assert app.spec.image == f"{host}/alice/notebook@{digest}"
    assert (app.spec.executor, app.instances[0].external_id.split("/")[0]) == ("kube", "kube")

    # Jupyter through the proxy, the platform's token in, Jupyter's own never asked for.
    base = f"{server.url}/apps/notebook/"
    headers = {"Authorization": f"Bearer {token}"}
    status = httpx.get(f"{base}api/status", headers=headers)
    assert status.status_code == 200 and "started" in status.json()
    printed = "".join(run_notebook(base, headers, NOTEBOOK / "filtering.ipynb"))  # WebSocket
    assert f"{len(images)} images in" in printed
    written = {i.name for i in alice.listdir("scans", "filtered")}
    for path in images:
        stem = path.name.split(".")[0]
        assert {f"{stem}_{f}.nii.gz" for f in ("smooth", "edges", "window")} <= written, printed

    # The pod pulled the digest with the app's own credential; no token is in its spec.
    labels = f"app.kubernetes.io/instance={kube_instance}"
    (pod,) = kube_cluster.pods(labels)
    spec = pod["spec"]
    assert spec["containers"][0]["image"] == app.spec.image  # type: ignore[index]
    (pull,) = spec["imagePullSecrets"]  # type: ignore[index]
    secret = kube_cluster.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{pull['name']}")
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))  # type: ignore[index]
    assert list(config["auths"]) == [host] and config["auths"][host]["username"] == "alice"
    pull_token = config["auths"][host]["password"]
    assert pull_token not in json.dumps(pod) and token not in json.dumps(pod)

    removed = primage("app", "rm", "notebook", env=env)
    assert removed.returncode == 0, removed.stderr
    gone = kube_cluster.get(f"/api/v1/namespaces/{NAMESPACE}/secrets?labelSelector={labels}")
    assert not gone["items"], "the app's Secrets went with it"
    refused = httpx.get(f"{server.url}/whoami", headers={"Authorization": f"Bearer {pull_token}"})
    assert refused.status_code == 401, "its pull credential is revoked"
