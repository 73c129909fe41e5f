"""``primage job``: submit batch and high-throughput jobs, follow them, fetch their outputs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from primage.cli.common import JsonOption, client, console, group, print_json, split_target, table
from primage.errors import BadRequest
from primage.jobs.states import JobState

if TYPE_CHECKING:
    from primage.client import Client
    from primage.models.jobs import JobDetail

app = group("Run batch and high-throughput (one task per file) jobs next to the data.")

EXAMPLE = """\
Examples:

\b
  primage job submit examples/segmentation/job.yaml
  primage job submit examples/segmentation/job.yaml --image localhost:5001/alice/seg:1
  primage job submit --input ct:'scans/*.dcm' -c 'sha256sum {input}' --wait
  primage job submit --array 10 --space sim -c 'simulate {task_index} > {output_dir}/{task_index}'
"""


def read_file(path: Path) -> dict[str, Any]:
    from primage.documents import parse

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BadRequest(f"no job file '{path}'") from None
    data = parse(text, str(path))
    if not isinstance(data, dict):
        raise BadRequest(f"{path}: a job file is a mapping of fields (name, kind, command, …)")
    return data


def key_values(pairs: list[str], what: str) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BadRequest(f"{what} '{pair}' is not KEY=VALUE")
        found[key] = value
    return found


@app.command(epilog=EXAMPLE)
def submit(
    ctx: typer.Context,
    file: Path | None = typer.Argument(None, help="Job file (YAML or JSON); flags override it."),
    command: str | None = typer.Option(None, "--command", "-c", help="Each task's command."),
    name: str | None = typer.Option(None, help="A label for listings."),
    inputs: str | None = typer.Option(
        None,
        "--input",
        "-i",
        metavar="SPACE:GLOB",
        help="HTC inputs as SPACE:GLOB, e.g. ct:'scans/**/*.dcm'.",
    ),
    array: int | None = typer.Option(None, help="HTC: run N tasks, {task_index} 0..N-1."),
    spaces: list[str] = typer.Option(
        [],
        "--space",
        metavar="NAME[:ro]",
        help="Mount a space: NAME, NAME:ro, NAME:rw, or one folder: NAME/FOLDER:ro.",
    ),
    files_per_task: int | None = typer.Option(None, help="Input files given to each task."),
    image: str | None = typer.Option(
        None, help="Run each task in a container of this image, e.g. REGISTRY/alice/seg:1."
    ),
    executor: str | None = typer.Option(
        None, help="Where it runs: an executor's name (primage executor ls); default: the site's."
    ),
    cpus: int | None = typer.Option(None, help="Cores per task."),
    gpus: int | None = typer.Option(None, help="GPUs per task (executors with GPUs)."),
    memory: str | None = typer.Option(None, help="Memory limit per task, e.g. 2GiB."),
    env: list[str] = typer.Option(
        [], "--env", "-e", metavar="KEY=VALUE", help="Environment of the tasks (repeatable)."
    ),
    timeout: str | None = typer.Option(None, help="Wall-time limit per task, e.g. 30m."),
    retries: int | None = typer.Option(None, help="Re-run a failed task this many times."),
    output: str | None = typer.Option(
        None, help="Outputs go to SPACE or SPACE:FOLDER (default: the input space, outputs/<id>)."
    ),
    overwrite: bool = typer.Option(False, help="Allow an existing output folder."),
    template_inputs: list[str] = typer.Option(
        [], "--set", metavar="NAME=VALUE", help="An input of a TOSCA job template (repeatable)."
    ),
    wait_: bool = typer.Option(False, "--wait", "-w", help="Show progress until the job ends."),
    as_json: bool = JsonOption,
) -> None:
    """Submit a job: from a file, from flags, or both."""
    if template_inputs and not file:
        raise BadRequest("--set fills a TOSCA job template's inputs: give the template file")
    given = key_values(template_inputs, "--set")
    data: dict[str, Any] = _job_file(ctx, file, given) if file else {}
    source = str(file) if file else "job"
    flags: dict[str, Any] = {
        "command": command,
        "name": name,
        "array": array,
        "files_per_task": files_per_task,
        "timeout": timeout,
        "image": image,
        "executor": executor,
    }
    data |= {k: v for k, v in flags.items() if v is not None}
    if inputs is not None:
        space, pattern = split_target(inputs)
        data["inputs"] = {"space": space, "glob": pattern or "**"}
    if (inputs is not None or array is not None) and "kind" not in data:
        data["kind"] = "htc"
    if spaces:
        data["spaces"] = [*data.get("spaces", []), *spaces]
    asked = {"cpus": cpus, "memory": memory, "gpus": gpus}
    if any(v is not None for v in asked.values()):
        data["resources"] = data.get("resources", {}) | {
            k: v for k, v in asked.items() if v is not None
        }
    if env:
        data["env"] = data.get("env", {}) | key_values(env, "--env")
    if retries is not None:
        data["retries"] = data.get("retries", {}) | {"count": retries}
    if output is not None:
        space, folder = split_target(output)
        data["output"] = {"space": space, **({"path": folder} if folder else {})}
    if overwrite:
        data["overwrite"] = True
    from primage.models.jobs import JobSpec, spec_from

    if "command" not in data and set(data) <= set(JobSpec.model_fields):
        raise BadRequest("no command: give one with -c/--command or in a job file")
    spec = spec_from(data, source)
    api = client(ctx)
    job = api.submit_job(spec)
    if as_json and not wait_:
        print_json(job)
        return
    typer.echo(
        f"submitted job {job.id} ({job.task_count} task{'s' * (job.task_count != 1)})",
        err=as_json,
    )
    if job.output_space:
        typer.echo(f"outputs: {job.output_space}:{job.output_path}", err=as_json)
    if job.url:
        typer.echo(f"open it at {job.url} (it ends when idle, or: primage job cancel {job.id})")
    if wait_:
        finished = follow(api, job.id, quiet_stdout=as_json)
        if as_json:
            print_json(finished)
        raise typer.Exit(0 if finished.state == JobState.SUCCEEDED else 1)


def _job_file(ctx: typer.Context, file: Path, inputs: dict[str, str]) -> dict[str, Any]:
    """A job file's fields; a TOSCA file (an INDIGO Chronos job) rendered by the server."""
    from primage.cli.templates import is_tosca, read_template

    text, files = read_template(file)
    if not is_tosca(text):
        if inputs:
            raise BadRequest(f"--set fills a TOSCA template's inputs; {file} is a job file")
        return read_file(file)
    found = client(ctx).render_template(text, inputs=inputs, source=file.name, files=files)
    if found.kind != "job":
        raise BadRequest(
            f"{file.name} is an application template, not a job: primage app deploy {file}"
        )
    for note in found.notes:
        typer.echo(f"note: {note}", err=True)
    return found.spec


