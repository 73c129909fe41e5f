"""How far a job has got: its task counts, and recording its end once no task is left to run."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from primage.auth import tokens
from primage.db import tables
from primage.executors.base import utc
from primage.jobs import states
from primage.jobs.states import TaskState

T = tables.Task


def pull_token_name(job_id: int) -> str:
    """The name of a job's own pull credential (``jobs/submit.keep_pull``)."""
    return f"job-{job_id}-pull"


def close_if_done(session: Session, job_id: int) -> bool:
    """When no task of the job is left to run, record how the job ended; True once it has."""
    unfinished = session.scalar(
        select(T.index)
        .where(T.job_id == job_id, T.state.in_([TaskState.PENDING, *states.TASK_ACTIVE]))
        .limit(1)
    )
    if unfinished is not None:
        return False
    job = session.get(tables.Job, job_id)
    if job is None or job.state in states.JOB_DONE:
        return True
    counts = task_counts(session, job_id)
    state = states.job_state(counts, job.cancel_requested)
    job.state = state
    job.finished_at = utc()
    job.message = states.summary(state, counts)
    # its pull credential, if it had one (jobs/submit.keep_pull)
    tokens.revoke_named(session, job.owner_id, pull_token_name(job_id))
    return True


def task_counts(session: Session, job_id: int) -> dict[TaskState, int]:
    rows = session.execute(
        select(T.state, func.count()).where(T.job_id == job_id).group_by(T.state)
    ).all()
    return {TaskState(state): n for state, n in rows}
