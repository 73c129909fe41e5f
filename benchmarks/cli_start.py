"""How long the command line takes to answer, beside a bare Python and curl of the same call.

    ./run bench benchmarks/cli_start.py [--repeat 15]

Runs, alternating, ``--repeat`` times each on a warm machine (one untimed round first):
``python -c pass`` (the interpreter's own start), ``primage --help``, ``primage ls bench:``
against a local server, and ``curl`` of the same listing (``GET /spaces/bench/files/``) with
the same token. Prints medians and the ratios. Targets (issue 14): ``--help`` <= 0.25 s, ``ls``
<= 0.4 s on the 2-core machine it was written on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import RunningServer


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    curl = shutil.which("curl")
    if curl is None:
        sys.exit("cannot run: apt-get install curl (the baseline of 'ls')")
    work = Path(tempfile.mkdtemp(prefix="primage-bench-cli-"))
    server = RunningServer.start(work / "data", f"sqlite:///{work / 'db.sqlite'}")
    try:
        with server.client() as api:
            api.create_space("bench")
            for i in range(20):
                api.upload("bench", f"scans/{i:02}.dcm", os.urandom(4096))
        # The CLI as a user runs it: it finds the server and the admin token in the data dir.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIMAGE_")}
        env |= {"PRIMAGE_DATA_DIR": str(server.data_dir), "PRIMAGE_CONFIG": str(work / "no.toml")}
        cli = str(Path(sys.executable).with_name("primage"))
        runs = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "primage --help": [cli, "--help"],
            "primage ls bench:": [cli, "ls", "bench:"],
            "curl (same listing)": [
                curl, "-sf", "-H", f"Authorization: Bearer {server.admin_token}",
                f"{server.url}/spaces/bench/files/",
            ],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in runs}
        for round_ in range(args.repeat + 1):
            for name, argv in runs.items():
                took = timed(argv, env)
                if round_:  # the first round warms the caches
                    times[name].append(took)
        median = {name: statistics.median(values) for name, values in times.items()}
        for name, value in median.items():
            print(f"{name:22} median {value * 1000:6.0f} ms")
        base, curl_ms = median["python -c pass"], median["curl (same listing)"]
        print(f"primage --help: {median['primage --help']:.3f} s (target <= 0.25), "
              f"{median['primage --help'] / base:.1f}x python -c pass")  # fmt: skip
        print(f"primage ls:     {median['primage ls bench:']:.3f} s (target <= 0.4), "
              f"{median['primage ls bench:'] / curl_ms:.1f}x curl of the same call")  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
