"""In-process partitioned feature build: same store as the single-process build, written safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import partitioned
from features.build import PARQUET_OPTIONS, build_features, read_features, write_features
from features.partitioned import build_features_partitioned, memory_check, single_build_gib
from features.partitions import partition_pools, read_panel_pools
from features.schema import (
    CHAIN,
    MISSING,
    POOL_ID,
    TIMESTAMP,
    TOKEN0,
    TOKEN1,
    Panel,
    reindex_panel,
    validate_panel,
)
from features.sources.simulator import simulate_market
from features.sources.store import read_panel, write_panel
from features.table_io import arrow_schema, write_parquet
from pipelines.cli import app


def _pairs(meta: pd.DataFrame) -> pd.Series:
    """Pair (token0/token1@chain) of each pool, indexed by pool id."""
    m = meta.set_index(POOL_ID)
    return m[TOKEN0] + "/" + m[TOKEN1] + "@" + m[CHAIN]


@pytest.fixture(scope="module")
def panel() -> Panel:
    """12 pools x 30 days hourly, each sharing its pair with another pool, with dropped rows
    and a pool that starts late (gaps)."""
    market, _ = simulate_market(n_pools=30, days=30, seed=3)
    pair = _pairs(market.meta)
    pools = sorted(pair.index[pair.duplicated(keep=False)])[:12]
    meta = market.meta[market.meta[POOL_ID].isin(pools)].reset_index(drop=True)
    f = market.frame[market.frame[POOL_ID].isin(pools)]
    late = (f[POOL_ID] == pools[5]) & (f[TIMESTAMP] < f[TIMESTAMP].min() + pd.Timedelta(days=6))
    drop = np.random.default_rng(1).random(len(f)) < 0.03
    f = reindex_panel(f[~drop & ~late.to_numpy()].drop(columns=[MISSING]), "1h")
    frame = validate_panel(f, meta, "1h", source="gappy")
    return Panel(frame=frame, meta=meta, freq="1h", source="gappy")


@pytest.fixture(scope="module")
def single(panel: Panel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory holding the panel and its single-process feature store."""
    wd = tmp_path_factory.mktemp("single")
    write_panel(panel, wd)
    write_features(build_features(read_panel(wd)), wd)
    return wd


def _stored(wd: Path) -> tuple[Any, dict[str, Any]]:
    return read_features(wd), json.loads((wd / "features" / "manifest.json").read_text())


def _assert_same_store(single: Path, other: Path) -> None:
    (fa, ma), (fb, mb) = _stored(single), _stored(other)
    pd.testing.assert_frame_equal(fa.features, fb.features, check_exact=True)
    pd.testing.assert_frame_equal(fa.labels, fb.labels, check_exact=True)
    pd.testing.assert_frame_equal(fa.meta, fb.meta)
    assert {k: v for k, v in mb.items() if k != "parts"} == ma


def test_three_partitions_store_what_the_single_process_build_stores(
    panel: Panel, single: Path, tmp_path: Path
) -> None:
    assert panel.frame[MISSING].sum() > 0
    write_panel(panel, tmp_path)
    res = build_features_partitioned(tmp_path, partitions=3)
    assert res.parts == 3 and res.rows == len(panel.frame)
    names = [f"part-{i:05d}.parquet" for i in range(3)]
    for table in ("features.parquet", "labels.parquet"):
        assert sorted(p.name for p in (res.path / table).iterdir()) == names
    # the partitions split token pairs apart: pair shares and neighbours must be the market's
    pair = _pairs(panel.meta)
    parts = partition_pools(sorted(pair.index), 720, 0, partitions=3)
    part_of = {p: i for i, ps in enumerate(parts) for p in ps}
    split = [k for k, g in pair.groupby(pair).groups.items() if len({part_of[p] for p in g}) > 1]
    assert len(split) >= 2, split
    _assert_same_store(single, tmp_path)


def test_one_pool_per_partition_and_default_partitions(
    panel: Panel, single: Path, tmp_path: Path
) -> None:
    write_panel(panel, tmp_path)
    assert build_features_partitioned(tmp_path, pools_per_part=1).parts == 12
    _assert_same_store(single, tmp_path)
    assert build_features_partitioned(tmp_path).parts == 1  # 12 x 720 fits one partition
    _assert_same_store(single, tmp_path)


def test_read_panel_pools_reads_what_read_panel_holds(single: Path) -> None:
    whole = read_panel(single).frame
    pools = sorted(whole[POOL_ID].unique())[3:7]
    part = read_panel_pools(single, pools)
    expect = whole[whole[POOL_ID].isin(pools)].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expect, check_exact=True)
    some = read_panel_pools(single, pools, ["close"], optional=[MISSING, "no_such_column"])
    assert list(some.columns) == [POOL_ID, TIMESTAMP, "close", MISSING]
    with pytest.raises(ValueError, match="no column 'no_such_column'"):
        read_panel_pools(single, pools, ["no_such_column"])


