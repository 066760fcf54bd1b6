"""Allocator input checks, per-pool coefficients, contagion and the reasons attached to weights."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["AllocationError", "REQUIRED", "OPTIONAL", "Prepared", "check_inputs",
           "check_forecasts", "with_current", "share_metadata", "effective_stress", "incidence",
           "token_incidence"]

REQUIRED = ("fee_yield", "tvl_usd", "volatility", "p_stress")
OPTIONAL = ("fee_yield_q10", "il", "in_range", "active_usd", "liq_per_value")


class AllocationError(ValueError):
    """Allocator inputs that cannot be used, naming the pool and field."""

    def __init__(self, message: str, *, pool: str | None = None,
                 field: str | None = None) -> None:
        self.pool, self.field = pool, field
        where = [f"{k}={v}" for k, v in (("pool", pool), ("field", field)) if v is not None]
        super().__init__(f"{message} [{', '.join(where)}]" if where else message)


@dataclass
class Prepared:
    """Validated inputs aligned on the forecast index, as arrays over pools.

    ``values`` holds the numeric forecast columns (floats); ``fc`` and ``meta`` are the
    forecasts and metadata rows as DataFrames on the same index, built on first use. ``memo``
    keeps what depends only on the forecasts and metadata (shared by ``with_current`` copies).
    """

    pools: tuple[str, ...]
    values: dict[str, np.ndarray]
    prev: np.ndarray
    frozen: dict[str, str]  # pool -> field that made it unusable (held at current weight)
    index: pd.Index = field(repr=False)
    forecasts: pd.DataFrame = field(repr=False)
    source_meta: pd.DataFrame = field(repr=False)
    rows: np.ndarray = field(repr=False)  # source_meta row of each pool
    memo: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def fc(self) -> pd.DataFrame:
        """The forecasts on the string pool index, numeric columns as floats."""
        fc = self.forecasts.copy()
        fc.index = self.index
        for c, v in self.values.items():
            fc[c] = v
        return fc

    @cached_property
    def meta(self) -> pd.DataFrame:
        """The metadata row of each pool (first row per pool_id), on the pool index."""
        m = self.source_meta.copy()
        if "pool_id" in m.columns:
            m = m.set_index(m["pool_id"].astype(str))
        m.index = m.index.astype(str)
        m = m[~m.index.duplicated()]
        return m.loc[self.index]

    def meta_column(self, name: str) -> pd.Series | None:
        """One metadata column aligned on the pools (positional index), None when absent."""
        if name not in self.source_meta.columns:
            return None
        return self.source_meta[name].take(self.rows).reset_index(drop=True)

    def pool_index(self) -> pd.Index:
        """The pool ids as an Index named ``pool_id`` (a view of one built once)."""
        key = ("pool_index",)
        if key not in self.memo:
            self.memo[key] = pd.Index(self.pools, name="pool_id")
        out: pd.Index = self.memo[key].view()
        return out

    def meta_values(self, name: str, kind: str) -> np.ndarray | None:
        """A metadata column as a read-only array: ``kind`` "str" (unicode) or "float" (NaN 0)."""
        key = ("meta", name, kind)
        if key not in self.memo:
            col = self.meta_column(name)
            if col is None:
                self.memo[key] = None
            else:
                v = (np.asarray(col.astype(str).to_numpy(), dtype=str) if kind == "str"
                     else np.nan_to_num(col.to_numpy(float)))
                v.setflags(write=False)
                self.memo[key] = v
        out: np.ndarray | None = self.memo[key]
        return out

    def token_incidence(self) -> tuple[list[str], tuple[tuple[str, ...], ...], np.ndarray]:
        """(token names, tokens per pool, tokens x pools 0/1 matrix) of the pools."""
        key = ("tokens",)
        if key not in self.memo:
            cols = [c.to_numpy() for c in map(self.meta_column, ("token0", "token1"))
                    if c is not None]
            names, per_pool, inc = token_incidence(cols, len(self.pools))
            inc.setflags(write=False)
            self.memo[key] = (names, per_pool, inc)
        out: tuple[list[str], tuple[tuple[str, ...], ...], np.ndarray] = self.memo[key]
        return out


def _numeric(s: pd.Series, name: str) -> np.ndarray:
    """A forecast column as float64 values; AllocationError naming it when not numeric."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
        return s.to_numpy(np.float64)
    try:
        return pd.to_numeric(s).astype(float).to_numpy(np.float64)
    except (TypeError, ValueError) as exc:
        raise AllocationError(f"non-numeric values ({exc})", field=name) from exc


