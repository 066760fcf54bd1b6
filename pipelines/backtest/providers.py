"""Forecast providers that feed the backtest's allocator: the causal baseline and fitted bundles.

Each provider is fitted on rows whose label horizon ended by the cutoff (purged) and predicts
allocator inputs per pool at a decision time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.schema import freq_step

__all__ = ["ForecastProvider", "BaselineProvider", "BundleProvider", "fit_bundle", "purged_rows"]


class ForecastProvider(Protocol):
    """Anything that fits on labelled rows before a cutoff and predicts allocator inputs at t."""

    def fit(self, fs: Any, upto: pd.Timestamp) -> ForecastProvider:
        """Fit on rows whose label horizon ended at or before `upto` (purged)."""
        ...

    def predict_pools(self, fs: Any, t: pd.Timestamp) -> pd.DataFrame | None:
        """Allocator inputs per pool at t (fee_yield, volatility, p_stress, tvl_usd, ...)."""
        ...


def purged_rows(fs: Any, upto: pd.Timestamp) -> np.ndarray:
    """Rows whose label horizon (t, t + h] ended at or before `upto` (bool mask over fs rows)."""
    return _purged(fs.labels, fs.horizon, upto)


def _purged(labels: pd.DataFrame, horizon: pd.Timedelta, upto: pd.Timestamp) -> np.ndarray:
    """Label rows whose horizon ended at or before `upto` (bool mask)."""
    ts = pd.to_datetime(labels["timestamp"])
    return ((ts + horizon) <= upto).to_numpy()


@dataclass
class BaselineProvider:
    """Causal baseline: trailing fee yield and volatility EWMAs, stress base rate from past labels.

    Parameters
    ----------
    market : the engine's wide panel arrays (`MarketData`).
    horizon_bars : label horizon in panel periods; fee yield is scaled to it.
    halflife_bars : EWMA half-life in periods (default: one horizon).
    prior_weight : pseudo-count shrinking each pool's stress rate towards the pooled rate.
    """

    market: Any
    horizon_bars: int
    halflife_bars: float | None = None
    prior_weight: float = 20.0
    rate_: pd.Series | None = None
    _lab: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    _counted: tuple[int, np.ndarray, np.ndarray] = (0, np.zeros(0), np.zeros(0))

    def __post_init__(self) -> None:
        """Precompute the causal trailing statistics (each row uses rows at or before it)."""
        m = self.market
        hl = self.halflife_bars or max(2.0, float(self.horizon_bars))
        tvl_prev = pd.DataFrame(m.tvl).shift(1)
        rate = pd.DataFrame(np.where(m.missing, np.nan, m.fees)) / tvl_prev.where(tvl_prev > 0)
        self._fee = rate.ewm(halflife=hl, ignore_na=True).mean().to_numpy()
        r2 = pd.DataFrame(np.where(m.missing, np.nan, m.logret ** 2))
        self._var = r2.ewm(halflife=hl, ignore_na=True).mean().to_numpy()
        self._var_long = r2.expanding(min_periods=2).mean().to_numpy()

    def fit(self, fs: Any, upto: pd.Timestamp) -> BaselineProvider:
        """Stress base rate per pool from labels whose horizon ended by `upto`."""
        n_p = len(self.market.pools)
        if self._lab is None:  # label ends and pool codes in end order, once per run
            lab = fs.labels
            ends = (pd.DatetimeIndex(lab["timestamp"]) + fs.horizon).asi8
            codes = pd.Index(self.market.pools).get_indexer(pd.Index(lab["pool_id"]))
            y = lab["fwd_stress"].to_numpy(float)
            ok = np.flatnonzero(np.isfinite(y) & (codes >= 0))
            order = ok[np.argsort(ends[ok], kind="stable")]
            self._lab = (ends[order], codes[order], y[order])
            self._counted = (0, np.zeros(n_p), np.zeros(n_p))
        ends, codes, y = self._lab
        n = int(np.searchsorted(ends, pd.Timestamp(upto).value, side="right"))
        done, cnt, pos = self._counted
        if n < done:  # an earlier cutoff than the last fit's: count from the start
            done, cnt, pos = 0, np.zeros(n_p), np.zeros(n_p)
        # labels whose horizon ended by `upto`, added to the counts of the last fit's
        cnt = cnt + np.bincount(codes[done:n], minlength=n_p)
        pos = pos + np.bincount(codes[done:n], weights=y[done:n], minlength=n_p)
        self._counted = (n, cnt, pos)
        pooled = float(pos.sum() / cnt.sum()) if cnt.sum() else 0.0
        rate = (pos + self.prior_weight * pooled) / (cnt + self.prior_weight)
        self.rate_ = pd.Series(rate, index=self.market.pools)
        return self

    def predict_pools(self, fs: Any, t: pd.Timestamp) -> pd.DataFrame:
        """Fee yield per horizon, annualised volatility and P(stress) per pool at t."""
        if self.rate_ is None:
            raise RuntimeError("BaselineProvider.predict_pools called before fit")
        m = self.market
        i = m.index_of(t)
        fee = np.nan_to_num(self._fee[i], nan=0.0) * self.horizon_bars
        var = self._var[i]
        vol = np.sqrt(np.nan_to_num(var, nan=0.0) * m.periods_per_year)
        ratio = np.clip(np.nan_to_num(var / self._var_long[i], nan=1.0), 0.25, 4.0)
        p = np.clip(self.rate_.to_numpy(float) * ratio, 0.0, 1.0)
        return pd.DataFrame({
            "fee_yield": np.maximum(fee, 0.0), "fee_yield_q10": 0.5 * fee,
            "fee_yield_q90": 1.5 * fee, "volatility": vol, "volatility_q90": 1.5 * vol,
            "p_stress": p, "tvl_usd": np.nan_to_num(m.tvl[i], nan=0.0),
        }, index=pd.Index(m.pools, name="pool_id"))


@dataclass
class BundleProvider:
    """Adapter from models.forecasts.ForecastBundle (baseline, lightgbm or torch models).

    Every ``reselect_every``-th refit (the 1st, the k+1-th, ...) is a full fit: each model
    chooses its hyper-parameters, baseline combination and calibration on inner walk-forward
    folds. The refits in between refit the models chosen at the latest successful full fit on
    the new window and keep its calibration (much cheaper; 1 makes every refit full). A refit
    before any full fit has succeeded is full, and its choices are then the ones kept until
    the next scheduled full fit (a scheduled full fit that fails for too little history does
    not leave every refit after it full).

    :meth:`prefit` fits the bundles of many cutoffs at once as Dask tasks (each uses only the
    rows purged before its own cutoff; the full fits first, then the refits that keep their
    choices); :meth:`fit` at such a cutoff then takes its bundle.
    """

    kind: str
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    reselect_every: int = 1
    bundle_: Any = None
    _x: pd.DataFrame | None = None
    _fits: dict[pd.Timestamp, Any] = field(default_factory=dict)
    _n: int = 0  # refits so far
    _selection: Any = None  # the bundle of the latest successful scheduled full fit
    _order: np.ndarray | None = None  # feature rows in time order
    _ts: np.ndarray | None = None  # their timestamps, ns

    def __post_init__(self) -> None:
        """Idle OpenMP threads of the fits sleep (effective unless LightGBM or torch loaded)."""
        from models.threads import prefer_passive_waiting

        prefer_passive_waiting()

    def _matrix(self, fs: Any) -> pd.DataFrame:
        """Model inputs for every feature row (computed once per run)."""
        if self._x is None:
            from models.forecasts import model_matrix

            self._x = model_matrix(fs)
        return self._x

    def _task(self, fs: Any) -> dict[str, Any]:
        """Keyword arguments of :func:`fit_bundle` shared by every cutoff."""
        return {"x": self._matrix(fs), "labels": fs.labels, "horizon": fs.horizon,
                "kind": self.kind, "freq": fs.freq, "horizon_periods": fs.horizon_periods,
                "seed": self.seed, "params": self.params}

    def _scheduled(self, j: int) -> bool:
        """Whether the j-th refit (0-based) is a scheduled full fit."""
        return j % max(1, self.reselect_every) == 0

    def prefit(self, fs: Any, cutoffs: list[pd.Timestamp], client: Any) -> None:
        """Fit the bundles of every cutoff as tasks on a Dask client (fits failing for too
        little labelled history are kept as such: :meth:`fit` then keeps the last models)."""
        from models.gbm_dask import fan_out, worker_threads

        cutoffs = sorted(cutoffs)  # refit numbers follow time, after the fits made so far
        refit_no = {t: self._n + i for i, t in enumerate(cutoffs)}
        threads = worker_threads(client)
        full = [t for t in cutoffs if self._scheduled(refit_no[t])]
        # a refit after a scheduled full fit that fails for too little history is full
        # itself: the first such candidate is fitted full beside the scheduled ones (used only
        # if that fit failed), so that it need not wait for the round to end
        spare = next((t for t in cutoffs[1:] if t not in full), None) \
            if self._selection is None and cutoffs and cutoffs[0] in full else None
        first = full + ([spare] if spare is not None else [])
        done = dict(zip(first, fan_out(client, fit_bundle, first, threads=threads,
                                       **self._task(fs)), strict=True))
        ahead = {spare: done.pop(spare)} if spare is not None else {}
        # every other refit keeps the choices of the latest successful full fit before it;
        # one with no such fit is itself full (in time order) and is kept instead
        rest, sources, sel = [], [], self._selection
        for t in cutoffs:
            if t not in done and sel is None:
                done[t] = ahead[t] if t in ahead else fan_out(
                    client, fit_bundle, [t], threads=threads, **self._task(fs))[0]
            if t in done:
                sel = done[t] if done[t] is not None else sel
            else:
                rest.append(t)
                sources.append(sel)
        index: dict[int, int] = {}  # each distinct kept selection, numbered in order
        which = [index.setdefault(id(src), len(index)) for src in sources]
        groups = list({id(src): src for src in sources}.values())
        if rest:
            out = fan_out(client, _fit_keeping, list(zip(rest, which, strict=True)),
                          threads=threads, selections=groups, **self._task(fs))
            done.update(zip(rest, out, strict=True))
        self._fits.update({t: (refit_no[t], done[t]) for t in cutoffs})

    def fit(self, fs: Any, upto: pd.Timestamp) -> BundleProvider:
        """Refit every target on purged rows before `upto` (or take its prefitted bundle)."""
        j = self._n
        self._n += 1
        if upto in self._fits:
            j, bundle = self._fits.pop(upto)
            self._n = j + 1
        else:
            sel = None if self._scheduled(j) else self._selection
            bundle = fit_bundle(upto, selection=sel, **self._task(fs))
        if bundle is not None and (self._scheduled(j) or self._selection is None):
            self._selection = bundle  # a full fit: its choices are kept by the next refits
        if bundle is not None:  # None: too little labelled history yet, keep the last models
            self.bundle_ = bundle
        return self

    def predict_pools(self, fs: Any, t: pd.Timestamp) -> pd.DataFrame | None:
        """Bundle forecasts for the feature rows at t (None until a fit has succeeded).

        Only the rows up to t are passed: some models' forecasts of a row depend on the other
        rows passed with it (a GARCH component filters through them), so a batch of later
        decisions would not reproduce each decision's own forecast."""
        if self.bundle_ is None:
            return None
        x = self._matrix(fs)
        if self._order is None:  # feature rows in time order, found per decision by bisection
            ts = pd.DatetimeIndex(pd.to_datetime(fs.features["timestamp"])).asi8
            self._order = np.argsort(ts, kind="stable")
            self._ts = ts[self._order]
        assert self._ts is not None
        # sequence models read each pool's recent rows; the others use the row at t only
        step = freq_step(fs.freq)
        daily = step >= pd.Timedelta(days=1)
        lookback = int(self.params.get("lookback", 14 if daily else 24))
        start = t - (lookback - 1) * step if self.kind == "torch" else t
        lo = int(np.searchsorted(self._ts, pd.Timestamp(start).value, side="left"))
        hi = int(np.searchsorted(self._ts, pd.Timestamp(t).value, side="right"))
        rows = np.sort(self._order[lo:hi])
        return self.bundle_.predict_pools(x.iloc[rows])


