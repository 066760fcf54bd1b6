"""Request validation of the service: non-finite numbers, the 422 shape, the body size limit.

Non-finite numbers (NaN, +-Infinity, 1e400) are checked through TestClient and through a real
uvicorn socket, where a second request must succeed on the same keep-alive connection.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from pipelines.service.app import create_app
from pipelines.service.settings import ServiceSettings

# (raw JSON fragment placed in the body, field the 422 must name)
NON_FINITE = [
    ('"capital_usd": NaN', "capital_usd"),
    ('"capital_usd": Infinity', "capital_usd"),
    ('"capital_usd": 1e400', "capital_usd"),
    ('"capital_usd": 1e6, "risk_aversion": -Infinity', "risk_aversion"),
    ('"capital_usd": 1e6, "risk_aversion": NaN', "risk_aversion"),
    ('"capital_usd": 1e6, "constraints": {"max_weight": NaN}', "constraints.max_weight"),
    ('"capital_usd": 1e6, "constraints": {"min_trade_usd": 1e400}', "constraints.min_trade_usd"),
    ('"capital_usd": 1e6, "constraints": {"max_turnover": Infinity}',
     "constraints.max_turnover"),
]


@pytest.fixture(scope="module")
def workdir(sim_workdir: Callable[..., Path]) -> Path:
    return sim_workdir("svc-valid", n_pools=4, days=20, seed=7)


@pytest.fixture(scope="module")
def client(workdir: Path) -> Iterator[TestClient]:
    app = create_app(ServiceSettings(workdir=workdir, use_registry=False, max_body_bytes=50_000))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def pools(client: TestClient) -> list[str]:
    return [p["pool_id"] for p in client.get("/v1/pools").json()["pools"]]


def _body(fragment: str, pools: list[str], weights: str = "") -> str:
    extra = f', "current_weights": {weights}' if weights else ""
    return "{" + fragment + f', "pools": {json.dumps(pools)}' + extra + "}"


def _assert_422_naming(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    items = json.loads(r.text)["detail"]  # the body is valid JSON (strict: no NaN tokens)
    assert any(i["field"] == field for i in items), items
    for i in items:
        assert set(i) == {"loc", "field", "msg", "type"}
    assert "NaN" not in r.text and "Infinity" not in r.text


@pytest.mark.parametrize(("fragment", "field"), NON_FINITE)
def test_non_finite_number_is_422_naming_the_field(client: TestClient, pools: list[str],
                                                    fragment: str, field: str) -> None:
    r = client.post("/v1/recommendations", content=_body(fragment, pools),
                    headers={"content-type": "application/json"})
    _assert_422_naming(r, field)


def test_non_finite_current_weight_names_the_pool(client: TestClient, pools: list[str]) -> None:
    weights = json.dumps({pools[0]: 0.1}).replace("0.1", "NaN")
    r = client.post("/v1/recommendations", content=_body('"capital_usd": 1e6', pools, weights),
                    headers={"content-type": "application/json"})
    _assert_422_naming(r, f"current_weights.{pools[0]}")


def test_422_does_not_echo_the_input(client: TestClient, pools: list[str]) -> None:
    marker = "z" * 5000
    r = client.post("/v1/recommendations",
                    json={"capital_usd": "not-a-number-" + marker, "pools": pools})
    _assert_422_naming(r, "capital_usd")
    assert marker not in r.text and len(r.text) < 2000


def test_consistency_checks_use_the_same_422_shape(client: TestClient,
                                                   pools: list[str]) -> None:
    r = client.post("/v1/recommendations", json={"capital_usd": 1e6, "pools": ["a", "a"]})
    _assert_422_naming(r, "pools")
    r = client.post("/v1/recommendations", json={"capital_usd": 1e6, "pools": pools[:1],
                                                 "current_weights": {pools[1]: 0.1}})
    _assert_422_naming(r, "current_weights")


def test_malformed_json_is_422_in_the_same_shape(client: TestClient) -> None:
    r = client.post("/v1/recommendations", content=b'{"capital_usd": ',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert {"loc", "field", "msg", "type"} == set(r.json()["detail"][0])


def test_oversized_body_is_413(client: TestClient, pools: list[str]) -> None:
    big = {"capital_usd": 1e6, "pools": pools, "pad": "x" * 60_000}
    r = client.post("/v1/recommendations", json=big)
    assert r.status_code == 413 and "50000" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts the streamed bytes
        yield b'{"capital_usd": 1e6, "pools": ["'
        for _ in range(20):
            yield b"y" * 5000
        yield b'"]}'

    r = client.post("/v1/recommendations", content=chunks(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    ok = client.post("/v1/recommendations", json={"capital_usd": 1e6, "pools": pools})
    assert ok.status_code == 200, ok.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_non_finite_over_a_real_socket_keeps_the_connection(workdir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "LPA_HOME": str(workdir), "LPA_USE_REGISTRY": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "pipelines.service.app:create_app",
                             "--factory", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("service did not become ready within 60 s")
        pools = [p["pool_id"] for p in
                 httpx.get(f"http://127.0.0.1:{port}/v1/pools").json()["pools"]]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json"}
        for fragment, field in NON_FINITE[:3]:
            conn.request("POST", "/v1/recommendations", body=_body(fragment, pools),
                         headers=headers)
            sock = conn.sock
            resp = conn.getresponse()
            text = resp.read().decode()
            assert resp.status == 422, text
            assert field in text and json.loads(text)["detail"]
            assert resp.getheader("connection", "").lower() != "close"
            # the next request goes out on the very same socket and succeeds
            conn.request("POST", "/v1/recommendations",
                         body=json.dumps({"capital_usd": 1e6, "pools": pools}), headers=headers)
            assert conn.sock is sock
            ok = conn.getresponse()
            assert ok.status == 200, ok.read()
            ok.read()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_forecasts_the_allocator_rejects_are_a_server_error(client: TestClient,
                                                            pools: list[str]) -> None:
    state = client.app.state.service  # type: ignore[attr-defined]
    bad = state.forecasts.copy()
    bad.loc[pools[0], "tvl_usd"] = -1.0  # a broken forecast: not the caller's fault
    client.app.state.service = dataclasses.replace(state, forecasts=bad)  # type: ignore[attr-defined]
    try:
        r = client.post("/v1/recommendations", json={"capital_usd": 1e6, "pools": pools})
    finally:
        client.app.state.service = state  # type: ignore[attr-defined]
    assert r.status_code == 500
    assert "not the request" in r.json()["detail"] and pools[0] in r.json()["detail"]
