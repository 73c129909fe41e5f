"""Jobs: the specification a user submits and what the API tells about a job and its tasks.

The specification is one pydantic model: it validates job files (YAML or JSON), CLI flags and API
bodies alike, and its field descriptions are the documentation (``primage job spec``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from primage.errors import UnsafePath
from primage.jobs.template import check_template
from primage.models import Model, Strict, validated
from primage.storage.paths import normalise_relpath

UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
UNITS |= {"ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}
SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_bytes(value: Any) -> Any:
    """'512MiB', '2G', '1.5Gi' or a number of bytes → bytes."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]i?)?b?\s*", value.lower())
    if match is None:
        raise ValueError(f"'{value}' is not a size; write e.g. 512MiB, 2GiB or 4G")
    return int(float(match[1]) * UNITS[match[2] or ""])


def parse_seconds(value: Any) -> Any:
    """'90s', '10m', '2h', '1d' or a number of seconds → seconds."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*([0-9.]+)\s*([smhd]?)\s*", value.lower())
    if match is None:
        raise ValueError(f"'{value}' is not a duration; write e.g. 90s, 10m or 2h")
    return float(match[1]) * SECONDS[match[2]]


def parse_mount(value: Any) -> Any:
    """The short form ``NAME[/FOLDER][:ro|:rw]`` of a space mount (one folder of it, or all)."""
    if isinstance(value, str):
        where, _, mode = value.partition(":")
        if mode not in ("", "ro", "rw"):
            raise ValueError(f"'{value}': a mount is NAME, NAME:ro, NAME/FOLDER:ro or NAME:rw")
        name, _, folder = where.partition("/")
        return {"name": name, "folder": folder or None, "read_only": mode == "ro"}
    return value


Bytes = Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)]
Seconds = Annotated[float, BeforeValidator(parse_seconds), Field(gt=0)]


class Mount(Strict):
    name: str = Field(description="The space.")
    folder: str | None = Field(
        None,
        description="Only this folder of the space, e.g. 'raw/ct': the tasks see nothing else "
        "of it (at the same path).",
    )
    read_only: bool = Field(False, description="Mount it read-only.")

    @field_validator("folder")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        try:
            return normalise_relpath(value) or None if value is not None else None
        except UnsafePath as exc:
            raise ValueError(f"folder: {exc.detail}") from None

    @property
    def path(self) -> str:
        """Where it is seen below the storage root (or /spaces): NAME or NAME/FOLDER."""
        return f"{self.name}/{self.folder}" if self.folder else self.name


def check_env_and_mounts(env: Iterable[str], mounts: Iterable[Mount]) -> None:
    """Variable names the platform can set and leaves to the user; each space mounted once."""
    for key in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"env: '{key}' is not a variable name (letters, digits, '_')")
        if key.startswith("PRIMAGE_"):
            raise ValueError(f"env: '{key}': PRIMAGE_* variables are set by the platform")
    names = [m.name for m in mounts]
    if len(names) != len(set(names)):
        raise ValueError("spaces: a space is listed twice")


class Inputs(Strict):
    """The files of an HTC job: a glob or a list, in one space; one task per file (or batch)."""

    space: str = Field(description="The space holding the input files.")
    glob: str | None = Field(
        None, description="Pattern relative to the space, e.g. 'ct/**/*.dcm' ('**' recurses)."
    )
    files: list[str] | None = Field(None, description="Explicit paths relative to the space.")

    @model_validator(mode="after")
    def one_source(self) -> Inputs:
        if (self.glob is None) == (self.files is None):
            raise ValueError("give exactly one of inputs.glob or inputs.files")
        if self.files is not None and not self.files:
            raise ValueError("inputs.files is empty; list at least one file")
        return self


class Resources(Strict):
    cpus: int = Field(1, ge=1, le=1024, description="Cores one task uses (counts against slots).")
    memory: Bytes | None = Field(None, description="Memory limit per task, e.g. '2GiB'.")
    gpus: int = Field(
        0, ge=0, le=64, description="GPUs one task uses (executors with GPUs; Slurm: --gres=gpu:N)."
    )


class Retries(Strict):
    count: int = Field(0, ge=0, le=20, description="How many times a failed task is re-run.")
    backoff: Seconds = Field(10.0, description="Wait before the first retry; doubles each time.")


class Output(Strict):
    space: str | None = Field(
        None, description="Space receiving the outputs; default: the input space."
    )
    path: str | None = Field(None, description="Folder in that space; default outputs/<job-id>.")


class Service(Strict):
    """An interactive job's service: how the platform reaches it (``kind: interactive``)."""

    port: int | None = Field(
        None, ge=1, le=65535, description="Port it listens on; default a free one ({port})."
    )
    health_path: str = Field("", description="Path below {base_url} that answers once ready.")
    strip_prefix: bool = Field(False, description="Send requests without /apps/job-<id>.")
    idle_timeout: Seconds = Field(
        3600.0, description="The job ends after this long without traffic through the proxy."
    )


