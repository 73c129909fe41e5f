"""The cost of running a high-throughput job through the platform, beside ``xargs -P`` in one run.

    ./run bench benchmarks/htc_overhead.py [--files 10000] [--slots 2] [--repeat 3] [--sandbox off]

--files files of 4 KiB in a space; an HTC job runs ``sha256sum {input}`` on each (one task per
file) with --slots tasks at a time, and ``xargs -n1 -P<slots> sha256sum`` runs the same commands
on the same files (one process per file too: that is the work the job does). Prints per round
the platform's wall time (submit to last task recorded), xargs's, and the ratio; then the medians,
the submission time, and the latency of ``GET /jobs/{id}`` sampled every 100 ms while jobs run.
Targets (issue 3): ratio <= 1.3 (stretch 1.15); submit <= 1 s; GET /jobs/{id} p99 <= 50 ms.
Tasks run in the sandbox, as by default; ``--sandbox off`` shows what it costs.

Jobs are kept until the end: on the project's VMs (ext4 mounted with ``discard``) deleting a job's
30,000 task files slows file creation for the next minute, which is the disk, not the platform.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import RunningServer


def make_files(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(4096))


def xargs(folder: Path, slots: int) -> float:
    names = "\n".join(str(p) for p in sorted(folder.iterdir())) + "\n"
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-n1", f"-P{slots}", "sha256sum"],
        input=names.encode(),
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


class Latency:
    """Samples GET /jobs/{id} every 100 ms while a job runs; latencies in ms."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        self.samples: list[float] = []
        self.job_id: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            if self.job_id is None:
                continue
            start = time.perf_counter()
            self.http.get(f"/jobs/{self.job_id}").raise_for_status()
            self.samples.append((time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.http.close()


def platform_round(server: RunningServer, latency: Latency) -> tuple[float, float]:
    """(submit seconds, wall seconds from submit to the job finished)."""
    api = server.client()
    spec = {
        "kind": "htc",
        "command": "sha256sum {input}",
        "inputs": {"space": "bench", "glob": "files/*"},
    }
    start = time.perf_counter()
    job = api.submit_job(spec)
    submitted = time.perf_counter() - start
    latency.job_id = job.id
    done = api.wait_job(job.id, poll=0.5)  # the wall time is the server's own record
    wall = (done.finished_at - done.created_at).total_seconds()  # recorded by the server
    latency.job_id = None
    assert done.state == "succeeded", done.message
    api.close()
    return submitted, wall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path.home(),
        help="where the platform's data dir goes (default: home, like the real default data "
        "dir; /tmp on the project's VMs is ~30x slower to create files in)",
    )
    parser.add_argument("--sandbox", choices=["on", "off"], default="on")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="primage-htc-", dir=args.dir) as tmp:
        data = Path(tmp) / "data"
        env = {"PRIMAGE_CONCURRENCY": str(args.slots), "PRIMAGE_SANDBOX": args.sandbox}
        server = RunningServer.start(data, f"sqlite:///{Path(tmp) / 'db.sqlite'}", env=env)
        try:
            server.client().create_space("bench")
            folder = data / "spaces" / "bench" / "files"
            make_files(folder, args.files)
            latency = Latency(server.url, server.admin_token)
            submits, walls, baselines = [], [], []
            print(
                f"{args.files} files of 4 KiB, sha256sum each, {args.slots} at a time, "
                f"sandbox {args.sandbox}"
            )
            for round_ in range(1, args.repeat + 1):
                base = xargs(folder, args.slots)
                submitted, wall = platform_round(server, latency)
                baselines.append(base)
                walls.append(wall)
                submits.append(submitted)
                print(
                    f"round {round_}: platform {wall:6.2f} s   xargs {base:6.2f} s   "
                    f"ratio {wall / base:.2f}   submit {submitted:.3f} s"
                )
            latency.close()
        finally:
            server.stop()
    wall, base = statistics.median(walls), statistics.median(baselines)
    ms = latency.samples
    print(
        f"median: platform {wall:.2f} s ({args.files / wall:.0f} tasks/s), xargs {base:.2f} s "
        f"({args.files / base:.0f}/s), ratio {wall / base:.2f} (target <= 1.3, stretch 1.15)"
    )
    print(f"submit ({args.files} tasks): median {statistics.median(submits):.3f} s (target <= 1 s)")
    print(
        f"GET /jobs/{{id}} while running: {len(ms)} samples, "
        f"median {statistics.median(ms):.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms (target <= 50 ms)"
    )


if __name__ == "__main__":
    main()
