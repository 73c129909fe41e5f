"""Processes on this machine: identity (PID + start time), liveness, and how commands are run."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

# Characters that make a command shell syntax; without them it is run directly (no /bin/sh),
# which halves the cost of launching a short task. GNU make decides the same way.
SHELL_CHARS = frozenset("#;&|<>(){}$`\\*?[]~!\n^")
_BUILTINS = """
    . : [ alias break case cd command continue eval exec exit export for getopts if read readonly
    return set shift source test times trap type ulimit umask unalias unset until wait while
"""
SHELL_WORDS = frozenset(_BUILTINS.split())


def argv_for(command: str) -> list[str]:
    """The argv that runs ``command``: itself when it is a plain command line, else via sh."""
    if not SHELL_CHARS.intersection(command):
        if "'" in command or '"' in command:
            try:
                words = shlex.split(command)
            except ValueError:
                words = []
        else:
            words = command.split()  # the same as shlex without quotes, and much faster
        if words and words[0] not in SHELL_WORDS and "=" not in words[0]:
            return words
    return ["/bin/sh", "-c", command]


def failing(message: str) -> list[str]:
    """The argv of an attempt that cannot run: it says why on stderr and exits 125."""
    return ["/bin/sh", "-c", 'echo "primage: $1" >&2; exit 125', "sh", message]


# Mounts the read-only spaces read-only in a mount namespace of the task's own, then runs it.
# $1 is how many paths follow; the task's argv comes after them. Exit 125: could not protect.
_READ_ONLY = """n=$1; shift
while [ "$n" -gt 0 ]; do
  mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" ||
    { echo "primage: cannot mount $1 read-only for this task" >&2; exit 125; }
  shift; n=$((n - 1))
done
exec "$@"
"""


def read_only(paths: list[str], argv: list[str]) -> list[str]:
    """``argv`` run where ``paths`` are read-only (and the rest of the machine as it is).

    A private mount namespace (``unshare``): as root directly, otherwise in a user namespace.
    The process keeps its PID through each ``exec``, so its identity stays the task's.
    """
    if not paths:
        return argv
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[1:1] = ["--user", "--map-root-user"]
    return [*unshare, "/bin/sh", "-c", _READ_ONLY, "sh", str(len(paths)), *paths, *argv]


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it does not exist.

    A PID is reused once its process is gone; PID and start time together name one process.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:  # not pathlib: this runs once per task started
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: as good as gone
        return None
    return int(fields[19])


def ref(pid: int, started: int) -> str:
    return f"{pid}:{started}"


def parse_ref(value: str) -> tuple[int, int]:
    pid, _, started = value.partition(":")
    return int(pid), int(started)


def alive(value: str) -> bool:
    """Is the process this ref names still running (and not a newer one with its PID)?"""
    pid, started = parse_ref(value)
    return start_time(pid) == started


def read_exit(folder: Path) -> int | None:
    """The exit code the runner recorded for an attempt, or None if it has not (yet)."""
    try:
        text = (folder / "exit").read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def read_pid(folder: Path) -> str | None:
    try:
        text = (folder / "pid").read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def tail(path: Path, limit: int = 2048, lines: int = 10) -> str:
    """The last lines of a log file, for a failed task's message."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
