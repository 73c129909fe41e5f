"""An app instance's Kubernetes objects, as pure functions (beside ``objects``, the tasks').

Each instance the supervisor starts is a ``StatefulSet`` of one replica with a ``Service`` of
its own (the stable name the proxy reaches it by from inside the cluster) and a ``Secret``
holding the app's token and sealed variables: the pod's environment takes them from the
Secret (``secretKeyRef``) and its command line names them as ``$(VAR)``, which the kubelet
expands, so that no pod spec holds one in clear. The Service and the Secret are owned by the
StatefulSet: deleting it deletes them.

Probes: the readiness probe asks the app's health path (no credential: a probe carries none in
clear either), so that the Service sends traffic to a ready pod only; a startup probe and a
liveness probe check that it listens. Whether an instance serves, restarts or fails stays the
supervisor's decision, as on every backend (ADR 0012).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from primage.executors.kubernetes.objects import (
    NETWORK,
    PodDefaults,
    SpaceMount,
    container,
    platform_labels,
    pod_spec,
    scratch,
    space_volumes,
)

APP = "primage.io/app"
GENERATION = "primage.io/generation"
INDEX = "primage.io/index"
COMPONENT = "app.kubernetes.io/component"
WORKDIR = "/work"
TOKEN = "PRIMAGE_APP_TOKEN"
PROBE_S = 2  # how often the probes ask


def app_labels(defaults: PodDefaults, app_id: int) -> dict[str, str]:
    """The labels of every object of an app's (its instances', its pull credential)."""
    return {**platform_labels(defaults), COMPONENT: "app", APP: str(app_id)}


def instance_labels(
    defaults: PodDefaults, app_id: int, generation: int, index: int
) -> dict[str, str]:
    """The labels of an instance's objects (adoption, the watches, cleanup)."""
    return {**app_labels(defaults, app_id), GENERATION: str(generation), INDEX: str(index)}


def pull_secret_name(defaults: PodDefaults, app_id: int) -> str:
    """An app's pull credential (``objects.pull_secret``), which its pods pull with."""
    return f"{defaults.instance}-app-pull-{app_id}"


def instance_name(
    defaults: PodDefaults, app_id: int, generation: int, index: int, salt: str
) -> str:
    """A StatefulSet's (and its Service's and Secret's) name; ``salt`` tells the starts of one
    instance apart, so that a restart never waits for the last one's objects to go."""
    return f"{defaults.instance}-app-{app_id}-{generation}-{index}-{salt}"


def pod_name(name: str) -> str:
    """The one pod of an instance's StatefulSet."""
    return f"{name}-0"


def instance_objects(
    defaults: PodDefaults,
    name: str,
    labels: Mapping[str, str],
    *,
    image: str,
    argv: list[str],
    env: Mapping[str, str],
    secrets: Mapping[str, str],
    mounts: list[SpaceMount],
    port: int,
    health_path: str,
    startup_s: float,
    limits: dict[str, dict[str, str]],
    workdir: str | None,
    pull_secret: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(StatefulSet, Service, Secret) of one instance. ``env`` holds the plain variables,
    ``secrets`` those that go to the Secret (the app token among them)."""
    volumes, volume_mounts = space_volumes(defaults, mounts)
    scratch(volumes, volume_mounts, WORKDIR)
    variables: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    variables += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}}
        for k in sorted(secrets)
    ]
    made = container(defaults, image=image, argv=argv, env=variables, limits=limits,
                     mounts=volume_mounts, workdir=workdir or WORKDIR)  # fmt: skip
    made["ports"] = [{"name": "http", "containerPort": port}]
    listens = {"tcpSocket": {"port": port}, "periodSeconds": PROBE_S}
    made["startupProbe"] = {**listens, "failureThreshold": max(1, math.ceil(startup_s / PROBE_S))}
    made["livenessProbe"] = {**listens, "periodSeconds": 10, "failureThreshold": 3}
    made["readinessProbe"] = {"httpGet": {"path": health_path, "port": port},
                              "periodSeconds": PROBE_S}  # fmt: skip
    pod = pod_spec(defaults, made, volumes, restart="Always", pull_secret=pull_secret)
    meta = {"name": name, "namespace": defaults.namespace, "labels": dict(labels)}
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": {**labels, NETWORK: "allowed"}}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": dict(labels),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta,
        "stringData": dict(secrets),
    }
    return stateful_set, service, secret


def owned_by(manifest: dict[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with ``owner`` (a made StatefulSet) as its owner: deleted with it."""
    reference = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }  # no blockOwnerDeletion: that needs a right on the owner's finalizers, and nothing waits
    return {**manifest, "metadata": {**manifest["metadata"], "ownerReferences": [reference]}}
