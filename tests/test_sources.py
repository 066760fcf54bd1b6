"""Loaders: the real subgraph exports, v3 CSV, v2 pair data, generic tables, store round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.schema import FEES_USD, MISSING, POOL_ID, PRICE_PATH, TIMESTAMP, VOLUME_USD
from features.sources.importer import import_exports
from features.sources.store import read_panel, write_panel
from pipelines.cli import app

SHARED = Path(os.environ.get("LPA_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = SHARED / "uniswap-v3-daily"
needs_real = pytest.mark.skipif(not REAL.exists(),
                                reason=f"real exports not found at {REAL} (set LPA_SHARED_DATA)")
WETH_USDT = "0x11b815efb8f581194ae79006d24e0d814b7697f6"


@pytest.fixture(scope="module")
def real() -> tuple:
    return import_exports([REAL], "uniswap-v3-subgraph")


@needs_real
def test_real_exports_make_a_valid_daily_panel(real: tuple) -> None:
    panel, report = real
    assert panel.freq == "1d" and len(panel.meta) == 8
    f = panel.frame
    assert f[TIMESTAMP].min() < pd.Timestamp("2021-06-01", tz="UTC")
    assert f[TIMESTAMP].max() == pd.Timestamp("2023-12-31", tz="UTC")
    weth = f[f[POOL_ID] == WETH_USDT].set_index(TIMESTAMP)["token0_price_usd"].dropna()
    assert weth.between(500, 5000).all()
    assert weth.loc["2022-06-18"].min() < 1200 < weth.loc["2021-11-09"].max()
    meta = panel.meta.set_index(POOL_ID)
    assert meta.loc[WETH_USDT, PRICE_PATH].startswith("WETH->USDT")
    assert "UNI->WETH" in meta.loc["0x1d42064fc4beb5f8aaf85f4617ae8b3b5b8bd801", PRICE_PATH]
    live = f[~f[MISSING]].merge(panel.meta[[POOL_ID, "fee_tier"]], on=POOL_ID)
    np.testing.assert_allclose(live[FEES_USD], live[VOLUME_USD] * live["fee_tier"])
    counts = dict((r, n) for r, _, n in report.rows())
    assert counts["dead_start"] > 0 and counts["stale_open"] > 0
    assert counts["range_outlier"] > 0 and counts["sort_rows"] > 0


@needs_real
def test_real_exports_import_under_strict_with_trims_reported(real: tuple) -> None:
    panel, report = import_exports([REAL], "uniswap-v3-subgraph", strict=True)
    counts = dict((r, n) for r, _, n in report.rows())
    assert counts["dead_start"] == 8 and counts["stale_open"] > 0 and counts["sort_rows"] > 0
    assert counts["range_outlier"] == 0 and counts["wide_range_kept"] > 0  # kept, not clipped
    assert counts["unpriced_start"] == 1
    lax = real[0].frame
    assert len(panel.frame) == len(lax)
    same = [c for c in panel.frame.columns if c not in ("high", "low")]
    pd.testing.assert_frame_equal(panel.frame[same], lax[same])


@needs_real
def test_cli_import_and_info_on_real_exports(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["data", "import", "--format", "uniswap-v3-subgraph", str(REAL),
                                 "--workdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "range_outlier" in r.output and "trim" in r.output
    info = CliRunner().invoke(app, ["data", "info", "--workdir", str(tmp_path)])
    assert info.exit_code == 0 and "8 pools, frequency 1d" in info.output
    strict = CliRunner().invoke(app, ["data", "import", "--strict", str(REAL), "--workdir",
                                      str(tmp_path)])
    assert strict.exit_code == 0, strict.output
    bad = CliRunner().invoke(app, ["data", "import", "--freq", "5m", str(REAL), "--workdir",
                                   str(tmp_path / "other")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "8 pools" in CliRunner().invoke(app, ["data", "info", "--workdir",
                                                 str(tmp_path)]).output  # store intact


def _meta(d: Path, rows: str) -> None:
    (d / "pools.csv").write_text("pool_id,chain,protocol,token0,token1,fee_tier\n" + rows)


def test_v3_hourly_csv_with_subgraph_fields(tmp_path: Path) -> None:
    t0 = 1_700_000_000 - 1_700_000_000 % 3600
    rows = [{"periodStartUnix": t0 + 3600 * i, "token0Price": 1 / (2000 + i),
             "token1Price": 2000 + i, "open": 1 / (2000 + i), "high": 1 / (1990 + i),
             "low": 1 / (2010 + i), "close": 1 / (2000 + i), "tvlUSD": 1e7,
             "volumeUSD": 1e5, "feesUSD": 50.0, "txCount": 10} for i in range(5)]
    pd.DataFrame(rows[::-1]).to_csv(tmp_path / "0xabc.csv", index=False)
    _meta(tmp_path, "0xabc,ethereum,uniswap_v3,WETH,USDC,0.0005\n")
    panel, report = import_exports([tmp_path], "uniswap-v3-subgraph")
    f = panel.frame
    assert panel.freq == "1h" and len(f) == 5
    np.testing.assert_allclose(f["close"], 2000 + np.arange(5))
    assert (f["high"] >= f["low"]).all() and (f[FEES_USD] == 50).all()
    np.testing.assert_allclose(f["token0_price_usd"], 2000 + np.arange(5))
    assert dict((r, n) for r, _, n in report.rows())["fees_from_fee_tier"] == 0


def test_v2_pair_day_data(tmp_path: Path) -> None:
    rows = [{"date": 1_700_006_400 + 86400 * i, "pair": "0xv2", "reserve0": 100.0,
             "reserve1": 200_000.0 + 1000 * i, "reserveUSD": 4e5, "dailyVolumeUSD": 1e4,
             "dailyTxns": 5} for i in range(4)]
    (tmp_path / "pair.json").write_text(json.dumps({"data": {"pairDayDatas": rows}}))
    _meta(tmp_path, "0xv2,ethereum,uniswap_v2,WETH,DAI,0.003\n")
    panel, _ = import_exports([tmp_path], "uniswap-v2-subgraph")
    f = panel.frame
    np.testing.assert_allclose(f["close"], 2000 + 10 * np.arange(4))
    np.testing.assert_allclose(f[FEES_USD], 30.0)
    assert panel.freq == "1d"


def test_generic_table_with_mapping_and_separators(tmp_path: Path) -> None:
    text = ("Pool;When;O;H;L;C;Vol;TVL;P0;P1\n"
            + "".join(f"a;2024-01-0{i + 1};1.000;1.010;0.990;1.000;1.000.000;5.000.000;1;1\n"
                      for i in range(4)))
    (tmp_path / "t.csv").write_text(text)
    _meta(tmp_path, "a,ethereum,stableswap,USDC,USDT,0.0004\n")
    mapping = {"pool_id": "Pool", "timestamp": "When", "open": "O", "high": "H", "low": "L",
               "close": "C", "volume_usd": "Vol", "tvl_usd": "TVL", "token0_price_usd": "P0",
               "token1_price_usd": "P1"}
    panel, _ = import_exports([tmp_path / "t.csv"], "table", mapping=mapping, sep=";",
                              thousands=".", date_format="%Y-%m-%d", freq="1d")
    assert (panel.frame[VOLUME_USD] == 1_000_000).all()
    np.testing.assert_allclose(panel.frame[FEES_USD], 400.0)


def test_store_round_trip(tmp_path: Path) -> None:
    from features.sources.simulator import simulate_market

    panel, truth = simulate_market(n_pools=3, days=2, seed=0)
    write_panel(panel, tmp_path, truth=truth)
    back = read_panel(tmp_path)
    pd.testing.assert_frame_equal(back.frame, panel.frame, check_dtype=False,
                                  check_categorical=False)
    assert back.freq == "1h" and list(back.meta["pool_id"]) == list(panel.meta["pool_id"])


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        import_exports([tmp_path / "nope"], "uniswap-v3-subgraph")


def test_v3_hourly_export_keeps_active_liquidity_tick_and_sqrt_price(tmp_path: Path) -> None:
    t0 = 1_700_000_000 - 1_700_000_000 % 3600
    ticks = 200_000 + np.arange(4) * 10  # 1.0001**tick = token1 per token0, raw units
    rows = [{"periodStartUnix": t0 + 3600 * i, "close": str(1.0001 ** -int(k)),
             "tvlUSD": "1e7", "volumeUSD": "1e5", "liquidity": "1234567890123456789012",
             "sqrtPrice": str(int(1.0001 ** (int(k) / 2) * 2**96)), "tick": str(k)}
            for i, k in enumerate(ticks)]
    (tmp_path / "0xcc.json").write_text(json.dumps({"data": {"poolHourDatas": rows}}))
    _meta(tmp_path, "0xcc,ethereum,uniswap_v3,WETH,USDC,0.0005\n")
    panel, _ = import_exports([tmp_path], "uniswap-v3-subgraph")
    f = panel.frame
    assert str(f["tick"].dtype) == "Int64" and list(f["tick"]) == list(ticks)
    np.testing.assert_allclose(f["liquidity"], 1.234567890123456789012e21)
    np.testing.assert_allclose(f["sqrt_price"] ** 2, 1.0001 ** ticks.astype(float), rtol=1e-9)
    write_panel(panel, tmp_path / "w")
    back = read_panel(tmp_path / "w")
    assert list(back.frame["tick"]) == list(ticks)


def test_daily_export_without_liquidity_has_no_such_columns(tmp_path: Path) -> None:
    rows = [{"date": 1_700_006_400 + 86400 * i, "close": 1 / 2000, "tvlUSD": 1e7,
             "volumeUSD": 1e5} for i in range(3)]
    (tmp_path / "0xdd.json").write_text(json.dumps({"data": {"poolDayDatas": rows}}))
    _meta(tmp_path, "0xdd,ethereum,uniswap_v3,WETH,USDC,0.003\n")
    panel, _ = import_exports([tmp_path], "uniswap-v3-subgraph")
    assert not {"liquidity", "tick", "sqrt_price"} & set(panel.frame.columns)


MINUTE = SHARED / "demeter-minute"
POLY = "0x45dda9cb7c25131df268515131f647d726f50608"


def _minute_files(d: Path, minutes: int = 150) -> pd.DataFrame:
    """Synthetic demeter minute file of the known Polygon USDC/WETH pool (one day)."""
    rng = np.random.default_rng(3)
    close = 202_700 + np.cumsum(rng.integers(-3, 4, minutes))
    opn = np.r_[close[0], close[:-1]]
    raw = pd.DataFrame({
        "timestamp": pd.date_range("2022-07-19", periods=minutes, freq="min")
        .strftime("%Y-%m-%d %H:%M:%S"),
        "netAmount0": 0, "netAmount1": 0, "closeTick": close, "openTick": opn,
        "lowestTick": np.minimum(opn, close) - 1, "highestTick": np.maximum(opn, close) + 1,
        "inAmount0": rng.integers(0, 10**10, minutes), "inAmount1": 0,
        "currentLiquidity": 4 * 10**17,
    })
    d.mkdir(parents=True, exist_ok=True)
    raw.to_csv(d / f"Polygon-{POLY}-2022-07-19.csv", index=False)
    return raw


def test_demeter_minutes_import_and_aggregate_to_hours(tmp_path: Path) -> None:
    pytest.importorskip("features.sources.demeter")
    raw = _minute_files(tmp_path / "m")
    minute, report = import_exports([tmp_path / "m"], "demeter-minute", strict=True)
    f = minute.frame
    assert minute.freq == "1min" and len(f) == 150 and not f[MISSING].any()
    assert list(f["tick"]) == list(raw["closeTick"])
    assert report.counts["stale_open"] == 0  # a tick open is an observation, not a placeholder
    hourly, _ = import_exports([tmp_path / "m"], "demeter-minute", freq="1h")
    h = hourly.frame
    assert hourly.freq == "1h" and len(h) == 3 and hourly.info["resampled_from"] == "1min"
    f = f.assign(hour=f[TIMESTAMP].dt.floor("h"))
    by = f.groupby("hour")
    np.testing.assert_allclose(h[VOLUME_USD], by[VOLUME_USD].sum())
    np.testing.assert_allclose(h[FEES_USD], by[FEES_USD].sum())
    np.testing.assert_allclose(h["open"], by["open"].first())
    np.testing.assert_allclose(h["high"], by["high"].max())
    np.testing.assert_allclose(h["low"], by["low"].min())
    np.testing.assert_allclose(h["close"], by["close"].last())
    np.testing.assert_allclose(h["liquidity"], by["liquidity"].last())
    assert list(h["tick"]) == list(by["tick"].last())


@pytest.mark.skipif(not MINUTE.exists(), reason=f"demeter minute files not found at {MINUTE}")
def test_cli_imports_the_shared_minute_files_hourly(tmp_path: Path) -> None:
    pytest.importorskip("features.sources.demeter")
    r = CliRunner().invoke(app, ["data", "import", "--format", "demeter-minute", str(MINUTE),
                                 "--freq", "1h", "--workdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "(1h)" in r.output and "range_closure" in r.output
    panel = read_panel(tmp_path)
    f = panel.frame
    assert panel.freq == "1h" and len(panel.meta) == 1 and f[POOL_ID].iloc[0] == POLY
    assert f[TIMESTAMP].min() == pd.Timestamp("2022-07-19", tz="UTC")
    assert f["token1_price_usd"].between(1000, 2500).all()  # WETH in the summer of 2022
    assert int(panel.meta["decimals1"].iloc[0]) == 18
    v = CliRunner().invoke(app, ["data", "validate", "--workdir", str(tmp_path)])
    assert v.exit_code == 0, v.output
