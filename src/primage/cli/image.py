"""``primage image``: the images in the platform's private registry."""

from __future__ import annotations

import typer

from primage.cli.common import JsonOption, client, print_json, table
from primage.errors import BadRequest

app = typer.Typer(help="Images in the platform registry.", no_args_is_help=True)


@app.command("ls")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Repositories you may pull, with their tags."""
    found = client(ctx).list_images()
    if as_json:
        print_json(found)
        return
    table(("REPOSITORY", "TAGS"), [(i.repository, ", ".join(i.tags)) for i in found])


@app.command()
def tags(ctx: typer.Context, repository: str) -> None:
    """The tags of one repository."""
    for image in client(ctx).list_images():
        if image.repository == repository:
            for tag in image.tags:
                typer.echo(tag)
            return
    raise BadRequest(f"no repository '{repository}' that you may pull")


@app.command()
def rm(ctx: typer.Context, image: str = typer.Argument(..., help="REPOSITORY:TAG")) -> None:
    """Remove a tag from the registry (your namespace, or your groups')."""
    repository, sep, tag = image.rpartition(":")
    if not sep or not repository or "/" in tag:
        raise BadRequest(f"'{image}' names no tag: write REPOSITORY:TAG, e.g. alice/seg:1.0")
    client(ctx).remove_image(repository, tag)
    typer.echo(f"removed {image}")
