"""Entry point: global options, sub-commands, and one readable line for every error."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from primage import __version__
from primage.cli import (
    admin,
    build,
    config,
    files,
    image,
    job,
    login,
    mount,
    server,
    space,
    token,
)
from primage.cli import (
    app as apps,
)
from primage.errors import PrimageError

app = typer.Typer(
    name="primage",
    help="primage: a research cloud for medical imaging. Data spaces, jobs, sharing, tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(server.app, name="server")
app.add_typer(config.app, name="config")
app.add_typer(space.app, name="space")
app.add_typer(job.app, name="job")
app.add_typer(token.app, name="token")
app.add_typer(admin.app, name="admin")
app.add_typer(image.app, name="image")
app.add_typer(build.app, name="build")
app.add_typer(apps.app, name="app")
files.register(app)
login.register(app)
mount.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"primage {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    server_url: str | None = typer.Option(
        None, "--server", envvar="PRIMAGE_SERVER", help="URL of the platform (default: local)."
    ),
    api_token: str | None = typer.Option(
        None,
        "--token",
        envvar="PRIMAGE_TOKEN",
        help="API token (default: your 'primage login', else the local admin's).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = {"server": server_url, "token": api_token}


@app.command()
def demo(
    ctx: typer.Context,
    job: Path | None = typer.Option(
        None, help="Job file to run over the images, e.g. examples/segmentation/job.yaml."
    ),
) -> None:
    """The quick start: start a local platform, store the sample images, run a job over them."""
    from primage.demo import run

    run(ctx, job)


def main() -> None:
    """Run the CLI; Typer reports usage errors, and every platform error is one line."""
    err = Console(stderr=True)
    try:
        app(prog_name="primage")
    except PrimageError as exc:
        err.print(f"[red]error:[/red] {exc.detail}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/red] {exc.strerror or exc}{where}", highlight=False)
        sys.exit(1)
