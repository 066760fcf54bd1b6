"""Stress forecasts on a stored real panel: walk-forward AUC, alarm lead and false alarms.

Reads the feature set and panel of a work directory (``lpa data import`` then ``lpa features
build``), optionally recomputes the LP-stress label with other settings (``--pooled``: the
thresholds from every pool's history together), and scores stress models on the same outer
walk-forward folds (gap = horizon). Every choice a model makes (L2 strength, booster grid,
calibration) is made on inner folds of its training window; the alarm threshold is fixed
before evaluation as a multiple of the training base rate (``--alarm-x``) and also shown at
fixed probabilities. Prints per-model scores and, for the named market events, which pools
had an onset and how many days ahead the first alarm fired.

Usage: python benchmarks/stress_real.py --workdir /tmp/s12 [--pooled] [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

# benchmarks/features.py is named like the `features` package: keep this folder off the path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from features.build import read_features  # noqa: E402
from features.labels import FWD_STRESS, FWD_STRESS_ONSET, forward_lp_stress  # noqa: E402
from features.schema import (  # noqa: E402
    FREQUENCIES,
    POOL_ID,
    STABLECOINS,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    parse_duration,
)
from features.sources.store import read_panel  # noqa: E402
from models.base import PROB_COLUMN, BaseForecaster  # noqa: E402
from models.baselines import BaseRateStress  # noqa: E402
from models.cv import inner_splits, walk_forward_splits  # noqa: E402
from models.events import event_scores, stress_events  # noqa: E402
from models.forecasts import align_labels, model_matrix  # noqa: E402
from models.metrics import stress_scores  # noqa: E402
from models.stress import LightGBMStress  # noqa: E402
from models.stress_market import MarketStress, market_inputs  # noqa: E402

INNER_FOLDS = 3
EVENTS = {"Terra/UST": ("2022-05-05", "2022-05-20"), "FTX": ("2022-11-06", "2022-11-20"),
          "USDC depeg": ("2023-03-09", "2023-03-20")}  # onset windows of the named events


def relabel(workdir: Path, fs_config: dict, h: int, pooled: bool, flight: bool
            ) -> pd.DataFrame:
    """The stress label and onset recomputed from the stored panel with ``pooled`` thresholds
    (and without the liquidity-flight condition unless ``flight``)."""
    panel = read_panel(workdir)
    fr = panel.frame
    step = FREQUENCIES[panel.freq]
    times = pd.date_range(fr[TIMESTAMP].min(), fr[TIMESTAMP].max(), freq=step, name=TIMESTAMP)
    pools = sorted(fr[POOL_ID].unique())
    wide = {c: fr.pivot(index=TIMESTAMP, columns=POOL_ID, values=c).reindex(
        index=times, columns=pools).to_numpy(float)
        for c in (TOKEN0_PRICE_USD, TOKEN1_PRICE_USD, TVL_USD)}
    meta = panel.meta.set_index(POOL_ID).loc[pools]
    stable = (meta[TOKEN0].isin(STABLECOINS) & meta[TOKEN1].isin(STABLECOINS)).to_numpy()
    s = forward_lp_stress(
        wide[TOKEN0_PRICE_USD], wide[TOKEN1_PRICE_USD], wide[TVL_USD], stable, h,
        quantile=fs_config["stress_quantile"],
        history=int(parse_duration(fs_config["stress_history"]) // step),
        min_history=int(parse_duration(fs_config["stress_min_history"]) // step),
        min_divergence=fs_config["stress_min_divergence"],
        min_flight=fs_config["stress_min_flight"] if flight else np.inf,
        peg_break=fs_config["stress_peg_break"], pooled=pooled)
    idx = pd.MultiIndex.from_product([times, pools], names=[TIMESTAMP, POOL_ID])
    return pd.DataFrame({FWD_STRESS: s.stress.reshape(-1), FWD_STRESS_ONSET: s.onset.reshape(-1)},
                        index=idx).reset_index()


def inner_threshold(make: Callable[[], BaseForecaster], X: pd.DataFrame, y: pd.Series,
                    h: int, alarm_x: float) -> float:
    """Alarm threshold of one training window: the P(stress) above which the top
    ``alarm_x`` x base-rate share of its inner walk-forward folds' out-of-sample scores lie
    (the model alarms about ``alarm_x`` times as often as stress occurred)."""
    yv = y.to_numpy(float)
    scores = []
    for tr, va in inner_splits(X[TIMESTAMP], INNER_FOLDS, h):
        keep = tr & np.isfinite(yv)
        if len(np.unique(yv[keep])) < 2:
            continue
        p = make().fit(X[keep], y[keep]).predict(X[va])[PROB_COLUMN].to_numpy(float)
        scores.append(p[np.isfinite(yv[va])])
    rate = float(np.nanmean(yv))
    if not scores:
        return float("inf")
    return float(np.quantile(np.concatenate(scores), max(0.0, 1 - alarm_x * rate)))


def run_model(make: Callable[[], BaseForecaster], X: pd.DataFrame, y: pd.Series,
              folds: list, h: int, alarm_x: float) -> pd.DataFrame:
    """Out-of-sample P(stress) of every test row, with its fold's alarm threshold chosen on
    the inner folds of the fold's training window (``inner_threshold``)."""
    parts = []
    for i, f in enumerate(folds):
        Xtr, ytr = X.iloc[f.train_idx], y.iloc[f.train_idx]
        m = make().fit(Xtr, ytr)
        p = m.predict(X.iloc[f.test_idx])[PROB_COLUMN].to_numpy(float)
        rate = float(np.nanmean(ytr.to_numpy(float)))
        thr = inner_threshold(make, Xtr.reset_index(drop=True), ytr.reset_index(drop=True), h,
                              alarm_x)
        parts.append(pd.DataFrame({POOL_ID: X[POOL_ID].iloc[f.test_idx].to_numpy(),
                                   TIMESTAMP: X[TIMESTAMP].iloc[f.test_idx].to_numpy(),
                                   "p": p, "fold": i, "train_rate": rate,
                                   "train_thr": thr}))
    return pd.concat(parts, ignore_index=True)


