"""What every command shares: the client, output as tables or JSON, SPACE:PATH and sizes.

Commands import what they use inside their bodies, and this module only Typer: ``primage
--help`` must not pay for the SDK, pydantic models, Rich tables or the server
(``benchmarks/cli_start.py`` measures it; ``tests/test_cli_imports.py`` holds it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

import typer

from primage.errors import BadRequest

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console

    from primage.client import Client

JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
# Plain help (Click's layout): it fits any terminal, reads the same when piped, keeps
# "[default: …]" as written, and needs no Rich at start.
GROUP_SETTINGS: dict[str, Any] = {
    "no_args_is_help": True,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"], "max_content_width": 100},
}


def group(help: str, **overrides: Any) -> typer.Typer:
    """A command group with the house settings."""
    return typer.Typer(help=help, **(GROUP_SETTINGS | overrides))


@cache
def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def client(ctx: typer.Context) -> Client:
    """The SDK client for this invocation, made once from --server/--token."""
    from primage.client import Client

    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "client" not in obj:
        obj["client"] = Client(obj.get("server"), obj.get("token"))
        ctx.call_on_close(obj["client"].close)
    found: Client = obj["client"]
    return found


def split_target(value: str) -> tuple[str, str]:
    """``SPACE:PATH`` → (space, path); ``SPACE`` alone is the space's root."""
    space, _, path = value.partition(":")
    if not space:
        raise BadRequest(f"'{value}' names no space: write SPACE:PATH, e.g. scans:ct/001.dcm")
    return space, path


def parse_size(text: str, what: str = "size") -> int:
    """'500M', '10GiB', '1.5g', '4096B' → bytes (binary units: 1K = 1024). A unit is required,
    so that 50 is never silently 50 bytes; the size must be above zero."""
    match = SIZE_RE.match(text)
    if not match:
        raise BadRequest(f"cannot read {what} '{text}': write e.g. 500M, 10G or 1T")
    number, unit, suffix = float(match.group(1)), match.group(2).lower(), match.group(3)
    if not unit and not suffix:
        raise BadRequest(f"{what} '{text}' has no unit: write e.g. {text}G (or {text}B for bytes)")
    size = int(number * 1024 ** "bkmgtp".index(unit or "b"))
    if size <= 0:
        raise BadRequest(f"a {what} of {text} leaves no room: give e.g. 50G")
    return size


def print_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(data, dict):
        payload: Any = data
    elif isinstance(data, Sequence):
        payload = [item.model_dump(mode="json") for item in data]
    else:
        payload = data.model_dump(mode="json")
    typer.echo(json.dumps(payload, indent=2))


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Rows under a header, fitted to the terminal: a long cell wraps (paths fold), never cut."""
    from rich.table import Column, Table

    out = Table(*(Column(c, overflow="fold") for c in columns), box=None, header_style="bold")
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(out)


@contextmanager
def transfer_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar for bytes moved; yields the callback to feed it."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    out = console(stderr=True)
    with Progress(*columns, console=out, transient=True, disable=not out.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