def _meta_rows(meta: pd.DataFrame, index: pd.Index) -> np.ndarray:
    """Row of ``meta`` (first per pool id: pool_id column, else its index) of each pool."""
    keys = (meta["pool_id"].astype(str) if "pool_id" in meta.columns
            else meta.index.to_series()).to_numpy()
    mi = pd.Index(keys).astype(str)
    rows = np.arange(len(mi))
    if mi.has_duplicates:
        keep = ~mi.duplicated()
        mi, rows = mi[keep], rows[keep]
    pos = mi.get_indexer(index)
    if (pos < 0).any():
        missing = index.difference(mi)
        raise AllocationError("pool has no metadata row", pool=str(missing[0]), field="meta")
    return np.asarray(rows[pos], np.int64)


def _previous(current: pd.Series | np.ndarray | None, index: pd.Index) -> np.ndarray:
    """Current weights aligned on the pools (0 where missing); an array is taken as aligned."""
    if current is None:
        return np.zeros(len(index))
    if isinstance(current, np.ndarray):
        if current.shape != (len(index),):
            raise AllocationError(f"{current.shape} current weights for {len(index)} pools",
                                  field="current_weights")
        prev = current.astype(np.float64)
        return np.where(np.isnan(prev), 0.0, prev)
    if (isinstance(current, pd.Series) and isinstance(current.dtype, np.dtype)
            and current.dtype.kind in "iuf" and current.index.equals(index)):
        prev = current.to_numpy(np.float64)
        return np.where(np.isnan(prev), 0.0, prev)
    cur = pd.Series(current, dtype=float)
    cur.index = cur.index.astype(str)
    return cur.reindex(index).fillna(0.0).to_numpy(float)


def check_inputs(forecasts: pd.DataFrame, current: pd.Series | None,
                 meta: pd.DataFrame) -> Prepared:
    """Validate forecasts / weights / metadata; raise AllocationError naming pool and field."""
    return with_current(check_forecasts(forecasts, meta), current)


def check_forecasts(forecasts: pd.DataFrame, meta: pd.DataFrame) -> Prepared:
    """Validate forecasts and metadata (current weights all 0); AllocationError names the fault.

    The result can be reused for any number of decisions on these pools via ``with_current``.
    """
    if not isinstance(forecasts, pd.DataFrame):
        raise AllocationError(f"forecasts must be a DataFrame, got {type(forecasts).__name__}")
    for c in REQUIRED:
        if c not in forecasts.columns:
            raise AllocationError("forecasts lack a required column", field=c)
    index = forecasts.index.astype(str)
    if index.has_duplicates:
        dup = index[index.duplicated()]
        raise AllocationError("duplicate pool in forecasts", pool=str(dup[0]), field="pool_id")
    rows = _meta_rows(meta, index)
    values = {c: _numeric(forecasts[c], c) for c in (*REQUIRED, *OPTIONAL, "fee_yield_q90")
              if c in forecasts.columns}
    rules = {"tvl_usd": (0.0, np.inf), "p_stress": (0.0, 1.0), "volatility": (0.0, np.inf),
             "fee_yield": (0.0, np.inf)}
    for c, (lo, hi) in rules.items():
        v = values[c]
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(v) & ((v < lo - 1e-12) | (v > hi + 1e-12))
        if bad.any():
            i = int(np.argmax(bad))
            raise AllocationError(f"value {v[i]!r} outside [{lo}, {hi}]", pool=index[i],
                                  field=c)
    for v in values.values():
        v.setflags(write=False)
    pools = tuple(str(p) for p in index)
    frozen: dict[str, str] = {}
    for c in REQUIRED:
        for k in np.flatnonzero(~np.isfinite(values[c])).tolist():
            frozen.setdefault(pools[k], c)
    return Prepared(pools, values, np.zeros(len(pools)), frozen, index, forecasts, meta, rows)


