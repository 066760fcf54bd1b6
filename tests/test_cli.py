"""CLI behaviour: clear one-paragraph errors, no traceback without --debug."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def test_info_without_panel_is_a_clear_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "info", "--workdir", str(tmp_path)])
    assert res.exit_code == 1
    assert "no pool panel" in res.output
    assert "Traceback" not in res.output


def test_import_of_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    res = runner.invoke(app, ["data", "import", str(missing), "--workdir", str(tmp_path / "w")])
    assert res.exit_code == 1
    assert "nope" in res.output


def test_recommend_with_only_commas_is_an_error(tmp_path: Path) -> None:
    """`--pools ,,,` names no pool: an error, not a recommendation across every pool."""
    res = runner.invoke(app, ["recommend", "--pools", ",,,", "--workdir", str(tmp_path)])
    assert res.exit_code == 1
    assert "names no pool id" in res.output
    assert "Traceback" not in res.output


def test_recommend_table_flags_stale_features(tmp_path: Path) -> None:
    """The table title says STALE when the latest features are old."""
    runner.invoke(app, ["data", "synth", "--pools", "4", "--days", "12", "--workdir",
                        str(tmp_path)])
    built = runner.invoke(app, ["features", "build", "--workdir", str(tmp_path)])
    assert built.exit_code == 0, built.output
    res = runner.invoke(app, ["recommend", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "STALE" in res.output  # simulated data ends in the past


def test_backtest_rejects_a_bad_cluster_spec(tmp_path: Path) -> None:
    """`lpa backtest --cluster` takes local or local:N, and not together with --scheduler."""
    res = runner.invoke(app, ["backtest", "--cluster", "remote", "--workdir", str(tmp_path)])
    assert res.exit_code == 1
    assert "expected local or local:N" in res.output
    both = runner.invoke(app, ["backtest", "--cluster", "local", "--scheduler",
                               "tcp://127.0.0.1:8786", "--workdir", str(tmp_path)])
    assert both.exit_code == 1
    assert "not both" in both.output


@pytest.mark.parametrize("cluster", [None, "local:1"])
def test_backtest_runs_with_the_cluster_client_active(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: str | None
) -> None:
    """run_backtest sees the Dask client of --cluster as the active one, and none by default."""
    import features.build
    import features.sources.store
    import pipelines.backtest.engine
    from models.gbm_dask import active_client

    seen: list[object] = []

    def fake_backtest(*args: Any, **kwargs: Any) -> SimpleNamespace:
        seen.append(active_client())
        return SimpleNamespace(metrics={}, warnings=[], report_dir=tmp_path,
                               routing_savings=pd.DataFrame)

    monkeypatch.setattr(features.sources.store, "read_panel", lambda wd: "panel")
    monkeypatch.setattr(features.sources.store, "read_truth", lambda wd: None)
    monkeypatch.setattr(features.build, "read_features", lambda wd: "features")
    monkeypatch.setattr(pipelines.backtest.engine, "run_backtest", fake_backtest)
    args = ["backtest", "--workdir", str(tmp_path)] + (["--cluster", cluster] if cluster else [])
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(seen) == 1
    if cluster is None:
        assert seen[0] is None
    else:
        client: Any = seen[0]
        assert type(client).__name__ == "Client"
        assert client.status == "closed"  # the cluster lives as long as the command
    assert active_client() is None
