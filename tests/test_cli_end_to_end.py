"""A researcher's session through the real CLI, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from primage.samples import sample_images
from tests.harness import RunningServer


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_space_lifecycle_through_the_cli(server: RunningServer, tmp_path: Path) -> None:
    assert server.cli("space", "create", "scans", "--quota", "50M").code == 0
    listed = json.loads(server.cli("space", "ls", "--json").out)
    assert [(s["name"], s["role"], s["quota_bytes"]) for s in listed] == [
        ("scans", "owner", 50 * 1024 * 1024)
    ]

    images = sample_images()
    folder = tmp_path / "upload"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    put = server.cli("put", str(folder), "scans:incoming/")
    assert put.code == 0, put.err

    tree = json.loads(server.cli("ls", "scans:incoming", "-R", "--json").out)
    files = {e["path"]: e["sha256"] for e in tree if e["type"] == "file"}
    assert files == {f"incoming/upload/{p.name}": sha(p) for p in images}, "checksums listed"
    assert [e["path"] for e in tree if e["type"] == "directory"] == ["incoming/upload"]

    stat = json.loads(server.cli("stat", "scans:incoming/upload/CT_small.dcm", "--json").out)
    assert stat["sha256"] == sha(folder / "CT_small.dcm")

    assert server.cli("mkdir", "scans:results/seg").code == 0
    moved = server.cli("mv", "scans:incoming/upload/CT_small.dcm", "scans:results/ct.dcm")
    assert moved.code == 0, moved.err
    moved_stat = json.loads(server.cli("stat", "scans:results/ct.dcm", "--json").out)
    assert moved_stat["sha256"] == stat["sha256"], "the recorded checksum follows a move"

    got = server.cli("get", "scans:results/ct.dcm", str(tmp_path / "back.dcm"))
    assert got.code == 0, got.err
    assert sha(tmp_path / "back.dcm") == stat["sha256"]

    fetched = tmp_path / "fetched"
    fetched.mkdir()
    assert server.cli("get", "scans:incoming", str(fetched)).code == 0
    for image in images[1:]:
        assert sha(fetched / "incoming" / "upload" / image.name) == sha(image)

    info = json.loads(server.cli("space", "info", "scans", "--json").out)
    assert info["file_count"] == len(images)
    assert info["size_bytes"] == sum(p.stat().st_size for p in images)

    refused = server.cli("rm", "scans:incoming")
    assert refused.code == 1 and "recursive" in refused.err
    assert server.cli("rm", "-r", "scans:incoming").code == 0
    assert server.cli("space", "rm", "scans").code == 1  # still holds results/ct.dcm
    assert server.cli("space", "rm", "scans", "--force", stdin="wrong\n").code == 1
    assert server.cli("space", "rm", "scans", "--force", stdin="scans\n").code == 0
    assert json.loads(server.cli("space", "ls", "--json").out) == []


def test_sharing_with_a_user_and_a_group(server: RunningServer) -> None:
    alice = server.cli("admin", "user", "create", "alice").out.strip()
    bob = server.cli("admin", "user", "create", "bob").out.strip()
    assert server.cli("admin", "group", "create", "radiology").code == 0
    assert server.cli("admin", "group", "add", "radiology", "bob").code == 0

    assert server.cli("space", "create", "study", token=alice).code == 0
    assert server.cli("space", "ls", "--json", token=bob).out.strip() == "[]"

    assert server.cli("space", "share", "study", "radiology", "--group", token=alice).code == 0
    seen = json.loads(server.cli("space", "ls", "--json", token=bob).out)
    assert [(s["name"], s["role"]) for s in seen] == [("study", "viewer")]
    denied = server.cli("mkdir", "study:bob-was-here", token=bob)
    assert denied.code == 1
    assert "write access to space 'study'" in denied.err

    share = server.cli("space", "share", "study", "bob", "--role", "editor", token=alice)
    assert share.code == 0
    assert server.cli("mkdir", "study:bob-was-here", token=bob).code == 0

    assert server.cli("space", "unshare", "study", "bob", token=alice).code == 0
    assert server.cli("mkdir", "study:again", token=bob).code == 1
    assert server.cli("ls", "study:", token=bob).code == 0  # still a viewer through the group

    assert server.cli("admin", "group", "remove", "radiology", "bob").code == 0
    gone = server.cli("ls", "study:", token=bob)
    assert gone.code == 1 and "read access to space 'study'" in gone.err


def test_errors_are_one_readable_line(sqlite_server: RunningServer) -> None:
    result = sqlite_server.cli("ls", "nosuch:")
    assert result.code == 1
    assert result.err.strip() == "error: no space named 'nosuch' (primage space ls lists yours)"
    bad = sqlite_server.cli("space", "create", "Not Valid")
    assert bad.code == 1 and len(bad.err.strip().splitlines()) == 1
    assert "invalid space name" in bad.err
    missing = sqlite_server.cli("put", "/no/such/file", "x:")
    assert missing.code != 0 and "Traceback" not in missing.err
    unauth = sqlite_server.cli("space", "ls", token="prm_0000000000000000_nope")
    assert unauth.code == 1 and "invalid token" in unauth.err
