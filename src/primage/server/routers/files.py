"""Files inside a space: streamed upload and download, listing, folders, move, delete."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from primage.auth import audit, policy
from primage.auth.policy import Right
from primage.auth.principal import Principal
from primage.db import lookup, tables
from primage.errors import BadRequest, Conflict, RangeNotSatisfiable
from primage.models.files import FileInfo, Listing, MkdirRequest, MoveRequest
from primage.server.deps import Caller, State
from primage.storage.filesystem import SpaceFiles, file_info
from primage.storage.paths import normalise_relpath
from primage.storage.quota import Reservation, replaced_size
from primage.storage.transfer import AtomicUpload, Blocks

router = APIRouter(prefix="/spaces/{space}", tags=["files"])
CHUNK = 4 * 1024 * 1024  # bytes handed to the writer thread at once
RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


class OpenFileResponse(FileResponse):
    """A file already opened (`storage.reach`), served through `/proc/self/fd`: the same
    file, whatever happens to its path meanwhile; the descriptor is closed once it is sent."""

    chunk_size = 1024 * 1024  # fewer, larger reads than Starlette's 64 KiB default

    def __init__(self, fd: int, **kwargs: Any) -> None:
        self.fd = fd
        super().__init__(f"/proc/self/fd/{fd}", stat_result=os.fstat(fd), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            os.close(self.fd)


def open_space(
    session: Session, state: State, caller: Principal, space: str, right: Right, *paths: str
) -> tuple[tables.Space, SpaceFiles]:
    """The space row and its files, once the caller's right on these paths is proven."""
    rels = tuple(normalise_relpath(p) for p in paths)
    row = lookup.space(session, space)
    policy.check_space(caller, row, right, *rels)
    return row, state.store.files(space, policy.folder_in(caller, space))


def recorded_sha256(session: Session, space_id: int, rel: str, st: os.stat_result) -> str | None:
    row = session.get(tables.FileChecksum, (space_id, rel))
    return row.sha256 if row is not None and unchanged(row, st) else None


def unchanged(row: tables.FileChecksum, st: os.stat_result) -> bool:
    """A recorded checksum still holds while the file keeps its size and mtime."""
    return row.size == st.st_size and row.mtime_ns == st.st_mtime_ns


def with_checksums(
    session: Session,
    space_id: int,
    folder: str,
    entries: Sequence[tuple[os.stat_result, FileInfo]],
    *,
    recursive: bool,
) -> list[FileInfo]:
    """Listed entries, each file with its recorded SHA-256: the folder's checksums are read in
    one query (the subtree's when `recursive`, else those of the names listed)."""
    table = tables.FileChecksum
    files = [info.path for _, info in entries if info.type == "file"]
    query = select(table).where(table.space_id == space_id)
    if recursive and folder:
        query = query.where(table.path.startswith(folder + "/", autoescape=True))
    elif not recursive:
        query = query.where(table.path.in_(files))
    recorded = {row.path: row for row in session.scalars(query)} if files else {}
    for st, info in entries:
        row = recorded.get(info.path)
        if row is not None and unchanged(row, st):
            info.sha256 = row.sha256
    return [info for _, info in entries]


def forget_checksums(session: Session, space_id: int, rel: str) -> None:
    table = tables.FileChecksum
    session.execute(
        delete(table).where(
            table.space_id == space_id,
            (table.path == rel) | table.path.startswith(rel + "/", autoescape=True),
        )
    )


@router.get("/files/{path:path}", response_model=FileInfo | Listing)
def stat_or_list(
    space: str, path: str, caller: Caller, state: State, recursive: bool = False
) -> FileInfo | Listing:
    """A file's metadata (with the SHA-256 recorded at upload, while the file is unchanged), or
    a folder's entries: with `recursive`, every folder and file below it."""
    with state.db.session() as session:
        row, files = open_space(session, state, caller, space, Right.READ, path)
        st, info = files.find(path)
        if info.type != "directory":
            info.sha256 = recorded_sha256(session, row.id, info.path, st)
            return info
        listed = list(files.walk(path)) if recursive else files.listdir(path)
        entries = with_checksums(session, row.id, info.path, listed, recursive=recursive)
    return Listing(space=space, folder=info, entries=entries)


@router.get("/content/{path:path}")
def download(space: str, path: str, caller: Caller, state: State, request: Request) -> FileResponse:
    """The file's bytes, streamed; `Range: bytes=a-b` gives part of it (206)."""
    with state.db.session() as session:
        _, files = open_space(session, state, caller, space, Right.READ, path)
    info, fd = files.open(path)  # what is served is what was opened: no second look by name
    ranges = request.headers.get("range")
    try:
        check_range(ranges, info.size)
    except RangeNotSatisfiable:
        os.close(fd)
        raise
    if ranges is None:
        state.metrics.bytes_downloaded.inc(info.size)
    return OpenFileResponse(fd, filename=info.name, content_disposition_type="attachment")


def check_range(header: str | None, size: int) -> None:
    """Refuse, as JSON, a byte range that lies wholly past the end of the file."""
    if header is None:
        return
    for spec in header.removeprefix("bytes=").split(","):
        match = RANGE_RE.fullmatch("bytes=" + spec.strip())
        if match and match.group(1) and int(match.group(1)) >= size:
            raise RangeNotSatisfiable(f"range {spec.strip()} starts past the end ({size} bytes)")


