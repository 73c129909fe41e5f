"""``primage://`` through fsspec, as notebook code uses it: pydicom, nibabel, plain open/write."""

from __future__ import annotations

import gzip
from pathlib import Path

import fsspec
import nibabel
import pydicom
import pytest
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from tests.harness import RunningServer


@pytest.fixture
def fs(sqlite_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> fsspec.AbstractFileSystem:
    monkeypatch.setenv("PRIMAGE_SERVER", sqlite_server.url)
    monkeypatch.setenv("PRIMAGE_TOKEN", sqlite_server.admin_token)
    api = sqlite_server.client()
    api.create_space("study")
    api.upload("study", "ct/CT_small.dcm", get_testdata_file("CT_small.dcm"))
    api.upload("study", "mr/example4d.nii.gz", Path(data_path) / "example4d.nii.gz")
    return fsspec.filesystem("primage")


def test_read_images_without_mounting(fs: fsspec.AbstractFileSystem) -> None:
    assert fs.ls("primage://", detail=False) == ["study"]
    assert fs.ls("primage://study/ct", detail=False) == ["study/ct/CT_small.dcm"]
    with fsspec.open("primage://study/ct/CT_small.dcm") as f:
        ds = pydicom.dcmread(f)
    assert ds.pixel_array.shape == (128, 128)
    with fsspec.open("primage://study/mr/example4d.nii.gz") as f:
        image = nibabel.Nifti1Image.from_bytes(gzip.decompress(f.read()))
    assert image.shape == nibabel.load(Path(data_path) / "example4d.nii.gz").shape


def test_write_move_and_remove(fs: fsspec.AbstractFileSystem, sqlite_server: RunningServer) -> None:
    with fsspec.open("primage://study/results/table.csv", "w") as f:
        f.write("case,volume_ml\n1,12.5\n")
    assert fs.cat("primage://study/results/table.csv") == b"case,volume_ml\n1,12.5\n"
    assert fs.info("study/results/table.csv")["sha256"]
    fs.mv("study/results/table.csv", "study/results/final.csv")
    assert fs.ls("study/results", detail=False) == ["study/results/final.csv"]
    fs.rm("study/results/final.csv")
    assert not fs.exists("study/results/final.csv")
    with pytest.raises(FileNotFoundError):
        fs.info("study/nothing-here")
