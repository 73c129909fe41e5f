"""``primage://SPACE/path``: the spaces as an fsspec filesystem, for Python code without a mount.

Registered under the ``fsspec.specs`` entry point, so once primage is installed::

    import pandas, nibabel, fsspec
    df = pandas.read_csv("primage://study/table.csv")
    with fsspec.open("primage://study/ct/scan.nii.gz") as f:
        image = nibabel.Nifti1Image.from_stream(f)

The server and credentials are the SDK's (``PRIMAGE_SERVER``, ``primage login`` or
``PRIMAGE_TOKEN``), or ``storage_options={"server": ..., "token": ...}``. Reads fetch byte ranges
(a DICOM header costs one small request, not the whole file); a written file is staged locally
and uploaded when closed, atomically, as with ``primage put``.
"""

from __future__ import annotations

import tempfile
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from primage.client import Client
from primage.errors import NotFound
from primage.models.files import FileInfo


def _entry(space: str, info: FileInfo) -> dict[str, Any]:
    return {
        "name": f"{space}/{info.path}".rstrip("/"),
        "size": info.size if info.type == "file" else 0,
        "type": "directory" if info.type == "directory" else "file",
        "mtime": info.modified.timestamp(),
        "sha256": info.sha256,
    }


class PrimageFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = "primage"
    root_marker = ""
    cachable = False  # the server and token come from the environment at each use

    def __init__(self, server: str | None = None, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = Client(server, token)

    @classmethod
    def _strip_protocol(cls, path: str | list[str]) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return path.removeprefix("primage://").strip("/")

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        space, _, rest = path.partition("/")
        return space, rest

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        space, rel = self._split(path)
        if not space:
            entries = [
                {"name": s.name, "size": 0, "type": "directory"} for s in self.client.list_spaces()
            ]
        else:
            info = self.client.stat(space, rel)
            found = [info] if info.type == "file" else self.client.listdir(space, rel)
            entries = [_entry(space, each) for each in found]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        space, rel = self._split(path)
        if not space:
            return {"name": "", "size": 0, "type": "directory"}
        try:
            return _entry(space, self.client.stat(space, rel))
        except NotFound:
            raise FileNotFoundError(path) from None

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> PrimageFile:
        return PrimageFile(self, self._strip_protocol(path), mode, **kwargs)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        space, rel = self._split(self._strip_protocol(path))
        return self.client.read_bytes(space, rel, start=start or 0, end=end)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        space, rel = self._split(self._strip_protocol(path))
        self.client.mkdir(space, rel, parents=create_parents)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        if exist_ok and self.exists(path):
            return
        self.mkdir(path, create_parents=True)

    def rm_file(self, path: str) -> None:
        space, rel = self._split(self._strip_protocol(path))
        self.client.remove(space, rel)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rmdir(self, path: str) -> None:
        space, rel = self._split(self._strip_protocol(path))
        self.client.remove(space, rel, recursive=False)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        (space, source), (other, target) = (
            self._split(self._strip_protocol(p)) for p in (path1, path2)
        )
        if space != other:
            super().mv(path1, path2, **kwargs)  # across spaces: copy, then delete
            return
        self.client.move(space, source, target, overwrite=True)


class PrimageFile(AbstractBufferedFile):  # type: ignore[misc]
    """Reads by byte range; writes into a local temporary file uploaded on close."""

    fs: PrimageFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        space, rel = self.fs._split(self.path)
        return self.fs.client.read_bytes(space, rel, start=start, end=end)

    def _initiate_upload(self) -> None:
        self._staged = tempfile.TemporaryFile()  # noqa: SIM115 - closed after the last chunk

    def _upload_chunk(self, final: bool = False) -> bool:
        self._staged.write(self.buffer.getvalue())
        if final:
            self._staged.seek(0)
            space, rel = self.fs._split(self.path)
            self.fs.client.upload(space, rel, self._staged)
            self._staged.close()
        return True
