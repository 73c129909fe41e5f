"""Jobs end to end: a real server runs real processes through its local executor."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from primage.client import Client
from primage.errors import BadRequest, Conflict, Forbidden, NotFound
from primage.host.procs import alive, parse_ref
from primage.samples import sample_images
from tests.harness import RunningServer, eventually

TWO_SLOTS = {"PRIMAGE_CONCURRENCY": "2", "PRIMAGE_CONTAINERS": "false"}  # processes only


@pytest.fixture
def jobs_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer.start(
        tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", env=TWO_SLOTS
    )
    try:
        yield running
    finally:
        running.stop()


def space_with_files(api: Client, tmp_path: Path, name: str, count: int) -> list[str]:
    api.create_space(name)
    local = tmp_path / f"{name}-files"
    local.mkdir()
    for i in range(count):
        (local / f"scan{i:02d}.txt").write_text(f"image {i}\n")
    api.upload_dir(name, "in", local)
    return [f"scan{i:02d}" for i in range(count)]


def test_htc_job_through_the_cli_writes_one_result_per_input(
    server: RunningServer, tmp_path: Path
) -> None:
    api = server.client()
    stems = space_with_files(api, tmp_path, "ct", 6)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "name: checksums\n"
        "kind: htc\n"
        "command: sha256sum {input} > {output_dir}/{input_stem}.sha256\n"
        "inputs: {space: ct, glob: 'in/*.txt'}\n"
    )

    submitted = server.cli("job", "submit", str(job_file), "--wait")

    assert submitted.code == 0, submitted.err
    assert "submitted job 1 (6 tasks)" in submitted.out
    assert "succeeded: 6/6 tasks succeeded" in submitted.out
    results = sorted(f.path for f in api.listdir("ct", "outputs/1"))
    assert results == [f"outputs/1/{s}.sha256" for s in stems]
    assert "in/scan03.txt" in api.read_bytes("ct", "outputs/1/scan03.sha256").decode()

    shown = server.cli("job", "show", "1")
    assert "succeeded 6" in shown.out and "in/scan05.txt" in shown.out
    listed = server.cli("job", "ls", "--space", "ct")
    assert "checksums" in listed.out and "6/6" in listed.out

    fetched = server.cli("job", "output", "1", "-o", str(tmp_path / "got"))
    assert fetched.code == 0, fetched.err
    got = sorted(p.name for p in (tmp_path / "got" / "job-1").iterdir())
    assert got == [f"{s}.sha256" for s in stems]

    removed = server.cli("job", "rm", "1")
    assert removed.code == 0
    assert len(api.listdir("ct", "outputs/1")) == 6  # outputs are never removed with the job
    with pytest.raises(NotFound):
        api.job(1)


def test_failures_are_retried_then_reported_with_exit_code_and_stderr(
    jobs_server: RunningServer,
) -> None:
    api = jobs_server.client()
    api.create_space("work")
    job = api.submit_job(
        {
            "kind": "htc",
            "array": 3,
            "spaces": ["work"],
            "command": 'if [ {task_index} = 1 ]; then echo "no lesion found" >&2; exit 3; fi',
            "retries": {"count": 2, "backoff": "0.1s"},
        }
    )
    done = api.wait_job(job.id, poll=0.2, timeout=60)

    assert done.state == "partial"
    assert done.message == "2/3 tasks succeeded, 1 failed"
    failed = api.tasks(job.id, state=["failed"]).tasks
    assert [t.index for t in failed] == [1]
    assert failed[0].exit_code == 3
    assert failed[0].attempt == 3 and failed[0].failures == 3
    assert "exit code 3" in failed[0].message and "no lesion found" in failed[0].message
    shown = jobs_server.cli("job", "show", str(job.id), "--state", "failed")
    assert "no lesion found" in shown.out
    assert b"no lesion found" in b"".join(api.logs(job.id, 1, stream="stderr"))
    metrics = httpx.get(f"{jobs_server.url}/metrics").text  # operators see the same
    assert 'primage_tasks_ended_total{outcome="failed"} 3.0' in metrics
    assert 'primage_tasks_ended_total{outcome="succeeded"} 2.0' in metrics


def test_a_task_past_its_timeout_is_stopped_and_fails(jobs_server: RunningServer) -> None:
    api = jobs_server.client()
    api.create_space("work")
    start = time.monotonic()
    job = api.submit_job({"command": "sleep 60", "spaces": ["work"], "timeout": "1s"})
    done = api.wait_job(job.id, poll=0.2, timeout=30)

    assert done.state == "failed"
    task = api.tasks(job.id).tasks[0]
    assert task.message.startswith("timed out after 1 s")
    assert time.monotonic() - start < 15
    assert not alive(task.external_id or "0:0")


def test_cancel_stops_running_tasks_and_never_starts_the_rest(jobs_server: RunningServer) -> None:
    api = jobs_server.client()
    api.create_space("work")
    job = api.submit_job({"kind": "htc", "array": 10, "spaces": ["work"], "command": "sleep 60"})
    eventually(lambda: api.job(job.id).counts.running >= 2, 20, "two tasks running")
    running = api.tasks(job.id, state=["running"]).tasks

    cancelled = jobs_server.cli("job", "cancel", str(job.id))
    done = api.wait_job(job.id, poll=0.2, timeout=30)

    assert cancelled.code == 0
    assert done.state == "cancelled" and done.counts.cancelled == 10
    assert {t.exit_code for t in api.tasks(job.id).tasks} == {None}, "no -15: it was us"
    for task in running:
        assert task.external_id is not None
        assert not alive(task.external_id)


def test_logs_follow_a_running_task_to_its_end(jobs_server: RunningServer) -> None:
    api = jobs_server.client()
    api.create_space("work")
    job = api.submit_job(
        {"spaces": ["work"], "command": "for i in 1 2 3; do echo line $i; sleep 0.3; done"}
    )
    followed = b"".join(api.logs(job.id, 0, follow=True))
    assert followed == b"line 1\nline 2\nline 3\n"
    cli = jobs_server.cli("job", "logs", str(job.id), "--follow")
    assert cli.out == "line 1\nline 2\nline 3\n"


def test_tasks_see_their_spaces_and_environment(jobs_server: RunningServer, tmp_path: Path) -> None:
    api = jobs_server.client()
    space_with_files(api, tmp_path, "ct", 1)
    api.create_space("notes")
    job = api.submit_job(
        {
            "spaces": ["ct:ro", "notes"],
            "env": {"SITE": "valencia"},
            "command": (
                'echo "$SITE $PRIMAGE_JOB_ID" > {spaces.notes}/env.txt; '
                'ls "$PRIMAGE_SPACE_CT/in" >> {output_dir}/../listing.txt; pwd'
            ),
        }
    )
    done = api.wait_job(job.id, poll=0.2, timeout=30)
    assert done.state == "succeeded", api.tasks(job.id).tasks[0].message
    assert done.output_space == "notes"
    assert api.read_bytes("notes", "env.txt") == f"valencia {job.id}\n".encode()
    assert api.read_bytes("notes", "outputs/listing.txt") == b"scan00.txt\n"
    workdir = b"".join(api.logs(job.id, 0)).decode().strip()
    assert workdir.endswith(f"jobs/{job.id}/0.1/work")  # each task works in its own folder


def test_a_space_mounted_read_only_cannot_be_written(
    jobs_server: RunningServer, tmp_path: Path
) -> None:
    api = jobs_server.client()
    space_with_files(api, tmp_path, "ct", 1)
    api.create_space("notes")
    job = api.submit_job(
        {
            "spaces": ["ct:ro", "notes"],
            "command": (
                'cat "$PRIMAGE_SPACE_CT/in/scan00.txt" > {spaces.notes}/copy.txt; '
                'echo tampered > "$PRIMAGE_SPACE_CT/in/scan00.txt" || exit 3; echo written'
            ),
        }
    )
    done = api.wait_job(job.id, poll=0.2, timeout=30)
    task = api.tasks(job.id).tasks[0]
    assert done.state == "failed" and task.exit_code == 3, task.message
    assert b"Read-only file system" in b"".join(api.logs(job.id, 0, stream="stderr"))
    assert api.read_bytes("ct", "in/scan00.txt") == api.read_bytes("notes", "copy.txt")
    assert b"tampered" not in api.read_bytes("ct", "in/scan00.txt")


def test_bad_jobs_are_refused_before_anything_runs(
    jobs_server: RunningServer, tmp_path: Path
) -> None:
    api = jobs_server.client()
    space_with_files(api, tmp_path, "ct", 2)
    glob = {"kind": "htc", "command": "true", "inputs": {"space": "ct", "glob": "in/*.dcm"}}
    with pytest.raises(BadRequest, match="matches no file in space 'ct'"):
        api.submit_job(glob)
    with pytest.raises(NotFound, match="no space named 'nope'"):
        api.submit_job({"command": "true", "spaces": ["nope"]})
    with pytest.raises(BadRequest, match=r"unknown variable \{inptu\}"):
        api.submit_job({"command": "cat {inptu}", "spaces": ["ct"]})
    with pytest.raises(BadRequest, match="'local' executor has no containers support"):
        api.submit_job({"command": "true", "image": "python:3.11", "spaces": ["ct"]})
    with pytest.raises(BadRequest, match=r"memory: .*'lots' is not a size"):
        api.submit_job({"command": "true", "resources": {"memory": "lots"}})
    with pytest.raises(BadRequest, match="kind: htc"):
        api.submit_job({"command": "true", "inputs": {"space": "ct", "glob": "*"}})

    api.mkdir("ct", "results")
    taken = {"command": "true", "spaces": ["ct"], "output": {"space": "ct", "path": "results"}}
    with pytest.raises(Conflict, match=r"'results' already exists.*overwrite"):
        api.submit_job(taken)
    assert api.submit_job({**taken, "overwrite": True}).output_path == "results"
    assert api.list_jobs().total == 1  # the refused ones left nothing behind

    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("command: true\nkind: htc\narray: 0\n")
    refused = jobs_server.cli("job", "submit", str(bad_file))
    assert refused.code == 1
    assert refused.err.strip().startswith("error:") and "array" in refused.err


def test_who_may_submit_see_and_cancel_jobs(jobs_server: RunningServer, tmp_path: Path) -> None:
    admin = jobs_server.client()
    space_with_files(admin, tmp_path, "ct", 2)
    viewer_token = admin.create_user("vera").token
    manager_token = admin.create_user("mani").token
    admin.share("ct", "vera", "viewer")
    admin.share("ct", "mani", "manager")
    vera, mani = jobs_server.client(viewer_token), jobs_server.client(manager_token)
    htc = {"kind": "htc", "command": "true", "inputs": {"space": "ct", "glob": "in/*"}}

    with pytest.raises(Forbidden, match="write access to space 'ct'"):
        vera.submit_job(htc)  # a viewer cannot write the outputs into the space
    own = vera.submit_job({**htc, "output": {"space": vera_space(vera)}})
    admins = admin.submit_job(htc)

    assert [j.id for j in vera.list_jobs().jobs] == [own.id]
    with pytest.raises(Forbidden, match="owner or a manager"):
        vera.job(admins.id)
    assert {j.id for j in mani.list_jobs().jobs} == {admins.id}  # jobs in the space mani manages
    assert mani.job(admins.id).id == admins.id
    read_only = admin.create_token(read_only=True).token
    with pytest.raises(Forbidden, match="read-only"):
        jobs_server.client(read_only).submit_job(htc)
    for job in (own, admins):
        admin.wait_job(job.id, poll=0.2, timeout=30)


def vera_space(api: Client) -> str:
    api.create_space("vera-results")
    return "vera-results"


def test_a_space_in_use_by_a_job_cannot_be_deleted(jobs_server: RunningServer) -> None:
    api = jobs_server.client()
    api.create_space("busy")
    job = api.submit_job({"command": "sleep 60", "spaces": ["busy"]})
    with pytest.raises(Conflict, match="unfinished job"):
        api.delete_space("busy", force=True)
    api.cancel_job(job.id)
    api.wait_job(job.id, poll=0.2, timeout=30)
    api.delete_space("busy", force=True)


def wait_for_running(api: Client, job_id: int, exclude: set[int]) -> list[int]:
    """Indexes of two running tasks not in ``exclude``, once some tasks have succeeded."""
    found: list[int] = []

    def going() -> bool:
        running = [t for t in api.tasks(job_id, state=["running"]).tasks if t.index not in exclude]
        found[:] = [t.index for t in running]
        return len(running) == 2 and api.job(job_id).counts.succeeded >= 2

    eventually(going, 30, "the job getting going")
    return found


def runner_of(server: RunningServer) -> int:
    """The PID of the server's local runner (its child running executors.local.runner)."""
    pid = server.process.pid
    for tid in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
            if b"executors.local.runner" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("the server has no local runner")


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def running_processes(api: Client, job_id: int, exclude: set[int]) -> tuple[list[int], list[int]]:
    """Two running tasks not in ``exclude`` whose processes exist now (the API can lag behind a
    loaded machine: a task it shows as running may just have ended), and their PIDs."""
    while True:
        indexes = wait_for_running(api, job_id, exclude)
        refs = [t.external_id for t in api.tasks(job_id).tasks if t.index in indexes]
        pids = [parse_ref(ref)[0] for ref in refs if ref]
        if len(pids) == 2 and all(parent_of(pid) is not None for pid in pids):
            return indexes, pids


