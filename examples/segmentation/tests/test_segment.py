"""The segmentation against phantoms with known truth, and on every shipped CT/MR image.

Phantoms are real 512 x 512 CT images (from pydicom and pydicom-data; CT_small's 85 mm field
holds no fat-free soft tissue wide enough for a lesion and its margin) with a lesion inserted: a
disk in millimetres, 120 HU brighter than the tissue it replaces, with partial volume at its edge
(each pixel gets the fraction of it the disk covers). The truth is the pixels at least half
covered.
"""

from __future__ import annotations

import json
from pathlib import Path

import data_store  # the pydicom-data package
import nibabel
import numpy as np
import pydicom
import pydicom.data
import pytest
import SimpleITK as sitk
from primage_segmentation.cli import main, process
from primage_segmentation.io import ImageError, read_image
from primage_segmentation.segment import Params, segment
from pydicom.data import get_testdata_file

CONTRAST_HU = 120.0


def ct(name: str) -> sitk.Image:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"{name} is missing: install pydicom-data (pip install pydicom-data)")
    image, modality = read_image(Path(str(path)))
    assert modality == "CT"
    return image


def coverage(image: sitk.Image, centre_mm: tuple[float, float], radius_mm: float) -> np.ndarray:
    """Fraction of each in-plane pixel inside the disk (4 x 4 samples per pixel)."""
    nz, ny, nx = sitk.GetArrayViewFromImage(image).shape
    sx, sy = image.GetSpacing()[:2]
    offsets = (np.arange(4) + 0.5) / 4 - 0.5
    ys, xs = np.mgrid[0:ny, 0:nx].astype(float)
    inside = np.zeros((ny, nx))
    for dy in offsets:
        for dx in offsets:
            d2 = ((xs + dx) * sx - centre_mm[0]) ** 2 + ((ys + dy) * sy - centre_mm[1]) ** 2
            inside += d2 <= radius_mm**2
    return np.broadcast_to(inside / 16, (nz, ny, nx))


def soft_tissue_centre(image: sitk.Image, radius_mm: float) -> tuple[float, float]:
    """A place where the disk and a margin around it lie in soft tissue (-10-80 HU), far from
    bone and air: where a lesion would be, and where its true edge is knowable."""
    values = sitk.GetArrayViewFromImage(sitk.Median(image, [1, 1, 0]))[0]
    sx, sy = image.GetSpacing()[:2]
    margin = radius_mm + 3
    ny, nx = values.shape
    step = max(1, int(2 / sx))
    for y in range(int(margin / sy), ny - int(margin / sy), step):
        for x in range(int(margin / sx), nx - int(margin / sx), step):
            ry, rx = int(margin / sy), int(margin / sx)
            patch = values[y - ry : y + ry + 1, x - rx : x + rx + 1]
            if patch.min() >= -10 and patch.max() <= 80:
                return (x * sx, y * sy)
    pytest.fail(f"no soft tissue patch of radius {margin} mm in this image")


def phantom(image: sitk.Image, radius_mm: float) -> tuple[sitk.Image, np.ndarray]:
    cover = coverage(image, soft_tissue_centre(image, radius_mm), radius_mm)
    values = sitk.GetArrayFromImage(image) + CONTRAST_HU * cover
    result = sitk.GetImageFromArray(values.astype(np.float32))
    result.CopyInformation(image)
    return result, cover >= 0.5


def dice(mask: sitk.Image, truth: np.ndarray) -> float:
    found = sitk.GetArrayViewFromImage(mask) > 0
    return 2 * float((found & truth).sum()) / float(found.sum() + truth.sum())


