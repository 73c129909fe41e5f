"""The Kubernetes objects of the platform, as pure functions from what to run to manifests.

Nothing here talks to a cluster: each function returns the dict the API server takes, so that
the manifests are tested (and validated against Kubernetes' schemas) without one, as
JupyterHub's kubespawner does with its ``objects`` module.

- :func:`task_job`: one task attempt as a ``batch/v1`` Job: ``backoffLimit: 0`` (retries are the
  platform's), the attempt's labels on the Job and its pod, resources as requests and limits,
  the time-out as ``activeDeadlineSeconds``, the task's variables, the spaces it mounts.
- :func:`pull_secret`: a job's registry credential as a ``kubernetes.io/dockerconfigjson``
  Secret, named by the pods that pull with it.

Every pod runs as the configured non-root uid and gid, without privilege escalation, with every
capability dropped, the runtime's default seccomp profile, no service-account token and no
service links; the root filesystem read-only unless the operator allows otherwise (``/tmp`` and
``/work`` are then empty dirs of the pod's own).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from primage.executors.base import TaskKey, TaskRun

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"  # which platform: several may share a namespace
EXECUTOR = "primage.io/executor"
JOB = "primage.io/job"
TASK = "primage.io/task"
ATTEMPT = "primage.io/attempt"
NETWORK = "primage.io/network"  # "none": the NetworkPolicy a site adds denies it all traffic
CONTAINER = "task"
SPACES = "/spaces"
WORKDIR = "/work"
GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class SpaceVolume:
    """Where pods find the storage root: a ``hostPath`` (one node, or the same filesystem
    mounted at the same path on every node) or a ``persistentVolumeClaim`` (ReadWriteMany)."""

    kind: Literal["hostPath", "persistentVolumeClaim"]
    path: str = ""  # hostPath: the storage root on the nodes
    claim: str = ""  # persistentVolumeClaim: its name; its root is the storage root


@dataclass(frozen=True)
class PodDefaults:
    """What the operator sets for every pod of an executor."""

    executor: str
    namespace: str
    instance: str
    volume: SpaceVolume
    uid: int
    gid: int
    read_only_root: bool = True
    service_account: str | None = None
    priority_class: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SpaceMount:
    """One space (or one folder of it: ``folder``, its real path inside the space) a pod sees
    at ``/spaces/<space>[/<folder>]``."""

    space: str
    read_only: bool
    folder: str | None = None


def job_name(defaults: PodDefaults, key: TaskKey) -> str:
    """The Job (and, less a suffix, the pod) of an attempt: a DNS label, as the API wants."""
    return f"{defaults.instance}-{key.job_id}-{key.index}-{key.attempt}"


def key_of_name(defaults: PodDefaults, name: str) -> TaskKey | None:
    """The attempt a Job's name (``job_name``) stands for, or None for another name."""
    parts = name.removeprefix(f"{defaults.instance}-").split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return TaskKey(int(parts[0]), int(parts[1]), int(parts[2]))
    return None


def pull_secret_name(defaults: PodDefaults, job_id: int) -> str:
    return f"{defaults.instance}-pull-{job_id}"


def platform_labels(defaults: PodDefaults) -> dict[str, str]:
    """The labels of every object of this platform's executor (its watches' selector)."""
    return {
        **defaults.labels,
        MANAGED_BY: "primage",
        INSTANCE: defaults.instance,
        EXECUTOR: defaults.executor,
    }


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def attempt_labels(defaults: PodDefaults, key: TaskKey) -> dict[str, str]:
    """The labels that find an attempt again (adoption, the shared watch, cleanup)."""
    return {
        **platform_labels(defaults),
        JOB: str(key.job_id),
        TASK: str(key.index),
        ATTEMPT: str(key.attempt),
    }


def key_of(labels: Mapping[str, str] | None) -> TaskKey | None:
    """The attempt an object's labels name, or None for an object that is not a task's."""
    labels = labels or {}
    try:
        return TaskKey(int(labels[JOB]), int(labels[TASK]), int(labels[ATTEMPT]))
    except (KeyError, ValueError):
        return None


def quantity_bytes(count: int) -> str:
    """Bytes as a Kubernetes quantity: Mi when it divides, else plain bytes."""
    mib = 1024 * 1024
    return f"{count // mib}Mi" if count % mib == 0 else str(count)


def resources(cpus: int, memory_bytes: int | None, gpus: int) -> dict[str, dict[str, str]]:
    """Requests equal to limits (a pod is scheduled where what it asks is free, and cannot
    take more: the Guaranteed QoS class when it sets memory)."""
    wanted = {"cpu": str(cpus)}
    if memory_bytes is not None:
        wanted["memory"] = quantity_bytes(memory_bytes)
    if gpus:
        wanted[GPU] = str(gpus)
    return {"requests": dict(wanted), "limits": dict(wanted)}