@router.put("/content/{path:path}", response_model=FileInfo)
async def upload(
    space: str,
    path: str,
    caller: Caller,
    state: State,
    request: Request,
    overwrite: bool = Query(True, description="Replace an existing file (false: 409 instead)."),
) -> FileInfo:
    """Write the request body to the file: streamed, checksummed, visible only when complete.

    A body of at most one block is received whole and stored in a single worker-thread pass
    (most DICOM slices); a larger one streams to disk while it arrives.
    """
    declared = content_length(request)
    if declared is not None and declared <= CHUNK:
        body = await request.body()

        def whole() -> FileInfo:
            upload = prepare(state, caller, space, path, declared, overwrite)
            return store(state, upload, body)

        return await run_in_threadpool(whole)

    staged = await run_in_threadpool(prepare, state, caller, space, path, declared, overwrite)
    try:
        await receive_into(staged.writer, request)
    except BaseException:
        staged.writer.abort()
        raise
    return await run_in_threadpool(store, state, staged, b"")


def content_length(request: Request) -> int | None:
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not header.isdigit():
        raise BadRequest(f"Content-Length must be a number of bytes, not {header!r}")
    return int(header)


@dataclass
class Upload:
    space_id: int
    rel: str
    writer: AtomicUpload


def prepare(
    state: State,
    caller: Principal,
    space: str,
    path: str,
    declared: int | None,
    overwrite: bool,
) -> Upload:
    """Check the right, the path and the quota; open the temporary file. Each database step
    is a transaction of its own, none held across another (nor across the body's transfer), so
    that concurrent uploads never wait on each other for the pool's connections."""
    with state.db.session() as session:
        row, files = open_space(session, state, caller, space, Right.WRITE, path)
    rel, target = files.path(path)
    if not rel:
        raise BadRequest("give a file path inside the space, e.g. scans/ct.dcm")
    if not overwrite and os.path.lexists(target):  # early, before the body; commit re-checks
        raise Conflict(f"'{rel}' already exists in space '{space}'; allow overwriting")
    room = Reservation(state.db, row.id, space, row.quota_bytes, replaced_size(target))
    if declared:  # held before a byte of the body is read: parallel uploads cannot overrun
        room.ensure(declared, exact=True)
    try:
        writer = AtomicUpload(
            space=space,
            staging=state.store.staging,
            target=lambda: files.target(rel),
            room=room,
            fsync=state.settings.fsync_uploads,
            overwrite=overwrite,
        )
    except BaseException:
        room.release()
        raise
    return Upload(row.id, rel, writer)


def store(state: State, upload: Upload, tail: bytes) -> FileInfo:
    """Write the last bytes, make the file visible, and record its checksum."""
    try:
        upload.writer.write(tail)
        size, sha256, st = upload.writer.commit()
    except BaseException:
        upload.writer.abort()
        raise
    state.metrics.bytes_uploaded.inc(size)
    with state.db.session() as session:
        session.merge(
            tables.FileChecksum(
                space_id=upload.space_id,
                path=upload.rel,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha256=sha256,
            )
        )
    found = file_info(upload.rel, st)
    found.sha256 = sha256
    return found


async def receive_into(writer: AtomicUpload, request: Request) -> None:
    """Feed the body to the writer in blocks: one block goes to disk while the next fills."""
    blocks = Blocks(CHUNK)
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in request.stream():
            for block in blocks.feed(chunk):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(run_in_threadpool(writer.write, block))
        if pending is not None:
            await pending
        await run_in_threadpool(writer.write, blocks.rest())
    finally:
        if pending is not None and not pending.done():
            await asyncio.wait({pending})  # never close the file under a running write


@router.post("/mkdir", response_model=FileInfo, status_code=201)
def mkdir(space: str, body: MkdirRequest, caller: Caller, state: State) -> FileInfo:
    with state.db.session() as session:
        _, files = open_space(session, state, caller, space, Right.WRITE, body.path)
    return files.mkdir(body.path, parents=body.parents)


@router.post("/move", response_model=FileInfo)
def move(space: str, body: MoveRequest, caller: Caller, state: State) -> FileInfo:
    """Move or rename a file or folder inside the space; recorded checksums follow it."""
    paths = (body.source, body.destination)
    with state.db.session() as session:
        row, files = open_space(session, state, caller, space, Right.WRITE, *paths)
        moved = files.move(body.source, body.destination, overwrite=body.overwrite)
        move_checksums(session, row.id, normalise_relpath(body.source), moved.path)
    return moved


def move_checksums(session: Session, space_id: int, src: str, dst: str) -> None:
    forget_checksums(session, space_id, dst)
    table = tables.FileChecksum
    rows = session.scalars(
        select(table).where(
            table.space_id == space_id,
            (table.path == src) | table.path.startswith(src + "/", autoescape=True),
        )
    ).all()
    for each in rows:
        moved = table(
            space_id=space_id,
            path=dst + each.path[len(src) :],
            size=each.size,
            mtime_ns=each.mtime_ns,
            sha256=each.sha256,
        )
        session.delete(each)
        session.add(moved)


@router.delete("/files/{path:path}", status_code=204)
def remove(space: str, path: str, caller: Caller, state: State, recursive: bool = False) -> None:
    with state.db.session() as session:
        row, files = open_space(session, state, caller, space, Right.WRITE, path)
        state.usage.freed(row.id, files.remove(path, recursive=recursive))
        forget_checksums(session, row.id, normalise_relpath(path))
        audit.record(session, caller, "file.delete", f"space:{space}", path=path)
