"""``primage executor``: where jobs can run (this machine, a cluster), and what each can do."""

from __future__ import annotations

import typer

from primage.cli.common import JsonOption, client, group, print_json, table

app = group("Where jobs run: the platform's executors, their capacity and their options.")


@app.command("ls")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Every executor: kind, capacity, capabilities, health; a job picks one with executor:."""
    found = client(ctx).list_executors()
    if as_json:
        print_json(found)
        return
    rows = [
        (
            e.name + (" (default)" if e.default else ""),
            e.kind,
            e.capacity,
            ", ".join(e.capabilities),
            "ok" if e.healthy else f"unhealthy: {e.problem}",
            "yes" if e.may_use else "no",
            e.description,
        )
        for e in found
    ]
    table(("NAME", "KIND", "CAPACITY", "CAN", "HEALTH", "YOURS", "DESCRIPTION"), rows)


@app.command()
def show(ctx: typer.Context, name: str, as_json: bool = JsonOption) -> None:
    """One executor, and the executor_options a job file may give it."""
    from primage.cli.fields import print_fields

    found = client(ctx).executor(name)
    if as_json:
        print_json(found)
        return
    state = "ok" if found.healthy else f"unhealthy: {found.problem}"
    typer.echo(f"{found.name} ({found.kind}): {found.description}; capacity {found.capacity}")
    typer.echo(f"can: {', '.join(found.capabilities) or '-'}; health: {state}")
    if found.job_options.get("properties"):
        typer.echo("\nexecutor_options of a job file:")
        print_fields(found.job_options)
    else:
        typer.echo("jobs take no executor_options here")
