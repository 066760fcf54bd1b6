"""Replay job: one LP position over a stored pool's rows, with a NAV report on disk.

Reads the work directory's panel, selects a pool by id or unique prefix and a date window,
runs `models.economics.replay.replay_position` and writes ``nav.csv`` (the per-period path),
``summary.json`` and ``replay.png`` to
``<workdir>/reports/replay-<pool8>-<start>-<end>-<range>-c<capital>[-recenter][-fee]/``
atomically (built in a temp folder, then renamed into place).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import POOL_ID, TIMESTAMP, Panel
from features.sources.store import atomic_dir, read_panel
from models.economics.replay import ReplayResult, replay_position

__all__ = ["ReplayRun", "run_replay", "select_pool", "window", "report_name"]


@dataclass(frozen=True)
class ReplayRun:
    """A replay's result and the folder its report was written to (None: not written)."""

    result: ReplayResult
    report_dir: Path | None


def select_pool(panel: Panel, pool: str) -> str:
    """The pool id matching ``pool`` exactly or as a unique prefix (case-insensitive)."""
    ids = [str(p) for p in panel.meta[POOL_ID]]
    want = pool.strip().lower()
    exact = [p for p in ids if p.lower() == want]
    if exact:
        return exact[0]
    hits = [p for p in ids if p.lower().startswith(want)] if want else []
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(ids[:20]) + (f" ... ({len(ids)} pools)" if len(ids) > 20 else "")
    if not hits:
        raise ValueError(f"no pool matches {pool!r}; pools in the panel: {listing}")
    raise ValueError(f"{pool!r} matches {len(hits)} pools ({', '.join(hits[:10])}); "
                   "give more of the id")


def _bound(value: str | None, end: bool) -> pd.Timestamp | None:
    """A window bound in UTC; a date alone as an end bound covers that whole day."""
    if value is None:
        return None
    try:
        t = pd.Timestamp(value)
    except ValueError as exc:
        raise ValueError(f"cannot read {'end' if end else 'start'} {value!r} as a date or "
                         "timestamp (e.g. 2022-07-19)") from exc
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    if end and len(value.strip()) <= 10:  # date only: through the end of that day
        t = t + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return t


def window(frame: pd.DataFrame, start: str | None, end: str | None, pool: str) -> pd.DataFrame:
    """Rows of one pool between start and end (inclusive; a date-only end covers its day)."""
    lo, hi = _bound(start, end=False), _bound(end, end=True)
    ts = frame[TIMESTAMP]
    keep = pd.Series(True, index=frame.index)
    if lo is not None:
        keep &= ts >= lo
    if hi is not None:
        keep &= ts <= hi
    rows = frame[keep]
    if rows.empty:
        raise ValueError(f"pool {pool}: no rows between {start or 'the start'} and "
                         f"{end or 'the end'} (panel has {ts.min()} .. {ts.max()})")
    return rows


def report_name(pool_id: str, path: pd.DataFrame, position: str = "") -> str:
    """Folder name replay-<first 8 id characters>-<first day>-<last day>[-<position>]."""
    short = re.sub(r"[^0-9A-Za-z]", "", pool_id.split(":")[-1].removeprefix("0x"))[:8]
    days = [pd.Timestamp(path[TIMESTAMP].iloc[i]).strftime("%Y-%m-%d") for i in (0, -1)]
    tail = re.sub(r"[^0-9A-Za-z.+_-]", "", position)
    return f"replay-{short or 'pool'}-{days[0]}-{days[1]}" + (f"-{tail}" if tail else "")


def position_tag(capital: float, width: float | None, lower: float | None,
                 upper: float | None, recenter: bool, entry_swap_fee: bool) -> str:
    """Short text naming a position's range, capital and options, e.g. ``w200-c10000-fee``."""
    rng = f"w{width:g}" if width is not None else f"{lower:g}_{upper:g}"
    parts = [rng, f"c{capital:g}"] + ["recenter"] * recenter + ["fee"] * entry_swap_fee
    return "-".join(parts)


