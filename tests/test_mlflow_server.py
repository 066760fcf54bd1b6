"""An MLflow tracking server: `lpa train` logs and registers to it, the service loads from it.

The test starts `mlflow server` (sqlite backend store, proxied artifacts in a temporary folder)
on a free loopback port and points the jobs at it with MLFLOW_TRACKING_URI, as a deployment
does. Nothing is written to the work directory's own MLflow store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from features.build import build_features, write_features
from features.sources.simulator import simulate_market
from features.sources.store import write_panel
from models.registry import champion_versions
from pipelines.cli import app
from pipelines.service.state import load_state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server not up after {limit_s:.0f} s: "
                               f"{log.read_text()[-2000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Any]]:
    """A running `mlflow server`: its URL, artifact folder and a wait-until-healthy call."""
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if not mlflow_bin.exists():
        found = shutil.which("mlflow")
        if found is None:
            pytest.skip("the `mlflow` command (MLflow's tracking server) is not installed")
        mlflow_bin = Path(found)
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log_path = root / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, root / "artifacts", lambda: _wait_healthy(url, proc, log_path, 180)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker: their own group
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:  # a throwaway server: no graceful drain needed
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_train_registers_on_the_server_and_the_service_loads_the_champion(
    server: tuple[str, Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, artifacts, wait_healthy = server
    panel, truth = simulate_market(n_pools=4, days=30, seed=6)
    write_panel(panel, tmp_path, truth=truth)
    write_features(build_features(panel), tmp_path)
    # baselines alone: their fits take seconds, and they log and register as every kind does
    (tmp_path / "train.toml").write_text('[train]\nmodels = ["baseline"]\nn_folds = 1\n')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    wait_healthy()
    res = CliRunner().invoke(app, ["train", "-w", str(tmp_path), "--config",
                                   str(tmp_path / "train.toml"), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    # the registry on the server holds a champion per target; model files went to its store
    versions = champion_versions(url)
    assert set(versions) == {"fee_yield", "volatility", "stress"}
    assert all(v is not None for v in versions.values()), versions
    assert any(p.name == "forecaster.json" for p in artifacts.rglob("*"))
    # the service's state loader reads the champions from the server
    state = load_state(tmp_path)
    for target, version in versions.items():
        assert state.model_versions[target].startswith(f"lpa-{target} v{version} ")
    assert np.isfinite(state.forecasts[["fee_yield", "volatility", "p_stress"]].to_numpy(
        float)).all()
