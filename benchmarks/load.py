"""Requests per second under load: the platform's small requests beside a bare file server.

    ./run bench benchmarks/load.py [--connections 50 200] [--seconds 10] [--repeat 3]

Starts a platform server (SQLite, as the embedded default) with one user, one space holding a
4 KiB file and one finished job, and, in the same run, a bare Starlette app that serves the same
file from disk with ``FileResponse`` (no authentication, no database: the floor). ``wrk`` (Debian's
package, a C client) then loads each for --seconds at each of --connections, in rounds that
alternate:

- ``GET /spaces/S/content/F`` (the 4 KiB file, a platform token) and the same bytes from the bare
  app; their requests/s ratio is the figure of issue 19 (target: >= 0.5x at 200 connections,
  p99 <= 250 ms, no errors);
- ``GET /spaces/S/files/`` (a listing), ``PUT`` of 4 KiB, ``GET /jobs/ID`` (a job's status).

Prints requests/s, p50 and p99 and errors for each, medians over --repeat rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import RunningServer

SIZE = 4096
BARE_APP = """
import socket, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

path = sys.argv[1]
app = Starlette(routes=[Route("/file", lambda request: FileResponse(path))])
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(512)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""
PUT_SCRIPT = 'wrk.method = "PUT"\nwrk.body = string.rep("x", {size})\n'


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(
    url: str, connections: int, seconds: int, token: str | None, script: Path | None
) -> Figures:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"\b(?:connect|read|write|timeout) (\d+)", out))
    return Figures(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        p50_ms=_ms(re.search(r"50%\s+([\d.]+\w+)", out)[1]),  # type: ignore[index]
        p99_ms=_ms(re.search(r"99%\s+([\d.]+\w+)", out)[1]),  # type: ignore[index]
        errors=errors,
    )


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def median(rounds: list[Figures]) -> Figures:
    return Figures(
        rps=statistics.median(r.rps for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        errors=sum(r.errors for r in rounds),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/load.py needs wrk: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="primage-load-"))
    server = RunningServer.start(work / "data", f"sqlite:///{work / 'db.sqlite'}")
    bare = None
    try:
        admin = server.client()
        token = admin.create_user("alice").token
        alice = server.client(token)
        alice.create_space("scans")
        alice.upload("scans", "small.bin", os.urandom(SIZE))
        job = alice.submit_job({"command": "true", "spaces": ["scans"]})
        alice.wait_job(job.id, timeout=60)
        on_disk = next((work / "data").rglob("small.bin"))
        bare = subprocess.Popen(
            [sys.executable, "-c", BARE_APP, str(on_disk)], stdout=subprocess.PIPE, text=True
        )
        bare_url = f"http://127.0.0.1:{bare.stdout.readline().strip()}/file"  # type: ignore[union-attr]
        put = work / "put.lua"
        put.write_text(PUT_SCRIPT.format(size=SIZE))
        cases = {
            "bare FileResponse (floor)": (bare_url, None, None),
            "GET 4 KiB file": (f"{server.url}/spaces/scans/content/small.bin", token, None),
            "GET listing": (f"{server.url}/spaces/scans/files/", token, None),
            "PUT 4 KiB file": (f"{server.url}/spaces/scans/content/put.bin", token, put),
            "GET job status": (f"{server.url}/jobs/{job.id}", token, None),
        }
        for connections in args.connections:
            rounds: dict[str, list[Figures]] = {name: [] for name in cases}
            for _ in range(args.repeat):
                for name, (url, bearer, script) in cases.items():
                    rounds[name].append(wrk(url, connections, args.seconds, bearer, script))
            found = {name: median(r) for name, r in rounds.items()}
            print(f"{connections} connections, {args.seconds} s each, median of {args.repeat}:")
            for name, f in found.items():
                print(f"  {name:28} {f.rps:8.0f} req/s  p50 {f.p50_ms:7.1f} ms  "
                      f"p99 {f.p99_ms:7.1f} ms  errors {f.errors}")  # fmt: skip
            ratio = found["GET 4 KiB file"].rps / found["bare FileResponse (floor)"].rps
            print(f"  platform / bare app, the file: {ratio:.2f}x (target >= 0.5x)")
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
