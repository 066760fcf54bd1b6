"""The numbered notebooks run top to bottom on small data, show what they claim, and are stored
without outputs.

Each notebook is executed once per module; the tests then read its cell outputs (figures,
printed figures, tables) and, through one extra cell run in the same kernel after the last, the
values the notebook computed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
SHARED = Path(os.environ.get("LPA_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
PROBE_TAG = "LPA_PROBE "
N_POOLS = 6  # the notebooks' small size (LPA_NOTEBOOK_SMALL=1)
DRAWS = re.compile(r"plt\.(subplots|show|figure)\(|\.plot\(")

# values each notebook computed, read in its own kernel after its last cell
PROBES = {
    "01_pool_data_and_signals": """{
        "pools": len(panel.meta), "rows": len(panel.frame),
        "rv_calm": float(summary.loc[False, "rv_24h"]),
        "rv_stress": float(summary.loc[True, "rv_24h"])}""",
    "02_forecasting": """{
        "horizon_h": fs.horizon / pd.Timedelta("1h"),
        "gaps_h": [(f.test_start - f.cutoff) / pd.Timedelta("1h") for f in folds],
        "train_labels_end_by_test": [
            bool(X.timestamp.iloc[f.train_idx].max() + fs.horizon <= f.test_start)
            for f in folds],
        "scores": pd.DataFrame(rows).to_dict("records")}""",
    "03_allocation_backtest": """{
        "metrics": {s: {k: float(v) for k, v in m.items()} for s, m in res.metrics.items()},
        "first_equity": eq.iloc[0].to_dict(), "capital": cfg.capital_usd,
        "weights": [float(p.weight) for p in rec.pools]}""",
}


def _run(path: Path, tmp: Path) -> tuple[Any, dict[str, Any]]:
    """Execute a notebook with the small settings; return it and its probe values."""
    nb = nbformat.read(path, as_version=4)
    probe = f"import json as _j\nprint({PROBE_TAG!r} + _j.dumps({PROBES[path.stem]}))"
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LPA_HOME", str(tmp / "work"))
        mp.setenv("LPA_NOTEBOOK_SMALL", "1")
        mp.delenv("MPLBACKEND", raising=False)  # the inline backend, so figures become outputs
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        if SHARED.exists():
            mp.setenv("LPA_SHARED_DATA", str(SHARED))  # notebook 01 reads the real exports
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    line = next((ln for ln in text.splitlines() if ln.startswith(PROBE_TAG)), None)
    assert line is not None, f"{path.name}: probe printed nothing: {text!r}"
    nb.cells.pop()
    return nb, json.loads(line[len(PROBE_TAG):])


class _Runs:
    """Notebooks executed on first use, once per module: (notebook, probe values, folder)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.done: dict[str, tuple[Any, dict[str, Any], Path]] = {}

    def __getitem__(self, stem: str) -> tuple[Any, dict[str, Any], Path]:
        if stem not in self.done:
            tmp = self.factory.mktemp(stem)
            nb, values = _run(next(p for p in NOTEBOOKS if p.stem == stem), tmp)
            self.done[stem] = (nb, values, tmp)
        return self.done[stem]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    """Each notebook executed at most once for the whole module."""
    return _Runs(tmp_path_factory)


def _code(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _images(cell: Any) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.outputs)


def _html(cell: Any) -> str:
    """The first HTML table a cell displayed."""
    return next(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))


def _cell(nb: Any, snippet: str) -> Any:
    """The one code cell whose source contains ``snippet``."""
    cells = [c for c in _code(nb) if snippet in c.source]
    assert len(cells) == 1, f"expected one cell with {snippet!r}, found {len(cells)}"
    return cells[0]


def test_notebooks_exist() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_pool_data_and_signals.ipynb",
        "02_forecasting.ipynb",
        "03_allocation_backtest.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_stripped(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: outputs must be stripped"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_ran_without_error(path: Path, executed: _Runs) -> None:
    nb = executed[path.stem][0]
    cells = _code(nb)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    errors = [(c.source[:60], o.get("ename"), o.get("evalue")) for c in cells for o in c.outputs
              if o.output_type == "error"]
    assert errors == []
    for c in cells:  # every cell that draws shows its figure
        if DRAWS.search(c.source) and "real.exists()" not in c.source:
            assert _images(c) >= 1, f"no figure from cell: {c.source[:80]!r}"


def test_pool_data_notebook(executed: _Runs) -> None:
    from features.sources.store import read_panel

    nb, v, tmp = executed["01_pool_data_and_signals"]
    assert v["pools"] == N_POOLS
    stored = read_panel(tmp / "work")  # the notebook's panel, as written to its work directory
    assert len(stored.meta) == N_POOLS and len(stored.frame) == v["rows"]
    table = _html(_cell(nb, "write_panel(panel, WORK"))
    assert table.split("<tbody>")[1].count("<tr>") == N_POOLS  # one row per pool
    printed = "".join(o.get("text", "") for o in _cell(nb, "build_features(panel)").outputs)
    m = re.match(r"(\d+) features; labels over (.+)", printed)
    assert m is not None and int(m.group(1)) >= 20, printed
    assert v["rv_stress"] > v["rv_calm"] > 0  # "volatility rises into stress"
    real = _cell(nb, "real.exists()")
    if (SHARED / "uniswap-v3-daily").exists():
        assert _images(real) == 1
        assert "duplicate_period" in _html(real)  # the cleaning report table
    else:
        assert "skipping" in "".join(o.get("text", "") for o in real.outputs)


def test_forecasting_notebook(executed: _Runs) -> None:
    _, v, _ = executed["02_forecasting"]
    assert len(v["gaps_h"]) == 2
    assert all(g >= v["horizon_h"] for g in v["gaps_h"])  # gap >= horizon, as the title says
    assert all(v["train_labels_end_by_test"])  # no training label window reaches the test
    scores = {(r["model"], r["target"]): r for r in v["scores"]}
    assert set(scores) == {(k, t) for k in ("seasonal_naive", "baseline", "lightgbm")
                           for t in ("volatility", "stress")}
    for k in ("seasonal_naive", "baseline", "lightgbm"):
        assert 0 < scores[(k, "volatility")]["mase"] < 20
        s = scores[(k, "stress")]
        assert 0 < s["base_rate"] < 1 and 0 <= s["brier"] <= 1
    lgb = scores[("lightgbm", "stress")]
    assert np.isfinite(lgb["auc"]) and 0 <= lgb["auc"] <= 1
    assert lgb["brier"] <= lgb["base_rate"] * (1 - lgb["base_rate"]) * 1.5  # near a base rate


def test_allocation_notebook(executed: _Runs) -> None:
    nb, v, _ = executed["03_allocation_backtest"]
    metrics = v["metrics"]
    assert {"allocator", "equal_weight", "oracle"} <= set(metrics)
    for name, m in metrics.items():
        for k in ("net_return", "fee_income", "il", "gas", "slippage", "max_drawdown"):
            assert np.isfinite(m[k]), (name, k)
        assert m["fee_income"] >= 0 and m["gas"] <= 0 and m["slippage"] <= 0, name
        assert 0 <= m["max_drawdown"] <= 1 and m["net_return"] > -1, name
    for name, e in v["first_equity"].items():
        assert e == pytest.approx(v["capital"], rel=0.05), name  # equity starts at the capital
    w = np.asarray(v["weights"])
    assert len(w) == N_POOLS and (w >= 0).all() and w.sum() <= 1 + 1e-9
    table = _html(_cell(nb, "res.metrics"))
    assert "allocator" in table and "net_return" in table
