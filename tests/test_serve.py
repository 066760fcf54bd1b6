"""The service: validation, API key, staleness, metrics; and a real uvicorn over a socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pipelines.service.app import create_app
from pipelines.service.settings import ServiceSettings


@pytest.fixture(scope="module")
def workdir(sim_workdir: Any) -> Path:
    return sim_workdir("serve", n_pools=6, days=30, seed=4)


def _client(workdir: Path, **kw: Any) -> TestClient:
    s = ServiceSettings(workdir=workdir, use_registry=False, **kw)
    return TestClient(create_app(s))


def _pools(c: TestClient) -> list[str]:
    return [p["pool_id"] for p in c.get("/v1/pools").json()["pools"]]


def test_recommendation_round_trip(workdir: Path) -> None:
    with _client(workdir) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"]
        pools = _pools(c)
        assert len(pools) == 6
        body = {"capital_usd": 1_000_000, "pools": pools,
                "current_weights": {pools[0]: 0.5}, "risk_aversion": 1.0,
                "constraints": {"max_weight": 0.3, "max_turnover": 2.0}}
        r = c.post("/v1/recommendations", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        ws = [p["weight"] for p in data["pools"]]
        assert all(0 <= w <= 0.3 + 1e-6 for w in ws) and sum(ws) <= 1 + 1e-6
        assert data["model_versions"]["fee_yield"] == "baseline"
        assert all(p["reason"] for p in data["pools"])
        first = data["pools"][0]
        assert abs(first["move_usd"] - (first["weight"] - 0.5) * 1e6) < 1
        assert data["stale"] is True  # simulated data from 2024 is old for "now"
        f = c.get(f"/v1/pools/{pools[0]}/forecast").json()
        assert {"fee_yield", "p_stress", "volatility"} <= set(f["forecast"])
        assert "/v1/recommendations" in c.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(("patch", "field"), [
    ({"capital_usd": -5}, "capital_usd"),
    ({"current_weights": "__over__"}, "current_weights"),
    ({"constraints": {"max_weight": 1.5}}, "max_weight"),
    ({"constraints": {"max_turnover": -1}}, "max_turnover"),
    ({"pools": "__oversize__"}, "pools"),
    ({"risk_aversion": "high"}, "risk_aversion"),
])
def test_bad_input_is_422_naming_the_field(workdir: Path, patch: dict, field: str) -> None:
    with _client(workdir) as c:
        pools = _pools(c)
        body = {"capital_usd": 1e6, "pools": pools}
        body.update(patch)
        if body.get("current_weights") == "__over__":
            body["current_weights"] = {pools[0]: 0.7, pools[1]: 0.6}
        if body.get("pools") == "__oversize__":
            body["pools"] = [f"p{i}" for i in range(501)]
        r = c.post("/v1/recommendations", json=body)
        assert r.status_code == 422, r.text
        assert field in r.text


def test_unknown_pools_are_404_listing_them(workdir: Path) -> None:
    with _client(workdir) as c:
        r = c.post("/v1/recommendations",
                   json={"capital_usd": 1e6, "pools": [_pools(c)[0], "nope-1", "nope-2"]})
        assert r.status_code == 404
        assert r.json()["detail"]["unknown_pools"] == ["nope-1", "nope-2"]
        assert c.get("/v1/pools/nope-1/forecast").status_code == 404


def test_api_key_required_when_set(workdir: Path) -> None:
    with _client(workdir, api_key="s3cret") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/pools").status_code == 401
        assert c.get("/v1/pools", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_not_ready_without_features(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "lpa features build" in r.json()["reason"]
        assert c.get("/v1/pools").status_code == 503


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_uvicorn_process_on_loopback(workdir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "LPA_HOME": str(workdir), "LPA_USE_REGISTRY": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    code = ("import uvicorn; from pipelines.service.app import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("service did not become ready within 60 s")

        def count() -> float:
            text = httpx.get(f"{base}/metrics", timeout=5).text
            total = 0.0
            for line in text.splitlines():
                if line.startswith("lpa_requests_total{") and 'route="/v1/recommendations"' in line:
                    total += float(line.rsplit(" ", 1)[1])
            return total

        before = count()
        pools = [p["pool_id"] for p in httpx.get(f"{base}/v1/pools").json()["pools"]]
        r = httpx.post(f"{base}/v1/recommendations", json={"capital_usd": 2e6, "pools": pools},
                       timeout=30)
        assert r.status_code == 200, r.text
        assert count() == before + 1
        assert "lpa_request_latency_seconds_bucket" in httpx.get(f"{base}/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serves_the_registered_champions(workdir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from pipelines.train import TrainConfig, train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    wd = tmp_path / "wd"
    shutil.copytree(workdir, wd)
    train(wd, TrainConfig.model_validate({"models": ["baseline"], "n_folds": 2}), progress=False)
    with TestClient(create_app(ServiceSettings(workdir=wd, use_registry=True))) as c:
        ready = c.get("/readyz").json()
        assert ready["ready"]
        assert all(v.startswith("lpa-") for v in ready["model_versions"].values())
        pools = [p["pool_id"] for p in c.get("/v1/pools").json()["pools"]]
        r = c.post("/v1/recommendations", json={"capital_usd": 1e6, "pools": pools})
        assert r.status_code == 200 and "lpa-stress" in r.json()["model_versions"]["stress"]
        assert 'lpa_model_info{target="stress"' in c.get("/metrics").text
