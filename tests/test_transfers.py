"""Uploads and downloads through the SDK: byte-exact, ranged, atomic, within quota."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from primage.errors import Conflict, InsufficientStorage, NotFound, RangeNotSatisfiable
from primage.samples import sample_images
from tests.harness import RunningServer, eventually


def test_sample_images_round_trip_byte_for_byte(server: RunningServer, tmp_path: Path) -> None:
    sdk = server.client()
    sdk.create_space("med")
    for image in sample_images():
        stored = sdk.upload("med", f"in/{image.name}", image)
        expected = hashlib.sha256(image.read_bytes()).hexdigest()
        assert stored.sha256 == expected and stored.size == image.stat().st_size
        back = sdk.download("med", f"in/{image.name}", tmp_path / image.name)
        assert hashlib.sha256(back.read_bytes()).hexdigest() == expected
        assert sdk.stat("med", f"in/{image.name}").sha256 == expected


def test_many_small_uploads_at_once_all_land(server: RunningServer) -> None:
    """More uploads at once than the database pool has connections, to a space with a quota
    (each reserves room): none waits for a connection another holds, none fails."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    api = server.client()
    api.create_space("burst", quota_bytes=1 << 30)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    bodies = {f"slice-{i:03}.dcm": os.urandom(4096) for i in range(120)}

    def put(item: tuple[str, bytes]) -> int:
        name, body = item
        url = f"{server.url}/spaces/burst/content/{name}"
        return httpx.put(url, content=body, headers=headers, timeout=120).status_code

    with ThreadPoolExecutor(max_workers=60) as pool:
        codes = list(pool.map(put, bodies.items()))
    assert codes == [200] * len(bodies)
    listed = {i.name: i.sha256 for i in api.listdir("burst", "")}
    assert listed == {n: hashlib.sha256(b).hexdigest() for n, b in bodies.items()}


def test_range_requests(sqlite_server: RunningServer) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("r")
    data = os.urandom(300_000)
    sdk.upload("r", "blob.bin", data)
    assert sdk.read_bytes("r", "blob.bin") == data
    assert sdk.read_bytes("r", "blob.bin", start=1000, end=2000) == data[1000:2000]
    assert sdk.read_bytes("r", "blob.bin", start=299_990) == data[299_990:]
    with pytest.raises(RangeNotSatisfiable, match="past the end"):
        sdk.read_bytes("r", "blob.bin", start=400_000)


def test_checksum_forgotten_when_file_changes_outside_the_api(sqlite_server: RunningServer) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("c")
    sdk.upload("c", "f.txt", b"one")
    (sqlite_server.data_dir / "spaces" / "c" / "f.txt").write_bytes(b"changed by a job")
    assert sdk.stat("c", "f.txt").sha256 is None


