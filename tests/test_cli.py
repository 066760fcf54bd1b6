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
