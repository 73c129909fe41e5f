"""A space mounted with ``primage mount`` (rclone over WebDAV) beside ``cp`` on the same disk.

    ./run bench benchmarks/mount.py [--size-mib 1024] [--files 1000] [--repeat 3] [--dir DIR]

One server with its data in --dir (default: a folder in the home directory's disk), one space
mounted read-write with the default options. Each round, in this order:

- sequential write of a --size-mib file into the mount (until ``close`` returns, which is when
  the server has stored it) beside ``cp`` of the same file into a folder on the server's disk,
  followed by fsync (the server fsyncs uploads too);
- sequential read of it through the mount beside reading the server's copy, page cache dropped
  before each when running as root;
- --files files of 4 KiB written into the mount, then read back, beside the same with the
  server's disk directly.

Prints MiB/s and files/s (medians over --repeat rounds) and the ratios to the baseline.
Targets (issue 5): big files >= 0.4x cp each way; small files >= 200 files/s each way.
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
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import RunningServer

CHUNK = 8 * 1024 * 1024


def drop_caches() -> None:
    if os.geteuid() == 0:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def copy(source: Path, target: Path, *, fsync: bool) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
        if fsync:
            dst.flush()
            os.fsync(dst.fileno())


def read_all(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(CHUNK):
            pass


def write_small(folder: Path, count: int, *, fsync: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(4096)
    for n in range(count):
        with open(folder / f"f{n:05d}.bin", "wb") as f:
            f.write(block)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def read_small(folder: Path) -> None:
    for path in sorted(folder.iterdir()):
        path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path.home())
    args = parser.parse_args()
    for tool in ("rclone", "fusermount3"):
        if shutil.which(tool) is None:
            sys.exit(f"cannot run: {tool} is not installed (apt-get install rclone fuse3)")

    work = Path(tempfile.mkdtemp(prefix="primage-bench-mount-", dir=args.dir))
    server = RunningServer.start(work / "data", f"sqlite:///{work / 'db.sqlite'}")
    mount = work / "mnt"
    env = {
        **os.environ,
        "PRIMAGE_SERVER": server.url,
        "PRIMAGE_TOKEN": server.admin_token,
        "PRIMAGE_STATE_DIR": str(work / "state"),
    }
    results: dict[str, list[float]] = {}
    try:
        server.client().create_space("bench")
        subprocess.run(
            [sys.executable, "-m", "primage", "mount", "bench", str(mount)], env=env, check=True
        )
        source = work / "source.bin"
        with open(source, "wb") as f:
            block = os.urandom(CHUNK)
            for _ in range(args.size_mib * 1024 * 1024 // CHUNK):
                f.write(block)
        disk = work / "baseline"
        disk.mkdir()
        size = source.stat().st_size / 2**20
        for round_ in range(args.repeat):
            target = f"big{round_}.bin"
            rows = {
                "write, cp": timed(partial(copy, source, disk / target, fsync=True)),
                "write, mount": timed(partial(copy, source, mount / target, fsync=False)),
            }
            drop_caches()
            rows["read, cp"] = timed(partial(read_all, disk / target))
            drop_caches()
            rows["read, mount"] = timed(partial(read_all, mount / target))
            for name, seconds in rows.items():
                results.setdefault(f"{name} (MiB/s)", []).append(size / seconds)
            (disk / target).unlink()
            (mount / target).unlink()

            small = f"small{round_}"
            rows = {
                "small write, disk": timed(
                    partial(write_small, disk / small, args.files, fsync=True)
                ),
                "small write, mount": timed(
                    partial(write_small, mount / small, args.files, fsync=False)
                ),
            }
            drop_caches()
            rows["small read, disk"] = timed(partial(read_small, disk / small))
            rows["small read, mount"] = timed(partial(read_small, mount / small))
            for name, seconds in rows.items():
                results.setdefault(f"{name} (files/s)", []).append(args.files / seconds)
    finally:
        subprocess.run(
            [sys.executable, "-m", "primage", "umount", str(mount)], env=env, capture_output=True
        )
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.size_mib} MiB file, {args.files} files of 4 KiB, median of {args.repeat} rounds")
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        print(f"  {name:30} {value:10.1f}")
    for what, unit, target in (
        ("write", "MiB/s", "0.4"), ("read", "MiB/s", "0.4"),
        ("small write", "files/s", "200 files/s"), ("small read", "files/s", "200 files/s"),
    ):  # fmt: skip
        base = "cp" if unit == "MiB/s" else "disk"
        ratio = medians[f"{what}, mount ({unit})"] / medians[f"{what}, {base} ({unit})"]
        print(f"{what:12} mount / {base}: {ratio:5.2f}x   (target >= {target})")


if __name__ == "__main__":
    main()
