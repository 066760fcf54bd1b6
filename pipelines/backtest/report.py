"""Backtest report: metrics.json, per-period CSVs, plots and report.md; MLflow logging."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.sources.store import atomic_dir, safe_slug
from pipelines.backtest.metrics import METRICS
from pipelines.runtime import quiet_mlflow

__all__ = ["write_report", "log_to_mlflow", "markdown_table", "stress_spans"]

COST_PARTS = ["fee_income", "il", "lvr", "gas", "slippage"]


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-style markdown table; floats with 4 significant digits."""
    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "nan" if not math.isfinite(float(v)) else f"{float(v):.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def stress_spans(times: pd.DatetimeIndex, mask: np.ndarray) -> list[tuple[Any, Any]]:
    """Contiguous runs of True in a per-bar mask as (start, end) timestamps."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(int))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(0)
    return [(times[int(s)], times[int(e) - 1] + step)
            for s, e in zip(starts, ends, strict=True)]


def _plots(res: Any, out: Path, market: Any, stress: np.ndarray,
           held: np.ndarray | None) -> list[str]:
    """Draw equity, weights (stress shaded), cost bars and the pre-emption plot; return names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cap = res.config.capital_usd
    names = []
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for s, g in res.periods.groupby("strategy", sort=False):
        ax.plot(g["timestamp"], g["equity"] / cap, label=str(s), lw=1.2)
    ax.set_ylabel("equity / starting capital")
    ax.set_title("Equity curves (net of gas and slippage)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "equity.png", dpi=110)
    plt.close(fig)
    names.append("equity.png")

    w = res.weights[res.weights["strategy"] == "allocator"]
    if len(w):
        fig, ax = plt.subplots(figsize=(10, 4.5))
        pools = [c for c in w.columns if c not in ("timestamp", "strategy")]
        top = w[pools].mean().sort_values(ascending=False).index[:10].tolist()
        rest = w[pools].drop(columns=top).sum(axis=1)
        ys = [w[p].to_numpy(float) for p in top] + [rest.to_numpy(float)]
        ax.stackplot(pd.DatetimeIndex(w["timestamp"]), *ys, labels=[*top, "other"],
                     step="post", alpha=0.85)
        start = pd.Timestamp(w["timestamp"].iloc[0])
        for a, b in stress_spans(market.times, np.asarray(stress.any(axis=1), bool)):
            if b >= start:
                ax.axvspan(max(a, start), b, color="red", alpha=0.15, lw=0)
        ax.set_ylabel("allocator weight")
        ax.set_title("Allocator weights over time (red: realised stress windows)")
        ax.legend(loc="upper left", fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "weights.png", dpi=110)
        plt.close(fig)
        names.append("weights.png")

    fig, ax = plt.subplots(figsize=(10, 4.5))
    strats = list(res.metrics)
    x = np.arange(len(strats))
    width = 0.8 / len(COST_PARTS)
    for j, c in enumerate(COST_PARTS):
        ax.bar(x + j * width, [res.metrics[s][c] for s in strats], width, label=c)
    ax.set_xticks(x + 0.4 - width / 2, strats)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("fraction of starting capital")
    ax.set_title("P&L components per strategy (lvr is part of il)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "costs.png", dpi=110)
    plt.close(fig)
    names.append("costs.png")

    pre = res.preemption
    if len(pre) and pre["events"].max() > 0:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        lag = pre["lag_bars"]
        for s in ("allocator", "equal_weight", "oracle"):
            if f"w_{s}" in pre:
                ax.plot(lag, pre[f"w_{s}"], marker="o", label=f"{s} weight in pool")
        ax.plot(lag, pre["equal_share"], ls="--", color="grey", label="equal share 1/n")
        ax.invert_xaxis()
        ax.set_xlabel("panel periods before the stress onset")
        ax.set_ylabel("average weight in the pool about to be stressed")
        if "p_stress" in pre:
            ax2 = ax.twinx()
            ax2.plot(lag, pre["p_stress"], color="red", ls=":", marker="x",
                     label="predicted P(stress)")
            ax2.set_ylabel("predicted P(stress)", color="red")
            ax2.legend(loc="lower right", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"Pre-emption: exposure before {int(pre['events'].iloc[0])} stress onsets")
        fig.tight_layout()
        fig.savefig(out / "preemption.png", dpi=110)
        plt.close(fig)
        names.append("preemption.png")
    return names


def _frame_table(frame: pd.DataFrame | None, empty: str) -> str:
    """A frame as a markdown table, or `empty` when there is nothing to show."""
    if frame is None or not len(frame):
        return empty
    return markdown_table([str(c) for c in frame.columns], frame.values.tolist())


def _window_table(windows: pd.DataFrame | None) -> str:
    """Net return per strategy (rows) and window (columns)."""
    if windows is None or not len(windows):
        return "no windows"
    wide = windows.pivot(index="strategy", columns="window", values="net_return")
    return markdown_table(["strategy", *map(str, wide.columns)],
                          [[i, *r] for i, r in zip(wide.index, wide.values.tolist(),
                                                   strict=True)])


def _markdown(res: Any, images: list[str]) -> str:
    """The report body."""
    cfg = res.config.model_dump()
    rows = [[s, *[m.get(k, float("nan")) for k in METRICS]] for s, m in res.metrics.items()]
    pre = res.preemption
    parts = [
        f"# Backtest {res.run_id}",
        "",
        f"Model `{cfg['model']}`, capital {cfg['capital_usd']:,.0f} USD. Decisions at t use rows "
        "<= t and execute at t + 1; models retrain on purged, expanding windows. Every "
        "strategy pays the same gas and slippage. Returns are fractions of starting capital; "
        "`lvr` is the loss-versus-rebalancing part of `il` (not charged twice).",
        "",
        "## Metrics",
        markdown_table(["strategy", *METRICS], rows),
        "",
        "`market` is the move of the tokens held (HODL), `lp_alpha` what providing liquidity "
        "added on top (fees + IL - gas - slippage); net = market + LP alpha. `oracle` is the "
        "hindsight plan on net return, `oracle_lp_alpha` the one on LP alpha, both executed "
        "by the same ledger; each plan's optimum (`plan_bound`: a relaxation of the ledger "
        "with fees never understated, swap costs floored and gas left out) bounds its metric "
        "for every strategy within the caps. The capture "
        "ratios are the share of the executed oracles' excess over equal weight a strategy "
        "keeps. "
        "`allocator_perfect` is the allocator fed what actually happened (the value of "
        "perfect forecasts); `*_capped` are baselines under the allocator's caps.",
        "",
        *[f"Bound of `{n}` (plan optimum): {res.metrics[n]['plan_bound']:.4f} on "
          f"{'net return' if n == 'oracle' else 'LP alpha'}."
          for n in ("oracle", "oracle_lp_alpha") if "plan_bound" in res.metrics.get(n, {})],
        "",
        *[f"**Warning:** {w}" for w in res.warnings],
        "",
        "## Returns by calendar year and stress window (fraction of equity at the start)",
        _window_table(res.tables.get("windows")),
        "",
        "## Pre-emption (average weight held in a pool `lag_bars` periods before its stress onset)",
        markdown_table(list(pre.columns), pre.values.tolist()) if len(pre) else "no events",
        "",
        f"Allocator fallbacks: {len(res.fallbacks)} decision(s).",
        "",
        "## Decision layer fitted walk-forward",
        _frame_table(res.tables.get("decision_fits"), "not fitted (fit_decisions = false)"),
        "",
        "## Fee share source per pool",
        _frame_table(res.tables.get("fee_share_source"), "n/a"),
        "",
        "## Plots",
        *[f"![{n}]({n})" for n in images],
        "",
        "## Config",
        "```json",
        json.dumps(cfg, indent=2, default=str),
        "```",
    ]
    return "\n".join(parts) + "\n"


def write_report(res: Any, workdir: Path, market: Any, stress: np.ndarray,
                 held: np.ndarray | None = None) -> Path:
    """Write workdir/reports/<run-id>/ atomically and return its path.

    Contents: metrics.json (strategy -> metric -> value), periods.csv (per-period equity and
    USD components per strategy), weights.csv (executed weights), preemption.csv,
    config.json, report.md and PNG plots. The run id must be a plain folder name
    (:func:`features.sources.store.safe_slug`), and only that folder is ever replaced.
    """
    target = Path(workdir) / "reports" / safe_slug(res.run_id, "run_id")

    def fill(tmp: Path) -> None:
        clean = {s: {k: (float(v) if math.isfinite(float(v)) else None) for k, v in m.items()}
                 for s, m in res.metrics.items()}
        (tmp / "metrics.json").write_text(json.dumps(clean, indent=2))
        (tmp / "config.json").write_text(res.config.model_dump_json(indent=2))
        res.periods.to_csv(tmp / "periods.csv", index=False)
        res.weights.to_csv(tmp / "weights.csv", index=False)
        res.preemption.to_csv(tmp / "preemption.csv", index=False)
        for name, frame in res.tables.items():
            frame.to_csv(tmp / f"{name}.csv", index=False)
        (tmp / "warnings.json").write_text(json.dumps(res.warnings, indent=2))
        images = _plots(res, tmp, market, stress, held)
        (tmp / "report.md").write_text(_markdown(res, images))

    atomic_dir(target, fill, root=workdir)
    return target


def log_to_mlflow(res: Any, workdir: Path) -> str:
    """Log config, metrics and the report directory to MLflow (experiment lpa-backtest)."""
    with quiet_mlflow():
        return _log(res, Path(workdir))


def _log(res: Any, workdir: Path) -> str:
    """The MLflow run of `log_to_mlflow`."""
    import mlflow

    from pipelines.config import configure_mlflow

    configure_mlflow(Path(workdir), "lpa-backtest")
    params = {k: (json.dumps(v) if isinstance(v, dict) else v)
              for k, v in res.config.model_dump().items()}
    with mlflow.start_run(run_name=res.run_id) as run:
        mlflow.log_params(params)
        mlflow.log_metrics({f"{s}.{k}": float(v) for s, m in res.metrics.items()
                            for k, v in m.items() if math.isfinite(float(v))})
        mlflow.log_metrics({f"timing.{k}": v for k, v in res.timings.items()})
        if res.report_dir is not None:
            mlflow.log_artifacts(str(res.report_dir))
        return str(run.info.run_id)
