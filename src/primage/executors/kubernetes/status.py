"""What a Job's and a pod's status say of an attempt: started, waiting (and why), ended (how);
and what the API server said when it refused a call."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from primage.executors.base import Outcome
from primage.executors.kubernetes import objects
from primage.executors.kubernetes.informer import Obj

#: A container that waits for one of these cannot start as it is: its attempt fails at once.
BROKEN = {"InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull"}
#: One that waits for these may start later (a registry back, a node added): it fails only
#: after ``pending_timeout_seconds``.
STUCK = {"ErrImagePull", "ImagePullBackOff", "CreateContainerError", "RunContainerError"}


def container_status(pod: Obj) -> Obj:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == objects.CONTAINER:
            return dict(status)
    return {}


def has_started(pod: Obj) -> bool:
    state = container_status(pod).get("state") or {}
    return "running" in state or "terminated" in state


def waiting(pod: Obj | None) -> tuple[str, str]:
    """Why a pod does not start yet: the container's waiting reason, or the scheduler's."""
    if pod is None:
        return "", ""
    held = (container_status(pod).get("state") or {}).get("waiting") or {}
    if held.get("reason") in BROKEN | STUCK:
        return str(held["reason"]), str(held.get("message", ""))
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("reason", "Unschedulable")), str(condition.get("message", ""))
    return "", ""


def final_condition(job: Obj) -> Obj | None:
    """The Job's Complete or Failed condition, once it has one."""
    for entry in (job.get("status") or {}).get("conditions") or []:
        if entry.get("type") in ("Complete", "Failed") and entry.get("status") == "True":
            return dict(entry)
    return None


def over(job: Obj) -> bool:
    return final_condition(job) is not None or bool(job["metadata"].get("deletionTimestamp"))


def ending(
    job: Obj, pod: Obj | None, timeout_s: float | None
) -> tuple[Outcome, int | None, str] | None:
    """How an attempt ended, once its Job or its pod says so; None while it has not."""
    done = final_condition(job)
    status = (pod or {}).get("status") or {}
    terminated = (container_status(pod).get("state") or {}).get("terminated") if pod else None
    if done is not None and done["type"] == "Failed":
        if done.get("reason") == "DeadlineExceeded":
            limit = job["spec"].get("activeDeadlineSeconds") or timeout_s or 0
            return Outcome.TIMED_OUT, None, f"timed out after {limit:g} s (activeDeadlineSeconds)"
        if status.get("reason") == "Evicted":  # by its kubelet, for want of memory or disk
            return Outcome.LOST, None, f"Evicted: {status.get('message', '')}".strip()
        if pod is not None and pod["metadata"].get("deletionTimestamp"):  # through the API
            return Outcome.LOST, None, ("its pod was deleted before it ended (evicted, or its "
                                        "node drained)")  # fmt: skip
        if terminated:
            return exited(terminated)
        return Outcome.LOST, None, f"{done.get('reason')}: {done.get('message', '')}"
    if terminated and status.get("phase") == "Succeeded":
        return exited(terminated)
    if done is not None:  # Complete: the pod may be gone already
        return exited(terminated) if terminated else (Outcome.EXITED, 0, "")
    return None  # a failed pod ends when its Job says why (its deadline, or its exit)


def exited(terminated: Obj) -> tuple[Outcome, int | None, str]:
    code = int(terminated.get("exitCode", 0))
    if code == 0:
        return Outcome.EXITED, 0, ""
    reason = terminated.get("reason")
    head = f"exit code {code}" + (f" ({reason})" if reason not in (None, "Error") else "")
    return Outcome.EXITED, code, f"{head}\n{(terminated.get('message') or '').strip()}".strip()


def api_message(exc: ApiException) -> str:
    """The API server's own message of a refusal (its Status), else the HTTP reason."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)
