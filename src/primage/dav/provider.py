"""The spaces as one WebDAV tree (WsgiDAV): ``/<space>/<path>``.

WsgiDAV's filesystem resources do the protocol work (PROPFIND, ranges, ETags, COPY/MOVE, locks);
this module changes what a gateway to patient data must do differently:

- paths resolve through :class:`primage.storage.filesystem.SpaceFiles`, so nothing outside the
  space is reachable, not even another space through a symbolic link, and a folder-confined
  token nothing outside its folder (checked on the resolved path); a file is read through the
  descriptor :mod:`primage.storage.reach` opened, never opened again by name;
- the root lists only the spaces the caller may see; hidden folders at the storage root
  (``.staging``, ``.trash``) do not exist for WebDAV;
- a PUT is written to the staging folder and renamed into place when complete (the same
  :class:`~primage.storage.transfer.AtomicUpload` as the REST API, with the space's quota): an
  interrupted upload leaves the old file, never a partial one, and its SHA-256 is recorded.

Who may do what is decided before a request reaches WsgiDAV (see :mod:`primage.dav.gateway`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, HTTP_NOT_FOUND, DAVError
from wsgidav.dav_provider import DAVCollection
from wsgidav.fs_dav_provider import FileResource, FilesystemProvider, FolderResource

from primage.db import Database, tables
from primage.errors import Conflict, PrimageError
from primage.storage.filesystem import SpaceFiles
from primage.storage.paths import NAME_RE
from primage.storage.quota import Reservation, replaced_size
from primage.storage.spaces import SpaceStore
from primage.storage.transfer import AtomicUpload

VISIBLE = "primage.spaces"  # environ key: the space names the caller may see
SPACE = "primage.space"  # environ key: (id, quota in bytes) of the space a request is about
CONFINED = "primage.confined"  # environ key: the (space, folder) the caller's token is held to


def split(path: str) -> tuple[str, str]:
    """'/space/a/b' → ('space', 'a/b'); '/' → ('', '')."""
    space, _, rest = path.strip("/").partition("/")
    return space, rest


class _Writer:
    """The file object WsgiDAV writes a PUT body into; the resource commits it."""

    def __init__(self, upload: AtomicUpload) -> None:
        self.upload = upload

    def write(self, data: bytes) -> None:
        self.upload.write(data)

    def close(self) -> None:
        """Nothing yet: ``end_write`` says whether the body arrived whole."""


class SafeWrites:
    """WebDAV's own writes (DELETE, MOVE, COPY) done as the REST API does them: walked from the
    space's root by :class:`~primage.storage.filesystem.SpaceFiles`, never by a path string
    resolved earlier, so a folder swapped for a link meanwhile is not followed. Dead properties
    and locks follow as WsgiDAV keeps them."""

    path: str
    environ: dict[str, Any]
    provider: SpaceProvider

    def _files(self, path: str) -> tuple[SpaceFiles, str]:
        space, rel = split(path)
        return self.provider.files(space, self.environ), rel

    def delete(self) -> None:
        files, rel = self._files(self.path)
        _safely(lambda: files.remove(rel, recursive=True))
        self.remove_all_properties(recursive=True)  # type: ignore[attr-defined]
        self.remove_all_locks(recursive=True)  # type: ignore[attr-defined]

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        (files, rel), (to, dest) = self._files(self.path), self._files(dest_path)
        _safely(lambda: files.move(rel, dest, overwrite=False, to=to))
        self._follow_properties(dest_path, move=True, children=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        (files, rel), (to, dest) = self._files(self.path), self._files(dest_path)
        if isinstance(self, SpaceFolder):
            with contextlib.suppress(Conflict):  # it exists: WsgiDAV then fills it
                _safely(lambda: to.mkdir(dest, parents=False))
        else:
            _safely(lambda: files.copy_file(rel, dest, to=to))
        self._follow_properties(dest_path, move=is_move, children=False)

    def _follow_properties(self, dest_path: str, *, move: bool, children: bool) -> None:
        manager = self.provider.prop_manager
        if not manager:
            return
        source = self.get_ref_url()  # type: ignore[attr-defined]
        target = self.provider.get_resource_inst(dest_path, self.environ).get_ref_url()
        if move:
            manager.move_properties(source, target, with_children=children, environ=self.environ)
        else:
            manager.copy_properties(source, target, self.environ)


def _safely(operation: Callable[[], object]) -> None:
    """Run a storage operation; the platform's refusals as WsgiDAV's errors (its status)."""
    try:
        operation()
    except PrimageError as exc:
        raise DAVError(exc.status, exc.detail) from None


class SpaceFile(SafeWrites, FileResource):
    """A file in a space. ``pending``: a PUT target that does not exist until its upload ends."""

    def __init__(
        self, path: str, environ: dict[str, Any], file_path: str, *, pending: bool
    ) -> None:
        if pending:  # FileResource.__init__ would stat a file that must not exist yet
            super(FileResource, self).__init__(path, environ)
            self._file_path = file_path
            self.name = os.path.basename(file_path)
        else:
            super().__init__(path, environ, file_path)
        self._upload: AtomicUpload | None = None

    def get_content(self) -> BinaryIO:
        """The file as walked from its space's root, links checked: the descriptor served is
        the one opened, whatever happens to the path meanwhile."""
        provider: SpaceProvider = self.provider
        space, rel = split(self.path)
        files = provider.files(space, self.environ)
        try:
            _, fd = files.open(rel)
        except PrimageError as exc:
            raise DAVError(exc.status, exc.detail) from None
        return os.fdopen(fd, "rb")

    def begin_write(self, *, content_type: str | None = None) -> _Writer:
        provider: SpaceProvider = self.provider
        self._upload = provider.start_upload(self.path, Path(self._file_path), self.environ)
        return _Writer(self._upload)

    def end_write(self, *, with_errors: bool) -> None:
        upload, self._upload = self._upload, None
        if upload is None:
            return
        declared = self.environ.get("CONTENT_LENGTH")
        if not with_errors and declared and upload.size != int(declared):
            # the client went away mid-body: the stream just ends early, without an error
            upload.abort()
            raise DAVError(HTTP_BAD_REQUEST, f"body ended after {upload.size} of {declared} bytes")
        if with_errors:
            upload.abort()
            return
        try:
            _, sha256, self.file_stat = upload.commit()
        except PrimageError as exc:
            raise DAVError(exc.status, exc.detail) from None
        provider: SpaceProvider = self.provider
        provider.record_checksum(self.path, self.file_stat, sha256, self.environ)


class SpaceFolder(SafeWrites, FolderResource):
    def get_used_bytes(self) -> None:  # the disk's figures would describe other spaces too
        return None

    def get_available_bytes(self) -> None:
        return None

    def get_member(self, name: str) -> Any:
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def create_empty_resource(self, name: str) -> SpaceFile:
        path = util.join_uri(self.path, name)
        file_path = self.provider._loc_to_file_path(path, self.environ)
        if self.environ.get("REQUEST_METHOD") == "PUT":
            return SpaceFile(path, self.environ, file_path, pending=True)
        with open(file_path, "xb"):  # a lock-null resource (LOCK on a new URL): RFC 4918 §7.3
            pass
        return SpaceFile(path, self.environ, file_path, pending=False)

    def create_collection(self, name: str) -> None:
        space, rel = split(util.join_uri(self.path, name))
        try:
            self.provider.files(space, self.environ).mkdir(rel, parents=False)
        except PrimageError as exc:
            raise DAVError(exc.status, exc.detail) from None


class Root(DAVCollection):
    """The top: one folder per space the caller may see."""

    def get_member_names(self) -> list[str]:
        return sorted(self.environ.get(VISIBLE, ()))

    def get_member(self, name: str) -> Any:
        return self.provider.get_resource_inst(f"/{name}", self.environ)

    def get_display_name(self) -> str:
        return "spaces"

    def get_last_modified(self) -> float:
        return time.time()

    def get_etag(self) -> None:
        return None

    def support_etag(self) -> bool:
        return False


class SpaceProvider(FilesystemProvider):
    def __init__(self, store: SpaceStore, db: Database, fsync: bool) -> None:
        super().__init__(str(store.root), readonly=False, fs_opts={"follow_symlinks": False})
        self.store, self.db, self.fsync = store, db, fsync

    def _loc_to_file_path(self, path: str, environ: dict[str, Any] | None = None) -> str:
        space, rest = split(path)
        if not space:
            return str(self.store.root)
        if not NAME_RE.fullmatch(space):
            raise DAVError(HTTP_NOT_FOUND, f"no space named {space!r}")
        try:
            _, target = self.files(space, environ).path(rest)
        except PrimageError as exc:
            raise DAVError(HTTP_FORBIDDEN, exc.detail) from None
        return str(target)

    def files(self, space: str, environ: dict[str, Any] | None) -> SpaceFiles:
        """The space's files as the caller may reach them (a folder token: its folder)."""
        confined_space, folder = (environ or {}).get(CONFINED, (None, None))
        return self.store.files(space, folder if confined_space == space else None)

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> Any:
        self._count_get_resource_inst += 1
        space, _ = split(path)
        if not space:
            return Root("/", environ)
        if space not in environ.get(VISIBLE, ()):
            return None
        file_path = self._loc_to_file_path(path, environ)
        if os.path.islink(file_path) or not os.path.exists(file_path):
            return None
        if os.path.isdir(file_path):
            return SpaceFolder(path, environ, file_path)
        return SpaceFile(path, environ, file_path, pending=False)

    # -- what SpaceFile needs ---------------------------------------------------------------

    def start_upload(self, path: str, target: Path, environ: dict[str, Any]) -> AtomicUpload:
        space, _ = split(path)
        space_id, quota = environ[SPACE]
        room = Reservation(self.db, space_id, space, quota, replaced_size(target))
        declared = environ.get("CONTENT_LENGTH")
        if declared and declared.isdigit():
            try:
                room.ensure(int(declared), exact=True)
            except PrimageError as exc:
                raise DAVError(exc.status, exc.detail) from None
        files, (_, rel) = self.files(space, environ), split(path)
        return AtomicUpload(
            space=space,
            staging=self.store.staging,
            target=lambda: files.target(rel),
            room=room,
            fsync=self.fsync,
        )

    def record_checksum(
        self, path: str, st: os.stat_result, sha256: str, environ: dict[str, Any]
    ) -> None:
        _, rel = split(path)
        space_id, _ = environ[SPACE]
        with self.db.session() as session:
            session.merge(
                tables.FileChecksum(
                    space_id=space_id,
                    path=rel,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha256,
                )
            )
