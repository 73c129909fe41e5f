"""The Kubernetes executor against a real cluster on loopback (tests/kube.py: kube-apiserver,
controller manager, scheduler and kubelet v1.20.2 built from Debian's source, containerd): the
platform reaches it as its own user, with only the Role the docs give sites.

HTC jobs as one Job per attempt with the same results as on local, the pods' confinement (their
uid, their spaces only, read-only where asked, a folder-confined job its folder only), an
OOM-killed task, an evicted one, a pod that cannot start, server-side dry run of the manifests,
and the API's logs. Apps and interactive jobs as StatefulSets behind the proxy: confined to
their spaces, their token in a Secret, adopted after a SIGKILL of the server, stopped by
scaling to zero (the notebook's image on the cluster is test_notebook_image.py's). The executor
contract (cancel, time-outs, retries, adoption after a SIGKILL of the server, the periodic sync)
runs in test_executor_contract.py.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest

from primage.client import Client
from primage.errors import BadRequest, Forbidden
from primage.executors.base import TaskKey, TaskRun
from primage.executors.kubernetes import (
    KubernetesExecutor,
    KubernetesOptions,
    api_client,
    app_objects,
    objects,
)
from primage.executors.kubernetes.informer import Expired, Informer
from tests.harness import BUSYBOX, RunningServer, eventually, outputs, scans
from tests.kube import NAMESPACE, PLATFORM_TOKEN, KubeCluster


def job_pods(cluster: KubeCluster, instance: str, job_id: int) -> list[dict[str, Any]]:
    return cluster.pods(f"app.kubernetes.io/instance={instance},primage.io/job={job_id}")


def test_an_htc_job_is_a_job_per_task_with_the_same_results_as_local(
    kube_server: RunningServer, kube_cluster: KubeCluster, kube_instance: str
) -> None:
    api = kube_server.client()
    scans(api, 4)
    job = {
        "kind": "htc",
        "inputs": {"space": "ct", "glob": "in/*.txt"},
        "command": "sha256sum {input} | cut -c1-64 > {output_dir}/{input_stem}.sha256; "
        "echo done {task_index}; id -u",
    }
    on_kube = api.submit_job({**job, "executor": "kube"})
    on_local = api.submit_job(job)
    for each in (on_kube, on_local):
        assert api.wait_job(each.id, poll=0.3, timeout=180).state == "succeeded"
    results = [outputs(api, "ct", j.id) for j in (on_kube, on_local)]
    assert results[0] == results[1] and len(results[0]) == 4
    tasks = api.tasks(on_kube.id).tasks
    assert sorted(t.external_id for t in tasks) == sorted(
        p["metadata"]["name"]
        for p in kube_cluster.pods(
            f"app.kubernetes.io/instance={kube_instance},primage.io/job={on_kube.id}"
        )
    ), "a task's external id is its pod"
    assert b"".join(api.logs(on_kube.id, 2)) == b"done 2\n64000\n", "as the sandbox's uid"
    with pytest.raises(BadRequest, match="one log per task"):
        b"".join(api.logs(on_kube.id, 2, stream="stderr"))
    shown = json.loads(kube_server.cli("executor", "ls", "--json").out)
    assert [(e["name"], e["kind"], e["healthy"]) for e in shown] == [
        ("local", "local", True), ("kube", "kubernetes", True)
    ]  # fmt: skip
    api.remove_job(on_kube.id)
    gone = lambda: not job_pods(kube_cluster, kube_instance, on_kube.id)  # noqa: E731
    eventually(gone, 60, "forget removes the job's Jobs and pods")


def test_pods_see_their_spaces_only_read_only_where_asked(kube_server: RunningServer) -> None:
    """Alice's task looks for Bob's space and the server's data from inside its pod, and
    writes into a space it mounted read-only: none of it is there to reach."""
    admin = kube_server.client()
    bob = Client(kube_server.url, admin.create_user("bob").token)
    alice = Client(kube_server.url, admin.create_user("alice").token)
    bob.create_space("bobs")
    bob.upload("bobs", "secret.txt", b"bob's\n")
    alice.create_space("mine")
    alice.create_space("ref")
    alice.upload("ref", "a.txt", b"ref\n")
    probe = (
        "ls /spaces; cat /spaces/bobs/secret.txt; ls /srv /data 2>&1 | head -3; "
        "echo x > /spaces/ref/new.txt || echo refused; echo ok > /spaces/mine/out.txt; "
        "touch /etc/x || echo read-only root"
    )
    job = alice.submit_job(
        {"executor": "kube", "spaces": ["mine", {"name": "ref", "read_only": True}],
         "command": probe}
    )  # fmt: skip
    assert alice.wait_job(job.id, poll=0.3, timeout=120).state == "succeeded"
    out = b"".join(alice.logs(job.id, 0)).decode()
    assert out.splitlines()[:2] == ["mine", "ref"], out
    assert "bob's" not in out and "refused" in out and "read-only root" in out
    assert alice.read_bytes("mine", "out.txt") == b"ok\n"
    assert "new.txt" not in [e.name for e in alice.listdir("ref", "")]
    with pytest.raises(Forbidden):
        alice.submit_job({"executor": "kube", "spaces": ["bobs"], "command": "true"})
    assert admin.read_bytes("bobs", "secret.txt") == b"bob's\n"


def test_a_folder_confined_job_sees_its_folder_only_whatever_links_it_holds(
    kube_server: RunningServer,
) -> None:
    """The token allows one folder of a space; a link inside it to the rest of the space and
    to another space leads nowhere in the pod (the kubelet confines the subPath to the space's
    own volume)."""
    api = kube_server.client()
    api.create_space("study")
    api.upload("study", "cohort/a.txt", b"a\n")
    api.upload("study", "other/b.txt", b"b\n")
    folder = kube_server.data_dir / "spaces" / "study" / "cohort"
    (folder / "up").symlink_to("../other")
    job = api.submit_job(
        {"executor": "kube", "spaces": [{"name": "study", "folder": "cohort"}],
         "command": "ls /spaces/study; cat /spaces/study/cohort/a.txt; "
                    "cat /spaces/study/cohort/up/b.txt 2>&1 || echo no-way"}
    )  # fmt: skip
    assert api.wait_job(job.id, poll=0.3, timeout=120).state == "succeeded"
    out = b"".join(api.logs(job.id, 0)).decode().splitlines()
    assert out[:2] == ["cohort", "a"] and out[-1] == "no-way", out


def test_an_oom_killed_task_fails_saying_so(kube_server: RunningServer) -> None:
    api = kube_server.client()
    job = api.submit_job(
        {"executor": "kube", "resources": {"memory": "16MiB"},
         "command": "echo start; exec dd if=/dev/zero of=/dev/null bs=100M count=1"}
    )  # fmt: skip
    done = api.wait_job(job.id, poll=0.3, timeout=120)
    task = api.tasks(job.id).tasks[0]
    assert done.state == "failed" and task.exit_code == 137, task
    assert task.message.startswith("exit code 137 (OOMKilled)"), task.message


def test_an_evicted_task_is_not_a_failed_one(
    kube_server: RunningServer, kube_cluster: KubeCluster, kube_instance: str
) -> None:
    """``kubectl drain`` evicts through the API (the kubelet's own eviction for want of memory
    or disk is off on the test node). The task runs again, whoever runs it: the Job's
    controller with a new pod, or the platform with a new attempt when the Job failed (its pod
    ended before it was deleted: *lost*, not counted against its retries, of which it has
    none). Either way the task succeeds."""
    api = kube_server.client()
    api.create_space("work")
    seen = "{spaces.work}/seen"  # the first run leaves it, and waits to be evicted
    first = f"if [ -e {seen} ]; then echo again; else touch {seen}; sleep 120; fi"
    job = api.submit_job({"executor": "kube", "spaces": ["work"], "command": first})
    eventually(lambda: api.tasks(job.id).tasks[0].state == "running", 60, "the task running")
    (pod,) = job_pods(kube_cluster, kube_instance, job.id)
    name = pod["metadata"]["name"]
    with kube_cluster.api() as client:
        kubernetes.client.CoreV1Api(client).create_namespaced_pod_eviction(name, NAMESPACE, {
            "apiVersion": "policy/v1beta1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": NAMESPACE},
        })  # fmt: skip
    done = api.wait_job(job.id, poll=0.3, timeout=120)
    assert done.state == "succeeded", done.message
    assert b"".join(api.logs(job.id, 0)) == b"again\n"


def test_a_pod_that_cannot_start_fails_with_the_kubelet_s_reason(
    kube_server: RunningServer,
) -> None:
    """An image no node has and none may pull (given by digest, from outside the platform
    registry) waits as ErrImagePull/ImagePullBackOff, then fails with that reason."""
    api = kube_server.client()
    image = "127.0.0.1:1/nowhere@sha256:" + "0" * 64
    job = api.submit_job({"executor": "kube", "image": image, "command": "true"})
    done = api.wait_job(job.id, poll=0.5, timeout=180)
    task = api.tasks(job.id).tasks[0]
    assert done.state == "failed" and task.exit_code == 125
    assert task.message.split(":")[0] in {"ErrImagePull", "ImagePullBackOff"}, task.message
    with pytest.raises(BadRequest, match="by digest"):
        api.submit_job({"executor": "kube", "image": "docker.io/library/alpine:3",
                        "command": "true"})  # fmt: skip


def test_the_manifests_pass_the_api_server_s_own_validation(kube_cluster: KubeCluster) -> None:
    """Server-side dry run, as the platform's user: every field the executor writes is one the
    API server knows, and the Role lets the platform make it."""
    options = KubernetesOptions.model_validate(
        {"kubeconfig": str(kube_cluster.platform_kubeconfig), "namespace": NAMESPACE}
    )
    volume = objects.SpaceVolume("hostPath", "/srv")
    defaults = objects.PodDefaults("dry", NAMESPACE, "dry", volume, 64000, 64000)
    executor = KubernetesExecutor("dry", options, defaults, api_client(options), Path("/srv"))
    chosen = {"node_selector": {"disk": "ssd"}}
    run = TaskRun(TaskKey(1, 2, 3), "echo hi", {"A": "b"}, {"ct": True}, timeout_s=5,
                  memory_bytes=64 * 1024**2, options=chosen)  # fmt: skip
    manifest: dict[str, Any] = executor.manifest(run)
    made = executor.batch.create_namespaced_job(NAMESPACE, manifest, dry_run="All")
    assert made.metadata.name == "dry-1-2-3"
    broken = copy.deepcopy(manifest)
    broken["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"
    refused = httpx.post(
        f"{kube_cluster.server}/apis/batch/v1/namespaces/{NAMESPACE}/jobs?dryRun=All",
        json=broken, verify=False, headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
    )  # fmt: skip
    assert refused.status_code == 422 and "restartPolicy" in refused.text, refused.text
    name, labels = objects.pull_secret_name(defaults, 1), objects.job_pull_labels(defaults, 1)
    secret = objects.pull_secret(defaults, name, labels, "127.0.0.1:5000", "alice", "token")
    executor.core.create_namespaced_secret(NAMESPACE, secret, dry_run="All")
    app = app_objects.instance_labels(defaults, 4, 1, 0)
    instance = app_objects.instance_objects(
        defaults, "dry-app", app, image=BUSYBOX, argv=["httpd", "-f", "-p", "8080"], env={},
        secrets={app_objects.TOKEN: "t"}, mounts=[objects.SpaceMount("ct", True)], port=8080,
        health_path="/", startup_s=30, limits=objects.resources(1, None, 0), workdir=None,
    )  # fmt: skip
    stateful_set, service, app_secret = instance
    owner = {"metadata": {"name": "dry-app", "uid": "00000000-0000-0000-0000-000000000000"}}
    k8s_apps = kubernetes.client.AppsV1Api(executor.api)
    k8s_apps.create_namespaced_stateful_set(NAMESPACE, stateful_set, dry_run="All")
    for owned in (service, app_secret):
        owned = app_objects.owned_by(owned, owner)
        create = (executor.core.create_namespaced_service if owned["kind"] == "Service"
                  else executor.core.create_namespaced_secret)  # fmt: skip
        create(NAMESPACE, owned, dry_run="All")


def test_a_task_no_node_has_room_for_fails_with_the_scheduler_s_message(
    kube_server: RunningServer,
) -> None:
    """The node has 2 cores: a task asking for 3 waits (queueing, while others run), and fails
    once nothing of the executor's has started or ended for pending_timeout_seconds (10 s)."""
    api = kube_server.client()
    job = api.submit_job({"executor": "kube", "resources": {"cpus": 3}, "command": "true"})
    done = api.wait_job(job.id, poll=0.5, timeout=180)
    task = api.tasks(job.id).tasks[0]
    assert done.state == "failed" and task.exit_code == 125
    assert task.message.startswith("Unschedulable: 0/1 nodes are available"), task.message
    assert "Insufficient cpu" in task.message


