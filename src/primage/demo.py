"""The quick start: a platform on this machine, real images in a space, and the canonical HTC job
(tumour segmentation, one task per image) run over them, its results shown as a table."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import typer

from primage.cli.common import console, table, transfer_progress
from primage.cli.job import follow, read_file
from primage.cli.server import start_background
from primage.client import Client
from primage.config import Settings
from primage.errors import NotFound
from primage.jobs.states import JobState
from primage.models.jobs import spec_from
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


def run_job(sdk: Client, job_file: Path) -> bool:
    """Submit the job file over the space, follow it, and print one row per result."""
    data = read_file(job_file)
    data.setdefault("inputs", {})["space"] = SPACE
    job = sdk.submit_job(spec_from(data, str(job_file)))
    console().print(f"\nsubmitted job {job.id} '{job.name}': {job.task_count} tasks, one per image")
    finished = follow(sdk, job.id)
    rows = []
    for info in sorted(sdk.listdir(SPACE, finished.output_path or ""), key=lambda i: i.path):
        if info.path.endswith(".json"):
            report = json.loads(sdk.read_bytes(SPACE, info.path))
            found = report.get("lesion_found")
            rows.append(
                (
                    Path(report["input"]).name,
                    report.get("modality", ""),
                    f"{report['volume_ml']:.2f}" if found else "no lesion",
                    report.get("voxel_count", 0),
                    "x".join(map(str, report.get("size", []))),
                    f"{report['seconds']:.2f}",
                )
            )
    table(["image", "modality", "lesion (mL)", "voxels", "size", "time (s)"], rows)
    console().print(
        "lesion (mL): volume of the largest region in the lesion's intensity window (CT: 70-300 "
        "HU, away from bone and the image border) above 20 mm³. 'no lesion' is a valid result: "
        "most samples are small test images of healthy anatomy or phantoms, not tumour scans.",
        highlight=False,
    )
    for task in sdk.tasks(job.id, state=["failed"]).tasks:
        console().print(
            f"[red]task {task.index} failed[/red] ({', '.join(task.inputs)}): {task.message}"
        )
    console().print(
        f"masks, overlays and reports: {SPACE}:{finished.output_path}/   "
        f"(primage job output {job.id} -o . fetches them)"
    )
    return finished.state == JobState.SUCCEEDED


def run(ctx: typer.Context, job_file: Path | None = None, *, port: int | None = None) -> None:
    settings = Settings() if port is None else Settings(port=port)
    console().rule("primage quick start")
    url = start_background(settings)
    console().print(f"platform running at [bold]{url}[/bold] (data in {settings.data_dir})")
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
        console().print(
            f"fetched {len(fetched)} files back: {verdict} to the originals (sha256). Space "
            f"'{SPACE}' holds {detail.file_count} files, {human(detail.size_bytes)}."
        )
        succeeded = run_job(sdk, job_file) if job_file is not None else True
    console().print(
        f"\nServer: {url}   API docs: {url}/docs   metrics: {url}/metrics\n"
        f"Try:  primage ls {SPACE}:images   primage get {SPACE}:images/CT_small.dcm .\n"
        "Stop it with: primage server stop"
    )
    if not (same and succeeded):
        raise typer.Exit(1)