def test_interrupted_upload_leaves_no_file_and_old_file_intact(
    sqlite_server: RunningServer,
) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("atomic")
    sdk.upload("atomic", "scan.dcm", b"old content")
    url = urlsplit(sqlite_server.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = (
            f"PUT /spaces/atomic/content/scan.dcm HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {sqlite_server.admin_token}\r\n"
            "Content-Length: 10000000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 500_000)
    # a brand-new file interrupted the same way, streamed and small (received whole)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = head.replace("scan.dcm", "new.dcm")
        sock.sendall(head.encode() + b"y" * 500_000)
    with socket.create_connection((url.hostname, url.port)) as sock:
        small = head.replace("new.dcm", "small.dcm").replace("10000000", "100000")
        sock.sendall(small.encode() + b"z" * 50_000)
    staging = sqlite_server.data_dir / "spaces" / ".staging"
    # the server notices the closed connections on its own time
    eventually(lambda: list(staging.iterdir()) == [], 15, "the staging folder empty")
    assert sdk.read_bytes("atomic", "scan.dcm") == b"old content"
    for name in ("new.dcm", "small.dcm"):
        with pytest.raises(NotFound):
            sdk.stat("atomic", name)


def test_quota_refuses_with_507_and_keeps_old_file(sqlite_server: RunningServer) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("small", quota_bytes=10_000)
    sdk.upload("small", "a.bin", b"a" * 6_000)
    with pytest.raises(InsufficientStorage, match=r"space 'small' quota exceeded"):
        sdk.upload("small", "b.bin", b"b" * 6_000)
    # replacing a file counts only the difference
    sdk.upload("small", "a.bin", b"c" * 9_000)
    with pytest.raises(InsufficientStorage):
        sdk.upload("small", "a.bin", b"d" * 12_000)
    assert sdk.read_bytes("small", "a.bin") == b"c" * 9_000
    # a streamed body of unknown length is stopped once it goes over
    with pytest.raises(InsufficientStorage):
        sdk.upload("small", "stream.bin", _Reader(b"e" * 20_000))
    assert [e.name for e in sdk.listdir("small")] == ["a.bin"]
    sdk.update_space("small", quota_bytes=0)  # 0 lifts the quota
    sdk.upload("small", "big.bin", b"f" * 50_000)


class _Reader:
    """A file-like object without a known length (forces chunked encoding)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        chunk, self.data = self.data[:4096], self.data[4096:]
        return chunk


def test_folder_operations(sqlite_server: RunningServer, tmp_path: Path) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("f")
    local = tmp_path / "tree"
    (local / "a" / "b").mkdir(parents=True)
    for i in range(5):
        (local / "a" / "b" / f"{i}.txt").write_text(str(i))
    (local / "top.txt").write_text("top")
    sent = sdk.upload_dir("f", "data", local)
    assert len(sent) == 6
    assert [e.name for e in sdk.listdir("f", "data")] == ["a", "top.txt"]
    assert sdk.stat("f", "data/a").type == "directory"
    with pytest.raises(Conflict, match="already exists"):
        sdk.move("f", "data/top.txt", "data/a/b/0.txt")
    sdk.move("f", "data/top.txt", "data/a/b/0.txt", overwrite=True)
    with pytest.raises(Conflict, match="not empty"):
        sdk.remove("f", "data/a")
    got = sdk.download_dir("f", "data", tmp_path / "back")
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in got) == [
        f"a/b/{i}.txt" for i in range(5)
    ]
    assert (tmp_path / "back" / "a" / "b" / "0.txt").read_text() == "top"
    sdk.remove("f", "data", recursive=True)
    assert sdk.listdir("f") == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real filesystem that fills up."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_gives_507_and_keeps_old_file(tmp_path: Path, small_disk: Path) -> None:
    server = RunningServer.start(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        env={"PRIMAGE_STORAGE_ROOT": str(small_disk)},
    )
    try:
        sdk = server.client()
        sdk.create_space("full")
        sdk.upload("full", "scan.dcm", b"old" * 1000)
        for size in (3 * 1024 * 1024, 6 * 1024 * 1024):  # received whole; streamed
            with pytest.raises(
                InsufficientStorage, match="disk full while writing to space 'full'"
            ):
                sdk.upload("full", "scan.dcm", os.urandom(size))
        assert sdk.read_bytes("full", "scan.dcm") == b"old" * 1000
        assert list((small_disk / ".staging").iterdir()) == []
        sdk.upload("full", "after.txt", b"there is room again")
    finally:
        server.stop()


def test_no_overwrite_and_files_in_the_way(sqlite_server: RunningServer, tmp_path: Path) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("keep")
    sdk.upload("keep", "scan.dcm", b"first")
    with pytest.raises(Conflict, match="already exists"):
        sdk.upload("keep", "scan.dcm", b"second", overwrite=False)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024))  # the streamed path too
    with pytest.raises(Conflict, match="already exists"):
        sdk.upload("keep", "scan.dcm", big, overwrite=False)
    assert sdk.read_bytes("keep", "scan.dcm") == b"first"
    assert sdk.upload("keep", "new.dcm", b"fresh", overwrite=False).size == 5
    with pytest.raises(Conflict, match="a file stands where a folder is needed"):
        sdk.upload("keep", "scan.dcm/inner.dcm", b"x")
    refused = sqlite_server.cli("put", "--no-overwrite", str(big), "keep:scan.dcm")
    assert refused.code == 1 and "already exists" in refused.err
