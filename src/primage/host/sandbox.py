"""The sandbox that every local task and process app runs in: Linux namespaces (bubblewrap).

Inside it a process:

- runs as the sandbox's uid and gid (``sandbox_uid``, neither root nor the server's when the server
  is root), with no capabilities and ``no_new_privs``: no mount, no remount, no ptrace of others;
- sees a read-only system (``/usr``, ``/etc``, the platform's Python environment), a private
  ``/tmp``, ``/proc`` and ``/dev``, its own pid, IPC and UTS namespaces, its working folder, and
  exactly the folders it is given (spaces, read-only where asked), at their real paths: never
  the data dir, the database, credentials, keys, other jobs' folders or other spaces;
- has a network namespace of its own: no network (only ``lo``), or outbound only through
  user-mode networking that cannot reach the host's loopback (``outbound``); apps are reached
  through a socket the server hands in (``relay.py``).

As root, bwrap sets the namespaces up (it can reach folders below ``/root`` or a 0700 pytest
folder, which the sandbox uid could not) and ``setpriv`` drops to the sandbox uid inside, so that
what a task writes is owned by that uid, not by root (``--uid`` in a user namespace that root
creates would map back to root). One uid serves every task: the mount namespaces keep them apart,
and any task may write what an earlier one left in a space it may write. As another user,
bwrap runs unprivileged in a user namespace of its own and tasks keep that user's uid.

A start costs about 10 ms here (``benchmarks/htc_overhead.py`` shows it per task).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from primage.config import Settings
from primage.local import config_file

Network = Literal["none", "outbound"]

SYSTEM = ("/usr", "/etc")
MERGED = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # links into /usr, or folders
USER = "primage-task"
NULL_FILE = ["--ro-bind", "/dev/null"]
INSTALL = "install bubblewrap (apt-get install bubblewrap) or, on a single-user machine, set "
INSTALL += 'sandbox = "off"'


@dataclass(frozen=True)
class Bind:
    """A host folder the sandboxed process sees at ``path``: the same folder, or ``source``
    (a link inside a space, resolved)."""

    path: str
    read_only: bool
    source: str = ""


class Sandbox:
    """How to run a command confined; :meth:`wrap` gives its argv."""

    def __init__(self, uid: int, gid: int, hidden: Iterable[Path]) -> None:
        self.privileged = os.geteuid() == 0
        self.uid, self.gid = (uid, gid) if self.privileged else (os.getuid(), os.getgid())
        environment = python_environment()
        self._base = self._system_args(environment, [str(p) for p in hidden])

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox | None:
        """The sandbox, or None when an admin turned it off."""
        if settings.sandbox == "off":
            return None
        hidden = [settings.data_dir, settings.storage_path, settings.jobs_path, config_file()]
        return cls(settings.sandbox_uid, settings.sandbox_gid, hidden)

    @property
    def owner(self) -> tuple[int, int] | None:
        """Who must own the folders sandboxed processes write (None: the server's user)."""
        return (self.uid, self.gid) if self.privileged else None

    @functools.cached_property
    def problem(self) -> str | None:
        """Why no sandbox can be made here (one line naming what to install), or None."""
        missing = [t for t in ("bwrap", "setpriv") if shutil.which(t) is None]
        if not self.privileged:
            missing = [t for t in missing if t != "setpriv"]
        if missing:
            return f"{' and '.join(missing)} not found: {INSTALL}"
        try:
            done = subprocess.run(
                self.wrap(["true"], binds=[], workdir="/"),
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap cannot start ({exc}): {INSTALL}"
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return f"bwrap cannot make a sandbox here ({why}): {INSTALL}"
        return None

    def _system_args(self, environment: list[str], hidden: list[str]) -> list[str]:
        # No --die-with-parent: tasks outlive their runner and apps the server, to be adopted.
        # Stopping one signals its process group, which holds bwrap and what runs inside.
        args = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-net"]
        args.append("--unshare-cgroup-try")
        if self.privileged:  # keep only what setpriv needs to drop to the sandbox uid
            args += ["--cap-drop", "ALL"]
            args += [a for c in ("SETUID", "SETGID", "SETPCAP") for a in ("--cap-add", f"CAP_{c}")]
        else:
            args += ["--unshare-user", "--disable-userns"]
        for path in SYSTEM:
            args += ["--ro-bind", path, path]
        for path in MERGED:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        made: set[str] = set()
        for path in environment:
            args += [*parents(path, made), "--ro-bind", path, path]
        for path in hidden:  # the platform's own folders, where the environment holds them
            if any(inside(path, env) for env in environment) and os.path.exists(path):
                empty = ["--perms", "0755", "--tmpfs"] if os.path.isdir(path) else NULL_FILE
                args += [*empty, path]
        return args

    def wrap(
        self,
        argv: Sequence[str],
        *,
        binds: Sequence[Bind],
        workdir: str,
        network: Network = "none",
    ) -> list[str]:
        """``argv`` run confined, seeing ``binds`` and starting in ``workdir`` (one of them)."""
        args = ["bwrap", *self._base]
        made: set[str] = set()
        for bind in binds:
            args += parents(bind.path, made)
            source = bind.source or bind.path
            args += ["--ro-bind" if bind.read_only else "--bind", source, bind.path]
        args += ["--chdir", workdir, "--"]
        if self.privileged:
            args += ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
            args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        args += argv
        if network == "outbound":
            return [sys.executable, "-m", "primage.host.outbound", *args]
        return args

    def describe(self) -> str:
        who = f"uid {self.uid}" if self.privileged else f"the server's uid ({self.uid})"
        return f"on: local tasks and process apps run in bubblewrap as {who}, network off"


def sandboxed(env: Mapping[str, str]) -> dict[str, str]:
    """A sandboxed process's environment: home and temporary files in its private /tmp, the
    sandbox's user name (the server's home and TMPDIR do not exist in there)."""
    return {**env, "HOME": "/tmp", "TMPDIR": "/tmp", "USER": USER, "LOGNAME": USER}


def python_environment() -> list[str]:
    """The folders the platform's Python needs read-only: its prefixes, its path, and the
    projects installed in editable mode (PEP 610's ``direct_url.json``); outermost only, and
    none already under the system folders."""
    # sys.path[0] is the script's folder, or the current one under -m: not the environment.
    search = sys.path if sys.flags.safe_path else sys.path[1:]
    paths = {sys.base_prefix, sys.prefix, *(p for p in search if p and os.path.isdir(p))}
    for dist in importlib.metadata.distributions():
        text = dist.read_text("direct_url.json")
        if not text:
            continue
        info = json.loads(text)
        if info.get("dir_info", {}).get("editable") and info.get("url", "").startswith("file:"):
            paths.add(unquote(urlparse(info["url"]).path))
    real = sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})
    outermost: list[str] = []
    for path in real:
        if not any(inside(path, kept) for kept in [*outermost, *SYSTEM]):
            outermost.append(path)
    return outermost


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def parents(path: str, made: set[str]) -> list[str]:
    """``--dir`` for each folder above ``path`` that bwrap has not made yet: the ones it makes
    by itself are mode 0700, which the sandbox uid could not cross."""
    args: list[str] = []
    parts = Path(path).parts[1:-1]
    for i in range(len(parts)):
        folder = "/" + "/".join(parts[: i + 1])
        if folder not in made and not any(inside(folder, s) for s in (*SYSTEM, *MERGED)):
            made.add(folder)
            args += ["--perms", "0755", "--dir", folder]
    return args