def test_bad_executor_options_are_refused_naming_the_field(kube_server: RunningServer) -> None:
    api = kube_server.client()
    for options, field in (
        ({"tolerations": [{"key": "gpu", "effect": "Sometimes"}]}, "effect"),
        ({"priority_class": "Not A Name"}, "priority_class"),
        ({"partition": "gpu"}, "partition"),
    ):
        with pytest.raises(BadRequest, match=field):
            api.submit_job({"executor": "kube", "executor_options": options, "command": "true"})


def test_a_watch_that_expired_lists_again_and_misses_nothing(kube_cluster: KubeCluster) -> None:
    """A watch from a version etcd compacted away is answered 410 Gone; the informer then lists
    again and reports what changed meanwhile (created, and deleted after)."""
    seen: dict[str, dict[str, Any] | None] = {}
    with kube_cluster.api() as api:
        core = kubernetes.client.CoreV1Api(api)
        lister = core.list_namespaced_config_map
        informer = Informer("configmaps", lister, NAMESPACE, "test=expiry", seen.__setitem__)
        version = informer._list()  # the version a watch would resume from
        for i in range(150):
            core.create_namespaced_config_map(
                NAMESPACE, {"metadata": {"name": f"expiry-{i}", "labels": {"test": "expiry"}}}
            )
        kube_cluster.compact()  # the versions in between are gone
        with pytest.raises(Expired):
            informer._watch(version)
        thread = threading.Thread(target=informer._run, args=(version,), daemon=True)
        thread.start()
        try:
            eventually(lambda: len(informer.items()) == 150, 30, "the cache listed again")
            assert informer.relists == 1 and len([o for o in seen.values() if o]) == 150
            core.delete_namespaced_config_map("expiry-0", NAMESPACE)
            eventually(lambda: seen.get("expiry-0", {}) is None, 30, "a deletion watched after")
        finally:
            informer.stop()
            core.delete_collection_namespaced_config_map(NAMESPACE, label_selector="test=expiry")