def test_sigkill_mid_job_then_restart_adopts_running_tasks_and_reruns_dead_ones(
    database_url: str, tmp_path: Path
) -> None:
    """Kill -9 the server mid-job and restart it; then crash it with its runner and tasks."""
    servers = [RunningServer.start(tmp_path / "data", database_url, env=TWO_SLOTS)]
    try:
        api = servers[-1].client()
        stems = space_with_files(api, tmp_path, "ct", 10)
        # Each result is appended to: a task that ran to its end twice would leave two lines.
        command = "sleep 1.5; echo attempt $PRIMAGE_ATTEMPT >> {output_dir}/{input_stem}.out"
        job = api.submit_job(
            {"kind": "htc", "command": command, "inputs": {"space": "ct", "glob": "in/*"}}
        )

        # 1. Only the server dies: its running tasks carry on and are adopted.
        adopted = wait_for_running(api, job.id, set())
        servers[-1].kill()
        servers.append(servers[-1].restart())
        api = servers[-1].client()

        # 2. Server, runner and running tasks all die (as in a crash): those tasks run again.
        crashed, pids = running_processes(api, job.id, set(adopted))
        runner = runner_of(servers[-1])
        servers[-1].kill()
        os.kill(runner, signal.SIGKILL)
        for pid in pids:
            os.killpg(pid, signal.SIGKILL)
        servers.append(servers[-1].restart())
        api = servers[-1].client()

        done = api.wait_job(job.id, poll=0.2, timeout=90)
        tasks = {t.index: t for t in api.tasks(job.id).tasks}
        assert done.state == "succeeded", done.message
        assert [tasks[i].attempt for i in adopted] == [1, 1]  # adopted, never run twice
        assert [tasks[i].attempt for i in crashed] == [2, 2]  # died with the server: rerun
        assert all(t.failures == 0 for t in tasks.values())  # not counted against retries
        outputs = sorted(f.path for f in api.listdir("ct", f"outputs/{job.id}"))
        assert outputs == [f"outputs/{job.id}/{s}.out" for s in stems]
        for stem in stems:
            lines = api.read_bytes("ct", f"outputs/{job.id}/{stem}.out").decode().splitlines()
            assert len(lines) == 1, f"{stem}: {lines}"
    finally:
        for running_server in servers:
            running_server.stop()


