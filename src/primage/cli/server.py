"""``primage server``: run the platform on this machine; stop it; say whether it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from primage.config import Settings
from primage.errors import PrimageError, ServerUnavailable

app = typer.Typer(help="Run the platform on this machine.", no_args_is_help=False)


def settings_for(data_dir: Path | None, **overrides: object) -> Settings:
    """Settings with the command's options on top. ``--data-dir`` goes into the environment on
    purpose: a background server and this process's client must agree on it."""
    if data_dir is not None:
        os.environ["PRIMAGE_DATA_DIR"] = str(data_dir.resolve())
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


def start_background(settings: Settings, *, timeout: float = 60.0) -> str:
    """Start a detached server for this data dir (unless one runs) and return its URL."""
    from primage.server.run import read_runtime

    running = read_runtime(settings)
    if running is not None:
        return str(running["url"])
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = open(settings.data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "PRIMAGE_DATA_DIR": str(settings.data_dir)}
    command = [sys.executable, "-m", "primage", "server", "--port", str(settings.port)]
    command += ["--host", settings.host]
    child = subprocess.Popen(
        command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = (settings.data_dir / "server.log").read_text(errors="replace")[-600:]
            raise PrimageError(f"the server exited at start (code {child.returncode}):\n{tail}")
        running = read_runtime(settings)
        if running is not None and _healthy(str(running["url"])):
            return str(running["url"])
        time.sleep(0.1)
    child.kill()
    raise ServerUnavailable(f"the server did not answer within {timeout:.0f} s; see server.log")


def _healthy(url: str) -> bool:
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
        return
    from primage.server.run import serve as run

    run(settings)


def running_server(data_dir: Path | None) -> tuple[Settings, dict[str, object]]:
    """The settings and runtime record of the server running from this data dir, or an error."""
    from primage.server.run import read_runtime

    settings = settings_for(data_dir)
    running = read_runtime(settings)
    if running is None:
        raise PrimageError(f"no server is running from {settings.data_dir}")
    return settings, running


@app.command()
def stop(
    data_dir: Path | None = typer.Option(None, help="Data dir of the server to stop."),
) -> None:
    """Stop the server running from this machine's data dir."""
    _, running = running_server(data_dir)
    pid = int(str(running["pid"]))
    os.kill(pid, signal.SIGTERM)
    for _ in range(150):
        try:
            os.kill(pid, 0)
        except OSError:
            typer.echo(f"stopped the server at {running['url']}")
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


@app.command("registry-config")
def registry_config(
    storage: Path = typer.Option(..., help="Folder the registry stores images in."),
    listen: str = typer.Option("127.0.0.1:5001", help="Address the registry listens on."),
    data_dir: Path | None = typer.Option(None, help="The platform's data dir."),
) -> None:
    """Print a configuration for Docker Distribution (Debian: docker-registry) that makes this
    platform its token server: run it with ``docker-registry serve FILE``."""
    from primage.auth.registry import RegistryKey

    settings = settings_for(data_dir)
    key = RegistryKey(settings.data_dir / "registry")  # created now if it is not there yet
    typer.echo(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n"
        f"http: {{addr: {listen}}}\n"
        "auth:\n  token:\n"
        f"    realm: {settings.base_url}/registry/token\n"
        f"    service: {settings.registry_service}\n"
        "    issuer: primage\n"
        f"    rootcertbundle: {key.cert_file}\n"
    )
