"""Quotas that hold under concurrency: parallel uploads, a crash mid-upload, WebDAV, and what jobs
write. Real server, real HTTP, real jobs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from primage.errors import InsufficientStorage
from tests.harness import RunningServer

MiB = 1024 * 1024


@pytest.fixture
def platform(sandboxed_server: RunningServer) -> RunningServer:
    return sandboxed_server


def auth(platform: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform.admin_token}"}


def test_parallel_uploads_never_pass_the_quota(platform: RunningServer) -> None:
    api = platform.client()
    api.create_space("small", quota_bytes=10 * MiB)
    body = b"x" * (3 * MiB)

    def put(i: int) -> int:
        url = f"{platform.url}/spaces/small/content/f{i}.bin"
        return httpx.put(url, content=body, headers=auth(platform), timeout=60).status_code

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(put, range(10)))

    assert sorted(codes) == [200] * 3 + [507] * 7, codes
    assert api.space("small").size_bytes == 9 * MiB
    api.upload("small", "rest.bin", b"y" * MiB)  # what was reserved and refused is free again
    with pytest.raises(InsufficientStorage, match="quota exceeded"):
        api.upload("small", "over.bin", b"z")


def test_a_crash_mid_upload_leaves_no_staged_bytes_and_no_reservation(
    platform: RunningServer,
) -> None:
    api = platform.client()
    api.create_space("small", quota_bytes=8 * MiB)
    staging = platform.data_dir / "spaces" / ".staging"
    sent = threading.Event()

    def body() -> Iterator[bytes]:  # streamed, no length: reserved as it grows
        for _ in range(4):
            yield b"x" * MiB
        sent.set()
        threading.Event().wait(30)  # then stall, as a client mid-transfer when the server dies

    def upload() -> None:
        url = f"{platform.url}/spaces/small/content/big.bin"
        with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
            httpx.put(url, content=body(), headers=auth(platform), timeout=60)

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    assert sent.wait(30)
    assert any(staging.iterdir()), "the upload should be staged by now"

    platform.kill()
    restarted = platform.restart()
    try:
        assert list(staging.iterdir()) == []
        restarted.client().upload("small", "whole.bin", b"y" * (8 * MiB))  # all of it is free
    finally:
        restarted.stop()


def test_webdav_uploads_keep_the_quota_too(platform: RunningServer) -> None:
    api = platform.client()
    api.create_space("small", quota_bytes=MiB)
    url = f"{platform.url}/dav/small/big.bin"

    refused = httpx.put(url, content=b"x" * (2 * MiB), headers=auth(platform))
    kept = httpx.put(
        f"{platform.url}/dav/small/fits.bin", content=b"y" * 1000, headers=auth(platform)
    )

    assert refused.status_code == 507, refused.text
    assert refused.json()["error"] == "insufficient_storage"
    assert "quota exceeded" in refused.json()["detail"]
    assert kept.status_code in (201, 204)
    assert [f.name for f in api.listdir("small")] == ["fits.bin"]


def test_what_a_job_writes_counts_once_it_ends(platform: RunningServer) -> None:
    api = platform.client()
    api.create_space("small", quota_bytes=10 * MiB)
    job = api.submit_job(
        {"command": "head -c 8388608 /dev/zero > {spaces.small}/made.bin", "spaces": ["small"]}
    )
    assert api.wait_job(job.id, poll=0.2, timeout=60).state == "succeeded"

    with pytest.raises(InsufficientStorage, match="quota exceeded"):
        api.upload("small", "more.bin", b"x" * (3 * MiB))
    api.upload("small", "fits.bin", b"x" * MiB)