class JobSpec(Strict):
    """What to run, on which data, with which resources."""

    name: str = Field("job", max_length=128, description="A label for listings.")
    kind: Literal["batch", "htc", "interactive"] = Field(
        "batch",
        description="batch: one task; htc: one task per input file (or per --array index); "
        "interactive: one service, reached at /apps/job-<id>/ until it is idle or cancelled.",
    )
    command: str = Field(
        min_length=1,
        description=(
            "Shell command of each task. Variables: {input}, {inputs}, {input_stem}, "
            "{output_dir}, {task_index}, {spaces.NAME}; other braces are left alone."
        ),
    )
    image: str | None = Field(None, description="Container image (executors with containers).")
    executor: str | None = Field(
        None,
        max_length=63,
        description="Where the tasks run (primage executor ls); default: the platform's default.",
    )
    executor_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of that executor, checked against its schema (GET /executors), "
        "e.g. a Slurm partition.",
    )
    max_parallel: int | None = Field(
        None, ge=1, le=1_000_000, description="At most this many of the job's tasks at once."
    )
    network: bool = Field(
        False,
        description="Give tasks outbound network access (off by default); never to the "
        "services of the platform's own machine.",
    )
    spaces: list[Annotated[Mount, BeforeValidator(parse_mount)]] = Field(
        default_factory=list, description="Spaces the tasks see, e.g. ['ct:ro', 'results']."
    )
    inputs: Inputs | None = Field(None, description="HTC: the files to process.")
    array: int | None = Field(
        None, ge=1, le=1_000_000, description="HTC: run N tasks with {task_index} 0..N-1."
    )
    files_per_task: int = Field(1, ge=1, le=10_000, description="HTC: input files per task.")
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    timeout: Seconds | None = Field(None, description="Wall-time limit per task, e.g. '30m'.")
    retries: Retries = Field(default_factory=Retries)
    output: Output = Field(default_factory=Output)
    overwrite: bool = Field(False, description="Allow writing into an existing output folder.")
    service: Service | None = Field(None, description="Interactive: how it is reached.")

    @model_validator(mode="after")
    def consistent(self) -> JobSpec:
        check_env_and_mounts(self.env, self.spaces)
        if self.kind == "interactive":
            return self._interactive()
        if self.service is not None:
            raise ValueError("service: only an interactive job (kind: interactive) has one")
        if self.kind == "htc" and (self.inputs is None) == (self.array is None):
            raise ValueError("an htc job needs exactly one of inputs (files) or array (a count)")
        if self.kind == "batch" and (self.inputs is not None or self.array is not None):
            raise ValueError("a batch job runs one task; use kind: htc for inputs or array")
        if self.files_per_task > 1 and self.inputs is None:
            raise ValueError("files_per_task needs inputs")
        names = [m.name for m in self.spaces]
        check_template(
            self.command,
            spaces=set(names) | self.implied_spaces(),
            has_inputs=self.inputs is not None,
            batched=self.files_per_task > 1,
            has_output=self.output_space is not None,
        )
        return self

    def _interactive(self) -> JobSpec:
        from primage.models.apps import check_variables

        given = [
            name
            for name in ("inputs", "array", "timeout", "output", "retries", "files_per_task")
            if getattr(self, name)
            != JobSpec.model_fields[name].get_default(call_default_factory=True)
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)}: not for an interactive job, which runs one service "
                "until it is idle or cancelled"
            )
        if self.service is None:
            self.service = Service()
        check_variables(self.command, {m.name for m in self.spaces}, has_workdir=False)
        return self

    def implied_spaces(self) -> set[str]:
        found = {self.inputs.space} if self.inputs else set()
        if self.output.space:
            found.add(self.output.space)
        return found

    @property
    def output_space(self) -> str | None:
        """Where outputs go: the named space, else the input space, else the one writable mount
        (an interactive job writes where it likes in its spaces: no output folder)."""
        if self.kind == "interactive":
            return None
        if self.output.space:
            return self.output.space
        if self.inputs:
            return self.inputs.space
        writable = [m.name for m in self.spaces if not m.read_only]
        return writable[0] if len(writable) == 1 else None

    def folders(self) -> dict[str, str]:
        """The spaces of which the tasks see one folder only → that folder."""
        return {m.name: m.folder for m in self.spaces if m.folder}

    def mounts(self) -> dict[str, bool]:
        """Every space the tasks see → read-only?; inputs are read-only, the output writable."""
        found = {m.name: m.read_only for m in self.spaces}
        if self.inputs:
            found.setdefault(self.inputs.space, True)
        if self.output_space:
            found[self.output_space] = False
        return found


def spec_from(data: Any, source: str = "job") -> JobSpec:
    """A validated spec, or BadRequest naming each wrong field and what to write instead."""
    return validated(JobSpec, data, source, "name, kind, command")


class JobCounts(Model):
    pending: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class Job(Model):
    id: int
    name: str
    kind: str
    owner: str
    state: str
    executor: str
    output_space: str | None
    output_path: str | None
    task_count: int
    counts: JobCounts
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    message: str = Field("", description="Why the job ended as it did.")


class JobDetail(Job):
    spec: JobSpec
    url: str | None = Field(None, description="Interactive: where its service is reached.")
    image: str | None = Field(
        None, description="The image the tasks run, pinned by digest at submission."
    )


class Task(Model):
    index: int
    state: str
    inputs: list[str]
    attempt: int
    failures: int
    exit_code: int | None
    external_id: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    message: str


class TaskPage(Model):
    tasks: list[Task]
    total: int
    offset: int


class JobPage(Model):
    jobs: list[Job]
    total: int
    offset: int