def test_logs_follow_a_running_pod(kube_server: RunningServer) -> None:
    api = kube_server.client()
    job = api.submit_job({"executor": "kube", "command": "echo one; sleep 2; echo two"})
    followed = b"".join(api.logs(job.id, 0, follow=True))
    assert followed == b"one\ntwo\n"
    assert api.wait_job(job.id, poll=0.3, timeout=60).state == "succeeded"


def test_spaces_through_a_persistent_volume_claim(
    kube_cluster: KubeCluster, kube_instance: str, tmp_path: Path
) -> None:
    """The storage root as a claim (a PersistentVolume bound to it by the cluster's own
    controller; here a hostPath PV, elsewhere NFS or CephFS): each space a subPath of it, read-only
    where asked. A job confined to one folder is refused: a claim's subPath is confined to the
    claim, not to the space."""
    storage = tmp_path / "data" / "spaces"
    claim = f"spaces-{kube_instance}"
    volume = {
        "metadata": {"name": claim},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "hostPath": {"path": str(storage), "type": "DirectoryOrCreate"},
                 "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain"},
    }  # fmt: skip
    wanted = {
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": claim,
                 "resources": {"requests": {"storage": "1Gi"}}},
    }  # fmt: skip
    with kube_cluster.api() as client:
        core = kubernetes.client.CoreV1Api(client)
        core.create_persistent_volume(volume)
        core.create_namespaced_persistent_volume_claim(NAMESPACE, wanted)

        def bound() -> bool:
            found = core.read_namespaced_persistent_volume_claim(claim, NAMESPACE)
            return bool(found.status and found.status.phase == "Bound")

        eventually(bound, 60, "the claim bound to its volume by the cluster's controller")
        executor = {**kube_cluster.executor(kube_instance), "space_volume": "persistentVolumeClaim",
                    "space_claim": claim}  # fmt: skip
        env = {"PRIMAGE_EXECUTORS": json.dumps({"kube": executor}), "PRIMAGE_CONTAINERS": "false"}
        server = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
        try:
            api = server.client()
            api.create_space("ct")
            api.create_space("ref")
            api.upload("ref", "a.txt", b"ref\n")
            job = api.submit_job(
                {"spaces": ["ct", {"name": "ref", "read_only": True}],
                 "command": "cat /spaces/ref/a.txt > /spaces/ct/copy.txt; "
                            "echo x > /spaces/ref/b.txt || echo refused"}
            )  # fmt: skip
            done = api.wait_job(job.id, poll=0.3, timeout=120)
            assert done.state == "succeeded", api.tasks(job.id).tasks[0].message
            assert api.read_bytes("ct", "copy.txt") == b"ref\n"
            assert b"refused" in b"".join(api.logs(job.id, 0))
            with pytest.raises(BadRequest, match="no folders support"):
                api.submit_job({"spaces": [{"name": "ref", "folder": "sub"}], "command": "true"})
        finally:
            server.stop()
            core.delete_namespaced_persistent_volume_claim(claim, NAMESPACE)
            core.delete_persistent_volume(claim)


