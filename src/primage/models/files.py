"""Files and folders inside a space."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from primage.models import Model, Strict


class FileInfo(Model):
    path: str = Field(description="Path relative to the space's root; '' is the root.")
    name: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int = Field(description="Bytes (files); 0 for folders.")
    modified: dt.datetime
    sha256: str | None = Field(None, description="Checksum recorded at upload, when still valid.")


class Listing(Model):
    space: str
    folder: FileInfo = Field(description="The folder listed.")
    entries: list[FileInfo]


class MkdirRequest(Strict):
    path: str
    parents: bool = Field(True, description="Create missing parent folders too (like mkdir -p).")


class MoveRequest(Strict):
    source: str
    destination: str
    overwrite: bool = Field(False, description="Replace an existing file at the destination.")
