"""The executor contract, one suite every executor passes: run against the local executor and
against Slurm (a real slurmctld and slurmd on loopback), on the same server (``hpc``).

Submit and events, cancel, timeout, retries with their logs, forget, adoption after a server
SIGKILL, and the periodic sync that mends drift between the executor and the database. A new
executor kind joins by adding its name to ``EXECUTORS`` (and to the ``hpc`` fixture).
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from primage.client import Client
from tests.harness import RunningServer, eventually

EXECUTORS = ["local", "hpc"]
#: The shortest time limit each enforces: Slurm's --time counts minutes (checked every 30 s).
SHORTEST_TIMEOUT = {"local": ("2s", "timed out after 2 s"), "hpc": ("1m", "timed out after 60 s")}

pytestmark = pytest.mark.parametrize("executor", EXECUTORS)


def work(api: Client) -> Client:
    api.create_space("work")
    return api


def job_folder(server: RunningServer, executor: str, job_id: int) -> Path:
    """Where the executor keeps a job's attempt folders (logs, exit codes)."""
    return server.data_dir / "jobs" / ("slurm-hpc" if executor == "hpc" else "") / str(job_id)


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


def test_tasks_run_and_report_start_end_and_external_id(hpc: RunningServer, executor: str) -> None:
    """Each task reports its start with the external id the executor finds it by again, then
    its end. (Each lives a little: a sandboxed local task that ends before its PID is seen has
    none, and needs none: there is nothing running to find again.)"""
    api = work(hpc.client())
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


def test_cancel_stops_running_tasks(hpc: RunningServer, executor: str) -> None:
    api = work(hpc.client())
    job = api.submit_job(
        {"kind": "htc", "array": 2, "spaces": ["work"], "executor": executor,
         "command": "sleep 300; echo late > {spaces.work}/{task_index}.txt"}
    )  # fmt: skip
    eventually(lambda: len(attempts_running(hpc, job.id)) == 2, 60, "both tasks running")
    api.cancel_job(job.id)
    done = api.wait_job(job.id, poll=0.3, timeout=60)
    assert done.state == "cancelled" and done.counts.cancelled == 2
    eventually(lambda: not attempts_running(hpc, job.id), 30, "their processes gone")
    assert {t.message for t in api.tasks(job.id).tasks} == {"cancelled"}
    assert not [e for e in api.listdir("work", "") if e.name.endswith(".txt")]


def test_a_task_past_its_timeout_fails_timed_out(hpc: RunningServer, executor: str) -> None:
    """On Slurm this takes one to two minutes (its shortest limit is a minute)."""
    timeout, message = SHORTEST_TIMEOUT[executor]
    api = work(hpc.client())
    job = api.submit_job(
        {"spaces": ["work"], "executor": executor, "timeout": timeout, "command": "sleep 600"}
    )
    done = api.wait_job(job.id, poll=1, timeout=240)
    task = api.tasks(job.id).tasks[0]
    assert done.state == "failed" and task.state == "failed"
    assert task.message.startswith(message), task.message


def test_retries_logs_and_forget(hpc: RunningServer, executor: str) -> None:
    """A failing task is retried then fails with its stderr, a passing one succeeds, every
    attempt keeps its log, and removing the job forgets its folders."""
    api = work(hpc.client())
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
    assert failed.message == "exit code 3\nno good"
    for attempt in (1, 2):
        assert b"".join(api.logs(job.id, 1, attempt=attempt)) == b"attempt of 1\n"
    folder = job_folder(hpc, executor, job.id)
    assert folder.is_dir()
    api.remove_job(job.id)
    assert not folder.exists(), "forget removes the job's folders"


def test_a_server_kill_mid_job_runs_no_task_twice(hpc: RunningServer, executor: str) -> None:
    api = work(hpc.client())
    job = api.submit_job(
        {"kind": "htc", "array": 8, "spaces": ["work"], "executor": executor,
         "command": "echo ran >> {spaces.work}/{task_index}.txt; sleep 2"}
    )  # fmt: skip
    eventually(lambda: api.job(job.id).counts.running >= 1, 60, "tasks running")
    hpc.kill()
    server = hpc.restart()
    try:
        api = server.client()
        assert api.wait_job(job.id, poll=0.3, timeout=120).state == "succeeded"
        assert {t.attempt for t in api.tasks(job.id).tasks} == {1}
        for i in range(8):
            assert api.read_bytes("work", f"{i}.txt") == b"ran\n", f"task {i} ran once"
    finally:
        server.stop()


def test_the_sync_mends_drift_between_executor_and_database(
    hpc: RunningServer, executor: str, tmp_path: Path
) -> None:
    """The database is made to say that task 0 runs as attempt 2 while the executor runs
    attempt 1 (as after a restore from a backup): the periodic sync (every second in tests)
    stops attempt 1, which the database does not know, and runs the task again, as attempt 2
    is nowhere; task 1 is left alone."""
    api = work(hpc.client())
    job = api.submit_job(
        {"kind": "htc", "array": 2, "spaces": ["work"], "executor": executor,
         "command": "echo $PRIMAGE_ATTEMPT >> {spaces.work}/{task_index}.txt; sleep 300"}
    )  # fmt: skip
    eventually(
        lambda: (
            api.job(job.id).counts.running == 2
            and attempts_running(hpc, job.id) == {(0, 1), (1, 1)}
        ),
        60,
        "both tasks running, and known to run",
    )
    with sqlite3.connect(tmp_path / "db") as db:
        db.execute(
            'UPDATE tasks SET attempt = 2 WHERE job_id = ? AND "index" = 0 AND attempt = 1',
            (job.id,),
        )
    eventually(lambda: attempts_running(hpc, job.id) == {(0, 3), (1, 1)}, 60, "task 0 run again")
    tasks = {t.index: t for t in api.tasks(job.id).tasks}
    assert (tasks[0].attempt, tasks[1].attempt) == (3, 1)
    assert api.read_bytes("work", "0.txt") == b"1\n3\n", "attempt 2 never ran: it was nowhere"
    api.cancel_job(job.id)
    assert api.wait_job(job.id, poll=0.3, timeout=60).counts.cancelled == 2
