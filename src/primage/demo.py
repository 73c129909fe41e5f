"""The quick start: a platform on this machine, a space, real images in it, and back again."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import typer

from primage.cli.common import console, table, transfer_progress
from primage.cli.server import start_background
from primage.client import Client
from primage.config import Settings
from primage.errors import NotFound
from primage.samples import sample_images
from primage.storage.transfer import human

SPACE = "samples"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ensure_space(sdk: Client) -> None:
    try:
        sdk.space(SPACE)
    except NotFound:
        sdk.create_space(SPACE, description="Sample CT, MR and fMRI images (pydicom, nibabel)")


def run(ctx: typer.Context) -> None:
    settings = Settings()
    console.rule("primage quick start")
    url = start_background(settings)
    console.print(f"platform running at [bold]{url}[/bold] (data in {settings.data_dir})")
    images = sample_images()
    with Client(url) as sdk:
        ensure_space(sdk)
        total = sum(p.stat().st_size for p in images)
        with transfer_progress(f"uploading {len(images)} images", total) as advance:
            stored = [sdk.upload(SPACE, f"images/{p.name}", p, progress=advance) for p in images]
        table(
            ["file in space", "size", "sha256"],
            [(f"{SPACE}:{i.path}", human(i.size), (i.sha256 or "")[:16] + "…") for i in stored],
        )
        with tempfile.TemporaryDirectory() as tmp:
            fetched = sdk.download_dir(SPACE, "images", tmp)
            same = {p.name: sha256_of(p) for p in fetched} == {p.name: sha256_of(p) for p in images}
        detail = sdk.space(SPACE)
    verdict = "[green]identical[/green]" if same else "[red]DIFFERENT[/red]"
    console.print(
        f"fetched {len(fetched)} files back: {verdict} to the originals (sha256). Space "
        f"'{SPACE}' holds {detail.file_count} files, {human(detail.size_bytes)}."
    )
    console.print(
        f"\nServer: {url}   API docs: {url}/docs   metrics: {url}/metrics\n"
        f"Try:  primage ls {SPACE}:images   primage get {SPACE}:images/CT_small.dcm .\n"
        "Stop it with: primage server stop"
    )
    if not same:
        raise typer.Exit(1)
