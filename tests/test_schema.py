"""Every validation rule, with a deliberately broken file; atomic store under interruption."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import MISSING, DataValidationError, reindex_panel, validate_panel
from features.sources.importer import import_exports
from features.sources.simulator import simulate_market
from features.sources.store import read_panel, write_panel

POOLS_CSV = ("pool_id,chain,protocol,token0,token1,fee_tier\n"
             "p1,ethereum,uniswap_v3,WETH,USDC,0.003\n")


def _good(n: int = 6) -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    close = np.linspace(2000, 2010, n)
    return pd.DataFrame({
        "pool_id": "p1", "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "open": close - 0.5,
        "high": close * 1.01, "low": close * 0.99, "close": close, "volume_usd": 1e5,
        "fees_usd": 300.0, "tvl_usd": 1e7, "token0_price_usd": close, "token1_price_usd": 1.0,
    })


def _write(tmp_path: Path, df: pd.DataFrame, meta: str = POOLS_CSV) -> Path:
    d = tmp_path / "export"
    d.mkdir(exist_ok=True)
    (d / "pools.csv").write_text(meta)
    df.to_csv(d / "p1.csv", index=False)
    return d


def _load(d: Path, strict: bool = True) -> None:
    import_exports([d], "table", strict=strict, freq="1h")


def test_good_file_loads(tmp_path: Path) -> None:
    panel, report = import_exports([_write(tmp_path, _good())], "table", strict=True, freq="1h")
    assert len(panel.frame) == 6 and not panel.frame[MISSING].any()
    assert sum(n for _, _, n in report.rows()) == 0


@pytest.mark.parametrize(("breakage", "rule", "field"), [
    ("negative_volume", "non-negative", "volume_usd"),
    ("high_below_low", "high >= low", "high"),
    ("nan_required", "not null", "tvl_usd"),
])
def test_value_rules_name_file_pool_row_and_rule(tmp_path: Path, breakage: str, rule: str,
                                                 field: str) -> None:
    df = _good()
    if breakage == "negative_volume":
        df.loc[3, "volume_usd"] = -5.0
    elif breakage == "high_below_low":
        df.loc[3, ["high", "low"]] = [1990.0, 2020.0]
        df.loc[3, ["open", "close"]] = [2000.0, 2000.0]
    else:
        df.loc[3, "tvl_usd"] = np.nan
    panel_frame = df.assign(timestamp=pd.to_datetime(df["timestamp"], utc=True))
    meta = pd.read_csv(io.StringIO(POOLS_CSV))
    with pytest.raises(DataValidationError) as err:
        validate_panel(panel_frame, meta, "1h", source="p1.csv")
    msg = str(err.value)
    assert "file=p1.csv" in msg and "pool=p1" in msg and f"rule={rule}" in msg
    assert "row=3" in msg and f"field={field}" in msg and "2024-01-01 03:00" in msg


def test_duplicate_hour_is_refused_strict_and_cleaned_otherwise(tmp_path: Path) -> None:
    df = pd.concat([_good(), _good().iloc[[2]]], ignore_index=True)
    d = _write(tmp_path, df)
    with pytest.raises(DataValidationError, match="duplicate_period") as err:
        _load(d)
    assert "p1.csv" in str(err.value) and "pool=p1" in str(err.value)
    panel, report = import_exports([d], "table", freq="1h")
    assert dict((r, n) for r, _, n in report.rows())["duplicate_period"] == 1
    assert panel.frame["timestamp"].is_unique
    meta = pd.read_csv(io.StringIO(POOLS_CSV))
    raw = df.assign(timestamp=pd.to_datetime(df["timestamp"], utc=True))
    with pytest.raises(DataValidationError, match="rule=unique period"):
        validate_panel(raw, meta, "1h", source="p1.csv")


def test_non_utc_timestamps(tmp_path: Path) -> None:
    df = _good()
    df["timestamp"] = pd.date_range("2024-01-01", periods=6, freq="h",
                                    tz="Europe/Berlin").strftime("%Y-%m-%dT%H:%M:%S%z")
    with pytest.raises(DataValidationError, match="rule=UTC timestamps") as err:
        _load(_write(tmp_path, df))
    assert "p1.csv" in str(err.value)
    meta = pd.read_csv(io.StringIO(POOLS_CSV))
    local = _good().assign(timestamp=pd.date_range("2024-01-01", periods=6, freq="h",
                                                   tz="Europe/Berlin"))
    with pytest.raises(DataValidationError, match="UTC"):
        validate_panel(local, meta, "1h")


def test_timestamps_off_the_declared_frequency(tmp_path: Path) -> None:
    df = _good()
    df.loc[4, "timestamp"] = "2024-01-01T04:30:00Z"
    with pytest.raises(DataValidationError, match="off_frequency") as err:
        _load(_write(tmp_path, df))
    assert "row=4" in str(err.value)
    meta = pd.read_csv(io.StringIO(POOLS_CSV))
    raw = df.assign(timestamp=pd.to_datetime(df["timestamp"], utc=True))
    with pytest.raises(DataValidationError, match="rule=on frequency"):
        validate_panel(raw, meta, "1h", source="p1.csv")


def test_unknown_pool_in_metadata(tmp_path: Path) -> None:
    df = _good()
    df["pool_id"] = "p9"
    with pytest.raises(DataValidationError, match="pool not in metadata") as err:
        _load(_write(tmp_path, df))
    assert "pool=p9" in str(err.value) and "p1.csv" in str(err.value)


def test_bad_metadata_names_row(tmp_path: Path) -> None:
    bad = POOLS_CSV.replace("uniswap_v3", "uniswap_v9")
    with pytest.raises(DataValidationError, match="unknown protocol") as err:
        _load(_write(tmp_path, _good(), bad))
    assert "pools.csv" in str(err.value) and "row=0" in str(err.value)


def test_missing_periods_are_reindexed_and_flagged(tmp_path: Path) -> None:
    df = _good(8).drop(index=[3, 4])
    panel, _ = import_exports([_write(tmp_path, df)], "table", freq="1h")
    f = panel.frame
    assert len(f) == 8 and f[MISSING].sum() == 2
    assert f.loc[f[MISSING], "close"].isna().all()  # flagged, never filled


def test_interrupted_import_leaves_store_intact(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    first, truth = simulate_market(n_pools=3, days=3, seed=1)
    write_panel(first, tmp_path, truth=truth)
    second, _ = simulate_market(n_pools=5, days=4, seed=2)
    real = pd.DataFrame.to_csv

    def boom(self: pd.DataFrame, *a: object, **k: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError, match="disk full"):
        write_panel(second, tmp_path)
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    back = read_panel(tmp_path)
    assert len(back.meta) == 3
    pd.testing.assert_frame_equal(back.frame.reset_index(drop=True),
                                  first.frame.reset_index(drop=True), check_dtype=False)
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]


def test_reindex_keeps_existing_missing_flags() -> None:
    panel, _ = simulate_market(n_pools=2, days=2, seed=0)
    f = panel.frame.copy()
    f.loc[5, MISSING] = True
    out = reindex_panel(f, "1h")
    assert out[MISSING].sum() == 1


def test_frequency_helpers_cover_minute_hour_day() -> None:
    from features.schema import check_freq, duration_periods, freq_step, window_periods

    assert freq_step("1min") == pd.Timedelta(minutes=1)
    assert freq_step("1h") == pd.Timedelta(hours=1) and freq_step("1D") == pd.Timedelta(days=1)
    assert duration_periods("24h", "1h") == 24 and duration_periods("7d", "1d") == 7
    assert duration_periods("1h", "1min") == 60 and duration_periods("24h", "1d") == 1
    assert window_periods("1min", "1min") == 0 and window_periods("5min", "1min") == 5
    assert window_periods("24h", "1d") == 0  # shorter than two periods: skipped
    with pytest.raises(DataValidationError, match="accepted frequencies: 1min, 1h, 1d"):
        check_freq("5m")


def test_minute_panel_with_tick_and_sqrt_price_validates() -> None:
    from features.schema import DECIMALS0, SQRT_PRICE, TICK, validate_meta

    df = _good(4).assign(timestamp=pd.date_range("2024-01-01", periods=4, freq="min", tz="UTC"),
                         tick=[200000, 200001, 200002, 200003], sqrt_price=1.5e-3,
                         liquidity=3e18)
    meta = validate_meta(pd.read_csv(io.StringIO(
        POOLS_CSV.replace("fee_tier\n", "fee_tier,decimals0,decimals1\n")
        .replace("0.003\n", "0.003,18,6\n"))))
    assert meta[DECIMALS0].iloc[0] == 18
    out = validate_panel(df, meta, "1min")
    assert str(out[TICK].dtype) == "Int64" and out[SQRT_PRICE].iloc[0] == 1.5e-3
    with pytest.raises(DataValidationError, match="rule=on frequency"):
        validate_panel(df, meta, "1h")
    grid = reindex_panel(out.drop(index=[2]), "1min")
    assert len(grid) == 4 and grid[MISSING].sum() == 1
