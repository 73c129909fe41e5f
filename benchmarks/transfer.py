"""Transfer throughput through the API on loopback, beside ``cp`` on the same disk, same run.

    ./run bench benchmarks/transfer.py [--size-mib 1024] [--files 2000] [--repeat 3]

Prints, for a file of --size-mib: upload and download MiB/s (median of --repeat runs), ``cp``'s
MiB/s, the ratios, the same transfers with ``curl`` (a C client: what the server itself
sustains, apart from the Python SDK), and the server's peak resident memory during the transfers;
then the rate of --files small files (4 KiB) uploaded with the SDK (``upload_dir``, 8 at a time).
Targets (issue 2): each direction >= 0.5x cp; server < 200 MiB; >= 300 small files/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import RunningServer


class PeakRss:
    """Samples a process's resident memory every 20 ms; ``peak`` in MiB."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak = max(self.peak, int(line.split()[1]) / 1024)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def curl_runner(token: str) -> Callable[..., object] | None:
    """``curl`` against the server with the admin token, when curl is installed."""
    if shutil.which("curl") is None:
        return None
    auth = ["-H", f"Authorization: Bearer {token}", "-H", "Expect:"]

    def run(*args: str) -> object:
        return subprocess.run(["curl", "-sSf", *auth, *args], check=True, stdout=subprocess.DEVNULL)

    return run


def make_file(path: Path, mib: int) -> None:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as handle:
        for _ in range(mib):
            handle.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="primage-bench-", dir=os.environ.get("BENCH_DIR")))
    server = RunningServer.start(work / "data", f"sqlite:///{work / 'db.sqlite'}")
    try:
        sdk = server.client()
        sdk.create_space("bench")
        big = work / "big.bin"
        make_file(big, args.size_mib)
        mib = args.size_mib
        cp_s: list[float] = []
        up_s: list[float] = []
        down_s: list[float] = []
        curl_up: list[float] = []
        curl_down: list[float] = []
        curl = curl_runner(server.admin_token)
        base = f"{server.url}/spaces/bench/content"
        back, copy = work / "back.bin", work / "copy.bin"
        with PeakRss(server.process.pid) as rss:
            # Round 0 warms up: on a VM, the first write to fresh memory pages is several times
            # slower than later ones, whoever does it. It is not counted.
            for i in range(args.repeat + 1):
                name = f"big{i}.bin"
                cp_s.append(timed(partial(subprocess.run, ["cp", big, copy], check=True)))
                copy.unlink()
                up_s.append(timed(partial(sdk.upload, "bench", name, big)))
                down_s.append(timed(partial(sdk.download, "bench", name, back)))
                if i == 0:
                    cp_s, up_s, down_s, curl_up, curl_down = [], [], [], [], []
                back.unlink()
                if curl:
                    curl_up.append(timed(partial(curl, "-T", str(big), f"{base}/{name}")))
                    curl_down.append(timed(partial(curl, "-o", str(back), f"{base}/{name}")))
                    back.unlink()
                sdk.remove("bench", name)
        cp_rate = mib / statistics.median(cp_s)
        print(f"file of {mib} MiB, median of {args.repeat} runs:")
        print(f"  cp        {cp_rate:8.0f} MiB/s")
        measured = [("upload", up_s), ("download", down_s)]
        if curl:  # the same server through a C client: what the server itself sustains
            measured += [("curl up", curl_up), ("curl down", curl_down)]
        for label, runs in measured:
            rate = mib / statistics.median(runs)
            print(
                f"  {label:9} {rate:8.0f} MiB/s   ratio to cp {rate / cp_rate:.2f} (target >= 0.5)"
            )
        print(f"  server peak RSS during transfers: {rss.peak:.0f} MiB (target < 200)")
        big.unlink()

        small = work / "small"
        small.mkdir()
        for n in range(args.files):
            (small / f"f{n:05d}.bin").write_bytes(os.urandom(4096))
        cp_small = timed(lambda: shutil.copytree(small, work / "small-copy"))
        took = timed(lambda: sdk.upload_dir("bench", "small", small))
        rate = args.files / took
        print(
            f"{args.files} files of 4 KiB with the SDK: {rate:.0f} files/s (target >= 300);"
            f" cp -r: {args.files / cp_small:.0f} files/s"
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
