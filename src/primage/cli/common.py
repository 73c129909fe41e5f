"""What every command shares: the client, output as tables or JSON, SPACE:PATH and sizes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from primage.client import Client
from primage.errors import BadRequest

console = Console()
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


def client(ctx: typer.Context) -> Client:
    """The SDK client for this invocation, made once from --server/--token."""
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


def parse_size(text: str) -> int:
    """'500M', '10GiB', '1.5g', '4096' → bytes (binary units: 1K = 1024)."""
    match = SIZE_RE.match(text)
    if not match:
        raise BadRequest(f"cannot read size '{text}': write e.g. 500M, 10G or 1T")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "bkmgtp".index(unit or "b"))


def print_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        payload = data
    else:
        payload = [item.model_dump(mode="json") for item in data]
    typer.echo(json.dumps(payload, indent=2))


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    out = Table(*columns, box=None, header_style="bold")
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(out)


@contextmanager
def transfer_progress(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar for bytes moved; yields the callback to feed it."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
