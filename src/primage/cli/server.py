"""``primage server``: run the platform on this machine; stop it; say whether it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from primage.cli.common import group
from primage.errors import PrimageError, ServerUnavailable

if TYPE_CHECKING:
    from primage.client import Client
    from primage.config import Settings

app = group("Run the platform on this machine.", no_args_is_help=False)


def settings_for(data_dir: Path | None, **overrides: object) -> Settings:
    """Settings with the command's options on top. ``--data-dir`` goes into the environment on
    purpose: a background server and this process's client must agree on it."""
    from primage.config import Settings

    if data_dir is not None:
        os.environ["PRIMAGE_DATA_DIR"] = str(data_dir.resolve())
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


def start_background(settings: Settings, *, timeout: float = 60.0) -> str:
    """Start a detached server for this data dir (unless one runs) and return its URL."""
    running = settings.local.running()
    if running is not None:
        return str(running["url"])
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = open(log_file(settings), "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "PRIMAGE_DATA_DIR": str(settings.data_dir)}
    command = [sys.executable, "-m", "primage", "server", "--port", str(settings.port)]
    command += ["--host", settings.host]
    child = subprocess.Popen(
        command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise PrimageError(exit_reason(log_file(settings), child.returncode))
        running = settings.local.running()
        if running is not None and _healthy(str(running["url"])):
            return str(running["url"])
        time.sleep(0.1)
    child.kill()
    raise ServerUnavailable(
        f"the server did not answer within {timeout:.0f} s; see {log_file(settings)}"
    )


def log_file(settings: Settings) -> Path:
    """Where a server started in the background writes its log (one in the foreground writes to
    the terminal)."""
    return settings.data_dir / "server.log"


def exit_reason(log: Path, code: int) -> str:
    """Why a background server exited at start: its last ``error:`` line, else its log's end."""
    lines = log.read_text(errors="replace").splitlines()[-40:]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1]
    tail = "\n".join(lines[-8:])
    return f"the server exited at start (code {code}); the end of {log}:\n{tail}"


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to listen on [default: 127.0.0.1]."),
    port: int | None = typer.Option(None, help="Port (0 picks a free one) [default: 8642]."),
    data_dir: Path | None = typer.Option(None, help="Folder for database, spaces, credentials."),
    background: bool = typer.Option(False, "--background", help="Detach and return its URL."),
) -> None:
    """Start the platform's server (REST API, /docs, /metrics) in the foreground."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_for(data_dir, host=host, port=port)
    if background:
        typer.echo(start_background(settings))
        if data_dir is not None:
            typer.echo(
                f"other commands find this server with PRIMAGE_DATA_DIR={settings.data_dir}",
                err=True,
            )
        return
    from primage.server.run import serve as run

    run(settings)


def running_server(data_dir: Path | None) -> tuple[Settings, dict[str, object]]:
    """The settings and runtime record of the server running from this data dir, or an error."""
    settings = settings_for(data_dir)
    running = settings.local.running()
    if running is None:
        raise PrimageError(f"no server is running from {settings.data_dir}")
    return settings, running


@app.command()
def stop(
    data_dir: Path | None = typer.Option(None, help="Data dir of the server to stop."),
    everything: bool = typer.Option(
        False, "--all", help="Also stop every app and cancel every unfinished job first."
    ),
) -> None:
    """Stop the server running from this machine's data dir.

    Apps and running tasks outlive the server on purpose (a restarted server adopts them); this
    says which keep running. With --all nothing does: apps are stopped (primage app start brings
    one back) and unfinished jobs cancelled.
    """
    settings, running = running_server(data_dir)
    from primage.client import Client

    with Client(str(running["url"]), admin_token(settings)) as sdk:
        try:
            left = stop_everything(sdk) if everything else what_runs(sdk)
        except PrimageError as exc:
            if everything:
                raise  # nothing was stopped that the error does not name
            left = [f"unknown (the server did not say: {exc.detail})"]
    pid = int(str(running["pid"]))
    os.kill(pid, signal.SIGTERM)
    from primage.host.procs import start_time

    for _ in range(150):
        if start_time(pid) is None:  # gone (or exited, not yet reaped by whoever started it)
            typer.echo(f"stopped the server at {running['url']}")
            if left:
                typer.echo(
                    f"still running: {'; '.join(left)}. The server adopts them when it starts "
                    "again; 'primage server stop --all' stops them as well",
                    err=True,
                )
            return
        time.sleep(0.1)
    raise PrimageError(f"server (pid {pid}) did not stop within 15 s")


@app.command()
def status(
    data_dir: Path | None = typer.Option(None, help="Data dir of the server to check."),
) -> None:
    """Whether a server runs from this machine's data dir, and where."""
    settings, running = running_server(data_dir)
    typer.echo(f"running at {running['url']} (pid {running['pid']}, data in {settings.data_dir})")
    if log_file(settings).exists():
        typer.echo(
            f"log: {log_file(settings)} (apps: primage app logs NAME; tasks: primage job logs)"
        )


def admin_token(settings: Settings) -> str | None:
    from primage.credentials import local_admin_token

    found = local_admin_token(settings.local.default_url, settings.local)
    return found.value if found else None


def what_runs(sdk: Client) -> list[str]:
    """The apps with instances up and the jobs with tasks unfinished, as phrases."""
    apps = [a.name for a in sdk.list_apps() if a.state not in ("stopped", "failed")]
    jobs = sdk.list_jobs(state=["pending", "running"], limit=1000).jobs
    found = []
    if apps:
        found.append(f"app{'s' * (len(apps) > 1)} {', '.join(apps)}")
    if jobs:
        found.append(f"job{'s' * (len(jobs) > 1)} {', '.join(str(j.id) for j in jobs)}")
    return found


def stop_everything(sdk: Client) -> list[str]:
    for found in sdk.list_apps():
        if found.state not in ("stopped", "failed"):
            sdk.stop_app(found.name)
            typer.echo(f"stopped app {found.name}", err=True)
    jobs = sdk.list_jobs(state=["pending", "running"], limit=1000).jobs
    for job in jobs:
        sdk.cancel_job(job.id)
    for job in jobs:  # their tasks are stopped before the server is
        sdk.wait_job(job.id, poll=0.2, timeout=60)
        typer.echo(f"cancelled job {job.id}", err=True)
    return what_runs(sdk)


@app.command("registry-config")
def registry_config(
    storage: Path = typer.Option(..., help="Folder the registry stores images in."),
    listen: str = typer.Option("127.0.0.1:5001", help="Address the registry listens on."),
    data_dir: Path | None = typer.Option(None, help="The platform's data dir."),
) -> None:
    """Print a configuration for Docker Distribution (Debian: docker-registry) that makes this
    platform its token server: run it with 'docker-registry serve FILE'."""
    from primage.auth.registry import RegistryKey

    settings = settings_for(data_dir)
    key = RegistryKey(settings.data_dir / "registry")  # created now if it is not there yet
    running = settings.local.running()
    realm = settings.base_url if settings.public_url or not running else str(running["url"])
    typer.echo(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n"
        f"http: {{addr: {listen}}}\n"
        "auth:\n  token:\n"
        f"    realm: {realm}/registry/token\n"
        f"    service: {settings.registry_service}\n"
        "    issuer: primage\n"
        f"    rootcertbundle: {key.cert_file}\n"
    )
