"""Load test of the running service on loopback: fixed request rate, bounded time.

Starts the service on a free 127.0.0.1 port for a prepared work directory (or targets --url,
which must be a loopback address), then sends POST /v1/recommendations with --pools pools at
--rate requests/s for --seconds (open loop: each request has a scheduled send time), over up
to --concurrency keep-alive connections. Requests vary like real clients': capital, current
positions and risk aversion are drawn per request (seeded), on the same pool set.

Prints p50/p95/p99 latency from each request's scheduled send time (queueing in the client
included) and from its write, achieved throughput, errors, the load generator's own CPU per
request and, for a server it started, the server's CPU time per request (all its processes,
from /proc; Linux only). --routing also stores the simulated panel so the service charges
each move's swap routed over the pair's pools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
import numpy as np  # noqa: E402


def _prepare(workdir: Path, pools: int, routing: bool) -> None:
    """Simulate a market and store its features (and its panel when routing)."""
    from features.build import build_features, write_features
    from features.sources.simulator import simulate_market

    panel, truth = simulate_market(n_pools=pools, days=60, seed=0)
    if routing:
        from features.sources.store import write_panel

        write_panel(panel, workdir, truth=truth)
    write_features(build_features(panel), workdir)


def _bodies(pools: list[str], n: int, seed: int) -> list[bytes]:
    """n request bodies: capital log-uniform in $100k-$30M; 2 in 3 hold 1-12 positions."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        body: dict = {"capital_usd": round(float(10 ** rng.uniform(5.0, 7.5)), 2),
                      "pools": pools, "risk_aversion": float(rng.choice([0.0, 0.0, 0.5]))}
        if rng.uniform() < 2 / 3:
            k = int(rng.integers(1, min(12, len(pools)) + 1))
            held = rng.choice(len(pools), k, replace=False)
            w = rng.dirichlet(np.ones(k)) * rng.uniform(0.2, 0.95)
            body["current_weights"] = {pools[j]: round(float(x), 6)
                                       for j, x in zip(held, w, strict=True)}
        out.append(json.dumps(body).encode())
    return out


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


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; (status, whether the server keeps the connection)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower().split("\r\n")
    status = int(head[0].split()[1])
    fields = dict(h.split(":", 1) for h in head[1:] if ":" in h)
    if "content-length" not in fields:
        raise ValueError("response without content-length")
    await reader.readexactly(int(fields["content-length"]))
    return status, fields.get("connection", "").strip() != "close"


async def _drive(url: str, bodies: list[bytes], rate: float, seconds: float,
                 conc: int) -> tuple[list[float], list[float], int, float]:
    """Send requests on schedule over `conc` keep-alive connections (raw HTTP/1.1, cheap)."""
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    wire = [(f"POST /v1/recommendations HTTP/1.1\r\nHost: {host}:{port}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
             ).encode() + b for b in bodies]
    lat: list[float] = []
    svc: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()

    async def connection() -> None:
        nonlocal errors
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (job := await queue.get()) is not None:
            due, i = job
            sent = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                conn[1].write(wire[i])
                status, keep = await asyncio.wait_for(_read_response(conn[0]), 10)
                errors += status != 200
            except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError):
                errors, keep = errors + 1, False
            done = time.perf_counter()
            lat.append(done - due)
            svc.append(done - sent)
            if not keep and conn is not None:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    workers = [asyncio.create_task(connection()) for _ in range(conc)]
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, i % len(wire)))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return lat, svc, errors, time.perf_counter() - start


def _percentiles(xs: list[float]) -> str:
    """p50 / p95 / p99 / max of seconds, in ms."""
    q = statistics.quantiles([x * 1000 for x in xs], n=100)
    return f"p50={q[49]:.1f} p95={q[94]:.1f} p99={q[98]:.1f} max={max(xs) * 1000:.1f}"


def main() -> None:
    """Run the load test and print latency percentiles, throughput and errors."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default=None, help="loopback URL of a running service")
    ap.add_argument("--pools", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--variants", type=int, default=512, help="distinct request bodies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--routing", action="store_true",
                    help="store the panel too, so the service routes each move's swap")
    args = ap.parse_args()
    proc = None
    url = args.url
    if url:
        host = urlparse(url).hostname or ""
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            sys.exit(f"refusing non-loopback target {host}")
    else:
        tmp = Path(tempfile.mkdtemp(prefix="lpa-load-"))
        _prepare(tmp, args.pools, args.routing)
        port = _free_port()
        env = {**os.environ, "LPA_HOME": str(tmp), "LPA_USE_REGISTRY": "false"}
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn",
                                 "pipelines.service.app:create_app", "--factory",
                                 "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(args.workers), "--log-level", "error"],
                                env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # a busy machine starts the workers slowly
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    try:
        pools = [p["pool_id"] for p in httpx.get(f"{url}/v1/pools", timeout=30).json()["pools"]]
        chosen = pools[: args.pools]
        bodies = _bodies(chosen, args.variants, args.seed)
        for b in bodies[: 5 * args.workers]:  # warm-up (each worker compiles its solver once)
            httpx.post(f"{url}/v1/recommendations", content=b, timeout=30,
                       headers={"content-type": "application/json"})
        cpu0 = _server_cpu_seconds(proc.pid) if proc is not None else None
        me0 = time.process_time()
        lat, svc, errors, wall = asyncio.run(_drive(url, bodies, args.rate, args.seconds,
                                                    args.concurrency))
        me = time.process_time() - me0
        cpu1 = _server_cpu_seconds(proc.pid) if proc is not None else None
        print(f"pools/request={len(chosen)} target rate={args.rate}/s "
              f"workers={args.workers} concurrency={args.concurrency} "
              f"duration={args.seconds}s variants={len(bodies)} routing={args.routing}")
        print(f"requests={len(lat)} errors={errors} throughput={len(lat) / wall:.1f} req/s")
        print(f"latency ms from schedule: {_percentiles(lat)}")
        print(f"latency ms from send:     {_percentiles(svc)}")
        print(f"load generator CPU ms/request={me / max(len(lat), 1) * 1000:.2f}")
        if cpu0 is not None and cpu1 is not None:
            print(f"server CPU ms/request={(cpu1 - cpu0) / max(len(lat), 1) * 1000:.1f} "
                  f"(server CPU {cpu1 - cpu0:.1f} s over {wall:.1f} s wall)")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
