"""Walk-forward folds: expanding, purged by at least the horizon, never overlapping."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.cv import folds_digest, walk_forward_splits


def _ts(n: int, pools: int = 3) -> pd.Series:
    t = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.Series(list(t) * pools)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(200, 2000), folds=st.integers(1, 5), h=st.integers(1, 48),
       extra=st.integers(0, 24))
def test_fold_gaps_cover_the_horizon(n: int, folds: int, h: int, extra: int) -> None:
    ts = _ts(n)
    horizon = pd.Timedelta(hours=h)
    gap = horizon + pd.Timedelta(hours=extra)
    try:
        fs = walk_forward_splits(ts, folds, gap, horizon)
    except ValueError as exc:
        assert "too short" in str(exc)
        return
    assert len(fs) == folds
    prev_train = 0
    for f in fs:
        tr, te = ts.iloc[f.train_idx], ts.iloc[f.test_idx]
        assert len(tr) and len(te)
        assert tr.max() + horizon <= te.min()  # no training label reaches into the test block
        assert te.min() - tr.max() >= gap
        assert len(f.train_idx) >= prev_train  # expanding
        prev_train = len(f.train_idx)
        assert not set(f.train_idx) & set(f.test_idx)
    for a, b in zip(fs, fs[1:], strict=False):
        assert ts.iloc[a.test_idx].max() < ts.iloc[b.test_idx].min()


def test_gap_shorter_than_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than the forecast horizon"):
        walk_forward_splits(_ts(500), 3, pd.Timedelta("12h"), pd.Timedelta("24h"))


def test_digest_changes_with_folds() -> None:
    ts = _ts(1000)
    a = walk_forward_splits(ts, 3, pd.Timedelta("24h"), pd.Timedelta("24h"))
    b = walk_forward_splits(ts, 2, pd.Timedelta("24h"), pd.Timedelta("24h"))
    assert folds_digest(a) == folds_digest(a) != folds_digest(b)
