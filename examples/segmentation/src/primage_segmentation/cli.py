"""``primage-segment IMAGE... -o DIR``: a mask, an overlay PNG and a JSON report per image.

For ``IMAGE`` (a DICOM file, a DICOM series folder or a NIfTI file) named ``STEM.ext`` it writes
``STEM_mask.nii.gz``, ``STEM_overlay.png`` and ``STEM.json`` into the output folder; each file
appears complete or not at all. An unreadable image is reported and the others still processed;
the exit code is then 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from primage_segmentation import __version__
from primage_segmentation.io import (
    ImageError,
    read_image,
    stem,
    write_json,
    write_mask,
    write_overlay,
)
from primage_segmentation.segment import Params, is_ct, segment


def window(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(",")
    try:
        return float(low), float(high) if sep else float("inf")
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not LOW,HIGH (e.g. 70,300)") from None


def process(path: Path, out: Path, params: Params) -> dict[str, Any]:
    start = time.perf_counter()
    image, modality = read_image(path)
    lesion = segment(image, modality, params)
    name = stem(path)
    tmp_mask, tmp_png = out / f".{name}_mask.tmp.nii.gz", out / f".{name}_overlay.tmp.png"
    write_mask(lesion.mask, tmp_mask)
    view = (-160.0, 240.0) if is_ct(image, modality) else percentiles(image)
    slice_index = write_overlay(image, lesion.mask, view, tmp_png)
    tmp_mask.replace(out / f"{name}_mask.nii.gz")
    tmp_png.replace(out / f"{name}_overlay.png")
    report = {
        "input": str(path),
        "modality": modality or ("CT" if is_ct(image, modality) else "unknown"),
        "lesion_found": lesion.found,
        "volume_ml": round(lesion.volume_ml, 4),
        "voxel_count": lesion.voxels,
        "bbox_index": lesion.bbox_index,
        "centroid_mm": lesion.centroid_mm,
        "mean_intensity": lesion.mean_intensity,
        "size": list(image.GetSize()),
        "spacing_mm": [round(s, 4) for s in image.GetSpacing()],
        "overlay_slice": slice_index,
        "window": list(lesion.window),
        "method": "median, window, opening, largest non-bone component, half-maximum edge",
        "version": __version__,
        "software": software(),
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json(report, out / f"{name}.json")
    return report


def software() -> dict[str, str]:
    """The versions of the libraries that made the figures (pinned in constraints.txt)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("SimpleITK", "numpy", "nibabel")}


def percentiles(image: Any) -> tuple[float, float]:
    import numpy as np
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(image)
    low, high = np.percentile(values, [1, 99.5])
    return float(low), float(max(high, low + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="primage-segment", description="Segment the tumour-like lesion of CT/MR images."
    )
    parser.add_argument("images", nargs="+", type=Path, help="DICOM file, series folder or NIfTI")
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to write")
    parser.add_argument("--window", type=window, help="lesion intensity window LOW,HIGH")
    parser.add_argument("--min-volume", type=float, default=20.0, help="smallest lesion, mm³")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    params = Params(window=args.window, min_volume_mm3=args.min_volume)
    failed = 0
    for path in args.images:
        try:
            report = process(path, args.output_dir, params)
        except ImageError as exc:
            print(f"primage-segment: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        found = f"lesion {report['volume_ml']:.2f} mL" if report["lesion_found"] else "no lesion"
        print(f"{path.name}: {found} ({report['seconds']:.2f} s)")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
