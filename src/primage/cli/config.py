"""``primage config``: the effective configuration."""

from __future__ import annotations

from primage.cli.common import JsonOption, group, print_json, table

app = group("Show the platform's configuration.")


@app.command()
def show(as_json: bool = JsonOption) -> None:
    """Every setting as the server would use it (PRIMAGE_* and TOML file); secrets masked."""
    from primage.config import Settings

    values = Settings().masked()
    if as_json:
        print_json(values)
        return
    table(["setting", "value"], sorted(values.items()))
