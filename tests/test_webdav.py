"""The WebDAV gateway through real clients: rclone (the mount's own client) and httpx.

Protocol checks in the manner of litmus (PROPFIND depths, COPY/MOVE with Overwrite, LOCK/UNLOCK,
conditional GET) and the platform's policy over WebDAV: read-only and path-restricted tokens,
other users' spaces, Basic authentication, no way out of a space, atomic PUTs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree

import httpx
from pydicom.data import get_testdata_file

from tests.harness import RunningServer, require
from tests.idp import IdentityProvider

DAV = "{DAV:}"
SAMPLES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]


def rclone(server: RunningServer, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    require(None if shutil.which("rclone") else "rclone is not installed (apt-get install rclone)")
    env = {
        **os.environ,
        "RCLONE_WEBDAV_URL": f"{server.url}/dav/",
        "RCLONE_WEBDAV_VENDOR": "other",
        "RCLONE_WEBDAV_BEARER_TOKEN": token,
    }
    return subprocess.run(
        ["rclone", "--config", os.devnull, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def dav(
    server: RunningServer, method: str, path: str, token: str | None = None, **kw: object
) -> httpx.Response:
    headers = dict(kw.pop("headers", {}) or {})  # type: ignore[call-overload]
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{server.url}/dav{path}", headers=headers, **kw)  # type: ignore[arg-type]


def hrefs(response: httpx.Response) -> list[str]:
    tree = ElementTree.fromstring(response.content)
    return sorted(e.text or "" for e in tree.iter(f"{DAV}href"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_rclone_round_trip_of_dicom_files(sqlite_server: RunningServer, tmp_path: Path) -> None:
    api, token = sqlite_server.client(), sqlite_server.admin_token
    api.create_space("lab")
    local = tmp_path / "dicom"
    local.mkdir()
    for name in SAMPLES:
        shutil.copy(get_testdata_file(name), local / name)

    done = rclone(sqlite_server, token, "copy", str(local), ":webdav:lab/dicom")
    assert done.returncode == 0, done.stderr
    for name in SAMPLES:  # what arrived is what was sent, and the API knows its checksum
        assert api.stat("lab", f"dicom/{name}").sha256 == sha256((local / name).read_bytes())

    listing = json.loads(rclone(sqlite_server, token, "lsjson", "-R", ":webdav:lab").stdout)
    sizes = {e["Path"]: e["Size"] for e in listing if not e["IsDir"]}
    assert sizes == {f"dicom/{n}": (local / n).stat().st_size for n in SAMPLES}

    back = tmp_path / "back"
    assert rclone(sqlite_server, token, "copy", ":webdav:lab/dicom", str(back)).returncode == 0
    for name in SAMPLES:
        assert (back / name).read_bytes() == (local / name).read_bytes()

    moved = rclone(
        sqlite_server, token, "moveto", ":webdav:lab/dicom/rtplan.dcm", ":webdav:lab/plans/p.dcm"
    )
    assert moved.returncode == 0, moved.stderr
    copied = rclone(
        sqlite_server, token, "copyto", ":webdav:lab/plans/p.dcm", ":webdav:lab/plans/q.dcm"
    )
    assert copied.returncode == 0, copied.stderr
    assert {f.name for f in api.listdir("lab", "plans")} == {"p.dcm", "q.dcm"}
    assert rclone(sqlite_server, token, "purge", ":webdav:lab/plans").returncode == 0
    assert "plans" not in {f.name for f in api.listdir("lab")}


def test_protocol_depths_copy_move_locks_and_caching(sqlite_server: RunningServer) -> None:
    api, token = sqlite_server.client(), sqlite_server.admin_token
    api.create_space("lab")
    api.upload("lab", "a/one.dcm", b"one")
    api.upload("lab", "a/b/two.dcm", b"two")

    assert hrefs(dav(sqlite_server, "PROPFIND", "/lab/a/", token, headers={"Depth": "0"})) == [
        "/dav/lab/a/"
    ]
    assert hrefs(dav(sqlite_server, "PROPFIND", "/lab/a/", token, headers={"Depth": "1"})) == [
        "/dav/lab/a/", "/dav/lab/a/b/", "/dav/lab/a/one.dcm"
    ]  # fmt: skip
    assert hrefs(dav(sqlite_server, "PROPFIND", "/", token, headers={"Depth": "1"})) == [
        "/dav/", "/dav/lab/"
    ]  # fmt: skip

    dest = {"Destination": f"{sqlite_server.url}/dav/lab/a/b/two.dcm"}
    refused = dav(
        sqlite_server, "COPY", "/lab/a/one.dcm", token, headers={**dest, "Overwrite": "F"}
    )
    assert refused.status_code == 412 and api.read_bytes("lab", "a/b/two.dcm") == b"two"
    replaced = dav(
        sqlite_server, "MOVE", "/lab/a/one.dcm", token, headers={**dest, "Overwrite": "T"}
    )
    assert replaced.status_code == 204 and api.read_bytes("lab", "a/b/two.dcm") == b"one"

    got = dav(sqlite_server, "GET", "/lab/a/b/two.dcm", token)
    assert got.headers["ETag"] and got.headers["Last-Modified"]
    same = {"If-None-Match": got.headers["ETag"]}
    assert dav(sqlite_server, "GET", "/lab/a/b/two.dcm", token, headers=same).status_code == 304

    body = (
        '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
        "</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"
    )
    locked = dav(sqlite_server, "LOCK", "/lab/a/b/two.dcm", token, content=body)
    assert locked.status_code == 200
    lock = locked.headers["Lock-Token"]
    assert dav(sqlite_server, "PUT", "/lab/a/b/two.dcm", token, content=b"x").status_code == 423
    with_lock = {"If": f"({lock})"}
    assert (
        dav(
            sqlite_server, "PUT", "/lab/a/b/two.dcm", token, content=b"x", headers=with_lock
        ).status_code
        == 204
    )
    assert (
        dav(
            sqlite_server, "UNLOCK", "/lab/a/b/two.dcm", token, headers={"Lock-Token": lock}
        ).status_code
        == 204
    )
    assert dav(sqlite_server, "PUT", "/lab/a/b/two.dcm", token, content=b"y").status_code == 204


def test_policy_applies_over_webdav(sqlite_server: RunningServer) -> None:
    admin = sqlite_server.client()
    owner_token = admin.create_user("owner").token
    other_token = admin.create_user("other").token
    owner = sqlite_server.client(owner_token)
    owner.create_space("lab")
    owner.upload("lab", "data/scan.dcm", b"DICM secret")
    owner.upload("lab", "allowed/a.dcm", b"allowed")
    sqlite_server.client(other_token).create_space("elsewhere")
    read_only = owner.create_token("ro", read_only=True).token
    confined = owner.create_token("p", space="lab", path="allowed").token

    anonymous = dav(sqlite_server, "PROPFIND", "/lab/")
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
    basic = httpx.request("PROPFIND", f"{sqlite_server.url}/dav/lab/", auth=("me", owner_token))
    assert basic.status_code == 207

    assert dav(sqlite_server, "GET", "/lab/data/scan.dcm", read_only).status_code == 200
    assert (
        dav(sqlite_server, "PUT", "/lab/data/new.dcm", read_only, content=b"x").status_code == 403
    )
    assert dav(sqlite_server, "DELETE", "/lab/data/scan.dcm", read_only).status_code == 403

    assert dav(sqlite_server, "PROPFIND", "/lab/", confined).status_code == 403
    assert dav(sqlite_server, "PROPFIND", "/lab/allowed/", confined).status_code == 207
    assert (
        dav(sqlite_server, "PUT", "/lab/allowed/b.dcm", confined, content=b"b").status_code == 201
    )
    assert dav(sqlite_server, "PUT", "/lab/data/b.dcm", confined, content=b"b").status_code == 403

    listing = dav(sqlite_server, "PROPFIND", "/", other_token, headers={"Depth": "1"})
    assert hrefs(listing) == ["/dav/", "/dav/elsewhere/"]  # never another user's space
    for method in ("GET", "PROPFIND"):
        denied = dav(sqlite_server, method, "/lab/data/scan.dcm", other_token)
        assert denied.status_code == 403 and "secret" not in denied.text
        assert set(denied.json()) == {"error", "detail"}
    steal = {"Destination": f"{sqlite_server.url}/dav/elsewhere/x.dcm"}
    assert (
        dav(sqlite_server, "COPY", "/lab/data/scan.dcm", owner_token, headers=steal).status_code
        == 403
    )

    assert dav(sqlite_server, "MKCOL", "/newspace/", owner_token).status_code == 403
    assert dav(sqlite_server, "DELETE", "/lab/", owner_token).status_code == 403
    assert dav(sqlite_server, "GET", "/.staging/", owner_token).status_code == 404

    # a symbolic link from one space into another is not a way in
    storage = sqlite_server.data_dir / "spaces"
    os.symlink(storage / "elsewhere", storage / "lab" / "data" / "link")
    assert dav(sqlite_server, "PROPFIND", "/lab/data/link/", owner_token).status_code in (403, 404)


def test_interrupted_put_leaves_the_old_file(sqlite_server: RunningServer) -> None:
    api = sqlite_server.client()
    api.create_space("lab")
    api.upload("lab", "scan.dcm", b"old contents")
    host, port = sqlite_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"PUT /dav/lab/scan.dcm HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n"
            f"Authorization: Bearer {sqlite_server.admin_token}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 300_000)
    time.sleep(1.0)
    assert api.read_bytes("lab", "scan.dcm") == b"old contents"
    staging = sqlite_server.data_dir / "spaces" / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_provider_access_token_over_webdav(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    token = idp.access_token("alice")
    sqlite_api = oidc_server.client(token)
    sqlite_api.create_space("mine")
    assert dav(oidc_server, "PUT", "/mine/a.dcm", token, content=b"a").status_code == 201
    assert hrefs(dav(oidc_server, "PROPFIND", "/mine/", token, headers={"Depth": "1"})) == [
        "/dav/mine/", "/dav/mine/a.dcm"
    ]  # fmt: skip
