"""The rules of jobs that need no server: states, command variables, globs, how commands run."""

from __future__ import annotations

import pytest

from primage.host.procs import argv_for
from primage.jobs.expand import compile_glob
from primage.jobs.states import JobState, TaskState, can_move, job_state
from primage.jobs.template import TaskValues, render, stem
from primage.models.jobs import JobSpec

S = TaskState


@pytest.mark.parametrize(
    ("counts", "cancelled", "expected"),
    [
        ({S.PENDING: 3}, False, JobState.PENDING),
        ({S.PENDING: 2, S.RUNNING: 1}, False, JobState.RUNNING),
        ({S.QUEUED: 1, S.SUCCEEDED: 1}, False, JobState.RUNNING),
        ({S.SUCCEEDED: 3}, False, JobState.SUCCEEDED),
        ({S.SUCCEEDED: 2, S.FAILED: 1}, False, JobState.PARTIAL),
        ({S.FAILED: 3}, False, JobState.FAILED),
        ({S.SUCCEEDED: 1, S.CANCELLED: 2}, True, JobState.CANCELLED),
    ],
)
def test_a_jobs_state_follows_from_its_tasks(
    counts: dict[TaskState, int], cancelled: bool, expected: JobState
) -> None:
    assert job_state(counts, cancelled) is expected


def test_finished_tasks_never_move_again() -> None:
    assert can_move(S.RUNNING, S.PENDING)  # a retry
    assert can_move(S.QUEUED, S.SUCCEEDED)  # its start and end reported together
    assert not any(can_move(S.SUCCEEDED, new) for new in TaskState)
    assert not can_move(S.PENDING, S.RUNNING)  # only through the executor's queue


def test_variables_are_filled_and_shell_quoted() -> None:
    values = TaskValues(["/sp/ct/scan 1.nii.gz"], "/sp/ct/outputs/7", 3, {"atlas": "/sp/atlas"})
    command = (
        "seg {input} -o {output_dir}/{input_stem}.nii.gz --atlas {spaces.atlas} -i {task_index}"
    )
    assert render(command, values) == (
        "seg '/sp/ct/scan 1.nii.gz' -o /sp/ct/outputs/7/'scan 1'.nii.gz --atlas /sp/atlas -i 3"
    )
    untouched = "echo ${HOME} {{input}} | awk '{print $1}'"
    assert render(untouched, values) == "echo ${HOME} {input} | awk '{print $1}'"
    assert stem("a/b/ct_001.nii.gz") == "ct_001" and stem("x.dcm") == "x"


def test_unknown_or_unfillable_variables_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown variable \{ouput_dir\}"):
        JobSpec(command="cp x {ouput_dir}", spaces=["a"])
    with pytest.raises(ValueError, match=r"\{input\} but the job has no inputs"):
        JobSpec(command="cat {input}", kind="htc", array=3)
    with pytest.raises(ValueError, match=r"use \{inputs\}"):
        JobSpec(
            command="cat {input}",
            kind="htc",
            inputs={"space": "a", "glob": "*"},
            files_per_task=4,
        )


def test_globs_match_within_folders_and_across_them_with_two_stars() -> None:
    assert compile_glob("ct/*.dcm").fullmatch("ct/a.dcm")
    assert not compile_glob("ct/*.dcm").fullmatch("ct/sub/a.dcm")
    assert compile_glob("ct/**/*.dcm").fullmatch("ct/a.dcm")
    assert compile_glob("ct/**/*.dcm").fullmatch("ct/p1/s2/a.dcm")
    assert compile_glob("scan_0[0-4].nii").fullmatch("scan_03.nii")


def test_plain_command_lines_run_without_a_shell() -> None:
    assert argv_for("sha256sum /data/a.dcm") == ["sha256sum", "/data/a.dcm"]
    assert argv_for("seg '/data/a b.dcm'") == ["seg", "/data/a b.dcm"]
    assert argv_for("seg a > out.txt")[:2] == ["/bin/sh", "-c"]
    assert argv_for("cd /tmp")[:2] == ["/bin/sh", "-c"]
    assert argv_for("OMP_NUM_THREADS=1 seg a")[:2] == ["/bin/sh", "-c"]
