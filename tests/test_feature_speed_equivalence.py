"""The compiled feature kernels reproduce the float64 cumulative-sum implementation they replaced.

``_Reference`` below is that implementation (features/_wide.py, volatility.py, flow.py and
network.py as of commit e3d99b5, docstrings dropped), kept as the oracle. Stated tolerance, for
every feature after rounding both to float32 (how the feature table stores them):

    |new - reference| <= 2e-6 |reference| + 1e-7 max|reference over the feature|

(about 16 float32 units in the last place, plus an absolute floor for features that are
differences of nearly equal numbers, such as ``volume_chg``), with identical NaN patterns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from features import _wide, names
from features.flow import flow_features
from features.network import network_features, token_adjacency, token_groups
from features.schema import (
    CHAIN,
    CLOSE,
    FEES_USD,
    FREQUENCIES,
    HIGH,
    LOW,
    OPEN,
    POOL_ID,
    STABLECOINS,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    VOLUME_USD,
)
from features.sources.simulator import simulate_market
from features.volatility import volatility_features

RTOL, ATOL_OF_MAX = 2e-6, 1e-7
LN2 = np.log(2.0)


class _Reference:
    """The previous float64 implementation: cumulative sums, pandas max / EWM, dense matmuls."""

    @staticmethod
    def _csum(x):  # type: ignore[no-untyped-def]
        out = np.zeros((x.shape[0] + 1, x.shape[1]))
        np.cumsum(x, axis=0, out=out[1:])
        return out

    @classmethod
    def _window(cls, x, w):  # type: ignore[no-untyped-def]
        valid = ~np.isnan(x)
        cs = cls._csum(np.where(valid, x, 0.0))
        cn = cls._csum(valid.astype(np.float64))
        lo = np.maximum(np.arange(1, x.shape[0] + 1) - w, 0)
        return cs[1:] - cs[lo], cn[1:] - cn[lo]

    @staticmethod
    def _mp(w, mp):  # type: ignore[no-untyped-def]
        return max(1, (w + 1) // 2) if mp is None else mp

    @classmethod
    def rsum(cls, x, w, mp=None):  # type: ignore[no-untyped-def]
        s, n = cls._window(x, w)
        return np.where(n >= cls._mp(w, mp), s, np.nan)

    @classmethod
    def rmean(cls, x, w, mp=None):  # type: ignore[no-untyped-def]
        s, n = cls._window(x, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n >= cls._mp(w, mp), s / np.maximum(n, 1), np.nan)

    @classmethod
    def rstd(cls, x, w, mp=None):  # type: ignore[no-untyped-def]
        s, n = cls._window(x, w)
        s2, _ = cls._window(x * x, w)
        m = s / np.maximum(n, 1)
        var = (s2 / np.maximum(n, 1) - m * m) * n / np.maximum(n - 1, 1)
        return np.where(n >= cls._mp(w, mp), np.sqrt(np.clip(var, 0, None)), np.nan)

    @classmethod
    def rcorr(cls, x, y, w):  # type: ignore[no-untyped-def]
        both = ~(np.isnan(x) | np.isnan(y))
        xx, yy = np.where(both, x, np.nan), np.where(both, y, np.nan)
        mx, my = cls.rmean(xx, w), cls.rmean(yy, w)
        cov = cls.rmean(xx * yy, w) - mx * my
        vx = cls.rmean(xx * xx, w) - mx * mx
        vy = cls.rmean(yy * yy, w) - my * my
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.sqrt(np.clip(vx * vy, 1e-30, None))
            beta = cov / np.where(vy > 1e-30, vy, np.nan)
        return np.clip(corr, -1, 1), beta

    @staticmethod
    def rmax(x, w):  # type: ignore[no-untyped-def]
        return pd.DataFrame(x).rolling(w, min_periods=1).max().to_numpy()

    @staticmethod
    def lag(x, k=1):  # type: ignore[no-untyped-def]
        out = np.full_like(x, np.nan)
        if k < x.shape[0]:
            out[k:] = x[:-k]
        return out

    @staticmethod
    def ewm(x, hl):  # type: ignore[no-untyped-def]
        return pd.DataFrame(x).ewm(halflife=hl, ignore_na=True, min_periods=2).mean().to_numpy()

    @staticmethod
    def sdiv(a, b):  # type: ignore[no-untyped-def]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)

    @classmethod
    def volatility(cls, o, h, lo, c, windows, ppy, halflives, har, freq):  # type: ignore
        ret = np.log(c) - np.log(cls.lag(c))
        out = {names.period(names.RET, freq): ret}
        hl = np.log(h / lo)
        co = np.log(c / o)
        for name, w in windows.items():
            out[names.window(names.RV, name)] = np.sqrt(cls.rmean(ret * ret, w) * ppy)
            out[names.window("parkinson", name)] = np.sqrt(cls.rmean(hl * hl, w) / (4 * LN2)
                                                           * ppy)
            term = 0.5 * hl * hl - (2 * LN2 - 1) * co * co
            out[names.window("gk", name)] = np.sqrt(np.clip(cls.rmean(term, w), 0, None) * ppy)
            out[names.window("max_move", name)] = cls.rmax(np.abs(ret), w)
        ewms = {k: np.sqrt(cls.ewm(ret * ret, n) * ppy) for k, n in halflives.items()}
        for k, ew in ewms.items():
            out[names.ewm(names.EWMA_VOL, k)] = ew
        sigma_prev = cls.lag(next(iter(ewms.values()))) / np.sqrt(ppy)
        labels = list(windows)
        shortest, longest = labels[0], labels[-1]
        jump = np.where(np.isnan(ret) | np.isnan(sigma_prev), np.nan,
                        (np.abs(ret) > 4.0 * sigma_prev).astype(float))
        out[names.window("jumps", longest)] = cls.rsum(jump, windows[longest], 1)
        rv_s = out[names.window(names.RV, shortest)]
        rv_l = out[names.window(names.RV, longest)]
        lv = np.log(np.where(rv_s > 0, rv_s, np.nan))
        out[names.window("volvol", longest)] = cls.rstd(lv, windows[longest])
        out[names.ratio("rv_ratio", shortest, longest)] = rv_s / rv_l
        for name, w in har.items():
            out[names.window(names.HAR, name)] = (np.sqrt(cls.rmean(ret * ret, w) * ppy)
                                                  if w >= 2 else np.abs(ret) * np.sqrt(ppy))
        return out

    @classmethod
    def pair_share(cls, x, m):  # type: ignore[no-untyped-def]
        xs = np.nan_to_num(x)
        return cls.sdiv(np.where(np.isnan(x), np.nan, xs), xs @ m @ m.T)

    @classmethod
    def flow(cls, volume, fees, tvl, p0, p1, m, windows, ppy, halflives, freq):  # type: ignore
        fy1 = names.period(names.FEE_YIELD, freq)
        out = {"log_volume": np.log1p(volume),
               names.LOG_TVL: np.log(np.where(tvl > 0, tvl, np.nan)), fy1: cls.sdiv(fees, tvl)}
        dlog = np.log(tvl) - np.log(cls.lag(tvl))
        price = 0.5 * (np.log(p0) - np.log(cls.lag(p0)) + np.log(p1) - np.log(cls.lag(p1)))
        dlog = np.where(np.isfinite(dlog), dlog, np.nan)
        netflow = dlog - price
        out[names.period("tvl_price_effect", freq)] = price
        out[names.period("lp_netflow", freq)] = netflow
        vshare, tshare = cls.pair_share(volume, m), cls.pair_share(tvl, m)
        out[names.period("pair_volume_share", freq)] = vshare
        out["pair_tvl_share"] = tshare
        for name, w in windows.items():
            fy = cls.sdiv(cls.rsum(fees, w), cls.rmean(tvl, w))
            out[names.window(names.FEE_YIELD, name)] = fy
            out[names.window("fee_apr", name)] = fy * ppy / w
            out[names.window("turnover", name)] = cls.sdiv(cls.rsum(volume, w), cls.rmean(tvl, w))
            out[names.window("lp_netflow", name)] = cls.rsum(netflow, w)
            out[names.window("tvl_price_effect", name)] = cls.rsum(price, w)
            out[names.window("pair_volume_share", name)] = cls.rmean(vshare, w)
            out[names.window("pair_tvl_share_chg", name)] = tshare - cls.lag(tshare, w)
            mv = cls.rmean(volume, w)
            out[names.window("volume_chg", name)] = np.log1p(mv) - np.log1p(cls.lag(mv, w))
        for k, n in halflives.items():
            out[names.ewm(names.FEE_YIELD_EWM, k)] = cls.ewm(out[fy1], n)
        return out

    @classmethod
    def nb_mean(cls, x, adj):  # type: ignore[no-untyped-def]
        num = np.nan_to_num(x) @ adj
        den = (~np.isnan(x)).astype(float) @ adj
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    @staticmethod
    def rows_mean(x, w=None):  # type: ignore[no-untyped-def]
        w = np.ones_like(x) if w is None else np.nan_to_num(w)
        valid = ~np.isnan(x) & (w > 0)
        num, den = np.where(valid, x * w, 0.0).sum(1), np.where(valid, w, 0.0).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    @classmethod
    def network(cls, ret, rv_s, rv_l, volume, netflow, tvl, p0, p1, adj, st0, st1,  # type: ignore
                corr_w, short_w, labels, freq):
        short, corr_label = labels
        n_p = ret.shape[1]
        mkt = {"mkt_ret": cls.rows_mean(ret), "mkt_rv": np.nanmedian(rv_s, axis=1),
               "mkt_log_volume": np.log1p(np.nansum(volume, axis=1)),
               "mkt_netflow": cls.rows_mean(netflow, tvl)}
        out = {k: np.repeat(v[:, None], n_p, axis=1) for k, v in mkt.items()}
        out[names.window("mkt_netflow", short)] = np.repeat(
            cls.rsum(mkt["mkt_netflow"][:, None], short_w), n_p, axis=1)
        corr, beta = cls.rcorr(ret, out["mkt_ret"], corr_w)
        out[names.window("mkt_corr", corr_label)] = corr
        out[names.window("mkt_beta", corr_label)] = beta
        flow_short = cls.rsum(netflow, short_w)
        stress = np.log(np.where(rv_s / rv_l > 0, rv_s / rv_l, np.nan)) - 10 * np.fmin(
            flow_short, 0)
        out["stress_score"] = stress
        cmax = np.full_like(stress, np.nan)
        s = np.where(np.isnan(stress), -np.inf, stress)
        for j in range(n_p):
            nb = np.flatnonzero(adj[:, j])
            if len(nb):
                m = s[:, nb].max(axis=1)
                cmax[:, j] = np.where(np.isfinite(m), m, np.nan)
        out["contagion_max"] = cmax
        out["contagion_mean"] = cls.nb_mean(stress, adj)
        out["neighbour_netflow"] = cls.nb_mean(flow_short, adj)
        out[names.period("leadlag_neighbour_ret", freq)] = cls.nb_mean(cls.lag(ret), adj)
        peg = np.fmax(np.where(st0[None, :], np.abs(p0 - 1), np.nan),
                      np.where(st1[None, :], np.abs(p1 - 1), np.nan))
        out["peg_dev"] = peg
        out[names.window("peg_dev_max", short)] = cls.rmax(peg, short_w)
        out["neighbour_peg_dev"] = cls.nb_mean(peg, adj)
        return out


def _assert_close(name: str, new: np.ndarray, ref: np.ndarray) -> None:
    a = np.asarray(ref, dtype=np.float64).astype(np.float32).astype(np.float64)
    b = np.asarray(new).astype(np.float32).astype(np.float64)
    a[~np.isfinite(a)] = np.nan  # the table stores every non-finite value as NaN
    b[~np.isfinite(b)] = np.nan
    assert a.shape == b.shape, f"{name}: shape {b.shape}, reference {a.shape}"
    gaps = np.isnan(a) != np.isnan(b)
    assert not gaps.any(), f"{name}: NaN pattern differs in {gaps.sum()} cells"
    if np.isnan(a).all():
        return
    bound = RTOL * np.abs(a) + ATOL_OF_MAX * np.nanmax(np.abs(a))
    err = np.abs(b - a)
    bad = err > bound
    assert not bad.any(), (f"{name}: {bad.sum()} cells beyond tolerance, worst "
                           f"{np.nanmax(err - bound):.3g} above the bound")


@pytest.fixture(scope="module", params=["1h", "1d"])
def wide(request: pytest.FixtureRequest) -> dict:
    freq = request.param
    days = 75 if freq == "1h" else 400
    panel, _ = simulate_market(n_pools=14, days=days, seed=21, freq=freq)
    grid = _wide.make_grid(panel.frame, freq)
    cols = (OPEN, HIGH, LOW, CLOSE, VOLUME_USD, FEES_USD, TVL_USD, TOKEN0_PRICE_USD,
            TOKEN1_PRICE_USD)
    w = {c: grid.wide(panel.frame[c]) for c in cols}
    holes = np.random.default_rng(4).random(w[CLOSE].shape) < 0.03
    holes[10:60, 2] = True  # a long gap as well as scattered ones
    for c in cols:
        w[c][holes] = np.nan
    meta = panel.meta.set_index(POOL_ID).loc[grid.pools].reset_index()
    pairs = (meta[TOKEN0] + "/" + meta[TOKEN1] + "@" + meta[CHAIN]).to_numpy()
    _, idx = np.unique(pairs, return_inverse=True)
    hourly = freq == "1h"
    return {
        "w": w, "meta": meta, "membership": np.eye(int(idx.max()) + 1)[idx], "freq": freq,
        "windows": {"6h": 6, "24h": 24, "7d": 168, "30d": 720} if hourly else {"7d": 7,
                                                                                "30d": 30},
        "ppy": 8760.0 if hourly else 365.0,
        "halflives": {"24h": 24} if hourly else {"7d": 7},
        "har": {"24h": 24, "7d": 168, "30d": 720} if hourly else {"24h": 1, "7d": 7,
                                                                   "30d": 30},
        "corr_w": 168 if hourly else 7, "short": "24h" if hourly else "7d",
        "short_w": 24 if hourly else 7,
    }


def _features(d: dict, impl: str) -> dict[str, np.ndarray]:
    w, meta, freq = d["w"], d["meta"], d["freq"]
    ref = impl == "reference"
    vol = _Reference.volatility if ref else volatility_features
    out = vol(w[OPEN], w[HIGH], w[LOW], w[CLOSE], d["windows"], d["ppy"], d["halflives"],
              d["har"], freq)
    if ref:
        out.update(_Reference.flow(w[VOLUME_USD], w[FEES_USD], w[TVL_USD], w[TOKEN0_PRICE_USD],
                                   w[TOKEN1_PRICE_USD], d["membership"], d["windows"],
                                   d["ppy"], d["halflives"], freq))
    else:
        out.update(flow_features(w[VOLUME_USD], w[FEES_USD], w[TVL_USD], None,
                                 w[TOKEN0_PRICE_USD], w[TOKEN1_PRICE_USD], d["membership"],
                                 d["windows"], d["ppy"], d["halflives"], freq))
    t0, t1 = list(meta[TOKEN0]), list(meta[TOKEN1])
    adj = token_groups(t0, t1) if impl == "groups" else token_adjacency(t0, t1)
    net = _Reference.network if ref else network_features
    longest = list(d["windows"])[-1]
    out.update(net(
        out[names.period(names.RET, freq)], out[names.window(names.RV, d["short"])],
        out[names.window(names.RV, longest)], w[VOLUME_USD],
        out[names.period("lp_netflow", freq)], w[TVL_USD], w[TOKEN0_PRICE_USD],
        w[TOKEN1_PRICE_USD], adj, meta[TOKEN0].isin(STABLECOINS).to_numpy(),
        meta[TOKEN1].isin(STABLECOINS).to_numpy(), d["corr_w"], d["short_w"],
        (d["short"], names.duration_label(d["corr_w"] * FREQUENCIES[freq])), freq))
    return out


@pytest.mark.parametrize("impl", ["groups", "dense"])
def test_features_match_the_float64_reference(wide: dict, impl: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = _features(wide, "reference")
    new = _features(wide, impl)
    assert list(new) == list(ref), "feature names or their order changed"
    for name in ref:
        _assert_close(name, new[name], ref[name])
    # the comparison has teeth: the features carry values, not only NaN
    assert np.isfinite(np.asarray(new[names.window("gk", list(wide["windows"])[-1])])).mean() > 0.5


@pytest.mark.parametrize("w", [1, 3, 24, 200, 5000])
def test_rolling_kernels_match_the_reference(w: int) -> None:
    rng = np.random.default_rng(w)
    x = rng.normal(size=(700, 9)) * np.exp(rng.normal(size=(1, 9)))
    y = rng.normal(size=(700, 9))
    x[rng.random(x.shape) < 0.1] = np.nan
    x[100:260, 4] = np.nan  # windows that empty and fill again
    y[rng.random(y.shape) < 0.05] = np.nan
    r = _Reference
    for name, new, ref in [
        ("sum", _wide.rolling_sum(x, w), r.rsum(x, w)),
        ("sum min1", _wide.rolling_sum(x, w, 1), r.rsum(x, w, 1)),
        ("mean", _wide.rolling_mean(x, w), r.rmean(x, w)),
        ("count", _wide.rolling_count(x, w), r._window(x, w)[1]),
        ("max", _wide.rolling_max(x, w), r.rmax(x, w)),
        ("rms", _wide.rolling_rms(x, w, 3.0), np.sqrt(r.rmean(x * x, w) * 3.0)),
        ("ewm", _wide.ewm_mean(x, max(w, 2) / 2), r.ewm(x, max(w, 2) / 2)),
    ]:
        _assert_close(f"{name} w={w}", new, ref)
    if w >= 24:  # short windows: the reference's cumulative sums lose the small variances
        _assert_close(f"std w={w}", _wide.rolling_std(x, w), r.rstd(x, w))
        for new, ref in zip(_wide.rolling_corr(x, y, w), r.rcorr(x, y, w), strict=True):
            _assert_close(f"corr w={w}", new, ref)


def test_gather_matches_indexing_for_any_row_order() -> None:
    panel, _ = simulate_market(n_pools=6, days=20, seed=2)
    frame = panel.frame
    x = np.random.default_rng(0).normal(size=_wide.make_grid(frame, "1h").present.shape)
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    gapped = frame.drop(index=frame.index[5:40]).reset_index(drop=True)
    for f, blocked in [(frame, True), (shuffled, False), (gapped, False)]:
        g = _wide.make_grid(f, "1h")
        assert (g.runs is not None) == blocked
        np.testing.assert_array_equal(g.long(x), x[g.ti, g.pi])
        np.testing.assert_array_equal(g.long(x, np.float32), x[g.ti, g.pi].astype(np.float32))
        one = np.broadcast_to(x[:, :1], x.shape)
        np.testing.assert_array_equal(g.long(one), x[g.ti, 0])


def test_cleaning_gather_matches_gather_then_mask() -> None:
    panel, _ = simulate_market(n_pools=6, days=20, seed=3)
    frame = panel.frame
    rng = np.random.default_rng(1)
    shape = _wide.make_grid(frame, "1h").present.shape
    x = rng.normal(size=shape) * 1e3
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.02] = np.inf
    x[0, 0] = 1e300  # finite in float64, infinite once stored as float32
    missing = rng.random(len(frame)) < 0.1
    for f in [frame, frame.sample(frac=1.0, random_state=1).reset_index(drop=True)]:
        g = _wide.make_grid(f, "1h")
        for dtype in (np.float32, np.float64):
            with np.errstate(over="ignore"):
                want = x[g.ti, g.pi].astype(dtype)
            want[~np.isfinite(want) | missing] = np.nan
            got = g.long_into(x, np.empty(len(f), dtype), missing)
            np.testing.assert_array_equal(got, want)
            got = g.long_into(np.asfortranarray(x), np.empty(len(f), dtype), missing)
            np.testing.assert_array_equal(got, want)


def test_network_kernels_match_the_general_kernel_and_numpy() -> None:
    from features import _kernels, _network_kernels

    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 12))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[5] = np.nan  # a period without any value
    x[6, :5] = np.nan  # an even number of values
    groups = token_groups(list("AABBCAAD" + "EEAB"), list("BBCCDDAE" + "EAAC"))
    want = _kernels.group_neighbours(x, groups.tokens, groups.pair, False, np.empty(x.shape))
    got = _network_kernels.neighbour_mean(x, groups.tokens, groups.pair, np.empty(x.shape))
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=1)
    np.testing.assert_array_equal(_network_kernels.row_nanmedian(x, np.empty(len(x))), med)


def test_tx_count_features_match_their_formula() -> None:
    rng = np.random.default_rng(8)
    shape = (400, 6)
    volume, fees = rng.gamma(2.0, 1e4, shape), rng.gamma(2.0, 10.0, shape)
    tvl, tx = rng.gamma(5.0, 1e6, shape), rng.poisson(30, shape).astype(float)
    tx[rng.random(shape) < 0.1] = np.nan
    prices = np.exp(np.cumsum(rng.normal(0, 0.01, shape), axis=0))
    windows = {"6h": 6, "7d": 168}
    out = flow_features(volume, fees, tvl, tx, prices, prices, np.eye(6), windows, 8760.0,
                        {"24h": 24}, "1h")
    _assert_close("log_tx_count", out["log_tx_count"], np.log1p(tx))
    for name, w in windows.items():
        _assert_close(f"tx_count_mean_{name}", out[f"tx_count_mean_{name}"],
                      np.log1p(_Reference.rmean(tx, w)))


def test_tasks_run_in_order_on_threads_and_nested_calls_do_not_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LPA_THREADS", "2")

    def inner(i: int) -> list[int]:
        return _wide.run_all([lambda: i, lambda: i + 1])  # runs inline on a build thread

    got = _wide.run_all([lambda i=i: inner(i) for i in range(5)])  # type: ignore[misc]
    assert got == [[i, i + 1] for i in range(5)]
    back, front = _wide.run_beside(lambda: inner(7), lambda: _wide.run_all([lambda: 1] * 3))
    assert (back, front) == ([7, 8], [1, 1, 1])
    monkeypatch.setenv("LPA_THREADS", "1")
    assert _wide.feature_threads() == 1
    assert _wide.run_all([lambda: 3]) == [3]
