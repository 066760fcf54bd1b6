"""Optuna on a real PostgreSQL: two `lpa tune` worker processes share one study, which resumes.

The test starts a throwaway PostgreSQL server (initdb + pg_ctl in a temporary folder, a free
loopback port). PostgreSQL refuses to run as root, so under root the server runs as the
`postgres` system user. Skipped only where the server binaries cannot be found.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest

from features.build import build_features, write_features
from features.sources.simulator import simulate_market
from pipelines.config import configure_mlflow
from pipelines.tune import sampler_seed, storage_url, tune


def _pg_bindir() -> Path | None:
    """Folder of initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    """The command as the `postgres` user when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found under "
                    "/usr/lib/postgresql/*/bin or on PATH; install the postgresql package")
    if os.geteuid() == 0:
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` system user to run the "
                        "server as (PostgreSQL refuses root)")
    root = Path(tempfile.mkdtemp(prefix="lpa-pg-"))
    if os.geteuid() == 0:
        os.chown(root, pg.pw_uid, pg.pw_gid)
    data, port = root / "data", _free_port()
    subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                    "-A", "trust", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l",
                                            str(root / "server.log"), "-w", "-t", "60", "-o",
                                            opts, "start"]),
                           capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {start.stderr}\n{log}")
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                        "immediate", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("tune-pg")
    panel, _ = simulate_market(n_pools=3, days=21, seed=3)
    write_features(build_features(panel), wd)
    # one MLflow store made here, copied per worker: each worker logs to its own (what they
    # share is the Optuna study), and none spends its time creating the store's tables
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{wd / 'mlflow.db'}"
    try:
        configure_mlflow(wd, "lpa-tune")
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    for k in (0, 1):
        shutil.copy(wd / "mlflow.db", wd / f"mlflow-w{k}.db")
    return wd


def _worker(workdir: Path, url: str, k: int) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / f'mlflow-w{k}.db'}",
           "LPA_THREADS": "1"}
    env.pop("LPA_OPTUNA_STORAGE", None)
    cmd = [sys.executable, "-m", "pipelines.cli", "tune", "-w", str(workdir), "--trials", "1",
           "--folds", "1", "--target", "volatility", "--study", "shared", "--storage", url,
           "--worker", str(k)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_two_worker_processes_share_one_study_that_resumes(
    postgres_url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the README's plain postgresql:// URL, with only psycopg 3 installed
    assert postgres_url.startswith("postgresql://")
    procs = [_worker(workdir, postgres_url, k) for k in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    study = optuna.load_study(study_name="shared", storage=storage_url(postgres_url))
    trials = study.trials
    assert sorted(t.user_attrs.get("worker") for t in trials) == ["0", "1"]
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
               for t in trials)
    # different sampler seeds: the workers' first (random start-up) candidates differ
    assert trials[0].params != trials[1].params
    # the study resumes: a worker started later adds to the same two trials
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    res = tune(workdir, "lightgbm", "volatility", trials=1, storage=postgres_url,
               study_name="shared", progress=False, n_folds=1, worker=0, threads=1)
    assert res.n_trials == 3
    again = optuna.load_study(study_name="shared", storage=storage_url(postgres_url)).trials
    assert again[2].user_attrs["worker"] == "0"
    assert again[2].params not in (again[0].params, again[1].params)  # a new candidate
    done = [t.value for t in again if t.state == optuna.trial.TrialState.COMPLETE]
    assert res.best_value == min(done)


def test_storage_urls_and_sampler_seeds() -> None:
    assert storage_url("postgresql://u:pw@db:5432/optuna") == \
        "postgresql+psycopg://u:pw@db:5432/optuna"
    assert storage_url("postgres://db/optuna") == "postgresql+psycopg://db/optuna"
    assert storage_url("postgresql+psycopg2://db/optuna") == "postgresql+psycopg2://db/optuna"
    assert storage_url("sqlite:///x.db") == "sqlite:///x.db"
    seeds = {sampler_seed(7, w, shared=True) for w in range(4)}
    assert len(seeds) == 4  # one per worker
    assert sampler_seed(7, None, shared=False) == sampler_seed(7, 0, shared=True)
    assert sampler_seed(7, None, shared=True) == sampler_seed(7, os.getpid(), shared=True)
    # a resumed study (trials already there) draws from a new seed; the same state repeats
    assert sampler_seed(7, 0, False, existing=5) != sampler_seed(7, 0, False, existing=0)
    assert sampler_seed(7, 0, False, existing=5) == sampler_seed(7, 0, False, existing=5)
