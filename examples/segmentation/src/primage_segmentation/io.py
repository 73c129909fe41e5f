"""Reading one image (a DICOM file, a DICOM series folder, or NIfTI) and writing the results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class ImageError(Exception):
    """The input cannot be read as a grey-level CT or MR image; the message says why."""


def read_image(path: Path) -> tuple[sitk.Image, str]:
    """The image as a 3D float32 volume (a 2D image is one slice; a 4D one, its first volume),
    and its modality ('CT', 'MR', … or '' when the file does not say)."""
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    try:
        image, modality = _read(path)
    except RuntimeError as exc:  # SimpleITK reports unreadable files this way
        first = str(exc).strip().splitlines()
        reason = next((line for line in first if "ERROR" in line or "Unable" in line), "")
        why = reason.strip() or "unknown format"
        raise ImageError(f"{path}: not a readable image ({why})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(f"{path}: a colour image; lesion segmentation needs CT or MR grey levels")
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise ImageError(f"{path}: a {image.GetDimension()}D image; expected 2D, 3D or 4D")
    return sitk.Cast(image, sitk.sitkFloat32), modality


def _read(path: Path) -> tuple[sitk.Image, str]:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise ImageError(f"{path}: a folder without a DICOM series")
        files = max(
            (reader.GetGDCMSeriesFileNames(str(path), s) for s in series), key=len
        )  # the longest series, when the folder holds several
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        image = reader.Execute()
        tag = "0008|0060"
        modality = reader.GetMetaData(0, tag) if reader.HasMetaDataKey(0, tag) else ""
        return image, modality.strip()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        if path.name.lower().endswith(NIFTI_SUFFIXES):
            return _read_nibabel(path), ""  # e.g. NIfTI-2, which ITK does not read
        raise
    modality = reader.GetMetaData("0008|0060") if reader.HasMetaDataKey("0008|0060") else ""
    return reader.Execute(), modality.strip()


def _read_nibabel(path: Path) -> sitk.Image:
    """A NIfTI file through nibabel: voxels (x, y, z[, t]) and their spacing; orientation is
    not needed to measure a lesion and is not carried over."""
    import nibabel

    try:
        image = nibabel.load(path)
    except Exception as exc:  # nibabel raises several kinds for a bad file
        raise ImageError(f"{path}: not a readable NIfTI image ({exc})") from None
    if not isinstance(image, nibabel.spatialimages.SpatialImage):
        raise ImageError(f"{path}: not an image volume ({type(image).__name__})")
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise ImageError(f"{path}: a {data.ndim}D array; expected 2D, 3D or 4D")
    result = sitk.GetImageFromArray(data.T.copy())  # numpy (z, y, x) order for SimpleITK
    zooms = [float(z) for z in image.header.get_zooms()[: data.ndim]]
    result.SetSpacing(zooms)
    return result


def stem(path: Path) -> str:
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, ".dcm", ".mha", ".nrrd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_mask(mask: sitk.Image, path: Path) -> None:
    sitk.WriteImage(sitk.Cast(mask, sitk.sitkUInt8), str(path), useCompression=True)


def write_overlay(
    image: sitk.Image, mask: sitk.Image, window: tuple[float, float], path: Path
) -> int:
    """A PNG of the slice with the largest lesion area (the central slice if none), the lesion
    outlined in red; returns that slice's index."""
    labels = sitk.GetArrayViewFromImage(mask)
    areas = labels.reshape(labels.shape[0], -1).sum(axis=1)
    z = int(areas.argmax()) if areas.any() else labels.shape[0] // 2
    grey = sitk.IntensityWindowing(image[:, :, z], window[0], window[1], 0.0, 255.0)
    grey = sitk.Cast(grey, sitk.sitkUInt8)
    outline = sitk.LabelContour(sitk.Cast(mask[:, :, z], sitk.sitkUInt8))
    overlay = sitk.LabelOverlay(grey, outline, opacity=1.0, colormap=[255, 0, 0])
    sitk.WriteImage(overlay, str(path))
    return z


def write_json(data: dict[str, Any], path: Path) -> None:
    """Standard JSON (``JSON.parse`` reads it): an unbounded end of a window, or any other
    non-finite number, is written as null."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