@pytest.mark.parametrize(
    ("name", "radius_mm"),
    [
        ("693_J2KI.dcm", 6.0),
        ("693_UNCI.dcm", 15.0),
        ("J2K_pixelrep_mismatch.dcm", 6.0),
        ("J2K_pixelrep_mismatch.dcm", 10.0),
        ("693_UNCR.dcm", 10.0),
    ],
)
def test_dice_against_inserted_lesions_is_at_least_0_9(name: str, radius_mm: float) -> None:
    image, truth = phantom(ct(name), radius_mm)
    lesion = segment(image, "CT")
    assert lesion.found
    score = dice(lesion.mask, truth)
    assert score >= 0.9, f"Dice {score:.3f}"
    truth_ml = truth.sum() * np.prod(image.GetSpacing()) / 1000
    assert lesion.volume_ml == pytest.approx(truth_ml, rel=0.1)


def test_the_report_the_mask_and_the_overlay_are_written(tmp_path: Path) -> None:
    image, truth = phantom(ct("693_UNCI.dcm"), 8.0)
    source = tmp_path / "lesion.nii.gz"
    sitk.WriteImage(image, str(source))

    report = process(source, tmp_path, Params())

    assert report["lesion_found"] and report["voxel_count"] == pytest.approx(truth.sum(), rel=0.1)
    assert json.loads((tmp_path / "lesion.json").read_text())["volume_ml"] == report["volume_ml"]
    assert report["software"]["SimpleITK"] == sitk.Version.VersionString()  # what made the figures
    mask = sitk.ReadImage(str(tmp_path / "lesion_mask.nii.gz"))
    assert mask.GetSize() == image.GetSize()
    assert mask.GetSpacing() == pytest.approx(image.GetSpacing(), rel=1e-5)
    assert dice(mask, truth) >= 0.9
    overlay = sitk.ReadImage(str(tmp_path / "lesion_overlay.png"))
    assert overlay.GetNumberOfComponentsPerPixel() == 3  # RGB: grey image, red outline
    assert not list(tmp_path.glob(".*tmp*"))  # no half-written leftovers


def shipped_images() -> list[Path]:
    """Every CT/MR image pydicom (with pydicom-data) and nibabel ship that they can decode."""
    found = []
    folders = [Path(pydicom.data.__file__).parent / "test_files", Path(data_store.__file__).parent]
    # Listed from the installed folders: pydicom's own search would try to download the rest.
    for name in sorted({p for folder in folders for p in folder.rglob("*.dcm")}):
        try:
            ds = pydicom.dcmread(name)
            if ds.get("Modality") in ("CT", "MR") and "PixelData" in ds:
                _ = ds.pixel_array
                found.append(Path(name))
        except Exception:
            continue
    data = Path(nibabel.__file__).parent / "tests" / "data"
    for path in sorted([*data.glob("*.nii"), *data.glob("*.nii.gz")]):
        try:
            image = nibabel.load(path)
            if isinstance(image, nibabel.spatialimages.SpatialImage):  # not CIFTI matrices
                image.get_fdata()
                found.append(path)
        except Exception:
            continue
    return found


def test_runs_on_every_shipped_ct_and_mr_image(tmp_path: Path) -> None:
    images = shipped_images()
    assert len(images) >= 20
    failures = []
    for number, path in enumerate(images):
        out = tmp_path / str(number)
        out.mkdir()
        try:
            process(path, out, Params())
        except ImageError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_a_corrupt_image_fails_clearly_and_the_others_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = Path(str(get_testdata_file("CT_small.dcm", download=False)))
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(good.read_bytes()[:2000])

    code = main([str(corrupt), str(good), "-o", str(tmp_path / "out")])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("primage-segment: error:") and "corrupt.dcm" in err
    assert (tmp_path / "out" / "CT_small.json").exists()
    assert not (tmp_path / "out" / "corrupt.json").exists()


def refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def test_every_report_is_standard_json(tmp_path: Path) -> None:
    """An unbounded window end (a CT window's top, say) is null, never ``Infinity``: JavaScript's
    ``JSON.parse`` and other strict readers must read every report."""
    for name in ("CT_small.dcm", "MR_small.dcm"):
        source = Path(get_testdata_file(name))
        process(source, tmp_path, Params())
        text = (tmp_path / f"{source.stem}.json").read_text()
        report = json.loads(text, parse_constant=refuse)
        assert all(v is None or isinstance(v, float | int) for v in report["window"]), text