def test_a_task_over_its_memory_limit_fails_and_says_why(jobs_server: RunningServer) -> None:
    api = jobs_server.client()
    api.create_space("work")
    grab = "python3 -c 'x = bytearray(512 * 2**20)'"  # 512 MiB against a 256 MiB limit
    job = api.submit_job({"command": grab, "spaces": ["work"], "resources": {"memory": "256MiB"}})
    done = api.wait_job(job.id, poll=0.2, timeout=30)
    task = api.tasks(job.id).tasks[0]
    assert done.state == "failed"
    assert task.exit_code == 1 and "MemoryError" in task.message
    fits = api.submit_job({**api.job(job.id).spec.model_dump(), "resources": {"memory": "1GiB"}})
    assert api.wait_job(fits.id, poll=0.2, timeout=30).state == "succeeded"


def test_a_corrupt_image_fails_its_own_task_and_the_others_are_segmented(
    jobs_server: RunningServer, tmp_path: Path
) -> None:
    """The canonical application through the platform, with one bad file among the images."""
    api = jobs_server.client()
    api.create_space("scans")
    good = sample_images()
    for image in good:
        api.upload("scans", f"images/{image.name}", image)
    (tmp_path / "corrupt.dcm").write_bytes(good[0].read_bytes()[:2000])
    api.upload("scans", "images/corrupt.dcm", tmp_path / "corrupt.dcm")
    job_file = Path(__file__).parents[1] / "examples" / "segmentation" / "job.yaml"

    submitted = jobs_server.cli(
        "job", "submit", str(job_file), "--input", "scans:images/*", "--retries", "0", "--wait"
    )

    assert submitted.code == 1  # not every task succeeded
    done = api.list_jobs().jobs[0]
    assert done.state == "partial" and done.counts.failed == 1
    assert done.counts.succeeded == len(good)
    failed = api.tasks(done.id, state=["failed"]).tasks[0]
    assert failed.inputs == ["images/corrupt.dcm"]
    assert "not a readable image" in failed.message
    reports = [
        f.path for f in api.listdir("scans", f"outputs/{done.id}") if f.path.endswith("json")
    ]
    assert len(reports) == len(good)


