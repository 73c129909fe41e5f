"""Entry point: global options, sub-commands, and one readable line for every error.

Exit codes: 0 success; 1 the platform refused or failed (the ``error:`` line says why, and a job
or build that ended unsuccessfully); 2 the command line itself is wrong (unknown command or
option, missing argument); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer._click.exceptions import ClickException, UsageError  # Typer ≥ 0.26 vendors Click

from primage import __version__
from primage.cli import (
    admin,
    build,
    config,
    executor,
    files,
    image,
    job,
    login,
    mount,
    server,
    space,
    token,
)
from primage.cli import app as apps
from primage.cli.common import GROUP_SETTINGS, console
from primage.errors import PrimageError

app = typer.Typer(
    name="primage",
    help="primage: a research cloud for medical imaging. Data spaces, jobs, sharing, tokens.",
    pretty_exceptions_enable=False,
    **GROUP_SETTINGS,
)
app.add_typer(server.app, name="server")
app.add_typer(config.app, name="config")
app.add_typer(space.app, name="space")
app.add_typer(job.app, name="job")
app.add_typer(executor.app, name="executor")
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
    port: int | None = typer.Option(
        None, envvar="PRIMAGE_PORT", help="Port of the server it starts [default: 8642]."
    ),
) -> None:
    """The quick start: start a local platform, store the sample images, run a job over them."""
    from primage.demo import run

    run(ctx, job, port=port)


def usage_line(exc: Exception) -> str:
    """A usage error as one line: Click's message (with its "did you mean"), then where help is."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    context = getattr(exc, "ctx", None)
    where = f"{context.command_path} --help" if context is not None else "primage --help"
    return f"{message.rstrip('.')} (see '{where}')"


def main() -> None:
    """Run the CLI: platform errors and usage errors are each one ``error:`` line."""

    def fail(message: str, code: int) -> None:
        console(stderr=True).print(
            f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True
        )
        sys.exit(code)

    try:
        code = app(prog_name="primage", standalone_mode=False)
    except UsageError as exc:
        fail(escape(usage_line(exc)), 2)
    except ClickException as exc:
        fail(escape(exc.format_message()), 1)
    except (typer.Abort, KeyboardInterrupt):
        fail("interrupted", 130)
    except PrimageError as exc:
        fail(escape(exc.detail), 1)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        fail(escape(f"{exc.strerror or exc}{where}"), 1)
    sys.exit(code if isinstance(code, int) else 0)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)
