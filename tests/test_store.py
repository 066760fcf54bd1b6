"""Work-directory store: safe folder names, confinement, the write lock, crash repair, temps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from features.sources.simulator import simulate_market
from features.sources.store import (
    LOCK_FILE,
    WorkdirLockedError,
    atomic_dir,
    clean_stale_temps,
    panel_dir,
    read_panel,
    read_truth,
    recover_dir,
    safe_slug,
    workdir_lock,
    write_panel,
)

ROOT = Path(__file__).resolve().parents[1]
NO_STRESS = np.zeros((2, 0), bool)  # plots are stubbed out; the report needs no stress bars


@pytest.fixture(scope="module")
def panels() -> tuple[Any, Any]:
    """Two small, different simulated panels (3 pools and 2 pools, 2 days hourly)."""
    a, _ = simulate_market(n_pools=3, days=2, seed=0)
    b, _ = simulate_market(n_pools=2, days=2, seed=1)
    return a, b


def _pools(workdir: Path) -> list[str]:
    return sorted(read_panel(workdir).meta["pool_id"])


def _leftovers(workdir: Path) -> list[str]:
    d = panel_dir(workdir).parent
    return sorted(p.name for p in d.glob(".panel.*"))


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a Python child process running ``code`` from the project root."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# -- safe folder names -----------------------------------------------------------------------
@pytest.mark.parametrize("ok", ["test", "20240101T120000-a1b2c3", "run_1.v2", "A-b_C.d", "x" * 100])
def test_safe_slug_accepts_plain_names(ok: str) -> None:
    assert safe_slug(ok, "run_id") == ok


@pytest.mark.parametrize("bad", ["../data", "..", ".", "/tmp/x", "a/b", "a\\b", ".hidden", "",
                                 "x" * 101, "run\n", "r\u00e9sum\u00e9", None, 3])
def test_safe_slug_rejects_paths_and_names_the_field(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^run_id must be 1-100 characters"):
        safe_slug(bad, "run_id")


# -- confinement to the work directory -------------------------------------------------------
class _Config(BaseModel):
    """The config fields the report prints."""

    model: str = "baseline"
    capital_usd: float = 1e6


def _backtest_result(run_id: str) -> SimpleNamespace:
    """The parts of a backtest result that write_report reads."""
    from pipelines.backtest.metrics import METRICS

    ts = pd.date_range("2024-01-01", periods=2, freq="1D", tz="UTC")
    return SimpleNamespace(
        run_id=run_id, config=_Config(), fallbacks=[],
        metrics={"allocator": dict.fromkeys(METRICS, 0.0)},
        periods=pd.DataFrame({"timestamp": ts, "strategy": "allocator", "equity": 1.0}),
        weights=pd.DataFrame({"timestamp": ts, "strategy": "allocator"}),
        preemption=pd.DataFrame(), tables={}, warnings=[])


@pytest.mark.parametrize("run_id", ["../data", "../../outside"])
def test_report_run_id_cannot_replace_other_folders(
    run_id: str, tmp_path: Path, panels: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.backtest import report

    monkeypatch.setattr(report, "_plots", lambda *a, **k: [])
    wd, outside = tmp_path / "work", tmp_path / "outside"
    write_panel(panels[0], wd)
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="run_id"):
        report.write_report(_backtest_result(run_id), wd, None, NO_STRESS)
    assert _pools(wd) == sorted(panels[0].meta["pool_id"])
    assert (outside / "keep.txt").read_text() == "mine"


def test_report_absolute_run_id_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.backtest import report

    monkeypatch.setattr(report, "_plots", lambda *a, **k: [])
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="run_id"):
        report.write_report(_backtest_result(str(victim)), tmp_path / "work", None,
                            NO_STRESS)
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]


def test_report_with_plain_run_id_lands_in_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.backtest import report

    monkeypatch.setattr(report, "_plots", lambda *a, **k: [])
    out = report.write_report(_backtest_result("run-1"), tmp_path, None, NO_STRESS)
    assert out == tmp_path / "reports" / "run-1"
    assert (out / "report.md").read_text().startswith("# Backtest run-1")


def _fill(tmp: Path) -> None:
    (tmp / "new.txt").write_text("new")


def test_atomic_dir_refuses_targets_outside_the_root(tmp_path: Path) -> None:
    wd, outside = tmp_path / "work", tmp_path / "outside"
    wd.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    for target in (outside, wd / ".." / "outside", wd, Path("/tmp") / "elsewhere"):
        with pytest.raises(ValueError, match="not inside the work directory"):
            atomic_dir(target, _fill, root=wd)
    (wd / "reports").symlink_to(outside, target_is_directory=True)  # symlinks are resolved
    with pytest.raises(ValueError, match="not inside the work directory"):
        atomic_dir(wd / "reports" / "run", _fill, root=wd)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    atomic_dir(wd / "data" / "x", _fill, root=wd)
    assert (wd / "data" / "x" / "new.txt").read_text() == "new"


# -- the write lock --------------------------------------------------------------------------
def test_lock_times_out_naming_the_holder(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            with workdir_lock(tmp_path, timeout=0.3):
                pass
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    with workdir_lock(tmp_path) as root:
        assert (root / LOCK_FILE).read_text().strip() == str(os.getpid())
        with workdir_lock(tmp_path):  # re-entrant in the holding thread
            pass
        t = threading.Thread(target=other_writer)
        t.start()
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], WorkdirLockedError)
    assert f"pid {os.getpid()}" in str(errors[0]) and str(tmp_path.resolve()) in str(errors[0])
    assert isinstance(errors[0], RuntimeError)  # the CLI prints RuntimeErrors without traceback


WRITER = """
    import os, sys, time
    from pathlib import Path
    from features.sources.simulator import simulate_market
    from features.sources.store import WorkdirLockedError, write_panel
    wd, seed, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    panel, _ = simulate_market(n_pools=2 + seed, days=2, seed=seed)
    real_replace = os.replace
    def slow_replace(src, dst):  # a slow filesystem widens the window between the renames
        time.sleep(0.02)
        real_replace(src, dst)
    os.replace = slow_replace
    go = wd.parent / "go"
    while not go.exists():
        time.sleep(0.01)
    try:
        for _ in range(n):
            write_panel(panel, wd)
    except WorkdirLockedError as exc:
        print("LOCKED", exc)
    else:
        print("OK")
