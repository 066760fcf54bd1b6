"""MASE: errors scaled by the seasonal-naive forecast's in-sample MAE, per series."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import mase, mase_scale


def _series(rng: np.random.Generator, n: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and a seasonal-naive forecast (yesterday's value) of one series at a level."""
    y = level * (1 + 0.1 * np.cumsum(rng.normal(size=n + 1)))
    return y[1:], y[:-1]


def test_hand_computed_two_series() -> None:
    # in-sample naive MAE: pool a = 1, pool b = 10
    y_tr = np.array([1.0, 2.0, 3.0, 10.0, 30.0])
    naive_tr = np.array([0.0, 1.0, 2.0, 0.0, 20.0])
    g_tr = np.array(["a", "a", "a", "b", "b"])
    g = np.array(["a", "b"])
    scale = mase_scale(y_tr, naive_tr, g_tr, g)
    np.testing.assert_allclose(scale, [1.0, 10.0])
    # test errors 2 (pool a) and 20 (pool b) are both twice their in-sample naive error
    assert mase(np.array([5.0, 50.0]), np.array([3.0, 30.0]), scale=scale) == pytest.approx(2.0)
    # pooled: scale = mean(1, 1, 1, 10, 10) = 4.6 -> (2 + 20) / 2 / 4.6
    pooled = mase_scale(y_tr, naive_tr)
    assert mase(np.array([5.0, 50.0]), np.array([3.0, 30.0]), scale=pooled) == pytest.approx(
        11 / 4.6)


def test_naive_forecast_in_sample_scores_one() -> None:
    rng = np.random.default_rng(0)
    y, naive = _series(rng, 300, 5.0)
    assert mase(y, naive, scale=mase_scale(y, naive)) == pytest.approx(1.0)


def test_denominator_comes_from_training_rows_not_test_rows() -> None:
    # the naive forecast is perfect on the test rows: a relative MAE would divide by zero
    y_test = np.array([1.0, 2.0, 3.0])
    scale = mase_scale(np.array([0.0, 2.0, 0.0, 2.0]), np.array([1.0, 1.0, 1.0, 1.0]))
    assert mase(y_test, y_test + 0.5, scale=scale) == pytest.approx(0.5)


def test_per_series_scaling_is_unit_free() -> None:
    rng = np.random.default_rng(1)
    parts = []
    for pool, level, noise in (("small", 1.0, 0.02), ("large", 2.0, 0.2)):
        y, naive = _series(rng, 200, level)
        pred = y + level * rng.normal(scale=noise, size=len(y))
        parts.append((np.full(len(y), pool), y, naive, pred))
    g, y, naive, pred = (np.concatenate(x) for x in zip(*parts, strict=True))
    tr = np.tile(np.arange(200) < 150, 2)
    score = mase(y[~tr], pred[~tr], scale=mase_scale(y[tr], naive[tr], g[tr], g[~tr]))
    # quote the large pool in other units (x 1000): per-series MASE must not move, pooled does
    big = np.where(g == "large", 1e3, 1.0)
    rescaled = mase(y[~tr] * big[~tr], pred[~tr] * big[~tr],
                    scale=mase_scale(y[tr] * big[tr], naive[tr] * big[tr], g[tr], g[~tr]))
    assert rescaled == pytest.approx(score)
    pooled = mase(y[~tr], pred[~tr], scale=mase_scale(y[tr], naive[tr]))
    pooled_big = mase(y[~tr] * big[~tr], pred[~tr] * big[~tr],
                      scale=mase_scale(y[tr] * big[tr], naive[tr] * big[tr]))
    assert abs(pooled_big - pooled) > 0.1 * pooled


def test_series_without_training_scale_fall_back_to_pooled() -> None:
    scale = mase_scale(np.array([1.0, 3.0, 5.0, 5.0]), np.array([0.0, 0.0, 5.0, 5.0]),
                       np.array(["a", "a", "flat", "flat"]), np.array(["a", "flat", "new"]))
    np.testing.assert_allclose(scale, [2.0, 1.0, 1.0])  # pooled = (1 + 3 + 0 + 0) / 4


def test_no_positive_scale_gives_nan() -> None:
    flat = np.ones(5)
    assert np.isnan(mase(flat, flat + 1, scale=mase_scale(flat, flat)))


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="both groups_train and groups"):
        mase_scale(np.ones(3), np.ones(3), groups_train=np.array(["a"] * 3))
    with pytest.raises(TypeError):
        mase(np.ones(3), np.ones(3), np.ones(3))  # type: ignore[misc]  # naive no longer positional