def test_a_killed_runner_is_replaced_and_its_tasks_are_not_lost(
    jobs_server: RunningServer,
) -> None:
    api = jobs_server.client()
    api.create_space("work")
    job = api.submit_job({"spaces": ["work"], "command": "sleep 1; echo done"})
    eventually(lambda: api.tasks(job.id).tasks[0].state == "running", 20, "the task running")
    assert api.tasks(job.id).tasks[0].external_id is not None
    os.kill(runner_of(jobs_server), signal.SIGKILL)  # the runner, not the task or its sandbox

    done = api.wait_job(job.id, poll=0.2, timeout=60)

    assert done.state == "succeeded"  # its end could not be known, so it ran again
    assert api.tasks(job.id).tasks[0].attempt == 2
    assert "the local runner exited" in (jobs_server.data_dir.parent / "data.log").read_text()


def test_a_rerun_over_the_whole_space_does_not_take_earlier_outputs_as_inputs(
    jobs_server: RunningServer, tmp_path: Path
) -> None:
    api = jobs_server.client()
    space_with_files(api, tmp_path, "ct", 3)
    whole = {"kind": "htc", "command": "cp {input} {output_dir}/", "inputs": {"space": "ct"}}
    first = api.submit_job({**whole, "inputs": {"space": "ct", "glob": "**"}})
    assert api.wait_job(first.id, poll=0.2, timeout=30).state == "succeeded"

    again = api.submit_job({**whole, "inputs": {"space": "ct", "glob": "**"}})
    previous = api.submit_job({**whole, "inputs": {"space": "ct", "glob": "outputs/**"}})

    assert again.task_count == 3  # the 3 copies in outputs/1/ are not inputs
    assert previous.task_count == 3  # unless the glob asks for them
    for job in (again, previous):
        api.wait_job(job.id, poll=0.2, timeout=30)
