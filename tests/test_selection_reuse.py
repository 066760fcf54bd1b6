"""A refit that keeps an earlier fit's model choice skips the inner folds and, on the same
window, gives that fit's forecasts exactly."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import pandas as pd
import pytest

from features.build import build_features
from features.sources.simulator import simulate_market
from models.forecasts import ForecastBundle, model_matrix

PARAMS = {"n_estimators": 15, "inner_folds": 2}


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    panel, _ = simulate_market(n_pools=4, days=40, seed=8)
    fs = build_features(panel)
    return model_matrix(fs), fs.labels, fs


def _bundle(fs: Any) -> ForecastBundle:
    return ForecastBundle(kind="lightgbm", freq=fs.freq, horizon_periods=fs.horizon_periods,
                          seed=0, **PARAMS)


def _count_trains(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = lgb.train

    def counted(*a: Any, **k: Any) -> lgb.Booster:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(lgb, "train", counted)
    return calls


def test_keeping_the_choice_on_the_same_window_reproduces_the_full_fit(
    data: tuple[pd.DataFrame, pd.DataFrame, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, labels, fs = data
    calls = _count_trains(monkeypatch)
    full = _bundle(fs).fit(x, labels)
    n_full = len(calls)
    calls.clear()
    kept = _bundle(fs).fit(x, labels, selection=full)
    # one booster per LightGBM target instead of one per grid point and inner fold
    assert len(calls) < n_full / 3
    for target, m in kept.models_.items():
        prev = full.models_[target]
        assert type(m) is type(prev) and m.selection_from is None
        for attr in ("choice_", "grid_choice_", "calibrator_", "down_", "up_", "smear_"):
            if hasattr(prev, attr):
                assert getattr(m, attr) == getattr(prev, attr), (target, attr)
    rows = x.tail(50)
    pd.testing.assert_frame_equal(kept.predict_rows(rows), full.predict_rows(rows),
                                  check_exact=True)


def test_a_later_window_refits_the_chosen_models_on_the_new_rows(
    data: tuple[pd.DataFrame, pd.DataFrame, Any],
) -> None:
    x, labels, fs = data
    ts = pd.to_datetime(x["timestamp"])
    early = (ts <= ts.min() + pd.Timedelta(days=25)).to_numpy()
    first = _bundle(fs).fit(x.loc[early], labels.loc[early])
    later = _bundle(fs).fit(x, labels, selection=first)
    fresh = _bundle(fs).fit(x, labels)
    rows = x.tail(50)
    a, b = later.predict_rows(rows), first.predict_rows(rows)
    assert not a.equals(b)  # the boosters were refitted on the longer window
    # the kept choice is the first fit's, whatever a fresh selection would pick now
    g = first.models_["fee_yield"].choice_
    assert later.models_["fee_yield"].choice_ == g
    assert set(fresh.predict_rows(rows).columns) == set(a.columns)


def test_a_choice_without_out_of_sample_calibration_is_not_kept(
    data: tuple[pd.DataFrame, pd.DataFrame, Any],
) -> None:
    x, labels, fs = data
    full = _bundle(fs).fit(x, labels)
    # as a fit on too short a window for inner folds would be: in-sample bands, no Platt map
    full.models_["fee_yield"].calibrated_ = False
    full.models_["stress"].calibrator_ = None
    full.models_["fee_yield"].choice_ = {**full.models_["fee_yield"].choice_, "weight": 0.123}
    again = _bundle(fs).fit(x, labels, selection=full)
    fresh = _bundle(fs).fit(x, labels)
    rows = x.tail(50)
    pd.testing.assert_frame_equal(again.predict_rows(rows), fresh.predict_rows(rows),
                                  check_exact=True)
    assert again.models_["fee_yield"].choice_ == fresh.models_["fee_yield"].choice_
