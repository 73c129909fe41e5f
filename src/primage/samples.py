"""Real medical images that PyPI packages ship as test data: no download at run time.

pydicom ships CT and MR slices (and tiny DICOM series); nibabel ships NIfTI volumes, among them
a real 4D fMRI run. They are what the quick start uploads and what the tests round-trip.
"""

from __future__ import annotations

from pathlib import Path

from primage.errors import PrimageError

PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm")
NIBABEL_FILES = ("example4d.nii.gz", "anatomical.nii", "functional.nii", "standard.nii.gz")


def sample_images() -> list[Path]:
    """Paths of the sample images installed with pydicom and nibabel (those present)."""
    try:
        import nibabel
        from pydicom.data import get_testdata_file
    except ImportError:
        raise PrimageError(
            "the sample images come with pydicom and nibabel: pip install 'primage[samples]'"
        ) from None
    found = []
    for name in PYDICOM_FILES:
        path = get_testdata_file(name, download=False)
        if path:
            found.append(Path(str(path)))
    nib_data = Path(nibabel.__file__).parent / "tests" / "data"
    found += [nib_data / name for name in NIBABEL_FILES if (nib_data / name).is_file()]
    return found