def follow(api: Client, job_id: int, *, quiet_stdout: bool = False) -> JobDetail:
    """A progress bar until the job ends; then its summary line (on stderr with
    ``quiet_stdout``, when stdout is for JSON)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    out = console(stderr=quiet_stdout)
    columns = (
        TextColumn("job {task.fields[job]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out, transient=True, disable=not out.is_terminal) as progress:
        bar = progress.add_task("", total=None, job=job_id, detail="")

        def update(job: JobDetail) -> None:
            c = job.counts
            detail = f"running {c.running}  failed {c.failed}"
            if c.cancelled:
                detail += f"  cancelled {c.cancelled}"
            done = c.succeeded + c.failed + c.cancelled
            progress.update(bar, total=job.task_count, completed=done, detail=detail)

        finished = api.wait_job(job_id, poll=0.5, on_update=update)
    colour = "green" if finished.state == JobState.SUCCEEDED else "red"
    out.print(f"job {job_id} [{colour}]{finished.state}[/{colour}]: {finished.message}")
    return finished


@app.command()
def wait(ctx: typer.Context, job_id: int, as_json: bool = JsonOption) -> None:
    """Show a job's progress until it ends; exit 0 only if every task succeeded."""
    finished = follow(client(ctx), job_id, quiet_stdout=as_json)
    if as_json:
        print_json(finished)
    raise typer.Exit(0 if finished.state == JobState.SUCCEEDED else 1)


@app.command("ls")
def list_(
    ctx: typer.Context,
    state: list[str] = typer.Option(
        [], metavar="STATE", help="Only jobs in this state (repeatable)."
    ),
    owner: str | None = typer.Option(None, help="Only this user's jobs."),
    space: str | None = typer.Option(None, help="Only jobs using this space."),
    limit: int = typer.Option(50, help="How many, newest first."),
    offset: int = typer.Option(0, help="Skip this many."),
    as_json: bool = JsonOption,
) -> None:
    """Your jobs and the jobs in spaces you manage, newest first."""
    page = client(ctx).list_jobs(state=state, owner=owner, space=space, limit=limit, offset=offset)
    if as_json:
        print_json(page)
        return
    rows = [
        (
            j.id,
            j.name,
            j.owner,
            j.state,
            f"{j.counts.succeeded}/{j.task_count}",
            j.counts.failed or "",
            f"{j.output_space}:{j.output_path}" if j.output_space else "-",
            f"{j.created_at:%Y-%m-%d %H:%M}",
        )
        for j in page.jobs
    ]
    table(["id", "name", "owner", "state", "done", "failed", "outputs", "submitted"], rows)
    shown = offset + len(page.jobs)
    if shown < page.total:
        typer.echo(f"{shown} of {page.total} shown; more with --offset {shown}")


def duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return ""
    return f"{(end - start).total_seconds():.1f}s"


@app.command()
def show(
    ctx: typer.Context,
    job_id: int,
    state: list[str] = typer.Option(
        [], metavar="STATE", help="Only tasks in this state, e.g. --state failed."
    ),
    limit: int = typer.Option(20, help="How many tasks to list."),
    as_json: bool = JsonOption,
) -> None:
    """A job's state, counts per state, and its tasks with timings and exit codes."""
    api = client(ctx)
    job = api.job(job_id)
    page = api.tasks(job_id, state=state, limit=limit)
    if as_json:
        print_json({"job": job.model_dump(mode="json"), "tasks": page.model_dump(mode="json")})
        return
    typer.echo(
        f"job {job.id} '{job.name}' ({job.kind}, {job.executor}) by {job.owner}: {job.state}"
    )
    if job.message:
        typer.echo(job.message)
    counts = job.counts.model_dump()
    typer.echo("tasks: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    typer.echo(f"command: {job.spec.command}")
    if job.url:
        typer.echo(f"open it at {job.url}")
    if job.output_space:
        typer.echo(f"outputs: {job.output_space}:{job.output_path}")
    typer.echo(
        f"submitted {job.created_at:%Y-%m-%d %H:%M:%S}"
        + (f", ran {duration(job.started_at, job.finished_at)}" if job.finished_at else "")
    )
    rows = [
        (
            t.index,
            t.state,
            ", ".join(t.inputs) or "-",
            t.attempt,
            "" if t.exit_code is None else t.exit_code,
            duration(t.started_at, t.finished_at),
        )
        for t in page.tasks
    ]
    table(["task", "state", "input", "attempt", "exit", "time"], rows)
    for t in page.tasks:  # below the table, whole: a message is often a path or a traceback
        if t.message and t.state != "succeeded":
            typer.echo(f"task {t.index}: " + "\n    ".join(t.message.splitlines()[-6:]))
    if page.total > len(page.tasks):
        typer.echo(f"{len(page.tasks)} of {page.total} tasks shown; more with --limit")


@app.command()
def logs(
    ctx: typer.Context,
    job_id: int,
    task: int | None = typer.Option(None, "--task", "-t", help="Which task (needed for HTC)."),
    stderr: bool = typer.Option(False, "--stderr", help="Show stderr instead of stdout."),
    follow_: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
    attempt: int | None = typer.Option(None, help="An earlier attempt (default: the latest)."),
) -> None:
    """A task's output (stdout, or --stderr); --follow streams it while the task runs."""
    api = client(ctx)
    if task is None:
        job = api.job(job_id)
        if job.task_count != 1:
            raise BadRequest(
                f"job {job_id} has {job.task_count} tasks; choose one with --task N "
                f"(failed ones: primage job show {job_id} --state failed)"
            )
        task = 0
    stream = "stderr" if stderr else "stdout"
    for chunk in api.logs(job_id, task, stream=stream, follow=follow_, attempt=attempt):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


@app.command()
def cancel(ctx: typer.Context, job_id: int) -> None:
    """Stop a job: waiting tasks never start, running ones are stopped."""
    job = client(ctx).cancel_job(job_id)
    typer.echo(
        f"job {job_id}: {job.state}{' (stopping running tasks)' if job.counts.running else ''}"
    )


@app.command("rm")
def remove(ctx: typer.Context, job_id: int) -> None:
    """Forget a finished job (record and logs); its outputs stay in the space."""
    client(ctx).remove_job(job_id)
    typer.echo(f"removed job {job_id}; its outputs are still in the space")


@app.command()
def output(
    ctx: typer.Context,
    job_id: int,
    dest: Path = typer.Option(Path("."), "--output-dir", "-o", help="Extract under this folder."),
    tar: Path | None = typer.Option(None, "--tar", help="Save the tar archive here instead."),
) -> None:
    """Download a job's output folder (streamed as a tar) into DIR/job-<id>/."""
    api = client(ctx)
    if tar is not None:
        api.download_output(job_id, tar, as_tar=True)
        typer.echo(f"saved {tar}")
        return
    where = api.download_output(job_id, dest)
    typer.echo(f"outputs of job {job_id} in {where}")


@app.command()
def spec(as_json: bool = typer.Option(False, "--json", help="Print the JSON Schema.")) -> None:
    """The fields of a job file: name, type, default and meaning."""
    from primage.cli.fields import print_schema
    from primage.models.jobs import JobSpec

    print_schema(JobSpec.model_json_schema(), as_json)
