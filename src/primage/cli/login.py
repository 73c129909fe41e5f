"""``primage login``, ``primage logout`` and ``primage whoami``: who the CLI acts as."""

from __future__ import annotations

import os
from typing import Any

import typer

from primage.cli.common import client, print_json
from primage.errors import BadRequest, ServerUnavailable


def _providers(server: str) -> list[dict[str, Any]]:
    import httpx

    try:
        response = httpx.get(f"{server}/auth/providers", timeout=30)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ServerUnavailable(f"cannot ask {server} for its identity providers: {exc}") from None
    found: list[dict[str, Any]] = response.json()
    return found


def _choose(server: str, name: str | None) -> dict[str, Any]:
    providers = _providers(server)
    if not providers:
        raise BadRequest(
            f"{server} trusts no identity provider: use a platform token instead "
            "(--token, PRIMAGE_TOKEN), or ask the operator to configure oidc_providers"
        )
    if name is None and len(providers) == 1:
        return providers[0]
    names = [p["name"] for p in providers]
    if name not in names:
        raise BadRequest(f"choose a provider with --provider: {', '.join(names)}")
    return next(p for p in providers if p["name"] == name)


def _tell(url: str, code: str, url_with_code: str | None) -> None:
    typer.echo(f"To log in, open {url} in a browser and enter the code {code}", err=True)
    if url_with_code:
        typer.echo(f"(or open {url_with_code})", err=True)
    typer.echo("Waiting for you to finish…", err=True)


def login_command(
    ctx: typer.Context,
    provider: str | None = typer.Option(
        None, "--provider", help="Which identity provider, if the server trusts several."
    ),
    token_command: str | None = typer.Option(
        None,
        "--token-command",
        help="A command printing an access token, run whenever one is needed "
        "(e.g. 'oidc-token egi' for oidc-agent).",
    ),
) -> None:
    """Log in through the server's identity provider, such as EGI Check-in.

    Prints a URL and a code to enter in any browser (device flow), then keeps a refresh token in
    the credentials file (mode 0600) so later commands need no token.
    """
    from primage import credentials, login

    server = credentials.server_url(ctx.obj.get("server"))
    chosen = _choose(server, provider)
    if token_command:
        kept = login.Login(
            server=server,
            provider=chosen["name"],
            issuer=chosen["issuer"],
            client_id=chosen["client_id"],
            token_command=token_command,
        )
        login.refresh(kept)  # run it once now: a command that fails is refused here
    else:
        kept = login.device_login(server, chosen, _tell)
    login.save(kept)
    me = client(ctx).whoami() if _uses_login(ctx) else None
    who = f" as {me.name}" if me else ""
    typer.echo(f"logged in to {server}{who} through '{chosen['name']}'")
    if me is None:
        typer.echo("note: --token or PRIMAGE_TOKEN is set and is used instead of this login")


def _uses_login(ctx: typer.Context) -> bool:
    return not (ctx.obj.get("token") or os.environ.get("PRIMAGE_TOKEN"))


def logout_command(ctx: typer.Context) -> None:
    """Forget the login kept for this server and revoke its refresh token at the provider."""
    from primage import credentials, login

    server = credentials.server_url(ctx.obj.get("server"))
    kept = login.forget(server)
    if kept is None:
        typer.echo(f"not logged in to {server}")
        return
    login.revoke(kept)
    typer.echo(f"logged out of {server}")


def whoami_command(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Who the CLI acts as: user, groups, how it authenticated, and until when."""
    me = client(ctx).whoami()
    if as_json:
        print_json(me)
        return
    typer.echo(
        f"{me.name}{' (admin)' if me.is_admin else ''}  groups: {', '.join(me.groups) or '-'}"
    )
    typer.echo(f"authenticated by: {me.via}")
    limits = {k: v for k, v in me.restrictions.items() if v}
    if limits:
        typer.echo("restricted: " + ", ".join(f"{k}={v}" for k, v in limits.items()))
    if me.token_expires_at:
        renews = " (renewed automatically)" if me.via.startswith("oidc") else ""
        typer.echo(f"credential expires {me.token_expires_at:%Y-%m-%d %H:%M} UTC{renews}")


def register(app: typer.Typer) -> None:
    app.command("login")(login_command)
    app.command("logout")(logout_command)
    app.command("whoami")(whoami_command)
