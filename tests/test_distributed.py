"""Dask: the partitioned feature build equals the single-process one; LightGBM on Dask; fan-out.

One LocalCluster of two worker processes serves the module (the --cluster local path); the
CLI test reaches it by address (the --scheduler path).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_features, read_features, write_features
from features.distributed import build_features_distributed, partition_pools
from features.schema import MISSING, POOL_ID, TIMESTAMP, Panel, reindex_panel, validate_panel
from features.sources.simulator import simulate_market
from features.sources.store import read_panel, write_panel
from models.forecasts import inputs_and_labels, make_forecaster
from models.metrics import pinball_loss
from models.threads import use_threads
from pipelines.cli import app
from pipelines.cluster import dask_client, fan_out, parse_cluster

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with dask_client("local:2") as c:
        yield c


def _gappy_panel() -> Panel:
    """A simulated panel with dropped rows and pools that start late: reindexed gaps."""
    panel, _ = simulate_market(n_pools=11, days=35, seed=4)
    f = panel.frame
    rng = np.random.default_rng(0)
    drop = rng.random(len(f)) < 0.03
    pools = sorted(f[POOL_ID].unique())
    late = (f[POOL_ID] == pools[3]) & (f[TIMESTAMP] < f[TIMESTAMP].min() + pd.Timedelta(days=9))
    f = f[~drop & ~late.to_numpy()].drop(columns=[MISSING])
    f = reindex_panel(f, "1h")
    frame = validate_panel(f, panel.meta, "1h", source="gappy")
    return Panel(frame=frame, meta=panel.meta, freq="1h", source="gappy")


def _assert_same_store(a: Path, b: Path) -> None:
    fa, fb = read_features(a), read_features(b)
    pd.testing.assert_frame_equal(fa.features, fb.features, check_exact=True)
    pd.testing.assert_frame_equal(fa.labels, fb.labels, check_exact=True)
    pd.testing.assert_frame_equal(fa.meta, fb.meta)
    ma = json.loads((a / "features" / "manifest.json").read_text())
    mb = json.loads((b / "features" / "manifest.json").read_text())
    assert {k: v for k, v in mb.items() if k != "parts"} == ma


def test_partitioned_build_equals_single_process(client: object, tmp_path: Path) -> None:
    panel = _gappy_panel()
    assert panel.frame[MISSING].sum() > 0
    write_panel(panel, tmp_path / "single")
    write_panel(panel, tmp_path / "dask")
    write_features(build_features(read_panel(tmp_path / "single")), tmp_path / "single")
    # partitions of 3 pools split pairs apart: pair shares must still be the market's
    res = build_features_distributed(client, tmp_path / "dask", pools_per_part=3)
    assert res.parts == 4
    assert sorted(p.name for p in (res.path / "features.parquet").iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(4)]
    _assert_same_store(tmp_path / "single", tmp_path / "dask")


def test_in_memory_panel_and_daily_frequency(client: object, tmp_path: Path) -> None:
    panel, _ = simulate_market(n_pools=7, days=120, seed=8, freq="1d")
    write_features(build_features(panel), tmp_path / "single")
    res = build_features_distributed(client, tmp_path / "dask", panel=panel)
    assert res.rows == len(panel.frame)
    _assert_same_store(tmp_path / "single", tmp_path / "dask")


def test_cli_scheduler_option_builds_the_same_store(client: Any, tmp_path: Path) -> None:
    panel, _ = simulate_market(n_pools=5, days=20, seed=1)
    for name in ("single", "dask"):
        write_panel(panel, tmp_path / name)
    runner = CliRunner()
    single = runner.invoke(app, ["features", "build", "-w", str(tmp_path / "single")])
    dask = runner.invoke(app, ["features", "build", "-w", str(tmp_path / "dask"),
                               "--scheduler", client.scheduler.address])
    assert single.exit_code == 0, single.output
    assert dask.exit_code == 0, dask.output
    assert "partitions" in dask.output
    _assert_same_store(tmp_path / "single", tmp_path / "dask")
    both = runner.invoke(app, ["features", "build", "-w", str(tmp_path / "dask"),
                               "--cluster", "local", "--scheduler", "tcp://127.0.0.1:1"])
    assert both.exit_code == 1 and "not both" in both.output


def test_partitions_and_cluster_specs() -> None:
    pools = [f"p{i:02d}" for i in range(10)]
    parts = partition_pools(pools, periods=100, workers=2)
    assert [p for part in parts for p in part] == pools and len(parts) == 4
    # memory bound: a year of hours allows fewer pools per partition than a month
    many = [f"p{i:04d}" for i in range(1000)]
    assert len(partition_pools(many, 8760, 1)[0]) < len(partition_pools(many, 720, 1)[0])
    assert parse_cluster("local:3") == 3 and parse_cluster("local") >= 1
    for bad in ("local:0", "remote:2", "local:x"):
        with pytest.raises(ValueError, match="--cluster"):
            parse_cluster(bad)


def test_fan_out_keeps_order_with_and_without_cluster(client: object) -> None:
    # the function must be importable on the workers (a test module's is not): a builtin
    items = [7.25, 1.125, 3.5, 0.0625, 9.75, 2.375, 5.5]
    local = fan_out(None, round, items, ndigits=1)
    assert local == [round(x, ndigits=1) for x in items]
    assert fan_out(client, round, items, ndigits=1) == local


def test_lightgbm_on_dask_is_a_lightgbm_model_close_to_the_local_fit(
    client: object, tmp_path: Path
) -> None:
    from models.gbm import LightGBMQuantile
    from models.gbm_dask import make_forecaster as dask_factory
    from models.gbm_dask import use_dask

    panel, _ = simulate_market(n_pools=6, days=60, seed=2)
    fs = build_features(panel)
    X, y = inputs_and_labels(fs, "fee_yield")
    cut = cast(pd.Timestamp, X[TIMESTAMP].quantile(0.75))
    train = (X[TIMESTAMP] <= cut - fs.horizon).to_numpy()
    test = (X[TIMESTAMP] > cut).to_numpy() & np.isfinite(y.to_numpy())
    args: tuple[str, str, str, int] = ("lightgbm", "fee_yield", fs.freq, fs.horizon_periods)
    kw: dict[str, Any] = {"seed": 0, "n_estimators": 60, "inner_folds": 0}  # one booster per fit
    with use_threads(1):  # as each one-thread worker; no OpenMP threads spinning for a core
        local = make_forecaster(*args, **kw).fit(X[train], y[train])
    with use_dask(client):
        remote = dask_factory(*args, **kw)
        remote.fit(X[train], y[train])
    assert isinstance(remote, LightGBMQuantile)
    # saved and reloaded as the plain kind, as the registry stores it
    remote.save(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "forecaster.json").read_text())
    assert spec["kind"] == "lightgbm"
    yt = y[test].to_numpy()
    with use_threads(1):
        p_local = local.predict(X[test])
        p_remote = remote.predict(X[test])
    losses = {}
    for name, p in (("local", p_local), ("dask", p_remote)):
        q = p[["q10", "q50", "q90"]].to_numpy()
        losses[name] = np.mean([pinball_loss(yt, q[:, i], a)
                                for i, a in enumerate((0.1, 0.5, 0.9))])
    # data-parallel training bins features and bags rows per worker: not bit-identical; its
    # test pinball loss is at most 10% above the single-process fit's
    assert losses["dask"] <= 1.10 * losses["local"], losses
    corr = np.corrcoef(p_local["q50"], p_remote["q50"])[0, 1]
    assert corr > 0.9, corr
    # the booster was trained by two machines (the cluster's workers), data-parallel
    text = remote.booster_.model_to_string()
    assert "[num_machines: 2]" in text and "[tree_learner: data]" in text
    # the stress classifier trains on the cluster too; outside use_dask the factory is plain
    from models.gbm_dask import DaskLightGBMStress
    from models.stress import LightGBMStress

    with use_dask(client):
        assert type(dask_factory("lightgbm", "stress", fs.freq, fs.horizon_periods)) is \
            DaskLightGBMStress
    assert type(dask_factory(*args)) is LightGBMQuantile
    assert type(dask_factory("lightgbm", "stress", fs.freq, fs.horizon_periods)) is \
        LightGBMStress


def test_walk_forward_folds_on_worker_processes_equal_the_single_process_run(
    client: Any,
) -> None:
    from models.cv import walk_forward_splits
    from models.evaluate import evaluate
    from models.gbm import LightGBMQuantile
    from models.gbm_dask import make_forecaster as dask_factory
    from models.gbm_dask import use_dask

    panel, _ = simulate_market(n_pools=3, days=14, seed=5)
    fs = build_features(panel)
    X, y = inputs_and_labels(fs, "volatility")
    folds = walk_forward_splits(X[TIMESTAMP], 3, fs.horizon, fs.horizon)

    def run() -> Any:
        return evaluate(lambda: dask_factory("lightgbm", "volatility", fs.freq,
                                             fs.horizon_periods, seed=0, n_estimators=10,
                                             inner_folds=0),
                        X, y, folds, target="volatility", freq=fs.freq,
                        horizon_periods=fs.horizon_periods)

    with use_threads(1):
        seq = run()
    with use_dask(client):
        par = run()
    # each fold fitted in a worker process, one thread, not data-parallel
    assert type(par.model) is LightGBMQuantile
    assert "[tree_learner: serial]" in par.model.booster_.model_to_string()
    # bit-identical boosters. With inner folds (the default) the quantile combination's least
    # squares runs on BLAS, which Dask's worker processes limit to one thread: predictions
    # then agree to about 3e-5 relative unless this process also uses one (OPENBLAS_NUM_THREADS)
    pd.testing.assert_frame_equal(seq.predictions, par.predictions, check_exact=True)
    pd.testing.assert_frame_equal(seq.folds, par.folds, check_exact=True)
    assert seq.metrics == par.metrics