def test_part_files_hold_the_bytes_to_parquet_writes(single: Path, tmp_path: Path) -> None:
    fs = build_features(read_panel(single))
    odd = fs.labels.head(50).copy()
    odd[POOL_ID] = odd[POOL_ID].astype(object)
    odd["all_nan"] = np.nan
    odd["f32"] = np.full(len(odd), 1.5, np.float32)
    odd.loc[odd.index[3], TIMESTAMP] = pd.NaT  # a null stamp
    for i, frame in enumerate((fs.features, fs.labels, odd, fs.labels.head(0))):
        frame.to_parquet(tmp_path / f"{i}-pandas.parquet", **PARQUET_OPTIONS)
        write_parquet(frame, tmp_path / f"{i}-arrow.parquet", PARQUET_OPTIONS)
        # as a part is written: the schema made once for every part
        write_parquet(frame, tmp_path / f"{i}-schema.parquet", PARQUET_OPTIONS,
                      arrow_schema(frame))
        expect = (tmp_path / f"{i}-pandas.parquet").read_bytes()
        assert (tmp_path / f"{i}-arrow.parquet").read_bytes() == expect, i
        assert (tmp_path / f"{i}-schema.parquet").read_bytes() == expect, i
    with pytest.raises(ValueError, match="expected index=False"):
        write_parquet(odd, tmp_path / "x.parquet", {"index": True})
    with pytest.raises(ValueError, match="expected the same columns"):
        write_parquet(odd, tmp_path / "x.parquet", PARQUET_OPTIONS, arrow_schema(fs.labels))


def _copy_store(panel: Panel, single: Path, wd: Path) -> dict[str, bytes]:
    write_panel(panel, wd)
    write_features(read_features(single), wd)
    return {str(p.relative_to(wd)): p.read_bytes()
            for p in sorted((wd / "features").rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["finish_pass", "write_part"])
def test_a_failure_mid_build_leaves_the_previous_store(
    panel: Panel, single: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    before = _copy_store(panel, single, tmp_path)
    real = getattr(partitioned, where)
    calls: list[int] = []

    def fail_on_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(f"disk full while in {where}")
        return real(*args, **kwargs)

    # finish_pass runs on this thread, write_part on the I/O thread
    monkeypatch.setattr(partitioned, where, fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        build_features_partitioned(tmp_path, partitions=3)
    after = {str(p.relative_to(tmp_path)): p.read_bytes()
             for p in sorted((tmp_path / "features").rglob("*")) if p.is_file()}
    assert after == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".features")]
    _assert_same_store(single, tmp_path)


def test_partition_counts() -> None:
    pools = [f"p{i:02d}" for i in range(10)]
    parts = partition_pools(pools, 100, 0, partitions=3)
    assert [len(p) for p in parts] == [3, 4, 3] and sum(parts, []) == pools
    assert len(partition_pools(pools, 100, 0, partitions=50)) == 10
    assert len(partition_pools(pools, 100, 0)) == 1  # no minimum count in one process
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        partition_pools(pools, 100, 0, partitions=0)


def test_automatic_choice_follows_the_memory_estimate(single: Path) -> None:
    man = json.loads((single / "data" / "panel" / "manifest.json").read_text())
    need = single_build_gib(int(man["rows"]))
    fits = memory_check(single, available=10 * need)
    assert fits.partitions is None and fits.need_gib == need
    assert memory_check(single, available=need / 10).partitions == 1  # 8,640 cells: one part
    with pytest.raises(FileNotFoundError, match="no pool panel"):
        memory_check(single / "nowhere", available=1.0)


def test_cli_partitions_option_and_automatic_choice(
    panel: Panel, single: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_panel(panel, tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["features", "build", "-w", str(tmp_path), "--partitions", "4"])
    assert out.exit_code == 0, out.output
    assert "4 partition(s)" in out.output
    _assert_same_store(single, tmp_path)
    bad = runner.invoke(app, ["features", "build", "-w", str(tmp_path), "--partitions", "0"])
    assert bad.exit_code != 0 and "partitions" in bad.output
    monkeypatch.setattr(partitioned, "available_gib", lambda: 1e-6)
    auto = runner.invoke(app, ["features", "build", "-w", str(tmp_path)])
    assert auto.exit_code == 0, auto.output
    assert "would not fit" in auto.output and "1 partition(s)" in auto.output
    _assert_same_store(single, tmp_path)
