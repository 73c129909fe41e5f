"""Segmenting the tumour-like lesion of a CT or MR image with classical image processing.

The method, in order (every step is a SimpleITK filter):

1. **Denoise**: a 3x3 in-plane median filter (keeps edges; slices are often thick).
2. **Intensity window**: candidate voxels lie in the lesion window. CT (Hounsfield units): an
   enhancing soft-tissue lesion, 70-300 HU by default (brain and muscle are 20-60 HU, bone is
   above 300). Other modalities: brighter than the foreground's mean + 2 standard deviations (the
   foreground being what Otsu's threshold separates from the background).
3. **Clean-up**: a binary opening (radius 1 voxel in-plane) cuts thin bridges and partial-volume
   rims; connected components are labelled.
4. **Selection**: components touching the image border are dropped, and on CT so are those in
   contact with bone (above 400 HU: a vertebral body or the inside of the skull is not a lesion);
   the largest remaining one above the minimum volume is the lesion.
5. **Boundary**: the lesion edge is placed at half-way between the lesion's median intensity and
   that of the tissue around it (the half-maximum rule, robust to partial volume), by
   thresholding near the component and keeping the connected part that overlaps it; holes are
   filled.

No lesion found is a valid result (an empty mask), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

CT_WINDOW = (70.0, 300.0)
BONE_HU = 400.0


@dataclass(frozen=True)
class Params:
    window: tuple[float, float] | None = None  # None: the modality's default (see above)
    min_volume_mm3: float = 20.0


@dataclass
class Lesion:
    mask: sitk.Image  # uint8, same grid as the image
    window: tuple[float, float]
    voxels: int
    volume_ml: float
    bbox_index: tuple[list[int], list[int]] | None  # (min x,y,z), (max x,y,z), inclusive
    centroid_mm: list[float] | None
    mean_intensity: float | None

    @property
    def found(self) -> bool:
        return self.voxels > 0


def is_ct(image: sitk.Image, modality: str) -> bool:
    """CT by the DICOM Modality tag; without one, by a Hounsfield-like range (air near -1000)."""
    if modality:
        return modality.upper() == "CT"
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    return stats.GetMinimum() <= -500 and stats.GetMaximum() >= 300


def segment(image: sitk.Image, modality: str = "", params: Params = Params()) -> Lesion:
    smooth = sitk.Median(image, [1, 1, 0])
    ct = is_ct(image, modality)
    window = params.window or (CT_WINDOW if ct else bright_window(smooth))
    candidates = sitk.BinaryThreshold(smooth, window[0], window[1], 1, 0)
    candidates = sitk.BinaryMorphologicalOpening(candidates, [1, 1, 0])
    labels = sitk.ConnectedComponent(candidates)
    chosen = choose(labels, smooth, ct, params.min_volume_mm3)
    if chosen is None:
        return describe(sitk.Image(image.GetSize(), sitk.sitkUInt8), image, window)
    chosen.CopyInformation(image)
    lesion = describe(refine(chosen, smooth, window), image, window)
    if lesion.volume_ml * 1000 < params.min_volume_mm3:  # the edge moved in: now too small
        return describe(sitk.Image(image.GetSize(), sitk.sitkUInt8), image, window)
    return lesion


def bright_window(image: sitk.Image) -> tuple[float, float]:
    """Non-CT images: voxels brighter than the foreground's mean + 2 standard deviations."""
    foreground = sitk.OtsuThreshold(image, 0, 1)
    stats = sitk.LabelStatisticsImageFilter()
    stats.Execute(image, foreground)
    if not stats.HasLabel(1):
        return (float("inf"), float("inf"))
    return (stats.GetMean(1) + 2 * stats.GetSigma(1), float("inf"))


def choose(
    labels: sitk.Image, smooth: sitk.Image, ct: bool, min_volume_mm3: float
) -> sitk.Image | None:
    """The largest component that is not on the border, not touching bone, big enough."""
    array = sitk.GetArrayViewFromImage(labels)
    if not array.any():
        return None
    border = np.zeros(array.shape, dtype=bool)
    border[:, 0, :] = border[:, -1, :] = border[:, :, 0] = border[:, :, -1] = True
    excluded = set(np.unique(array[border]).tolist())
    if ct:
        bone = sitk.BinaryDilate(sitk.BinaryThreshold(smooth, BONE_HU, 1e9, 1, 0), [2, 2, 0])
        excluded |= set(np.unique(array[sitk.GetArrayViewFromImage(bone) > 0]).tolist())
    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    ids, counts = np.unique(array[array > 0], return_counts=True)
    best = [
        (count, label)
        for label, count in zip(ids.tolist(), counts.tolist(), strict=True)
        if label not in excluded and count * voxel_mm3 >= min_volume_mm3
    ]
    if not best:
        return None
    label = max(best)[1]
    return sitk.Cast(labels == label, sitk.sitkUInt8)


def refine(component: sitk.Image, smooth: sitk.Image, window: tuple[float, float]) -> sitk.Image:
    """Move the edge to half-way between the lesion and the tissue around it."""
    values = sitk.GetArrayViewFromImage(smooth)
    inside = sitk.GetArrayViewFromImage(component) > 0
    near = sitk.GetArrayViewFromImage(sitk.BinaryDilate(component, [2, 2, 0])) > 0
    shell = (sitk.GetArrayViewFromImage(sitk.BinaryDilate(component, [4, 4, 0])) > 0) & ~near
    surround = values[shell & (values < window[0])]
    if surround.size == 0:
        return sitk.BinaryFillhole(component)
    half = (float(np.median(values[inside])) + float(np.median(surround))) / 2
    grown = (values >= half) & (values <= window[1]) & near
    region = sitk.GetImageFromArray(grown.astype(np.uint8))
    region.CopyInformation(component)
    parts = sitk.GetArrayViewFromImage(sitk.ConnectedComponent(region))
    overlap = parts[inside & (parts > 0)]
    if overlap.size == 0:
        return sitk.BinaryFillhole(component)
    keep = np.bincount(overlap).argmax()
    result = sitk.GetImageFromArray((parts == keep).astype(np.uint8))
    result.CopyInformation(component)
    return sitk.BinaryFillhole(result)


def describe(mask: sitk.Image, image: sitk.Image, window: tuple[float, float]) -> Lesion:
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    mask.CopyInformation(image)
    array = sitk.GetArrayViewFromImage(mask)
    voxels = int(array.sum())
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    if voxels == 0:
        return Lesion(mask, window, 0, 0.0, None, None, None)
    z, y, x = np.nonzero(array)
    bbox = ([int(x.min()), int(y.min()), int(z.min())], [int(x.max()), int(y.max()), int(z.max())])
    centre = image.TransformContinuousIndexToPhysicalPoint(
        [float(x.mean()), float(y.mean()), float(z.mean())]
    )
    mean = float(sitk.GetArrayViewFromImage(image)[array > 0].mean())
    return Lesion(
        mask, window, voxels, voxels * voxel_ml, bbox, [round(c, 2) for c in centre], mean
    )
