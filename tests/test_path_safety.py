"""Paths that try to leave a space are refused with 400, and nothing outside is touched."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from primage.errors import UnsafePath
from primage.storage.paths import normalise_relpath, resolve
from tests.harness import RunningServer


@pytest.mark.parametrize(
    "path",
    ["../x", "a/../../x", "/etc/passwd", "a\x00b", "x" * 256, "a/" + "é" * 128, "a/" * 2100],
)
def test_lexically_unsafe_paths(path: str) -> None:
    with pytest.raises(UnsafePath):
        normalise_relpath(path)


def test_normal_forms() -> None:
    assert normalise_relpath("a//b/./c/") == "a/b/c"
    assert normalise_relpath("") == ""
    assert normalise_relpath("x" * 255) == "x" * 255


def test_symlinks_out_of_the_space_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "space", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (root / "inner").mkdir()
    os.symlink(outside, root / "escape")
    os.symlink(outside / "f", root / "leaf")
    os.symlink(root / "inner", root / "ok")
    with pytest.raises(UnsafePath, match="symbolic link"):
        resolve(root, "escape/f")
    with pytest.raises(UnsafePath, match="symbolic link"):
        resolve(root, "leaf")
    assert resolve(root, "ok/f")[1] == (root / "inner" / "f").resolve()


RAW_ATTACKS = [
    "%2e%2e/%2e%2e/etc/passwd",
    "a/%2e%2e/%2e%2e/outside.txt",
    "a%00b",
    "x" * 300,
    "/etc/passwd",
]


@pytest.mark.parametrize("raw", RAW_ATTACKS)
def test_http_attacks_get_400_and_touch_nothing(sqlite_server: RunningServer, raw: str) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("safe")
    before = sorted(p.name for p in sqlite_server.data_dir.iterdir())
    headers = {"Authorization": f"Bearer {sqlite_server.admin_token}"}
    with httpx.Client(base_url=sqlite_server.url, headers=headers) as http:
        for method, prefix in [("PUT", "content"), ("GET", "content"), ("GET", "files")]:
            url = httpx.URL(f"{sqlite_server.url}/spaces/safe/{prefix}/{raw}")
            # keep the dot segments: build the raw path by hand
            request = http.build_request(method, url, content=b"evil" if method == "PUT" else None)
            request.url = request.url.copy_with(raw_path=f"/spaces/safe/{prefix}/{raw}".encode())
            response = http.send(request)
            assert response.status_code == 400, (method, raw, response.text)
            assert response.json()["error"] == "unsafe_path"
    assert sorted(p.name for p in sqlite_server.data_dir.iterdir()) == before
    assert not (sqlite_server.data_dir / "outside.txt").exists()


def test_symlink_placed_by_a_job_cannot_be_followed(sqlite_server: RunningServer) -> None:
    sdk = sqlite_server.client()
    sdk.create_space("links")
    secret = sqlite_server.data_dir / "credentials.json"
    os.symlink(secret, sqlite_server.data_dir / "spaces" / "links" / "creds")
    headers = {"Authorization": f"Bearer {sqlite_server.admin_token}"}
    response = httpx.get(f"{sqlite_server.url}/spaces/links/content/creds", headers=headers)
    assert response.status_code == 400
    assert sqlite_server.admin_token not in response.text
    put = httpx.put(
        f"{sqlite_server.url}/spaces/links/content/creds", headers=headers, content=b"x"
    )
    assert put.status_code == 400
    assert "token" in secret.read_text()