def _thin(path: pd.DataFrame, points: int = 3000) -> pd.DataFrame:
    """Every k-th row (plus re-centre rows and the last) so a plot stays fast on minute paths."""
    n = len(path)
    if n <= points:
        return path
    keep = np.zeros(n, bool)
    keep[:: -(-n // points)] = True
    rec = np.flatnonzero(path["recentred"].to_numpy(bool))
    keep[rec] = True
    keep[np.minimum(rec + 1, n - 1)] = True
    keep[-1] = True
    return path[keep]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV through Arrow's writer (an order of magnitude faster than pandas on minute paths)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    utc = frame[TIMESTAMP].dt.tz_convert(None).to_numpy().astype("datetime64[s]")
    cols = {TIMESTAMP: pa.array(utc, type=pa.timestamp("s", tz="UTC"))}
    cols.update({c: pa.array(frame[c].to_numpy()) for c in frame.columns if c != TIMESTAMP})
    pacsv.write_csv(pa.table(cols), path, pacsv.WriteOptions(quoting_style="none"))


def plot_replay(result: ReplayResult, path: Path) -> Path:
    """NAV and HODL value above, price with the range shaded below (quote units)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = _thin(result.path)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(p[TIMESTAMP], p["nav"], label="LP NAV (fees included)", lw=1.0)
    top.plot(p[TIMESTAMP], p["hodl"], label="HODL", lw=1.0)
    top.plot(p[TIMESTAMP], p["nav"] - p["fees_cum"], label="LP without fees", lw=0.8, ls="--")
    top.set_ylabel(result.quote)
    top.set_title(f"{result.base}/{result.quote} {result.pool_id[:10]}: final NAV "
                  f"{result.final_nav:,.2f} {result.quote}, fees {result.fees:,.2f}, "
                  f"IL {result.il:.2%}, in range {result.time_in_range:.0%}")
    top.legend(loc="best")
    bottom.fill_between(p[TIMESTAMP], p["lower"], p["upper"], step="post", alpha=0.25,
                        label="range")
    bottom.plot(p[TIMESTAMP], p["price"], color="black", lw=0.7, label="price")
    bottom.set_ylabel(f"{result.base} in {result.quote}")
    bottom.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _write_report(result: ReplayResult, target: Path, plot: bool, workdir: Path) -> None:
    """Write nav.csv, summary.json and the plot into `target`, inside the work directory."""
    def fill(tmp: Path) -> None:
        _write_csv(result.path, tmp / "nav.csv")
        (tmp / "summary.json").write_text(json.dumps(result.summary(), indent=2, default=str))
        if plot:
            plot_replay(result, tmp / "replay.png")

    atomic_dir(target, fill, root=workdir)


def run_replay(
    workdir: Path, pool: str, *, capital: float, width: float | None = None,
    lower: float | None = None, upper: float | None = None, start: str | None = None,
    end: str | None = None, recenter: bool = False, quote: str | None = None,
    entry_swap_fee: bool = False, gas_usd: float | None = None, write: bool = True,
    plot: bool = True, panel: Panel | None = None,
) -> ReplayRun:
    """Replay a position on a stored pool and write its report.

    Parameters
    ----------
    workdir : work directory holding the panel (``data/panel``) and ``reports/``.
    pool : pool id or a unique prefix of it.
    capital : deposit, quote-token units.
    width / lower, upper : the range (± quote units around the first price, or quote prices).
    start, end : window (dates or timestamps, UTC; a date-only end includes that day).
    recenter, quote, entry_swap_fee, gas_usd : see `replay_position`.
    write, plot : write the report folder (with the plot).
    panel : an already loaded panel (default: read from the work directory).
    """
    panel = panel if panel is not None else read_panel(Path(workdir))
    pid = select_pool(panel, pool)
    rows = window(panel.frame[panel.frame[POOL_ID] == pid], start, end, pid)
    meta = {str(k): v for k, v in panel.meta[panel.meta[POOL_ID] == pid].iloc[0].items()}
    result = replay_position(rows, meta, capital=capital, width=width, lower=lower,
                             upper=upper, recenter=recenter, quote=quote, freq=panel.freq,
                             entry_swap_fee=entry_swap_fee, gas_usd=gas_usd)
    out = None
    if write:
        tag = position_tag(capital, width, lower, upper, recenter, entry_swap_fee)
        out = Path(workdir) / "reports" / report_name(pid, result.path, tag)
        _write_report(result, out, plot, Path(workdir))
    return ReplayRun(result=result, report_dir=out)
