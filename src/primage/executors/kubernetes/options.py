"""What an operator configures for a Kubernetes cluster, and what a job may ask of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from pydantic import Field

from primage.executors.base import ExecutorOptions
from primage.executors.registry import ConfigError
from primage.models import Strict

DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class Toleration(Strict):
    """A pod toleration, as Kubernetes spells it."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None  # Kubernetes' own name

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class KubernetesOptions(ExecutorOptions):
    """What an operator configures for a cluster (``executors.NAME`` with kind kubernetes)."""

    kubeconfig: Path | None = Field(
        None,
        description="The kubeconfig file to reach the API server with; default: the service "
        "account of the pod the server runs in, else ~/.kube/config.",
    )
    context: str | None = Field(None, description="The kubeconfig context; default: current.")
    namespace: str = Field("default", pattern=DNS_NAME, description="Where Jobs are made.")
    instance: str = Field(
        "primage",
        pattern=r"^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$",
        description="This platform's name in the namespace: its objects are named "
        "<instance>-<job>-<task>-<attempt> and labelled app.kubernetes.io/instance=<instance>; "
        "platforms sharing a namespace need different ones.",
    )
    space_volume: Literal["hostPath", "persistentVolumeClaim"] = Field(
        "hostPath",
        description="How pods reach the storage root: hostPath (one node, or the same "
        "filesystem at the same path on every node) or a persistentVolumeClaim "
        "(ReadWriteMany: NFS, CephFS).",
    )
    space_path: Path | None = Field(
        None, description="hostPath: the storage root as the nodes see it; default: the server's."
    )
    space_claim: str | None = Field(
        None, pattern=DNS_NAME, description="persistentVolumeClaim: its name (in namespace)."
    )
    base_image: str = Field(
        "docker.io/library/python:3.11-slim",
        description="The image tasks of jobs without an image run in.",
    )
    capacity: int = Field(
        64, ge=1, description="Cores' worth of the platform's tasks the cluster runs at once."
    )
    prefetch: int | None = Field(
        None,
        ge=1,
        description="Jobs made ahead of those running; default: capacity. More is slower: "
        "pods the scheduler finds no room for wait in its unschedulable queue (up to 60 s on "
        "Kubernetes 1.20) rather than starting as room frees up.",
    )
    run_as_user: int | None = Field(
        None, ge=1, description="The uid of every pod; default: the server's sandbox_uid."
    )
    run_as_group: int | None = Field(
        None, ge=1, description="Their gid; default: sandbox_gid (the group spaces belong to)."
    )
    read_only_root_filesystem: bool = Field(
        True, description="Pods' root filesystems read-only (/tmp and /work stay writable)."
    )
    service_account: str | None = Field(None, pattern=DNS_NAME, description="Pods' account.")
    priority_class: str | None = Field(None, pattern=DNS_NAME, description="Default priority.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="For every pod.")
    tolerations: list[Toleration] = Field(default_factory=list, description="For every pod.")
    labels: dict[str, str] = Field(default_factory=dict, description="More labels, every object.")
    gpus: bool = Field(False, description="The nodes offer nvidia.com/gpu: jobs may ask for GPUs.")
    pending_timeout_seconds: float = Field(
        600,
        gt=0,
        description="A pod whose image cannot be pulled this long fails with the kubelet's "
        "message; an unschedulable one with the scheduler's, once no task of the executor has "
        "started or ended for this long.",
    )
    app_address: Literal["pod", "service"] = Field(
        "pod",
        description="How the proxy reaches app instances: 'pod', the pod's IP (a server on a "
        "node, or on a network routed to the pods); 'service', the instance's Service by "
        "cluster DNS (a server inside the cluster).",
    )
    grace_seconds: int = Field(
        5, ge=0, description="terminationGracePeriodSeconds: from SIGTERM to SIGKILL on cancel."
    )


class KubernetesJobOptions(Strict):
    """What a job file may ask of Kubernetes (``executor_options``)."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels its pods need, over the operator's."
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="More tolerations.")
    priority_class: str | None = Field(None, pattern=DNS_NAME, description="PriorityClass name.")


def api_client(options: KubernetesOptions) -> k8s.ApiClient:
    """A client of its own (not the library's global configuration)."""
    configuration = k8s.Configuration()
    if options.kubeconfig is None:
        try:
            kubeconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration)
        except kubeconfig.ConfigException:
            pass
    try:
        kubeconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(options.kubeconfig) if options.kubeconfig else None,
            context=options.context,
            client_configuration=configuration,
        )
    except (kubeconfig.ConfigException, OSError) as exc:
        raise ConfigError(f"cannot read the kubeconfig: {exc}") from None
    return k8s.ApiClient(configuration)