"""


def test_concurrent_imports_take_turns(tmp_path: Path) -> None:
    wd = tmp_path / "work"
    procs = [_run(WRITER, str(wd), str(seed), "8") for seed in (0, 1)]
    time.sleep(0.5)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
        assert out.strip() == "OK", out + err
    assert len(_pools(wd)) in (2, 3)
    assert _leftovers(wd) == []


def test_writer_waits_then_fails_with_the_holders_pid(tmp_path: Path) -> None:
    wd = tmp_path / "work"
    (tmp_path / "go").touch()
    with workdir_lock(wd):
        p = _run(WRITER, str(wd), "0", "1", env={"LPA_LOCK_TIMEOUT": "1"})
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "Traceback" not in err, err
    assert out.startswith("LOCKED") and f"pid {os.getpid()}" in out
    assert not panel_dir(wd).exists() and _leftovers(wd) == []


# -- crash repair and stale temps ------------------------------------------------------------
def test_failed_second_rename_keeps_the_previous_panel(
    tmp_path: Path, panels: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_panel(panels[0], tmp_path)
    real, calls = os.replace, []

    def flaky(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk went away")
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="disk went away"):
        write_panel(panels[1], tmp_path)
    monkeypatch.setattr(os, "replace", real)
    assert _pools(tmp_path) == sorted(panels[0].meta["pool_id"])
    assert _leftovers(tmp_path) == []


CRASHER = """
    import os, sys
    from pathlib import Path
    from features.sources.simulator import simulate_market
    from features.sources.store import write_panel
    panel, _ = simulate_market(n_pools=2, days=2, seed=1)
    real, calls = os.replace, []
    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            os._exit(3)  # killed between the two renames: no handler runs
        real(src, dst)
    os.replace = crash_on_second
    write_panel(panel, Path(sys.argv[1]))
"""


def test_crash_between_renames_is_repaired_on_read(
    tmp_path: Path, panels: tuple[Any, Any],
) -> None:
    write_panel(panels[0], tmp_path, truth=pd.DataFrame({"pool_id": ["a"], "x": [1.0]}))
    p = _run(CRASHER, str(tmp_path))
    p.communicate(timeout=120)
    assert p.returncode == 3
    assert not panel_dir(tmp_path).exists()  # the state the crash left
    assert ".panel.old" in _leftovers(tmp_path)
    assert _pools(tmp_path) == sorted(panels[0].meta["pool_id"])  # read repairs
    assert read_truth(tmp_path) is not None
    assert [n for n in _leftovers(tmp_path) if not n.startswith(".panel.tmp-")] == []
    write_panel(panels[1], tmp_path)  # the next write drops the dead writer's temp
    assert _leftovers(tmp_path) == []
    assert _pools(tmp_path) == sorted(panels[1].meta["pool_id"])


def test_recover_dir_drops_old_when_the_new_content_landed(tmp_path: Path) -> None:
    target = tmp_path / "features"
    (tmp_path / ".features.old").mkdir()
    target.mkdir()
    (target / "manifest.json").write_text("{}")
    recover_dir(target, root=tmp_path)
    assert not (tmp_path / ".features.old").exists() and (target / "manifest.json").exists()


def test_stale_temps_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "panel"
    dead = tmp_path / ".panel.tmp-999999999-abc"  # above any pid_max: not running
    old = tmp_path / f".panel.tmp-{os.getpid()}-old"
    legacy = tmp_path / ".panel.tmp-k2j3h4"  # earlier naming, no pid
    live = tmp_path / f".panel.tmp-{os.getpid()}-live"
    for d in (dead, old, legacy, live):
        d.mkdir()
        (d / "part.parquet").write_text("x")
    two_hours_ago = time.time() - 7200
    for d in (old, legacy):
        os.utime(d, (two_hours_ago, two_hours_ago))
    removed = clean_stale_temps(target)
    assert sorted(removed) == sorted([dead, old, legacy])
    assert live.exists() and not dead.exists()
