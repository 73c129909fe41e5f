"""``primage token``: API tokens for scripts, other machines and collaborators."""

from __future__ import annotations

import typer

from primage.cli.common import JsonOption, client, group, print_json, table

app = group("Create, list and revoke API tokens.")


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Option("cli", help="A name to recognise it by."),
    days: float | None = typer.Option(None, help="Lifetime in days [default: server's]."),
    space: str | None = typer.Option(None, help="Restrict it to this space."),
    path: str | None = typer.Option(None, help="Restrict it to this folder of the space."),
    read_only: bool = typer.Option(False, "--read-only", help="Allow reading only."),
    as_json: bool = JsonOption,
) -> None:
    """Create a token; it is printed once and never shown again."""
    made = client(ctx).create_token(
        name, expires_in_days=days, space=space, path=path, read_only=read_only
    )
    if as_json:
        print_json(made)
        return
    typer.echo(made.token)
    typer.echo(
        f"token '{made.name}' ({made.id}) expires {made.expires_at:%Y-%m-%d %H:%M} UTC; "
        "store it now, it is not shown again",
        err=True,
    )


@app.command()
def current(ctx: typer.Context) -> None:
    """Print the token this CLI sends now (a login is refreshed first): for tools such as rclone
    (bearer_token_command) or curl. Treat the output as a password."""
    typer.echo(client(ctx).current_token())


@app.command("ls")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Your tokens (a restricted token sees itself and the tokens it made)."""
    found = client(ctx).list_tokens()
    if as_json:
        print_json(found)
        return
    rows = [
        (
            t.id,
            t.name,
            f"{t.expires_at:%Y-%m-%d}",
            "revoked" if t.revoked else "active",
            t.space or "*",
            t.path or "",
            "yes" if t.read_only else "",
        )
        for t in found
    ]
    table(["id", "name", "expires", "state", "space", "path", "read-only"], rows)


@app.command()
def revoke(ctx: typer.Context, token_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Revoke a token and every token created with it."""
    gone = client(ctx).revoke_token(token_id)
    typer.echo(f"revoked token '{gone.name}' ({gone.id}) and the tokens made from it")