def _fit_keeping(item: tuple[pd.Timestamp, int], *, selections: list[Any],
                 **task: Any) -> Any:
    """:func:`fit_bundle` at a cutoff keeping the choices of one of ``selections``."""
    upto, k = item
    return fit_bundle(upto, selection=selections[k], **task)


def fit_bundle(upto: pd.Timestamp, *, x: pd.DataFrame, labels: pd.DataFrame,
               horizon: pd.Timedelta, kind: str, freq: str, horizon_periods: int, seed: int,
               params: dict[str, Any], threads: int | None = None,
               selection: Any = None) -> Any:
    """A ForecastBundle fitted on the rows whose label horizon ended by `upto`, or None when
    there is too little labelled history (ForecastError).

    Parameters
    ----------
    upto : the refit cutoff
    x, labels : model inputs and forward labels of every feature row, row for row
    horizon : label horizon (time); kind, freq, horizon_periods, seed, params : the bundle's
    threads : threads of each fit (a cluster task: the worker's); None leaves the job's own
    selection : an earlier bundle whose model choices and calibration the fit keeps
    """
    from models.base import ForecastError
    from models.forecasts import ForecastBundle

    if threads is not None:  # a task: plain fits with the worker's threads, never nested Dask
        from models.gbm_dask import use_dask
        from models.threads import use_threads

        with use_dask(None), use_threads(threads):
            return fit_bundle(upto, x=x, labels=labels, horizon=horizon, kind=kind, freq=freq,
                              horizon_periods=horizon_periods, seed=seed, params=params,
                              selection=selection)
    keep = _purged(labels, horizon, upto)
    bundle = ForecastBundle(kind=kind, freq=freq, horizon_periods=horizon_periods, seed=seed,
                            **params)
    try:
        return bundle.fit(x.loc[keep], labels.loc[keep], upto=upto, selection=selection)
    except ForecastError:
        return None
