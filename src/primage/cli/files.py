"""File commands on ``SPACE:PATH``: put, get, ls, stat, rm, mv, mkdir."""

from __future__ import annotations

from pathlib import Path

import typer

from primage.cli.common import (
    JsonOption,
    client,
    print_json,
    split_target,
    table,
    transfer_progress,
)
from primage.errors import BadRequest
from primage.storage.transfer import human

TARGET = "SPACE:PATH"


def put(
    ctx: typer.Context,
    sources: list[Path] = typer.Argument(
        ..., metavar="LOCAL", help="Local files or folders.", exists=True
    ),
    target: str = typer.Argument(..., metavar=TARGET, help="Where to put them."),
    workers: int = typer.Option(8, help="Files sent at once for folders."),
    no_overwrite: bool = typer.Option(
        False, "--no-overwrite", help="Refuse to replace files that exist in the space."
    ),
) -> None:
    """Upload files or folders (recursively) into a space."""
    space, path = split_target(target)
    sdk = client(ctx)
    into_folder = len(sources) > 1 or path.endswith("/") or path == "" or sources[0].is_dir()
    total = sum(_size(s) for s in sources)
    with transfer_progress(f"put → {target}", total) as advance:
        for source in sources:
            remote = f"{path.rstrip('/')}/{source.name}".lstrip("/") if into_folder else path
            if source.is_dir():
                sent = sdk.upload_dir(
                    space,
                    remote,
                    source,
                    workers=workers,
                    overwrite=not no_overwrite,
                    progress=advance,
                )
                typer.echo(f"uploaded {len(sent)} files to {space}:{remote}/", err=True)
            else:
                info = sdk.upload(
                    space, remote, source, overwrite=not no_overwrite, progress=advance
                )
                typer.echo(f"{space}:{info.path}  {human(info.size)}  sha256 {info.sha256}")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def get(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar=TARGET, help="File or folder to fetch."),
    dest: Path = typer.Argument(Path("."), help="Local folder (or file name, for a file)."),
    workers: int = typer.Option(8, help="Files fetched at once for folders."),
) -> None:
    """Download a file, or a folder recursively, from a space.

    As rsync does: a folder lands inside DEST (study:raw/p01 ./back makes ./back/p01, every
    time), and with a trailing slash its content does (study:raw/p01/ ./back fills ./back).
    A file goes into DEST when DEST is a folder, else it is saved as DEST.
    """
    space, path = split_target(source)
    sdk = client(ctx)
    info = sdk.stat(space, path)
    if info.type == "directory":
        files = sdk.listdir(space, path, recursive=True)
        target = dest if path.endswith("/") else dest / (info.name or space)
        with transfer_progress(f"get {source}", sum(f.size for f in files)) as advance:
            got = sdk.download_dir(space, path, target, workers=workers, progress=advance)
        typer.echo(f"downloaded {len(got)} files to {target}")
        return
    with transfer_progress(f"get {source}", info.size) as advance:
        saved = sdk.download(space, path, dest, progress=advance)
    typer.echo(f"{saved}  {human(info.size)}")


def ls(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar=TARGET, help="Space, or folder in it."),
    recursive: bool = typer.Option(False, "--recursive", "-R", help="Every file below."),
    as_json: bool = JsonOption,
) -> None:
    """List a folder of a space."""
    space, path = split_target(target)
    entries = client(ctx).listdir(space, path, recursive=recursive)
    if as_json:
        print_json(entries)
        return
    rows = [
        (
            e.path + ("/" if e.type == "directory" else ""),
            human(e.size) if e.type == "file" else "",
            f"{e.modified:%Y-%m-%d %H:%M}",
        )
        for e in entries
    ]
    table(["path", "size", "modified (UTC)"], rows)


def stat(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar=TARGET),
    as_json: bool = JsonOption,
) -> None:
    """Type, size, time and recorded SHA-256 of a file or folder."""
    space, path = split_target(target)
    info = client(ctx).stat(space, path)
    if as_json:
        print_json(info)
        return
    table(["", ""], [(k, v) for k, v in info.model_dump().items()])


def rm(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar=TARGET),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Delete a folder's content."),
) -> None:
    """Delete a file, or a folder with -r."""
    space, path = split_target(target)
    client(ctx).remove(space, path, recursive=recursive)
    typer.echo(f"deleted {target}")


def mv(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="SPACE:SRC"),
    destination: str = typer.Argument(..., metavar="SPACE:DST"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Move or rename a file or folder inside one space."""
    space, src = split_target(source)
    other, dst = split_target(destination) if ":" in destination else (space, destination)
    if other != space:
        raise BadRequest("mv works inside one space: get then put to copy between spaces")
    moved = client(ctx).move(space, src, dst, overwrite=overwrite)
    typer.echo(f"moved {source} → {space}:{moved.path}")


def mkdir(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar=TARGET),
) -> None:
    """Create a folder (and its parents) in a space."""
    space, path = split_target(target)
    made = client(ctx).mkdir(space, path)
    typer.echo(f"created {space}:{made.path}/")


def register(app: typer.Typer) -> None:
    for command in (put, get, ls, stat, rm, mv, mkdir):
        app.command(command.__name__)(command)
