"""POST /v1/routes: the routed split over the served pools, validation, 404 and 503."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from features.build import build_features, write_features
from features.sources.simulator import simulate_market
from pipelines.route import load_pool_states
from pipelines.service.app import create_app
from pipelines.service.settings import ServiceSettings


@pytest.fixture(scope="module")
def workdir(sim_workdir: Callable[..., Path]) -> Path:
    return sim_workdir("routes", n_pools=8, days=20, seed=5, panel=True)


@pytest.fixture(scope="module")
def client(workdir: Path) -> Any:
    with TestClient(create_app(ServiceSettings(workdir=workdir, use_registry=False))) as c:
        yield c


def _pair(workdir: Path) -> tuple[str, str, float]:
    """A pair several pools trade, and 1 % of its depth in input-token units."""
    states = load_pool_states(workdir)
    d = states.describe()
    pairs = d.groupby(["token0", "token1"])["depth_usd"].agg(["size", "sum"])
    top = pairs.sort_values("size", ascending=False).iloc[0]
    name: tuple[str, str] = top.name  # type: ignore[assignment]
    t0, t1 = str(name[0]), str(name[1])
    return t0, t1, 0.01 * float(top["sum"]) / states.token_usd()[t0]


def test_route_round_trip(client: TestClient, workdir: Path) -> None:
    t0, t1, amount = _pair(workdir)
    r = client.post("/v1/routes", json={"from": t0, "to": t1, "amount": amount})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["token_in"] == t0 and d["token_out"] == t1
    assert d["amount_out"] >= d["best_single_pool_out"] * (1 - 1e-9)
    assert d["status"] in {"optimal", "capacity_exhausted", "single_chain"}
    assert d["splits"] and abs(sum(s["amount_in"] for s in d["splits"])
                               - d["amount_in_used"]) <= 1e-6 * amount
    assert abs(sum(s["amount_out"] for s in d["splits"]) - d["amount_out"]) \
        <= 1e-6 * d["amount_out"]
    assert all(s["path"][0] == t0 and s["path"][-1] == t1 for s in d["splits"])
    assert 0 <= d["price_impact"] < 1
    assert abs(d["effective_price"] - d["amount_out"] / d["amount_in_used"]) \
        <= 1e-9 * d["effective_price"]
    # the same trade on the same state gives the same answer (state loaded once)
    again = client.post("/v1/routes", json={"from": t0, "to": t1, "amount": amount}).json()
    assert again["amount_out"] == d["amount_out"]
    assert "/v1/routes" in client.get("/openapi.json").json()["paths"]


def test_more_hops_never_route_worse(client: TestClient, workdir: Path) -> None:
    t0, t1, amount = _pair(workdir)
    outs = [client.post("/v1/routes", json={"from": t0, "to": t1, "amount": 20 * amount,
                                            "max_hops": h}).json()["amount_out"]
            for h in (1, 2)]
    assert outs[1] >= outs[0] * (1 - 1e-7)


def test_gas_is_reported(client: TestClient, workdir: Path) -> None:
    t0, t1, amount = _pair(workdir)
    d = client.post("/v1/routes", json={"from": t0, "to": t1, "amount": amount,
                                        "gas_usd": 5.0}).json()
    assert d["gas_usd"] >= 5.0 and d["amount_out_net"] < d["amount_out"]


@pytest.mark.parametrize(("patch", "field"), [
    ({"amount": -1.0}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": "1e400"}, "amount"),
    ({"max_hops": 4}, "max_hops"),
    ({"max_hops": 0}, "max_hops"),
    ({"gas_usd": -2}, "gas_usd"),
    ({"from": ""}, "from"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_input_is_422_naming_the_field(client: TestClient, patch: dict, field: str
                                           ) -> None:
    body: dict[str, Any] = {"from": "WETH", "to": "USDC", "amount": 1.0, **patch}
    raw = None
    if body["amount"] == "1e400":  # JSON that parses to infinity
        raw = '{"from": "WETH", "to": "USDC", "amount": 1e400}'
    r = (client.post("/v1/routes", content=raw, headers={"content-type": "application/json"})
         if raw else client.post("/v1/routes", json=body))
    assert r.status_code == 422, r.text
    items = r.json()["detail"]
    assert any(i["field"] == field for i in items), items
    assert all(set(i) == {"loc", "field", "msg", "type"} for i in items)


def test_nan_amount_is_422(client: TestClient) -> None:
    r = client.post("/v1/routes", content='{"from": "WETH", "to": "USDC", "amount": NaN}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "amount"


def test_unknown_token_is_404_listing_the_known(client: TestClient, workdir: Path) -> None:
    r = client.post("/v1/routes", json={"from": "NOPE", "to": "USDC", "amount": 1.0})
    assert r.status_code == 404
    d = r.json()["detail"]
    assert d["unknown_token"] == "NOPE"
    assert set(d["known_tokens"]) == set(load_pool_states(workdir).tokens)


def test_no_route_is_404(client: TestClient, workdir: Path) -> None:
    states = load_pool_states(workdir)
    holders: dict[str, set[str]] = {}
    for a, b in zip(states.token0, states.token1, strict=True):
        holders.setdefault(a, set()).add(b)
        holders.setdefault(b, set()).add(a)
    # two tokens no single pool joins: one hop cannot reach
    pair = next((a, b) for a in holders for b in holders if a != b and b not in holders[a])
    r = client.post("/v1/routes", json={"from": pair[0], "to": pair[1], "amount": 1.0,
                                        "max_hops": 1})
    assert r.status_code == 404, r.text
    assert "known_tokens" in r.json()["detail"]


def test_no_panel_is_503(tmp_path: Path) -> None:
    panel, _ = simulate_market(n_pools=4, days=30, seed=6)
    write_features(build_features(panel), tmp_path)  # features but no stored panel
    with TestClient(create_app(ServiceSettings(workdir=tmp_path, use_registry=False))) as c:
        assert c.get("/readyz").json()["ready"]
        r = c.post("/v1/routes", json={"from": "WETH", "to": "USDC", "amount": 1.0})
        assert r.status_code == 503
        assert "panel" in r.json()["detail"] and str(tmp_path) not in r.json()["detail"]