#: An app on the cluster: busybox's web server over its space, which first writes there what
#: its pod sees (the spaces it mounts, its uid, whether the host answers it).
SITE = """
app:
  name: site
  executor: kube
  command: >-
    sh -c "(ls /spaces; id -u; wget -q -T 3 -O - http://10.244.0.1:{host_port}/ || echo no host;
    for link in to-bob/secret.txt up/bobs/secret.txt; do
    cat {spaces.site}/$link 2>/dev/null || echo unreachable; done)
    > {spaces.site}/seen.txt; exec httpd -f -p {port} -h {spaces.site}"
  strip_prefix: true
  health_path: index.html
  spaces: [site]
"""


def _sets(cluster: KubeCluster, instance: str) -> list[dict[str, Any]]:
    listed = cluster.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"
                         f"?labelSelector=app.kubernetes.io/instance={instance}")  # fmt: skip
    return list(listed["items"])  # type: ignore[call-overload]


def test_an_app_runs_as_a_stateful_set_behind_the_proxy_and_is_adopted_and_stopped(
    kube_server: RunningServer, kube_cluster: KubeCluster, kube_instance: str
) -> None:
    """Alice's app on the cluster serves her space through the proxy; its pod sees her space
    only (not Bob's, not even through links she put in it to his space's folder on the host),
    as the sandbox's uid, and cannot open a connection to the host; the app's
    token is in a Secret, never in the pod spec; a SIGKILLed server's successor adopts the
    instance rather than starting another; stopping it scales the StatefulSet to zero and
    deletes it, removing it deletes its Secrets."""
    admin = kube_server.client()
    bob_token = admin.create_user("bob").token
    bob = Client(kube_server.url, bob_token)
    alice_token = admin.create_user("alice").token
    alice = Client(kube_server.url, alice_token)
    bob.create_space("bobs")
    bob.upload("bobs", "secret.txt", b"bob's\n")
    alice.create_space("site")
    alice.upload("site", "index.html", b"<h1>on the cluster</h1>\n")
    spaces = kube_server.data_dir / "spaces"  # links as a task of hers could leave them
    (spaces / "site" / "to-bob").symlink_to(spaces / "bobs")
    (spaces / "site" / "up").symlink_to("..")
    with pytest.raises(BadRequest, match="no executor named 'nope'; this platform has local, kube"):
        alice.deploy_app("app:\n  name: site\n  executor: nope\n  command: httpd -f -p {port}\n")
    with socket.create_server(("0.0.0.0", 0)) as host_door:  # what a pod must not reach
        host_door.settimeout(0.1)
        alice.deploy_app(SITE.replace("{host_port}", str(host_door.getsockname()[1])),
                         source="site.yaml")  # fmt: skip
        shown = alice.wait_app("site", timeout=120)
        assert shown.state == "running", shown.message
        with pytest.raises(TimeoutError):
            host_door.accept()
    base = f"{kube_server.url}/apps/site/"
    page = httpx.get(f"{base}index.html", headers={"Authorization": f"Bearer {alice_token}"})
    assert page.status_code == 200 and page.text == "<h1>on the cluster</h1>\n"
    seen = alice.read_bytes("site", "seen.txt").decode().split()
    assert seen == ["site", "64000", "no", "host", "unreachable", "unreachable"], seen
    for link in ("to-bob/secret.txt", "up/bobs/secret.txt"):  # nor through the proxy
        leaked = httpx.get(f"{base}{link}", headers={"Authorization": f"Bearer {alice_token}"})
        assert leaked.status_code == 404 and "bob's" not in leaked.text
    assert httpx.get(f"{base}index.html").status_code == 401
    assert httpx.get(f"{base}index.html", headers={"Authorization": f"Bearer {bob_token}"}
                     ).status_code == 403  # fmt: skip

    (made,) = _sets(kube_cluster, kube_instance)
    name = made["metadata"]["name"]
    assert shown.instances[0].external_id == f"kube/{name}"
    secret = kube_cluster.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}")
    token = base64.b64decode(secret["data"]["PRIMAGE_APP_TOKEN"]).decode()  # type: ignore[index]
    (pod,) = kube_cluster.pods(f"app.kubernetes.io/instance={kube_instance}")
    assert len(token) > 20 and token not in json.dumps([made, pod])
    service = kube_cluster.get(f"/api/v1/namespaces/{NAMESPACE}/services/{name}")
    assert service["metadata"]["ownerReferences"][0]["uid"] == made["metadata"]["uid"]  # type: ignore[index]

    kube_server.kill()
    server = kube_server.restart()
    try:
        api = Client(server.url, alice_token)
        eventually(lambda: httpx.get(f"{server.url}/apps/site/index.html",
                                     headers={"Authorization": f"Bearer {alice_token}"}
                                     ).status_code == 200, 60, "the app served again")  # fmt: skip
        assert [s["metadata"]["name"] for s in _sets(kube_cluster, kube_instance)] == [name]
        assert api.app("site").instances[0].restarts == 0, "adopted, not started anew"

        api.stop_app("site")
        assert api.wait_app("site", until=("stopped",), timeout=90).state == "stopped"
        assert not _sets(kube_cluster, kube_instance)
        assert not kube_cluster.pods(f"app.kubernetes.io/instance={kube_instance}")
        api.start_app("site")
        assert api.wait_app("site", timeout=120).state == "running"
        api.remove_app("site")
        labels = f"app.kubernetes.io/instance={kube_instance}"

        def cleaned() -> bool:
            secrets = kube_cluster.get(
                f"/api/v1/namespaces/{NAMESPACE}/secrets?labelSelector={labels}"
            )
            return not _sets(kube_cluster, kube_instance) and not secrets["items"]

        eventually(cleaned, 90, "the app's StatefulSet and Secrets deleted")
    finally:
        server.stop()


