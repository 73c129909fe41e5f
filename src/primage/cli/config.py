"""``primage config``: the effective configuration."""

from __future__ import annotations

import typer

from primage.cli.common import JsonOption, print_json, table
from primage.config import Settings

app = typer.Typer(help="Show the platform's configuration.", no_args_is_help=True)


@app.command()
def show(as_json: bool = JsonOption) -> None:
    """Every setting as the server would use it (PRIMAGE_* and TOML file); secrets masked."""
    values = Settings().masked()
    if as_json:
        print_json(values)
        return
    table(["setting", "value"], sorted(values.items()))
