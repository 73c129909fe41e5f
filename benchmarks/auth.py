"""What authentication costs per request: a provider's JWT beside a platform token and no auth.

    ./run bench benchmarks/auth.py [--requests 2000] [--clients 50] [--repeat 3]

Starts the test OpenID Provider (tests/idp, npm oidc-provider) and a server trusting it, then
sends --requests requests from --clients concurrent clients, in rounds that alternate:

- ``GET /health``, no authentication (the floor);
- ``GET /spaces`` with a platform token (``prm_…``);
- ``GET /spaces`` with the provider's JWT access token.

Prints p50/p99 latency and requests/s for each (medians over --repeat rounds), alone (one client:
the latency a request itself costs) and under load, and the JWT's p50 minus the platform token's.
Then, in this process, the cost of verifying a JWT from scratch (signature with the cached key,
claims, entitlements): what a request pays when its token is new to the server, since a token
seen in the last seconds is not verified again.
Target (issue 4): a JWT adds <= 1 ms p50 over a platform token; no provider call per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from primage.auth.oidc import Provider
from primage.config import ProviderSettings
from tests.harness import RunningServer
from tests.idp import IdentityProvider, why_unavailable


async def load(
    url: str, token: str | None, requests: int, clients: int
) -> tuple[list[float], float]:
    """Latencies (s) of GETs from ``clients`` connections at once, and the wall time."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    per_client = requests // clients

    async def client(http: httpx.AsyncClient) -> None:
        for _ in range(per_client):
            start = time.perf_counter()
            response = await http.get(url, headers=headers)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await http.get(url, headers=headers)  # warm: connection, caches
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def verify_cost(idp: IdentityProvider, token: str, rounds: int = 2000) -> float:
    """Seconds to verify one JWT with the key already cached (no network)."""
    provider = Provider(ProviderSettings(**idp.settings()))
    claims = provider.verify_jwt(token)  # fetches discovery and keys once
    provider.identify(token, claims)
    start = time.perf_counter()
    for _ in range(rounds):
        provider.identify(token, provider.verify_jwt(token))
    provider.close()
    return (time.perf_counter() - start) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reason = why_unavailable()
    if reason:
        sys.exit(f"cannot run: {reason}")

    with tempfile.TemporaryDirectory(prefix="primage-bench-auth-") as tmp:
        work = Path(tmp)
        (work / "idp").mkdir()
        idp = IdentityProvider(work / "idp").start()
        server = RunningServer.start(
            work / "data",
            f"sqlite:///{work / 'db.sqlite'}",
            env=idp.server_env(),
            port=idp.web_port,
        )
        try:
            jwt_token = idp.access_token("alice")
            alice = server.client(jwt_token)
            for n in range(5):
                alice.create_space(f"scans-{n}")
            platform_token = alice.create_token("bench").token
            scenarios = {
                "GET /health, no auth": (f"{server.url}/health", None),
                "GET /spaces, platform token": (f"{server.url}/spaces", platform_token),
                "GET /spaces, provider JWT": (f"{server.url}/spaces", jwt_token),
            }
            levels = sorted({1, args.clients})
            results: dict[tuple[int, str], list[tuple[float, float, float]]] = {
                (clients, name): [] for clients in levels for name in scenarios
            }
            for _ in range(args.repeat):
                for clients in levels:
                    count = args.requests if clients > 1 else args.requests // 4
                    for name, (url, token) in scenarios.items():
                        latencies, wall = asyncio.run(load(url, token, count, clients))
                        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                        results[clients, name].append((p50, p99, len(latencies) / wall))
            cost = verify_cost(idp, jwt_token)
        finally:
            server.stop()
            idp.stop()

    print(f"median of {args.repeat} rounds; {args.requests} requests ({args.requests // 4} alone)")
    print(f"{'clients':>7} {'':30} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    medians = {}
    for (clients, name), rounds in results.items():
        p50, p99, rps = (statistics.median(r[i] for r in rounds) for i in range(3))
        medians[clients, name] = p50
        print(f"{clients:>7} {name:30} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f} {rps:8.0f}")
    for clients in levels:
        extra = medians[clients, "GET /spaces, provider JWT"]
        extra -= medians[clients, "GET /spaces, platform token"]
        print(f"{clients} client(s): JWT p50 minus platform token p50 {extra * 1e3:+.2f} ms")
    print("target: <= +1 ms")
    print(f"verifying a JWT new to the server (cached key, in-process): {cost * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
