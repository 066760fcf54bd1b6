"""Conformal intervals cover on synthetic series with known noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from models.conformal import conformal_quantile, interval_offsets, smearing_factor
from models.gbm import LightGBMQuantile


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    s = np.arange(1.0, 10.0)  # 9 scores
    assert conformal_quantile(s, 0.8) == 8.0  # ceil(10 x 0.8) = 8th smallest
    assert conformal_quantile(s, 0.95) == math.inf  # needs a 10th score
    assert math.isnan(conformal_quantile(np.array([]), 0.8))


def test_a_too_narrow_band_is_widened_to_cover_80_percent() -> None:
    rng = np.random.default_rng(0)
    f = np.sin(np.linspace(0, 30, 6000))
    y = f + rng.normal(0, 1.0, 6000)  # known noise: N(0, 1)
    calib, test = slice(0, 3000), slice(3000, 6000)
    down, up = interval_offsets(y[calib], f[calib] - 0.1, f[calib] + 0.1)
    assert abs(down - 1.18) < 0.1 and abs(up - 1.18) < 0.1  # z(0.9) - 0.1 = 1.18
    inside = (y[test] >= f[test] - 0.1 - down) & (y[test] <= f[test] + 0.1 + up)
    assert 0.77 <= inside.mean() <= 0.83


def test_a_too_wide_band_is_narrowed() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1.0, 4000)
    down, up = interval_offsets(y, np.full(4000, -5.0), np.full(4000, 5.0))
    assert down < -3 and up < -3  # negative: the band shrinks towards +-1.28


def test_lightgbm_interval_covers_out_of_sample_on_a_panel_with_known_noise() -> None:
    """y = exp(signal + e), e ~ N(0, 0.5): the fitted 80 % band covers 75-85 % of later rows,
    and the mean forecast carries the lognormal mean factor exp(0.5^2 / 2)."""
    rng = np.random.default_rng(2)
    n, pools = 400, 4
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    X = pd.DataFrame({"pool_id": np.repeat([f"p{i}" for i in range(pools)], n),
                      "timestamp": np.tile(ts, pools)})
    X["signal"] = rng.normal(0, 1, len(X))
    y = pd.Series(np.exp(-3 + X["signal"] + rng.normal(0, 0.5, len(X))), index=X.index)
    train = (X["timestamp"] < ts[250]).to_numpy()
    test = (X["timestamp"] >= ts[260]).to_numpy()
    m = LightGBMQuantile(n_estimators=80, horizon_periods=4, grid=[{"num_leaves": 7}])
    p = m.fit(X[train], y[train]).predict(X[test])
    assert m.calibrated_  # the band came from inner walk-forward residuals
    yt = y[test].to_numpy()
    cover = np.mean((yt >= p["q10"].to_numpy()) & (yt <= p["q90"].to_numpy()))
    assert 0.75 <= cover <= 0.85
    ratio = float(np.median(p["mean"] / p["q50"]))
    assert abs(ratio - math.exp(0.5**2 / 2)) < 0.08


def test_smearing_of_normal_residuals_is_the_lognormal_mean() -> None:
    r = np.random.default_rng(3).normal(0, 0.8, 200_000)
    assert abs(smearing_factor(r) - math.exp(0.32)) < 0.01
    assert smearing_factor(np.array([])) == 1.0
