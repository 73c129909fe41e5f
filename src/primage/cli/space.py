"""``primage space``: persistent data spaces and who may use them."""

from __future__ import annotations

import typer

from primage.cli.common import JsonOption, client, group, parse_size, print_json, table
from primage.errors import BadRequest
from primage.storage.transfer import human

app = group("Create, inspect, share and delete data spaces.")


@app.command()
def create(
    ctx: typer.Context,
    name: str,
    quota: str | None = typer.Option(
        None, help="Largest total size, with a unit: 50G, 500M, 2T (binary: 1G = 1024M)."
    ),
    description: str = typer.Option("", help="What the space holds."),
    as_json: bool = JsonOption,
) -> None:
    """Create a space you own."""
    made = client(ctx).create_space(
        name, description=description, quota_bytes=parse_size(quota, "quota") if quota else None
    )
    if as_json:
        print_json(made)
        return
    typer.echo(f"created space '{made.name}'")


@app.command("ls")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """The spaces you own or were given access to."""
    found = client(ctx).list_spaces()
    if as_json:
        print_json(found)
        return
    rows = [
        (s.name, s.owner, s.role, human(s.quota_bytes) if s.quota_bytes else "-", s.description)
        for s in found
    ]
    table(["name", "owner", "your role", "quota", "description"], rows)


@app.command()
def info(ctx: typer.Context, name: str, as_json: bool = JsonOption) -> None:
    """Size, file count, quota and members of a space."""
    detail = client(ctx).space(name)
    if as_json:
        print_json(detail)
        return
    quota = human(detail.quota_bytes) if detail.quota_bytes else "none"
    members = ", ".join(f"{m.kind} {m.name} ({m.role})" for m in detail.members) or "-"
    table(
        ["", ""],
        [
            ("space", detail.name),
            ("owner", detail.owner),
            ("your role", detail.role),
            ("size", human(detail.size_bytes)),
            ("files", detail.file_count),
            ("quota", quota),
            ("members", members),
            ("created", f"{detail.created_at:%Y-%m-%d %H:%M} UTC"),
            ("description", detail.description),
        ],
    )


@app.command()
def update(
    ctx: typer.Context,
    name: str,
    quota: str | None = typer.Option(None, help="New quota (e.g. 100G), or 'none'."),
    description: str | None = typer.Option(None, help="New description."),
) -> None:
    """Change a space's quota or description (managers)."""
    quota_bytes = None if quota is None else 0 if quota == "none" else parse_size(quota, "quota")
    client(ctx).update_space(name, description=description, quota_bytes=quota_bytes)
    typer.echo(f"updated space '{name}'")


@app.command("rm")
def remove(
    ctx: typer.Context,
    name: str,
    force: bool = typer.Option(False, "--force", help="Delete it even if it holds files."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a space. One that holds files needs --force, and you confirm by its name."""
    if force and not yes:
        typed = typer.prompt(f"This deletes space '{name}' and all its files. Type its name")
        if typed != name:
            raise BadRequest("the name did not match; nothing was deleted")
    client(ctx).delete_space(name, force=force)
    typer.echo(f"deleted space '{name}'")


@app.command()
def share(
    ctx: typer.Context,
    name: str,
    who: str = typer.Argument(..., help="User (or group with --group) to share with."),
    role: str = typer.Option("viewer", help="viewer (read), editor (read/write) or manager."),
    group: bool = typer.Option(False, "--group", help="WHO is a group."),
) -> None:
    """Give a user or a group access to a space."""
    kind = "group" if group else "user"
    client(ctx).share(name, who, role, kind=kind)
    typer.echo(f"{kind} '{who}' is now {role} of space '{name}'")


@app.command()
def unshare(
    ctx: typer.Context,
    name: str,
    who: str,
    group: bool = typer.Option(False, "--group", help="WHO is a group."),
) -> None:
    """Take a user's or a group's access away."""
    kind = "group" if group else "user"
    client(ctx).unshare(name, who, kind=kind)
    typer.echo(f"{kind} '{who}' no longer has access to space '{name}'")
