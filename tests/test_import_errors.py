"""Import errors users can act on, and the inputs that used to be refused or mangled.

Every bad input is built here in tmp_path; the strict-mode case also reads the real export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.schema import MISSING, DataValidationError
from features.sources.importer import import_exports
from features.sources.store import write_panel
from pipelines.cli import app

SHARED = Path(os.environ.get("LPA_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = SHARED / "uniswap-v3-daily"
META = "pool_id,chain,protocol,token0,token1,fee_tier\n"


def _meta(d: Path, rows: str = "p1,ethereum,uniswap_v3,WETH,USDC,0.003\n") -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "pools.csv").write_text(META + rows)


def _hours(n: int, pool: str = "p1", start: str = "2024-01-01") -> pd.DataFrame:
    t = pd.date_range(start, periods=n, freq="h", tz="UTC")
    close = np.linspace(2000, 2010, n)
    return pd.DataFrame({
        "pool_id": pool, "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "open": close - 1,
        "high": close + 5, "low": close - 5, "close": close, "volume_usd": 1e5, "tvl_usd": 1e7,
        "token0_price_usd": close, "token1_price_usd": 1.0,
    })


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def _day_json(d: Path, name: str, doc: object) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps(doc))
    _meta(d, f"{name},ethereum,uniswap_v3,WETH,USDC,0.003\n")


# --- defect 3: where an error is -------------------------------------------------------------

def test_cli_prints_the_location_suffix(tmp_path: Path) -> None:
    df = _hours(4)
    df.loc[2, "volume_usd"] = -1.0
    _meta(tmp_path / "x")
    df.to_csv(tmp_path / "x" / "p1.csv", index=False)
    code, out = _cli("data", "import", "--format", "table", str(tmp_path / "x"), "--workdir",
                     str(tmp_path / "w"))
    assert code == 1, out
    flat = " ".join(out.split())
    assert "[file=" in flat and "p1.csv" in flat and "row=2" in flat
    assert "field=volume_usd" in flat and "rule=non-negative" in flat


def test_error_after_the_combine_names_the_file_and_its_row(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d, "a,ethereum,uniswap_v3,WETH,USDC,0.003\nb,ethereum,uniswap_v3,WETH,USDC,0.003\n")
    _hours(6, "a").to_csv(d / "a.csv", index=False)
    b = _hours(6, "b").iloc[::-1].reset_index(drop=True)  # newest first, as exports come
    b.loc[1, "volume_usd"] = -3.0  # file row 1 = the fifth hour; no rule cleans it
    b.to_csv(d / "b.csv", index=False)
    with pytest.raises(DataValidationError) as err:
        import_exports([d], "table", freq="1h")
    e = err.value
    assert e.source is not None and e.source.endswith("b.csv") and e.row == 1
    assert e.pool == "b" and e.field == "volume_usd"
    assert str(e.timestamp).startswith("2024-01-01 04:00")


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    text = _hours(3).to_csv(index=False).replace("pool_id,", "pool_id,Zürich_") + ""
    (d / "p1.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DataValidationError, match="not UTF-8") as err:
        import_exports([d], "table", freq="1h")
    assert err.value.source is not None and err.value.source.endswith("p1.csv")


def test_milliseconds_as_seconds_name_the_file_and_row(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    df = _hours(4)
    df["timestamp"] = pd.to_datetime(df["timestamp"]).dt.as_unit("ns").astype("int64") // 10**6
    df.to_csv(d / "p1.csv", index=False)
    with pytest.raises(DataValidationError, match="milliseconds") as err:
        import_exports([d], "table", freq="1h")
    assert err.value.source is not None and err.value.source.endswith("p1.csv")
    assert err.value.row == 0


def test_unknown_frequency_lists_the_accepted_ones(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    _hours(4).to_csv(d / "p1.csv", index=False)
    with pytest.raises(DataValidationError, match="accepted frequencies: 1min, 1h, 1d"):
        import_exports([d], "table", freq="5m")
    code, out = _cli("data", "import", "--format", "table", "--freq", "5m", str(d),
                     "--workdir", str(tmp_path / "w"))
    assert code == 1 and "KeyError" not in out and "1min, 1h, 1d" in " ".join(out.split())


def test_subgraph_errors_and_empty_lists_show_the_subgraph_text(tmp_path: Path) -> None:
    _day_json(tmp_path / "e", "0xaa", {"errors": [{"message": "indexing_error: pool gone"}]})
    with pytest.raises(DataValidationError, match="indexing_error: pool gone"):
        import_exports([tmp_path / "e"], "uniswap-v3-subgraph")
    _day_json(tmp_path / "n", "0xaa", {"data": {"poolDayDatas": []}})
    with pytest.raises(DataValidationError, match="no rows for 'poolDayDatas'") as err:
        import_exports([tmp_path / "n"], "uniswap-v3-subgraph")
    assert "no time field" not in str(err.value)


# --- defect 6: infinite values, future timestamps --------------------------------------------

def test_infinite_volume_fails_strict_and_is_blanked_otherwise(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    df = _hours(5)
    df["volume_usd"] = df["volume_usd"].astype(object)
    df.loc[3, "volume_usd"] = "inf"
    df.to_csv(d / "p1.csv", index=False)
    with pytest.raises(DataValidationError, match="non_finite") as err:
        import_exports([d], "table", freq="1h", strict=True)
    assert err.value.row == 3
    panel, report = import_exports([d], "table", freq="1h")
    assert report.counts["non_finite"] == 1 and panel.frame[MISSING].sum() == 1
    assert np.isfinite(panel.frame["volume_usd"].dropna()).all()


def test_validate_refuses_a_stored_panel_with_infinite_tvl(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    _hours(5).to_csv(d / "p1.csv", index=False)
    panel, _ = import_exports([d], "table", freq="1h")
    panel.frame.loc[2, "tvl_usd"] = np.inf
    write_panel(panel, tmp_path / "w")
    code, out = _cli("data", "validate", "--workdir", str(tmp_path / "w"))
    assert code == 1 and "rule=finite" in " ".join(out.split())


def test_future_timestamps_are_refused_before_reindexing(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    df = _hours(4, start="2024-01-01")
    df["timestamp"] = pd.date_range("2024-01-01", periods=4, freq="D").strftime("%Y-%m-%d")
    df.loc[3, "timestamp"] = "2100-06-01"  # would be 27,000 invented missing days
    df.to_csv(d / "p1.csv", index=False)
    with pytest.raises(DataValidationError, match="in the future") as err:
        import_exports([d], "table", freq="1d")
    assert err.value.row == 3 and err.value.rule == "not in the future"
    panel, _ = import_exports([d], "table", freq="1d",
                              now=pd.Timestamp("2100-12-31", tz="UTC"))  # a later clock
    assert panel.frame[MISSING].sum() > 27_000


# --- defect 11: strict mode on the shipped export --------------------------------------------

@pytest.mark.skipif(not REAL.exists(), reason=f"real export not found at {REAL}")
def test_strict_imports_the_real_export(tmp_path: Path) -> None:
    code, out = _cli("data", "import", "--strict", str(REAL), "--workdir", str(tmp_path))
    assert code == 0, out
    assert "dead_start" in out and "wrote 7,761 rows for 8 pools (1d)" in out


# --- defect 12: exports the importer used to refuse ------------------------------------------

def _price_only(d: Path, days: int = 5) -> None:
    _meta(d, "Pool-A,ethereum,uniswap_v3,USDC,WETH,0.0005\n")
    t = pd.date_range("2024-03-01", periods=days, freq="D")
    weth = 3000 + 10 * np.arange(days)
    pd.DataFrame({"Pool_ID": "Pool-A", "Date": t.strftime("%Y-%m-%d"),
                  "token0Price": weth, "token1Price": 1 / weth, "feesUSD": 50.0,
                  "volumeUSD": 1e5, "totalValueLockedUSD": 2e7}).to_csv(d / "a.csv", index=False)


def test_price_only_table_derives_and_flags_ohlc(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _price_only(d)
    mapping = {"pool_id": "Pool_ID", "timestamp": "Date", "close": "token1Price",
               "volume_usd": "volumeUSD", "tvl_usd": "totalValueLockedUSD",
               "fees_usd": "feesUSD"}
    panel, report = import_exports([d], "table", mapping=mapping, date_format="%Y-%m-%d")
    f = panel.frame
    assert panel.freq == "1d" and len(f) == 5
    np.testing.assert_allclose(f["token1_price_usd"], 3000 + 10 * np.arange(5))
    assert report.counts["one_price"] == 5 and panel.info["one_price_pools"] == ["Pool-A"]
    assert (f["high"] >= f["low"]).all() and (f["fees_usd"] == 50).all()


def test_missing_field_is_named_with_the_columns_that_could_fill_it(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _price_only(d)
    mapping = {"pool_id": "Pool_ID", "timestamp": "Date", "close": "token1Price",
               "volume_usd": "volumeUSD"}
    with pytest.raises(DataValidationError) as err:
        import_exports([d], "table", mapping=mapping)
    msg = str(err.value)
    assert "'tvl_usd'" in msg and "totalValueLockedUSD" in msg and "--mapping" in msg


def test_one_source_column_feeds_several_fields(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _price_only(d)
    one = {"pool_id": "Pool_ID", "timestamp": "Date", "open": "token1Price",
           "high": "token1Price", "low": "token1Price", "close": "token1Price",
           "volume_usd": "volumeUSD", "fees_usd": "volumeUSD", "tvl_usd": "totalValueLockedUSD"}
    panel, report = import_exports([d], "table", mapping=one)
    f = panel.frame
    np.testing.assert_allclose(f["fees_usd"], f["volume_usd"])
    np.testing.assert_allclose(f["close"], 1 / (3000 + 10 * np.arange(5)))
    assert report.counts["one_price"] == 5


def test_inverted_table_prices(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _price_only(d)
    mapping = {"pool_id": "Pool_ID", "timestamp": "Date", "close": "token0Price",
               "volume_usd": "volumeUSD", "tvl_usd": "totalValueLockedUSD"}
    panel, _ = import_exports([d], "table", mapping=mapping, invert_price=True)
    np.testing.assert_allclose(panel.frame["close"], 1 / (3000 + 10 * np.arange(5)))
    np.testing.assert_allclose(panel.frame["fees_usd"], 1e5 * 0.0005)


def test_subgraph_date_strings_with_a_date_format(tmp_path: Path) -> None:
    rows = [{"date": f"0{1 + i}/02/2024", "close": 1 / (2000 + i), "tvlUSD": 1e7,
             "volumeUSD": 1e5} for i in range(4)]
    d = tmp_path / "x"
    _meta(d, "0xaa,ethereum,uniswap_v3,WETH,USDC,0.003\n")
    pd.DataFrame(rows).to_csv(d / "0xaa.csv", index=False)
    panel, _ = import_exports([d], "uniswap-v3-subgraph", date_format="%d/%m/%Y")
    assert panel.freq == "1d" and panel.frame["timestamp"].iloc[0] == pd.Timestamp(
        "2024-02-01", tz="UTC")  # day first, as declared
    np.testing.assert_allclose(panel.frame["close"], 2000 + np.arange(4))
    rows[2]["date"] = "the third"
    pd.DataFrame(rows).to_csv(d / "0xaa.csv", index=False)
    with pytest.raises(DataValidationError, match="--date-format") as err:
        import_exports([d], "uniswap-v3-subgraph")
    assert err.value.row == 2


def test_semicolon_us_dates_at_a_fixed_hour_are_floored(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    t = pd.date_range("2024-01-30 08:00", periods=5, freq="D")
    lines = ["pool;day;c;vol;tvl"] + [f"p1;{x:%m/%d/%Y %H:%M};{2000 + i};1000;50000"
                                      for i, x in enumerate(t)]
    (d / "us.csv").write_text("\n".join(lines) + "\n")
    mapping = {"pool_id": "pool", "timestamp": "day", "close": "c", "volume_usd": "vol",
               "tvl_usd": "tvl"}
    panel, report = import_exports([d], "table", mapping=mapping, sep=";",
                                   date_format="%m/%d/%Y %H:%M")
    assert len(panel.frame) == 5 and report.counts["period_floor"] == 5
    assert panel.frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-30", tz="UTC")
    assert report.counts["off_frequency"] == 0


def test_an_import_that_keeps_no_rows_names_the_rule(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d)
    df = _hours(4)
    df["tvl_usd"] = 0.0
    df.to_csv(d / "p1.csv", index=False)
    with pytest.raises(DataValidationError, match="dead_start") as err:
        import_exports([d], "table", freq="1h")
    assert "no rows left" in str(err.value)
    code, out = _cli("data", "import", "--format", "table", "--freq", "1h", str(d),
                     "--workdir", str(tmp_path / "w"))
    assert code == 1 and "wrote 0 rows" not in out


def _lone_pool(d: Path) -> None:
    _meta(d, "0xbb,ethereum,uniswap_v3,WBTC,WETH,0.003\n")
    rows = [{"date": 1_704_067_200 + 86400 * i, "close": 1 / 20.0, "tvlUSD": 5e6,
             "volumeUSD": 1e5} for i in range(4)]
    (d / "0xbb.json").write_text(json.dumps({"data": {"poolDayDatas": rows}}))


def test_lone_pool_without_a_stablecoin_route_says_how_to_price_it(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _lone_pool(d)
    with pytest.raises(DataValidationError, match="--usd-price") as err:
        import_exports([d], "uniswap-v3-subgraph")
    assert "WBTC" in str(err.value) and "WETH" in str(err.value)
    panel, _ = import_exports([d], "uniswap-v3-subgraph", usd_price=["WETH=2500"])
    np.testing.assert_allclose(panel.frame["token1_price_usd"], 2500.0)
    np.testing.assert_allclose(panel.frame["token0_price_usd"], 20 * 2500.0)
    assert "user-supplied" in panel.meta["price_path"].iloc[0]
    prices = tmp_path / "usd.csv"
    prices.write_text("timestamp,token,price_usd\n" + "".join(
        f"2024-01-0{i + 1},WETH,{2000 + i}\n" for i in range(4)))
    code, out = _cli("data", "import", str(d), "--usd-prices", str(prices), "--workdir",
                     str(tmp_path / "w"))
    assert code == 0, out
    code, out = _cli("data", "import", str(d), "--usd-price", "WETH", "--workdir",
                     str(tmp_path / "w"))
    assert code == 1 and "TOKEN=VALUE" in out


def test_strict_unpriced_row_names_the_file_and_its_row(tmp_path: Path) -> None:
    d = tmp_path / "x"
    _meta(d, "0xaa,ethereum,uniswap_v3,WBTC,WETH,0.003\n0xbb,ethereum,uniswap_v3,WETH,USDC,"
             "0.0005\n")
    day = 1_704_067_200
    a = [{"date": day + 86400 * i, "close": 1 / 20.0, "tvlUSD": 5e6, "volumeUSD": 1e5}
         for i in range(5)]
    b = [{"date": day + 86400 * i, "close": 1 / 2000.0, "tvlUSD": 5e6, "volumeUSD": 1e5}
         for i in range(5) if i != 3]  # WETH has no price on day 3
    (d / "0xaa.json").write_text(json.dumps({"data": {"poolDayDatas": a[::-1]}}))
    (d / "0xbb.json").write_text(json.dumps({"data": {"poolDayDatas": b}}))
    with pytest.raises(DataValidationError, match="unpriced") as err:
        import_exports([d], "uniswap-v3-subgraph", strict=True)
    e = err.value
    assert e.source is not None and e.source.endswith("0xaa.json") and e.row == 1
    panel, report = import_exports([d], "uniswap-v3-subgraph")
    assert report.counts["unpriced"] == 1
