"""The executor contract, one suite every executor passes: run against the local executor,
against Slurm (a real slurmctld and slurmd on loopback, server ``hpc``) and against Kubernetes (a
real API server, controller manager, scheduler and kubelet, server ``kube_server``).

Submit and events, cancel, timeout, retries with their logs, forget, adoption after a server
SIGKILL, and the periodic sync that mends drift between the executor and the database. A new
executor kind joins by adding a :class:`Platform` for it to ``platform``.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from primage.client import Client
from tests.harness import RunningServer, eventually
from tests.kube import KubeCluster

EXECUTORS = ["local", "hpc", "kube"]
#: The shortest time limit each enforces: Slurm's --time counts minutes (checked every 30 s).
SHORTEST_TIMEOUT = {
    "local": ("2s", "timed out after 2 s"),
    "hpc": ("1m", "timed out after 60 s"),
    "kube": ("2s", "timed out after 2 s (activeDeadlineSeconds)"),
}

pytestmark = pytest.mark.parametrize("executor", EXECUTORS)


@dataclass
class Platform:
    """A server with the executor under test, and how to see what that executor really runs
    and keeps, whatever the database says."""

    server: RunningServer
    executor: str
    #: (task index, attempt) of every attempt of a job running now.
    running: Callable[[int], set[tuple[int, int]]]
    #: Whether the executor still keeps anything of a job (folders, Jobs).
    keeps: Callable[[int], bool]
    one_log: bool = False  # stdout and stderr are one log (Kubernetes)


@pytest.fixture
def platform(request: pytest.FixtureRequest, executor: str, tmp_path: Path) -> Platform:
    if executor == "kube":
        server: RunningServer = request.getfixturevalue("kube_server")
        cluster: KubeCluster = request.getfixturevalue("kube_cluster")
        instance: str = request.getfixturevalue("kube_instance")

        def pods(job_id: int) -> list[dict[str, object]]:
            return cluster.pods(f"app.kubernetes.io/instance={instance},primage.io/job={job_id}")

        def running_pods(job_id: int) -> set[tuple[int, int]]:
            found = set()
            for pod in pods(job_id):
                labels: dict[str, str] = pod["metadata"]["labels"]  # type: ignore[index]
                statuses = pod["status"].get("containerStatuses") or []  # type: ignore[attr-defined]
                if any("running" in s.get("state", {}) for s in statuses):
                    found.add((int(labels["primage.io/task"]), int(labels["primage.io/attempt"])))
            return found

        return Platform(server, executor, running_pods, lambda job_id: bool(pods(job_id)), True)
    server = request.getfixturevalue("hpc")
    folder = server.data_dir / "jobs" / ("slurm-hpc" if executor == "hpc" else "")
    return Platform(
        server,
        executor,
        lambda job_id: attempts_running(server, job_id),
        lambda job_id: (folder / str(job_id)).is_dir(),
    )


def work(api: Client) -> Client:
    api.create_space("work")
    return api


def attempts_running(server: RunningServer, job_id: int) -> set[tuple[int, int]]:
    """(task index, attempt) of every process of the job on this machine, read from the
    folder each works in (``<job>/<index>.<attempt>/work``): what really runs, whatever the
    database says."""
    jobs = str(server.data_dir / "jobs")
    where = re.compile(rf"{re.escape(jobs)}(?:/slurm-hpc)?/{job_id}/(\d+)\.(\d+)/work")
    found = set()
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            match = where.fullmatch(os.readlink(cwd))
        except OSError:
            continue  # ended meanwhile
        if match:
            found.add((int(match.group(1)), int(match.group(2))))
    return found


def test_tasks_run_and_report_start_end_and_external_id(platform: Platform, executor: str) -> None:
    """Each task reports its start with the external id the executor finds it by again, then
    its end. (Each lives a little: a sandboxed local task that ends before its PID is seen has
    none, and needs none: there is nothing running to find again.)"""
    api = work(platform.server.client())
    job = api.submit_job(
        {"kind": "htc", "array": 3, "spaces": ["work"], "executor": executor,
         "command": "echo $PRIMAGE_TASK_INDEX > {spaces.work}/{task_index}.txt; "
                    "echo out {task_index}; sleep 0.5"}
    )  # fmt: skip
    assert api.wait_job(job.id, poll=0.3, timeout=120).state == "succeeded"
    for task in api.tasks(job.id).tasks:
        assert task.external_id and task.attempt == 1 and task.exit_code == 0
        assert task.started_at is not None and task.finished_at is not None
        assert task.started_at <= task.finished_at
        assert api.read_bytes("work", f"{task.index}.txt") == f"{task.index}\n".encode()
        assert b"".join(api.logs(job.id, task.index)) == f"out {task.index}\n".encode()


def test_cancel_stops_running_tasks(platform: Platform, executor: str) -> None:
    api = work(platform.server.client())
    job = api.submit_job(
        {"kind": "htc", "array": 2, "spaces": ["work"], "executor": executor,
         "command": "sleep 300; echo late > {spaces.work}/{task_index}.txt"}
    )  # fmt: skip
    eventually(lambda: len(platform.running(job.id)) == 2, 60, "both tasks running")
    api.cancel_job(job.id)
    done = api.wait_job(job.id, poll=0.3, timeout=60)
    assert done.state == "cancelled" and done.counts.cancelled == 2
    eventually(lambda: not platform.running(job.id), 30, "their processes gone")
    assert {t.message for t in api.tasks(job.id).tasks} == {"cancelled"}
    assert not [e for e in api.listdir("work", "") if e.name.endswith(".txt")]


def test_a_task_past_its_timeout_fails_timed_out(platform: Platform, executor: str) -> None:
    """On Slurm this takes one to two minutes (its shortest limit is a minute)."""
    timeout, message = SHORTEST_TIMEOUT[executor]
    api = work(platform.server.client())
    job = api.submit_job(
        {"spaces": ["work"], "executor": executor, "timeout": timeout, "command": "sleep 600"}
    )
    done = api.wait_job(job.id, poll=1, timeout=240)
    task = api.tasks(job.id).tasks[0]
    assert done.state == "failed" and task.state == "failed"
    assert task.message.startswith(message), task.message


def test_retries_logs_and_forget(platform: Platform, executor: str) -> None:
    """A failing task is retried then fails with its stderr, a passing one succeeds, every
    attempt keeps its log, and removing the job forgets its folders."""
    api = work(platform.server.client())
    job = api.submit_job(
        {"kind": "htc", "array": 2, "spaces": ["work"], "executor": executor,
         "retries": {"count": 1, "backoff": "0.1s"},
         "command": 'echo "attempt of {task_index}"; [ {task_index} = 0 ] || '
                    '{ echo "no good" >&2; exit 3; }'}
    )  # fmt: skip
    done = api.wait_job(job.id, poll=0.3, timeout=120)
    assert done.state == "partial" and (done.counts.succeeded, done.counts.failed) == (1, 1)
    failed = api.tasks(job.id, state=["failed"]).tasks[0]
    assert (failed.index, failed.attempt, failed.exit_code) == (1, 2, 3)
    head, *tail = failed.message.splitlines()  # the end of its stderr, or of its one log
    assert head == "exit code 3"
    assert sorted(tail) == (["attempt of 1", "no good"] if platform.one_log else ["no good"])
    for attempt in (1, 2):
        lines = b"".join(api.logs(job.id, 1, attempt=attempt)).decode().splitlines()
        # one log: the two streams as the runtime read them, in either order
        assert sorted(lines) == ["attempt of 1", *(["no good"] if platform.one_log else [])]
    assert platform.keeps(job.id)
    api.remove_job(job.id)
    eventually(lambda: not platform.keeps(job.id), 60, "forget removes what it kept of the job")


def test_a_server_kill_mid_job_runs_no_task_twice(platform: Platform, executor: str) -> None:
    api = work(platform.server.client())
    job = api.submit_job(
        {"kind": "htc", "array": 8, "spaces": ["work"], "executor": executor,
         "command": "echo ran >> {spaces.work}/{task_index}.txt; sleep 2"}
    )  # fmt: skip
    eventually(lambda: api.job(job.id).counts.running >= 1, 60, "tasks running")
    platform.server.kill()
    server = platform.server.restart()
    try:
        api = server.client()
        assert api.wait_job(job.id, poll=0.3, timeout=120).state == "succeeded"
        assert {t.attempt for t in api.tasks(job.id).tasks} == {1}
        for i in range(8):
            assert api.read_bytes("work", f"{i}.txt") == b"ran\n", f"task {i} ran once"
    finally:
        server.stop()


def test_the_sync_mends_drift_between_executor_and_database(
    platform: Platform, executor: str, tmp_path: Path
) -> None:
    """The database is made to say that task 0 runs as attempt 2 while the executor runs
    attempt 1 (as after a restore from a backup): the periodic sync (every second in tests)
    stops attempt 1, which the database does not know, and runs the task again, as attempt 2
    is nowhere; task 1 is left alone."""
    api = work(platform.server.client())
    job = api.submit_job(
        {"kind": "htc", "array": 2, "spaces": ["work"], "executor": executor,
         "command": "echo $PRIMAGE_ATTEMPT >> {spaces.work}/{task_index}.txt; sleep 300"}
    )  # fmt: skip
    eventually(
        lambda: (
            api.job(job.id).counts.running == 2 and platform.running(job.id) == {(0, 1), (1, 1)}
        ),
        60,
        "both tasks running, and known to run",
    )
    with sqlite3.connect(tmp_path / "db") as db:
        db.execute(
            'UPDATE tasks SET attempt = 2 WHERE job_id = ? AND "index" = 0 AND attempt = 1',
            (job.id,),
        )
    eventually(lambda: platform.running(job.id) == {(0, 3), (1, 1)}, 60, "task 0 run again")
    tasks = {t.index: t for t in api.tasks(job.id).tasks}
    assert (tasks[0].attempt, tasks[1].attempt) == (3, 1)
    assert api.read_bytes("work", "0.txt") == b"1\n3\n", "attempt 2 never ran: it was nowhere"
    api.cancel_job(job.id)
    assert api.wait_job(job.id, poll=0.3, timeout=60).counts.cancelled == 2
