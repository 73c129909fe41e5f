"""How fast can Python start short processes? The measurement behind the local executor's design.

    ./run bench benchmarks/launchers.py [--tasks 3000] [--slots 2] [--repeat 3]

Runs ``sha256sum FILE`` once per file of --tasks 4 KiB files, --slots at a time, each way:

- ``xargs -n1 -P<slots>``: the baseline;
- ``asyncio``: ``asyncio.create_subprocess_exec``, a semaphore of --slots;
- ``threads``: one thread per slot, ``subprocess.Popen`` + ``wait`` (what the runner does);
- ``sh-wrapper``: the same threads, each task under ``/bin/sh -c`` that records its exit code in a
  file (the alternative to a runner process that outlives the server).

Prints the median wall time of each and its ratio to xargs. Output goes to /dev/null for all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path


def with_xargs(files: list[str], slots: int) -> None:
    subprocess.run(
        ["xargs", "-n1", f"-P{slots}", "sha256sum"],
        input="\n".join(files).encode(),
        stdout=subprocess.DEVNULL,
        check=True,
    )


def with_asyncio(files: list[str], slots: int) -> None:
    async def main() -> None:
        gate = asyncio.Semaphore(slots)

        async def one(path: str) -> None:
            async with gate:
                process = await asyncio.create_subprocess_exec(
                    "sha256sum", path, stdout=asyncio.subprocess.DEVNULL
                )
                await process.wait()

        await asyncio.gather(*(one(f) for f in files))

    asyncio.run(main())


def with_threads(files: list[str], slots: int, wrap: bool = False) -> None:
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for path in files:
        todo.put(path)
    scratch = tempfile.mkdtemp(prefix="launch-", dir=Path.home())

    def slot() -> None:
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                return
            argv = ["sha256sum", path]
            if wrap:
                record = f'sha256sum "$1"; echo $? > {scratch}/$$.exit'
                argv = ["/bin/sh", "-c", record, "sh", path]
            subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True
            ).wait()

    workers = [threading.Thread(target=slot) for _ in range(slots)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    subprocess.run(["rm", "-rf", scratch], check=True)


def median_time(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="launch-files-", dir=Path.home()) as tmp:
        files = []
        for i in range(args.tasks):
            path = Path(tmp) / f"f{i:05d}"
            path.write_bytes(os.urandom(4096))
            files.append(str(path))
        ways: dict[str, Callable[[], None]] = {
            "xargs": lambda: with_xargs(files, args.slots),
            "asyncio": lambda: with_asyncio(files, args.slots),
            "threads": lambda: with_threads(files, args.slots),
            "sh-wrapper": lambda: with_threads(files, args.slots, wrap=True),
        }
        print(f"{args.tasks} x sha256sum of 4 KiB, {args.slots} at a time, median of {args.repeat}")
        baseline = None
        for name, run in ways.items():
            seconds = median_time(run, args.repeat)
            baseline = baseline or seconds
            print(
                f"{name:>10}: {seconds:6.2f} s  {args.tasks / seconds:6.0f}/s  "
                f"ratio {seconds / baseline:.2f}"
            )


if __name__ == "__main__":
    main()
