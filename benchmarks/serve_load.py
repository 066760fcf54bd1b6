"""Load test of the running service on loopback: fixed request rate, bounded time.

Starts the service on a free 127.0.0.1 port for a prepared work directory (or targets --url,
which must be a loopback address), then sends POST /v1/recommendations with --pools pools at
--rate requests/s for --seconds, with up to --concurrency requests in flight. Prints p50/p95/p99
latency, achieved throughput, errors and, for a server it started, the server's CPU time per
request (all its processes, from /proc; Linux only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import sys as _sys
from pathlib import Path as _Path

# benchmarks/features.py is named like the `features` package: keep this folder off the path
_sys.path = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import httpx  # noqa: E402


def _prepare(workdir: Path, pools: int) -> None:
    from features.build import build_features, write_features
    from features.sources.simulator import simulate_market

    panel, _ = simulate_market(n_pools=pools, days=60, seed=0)
    write_features(build_features(panel), workdir)


def _server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and all its descendants (None off Linux)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            if p == pid:
                return None
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _drive(url: str, body: dict, rate: float, seconds: float, conc: int) -> tuple:
    lat: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=conc)) as c:

        async def one() -> None:
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await c.post(f"{url}/v1/recommendations", json=body)
                    if r.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                lat.append(time.perf_counter() - t0)

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return lat, errors, wall


def main() -> None:
    """Run the load test and print latency percentiles, throughput and errors."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default=None, help="loopback URL of a running service")
    ap.add_argument("--pools", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    args = ap.parse_args()
    proc = None
    url = args.url
    if url:
        host = urlparse(url).hostname or ""
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            sys.exit(f"refusing non-loopback target {host}")
    else:
        tmp = Path(tempfile.mkdtemp(prefix="lpa-load-"))
        _prepare(tmp, args.pools)
        port = _free_port()
        env = {**os.environ, "LPA_HOME": str(tmp), "LPA_USE_REGISTRY": "false"}
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn",
                                 "pipelines.service.app:create_app", "--factory",
                                 "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(args.workers), "--log-level", "error"],
                                env=env)
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    try:
        pools = [p["pool_id"] for p in httpx.get(f"{url}/v1/pools").json()["pools"]]
        chosen = pools[: args.pools]
        body = {"capital_usd": 5_000_000, "pools": chosen}
        for _ in range(5 * args.workers):  # warm-up (each worker compiles the problem once)
            httpx.post(f"{url}/v1/recommendations", json=body, timeout=30)
        cpu0 = _server_cpu_seconds(proc.pid) if proc is not None else None
        lat, errors, wall = asyncio.run(_drive(url, body, args.rate, args.seconds,
                                               args.concurrency))
        cpu1 = _server_cpu_seconds(proc.pid) if proc is not None else None
        q = statistics.quantiles([x * 1000 for x in lat], n=100)
        print(f"pools/request={len(chosen)} target rate={args.rate}/s "
              f"workers={args.workers} "
              f"concurrency={args.concurrency} duration={args.seconds}s")
        print(f"requests={len(lat)} errors={errors} throughput={len(lat) / wall:.1f} req/s")
        print(f"latency ms: p50={q[49]:.1f} p95={q[94]:.1f} p99={q[98]:.1f} "
              f"max={max(lat) * 1000:.1f}")
        if cpu0 is not None and cpu1 is not None:
            print(f"server CPU ms/request={(cpu1 - cpu0) / max(len(lat), 1) * 1000:.1f} "
                  f"(server CPU {cpu1 - cpu0:.1f} s over {wall:.1f} s wall)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
