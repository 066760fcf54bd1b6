"""The demeter minute-file reader: the shared Polygon files and small files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import DataValidationError, reindex_panel, validate_panel
from features.sources.demeter import DEMETER_COLUMNS, read_demeter_minute

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MINUTES = SHARED / "demeter-minute"
needs_minutes = pytest.mark.skipif(
    not MINUTES.exists(), reason=f"shared demeter minute files not found at {MINUTES}")
POOL = "0x45dda9cb7c25131df268515131f647d726f50608"
HEADER = ",".join(DEMETER_COLUMNS)
ROWS = [  # two real minutes of 2022-07-19 and one made-up quiet minute
    "2022-07-19 00:00:00,-30361565484,19253165598944715626,202693,202656,202649,202697,"
    "23814930590,34314688834673185254,422680516552367239",
    "2022-07-19 00:01:00,-65715965681,41904775239614695519,202770,202696,202689,202786,"
    "42197939610,68803243902877561394,536831100101048247",
    "2022-07-19 00:03:00,0,0,202770,202770,202770,202770,0,0,536831100101048247",
]


def write_day(folder: Path, rows: list[str], header: str = HEADER,
              name: str = f"Polygon-{POOL}-2022-07-19.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def shared() -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_demeter_minute(MINUTES)


@needs_minutes
def test_shared_files_make_one_pool_of_minutes(shared: tuple) -> None:
    frame, meta = shared
    assert len(frame) == 50_390  # 35 days x 1440 minutes, 10 minutes absent from the files
    assert frame["pool_id"].unique().tolist() == [POOL]
    assert frame["timestamp"].min() == pd.Timestamp("2022-07-19", tz="UTC")
    assert frame["timestamp"].max() == pd.Timestamp("2022-08-22 23:59", tz="UTC")
    assert frame["timestamp"].is_monotonic_increasing
    m = meta.iloc[0]
    assert (m["chain"], m["token0"], m["token1"], m["fee_tier"]) == ("polygon", "USDC", "WETH",
                                                                      0.0005)
    assert (m["decimals0"], m["decimals1"]) == (6, 18)
    weth = frame["token1_price_usd"]
    assert weth.between(1000, 2100).all()
    assert (frame["high"] >= frame["low"]).all()
    # fees per token add up to the USD fees; fees are 0.05 % of the volume
    np.testing.assert_allclose(frame["fees_token0"] + frame["fees_token1"] * weth,
                               frame["fees_usd"], rtol=1e-12)
    np.testing.assert_allclose(frame["fees_usd"], frame["volume_usd"] * 0.0005, rtol=1e-12)
    panel = validate_panel(reindex_panel(frame, "1min"), meta, "1min")
    assert len(panel) == 50_400 and int(panel["missing"].sum()) == 10


@needs_minutes
def test_shared_first_minute_by_hand(shared: tuple) -> None:
    first = shared[0].iloc[0]
    close = 1.0001**202693 * 1e-12
    assert first["close"] == pytest.approx(close, rel=1e-12)
    assert first["open"] == pytest.approx(1.0001**202656 * 1e-12, rel=1e-12)
    assert first["token1_price_usd"] == pytest.approx(1 / close, rel=1e-12)
    volume = 23814930590 / 1e6 + 34314688834673185254 / 1e18 / close
    assert first["volume_usd"] == pytest.approx(volume, rel=1e-12)
    assert first["liquidity"] == pytest.approx(422680516552367239, rel=1e-15)
    assert first["tick"] == 202693
    tvl = 2 * 422680516552367239 / 1e12 * np.sqrt(close) / close  # full range, USD
    assert first["tvl_usd"] == pytest.approx(tvl, rel=1e-12)


@needs_minutes
def test_date_window_opens_only_its_files() -> None:
    frame, _ = read_demeter_minute(MINUTES, start="2022-08-01", end="2022-08-02")
    days = frame["timestamp"].dt.floor("D").unique()
    assert [str(d.date()) for d in days] == ["2022-08-01", "2022-08-02"]
    assert len(frame) == 2 * 1440 - 1  # 2022-08-02 00:00 is absent from its file


def test_synthetic_file_values(tmp_path: Path) -> None:
    write_day(tmp_path, ROWS)
    (tmp_path / "LICENSE").write_text("not a minute file")
    frame, meta = read_demeter_minute(tmp_path, provenance=True)
    assert len(frame) == 3 and list(frame["tick"]) == [202693, 202770, 202770]
    assert frame["timestamp"].dt.tz is not None
    quiet = frame.iloc[2]
    assert quiet["volume_usd"] == 0 and quiet["fees_usd"] == 0
    assert quiet["open"] == quiet["close"] == pytest.approx(1.0001**202770 * 1e-12)
    assert frame["_source_row"].tolist() == [0, 1, 2]
    assert frame["_source_file"].iloc[0].endswith("2022-07-19.csv")
    assert meta["pool_id"].tolist() == [POOL]


def test_metadata_table_overrides_and_names_unknown_pools(tmp_path: Path) -> None:
    other = "0x" + "ab" * 20
    write_day(tmp_path, ROWS[:1], name=f"Ethereum-{other}-2022-07-19.csv")
    with pytest.raises(DataValidationError, match="unknown pool") as err:
        read_demeter_minute(tmp_path)
    assert f"Ethereum-{other}-2022-07-19.csv" in str(err.value)
    meta = pd.DataFrame([{"pool_id": other.upper().replace("0X", "0x"), "protocol": "uniswap_v3",
                          "chain": "ethereum", "token0": "DAI", "token1": "WETH",
                          "fee_tier": 0.003, "decimals0": 18, "decimals1": 18}])
    frame, m = read_demeter_minute(tmp_path, meta)
    assert m.iloc[0]["pool_id"] == other and m.iloc[0]["fee_tier"] == 0.003
    close = 1.0001**202693  # no decimal shift with 18/18
    assert frame["close"].iloc[0] == pytest.approx(close, rel=1e-12)
    no_dec = meta.drop(columns=["decimals0", "decimals1"])
    with pytest.raises(DataValidationError, match="decimals0"):
        read_demeter_minute(tmp_path, no_dec)
    no_stable = meta.assign(token0="WBTC")
    with pytest.raises(DataValidationError, match="stablecoin"):
        read_demeter_minute(tmp_path, no_stable)


@pytest.mark.parametrize(("rows", "header", "match", "where"), [
    (ROWS, HEADER.replace("closeTick", "close_tick"), "bad header", "field=header"),
    ([ROWS[0], ROWS[1].replace(",202770,", ",abc,", 1)], HEADER, "closeTick is 'abc'", "row=1"),
    ([ROWS[0], ROWS[1].replace(",202770,", ",202770.5,", 1)], HEADER, "whole tick", "row=1"),
    ([ROWS[0], ROWS[1].replace(",202770,", ",,", 1)], HEADER, "closeTick is ''", "row=1"),
    ([ROWS[0], "19/07/2022 00:01," + ROWS[1].split(",", 1)[1]], HEADER, "not 'YYYY", "row=1"),
    ([ROWS[0], ROWS[0]], HEADER, "duplicate minute", "row=1"),
    ([ROWS[0], ROWS[1].replace("42197939610", "-42197939610")], HEADER, "negative inAmount0",
     "row=1"),
    ([ROWS[0], ROWS[1].replace("536831100101048247", "lots")], HEADER, "currentLiquidity",
     "row=1"),
])
def test_bad_files_name_file_row_and_field(tmp_path: Path, rows: list[str], header: str,
                                           match: str, where: str) -> None:
    path = write_day(tmp_path, rows, header)
    with pytest.raises(DataValidationError, match=match) as err:
        read_demeter_minute(tmp_path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_folder_without_minute_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataValidationError, match="no demeter minute files"):
        read_demeter_minute(tmp_path)
    with pytest.raises(DataValidationError, match="does not exist"):
        read_demeter_minute(tmp_path / "absent")
    with pytest.raises(DataValidationError, match="file name"):
        read_demeter_minute(tmp_path / "notes.txt")


def test_minute_in_two_files(tmp_path: Path) -> None:
    write_day(tmp_path, ROWS[:1])
    write_day(tmp_path, ROWS[:1], name=f"Polygon-{POOL}-2022-07-20.csv")
    with pytest.raises(DataValidationError, match="also in an earlier file") as err:
        read_demeter_minute(tmp_path)
    assert "2022-07-20.csv" in str(err.value)