def with_current(pp: Prepared, current: pd.Series | np.ndarray | None) -> Prepared:
    """``pp`` with validated current weights (a Series by pool, or an array in pool order)."""
    prev = _previous(current, pp.index)
    if (prev < -1e-9).any():
        i = int(np.argmax(prev < -1e-9))
        raise AllocationError(f"negative current weight {prev[i]:.4g}", pool=pp.index[i],
                              field="current_weights")
    return replace(pp, prev=np.clip(prev, 0.0, None), memo=pp.memo)


_META_KEYS = ("meta", "tokens", "pool_index")  # memo entries that depend on metadata alone


def share_metadata(pp: Prepared, earlier: Prepared | None) -> Prepared:
    """``pp`` reusing what ``earlier`` derived from the metadata alone (names, token incidence).

    Only when both were checked against the same metadata frame object, on the same pools in
    the same order; the frame must not have been changed in place in between. New forecasts
    (the usual case: a backtest deciding again on the same pools) are priced afresh.
    """
    if (earlier is None or earlier.source_meta is not pp.source_meta
            or earlier.pools != pp.pools or not np.array_equal(earlier.rows, pp.rows)):
        return pp
    for k, v in earlier.memo.items():
        if isinstance(k, tuple) and k and k[0] in _META_KEYS:
            pp.memo.setdefault(k, v)
    return pp


def _tokens(columns: list[np.ndarray], n: int) -> list[tuple[str, ...]]:
    """Tokens held by each pool, from its token0 / token1 values (strings; others skipped)."""
    if not columns:
        return [()] * n
    return [tuple(sorted({str(v) for v in row if isinstance(v, str) and v}))
            for row in zip(*columns, strict=True)]


def token_incidence(columns: list[np.ndarray], n: int
                    ) -> tuple[list[str], tuple[tuple[str, ...], ...], np.ndarray]:
    """(token names, tokens per pool, tokens x pools 0/1 matrix) from the token columns."""
    per_pool = _tokens(columns, n)
    names = sorted({t for ts in per_pool for t in ts})
    pos = {t: i for i, t in enumerate(names)}
    a = np.zeros((len(names), len(per_pool)))
    for j, ts in enumerate(per_pool):
        for t in ts:
            a[pos[t], j] = 1.0
    return names, tuple(per_pool), a


def incidence(meta: pd.DataFrame) -> tuple[list[str], tuple[tuple[str, ...], ...], np.ndarray]:
    """(token names, tokens per pool, tokens x pools 0/1 matrix)."""
    cols = [meta[c].to_numpy() for c in ("token0", "token1") if c in meta.columns]
    return token_incidence(cols, len(meta))


def effective_stress(p: np.ndarray, a: np.ndarray, contagion: float,
                     names: list[str]) -> tuple[np.ndarray, list[str]]:
    """max(own p, contagion x max p of pools sharing a token) and the token that set it."""
    p = np.nan_to_num(p, nan=0.0)
    eff, via = p.copy(), [""] * len(p)
    if a.size == 0:
        return eff, via
    if (p < -1e-15).any():  # a non-member's 0 can then raise it: every pool, every token
        return _effective_stress_all(p, a, contagion, names)
    for i, row in enumerate(a):
        members = np.flatnonzero(row > 0)
        if len(members) < 2:
            continue
        pm = p[members]
        top = int(np.argmax(pm))
        rest = pm.copy()
        rest[top] = -np.inf
        # for each member, the max p over the *other* members holding this token
        others_max = np.full(len(pm), pm[top])
        others_max[top] = rest.max()
        cand = contagion * others_max
        better = cand > eff[members] + 1e-15
        for j in members[better]:
            via[j] = names[i]
        eff[members] = np.maximum(eff[members], cand)
    return eff, via


def _effective_stress_all(p: np.ndarray, a: np.ndarray, contagion: float,
                          names: list[str]) -> tuple[np.ndarray, list[str]]:
    """effective_stress over every pool for every token (non-members' candidate is 0)."""
    eff, via = p.copy(), [""] * len(p)
    for i, row in enumerate(a):
        members = row > 0
        if members.sum() < 2:
            continue
        order = np.argsort(-np.where(members, p, -np.inf))
        top, second = order[0], order[1]
        others_max = np.where(np.arange(len(p)) == top, p[second], p[top])
        cand = np.where(members, contagion * others_max, 0.0)
        better = cand > eff + 1e-15
        for j in np.flatnonzero(better):
            via[j] = names[i]
        eff = np.maximum(eff, cand)
    return eff, via
