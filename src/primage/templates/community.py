"""What TOSCA and RADL templates share when they become an app: the facts of the mapping that
hold for both, in one place (docs/deploy-an-application.md has the table)."""

from __future__ import annotations

import math
from typing import Any

SPACES = "/spaces/"  # where an app or a task sees each space it mounts


def app_name(node: str) -> str:
    """A node's (or system's) name as an app's: lowercase, ``_`` → ``-``."""
    return node.lower().replace("_", "-")


def whole_cores(value: Any, feature: str, notes: list[str]) -> int:
    """CPUs as the executors count them: whole cores, rounded up (and noted when it was not)."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{feature} '{value}' is not a number") from None
    cores = math.ceil(cpus)
    if cores != cpus:
        notes.append(f"{feature} {cpus:g}: {cores} (whole cores here)")
    return cores


def primary_port(ports: list[int], chosen: Any, app: str, notes: list[str]) -> Any:
    """The port the app serves (``chosen``, else the first of ``ports``); each other noted."""
    primary = chosen if chosen is not None else (ports[0] if ports else None)
    for port in ports:
        if str(port) != str(primary):
            notes.append(
                f"port {port} is not published: an app serves one port, at /apps/{app}/ "
                f"(port {primary}); give the other service a template of its own"
            )
    return primary
