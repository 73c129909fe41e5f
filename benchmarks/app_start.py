"""What the platform adds to an interactive app: start-up time, and latency through the proxy.

    ./run bench benchmarks/app_start.py [--repeat 3] [--clients 20] [--requests 50]

1. Start-up: from ``app deploy`` of the Jupyter template (``examples/notebook/template.yaml``) to
   the first 200 of ``api/status`` through the proxy, beside the same ``jupyter lab`` command line
   started by hand and polled directly until its first 200 (same machine, same run, alternating;
   medians). Target (issue 7): <= 1.3x.
2. Proxy overhead: a 100 KiB file served by that Jupyter server (``files/``), fetched by
   ``--clients`` concurrent clients through the proxy and directly; p50 latencies and their
   ratio. Target: <= 1.5x. The direct fetches send the app's token as the proxy does (read, as
   the operator may, from the instance's environment), so Jupyter does the same work for both;
   they go to the app's door on loopback (the relay into its sandbox, the only way in).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from primage.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import RunningServer, free_port

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "notebook" / "template.yaml"
BLOB = 100 * 1024


def first_200(url: str, headers: dict[str, str], started: float, limit: float = 120) -> float:
    while time.perf_counter() - started < limit:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    sys.exit(f"no 200 from {url} within {limit:.0f} s")


def by_platform(api: Client, server: RunningServer, space: str) -> float:
    started = time.perf_counter()
    api.deploy_app(TEMPLATE.read_text(), inputs={"space": space}, source=TEMPLATE.name)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    took = first_200(f"{server.url}/apps/notebook/api/status", headers, started)
    api.remove_app("notebook")
    return took


def by_hand(folder: Path, work: Path) -> float:
    """The template's command line, rendered as the platform would, run directly."""
    command = yaml.safe_load(TEMPLATE.read_text())["app"]["command"]
    port, token = free_port(), secrets.token_urlsafe(16)
    line = command.format(port=port, base_url="/apps/notebook/", app_token=token, workdir=folder)
    if os.geteuid() == 0:  # the platform runs it as the sandbox's uid; by hand as root, Jupyter
        line += " --allow-root"  # refuses to start without this
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "PRIMAGE_APP_TOKEN": token}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    started = time.perf_counter()
    process = subprocess.Popen(  # through sh, as the platform runs it: it reads $PRIMAGE_APP_TOKEN
        ["/bin/sh", "-c", line], cwd=folder, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/apps/notebook/api/status"
        return first_200(url, {"Authorization": f"token {token}"}, started)
    finally:
        process.terminate()
        process.wait(10)


async def p50(url: str, headers: dict[str, str], clients: int, requests: int) -> float:
    latencies: list[float] = []

    async def one_client(http: httpx.AsyncClient) -> None:
        for _ in range(requests):
            started = time.perf_counter()
            answer = await http.get(url, headers=headers)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200 and len(answer.content) == BLOB, (url, answer.text)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await http.get(url, headers=headers)  # warm
        await asyncio.gather(*(one_client(http) for _ in range(clients)))
    return statistics.median(latencies)


def app_token(pid: int) -> str:
    """The token the platform gave the app (PRIMAGE_APP_TOKEN in its environment)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [v for v in environ if v.startswith(b"PRIMAGE_APP_TOKEN=")]
    return found[0].split(b"=", 1)[1].decode()


def proxy_overhead(api: Client, server: RunningServer, args: argparse.Namespace) -> None:
    api.deploy_app(TEMPLATE.read_text(), inputs={"space": "bench"}, source=TEMPLATE.name)
    instance = api.wait_app("notebook", timeout=180).instances[0]
    pid = int((instance.external_id or "0").split(":")[0])
    proxied = f"{server.url}/apps/notebook/files/blob.bin"
    direct = f"http://127.0.0.1:{instance.port}/apps/notebook/files/blob.bin"
    bearer = {"Authorization": f"Bearer {server.admin_token}"}
    own = {"Authorization": f"token {app_token(pid)}"}
    rounds = []
    for _ in range(args.repeat):
        through = asyncio.run(p50(proxied, bearer, args.clients, args.requests))
        plain = asyncio.run(p50(direct, own, args.clients, args.requests))
        rounds.append((through, plain))
        print(f"  round: proxy {through * 1000:.1f} ms, direct {plain * 1000:.1f} ms")
    through = statistics.median(r[0] for r in rounds)
    plain = statistics.median(r[1] for r in rounds)
    print(f"100 KiB GET, {args.clients} clients, p50: through the proxy {through * 1000:.1f} ms, "
          f"direct {plain * 1000:.1f} ms: {through / plain:.2f}x (target <= 1.5)")  # fmt: skip
    api.remove_app("notebook")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    if not Path(sys.executable).with_name("jupyter").exists():
        sys.exit("cannot run: pip install ./examples/notebook (JupyterLab)")
    work = Path(tempfile.mkdtemp(prefix="primage-bench-apps-", dir=Path.home()))
    server = RunningServer.start(work / "data", f"sqlite:///{work / 'db.sqlite'}")
    try:
        api = server.client()
        api.create_space("bench")
        api.upload("bench", "blob.bin", os.urandom(BLOB))
        folder = server.data_dir / "spaces" / "bench"
        platform, hand = [], []
        for _ in range(args.repeat):
            platform.append(by_platform(api, server, "bench"))
            hand.append(by_hand(folder, work))
            print(f"  round: deploy {platform[-1]:.2f} s, by hand {hand[-1]:.2f} s")
        a, b = statistics.median(platform), statistics.median(hand)
        print(f"start-up to the first 200: app deploy {a:.2f} s, by hand {b:.2f} s: "
              f"{a / b:.2f}x (target <= 1.3)")  # fmt: skip
        proxy_overhead(api, server, args)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
