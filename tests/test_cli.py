"""CLI behaviour: clear one-paragraph errors, no traceback without --debug."""

from __future__ import annotations

from pathlib import Path

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
