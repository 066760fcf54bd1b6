"""Allocator input checks, per-pool coefficients, contagion and the reasons attached to weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["AllocationError", "REQUIRED", "OPTIONAL", "Prepared", "check_inputs",
           "effective_stress", "incidence"]

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
    """Validated inputs aligned on the forecast index."""

    pools: tuple[str, ...]
    fc: pd.DataFrame
    meta: pd.DataFrame
    prev: np.ndarray
    frozen: dict[str, str]  # pool -> field that made it unusable (held at current weight)


def check_inputs(forecasts: pd.DataFrame, current: pd.Series | None,
                 meta: pd.DataFrame) -> Prepared:
    """Validate forecasts / weights / metadata; raise AllocationError naming pool and field."""
    if not isinstance(forecasts, pd.DataFrame):
        raise AllocationError(f"forecasts must be a DataFrame, got {type(forecasts).__name__}")
    for c in REQUIRED:
        if c not in forecasts.columns:
            raise AllocationError("forecasts lack a required column", field=c)
    fc = forecasts.copy()
    fc.index = fc.index.astype(str)
    dup = fc.index[fc.index.duplicated()]
    if len(dup):
        raise AllocationError("duplicate pool in forecasts", pool=str(dup[0]), field="pool_id")
    m = meta.copy()
    if "pool_id" in m.columns:
        m = m.set_index(m["pool_id"].astype(str))
    m.index = m.index.astype(str)
    m = m[~m.index.duplicated()]
    missing = fc.index.difference(m.index)
    if len(missing):
        raise AllocationError("pool has no metadata row", pool=str(missing[0]), field="meta")
    m = m.loc[fc.index]
    cols = [c for c in (*REQUIRED, *OPTIONAL, "fee_yield_q90") if c in fc.columns]
    for c in cols:
        try:
            fc[c] = pd.to_numeric(fc[c]).astype(float)
        except (TypeError, ValueError) as exc:
            raise AllocationError(f"non-numeric values ({exc})", field=c) from exc
    rules = {"tvl_usd": (0.0, np.inf), "p_stress": (0.0, 1.0), "volatility": (0.0, np.inf),
             "fee_yield": (0.0, np.inf)}
    for c, (lo, hi) in rules.items():
        v = fc[c].to_numpy(float)
        bad = np.isfinite(v) & ((v < lo - 1e-12) | (v > hi + 1e-12))
        if bad.any():
            i = int(np.argmax(bad))
            raise AllocationError(f"value {v[i]!r} outside [{lo}, {hi}]", pool=fc.index[i],
                                  field=c)
    frozen: dict[str, str] = {}
    for c in REQUIRED:
        for pool in fc.index[~np.isfinite(fc[c].to_numpy(float))]:
            frozen.setdefault(str(pool), c)
    if current is None:
        prev = np.zeros(len(fc))
    else:
        cur = pd.Series(current, dtype=float)
        cur.index = cur.index.astype(str)
        prev = cur.reindex(fc.index).fillna(0.0).to_numpy(float)
    if (prev < -1e-9).any():
        i = int(np.argmax(prev < -1e-9))
        raise AllocationError(f"negative current weight {prev[i]:.4g}", pool=fc.index[i],
                              field="current_weights")
    prev = np.clip(prev, 0.0, None)
    return Prepared(tuple(fc.index), fc, m, prev, frozen)


def _tokens(meta: pd.DataFrame) -> list[tuple[str, ...]]:
    """Tokens held by each pool (token0, token1 when present)."""
    cols = [c for c in ("token0", "token1") if c in meta.columns]
    return [tuple(sorted({str(v) for v in row if isinstance(v, str) and v}))
            for row in meta[cols].itertuples(index=False)] if cols else [()] * len(meta)


def incidence(meta: pd.DataFrame) -> tuple[list[str], tuple[tuple[str, ...], ...], np.ndarray]:
    """(token names, tokens per pool, tokens x pools 0/1 matrix)."""
    per_pool = _tokens(meta)
    names = sorted({t for ts in per_pool for t in ts})
    pos = {t: i for i, t in enumerate(names)}
    a = np.zeros((len(names), len(per_pool)))
    for j, ts in enumerate(per_pool):
        for t in ts:
            a[pos[t], j] = 1.0
    return names, tuple(per_pool), a


def effective_stress(p: np.ndarray, a: np.ndarray, contagion: float,
                     names: list[str]) -> tuple[np.ndarray, list[str]]:
    """max(own p, contagion x max p of pools sharing a token) and the token that set it."""
    p = np.nan_to_num(p, nan=0.0)
    eff, via = p.copy(), [""] * len(p)
    if a.size == 0:
        return eff, via
    for i, row in enumerate(a):
        members = row > 0
        if members.sum() < 2:
            continue
        # for each member, the max p over the *other* members holding this token
        order = np.argsort(-np.where(members, p, -np.inf))
        top, second = order[0], order[1]
        others_max = np.where(np.arange(len(p)) == top, p[second], p[top])
        cand = np.where(members, contagion * others_max, 0.0)
        better = cand > eff + 1e-15
        for j in np.flatnonzero(better):
            via[j] = names[i]
        eff = np.maximum(eff, cand)
    return eff, via
