"""``primage mount``: a space as a real FUSE folder (rclone over the WebDAV gateway).

Files are written and read through the mount with ordinary file operations and checked against
the API's SHA-256; a job's outputs appear in the mount; the mount outlives a server restart and
an access token's expiry; a read-only mount refuses writes; a space the user cannot read is
refused before anything is mounted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.data import get_testdata_file

from tests.harness import RunningServer, eventually, free_port, primage, require
from tests.idp import IdentityProvider

SAMPLES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]


def _fuse_missing() -> str | None:
    if shutil.which("rclone") is None or shutil.which("fusermount3") is None:
        return "rclone and FUSE are not installed (apt-get install rclone fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this machine)"
    return None


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    require(_fuse_missing())
    env = {**os.environ, "PRIMAGE_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    yield env
    for line in Path("/proc/self/mounts").read_text().splitlines():
        folder = line.split()[1]
        if folder.startswith(str(tmp_path)):  # never leave a mount behind a failed test
            subprocess.run(["fusermount3", "-uz", folder], capture_output=True)


def for_server(
    env: dict[str, str], server: RunningServer, token: str | None = None
) -> dict[str, str]:
    return {**env, "PRIMAGE_SERVER": server.url, "PRIMAGE_TOKEN": token or server.admin_token}


def test_dicom_files_and_job_outputs_through_the_mount(
    sqlite_server: RunningServer, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env, api = for_server(cli_env, sqlite_server), sqlite_server.client()
    api.create_space("study")
    api.upload("study", "from-api.dcm", get_testdata_file("rtplan.dcm"))
    folder = tmp_path / "study"
    mounted = primage("mount", "study", str(folder), "--no-cache", env=env)
    assert mounted.returncode == 0, mounted.stderr
    assert "study" in primage("mounts", env=env).stdout

    for name in SAMPLES:  # ordinary file copies into the mount
        shutil.copy(get_testdata_file(name), folder / name)
    for name in SAMPLES:  # stored whole, and at once: close returns when the server has it
        sent = Path(get_testdata_file(name)).read_bytes()
        assert api.stat("study", name).sha256 == hashlib.sha256(sent).hexdigest()
    assert (folder / "from-api.dcm").read_bytes() == Path(
        get_testdata_file("rtplan.dcm")
    ).read_bytes()

    job = api.submit_job(
        {"kind": "htc", "inputs": {"space": "study", "glob": "*.dcm"},
         "command": "sha256sum {input} > {output_dir}/{input_stem}.sha256"}
    )  # fmt: skip
    assert api.wait_job(job.id, timeout=60).state == "succeeded"
    outputs = folder / "outputs" / str(job.id)
    eventually(lambda: outputs.is_dir() and len(list(outputs.iterdir())) == len(SAMPLES) + 1)
    line = (outputs / "CT_small.sha256").read_text()
    assert line.startswith(
        hashlib.sha256(Path(get_testdata_file("CT_small.dcm")).read_bytes()).hexdigest()
    )

    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("first")
    os.rename(folder / "notes" / "a.txt", folder / "notes" / "b.txt")
    assert api.read_bytes("study", "notes/b.txt") == b"first"
    (folder / "notes" / "b.txt").unlink()
    assert [f.name for f in api.listdir("study", "notes")] == []

    assert primage("umount", str(folder), env=env).returncode == 0
    assert "no spaces mounted" in primage("mounts", env=env).stdout


def test_read_only_mount_and_refusal_before_mounting(
    sqlite_server: RunningServer, cli_env: dict[str, str], tmp_path: Path
) -> None:
    api = sqlite_server.client()
    api.create_space("study")
    api.upload("study", "scan.dcm", b"DICM")
    env = for_server(cli_env, sqlite_server)
    folder = tmp_path / "ro"
    assert primage("mount", "--read-only", "study", str(folder), env=env).returncode == 0
    assert (folder / "scan.dcm").read_bytes() == b"DICM"
    with pytest.raises(OSError) as refused:
        (folder / "new.dcm").write_bytes(b"no")
    assert refused.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    assert [f.name for f in api.listdir("study")] == ["scan.dcm"]  # nothing written
    assert primage("umount", str(folder), env=env).returncode == 0

    stranger = api.create_user("stranger").token
    denied = primage(
        "mount", "study", str(folder), env=for_server(cli_env, sqlite_server, stranger)
    )
    assert denied.returncode == 1
    assert denied.stderr.startswith("error:") and "read access" in denied.stderr
    assert str(folder) not in Path("/proc/self/mounts").read_text()


def test_mount_keeps_working_across_a_server_restart(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    server = RunningServer.start(
        tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", port=free_port()
    )
    try:
        server.client().create_space("study")
        env = for_server(cli_env, server)
        folder = tmp_path / "mnt"
        assert primage("mount", "study", str(folder), "--no-cache", env=env).returncode == 0
        (folder / "before.dcm").write_bytes(b"before")
        server.stop()
        server = server.restart()
        (folder / "after.dcm").write_bytes(b"after")  # the same mount, the new server
        assert server.client().read_bytes("study", "after.dcm") == b"after"
        assert sorted(os.listdir(folder)) == ["after.dcm", "before.dcm"]
        assert primage("umount", str(folder), env=env).returncode == 0
    finally:
        server.stop()


def test_token_expiry_during_a_mount_is_refreshed(
    idp: IdentityProvider, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = {**idp.server_env(leeway_seconds=0)}
    server = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        # a kept login whose access token expires in a few seconds; its refresh token is real
        tokens = idp.device_login("alice")
        short = idp.forge({"exp": int(time.time()) + 6, "sub": "alice"})
        credentials = tmp_path / "credentials.json"
        metadata = httpx.get(f"{idp.issuer}/.well-known/openid-configuration").json()
        credentials.write_text(json.dumps({"servers": {server.url: {
            "server": server.url, "provider": "egi", "issuer": idp.issuer,
            "client_id": "primage-cli", "token_endpoint": metadata["token_endpoint"],
            "refresh_token": tokens["refresh_token"], "access_token": short,
            "expires_at": time.time() + 6,
        }}}))  # fmt: skip
        user_env = {k: v for k, v in cli_env.items() if k != "PRIMAGE_TOKEN"}
        user_env.update(PRIMAGE_SERVER=server.url, PRIMAGE_CREDENTIALS=str(credentials))
        user_env["PRIMAGE_DATA_DIR"] = str(tmp_path / "no-admin")
        server.client(tokens["access_token"]).create_space("mine")
        folder = tmp_path / "mnt"
        mounted = primage("mount", "mine", str(folder), "--no-cache", env=user_env)
        assert mounted.returncode == 0, mounted.stderr
        (folder / "early.dcm").write_bytes(b"early")
        time.sleep(8)  # the mount's token has expired now
        (folder / "late.dcm").write_bytes(b"late")
        assert sorted(os.listdir(folder)) == ["early.dcm", "late.dcm"]
        kept = json.loads(credentials.read_text())["servers"][server.url]
        assert kept["access_token"] != short  # refreshed through the login, and kept
        assert primage("umount", str(folder), env=user_env).returncode == 0
    finally:
        server.stop()


def test_davfs2_mount_with_a_token_as_password(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    """The documented alternative client (docs/work-with-your-data-from-your-computer.md)."""
    require(
        None if shutil.which("mount.davfs") else "davfs2 is not installed (apt-get install davfs2)"
    )
    require(None if os.geteuid() == 0 else "mount.davfs with a config file needs root here")
    api = sqlite_server.client()
    api.create_space("study")
    api.upload("study", "a.dcm", b"DICM from the API")
    token = api.create_token("davfs2").token
    cache = Path(tempfile.mkdtemp(prefix="primage-davcache-"))  # the davfs2 user must reach it
    shutil.chown(cache, "root", "davfs2")
    cache.chmod(0o775)
    secrets = tmp_path / "secrets"
    secrets.write_text(f"{sqlite_server.url}/dav/study/ anyone {token}\n")
    secrets.chmod(0o600)
    conf = tmp_path / "davfs2.conf"
    conf.write_text(f"secrets {secrets}\ncache_dir {cache}\nask_auth 0\nbuf_size 64\n")
    folder = tmp_path / "mnt"
    folder.mkdir()
    url = f"{sqlite_server.url}/dav/study/"
    subprocess.run(["mount", "-t", "davfs", "-o", f"conf={conf}", url, str(folder)], check=True)
    try:
        assert "a.dcm" in os.listdir(folder)
        assert (folder / "a.dcm").read_bytes() == b"DICM from the API"
        (folder / "b.dcm").write_bytes(b"DICM from davfs2")
    finally:
        subprocess.run(["umount", str(folder)], check=True, timeout=120)  # waits for uploads
        shutil.rmtree(cache, ignore_errors=True)
    assert api.read_bytes("study", "b.dcm") == b"DICM from davfs2"
