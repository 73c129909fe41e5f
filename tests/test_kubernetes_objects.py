"""The Kubernetes executor's manifests, without a cluster: what each field says, checked
against Kubernetes' own schemas (kubernetes-validate, strict: unknown fields fail) for the
oldest and newest versions it bundles. The same manifests meet a real API server in
test_kubernetes.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from primage.executors.base import TaskKey, TaskRun
from primage.executors.kubernetes import app_objects, objects
from primage.executors.kubernetes.objects import PodDefaults, SpaceMount, SpaceVolume

HOST = PodDefaults(
    executor="cluster",
    namespace="research",
    instance="primage",
    volume=SpaceVolume("hostPath", path="/srv/primage/spaces/"),
    uid=64000,
    gid=64000,
    node_selector={"disk": "ssd"},
    tolerations=({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},),
    labels={"site": "valencia"},
)
CLAIM = PodDefaults(
    executor="cluster",
    namespace="research",
    instance="primage",
    volume=SpaceVolume("persistentVolumeClaim", claim="spaces"),
    uid=1000,
    gid=1000,
)
VERSIONS = sorted(set(all_versions()), key=lambda v: tuple(map(int, v.split("."))))


def run(**changes: Any) -> TaskRun:
    given: dict[str, Any] = {
        "key": TaskKey(42, 7, 2),
        "command": "segment {input}",
        "env": {"PRIMAGE_TASK_INDEX": "7", "MULTI": "a\nb"},
        "mounts": {"ct": True, "results": False},
        "cpus": 2,
        "memory_bytes": 4 * 1024**3,
        "timeout_s": 90.5,
    }
    return TaskRun(**{**given, **changes})


def validate(manifest: dict[str, Any]) -> None:
    for version in (VERSIONS[0], VERSIONS[-1]):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_an_attempt_is_a_job_with_no_retries_of_its_own_and_the_platform_s_labels() -> None:
    mounts = [SpaceMount("ct", True), SpaceMount("results", False, "lesions/2026")]
    job = objects.task_job(HOST, run(), image="reg/seg@sha256:" + "a" * 64,
                           argv=["segment", "x.dcm"], mounts=mounts,
                           options={"node_selector": {"zone": "b"}})  # fmt: skip
    validate(job)
    assert job["metadata"]["name"] == "primage-42-7-2"
    assert job["metadata"]["namespace"] == "research"
    labels = job["metadata"]["labels"]
    assert objects.key_of(labels) == TaskKey(42, 7, 2)
    assert labels["site"] == "valencia" and labels[objects.EXECUTOR] == "cluster"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0, "retries are the platform's"
    assert spec["activeDeadlineSeconds"] == 91
    template = spec["template"]
    assert template["metadata"]["labels"][objects.NETWORK] == "none"
    pod = template["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["nodeSelector"] == {"disk": "ssd", "zone": "b"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["securityContext"] == {
        "runAsUser": 64000, "runAsGroup": 64000, "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    }  # fmt: skip
    assert container["command"] == ["segment", "x.dcm"] and container["workingDir"] == "/work"
    assert {"name": "MULTI", "value": "a\nb"} in container["env"]
    want = {"cpu": "2", "memory": "4096Mi"}
    assert container["resources"] == {"requests": want, "limits": want}
    assert "imagePullSecrets" not in pod


def test_each_space_is_a_volume_of_its_own_and_a_folder_a_subpath_of_it() -> None:
    """With a hostPath the kubelet confines a subPath to its volume: one volume per space keeps
    a folder-confined job inside its space, whatever links the space holds."""
    mounts = [SpaceMount("ct", True), SpaceMount("results", False, "lesions/2026")]
    job = objects.task_job(HOST, run(), image="i", argv=["true"], mounts=mounts)
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    ct = mounted["/spaces/ct"]
    assert ct["readOnly"] is True and "subPath" not in ct
    assert volumes[ct["name"]]["hostPath"] == {"path": "/srv/primage/spaces/ct",
                                               "type": "Directory"}  # fmt: skip
    folder = mounted["/spaces/results/lesions/2026"]
    assert folder["readOnly"] is False and folder["subPath"] == "lesions/2026"
    assert volumes[folder["name"]]["hostPath"]["path"] == "/srv/primage/spaces/results"
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    assert mounted["/work"]["name"] == "work" and mounted["/tmp"]["name"] == "tmp"


def test_with_a_claim_every_space_is_a_subpath_of_it() -> None:
    mounts = [SpaceMount("ct", False)]
    job = objects.task_job(CLAIM, run(mounts={"ct": False}, gpus=1, memory_bytes=1000,
                                      timeout_s=None, network=True),
                           image="i", argv=["true"], mounts=mounts,
                           pull_secret="primage-pull-42")  # fmt: skip
    validate(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "spaces",
                                 "persistentVolumeClaim": {"claimName": "spaces"}}  # fmt: skip
    assert pod["containers"][0]["volumeMounts"][0] == {
        "name": "spaces", "mountPath": "/spaces/ct", "readOnly": False, "subPath": "ct"
    }  # fmt: skip
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "2", "memory": "1000", "nvidia.com/gpu": "1"}
    assert "activeDeadlineSeconds" not in job["spec"]
    assert job["spec"]["template"]["metadata"]["labels"][objects.NETWORK] == "allowed"
    assert pod["imagePullSecrets"] == [{"name": "primage-pull-42"}]


def test_a_pull_secret_holds_the_job_s_credential_for_its_registry_only() -> None:
    name, labels = objects.pull_secret_name(HOST, 42), objects.job_pull_labels(HOST, 42)
    secret = objects.pull_secret(HOST, name, labels, "registry.example:5000", "alice", "tok")
    validate(secret)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["name"] == objects.pull_secret_name(HOST, 42) == "primage-pull-42"
    assert secret["metadata"]["labels"][objects.JOB] == "42"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    entry = config["auths"]["registry.example:5000"]
    assert list(config["auths"]) == ["registry.example:5000"]
    assert base64.b64decode(entry["auth"]) == b"alice:tok"


@pytest.mark.parametrize("labels", [None, {}, {objects.JOB: "1", objects.TASK: "x"}])
def test_objects_that_are_not_an_attempt_s_name_none(labels: dict[str, str] | None) -> None:
    assert objects.key_of(labels) is None


def test_a_job_s_name_gives_its_attempt_back() -> None:
    key = TaskKey(42, 7, 2)
    assert objects.key_of_name(HOST, objects.job_name(HOST, key)) == key
    for other in ("primage-pull-42", "other-42-7-2", "primage-42-7"):
        assert objects.key_of_name(HOST, other) is None


def test_an_app_instance_is_a_stateful_set_with_a_service_and_a_secret_for_its_token() -> None:
    labels = app_objects.instance_labels(HOST, 5, 2, 1)
    name = app_objects.instance_name(HOST, 5, 2, 1, "a1b2c3")
    token = "s3cret-app-token"
    made = app_objects.instance_objects(
        HOST,
        name,
        labels,
        image="registry.example:5000/alice/notebook@sha256:" + "0" * 64,
        argv=["/bin/sh", "-c", f"exec serve --token=$({app_objects.TOKEN})"],
        env={"PRIMAGE_APP": "notebook"},
        secrets={app_objects.TOKEN: token, "DB_PASSWORD": "hunter2"},
        mounts=[SpaceMount("scans", False), SpaceMount("atlas", True)],
        port=8888,
        health_path="/apps/notebook/api",
        startup_s=60,
        limits=objects.resources(2, 1024**3, 0),
        workdir="/spaces/scans",
        pull_secret=app_objects.pull_secret_name(HOST, 5),
    )
    stateful_set, service, secret = made
    for manifest in made:
        validate(manifest)
        assert manifest["metadata"]["name"] == name == "primage-app-5-2-1-a1b2c3"
        assert manifest["metadata"]["labels"] == labels
    assert token not in json.dumps([stateful_set, service])  # the pod spec names it only
    assert secret["stringData"] == {app_objects.TOKEN: token, "DB_PASSWORD": "hunter2"}
    spec = stateful_set["spec"]
    assert (spec["replicas"], spec["serviceName"]) == (1, name)
    assert spec["selector"]["matchLabels"] == labels
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "primage-app-pull-5"}]
    assert pod["securityContext"]["runAsUser"] == 64000
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["workingDir"] == "/spaces/scans"
    env = {e["name"]: e for e in container["env"]}
    assert env["PRIMAGE_APP"]["value"] == "notebook"
    assert env[app_objects.TOKEN]["valueFrom"] == {
        "secretKeyRef": {"name": name, "key": app_objects.TOKEN}
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/apps/notebook/api", "port": 8888}
    assert container["startupProbe"]["tcpSocket"] == {"port": 8888}
    assert container["startupProbe"]["failureThreshold"] * app_objects.PROBE_S >= 60
    mounts = {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]}
    assert mounts["/spaces/scans"] is False and mounts["/spaces/atlas"] is True
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"] == [{"name": "http", "port": 8888, "targetPort": "http"}]
    owner = {"metadata": {"name": name, "uid": "1234"}}
    owned = app_objects.owned_by(secret, owner)
    validate(owned)
    assert owned["metadata"]["ownerReferences"][0]["uid"] == "1234"
    assert "ownerReferences" not in secret["metadata"]  # a new manifest, the old one unchanged


def test_an_app_s_pull_secret_is_found_by_the_app_s_labels() -> None:
    labels = app_objects.app_labels(HOST, 5)
    secret = objects.pull_secret(HOST, app_objects.pull_secret_name(HOST, 5), labels,
                                 "registry.example:5000", "alice", "tok")  # fmt: skip
    validate(secret)
    assert secret["metadata"]["labels"][app_objects.APP] == "5"
    instance = app_objects.instance_labels(HOST, 5, 1, 0)
    assert labels.items() <= instance.items()  # forgetting the app finds both
