"""From a job specification to its tasks: which files, how many per task, and what each runs.

``expand`` turns the inputs (a glob or a list in a space, or an array size) into the task list at
submission. ``task_run`` renders one task's command and environment when it is handed to the
executor, with paths as the executor's tasks see them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from primage.errors import BadRequest
from primage.executors.base import TaskKey, TaskRun
from primage.jobs.template import TaskValues, render, space_variable
from primage.models.jobs import JobSpec
from primage.storage.paths import normalise_relpath

OUTPUTS = "outputs"  # where jobs write by default: outputs/<job-id>/

# Libraries that size their thread pools from the machine's cores, told the task's share instead.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
)


def expand(spec: JobSpec, space_root: Path | None, max_tasks: int) -> list[list[str]]:
    """The inputs of each task, as paths relative to the input space (empty for array/batch)."""
    if spec.array is not None:
        count = spec.array
        if count > max_tasks:
            raise BadRequest(f"array: {count} tasks is more than the limit of {max_tasks}")
        return [[] for _ in range(count)]
    if spec.inputs is None or space_root is None:
        return [[]]
    if spec.inputs.glob is not None:
        files = glob(space_root, spec.inputs.glob)
        if not files:
            raise BadRequest(
                f"inputs.glob '{spec.inputs.glob}' matches no file in space "
                f"'{spec.inputs.space}' (primage ls {spec.inputs.space} shows what is there)"
            )
    else:
        files = listed(space_root, spec.inputs.space, spec.inputs.files or [])
    per = spec.files_per_task
    tasks = [files[i : i + per] for i in range(0, len(files), per)]
    if len(tasks) > max_tasks:
        raise BadRequest(
            f"{len(tasks)} tasks is more than the limit of {max_tasks}; "
            "raise files_per_task to put several files in one task"
        )
    return tasks


def glob(root: Path, pattern: str) -> list[str]:
    """Regular files under ``root`` matching ``pattern``; sorted; never outside the space."""
    clean = pattern.strip().strip("/")
    if not clean or pattern.startswith("/") or ".." in clean.split("/"):
        raise BadRequest(f"inputs.glob '{pattern}' must be relative to the space, without '..'")
    regex = compile_glob(clean)
    # Earlier jobs' results are not inputs unless asked for: a rerun over '**' must not process
    # the masks the last run wrote.
    skip_outputs = clean.split("/")[0] != OUTPUTS
    found = []
    for folder, dirs, names in os.walk(root):  # does not follow links to folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if skip_outputs and folder == str(root) and OUTPUTS in dirs:
            dirs.remove(OUTPUTS)
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel + "/"
        for name in names:
            path = prefix + name
            full = os.path.join(folder, name)
            if regex.fullmatch(path) and os.path.isfile(full) and not os.path.islink(full):
                found.append(path)
    return sorted(found)


def compile_glob(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` within one folder name, ``**/`` across any number of folders."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise BadRequest(f"inputs.glob '{pattern}': '[' without ']'")
            out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def listed(root: Path, space: str, files: Sequence[str]) -> list[str]:
    paths = [normalise_relpath(f) for f in files]
    missing = [p for p in paths if not (root / p).is_file() or (root / p).is_symlink()]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise BadRequest(f"inputs.files: not files in space '{space}': {shown}")
    return paths


class TaskFactory:
    """Renders a job's task attempts; what is the same for every task is worked out once."""

    def __init__(
        self,
        spec: JobSpec,
        output_path: str | None,
        space_paths: dict[str, str],
        image: str | None = None,
    ):
        self.spec = spec
        self.image = image  # the job's image pinned by digest
        self.space_paths = space_paths
        self.input_root = space_paths[spec.inputs.space] if spec.inputs else ""
        self.output_dir = (
            f"{space_paths[spec.output_space]}/{output_path}"
            if spec.output_space and output_path
            else None
        )
        self.mounts = spec.mounts()
        self.folders = spec.folders()
        env = {var: str(spec.resources.cpus) for var in THREAD_VARIABLES}
        for name, path in space_paths.items():
            env[space_variable(name)] = path
        if self.output_dir:
            env["PRIMAGE_OUTPUT_DIR"] = self.output_dir
        self.env = env

    def run(self, key: TaskKey, inputs: Sequence[str]) -> TaskRun:
        """One attempt of a task, its command rendered with the paths its executor shows it."""
        spec = self.spec
        paths = [f"{self.input_root}/{p}" for p in inputs]
        values = TaskValues(paths, self.output_dir, key.index, self.space_paths)
        env = self.env | {
            "PRIMAGE_JOB_ID": str(key.job_id),
            "PRIMAGE_TASK_INDEX": str(key.index),
            "PRIMAGE_ATTEMPT": str(key.attempt),
        }
        if paths:
            env["PRIMAGE_INPUT"] = paths[0]
            env["PRIMAGE_INPUTS"] = "\n".join(paths)
        env |= spec.env
        return TaskRun(
            key=key,
            command=render(spec.command, values),
            env=env,
            mounts=self.mounts,
            folders=self.folders,
            cpus=spec.resources.cpus,
            memory_bytes=spec.resources.memory,
            gpus=spec.resources.gpus,
            timeout_s=spec.timeout,
            image=self.image,
            network=spec.network,
            options=spec.executor_options,
            max_parallel=spec.max_parallel,
        )