def space_volumes(
    defaults: PodDefaults, mounts: list[SpaceMount]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) for the spaces: with a ``hostPath`` a volume per space (its own
    folder), so that the kubelet confines a folder's ``subPath`` to that space; with a claim one
    volume, each space a ``subPath`` of it."""
    volumes: list[dict[str, Any]] = []
    volume_mounts: list[dict[str, Any]] = []
    if defaults.volume.kind == "persistentVolumeClaim" and mounts:
        volumes.append({"name": "spaces", "persistentVolumeClaim": {
            "claimName": defaults.volume.claim}})  # fmt: skip
    for i, mount in enumerate(sorted(mounts, key=lambda m: m.space)):
        where = f"{SPACES}/{mount.space}" + (f"/{mount.folder}" if mount.folder else "")
        entry: dict[str, Any] = {"mountPath": where, "readOnly": mount.read_only}
        if defaults.volume.kind == "hostPath":
            name = f"space-{i}"
            path = f"{defaults.volume.path.rstrip('/')}/{mount.space}"
            volumes.append({"name": name, "hostPath": {"path": path, "type": "Directory"}})
            entry["name"] = name
            if mount.folder:
                entry["subPath"] = mount.folder
        else:
            entry["name"] = "spaces"
            entry["subPath"] = mount.space + (f"/{mount.folder}" if mount.folder else "")
        volume_mounts.append(entry)
    return volumes, volume_mounts


def scratch(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]], workdir: str) -> None:
    """A pod's own empty folders: its working folder and ``/tmp`` (its root is read-only)."""
    volumes += [{"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts += [{"name": "work", "mountPath": workdir}, {"name": "tmp", "mountPath": "/tmp"}]


def container(
    defaults: PodDefaults,
    *,
    image: str,
    argv: list[str],
    env: list[dict[str, Any]],
    limits: dict[str, dict[str, str]],
    mounts: list[dict[str, Any]],
    workdir: str = WORKDIR,
) -> dict[str, Any]:
    """The one container of a platform pod, confined as every one is."""
    made: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "workingDir": workdir,
        "env": env,
        "resources": limits,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": defaults.read_only_root,
            "runAsNonRoot": True,
        },
    }
    if argv:  # none: the image's own entry point
        made["command"] = argv
    return made


def pod_spec(
    defaults: PodDefaults,
    made: dict[str, Any],
    volumes: list[dict[str, Any]],
    *,
    restart: Literal["Never", "Always"],
    pull_secret: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod around its container: the operator's defaults, and the job's ``executor_options``
    (node selector, tolerations, priority class) over them."""
    options = options or {}
    pod: dict[str, Any] = {
        "restartPolicy": restart,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsUser": defaults.uid,
            "runAsGroup": defaults.gid,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [made],
        "volumes": volumes,
    }
    node_selector = {**defaults.node_selector, **options.get("node_selector", {})}
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations = [*defaults.tolerations, *options.get("tolerations", [])]
    if tolerations:
        pod["tolerations"] = [dict(t) for t in tolerations]
    priority = options.get("priority_class") or defaults.priority_class
    if priority:
        pod["priorityClassName"] = priority
    if defaults.service_account:
        pod["serviceAccountName"] = defaults.service_account
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": pull_secret}]
    return pod


def task_job(
    defaults: PodDefaults,
    run: TaskRun,
    *,
    image: str,
    argv: list[str],
    mounts: list[SpaceMount],
    pull_secret: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Job of one task attempt. ``options``: the job's ``executor_options`` (node selector,
    tolerations, priority class), over the operator's defaults."""
    labels = attempt_labels(defaults, run.key)
    pod_labels = {**labels, NETWORK: "allowed" if run.network else "none"}
    volumes, volume_mounts = space_volumes(defaults, mounts)
    scratch(volumes, volume_mounts, WORKDIR)
    env = [{"name": k, "value": v} for k, v in sorted(run.env.items())]
    limits = resources(run.cpus, run.memory_bytes, run.gpus)
    made = container(defaults, image=image, argv=argv, env=env, limits=limits,
                     mounts=volume_mounts)  # fmt: skip
    pod = pod_spec(defaults, made, volumes, restart="Never", pull_secret=pull_secret,
                   options=options)  # fmt: skip
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"metadata": {"labels": pod_labels}, "spec": pod},
    }
    if run.timeout_s is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(run.timeout_s))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(defaults, run.key),
            "namespace": defaults.namespace,
            "labels": labels,
        },
        "spec": spec,
    }


def job_pull_labels(defaults: PodDefaults, job_id: int) -> dict[str, str]:
    return {**platform_labels(defaults), JOB: str(job_id)}


def pull_secret(
    defaults: PodDefaults,
    name: str,
    labels: Mapping[str, str],
    registry: str,
    user: str,
    password: str,
) -> dict[str, Any]:
    """A pull credential for pods (``imagePullSecrets``): a read-only token of the user's. A
    job's (``pull_secret_name``, ``job_pull_labels``) is revoked when the job ends, an app's
    (``app_objects``) when the app is removed."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": user, "password": password, "auth": auth}}}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": defaults.namespace, "labels": dict(labels)},
        "data": {".dockerconfigjson": encoded},
    }