def named_events(P: pd.DataFrame, alarm: np.ndarray, h: int, step: pd.Timedelta) -> list[str]:
    """Per named event: each pool with an onset in its window and the first alarm's lead."""
    ev = stress_events(P, h, step, label="y", onset="onset", cause=None)
    lines = []
    A = P.assign(alarm=alarm).set_index([POOL_ID, TIMESTAMP])["alarm"]
    for name, (a, b) in EVENTS.items():
        lo, hi = pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")
        sel = ev[(ev["onset"] >= lo) & (ev["onset"] <= hi)]
        parts = []
        for _, e in sel.iterrows():
            lead = None
            for k in range(h, 0, -1):  # the warning window (onset - h, onset - 1]
                key = (e[POOL_ID], e["onset"] - k * step)
                if key in A.index and bool(A.loc[key]):
                    lead = k
                    break
            parts.append(f"{e[POOL_ID][:6]} onset {e['onset']:%m-%d} lead "
                         f"{'none' if lead is None else f'{lead}d'}")
        lines.append(f"  {name}: {len(sel)} pool events; " + "; ".join(parts))
    return lines


def main() -> None:
    """Score the stress models on the stored real panel and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--pooled", action="store_true", help="pooled-history stress thresholds")
    ap.add_argument("--no-flight", action="store_true",
                    help="stress label without the liquidity-flight condition")
    ap.add_argument("--alarm-x", type=float, default=2.0, help=(
        "alarm share chosen on inner folds, as a multiple of the training base rate"))
    ap.add_argument("--models",
                    default="base_rate,lightgbm_stress,market_stress")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    fs = read_features(args.workdir)
    h, step = fs.horizon_periods, FREQUENCIES[fs.freq]
    relabelled = args.pooled or args.no_flight
    labels = relabel(args.workdir, fs.config, h, args.pooled, not args.no_flight) \
        if relabelled else fs.labels
    X = model_matrix(fs)
    y = align_labels(X, labels, FWD_STRESS)
    onset = align_labels(X, labels, FWD_STRESS_ONSET)
    folds = walk_forward_splits(X[TIMESTAMP], args.folds, fs.horizon, fs.horizon)
    print(f"label {'pooled' if args.pooled else 'per-pool'}"
          f"{', no flight' if args.no_flight else ''}, horizon {h} periods: "
          f"rows {int(y.notna().sum())}, "
          f"base rate {np.nanmean(y):.3f}; test from {folds[0].test_start:%Y-%m-%d}")
    makers: dict[str, Callable[[], BaseForecaster]] = {
        "base_rate": BaseRateStress,
        "lightgbm_stress": lambda: LightGBMStress(horizon_periods=h),
        "market_stress": lambda: MarketStress(horizon_periods=h),
        "lightgbm_market": lambda: LightGBMStress(horizon_periods=h),
    }
    X_market = pd.concat([X, market_inputs(X).add_prefix("x_")], axis=1)
    report: dict[str, dict[str, object]] = {}
    for name in args.models.split(","):
        P = run_model(makers[name], X_market if name == "lightgbm_market" else X, y, folds,
                      h, args.alarm_x)
        key = pd.MultiIndex.from_frame(P[[POOL_ID, TIMESTAMP]])
        src = pd.MultiIndex.from_frame(X[[POOL_ID, TIMESTAMP]])
        pos = src.get_indexer(key)
        P["y"], P["onset"] = y.to_numpy()[pos], onset.to_numpy()[pos]
        s = stress_scores(P["y"].to_numpy(float), P["p"].to_numpy(float))
        row: dict[str, object] = {"auc": s["auc"], "brier": s["brier"]}
        thr = P["train_thr"].to_numpy()
        ev = _events_at(P, P["p"].to_numpy() >= thr, h, step)
        row.update({f"inner_{k}": v for k, v in ev.items()})
        for t in (0.1, 0.25):
            row.update({f"p{t:g}_{k}": v for k, v in _events_at(P, P["p"].to_numpy() >= t, h,
                                                                 step).items()})
        fold_auc = [stress_scores(g["y"].to_numpy(float), g["p"].to_numpy(float))["auc"]
                    for _, g in P.groupby("fold")]
        row["fold_auc"] = fold_auc
        report[name] = row
        print(f"{name}: AUC {s['auc']:.3f} (folds {', '.join(f'{a:.2f}' for a in fold_auc)}) "
              f"Brier {s['brier']:.4f}")
        ref = shifted_reference(P, h, step)
        row.update({f"noskill_{k}": v for k, v in ref.items()})
        for tag in ("inner", "noskill", "p0.1", "p0.25"):
            print(f"  alarms {tag}: events {row[tag + '_events']:.0f}, recall "
                  f"{row[tag + '_event_recall']:.2f}, median lead "
                  f"{row[tag + '_median_lead_periods']:.1f} d, false alarms/pool-yr "
                  f"{row[tag + '_false_alarms_per_pool_year']:.2f}, rows in alarm "
                  f"{row[tag + '_alarm_share']:.2f}")
        print(f"  inner-fold alarm thresholds by fold: "
              f"{', '.join(f'{t:.3f}' for t in P.groupby('fold')['train_thr'].first())}")
        for line in named_events(P, P["p"].to_numpy() >= thr, h, step):
            print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


def shifted_reference(P: pd.DataFrame, h: int, step: pd.Timedelta, draws: int = 20,
                      seed: int = 0) -> dict[str, float]:
    """Event scores of no-skill alarms with the same alarm episodes: each pool's alarm series
    circularly shifted in time by a random offset of at least 30 days (median of ``draws``)."""
    rng = np.random.default_rng(seed)
    Q = P.sort_values([POOL_ID, TIMESTAMP]).reset_index(drop=True)
    alarm = (Q["p"] >= Q["train_thr"]).to_numpy()
    out: list[dict[str, float]] = []
    for _ in range(draws):
        shifted = np.empty_like(alarm)
        for _, idx in Q.groupby(POOL_ID).indices.items():
            n = len(idx)
            k = int(rng.integers(min(30, n - 1), max(min(30, n - 1) + 1, n - 30)))
            shifted[idx] = np.roll(alarm[idx], k)
        out.append(_events_at(Q, shifted, h, step))
    return {k: float(np.median([o[k] for o in out])) for k in out[0]}


def _events_at(P: pd.DataFrame, alarm: np.ndarray, h: int, step: pd.Timedelta
               ) -> dict[str, float]:
    return event_scores(P, alarm.astype(float), 0.5, h, step, label="y", onset="onset")


if __name__ == "__main__":
    main()
