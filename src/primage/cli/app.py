"""``primage app``: applications deployed from templates, reached through the platform."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from primage.cli.common import JsonOption, client, console, group, print_json, table
from primage.cli.job import key_values
from primage.cli.templates import read_template
from primage.errors import BadRequest, PrimageError

if TYPE_CHECKING:
    from primage.models.apps import AppDetail

app = group(
    "Deploy applications (own YAML, TOSCA or RADL templates); open them through the platform."
)

EXAMPLE = """\
Examples:

\b
  primage app deploy examples/notebook/template.yaml --space scans
  primage app render rstudio.yaml --input password=s3cret    # what it becomes, deploying nothing
  primage app deploy webapp.tosca.yaml --input image=alice/viewer:2 --wait
  primage app update notebook --replicas 2
"""


def _summary(found: AppDetail) -> None:
    colour = {"running": "green", "failed": "red"}.get(found.state, "yellow")
    console().print(
        f"app {found.name} [{colour}]{found.state}[/{colour}]: {found.ready}/{found.replicas} "
        f"ready  {found.url}"
    )
    if found.message:
        console().print(found.message)


TemplateArgument = typer.Argument(..., help="Template file: own YAML, TOSCA or RADL.")
InputsOption = typer.Option(
    [], "--input", "-i", metavar="NAME=VALUE", help="A template input (repeatable)."
)
SpaceOption = typer.Option(None, help="Shorthand for --input space=NAME.")


def _inputs(inputs: list[str], space: str | None) -> dict[str, str]:
    values = key_values(inputs, "--input")
    if space is not None:
        values["space"] = space
    return values


@app.command(epilog=EXAMPLE)
def render(
    ctx: typer.Context,
    template: Path = TemplateArgument,
    inputs: list[str] = InputsOption,
    space: str | None = SpaceOption,
    name: str | None = typer.Option(None, help="Render it under this name."),
    as_json: bool = JsonOption,
) -> None:
    """What a template becomes, deploying nothing: the app (or job) spec, and notes on what
    the template asks that the platform leaves out, and why."""
    text, files = read_template(template)
    found = client(ctx).render_template(
        text, inputs=_inputs(inputs, space), source=template.name, name=name, files=files
    )
    if as_json:
        print_json(found)
        return
    import yaml

    verb = "primage app deploy" if found.kind == "app" else "primage job submit"
    typer.echo(f"# {found.kind} ({verb} {template})")
    typer.echo(yaml.safe_dump(found.spec, sort_keys=False).rstrip())
    for key, value in found.outputs.items():
        typer.echo(f"# output {key}: {value}")
    for note in found.notes:
        typer.echo(f"# note: {note}")


@app.command(epilog=EXAMPLE)
def deploy(
    ctx: typer.Context,
    template: Path = TemplateArgument,
    inputs: list[str] = InputsOption,
    space: str | None = SpaceOption,
    name: str | None = typer.Option(None, help="Deploy under this name instead."),
    wait: bool = typer.Option(True, help="Wait until it answers (or fails)."),
    as_json: bool = JsonOption,
) -> None:
    """Deploy an app; prints the URL it is reached at, and what the template asks that was
    left out (primage app render shows it beforehand)."""
    text, files = read_template(template)
    values = _inputs(inputs, space)
    sdk = client(ctx)
    made = sdk.deploy_app(text, inputs=values, source=template.name, name=name, files=files)
    for note in made.notes:
        typer.echo(f"note: {note}", err=True)
    if not wait:
        print_json(made) if as_json else typer.echo(f"deploying {made.name}: {made.url}")
        return
    done = sdk.wait_app(made.name)
    if as_json:
        print_json(done)
    else:
        _summary(done)
    if done.state != "running":
        raise typer.Exit(1)


@app.command("ls")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Your apps: state, instances ready, URL."""
    found = client(ctx).list_apps()
    if as_json:
        print_json(found)
        return
    rows = [(a.name, a.state, f"{a.ready}/{a.replicas}", a.url, a.owner) for a in found]
    table(("NAME", "STATE", "READY", "URL", "OWNER"), rows)


