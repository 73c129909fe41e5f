"""``primage admin``: users, groups and the audit log (platform admins only)."""

from __future__ import annotations

import sys

import typer

from primage.cli.common import JsonOption, client, group, print_json, table

app = group("Manage users and groups; read the audit log (admins).")
users = group("Local users.")
groups = group("Groups, for sharing spaces with many people at once.")
app.add_typer(users, name="user")
app.add_typer(groups, name="group")


@users.command("create")
def user_create(
    ctx: typer.Context,
    name: str,
    admin: bool = typer.Option(False, "--admin", help="Make the user a platform admin."),
    as_json: bool = JsonOption,
) -> None:
    """Create a user; prints their first token (send it to them securely)."""
    made = client(ctx).create_user(name, is_admin=admin)
    if as_json:
        print_json(made)
        return
    typer.echo(made.token)
    where = "the line above" if sys.stdout.isatty() else "printed on standard output"
    typer.echo(f"created user '{made.name}'; their token is {where}: send it securely", err=True)


@users.command("ls")
def user_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Every user."""
    found = client(ctx).list_users()
    if as_json:
        print_json(found)
        return
    rows = [(u.name, "yes" if u.is_admin else "", ", ".join(u.groups)) for u in found]
    table(["user", "admin", "groups"], rows)


@groups.command("create")
def group_create(ctx: typer.Context, name: str) -> None:
    """Create a group."""
    client(ctx).create_group(name)
    typer.echo(f"created group '{name}'")


@groups.command("ls")
def group_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Groups and their members."""
    found = client(ctx).list_groups()
    if as_json:
        print_json(found)
        return
    table(["group", "members"], [(g.name, ", ".join(g.members)) for g in found])


@groups.command("add")
def group_add(ctx: typer.Context, group: str, user: str) -> None:
    """Add a user to a group."""
    client(ctx).add_to_group(group, user)
    typer.echo(f"added '{user}' to group '{group}'")


@groups.command("remove")
def group_remove(ctx: typer.Context, group: str, user: str) -> None:
    """Remove a user from a group."""
    client(ctx).remove_from_group(group, user)
    typer.echo(f"removed '{user}' from group '{group}'")


@app.command()
def audit(
    ctx: typer.Context,
    actor: str | None = typer.Option(None, help="Only what this user did."),
    action: str | None = typer.Option(None, help="e.g. token.create, or 'space.' for all."),
    target: str | None = typer.Option(None, help="e.g. space:ct, job:3, token:<id>."),
    since: str | None = typer.Option(None, help="ISO time, e.g. 2026-11-01 or 2026-11-01T08:00."),
    limit: int = typer.Option(50, help="How many entries, newest first."),
    as_json: bool = JsonOption,
) -> None:
    """Who did what to which resource, and when: tokens, sharing, deletions, jobs, accounts."""
    page = client(ctx).audit(actor=actor, action=action, target=target, since=since, limit=limit)
    if as_json:
        print_json(page)
        return
    rows = [
        (
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.actor,
            e.action,
            e.target,
            " ".join(f"{k}={v}" for k, v in e.detail.items() if v not in (None, False)),
        )
        for e in page.entries
    ]
    table(["when (UTC)", "who", "action", "target", "detail"], rows)
    if len(page.entries) < page.total:
        typer.echo(f"{len(page.entries)} of {page.total} shown; more with --limit")
