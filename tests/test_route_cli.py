"""`lpa route` over a stored panel: simulated market and the real daily export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()
SHARED = Path(os.environ.get("LPA_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = SHARED / "uniswap-v3-daily"
KEYS = {"amount_out", "best_single_pool_out", "price_impact", "splits"}


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def _route_json(wd: Path, *args: str) -> dict:
    return json.loads(_ok(["route", "--workdir", str(wd), *args, "--json"]))


def _check_split_sums(out: dict) -> None:
    assert KEYS <= set(out)
    assert out["amount_out"] >= out["best_single_pool_out"] * (1 - 1e-12)
    assert out["splits"], "a routed trade has at least one path"
    for s in out["splits"]:
        assert set(s) == {"path", "pool_ids", "amount_in", "amount_out"}
        assert s["path"][0] == out["token_in"] and s["path"][-1] == out["token_out"]
        assert len(s["pool_ids"]) == len(s["path"]) - 1
    assert sum(s["amount_in"] for s in out["splits"]) == pytest.approx(out["amount_in_used"])
    assert sum(s["amount_out"] for s in out["splits"]) == pytest.approx(out["amount_out"])


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("synth")
    _ok(["data", "synth", "--workdir", str(wd), "--pools", "10", "--days", "20"])
    return wd


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real daily export not found at {REAL} (set LPA_SHARED_DATA)")
    wd = tmp_path_factory.mktemp("real")
    _ok(["data", "import", "--workdir", str(wd), "--format", "uniswap-v3-subgraph", str(REAL)])
    return wd


def test_route_on_a_simulated_market(synth: Path) -> None:
    out = _route_json(synth, "--from", "WETH", "--to", "USDT", "--amount", "1e6")
    _check_split_sums(out)
    assert out["amount_in"] == 1e6 and 0 < out["price_impact"] < 1
    small = _route_json(synth, "--from", "WETH", "--to", "USDT", "--amount", "50")
    _check_split_sums(small)
    assert small["status"] == "optimal" and small["amount_in_used"] == 50.0
    assert small["price_impact"] < out["price_impact"]
    text = _ok(["route", "--workdir", str(synth), "--from", "weth", "--to", "usdt",
                "--amount", "50"])
    assert "splits" in text and "WETH > USDT" in text


def test_unknown_token_is_one_clear_paragraph(synth: Path) -> None:
    res = runner.invoke(app, ["route", "--workdir", str(synth), "--from", "WETH", "--to",
                              "DOGE", "--amount", "1"])
    assert res.exit_code == 1
    assert "'DOGE'" in res.output and "known tokens" in res.output and "WETH" in res.output
    assert "Traceback" not in res.output
    bad = runner.invoke(app, ["route", "--workdir", str(synth), "--from", "WETH", "--to",
                              "USDT", "--amount", "-5"])
    assert bad.exit_code == 1 and "amount_in" in bad.output


def test_route_without_a_panel_says_what_to_run(tmp_path: Path) -> None:
    res = runner.invoke(app, ["route", "--workdir", str(tmp_path), "--from", "WETH", "--to",
                              "USDT", "--amount", "1"])
    assert res.exit_code == 1 and "lpa data synth" in res.output


def test_route_on_the_real_daily_export(real: Path) -> None:
    out = _route_json(real, "--from", "WETH", "--to", "USDT", "--amount", "1e6")
    _check_split_sums(out)
    assert out["status"] == "capacity_exhausted"  # 1e6 WETH is more than the pools hold
    mid = _route_json(real, "--from", "WETH", "--to", "USDT", "--amount", "1000")
    _check_split_sums(mid)
    assert mid["status"] == "optimal"
    pools = {p for s in mid["splits"] for p in s["pool_ids"]}
    assert len(pools) >= 2  # both WETH/USDT fee tiers (and the WBTC path) share the trade
    hop = _route_json(real, "--from", "UNI", "--to", "WBTC", "--amount", "1000")
    assert all(s["path"][1] == "WETH" for s in hop["splits"])  # no direct UNI/WBTC pool


def test_route_at_a_past_state_reads_that_day(real: Path) -> None:
    then = _route_json(real, "--from", "WETH", "--to", "USDT", "--amount", "10",
                       "--at", "2022-05-12")
    now = _route_json(real, "--from", "WETH", "--to", "USDT", "--amount", "10")
    assert then["mid_price"] != pytest.approx(now["mid_price"], rel=0.05)
    res = runner.invoke(app, ["route", "--workdir", str(real), "--from", "WETH", "--to",
                              "USDT", "--amount", "1", "--at", "2001-01-01"])
    assert res.exit_code == 1 and "usable state" in res.output
