"""Executors by configuration: several at once, jobs routed by name, each with its capacity."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from primage.client import Client
from primage.errors import BadRequest, Forbidden
from tests.harness import RunningServer, eventually

EXECUTORS = {
    "local": {"kind": "local"},
    "one": {"kind": "local", "concurrency": 1, "description": "a single slot"},
}
STAMPS = (
    "date +%s%N > {output_dir}/{task_index}.start; sleep 0.4; "
    "date +%s%N > {output_dir}/{task_index}.end"
)


@pytest.fixture
def two_executors(tmp_path: Path) -> Iterator[RunningServer]:
    env = {
        "PRIMAGE_EXECUTORS": json.dumps(EXECUTORS),
        "PRIMAGE_CONCURRENCY": "2",
        "PRIMAGE_CONTAINERS": "false",
        "PRIMAGE_EXECUTOR_GROUPS": json.dumps({"one": ["radiology"]}),
    }
    running = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        yield running
    finally:
        running.stop()


def intervals(api: Client, job_id: int, count: int) -> list[tuple[int, int]]:
    output = api.job(job_id).output_path

    def stamp(name: str) -> int:
        return int(api.read_bytes("work", f"{output}/{name}").decode())

    return sorted((stamp(f"{i}.start"), stamp(f"{i}.end")) for i in range(count))


def overlapping(spans: list[tuple[int, int]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_jobs_run_on_the_executor_they_name_with_its_capacity(two_executors: RunningServer) -> None:
    api = two_executors.client()
    api.create_space("work")
    listed = json.loads(two_executors.cli("executor", "ls", "--json").out)
    assert [(e["name"], e["kind"], e["capacity"], e["default"]) for e in listed] == [
        ("local", "local", 2, True), ("one", "local", 1, False)
    ]  # fmt: skip
    assert "apps" in listed[0]["capabilities"] and listed[1]["description"] == "a single slot"

    job = {"kind": "htc", "array": 3, "spaces": ["work"], "command": STAMPS}
    narrow = api.submit_job({**job, "executor": "one"})
    wide = api.submit_job(job)
    assert (narrow.executor, wide.executor) == ("one", "local")
    for each in (narrow, wide):
        assert api.wait_job(each.id, poll=0.2, timeout=60).state == "succeeded"
    assert not overlapping(intervals(api, narrow.id, 3)), "one slot: one task at a time"
    assert overlapping(intervals(api, wide.id, 3)), "two slots: two at once"
    limited = api.submit_job({**job, "max_parallel": 1})
    assert api.wait_job(limited.id, poll=0.2, timeout=60).state == "succeeded"
    assert not overlapping(intervals(api, limited.id, 3)), "max_parallel: 1 holds on 2 slots"
    assert api.job(limited.id).spec.max_parallel == 1

    logs = two_executors.cli("job", "logs", str(narrow.id), "--task", "0", "--stderr")
    assert logs.code == 0
    shown = two_executors.cli("job", "show", str(narrow.id))
    assert "(htc, one)" in shown.out


def test_unknown_executors_options_and_groups_are_refused_by_name(
    two_executors: RunningServer,
) -> None:
    admin = two_executors.client()
    admin.create_space("work")
    job = {"spaces": ["work"], "command": "true"}
    with pytest.raises(BadRequest, match=r"no executor named 'gpu'; this platform has local, one"):
        admin.submit_job({**job, "executor": "gpu"})
    with pytest.raises(BadRequest, match=r"'one' executor \(local\) takes no executor_options"):
        admin.submit_job({**job, "executor": "one", "executor_options": {"partition": "x"}})

    alice = Client(two_executors.url, admin.create_user("alice").token)
    admin.share("work", "alice", "editor")
    with pytest.raises(Forbidden, match="only members of radiology may run jobs on executor 'one'"):
        alice.submit_job({**job, "executor": "one"})
    assert alice.submit_job(job).executor == "local"
    assert [(e.name, e.may_use) for e in alice.list_executors()] == [
        ("local", True),
        ("one", False),
    ]
    shown = two_executors.cli("executor", "show", "one")
    assert "jobs take no executor_options here" in shown.out


def test_each_executor_adopts_its_tasks_after_a_server_kill(two_executors: RunningServer) -> None:
    api = two_executors.client()
    api.create_space("work")
    job = api.submit_job(
        {"kind": "htc", "array": 3, "spaces": ["work"], "executor": "one", "command": "sleep 1"}
    )
    eventually(lambda: api.job(job.id).counts.running == 1, 30, "a task running on 'one'")
    two_executors.kill()
    server = two_executors.restart()
    try:
        api = server.client()
        assert api.wait_job(job.id, poll=0.2, timeout=60).state == "succeeded"
        assert {t.attempt for t in api.tasks(job.id).tasks} == {1}, "adopted: none ran twice"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "executors,expected",
    [
        ({"x": {"kind": "slurmm"}}, "error: executors.x: kind 'slurmm' is not one of kubernetes, "),
        ({"one": {"kind": "local", "concurrency": 0}}, "error: executors.one: concurrency: "),
        ({"one": {"kind": "local", "partition": "a"}}, "error: executors.one: partition: "),
    ],
)
def test_a_wrong_executors_setting_stops_the_server_at_start_naming_it(
    executors: dict[str, object], expected: str, tmp_path: Path
) -> None:
    env = {"PRIMAGE_DATA_DIR": str(tmp_path), "PRIMAGE_EXECUTORS": json.dumps(executors)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "primage", "server", "--port", "0"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 1 and time.monotonic() - started < 60
    assert done.stderr.strip().splitlines()[-1].startswith(expected), done.stderr


def test_only_the_registry_knows_the_local_executor() -> None:
    """Apps, builds, images and the server use the host toolkit, never an executor's insides:
    executors are found through their entry point, so a site's executor is a peer of ours."""
    src = Path(__file__).parents[1] / "src" / "primage"
    local = src / "executors" / "local"
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if local not in path.parents and "primage.executors.local" in path.read_text()
    ]
    assert offenders == []