@app.command()
def show(ctx: typer.Context, name: str, as_json: bool = JsonOption) -> None:
    """State, URL, instances, latest events and the end of the first instance's output."""
    sdk = client(ctx)
    found = sdk.app(name)
    if as_json:
        print_json(found)
        return
    _summary(found)
    table(
        ("INSTANCE", "GENERATION", "STATE", "PORT", "RESTARTS", "PID:START", "MESSAGE"),
        [(i.index, i.generation, i.state, i.port or "", i.restarts, i.external_id or "",
          i.message.splitlines()[0] if i.message else "") for i in found.instances],
    )  # fmt: skip
    table(("WHEN", "EVENT"), [(f"{e.at:%H:%M:%S}", e.message) for e in found.events[:10]])
    try:
        output = b"".join(sdk.app_logs(name)).decode(errors="replace").splitlines()
    except PrimageError:
        output = []
    if output:
        console().print("[bold]recent output[/bold] (primage app logs for all):")
        console().print("\n".join(output[-10:]), markup=False, highlight=False)


@app.command()
def logs(
    ctx: typer.Context,
    name: str,
    instance: int = typer.Option(0, help="Which instance."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming while it runs."),
) -> None:
    """An instance's output (stdout and stderr)."""
    for chunk in client(ctx).app_logs(name, instance=instance, follow=follow):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


@app.command()
def update(
    ctx: typer.Context,
    name: str,
    replicas: int | None = typer.Option(None, help="Instances behind the proxy."),
    image: str | None = typer.Option(None, help="Another image."),
    command: str | None = typer.Option(None, help="Another command line."),
    env: list[str] = typer.Option(
        [], "--env", "-e", metavar="KEY=VALUE", help="Environment (replaces it; repeatable)."
    ),
    cpus: int | None = typer.Option(None, help="Cores per instance."),
    memory: str | None = typer.Option(None, help="Memory per instance, e.g. 4GiB."),
    wait: bool = typer.Option(True, help="Wait until the new version serves (or fails)."),
) -> None:
    """Reconfigure: the new version starts beside the old, which serves until it is ready."""
    resources = {k: v for k, v in (("cpus", cpus), ("memory", memory)) if v is not None}
    changes = {
        "replicas": replicas,
        "image": image,
        "command": command,
        "env": key_values(env, "--env") if env else None,
        "resources": resources or None,
    }
    if all(v is None for v in changes.values()):
        raise BadRequest("nothing to change: give --replicas, --image, --command, --env, …")
    sdk = client(ctx)
    sdk.update_app(name, **changes)
    if wait:
        done = sdk.wait_app(name)
        _summary(done)
        if done.state != "running" or done.message:
            raise typer.Exit(1)


@app.command()
def stop(ctx: typer.Context, name: str) -> None:
    """Stop its instances; the app stays (primage app start brings it back)."""
    _summary(client(ctx).stop_app(name))


@app.command()
def start(ctx: typer.Context, name: str) -> None:
    """Start a stopped, failed or idle-culled app again."""
    sdk = client(ctx)
    sdk.start_app(name)
    _summary(sdk.wait_app(name))


@app.command()
def rm(ctx: typer.Context, name: str) -> None:
    """Undeploy: stop its instances and forget it. Its spaces are untouched."""
    client(ctx).remove_app(name)
    typer.echo(f"removed {name}")


@app.command()
def spec(as_json: bool = typer.Option(False, "--json", help="Print the JSON Schema.")) -> None:
    """The fields of an app specification: name, type, default and meaning."""
    from primage.cli.fields import print_schema
    from primage.models.apps import AppSpec

    print_schema(AppSpec.model_json_schema(), as_json)
