"""Task and job states and the transitions between them: the one place that defines them.

A task is ``pending`` until the reconciler hands it to the executor (``queued``), ``running`` once
the executor started it, and ends ``succeeded``, ``failed`` or ``cancelled``. A failed attempt with
retries left goes back to ``pending`` (after a backoff); a queued task that never started (the
server stopped first) goes back to ``pending`` without using a retry.

A job's state follows from its tasks' states: see :func:`job_state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from primage.errors import Conflict


class TaskState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"  # finished, some tasks failed
    CANCELLED = "cancelled"


INTERACTIVE = "interactive"  # a job whose one task is an app's service (apps/supervisor.py)

TASK_DONE = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
TASK_ACTIVE = frozenset({TaskState.QUEUED, TaskState.RUNNING})
JOB_DONE = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.PARTIAL, JobState.CANCELLED})

TASK_TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.QUEUED, TaskState.CANCELLED}),
    TaskState.QUEUED: frozenset(
        {TaskState.PENDING, TaskState.RUNNING, *TASK_DONE}  # ends may arrive before 'started'
    ),
    TaskState.RUNNING: frozenset({TaskState.PENDING, *TASK_DONE}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


def can_move(old: TaskState, new: TaskState) -> bool:
    return new in TASK_TRANSITIONS[old]


def job_state(counts: Mapping[TaskState, int], cancel_requested: bool) -> JobState:
    """The state a job is in, given how many of its tasks are in each state."""

    def n(*states: TaskState) -> int:
        return sum(counts.get(s, 0) for s in states)

    if n(TaskState.PENDING, *TASK_ACTIVE):
        if n(TaskState.RUNNING, *TASK_DONE):
            return JobState.RUNNING
        return JobState.PENDING
    if cancel_requested or n(TaskState.CANCELLED):
        return JobState.CANCELLED
    if not n(TaskState.FAILED):
        return JobState.SUCCEEDED
    return JobState.PARTIAL if n(TaskState.SUCCEEDED) else JobState.FAILED


def summary(state: JobState, counts: Mapping[TaskState, int]) -> str:
    """One line saying how a finished job ended."""
    done = counts.get(TaskState.SUCCEEDED, 0)
    failed = counts.get(TaskState.FAILED, 0)
    cancelled = counts.get(TaskState.CANCELLED, 0)
    total = sum(counts.values())
    parts = [f"{done}/{total} tasks succeeded"]
    if failed:
        parts.append(f"{failed} failed")
    if cancelled:
        parts.append(f"{cancelled} cancelled")
    return ", ".join(parts)


def check_removable(state: JobState) -> None:
    if state not in JOB_DONE:
        raise Conflict(f"the job is {state}; cancel it first (primage job cancel)")
