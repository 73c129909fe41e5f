"""App instances on Kubernetes: the instance backend (``apps/backends.py``) of the executor.

``start`` makes an instance's StatefulSet (one replica), its Service and its Secret
(``app_objects``); its ``ref`` is the StatefulSet's name. What the supervisor asks afterwards
comes from shared list+watches, never a poll per instance: the executor's pod watch (which
selects every pod of the executor) and one of the StatefulSets.

- ``address``: where the proxy and the health checks reach the instance: the pod's IP
  (``app_address: pod``, for a server on a node or on a network routed to the pods) or its
  Service's cluster DNS name (``app_address: service``, for a server inside the cluster).
- ``status``: None while the pod's container has not ended; its exit code once it has (even
  if the kubelet restarts it: a restart is the supervisor's, with its backoff), -1 when the
  StatefulSet is gone.
- ``stop``: scales the StatefulSet to zero, waits for its pod to end, deletes it (its Service
  and Secret with it, as their owner).
- The output the supervisor reads (``log_path``) is the pod's log, copied by a thread per
  instance that follows it through the API; a pod that cannot start writes why there instead.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from primage.apps.backends import InstanceBackend, InstanceError, Started
from primage.apps.launch import Launch, output_log
from primage.executors.kubernetes import app_objects, objects, status
from primage.executors.kubernetes.informer import Informer, Obj

if TYPE_CHECKING:
    from primage.executors.kubernetes import KubernetesExecutor

log = logging.getLogger("primage.executors.kubernetes")

DEFAULT_PORT = 8080  # where an app without a ``port`` listens in its pod
STOP_WAIT_S = 20.0  # beyond the grace time: how long a stop waits for the pod to end
GONE_WAIT_S = 10.0  # then for the StatefulSet to be gone (the cluster finishes it anyway)


class KubernetesBackend(InstanceBackend):
    in_pods = True

    def __init__(self, executor: KubernetesExecutor, folder: Path) -> None:
        self.executor = executor
        self.defaults = executor.defaults
        self.namespace = executor.namespace
        self.folder = folder  # <data_dir>/apps: <app>/<generation>.<index>/output.log
        self.core = executor.core
        self.apps = k8s.AppsV1Api(executor.api)
        selector = objects.selector(
            {**objects.platform_labels(self.defaults), app_objects.COMPONENT: "app"}
        )
        self.sets = Informer("statefulsets", self.apps.list_namespaced_stateful_set,
                             self.namespace, selector, lambda name, obj: None)  # fmt: skip
        self._followers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _synced(self) -> None:
        self.sets.start()
        self.executor.pods.start()
        for informer in (self.sets, self.executor.pods):
            if not informer.synced.wait(60):
                raise InstanceError(f"cannot list the cluster's {informer.kind}")

    # -- start ----------------------------------------------------------------------------------

    def start(self, launch: Launch, generation: int, index: int) -> Started:
        self._synced()
        spec = launch.spec
        port = spec.port or DEFAULT_PORT
        labels = app_objects.instance_labels(self.defaults, launch.app_id, generation, index)
        name = app_objects.instance_name(
            self.defaults, launch.app_id, generation, index, secrets.token_hex(3)
        )
        self._remove_leftovers(labels, keep=name)
        hidden = {**spec.secrets, app_objects.TOKEN: launch.token}
        env = {k: v for k, v in launch.variables(port).items() if k not in hidden}
        env["HOME"] = app_objects.WORKDIR
        mounts = [objects.SpaceMount(m.name, m.read_only) for m in spec.spaces]
        limits = objects.resources(spec.resources.cpus, spec.resources.memory,
                                   spec.resources.gpus)  # fmt: skip
        stateful_set, service, secret = app_objects.instance_objects(
            self.defaults,
            name,
            labels,
            image=spec.image or self.executor.options.base_image,
            argv=launch.command(port, token=f"$({app_objects.TOKEN})"),
            env=env,
            secrets=hidden,
            mounts=mounts,
            port=port,
            health_path=launch.prefix + spec.health_path.lstrip("/"),
            startup_s=spec.startup_timeout,
            limits=limits,
            workdir=launch.workdir,
            pull_secret=self._pull_secret(launch.app_id) if spec.image else None,
        )
        stateful_set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = (
            self.executor.options.grace_seconds
        )
        try:
            made = self.apps.create_namespaced_stateful_set(self.namespace, cast(Any, stateful_set))
            owner = {"metadata": {"name": name, "uid": made.metadata and made.metadata.uid}}
            secret, service = (app_objects.owned_by(o, owner) for o in (secret, service))
            self.core.create_namespaced_secret(self.namespace, cast(Any, secret))
            self.core.create_namespaced_service(self.namespace, cast(Any, service))
        except ApiException as exc:
            raise InstanceError(
                f"the API server refused the instance: {status.api_message(exc)}"
            ) from None
        self._follow(name, self.log_path(launch.app_id, generation, index))
        return Started(name, port)

    def _remove_leftovers(self, labels: dict[str, str], keep: str) -> None:
        """An earlier start of the same instance that ended (its container exited, and the
        kubelet may be restarting it) goes: deleted, its pod with it, without waiting for it."""
        body = k8s.V1DeleteOptions(propagation_policy="Background")
        for found in self.sets.items():
            name = found["metadata"]["name"]
            mine = all(found["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())
            if mine and name != keep:
                self._delete(name, body)
                self._delete_pod(app_objects.pod_name(name))

    # -- what the watches say -------------------------------------------------------------------

    def _pod(self, ref: str) -> Obj | None:
        return self.executor.pods.get(app_objects.pod_name(ref))

    def address(self, ref: str, port: int) -> str:
        if self.executor.options.app_address == "service":
            return f"{ref}.{self.namespace}.svc:{port}"
        pod = self._pod(ref)
        ip = ((pod or {}).get("status") or {}).get("podIP")
        return f"{ip}:{port}" if ip else f"{app_objects.pod_name(ref)}.unassigned.invalid:{port}"

    def status(self, ref: str) -> int | None:
        if self.sets.get(ref) is None:
            return -1
        pod = self._pod(ref)
        if pod is None:
            return None
        found = status.container_status(pod)
        ended = (found.get("state") or {}).get("terminated") or (found.get("lastState") or {}).get(
            "terminated"
        )
        return int(ended.get("exitCode", -1)) if ended else None

    def adopt(self, ref: str) -> bool:
        self._synced()
        found = self.sets.get(ref)
        if found is None or found["metadata"].get("deletionTimestamp"):
            return False
        labels = found["metadata"].get("labels") or {}
        key = (labels.get(app_objects.APP), labels.get(app_objects.GENERATION),
               labels.get(app_objects.INDEX))  # fmt: skip
        if all(part and part.isdigit() for part in key):
            app_id, generation, index = (int(part or 0) for part in key)
            self._follow(ref, self.log_path(app_id, generation, index))
        return True

    # -- stop -----------------------------------------------------------------------------------

    def stop(self, ref: str, *, container: str | None) -> None:
        """Scale to zero, wait for the pod to end (its grace time), delete the StatefulSet and
        wait for it to be gone."""
        try:
            self.apps.patch_namespaced_stateful_set_scale(
                ref, self.namespace, {"spec": {"replicas": 0}}
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise InstanceError(f"cannot scale {ref} to zero: {status.api_message(exc)}") from None
        deadline = time.monotonic() + self.executor.options.grace_seconds + STOP_WAIT_S
        while self._pod(ref) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        self._delete(ref, k8s.V1DeleteOptions(propagation_policy="Foreground"))
        deadline = time.monotonic() + GONE_WAIT_S
        while self.sets.get(ref) is not None and time.monotonic() < deadline:
            time.sleep(0.2)  # gone from the watch: the garbage collector has finished with it

    def _delete(self, name: str, body: k8s.V1DeleteOptions) -> None:
        try:
            self.apps.delete_namespaced_stateful_set(name, self.namespace, body=body)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("cannot delete StatefulSet %s: %s", name, status.api_message(exc))

    def _delete_pod(self, name: str) -> None:
        """A pod of a StatefulSet being deleted: at once, rather than after the garbage
        collector has seen its owner go (its resources are free for the next start sooner)."""
        try:
            self.core.delete_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("cannot delete pod %s: %s", name, status.api_message(exc))

    # -- output ---------------------------------------------------------------------------------

    def log_path(self, app_id: int, generation: int, index: int) -> Path:
        return output_log(self.folder, app_id, generation, index)

    def _follow(self, ref: str, path: Path) -> None:
        with self._lock:
            if ref in self._followers and self._followers[ref].is_alive():
                return
            thread = threading.Thread(target=self._copy_log, args=(ref, path), daemon=True,
                                      name=f"app-log-{ref}")  # fmt: skip
            self._followers[ref] = thread
        thread.start()

    def _copy_log(self, ref: str, path: Path) -> None:
        """The pod's log into ``path`` while the instance exists (from its start each time the
        container starts anew); why it waits, while it cannot start."""
        path.parent.mkdir(parents=True, exist_ok=True)
        told = ""
        copied: tuple[object, ...] = ()  # the container run whose whole log is in the file
        while not self._closed.is_set() and self.sets.get(ref) is not None:
            pod = self._pod(ref)
            if pod is None or not status.has_started(pod):
                reason, message = status.waiting(pod)
                why = f"{reason}: {message}".strip(": ")
                if why and why != told:
                    with open(path, "a") as out:
                        out.write(f"the pod cannot start yet: {why}\n")
                    told = why
                self._closed.wait(0.5)
                continue
            found = status.container_status(pod)
            run = (pod["metadata"].get("uid"), found.get("restartCount", 0))
            ended = "terminated" in (found.get("state") or {})
            if ended and run == copied:  # its log is complete in the file already
                self._closed.wait(0.5)
                continue
            try:
                response: Any = self.core.read_namespaced_pod_log(
                    app_objects.pod_name(ref), self.namespace, container=objects.CONTAINER,
                    follow=True, _preload_content=False,
                )  # fmt: skip
            except ApiException:
                time.sleep(0.5)
                continue
            with open(path, "wb") as out:
                try:
                    for chunk in response.stream(1 << 16):
                        out.write(chunk)
                        out.flush()
                except Exception:  # the connection ended with the pod
                    pass
                finally:
                    response.release_conn()
            copied = run if ended else ()
            self._closed.wait(0.5)
        with self._lock:
            self._followers.pop(ref, None)

    def close(self) -> None:
        self._closed.set()
        self.sets.stop()

    # -- pull credentials ---------------------------------------------------------------------

    def _pull_secret(self, app_id: int) -> str | None:
        """The app's pull credential, if it has one (an image of the platform registry)."""
        name = app_objects.pull_secret_name(self.defaults, app_id)
        try:
            self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise InstanceError(
                f"cannot read the pull secret {name}: {status.api_message(exc)}"
            ) from None
        return name

    def forget(self, app_id: int) -> None:
        selector = objects.selector(app_objects.app_labels(self.defaults, app_id))
        try:
            self.core.delete_collection_namespaced_secret(self.namespace, label_selector=selector)
        except ApiException as exc:
            log.warning("cannot delete the secrets of app %s: %s", app_id, status.api_message(exc))
