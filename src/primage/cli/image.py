"""``primage image``: the images in the platform's private registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from primage.cli.common import JsonOption, client, group, print_json, table
from primage.errors import BadRequest

if TYPE_CHECKING:
    from primage.host.containers import Runtime

app = group("Images in the platform registry.")


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


def _runtime() -> Runtime:
    from primage.config import Settings
    from primage.host.containers import Runtime

    runtime = Runtime.from_settings(Settings())
    if runtime is None:
        raise BadRequest("no container runtime here: apt-get install podman (setting containers)")
    return runtime


def _push(ctx: typer.Context, runtime: Runtime, source: str, target: str, insecure: bool) -> None:
    from primage import images

    sdk = client(ctx)
    user = sdk.whoami().name
    images.push(runtime, source, target, user=user, token=sdk.current_token(), tls=not insecure)
    typer.echo(f"pushed {target}")


@app.command()
def push(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="A local image, e.g. localhost/seg:1."),
    target: str = typer.Argument(..., help="REGISTRY/namespace/repository:tag."),
    insecure: bool = typer.Option(False, "--insecure", help="The registry speaks plain HTTP."),
) -> None:
    """Push a local image to the platform registry with your platform credentials."""
    _push(ctx, _runtime(), source, target, insecure)


@app.command()
def bootstrap(
    ctx: typer.Context,
    name: str = typer.Option("localhost/python:3.11", help="Local name of the image."),
    include: str = typer.Option("python3,python3-venv", help="Debian packages, comma-separated."),
    suite: str = typer.Option("bookworm", help="Debian release."),
    mirror: str | None = typer.Option(
        None, help="Debian archive URL [default: the one this machine's apt uses for SUITE]."
    ),
    push: str | None = typer.Option(
        None, help="Also push it here, e.g. registry.example.org/library/python:3.11."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="The registry speaks plain HTTP."),
    ca_bundle: Path | None = typer.Option(
        None,
        help="CA certificates (PEM) the image trusts instead of Debian's, e.g. this machine's "
        "/etc/ssl/certs/ca-certificates.crt behind a TLS-inspecting proxy.",
    ),
) -> None:
    """Build a Debian-based base image from Debian's packages (no public registry needed)."""
    from primage import images

    runtime = _runtime()
    mirror = mirror or images.apt_mirror(suite)
    if mirror is None:
        raise BadRequest(
            f"this machine's apt has no source for Debian {suite}: give --mirror URL (your "
            "site's Debian mirror)"
        )
    packages = [p.strip() for p in include.split(",") if p.strip()]
    typer.echo(f"building {name} from Debian {suite} with {', '.join(packages)}…", err=True)
    images.bootstrap(
        runtime, name, packages=packages, suite=suite, mirror=mirror, ca_bundle=ca_bundle
    )
    typer.echo(f"imported {name}")
    if push:
        _push(ctx, runtime, name, push, insecure)
