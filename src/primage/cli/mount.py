"""``primage mount``, ``umount`` and ``mounts``: spaces as folders on this computer."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from primage.cli.common import client, split_target, table


def mount_command(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="SPACE, or SPACE:FOLDER to mount one folder."),
    folder: Path = typer.Argument(..., help="An empty folder to mount it on."),
    read_only: bool = typer.Option(False, "--read-only", help="Refuse every write."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Never cache listings: see new files at once (more requests)."
    ),
) -> None:
    """Mount a space (with rclone over WebDAV) so any program can read and write its files."""
    from primage import mount as mounting

    space, path = split_target(target)
    sdk = client(ctx)
    sdk.stat(space, path)  # refused here, before mounting, if you cannot read it
    made = mounting.mount(
        sdk.server,
        space,
        path,
        folder,
        read_only=read_only,
        no_cache=no_cache,
        token=ctx.obj.get("token") or os.environ.get("PRIMAGE_TOKEN"),
    )
    mode = "read-only" if read_only else "read-write"
    typer.echo(f"mounted {target} at {made.folder} ({mode}); primage umount {made.folder}")


def umount_command(folder: Path = typer.Argument(..., help="Where the space is mounted.")) -> None:
    """Unmount a space mounted with primage mount."""
    from primage import mount as mounting

    mounting.unmount(folder)
    typer.echo(f"unmounted {folder}")


def mounts_command() -> None:
    """The spaces mounted on this computer with primage mount."""
    from primage import mount as mounting

    found = mounting.active()
    if not found:
        typer.echo("no spaces mounted")
        return
    rows = [
        (m.folder, f"{m.space}:{m.path}" if m.path else m.space, m.server,
         "ro" if m.read_only else "rw")
        for m in found
    ]  # fmt: skip
    table(("FOLDER", "SPACE", "SERVER", "MODE"), rows)


def register(app: typer.Typer) -> None:
    app.command("mount")(mount_command)
    app.command("umount")(umount_command)
    app.command("mounts")(mounts_command)
