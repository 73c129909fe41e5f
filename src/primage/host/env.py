"""The environment a process started by the platform inherits from the server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PASS_THROUGH = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR")


def base_env() -> dict[str, str]:
    """What tasks inherit from the server: locale and home, and a PATH that starts with the
    server's Python environment so tools installed beside the platform are found. Never the
    server's PRIMAGE_* settings (they may hold the database password)."""
    env = {k: v for k, v in os.environ.items() if k in PASS_THROUGH}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "/usr/bin:/bin")])
    return env
