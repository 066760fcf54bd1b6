"""Processes that use no sequence model (backtests of LightGBM, the service) never load torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from models.sequence import GRUForecaster

_CHILD = """
import sys
import numpy as np, pandas as pd
import pipelines.backtest.engine, pipelines.demo, models.forecasts
from models.forecasts import load_forecaster, make_forecaster
assert "torch" not in sys.modules, "torch loaded by the imports"
make_forecaster("lightgbm", "fee_yield", "1h", 24)
assert "torch" not in sys.modules, "torch loaded by a LightGBM model"
m = load_forecaster(sys.argv[1])
X = pd.read_pickle(sys.argv[2])
np.testing.assert_allclose(m.predict(X)["q50"].to_numpy(), np.load(sys.argv[3]))
assert "torch" in sys.modules
print("ok")
"""


def test_torch_loads_only_with_a_sequence_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    X = pd.DataFrame({"pool_id": np.repeat(["a", "b"], n // 2),
                      "timestamp": np.tile(pd.date_range("2024-01-01", periods=n // 2,
                                                         freq="1h", tz="UTC"), 2),
                      "x": rng.normal(size=n)})
    y = pd.Series(np.abs(X["x"]) + rng.random(n), index=X.index)
    m = GRUForecaster(lookback=4, hidden=4, epochs=1, max_samples=200, horizon_periods=2)
    m.fit(X, y)
    folder = m.save(tmp_path / "gru")
    X.to_pickle(tmp_path / "X.pkl")
    np.save(tmp_path / "q50.npy", m.predict(X)["q50"].to_numpy())
    out = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(tmp_path / "X.pkl"),
                          str(tmp_path / "q50.npy")], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
