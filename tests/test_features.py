"""Feature pipelines: causality (property test), hand-computed estimators, known behaviour."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import names
from features._wide import rolling_mean, rolling_std, rolling_sum
from features.build import (
    FeatureConfig,
    build_features,
    feature_columns,
    read_features,
    write_features,
)
from features.flow import pair_share, tvl_flow_split
from features.network import contagion_exposure, token_adjacency
from features.schema import (
    CLOSE,
    HIGH,
    LOW,
    MISSING,
    OPEN,
    POOL_ID,
    TIMESTAMP,
    TVL_USD,
    VOLUME_USD,
    Panel,
    reindex_panel,
    validate_panel,
)
from features.sources.simulator import simulate_market
from features.volatility import garman_klass_vol, log_returns, parkinson_vol, realized_vol

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def small() -> tuple[Panel, pd.DataFrame]:
    return simulate_market(n_pools=8, days=30, seed=11)


def _perturb_after(panel: Panel, cut: pd.Timestamp, seed: int) -> Panel:
    rng = np.random.default_rng(seed)
    f = panel.frame.copy()
    after = f[TIMESTAMP] > cut
    scale = np.exp(rng.normal(0, 0.5, after.sum()))
    for c in (OPEN, HIGH, LOW, CLOSE, VOLUME_USD, TVL_USD, "fees_usd", "token0_price_usd"):
        f.loc[after, c] = f.loc[after, c] * scale
    f.loc[after, HIGH] = f.loc[after, [OPEN, HIGH, LOW, CLOSE]].max(axis=1)
    f.loc[after, LOW] = f.loc[after, [OPEN, HIGH, LOW, CLOSE]].min(axis=1)
    return Panel(frame=f, meta=panel.meta, freq=panel.freq)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut_frac=st.floats(0.2, 0.9), seed=st.integers(0, 1000))
def test_no_feature_looks_ahead(small: tuple, cut_frac: float, seed: int) -> None:
    panel, _ = small
    times = np.sort(panel.frame[TIMESTAMP].unique())
    cut = pd.Timestamp(times[int(cut_frac * (len(times) - 1))])
    base = build_features(panel).features
    moved = build_features(_perturb_after(panel, cut, seed)).features
    upto = base[TIMESTAMP] <= cut
    cols = feature_columns(base)
    a = base.loc[upto, cols].to_numpy(float)
    b = moved.loc[upto, cols].to_numpy(float)
    same = np.isclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True).all(axis=0)
    assert same.all(), f"features changed by future data: {np.array(cols)[~same]}"
    # and the perturbation did reach the future rows, so the test has teeth
    assert not np.allclose(base.loc[~upto, "rv_24h"], moved.loc[~upto, "rv_24h"],
                           equal_nan=True)


def test_truncation_agrees(small: tuple) -> None:
    panel, _ = small
    cut = panel.frame[TIMESTAMP].min() + pd.Timedelta(days=12)
    short = Panel(frame=panel.frame[panel.frame[TIMESTAMP] <= cut].reset_index(drop=True),
                  meta=panel.meta, freq=panel.freq)
    full = build_features(panel).features
    part = build_features(short).features
    f = full[full[TIMESTAMP] <= cut].reset_index(drop=True)
    cols = feature_columns(full)
    np.testing.assert_allclose(f[cols].to_numpy(float), part[cols].to_numpy(float),
                               rtol=1e-5, atol=1e-7)


def test_rolling_helpers_hand_computed() -> None:
    x = np.array([[1.0], [2.0], [np.nan], [4.0], [5.0]])
    np.testing.assert_allclose(rolling_sum(x, 2, 1)[:, 0], [1, 3, 2, 4, 9])
    np.testing.assert_allclose(rolling_mean(x, 3, 1)[:, 0], [1, 1.5, 1.5, 3, 4.5])
    assert math.isclose(rolling_std(x, 3, 2)[4, 0], np.std([4.0, 5.0], ddof=1))


def test_estimators_hand_computed() -> None:
    c = np.array([[100.0], [110.0], [99.0]])
    r = log_returns(c)[:, 0]
    assert np.isnan(r[0]) and math.isclose(r[1], math.log(1.1))
    rv = realized_vol(log_returns(c), 2, 1.0)[2, 0]
    assert math.isclose(rv, math.sqrt((math.log(1.1) ** 2 + math.log(0.9) ** 2) / 2))
    h, lo = np.array([[2.0], [3.0]]), np.array([[1.0], [1.5]])
    pk = parkinson_vol(h, lo, 2, 1.0)[1, 0]
    assert math.isclose(pk, math.sqrt(math.log(2) ** 2 / (4 * math.log(2))))
    o, cl = np.array([[1.0], [1.5]]), np.array([[2.0], [3.0]])
    gk = garman_klass_vol(o, h, lo, cl, 2, 1.0)[1, 0]
    term = 0.5 * math.log(2) ** 2 - (2 * math.log(2) - 1) * math.log(2) ** 2
    assert math.isclose(gk, math.sqrt(term))


def test_flow_split_and_pair_share() -> None:
    tvl = np.array([[100.0], [121.0]])
    p0 = np.array([[1.0], [1.21]])
    p1 = np.array([[1.0], [1.0]])
    d, price, net = tvl_flow_split(tvl, p0, p1)
    assert math.isclose(price[1, 0], 0.5 * math.log(1.21))
    assert math.isclose(net[1, 0], math.log(1.21) - 0.5 * math.log(1.21))
    x = np.array([[1.0, 3.0, 5.0]])
    member = np.array([[1, 0], [1, 0], [0, 1]], float)
    np.testing.assert_allclose(pair_share(x, member)[0], [0.25, 0.75, 1.0])


def test_contagion_hand_computed() -> None:
    adj = token_adjacency(["WETH", "WETH", "UNI"], ["USDC", "DAI", "LINK"])
    assert adj[0, 1] == 1 and adj[0, 2] == 0 and adj[1, 1] == 0
    s = np.array([[0.0, 2.0, 9.0]])
    out = contagion_exposure(s, adj)
    assert out[0, 0] == 2.0 and out[0, 1] == 0.0 and np.isnan(out[0, 2])


def test_volatility_rises_in_stress_and_contagion_follows() -> None:
    panel, truth = simulate_market(n_pools=16, days=90, seed=5)
    f = build_features(panel).features.merge(truth, on=[POOL_ID, TIMESTAMP])
    assert f.loc[f.stress, "rv_24h"].mean() > 1.3 * f.loc[~f.stress, "rv_24h"].mean()
    # pools not themselves stressed but sharing a token with a stressed pool
    s = truth.pivot(index=TIMESTAMP, columns=POOL_ID, values="stress")
    meta = panel.meta.set_index(POOL_ID).loc[s.columns]
    adj = token_adjacency(list(meta.token0), list(meta.token1))
    exposed = (s.to_numpy(float) @ adj) > 0
    ex = pd.Series(pd.DataFrame(exposed, index=s.index, columns=s.columns).stack(),
                   name="exposed")
    g = f.set_index([TIMESTAMP, POOL_ID]).join(ex)
    calm = g[~g.stress]
    assert calm.loc[calm.exposed, "contagion_max"].mean() > calm.loc[
        ~calm.exposed, "contagion_max"].mean() + 0.2


def test_daily_panel_skips_short_windows() -> None:
    panel, _ = simulate_market(n_pools=4, days=60, seed=2, freq="1d")
    fs = build_features(panel)
    cols = feature_columns(fs.features)
    assert "rv_7d" in cols and "rv_6h" not in cols and "rv_24h" not in cols
    assert fs.horizon == pd.Timedelta("7D")


def test_names_carry_durations_not_period_counts() -> None:
    assert [names.duration_label(d) for d in ("1d", "24h", "168h", "7d", "6h", "90min")] == [
        "24h", "24h", "7d", "7d", "6h", "90min"]
    assert names.ewm("ewma_vol", "12h") == "ewma_vol_hl12h"
    assert names.period("ret", "1h") == "ret_1h" and names.period("ret", "1d") == "ret_24h"
    hourly, _ = simulate_market(n_pools=3, days=40, seed=2, freq="1h")
    daily, _ = simulate_market(n_pools=3, days=60, seed=2, freq="1d")
    # one duration spelled twice counts once; a half-life of a day is named the same on both
    h = feature_columns(build_features(hourly, FeatureConfig(
        windows=["1d", "24h", "7d"], ewm_halflife="1d")).features)
    d = feature_columns(build_features(daily, FeatureConfig(
        windows=["7d", "30d"], ewm_halflife="24h")).features)
    assert h.count("rv_24h") == 1 and "ewma_vol_hl24h" in h and "ewma_vol_hl24h" in d
    assert "ret_1h" in h and "ret_24h" in d and not [c for c in h + d if c.endswith("_1")]


def test_label_horizon_proxies_are_built_whatever_the_windows(small: tuple) -> None:
    panel, _ = small
    fs = build_features(panel, FeatureConfig(windows=["6h", "7d"], ewm_halflife="12h"))
    cols = feature_columns(fs.features)
    assert {"rv_24h", "fee_yield_24h", "ewma_vol_hl24h", "fee_yield_ewm_hl24h",
            "ewma_vol_hl12h"} <= set(cols)
    assert "parkinson_24h" not in cols  # the window families follow the configured windows


def test_missing_periods_stay_missing(tmp_path: Path) -> None:
    panel, _ = simulate_market(n_pools=3, days=10, seed=4)
    f = panel.frame
    gap = (f[TIMESTAMP] >= f[TIMESTAMP].min() + pd.Timedelta("3D")) & (
        f[TIMESTAMP] < f[TIMESTAMP].min() + pd.Timedelta("3D5h"))
    holed = reindex_panel(f[~gap].drop(columns=[MISSING]), "1h")
    holed = validate_panel(holed, panel.meta, "1h")
    assert holed[MISSING].sum() == gap.sum()
    fs = build_features(Panel(frame=holed, meta=panel.meta, freq="1h"))
    miss = fs.features[MISSING].to_numpy()
    assert np.isnan(fs.features.loc[miss, feature_columns(fs.features)].to_numpy(float)).all()
    assert (fs.features.loc[~miss, "missing_frac_24h"] > 0).any()
    write_features(fs, tmp_path)
    back = read_features(tmp_path)
    pd.testing.assert_frame_equal(back.features, fs.features)
    assert back.horizon == fs.horizon and back.version == fs.version


def test_a_feature_table_of_older_names_is_refused(tmp_path: Path) -> None:
    import json

    panel, _ = simulate_market(n_pools=2, days=10, seed=4)
    write_features(build_features(panel), tmp_path)
    manifest = tmp_path / "features" / "manifest.json"
    man = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**man, "version": "1.0"}))
    with pytest.raises(ValueError, match="version 1.0.*lpa features build"):
        read_features(tmp_path)


def test_features_on_real_daily_exports() -> None:
    importer = pytest.importorskip("features.sources.importer",
                                   reason="subgraph importer not available")
    data = SHARED / "uniswap-v3-daily"
    if not data.exists():
        pytest.skip(f"real exports not found at {data}")
    panel, _ = importer.import_exports([data], "uniswap-v3-subgraph")
    fs = build_features(panel, FeatureConfig())
    assert len(fs.features) == len(panel.frame)
    assert fs.features["rv_7d"].notna().mean() > 0.8
    assert fs.labels["fwd_stress"].notna().mean() > 0.8
