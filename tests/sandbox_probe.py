"""What a hostile task or app tries from inside: run as ``python sandbox_probe.py PATH…``, it
reports as JSON on stdout who it runs as and, for each PATH, whether it could read, list or write
it, and for each ``HOST:PORT`` whether it could connect. It never stops at a failure."""

from __future__ import annotations

import json
import os
import socket
import sys


def status(field: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def attempt(target: str) -> str:
    if target.startswith("write:"):
        try:
            with open(target.removeprefix("write:"), "w") as f:
                f.write("tampered by a task\n")
            return "written"
        except OSError as exc:
            return f"refused: {exc.strerror}"
    if ":" in target and not target.startswith("/"):
        host, port = target.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                return "connected"
        except OSError as exc:
            return f"refused: {exc.strerror or exc}"
    try:
        if os.path.isdir(target):
            return "listed: " + ",".join(sorted(os.listdir(target)))
        with open(target, "rb") as f:
            return f"read {len(f.read())} bytes"
    except OSError as exc:
        return f"refused: {exc.strerror}"


def main() -> None:
    with open("/proc/net/dev") as f:
        interfaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    report = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "capabilities": status("CapEff"),
        "no_new_privs": status("NoNewPrivs"),
        "pids": len([p for p in os.listdir("/proc") if p.isdigit()]),
        "interfaces": interfaces,
        "tried": {target: attempt(target) for target in sys.argv[1:]},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
