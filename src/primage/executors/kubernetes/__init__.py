"""The Kubernetes executor: each task attempt a ``batch/v1`` Job, followed by shared watches.

- ``submit`` creates one Job per attempt (``objects.task_job``: ``backoffLimit: 0``, so retries
  stay the platform's; labels naming the platform, executor, job, task and attempt; resources
  as requests and limits; the time-out as ``activeDeadlineSeconds``). A task without an image
  runs in the operator's ``base_image``; one with an image of the platform registry runs it by
  the digest pinned at submission, pulled by the node with the job's own short-lived read-only
  token (``keep_pull``: an ``imagePullSecret``, deleted when the job ends, ``ended``).
- Spaces reach pods through the configured volume: a ``hostPath`` (the storage root as the
  nodes see it) or a ``persistentVolumeClaim``; each space at ``/spaces/<name>``, read-only
  where asked; a folder-confined job gets its folder only (``subPath``).
- State comes from one list+watch of the executor's Jobs and one of its pods (``informer``),
  never a poll per object; an expired watch lists again. A pod that runs is ``started`` (its
  name the external id); the attempt ends with its container's exit code, as *timed out* when
  its Job failed with ``DeadlineExceeded``, *lost* when the pod was evicted or the Job deleted
  behind the platform's back. A pod that cannot start fails with the kubelet's or the
  scheduler's message: at once when its image name or configuration is invalid, after
  ``pending_timeout_seconds`` when its image cannot be pulled, and when unschedulable only once
  no attempt of the executor has started or ended for that long (waiting for room while others
  run is queueing, not failing).
- ``adopt`` after a restart takes attempts back by their labels (the Job of each attempt has a
  name of its own, so none runs twice); ``cancel`` deletes the Job with foreground propagation;
  ``held`` is the cluster's own view of the executor's unfinished Jobs; ``logs`` reads the pod's
  log through the API (``follow`` streams it). Kubernetes keeps one log per container: stdout
  and stderr together (``one_log``).
- Apps and interactive jobs run on its instance backend (``instances``: each instance a
  StatefulSet of one replica with a Service and a Secret, ADR 0012); an app's image of the
  platform registry is pulled with the app's own credential (``keep_app_pull``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from primage.apps.backends import InstanceBackend
from primage.errors import BadRequest, PrimageError
from primage.executors.base import (
    Executor,
    ExternalRef,
    Host,
    Outcome,
    Pull,
    TaskEvent,
    TaskKey,
    TaskRun,
    utc,
)
from primage.executors.kubernetes import app_objects, objects, status
from primage.executors.kubernetes.informer import Informer, Obj
from primage.executors.kubernetes.options import (
    KubernetesJobOptions,
    KubernetesOptions,
    Toleration,
    api_client,
)
from primage.executors.registry import ConfigError
from primage.host import procs
from primage.registry_client import resolve_digest, split_reference
from primage.storage import reach

log = logging.getLogger("primage.executors.kubernetes")

API_THREADS = 8  # Job creations and deletions at once


@dataclass
class Attempt:
    """A task attempt handed to the cluster."""

    key: TaskKey
    timeout_s: float | None
    made: bool = False  # the API server took its Job
    seen: bool = False  # its Job was in the watch's cache: from then on, its absence is its end
    started: bool = False
    cancelled: bool = False
    pod: str | None = None
    pending_since: float = 0.0


class KubernetesExecutor(Executor):
    kind = "kubernetes"
    supports = frozenset({"arrays", "containers", "network", "apps", "app-containers"})
    Options = KubernetesOptions
    JobOptions = KubernetesJobOptions
    pulls_on_nodes = True
    sandboxed_by_host = False
    one_log = True

    def __init__(
        self,
        name: str,
        options: KubernetesOptions,
        defaults: objects.PodDefaults,
        api: k8s.ApiClient,
        storage_root: Path,
    ) -> None:
        super().__init__(name, options.description or "a Kubernetes cluster")
        self.options = options
        self.defaults = defaults
        self.storage_root = storage_root
        if options.gpus:
            self.supports = self.supports | {"gpus"}
        if defaults.volume.kind == "hostPath":  # the kubelet confines a subPath to its volume:
            self.supports = self.supports | {"folders"}  # with a claim, to the claim, not a space
        self.api = api
        self.batch = k8s.BatchV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self.namespace = options.namespace
        selector = objects.selector(objects.platform_labels(defaults))
        self.jobs = Informer("jobs", self.batch.list_namespaced_job, self.namespace, selector,
                             self._job_changed)  # fmt: skip
        self.pods = Informer("pods", self.core.list_namespaced_pod, self.namespace, selector,
                             self._pod_changed)  # fmt: skip
        self._lock = threading.RLock()
        self._attempts: dict[TaskKey, Attempt] = {}
        self._events: list[TaskEvent] = []
        self._pod_keys: dict[str, TaskKey] = {}
        #: When an attempt last started or ended here: a pod that waits for room fails only
        #: once the cluster has made no progress for so long (``pending_timeout_seconds``).
        self._progress = time.monotonic()
        self._calls = ThreadPoolExecutor(API_THREADS, thread_name_prefix=f"k8s-{name}")
        self._instances: InstanceBackend | None = None

    @classmethod
    def from_config(cls, name: str, options: Any, host: Host) -> KubernetesExecutor:
        settings = host.settings
        if options.space_volume == "persistentVolumeClaim" and not options.space_claim:
            raise ConfigError(f"executors.{name}: space_volume persistentVolumeClaim needs "
                              "space_claim, the claim's name")  # fmt: skip
        volume = objects.SpaceVolume(
            options.space_volume,
            path=str(options.space_path or settings.storage_path),
            claim=options.space_claim or "",
        )
        defaults = objects.PodDefaults(
            executor=name,
            namespace=options.namespace,
            instance=options.instance,
            volume=volume,
            uid=options.run_as_user or settings.sandbox_uid,
            gid=options.run_as_group or settings.sandbox_gid,
            read_only_root=options.read_only_root_filesystem,
            service_account=options.service_account,
            priority_class=options.priority_class,
            node_selector=options.node_selector,
            tolerations=tuple(t.manifest() for t in options.tolerations),
            labels=options.labels,
        )
        return cls(name, options, defaults, api_client(options), settings.storage_path)

    @property
    def capacity(self) -> int:
        return self.options.capacity

    @property
    def prefetch(self) -> int:
        return int(self.options.prefetch or self.options.capacity)

    def space_path(self, space: str, *, container: bool = False) -> str:
        return f"{objects.SPACES}/{space}"  # every task of a pod is in a container

    def pin_image(self, image: str, pull: Pull | None = None) -> str:
        """An image of the platform registry is pinned through the registry's API (the nodes
        pull that digest with the job's credential); any other must be given by digest."""
        if pull is not None:
            return resolve_digest(image, pull)
        if "@sha256:" not in image:
            raise BadRequest(
                f"image '{image}' is not in the platform registry: on the '{self.name}' "
                "executor give it by digest (name@sha256:…), so that every task runs the same"
            )
        return image

    def keep_pull(self, job_id: int, image: str, pull: Pull) -> None:
        name = objects.pull_secret_name(self.defaults, job_id)
        self._store_pull(name, objects.job_pull_labels(self.defaults, job_id), image, pull)

    def keep_app_pull(self, app_id: int, image: str, pull: Pull) -> None:
        name = app_objects.pull_secret_name(self.defaults, app_id)
        self._store_pull(name, app_objects.app_labels(self.defaults, app_id), image, pull)

    def _store_pull(self, name: str, labels: dict[str, str], image: str, pull: Pull) -> None:
        host, _, _ = split_reference(image)
        user, password = pull.credentials
        secret = objects.pull_secret(self.defaults, name, labels, host, user, password)
        try:
            self.core.create_namespaced_secret(self.namespace, cast(Any, secret))
        except ApiException as exc:
            if exc.status != 409:
                raise PrimageError(f"cannot store the pull secret {name}: {exc.reason}") from None
            self.core.replace_namespaced_secret(
                secret["metadata"]["name"], self.namespace, cast(Any, secret)
            )

    def instance_backend(self, folder: Path) -> InstanceBackend:
        """App instances as StatefulSets (``instances``); one backend, whoever asks."""
        if self._instances is None:
            from primage.executors.kubernetes.instances import KubernetesBackend

            self._instances = KubernetesBackend(self, folder)
        return self._instances

    def health(self) -> str | None:
        try:
            self.batch.list_namespaced_job(self.namespace, limit=1, _request_timeout=10)
        except ApiException as exc:
            return f"the API server answered {exc.status} {exc.reason} listing Jobs"
        except Exception as exc:
            return f"cannot reach the API server: {exc}"
        return None

    def _start(self) -> None:
        self.jobs.start()
        self.pods.start()

    async def _synced(self) -> None:
        self._start()
        for informer in (self.jobs, self.pods):
            if not await asyncio.to_thread(informer.synced.wait, 60):
                raise PrimageError(f"executor '{self.name}': cannot list {informer.kind}")

    # -- submit ---------------------------------------------------------------------------------

    async def submit(self, runs: Sequence[TaskRun]) -> None:
        self._start()
        now = time.monotonic()
        with self._lock:
            for run in runs:
                self._attempts[run.key] = Attempt(run.key, run.timeout_s, pending_since=now)
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._calls, self._create, r) for r in runs))
        self.wake()

    def manifest(self, run: TaskRun) -> dict[str, Any]:
        """The Job of an attempt (a ``PrimageError`` when a folder cannot be mounted safely)."""
        mounts = []
        for space, read_only in run.mounts.items():
            folder = run.folders.get(space)
            if folder is not None:  # its real path in the space, links resolved and checked
                real, _ = reach.identity(space, self.storage_root / space, folder)
                folder = real.removeprefix(f"{(self.storage_root / space).resolve()}/")
            mounts.append(objects.SpaceMount(space, read_only, folder))
        job = objects.task_job(
            self.defaults,
            run,
            image=run.image or self.options.base_image,
            argv=procs.argv_for(run.command),
            mounts=mounts,
            pull_secret=objects.pull_secret_name(self.defaults, run.key.job_id)
            if run.image
            else None,
            options=run.options,
        )
        pod = job["spec"]["template"]["spec"]
        pod["terminationGracePeriodSeconds"] = self.options.grace_seconds
        pod["containers"][0]["env"].append({"name": "HOME", "value": objects.WORKDIR})
        return job

    def _create(self, run: TaskRun) -> None:
        try:
            job = self.manifest(run)
            self.batch.create_namespaced_job(self.namespace, cast(Any, job))
        except PrimageError as exc:
            self._refused(run.key, exc.detail)
            return
        except ApiException as exc:
            if exc.status != 409:  # 409: made before a restart, adopted by its labels
                self._refused(run.key, f"the API server refused its Job: {status.api_message(exc)}")
                return
        with self._lock:
            attempt = self._attempts.get(run.key)
            if attempt is None:
                return
            attempt.made = True
            cancelled = attempt.cancelled
        if cancelled:
            self._delete(run.key)
        self._judge(run.key)

    def _refused(self, key: TaskKey, why: str) -> None:
        """An attempt the cluster would not take ends as a failure that says why."""
        with self._lock:
            if self._attempts.pop(key, None) is None:
                return
            now = utc()
            self._events.append(TaskEvent(key, "started", now, external_id="refused"))
            self._events.append(TaskEvent(key, "finished", now, outcome=Outcome.EXITED,
                                          exit_code=125, message=why))  # fmt: skip
        self.wake()

    # -- what the watches say -------------------------------------------------------------------

    def _job_changed(self, name: str, job: Obj | None) -> None:
        key = (
            objects.key_of(job["metadata"].get("labels"))
            if job
            else objects.key_of_name(self.defaults, name)
        )
        if key is not None:
            self._judge(key)

    def _pod_changed(self, name: str, pod: Obj | None) -> None:
        with self._lock:
            if pod is None:
                key = self._pod_keys.pop(name, None)
            else:
                key = objects.key_of(pod["metadata"].get("labels"))
                if key is not None:
                    self._pod_keys[name] = key
                    attempt = self._attempts.get(key)
                    if attempt is not None:
                        attempt.pod = name
        if key is not None:
            self._judge(key)

    def _judge(self, key: TaskKey) -> None:
        """What the cluster now says of an attempt: its start, its end."""
        with self._lock:
            attempt = self._attempts.get(key)
            if attempt is None:
                return
            job = self.jobs.get(objects.job_name(self.defaults, key))
            pod = self.pods.get(attempt.pod) if attempt.pod else None
            if job is not None:
                attempt.seen = True
            if job is None:
                if attempt.cancelled and attempt.made:
                    self._finish(attempt, Outcome.CANCELLED, None, "cancelled")
                elif attempt.seen:
                    self._finish(attempt, Outcome.LOST, None,
                                 "its Job was deleted outside the platform")  # fmt: skip
                return
            if attempt.cancelled:
                return  # its end is the Job's deletion
            if pod is not None and not attempt.started and status.has_started(pod):
                attempt.started = True
                self._progress = time.monotonic()
                self._events.append(TaskEvent(key, "started", utc(), external_id=attempt.pod))
            ended = status.ending(job, pod, attempt.timeout_s)
            if ended is not None:
                self._finish(attempt, *ended)
        self.wake()

    def _finish(self, attempt: Attempt, outcome: Outcome, code: int | None, message: str) -> None:
        self._progress = time.monotonic()
        now = utc()
        if not attempt.started:
            self._events.append(TaskEvent(attempt.key, "started", now, external_id=attempt.pod))
        self._events.append(TaskEvent(attempt.key, "finished", now, outcome=outcome,
                                      exit_code=code, message=message))  # fmt: skip
        self._attempts.pop(attempt.key, None)

    def _check_pending(self) -> None:
        """Attempts whose pod cannot start: at once when it never will as it is, after
        ``pending_timeout_seconds`` when it might."""
        now = time.monotonic()
        failing: list[tuple[TaskKey, str]] = []
        with self._lock:
            for attempt in self._attempts.values():
                if attempt.started or attempt.cancelled or not attempt.made:
                    continue
                pod = self.pods.get(attempt.pod) if attempt.pod else None
                reason, message = status.waiting(pod)
                since = attempt.pending_since
                if reason == "Unschedulable":  # waiting for room is queueing, while others run
                    since = max(since, self._progress)
                late = now - since >= self.options.pending_timeout_seconds
                if reason in status.BROKEN or (reason and late):
                    failing.append((attempt.key, f"{reason}: {message}".strip(": ")))
                elif late and pod is None:
                    failing.append((attempt.key, "no pod was made for its Job"))
            for key, why in failing:  # ended here: the deletion that follows is no news
                self._finish(self._attempts[key], Outcome.EXITED, 125, why)
        for key, why in failing:
            log.info("executor %s: %s cannot start: %s", self.name, key, why)
            self._delete(key)

    async def events(self) -> list[TaskEvent]:
        if self._attempts:
            await asyncio.to_thread(self._check_pending)
        with self._lock:
            found, self._events = self._events, []
        return found

    # -- cancel, adopt, held --------------------------------------------------------------------

    def _delete(self, key: TaskKey) -> None:
        body = k8s.V1DeleteOptions(propagation_policy="Foreground")
        try:
            self.batch.delete_namespaced_job(
                objects.job_name(self.defaults, key), self.namespace, body=body
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("executor %s: cannot delete the Job of %s: %s", self.name, key,
                            status.api_message(exc))  # fmt: skip
                return
        self._judge(key)

    async def cancel(self, keys: Sequence[TaskKey]) -> None:
        chosen = []
        with self._lock:
            for key in keys:
                attempt = self._attempts.get(key)
                if attempt is not None and not attempt.cancelled:
                    attempt.cancelled = True
                    if attempt.made:
                        chosen.append(key)
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._calls, self._delete, k) for k in chosen))
        self.wake()

    async def adopt(self, refs: Sequence[ExternalRef]) -> list[ExternalRef]:
        await self._synced()
        orphans = []
        with self._lock:
            for ref in refs:
                if self.jobs.get(objects.job_name(self.defaults, ref.key)) is None:
                    orphans.append(ref)  # never made, or deleted meanwhile
                    continue
                self._attempts[ref.key] = Attempt(
                    ref.key, ref.timeout_s, made=True, seen=True, started=ref.value is not None,
                    pod=ref.value, pending_since=time.monotonic(),
                )  # fmt: skip
            for name, key in [(p["metadata"]["name"], objects.key_of(p["metadata"].get("labels")))
                              for p in self.pods.items()]:  # fmt: skip
                if key is not None:
                    self._pod_keys[name] = key
                    if key in self._attempts:
                        self._attempts[key].pod = name
        for ref in refs:
            self._judge(ref.key)
        return orphans

    async def held(self) -> dict[TaskKey, str | None]:
        """The attempts this executor tracks, with every unfinished Job of the cluster it lost
        track of taken back (for the reconciler to cancel those the platform forgot)."""
        await self._synced()
        with self._lock:
            reported = {e.key for e in self._events}
            for job in self.jobs.items():
                key = objects.key_of(job["metadata"].get("labels"))
                if key is None or key in self._attempts or key in reported or status.over(job):
                    continue
                log.warning("executor %s: took %s back", self.name, key)
                self._attempts[key] = Attempt(key, None, made=True, seen=True,
                                              pending_since=time.monotonic())  # fmt: skip
            found: dict[TaskKey, str | None] = {
                e.key: e.external_id for e in self._events if e.kind == "finished"
            }
            found |= {k: a.pod if a.started else None for k, a in self._attempts.items()}
        return found

    # -- logs, forget, close --------------------------------------------------------------------

    async def logs(
        self, key: TaskKey, stream: Literal["stdout", "stderr"], *, follow: bool
    ) -> AsyncIterator[bytes]:
        await self._synced()
        while True:
            pod = self._pod_of(key)
            running = key in self._attempts
            if pod is not None and status.has_started(pod):
                break
            if not follow or not running:
                if pod is None:
                    return
                break
            await asyncio.sleep(0.25)
        name = pod["metadata"]["name"]
        try:
            response: Any = await asyncio.to_thread(
                self.core.read_namespaced_pod_log, name, self.namespace,
                container=objects.CONTAINER, follow=follow, _preload_content=False,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status in (400, 404):  # not started, or removed with its Job
                return
            raise PrimageError(
                f"cannot read the log of {name}: {status.api_message(exc)}"
            ) from None
        chunks = response.stream(1 << 16)
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            response.release_conn()

    def _pod_of(self, key: TaskKey) -> Obj | None:
        with self._lock:
            attempt = self._attempts.get(key)
            if attempt is not None and attempt.pod:
                return self.pods.get(attempt.pod)
            names = [name for name, k in self._pod_keys.items() if k == key]
        pods = [p for p in map(self.pods.get, names) if p is not None]
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return pods[-1] if pods else None

    async def ended(self, job_ids: Sequence[int]) -> None:
        """Their pull Secrets go (the credentials in them are revoked already)."""

        def remove(job_id: int) -> None:
            try:
                self.core.delete_namespaced_secret(
                    objects.pull_secret_name(self.defaults, job_id), self.namespace
                )
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("executor %s: cannot delete the pull secret of job %s: %s",
                                self.name, job_id, status.api_message(exc))  # fmt: skip

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._calls, remove, j) for j in job_ids))

    async def forget(self, job_id: int) -> None:
        selector = objects.selector({**objects.platform_labels(self.defaults),
                                     objects.JOB: str(job_id)})  # fmt: skip
        body = k8s.V1DeleteOptions(propagation_policy="Background")

        def remove() -> None:
            self.batch.delete_collection_namespaced_job(
                self.namespace, label_selector=selector, body=body
            )
            self.core.delete_collection_namespaced_secret(self.namespace, label_selector=selector)

        await asyncio.to_thread(remove)

    async def close(self) -> None:
        """The watches stop; the cluster keeps running the Jobs, for the next server to adopt."""
        self.jobs.stop()
        self.pods.stop()
        self._calls.shutdown(wait=False, cancel_futures=True)


__all__ = [
    "KubernetesExecutor",
    "KubernetesJobOptions",
    "KubernetesOptions",
    "Toleration",
    "api_client",
]
