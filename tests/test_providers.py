"""The backtest providers: each decision's forecasts from its own rows, stress rates counted on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.schema import freq_step
from features.sources.simulator import simulate_market
from models.threads import use_threads
from pipelines.backtest.providers import BundleProvider


@pytest.mark.parametrize("kind, params", [
    ("lightgbm", {"n_estimators": 10, "inner_folds": 0}),
    ("torch", {"epochs": 1, "max_samples": 500, "hidden": 8, "lookback": 6})])
def test_decision_forecasts_come_from_the_rows_up_to_the_decision_alone(
        kind: str, params: dict[str, object]) -> None:
    panel, _ = simulate_market(n_pools=4, days=24, seed=4)
    fs = build_features(panel)
    ts = pd.to_datetime(fs.features["timestamp"])
    t0 = ts.min()
    with use_threads(1):
        prov = BundleProvider(kind, params=params).fit(fs, t0 + pd.Timedelta(days=10))
        bundle = prov.bundle_
        assert bundle is not None
        x = prov._matrix(fs)
        back = (int(params.get("lookback", 1)) - 1) * freq_step(fs.freq)
        # decisions before and after a refit, at and between whole days
        times = [t0 + pd.Timedelta(days=d, hours=h) for d in (11, 12, 20) for h in (0, 7)]
        for i, t in enumerate(times):
            if i == 4:
                prov.fit(fs, t0 + pd.Timedelta(days=19))
                assert prov.bundle_ is not bundle
                bundle = prov.bundle_
            got = prov.predict_pools(fs, t)
            start = t - back if kind == "torch" else t
            alone = bundle.predict_pools(x.loc[((ts >= start) & (ts <= t)).to_numpy()])
            assert got is not None
            pd.testing.assert_frame_equal(got, alone, check_exact=False, rtol=1e-6, atol=1e-9)
            assert np.isfinite(got["p_stress"]).all()


def test_baseline_stress_rates_counted_on_from_the_last_fit_equal_a_fresh_count() -> None:
    from pipelines.backtest.engine import MarketData
    from pipelines.backtest.providers import BaselineProvider

    panel, _ = simulate_market(n_pools=5, days=30, seed=8)
    fs = build_features(panel)
    market = MarketData.from_panel(panel, fs)
    t0 = pd.to_datetime(fs.features["timestamp"]).min()
    on = BaselineProvider(market, market.horizon_bars)
    for d in (3, 9, 9, 20, 6, 28):  # later cutoffs, a repeat and an earlier one
        upto = t0 + pd.Timedelta(days=d)
        fresh = BaselineProvider(market, market.horizon_bars).fit(fs, upto)
        assert on.fit(fs, upto).rate_ is not None and fresh.rate_ is not None
        pd.testing.assert_series_equal(on.rate_, fresh.rate_, check_exact=True)