def test_an_interactive_job_on_the_cluster_serves_until_cancelled(
    kube_server: RunningServer, kube_cluster: KubeCluster, kube_instance: str
) -> None:
    """``kind: interactive`` with ``executor: kube``: its service is a StatefulSet of the
    cluster, its task's events reach the Kubernetes executor's jobs, and cancelling the job
    deletes it."""
    api = kube_server.client()
    api.create_space("site")
    api.upload("site", "index.html", b"<h1>viewer</h1>\n")
    job = api.submit_job({
        "kind": "interactive", "executor": "kube", "spaces": ["site"],
        "command": "httpd -f -p {port} -h {spaces.site}",
        "service": {"strip_prefix": True, "health_path": "index.html"},
    })  # fmt: skip
    eventually(lambda: api.job(job.id).state == "running", 120, "the interactive job running")
    assert api.job(job.id).executor == "kube"
    page = httpx.get(f"{kube_server.url}/apps/job-{job.id}/index.html",
                     headers={"Authorization": f"Bearer {kube_server.admin_token}"})  # fmt: skip
    assert page.status_code == 200 and page.text == "<h1>viewer</h1>\n"
    assert len(_sets(kube_cluster, kube_instance)) == 1
    api.cancel_job(job.id)
    assert api.wait_job(job.id, timeout=90).state == "cancelled"
    eventually(lambda: not _sets(kube_cluster, kube_instance), 60, "its StatefulSet deleted")
