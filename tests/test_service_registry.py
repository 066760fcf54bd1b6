"""Registry outages versus "no champion": the service keeps its loaded models and says so.

A real local MLflow store holds trained champions; an outage is a tracking server address on
loopback where nothing listens (no retries, so it fails at once).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient

from features.build import build_features, write_features
from features.sources.simulator import simulate_market
from models.registry import (
    ALIAS,
    RegistryUnavailableError,
    champion_versions,
    load_champion,
    registered_name,
)
from pipelines.config import tracking_uri
from pipelines.service.app import create_app, reload_state
from pipelines.service.settings import ServiceSettings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.train import TrainConfig, train

    wd = tmp_path_factory.mktemp("svc-registry")
    panel, _ = simulate_market(n_pools=4, days=30, seed=11)
    write_features(build_features(panel), wd)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = TrainConfig.model_validate({"models": ["baseline"], "n_folds": 2})
        train(wd, cfg, progress=False)
    _reset_mlflow_globals()  # training points MLflow's globals (and env) at its store
    return wd


def _reset_mlflow_globals() -> None:
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: back to the default
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture
def workdir(trained: Path, tmp_path: Path) -> Path:
    wd = tmp_path / "wd"
    shutil.copytree(trained, wd)
    return wd


def _outage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")


def test_outage_raises_while_missing_models_are_none(workdir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    versions = champion_versions(tracking_uri(workdir))
    assert all(v is not None for v in versions.values())
    empty = f"sqlite:///{workdir / 'empty.db'}"
    assert champion_versions(empty) == {t: None for t in versions}
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(workdir),
                                 registry_uri=tracking_uri(workdir))
    client.delete_registered_model_alias(registered_name("stress"), ALIAS)
    assert champion_versions(tracking_uri(workdir))["stress"] is None
    _outage(monkeypatch)
    with pytest.raises(RegistryUnavailableError, match="unreachable"):
        champion_versions(tracking_uri(workdir))


def test_outage_keeps_serving_the_loaded_champions(workdir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(ServiceSettings(workdir=workdir, use_registry=True, reload_interval_s=3600))
    with TestClient(app) as c:
        before = c.get("/readyz").json()
        assert before["ready"] and not before["degraded"]
        assert before["registry"]["reachable"] is True
        assert all(v.startswith("lpa-") for v in before["model_versions"].values())
        pools = [p["pool_id"] for p in c.get("/v1/pools").json()["pools"]]

        _outage(monkeypatch)
        assert reload_state(app) is False
        ready = c.get("/readyz")
        body = ready.json()
        assert ready.status_code == 200 and body["ready"] and body["degraded"]
        assert body["model_versions"] == before["model_versions"]  # not downgraded
        assert body["registry"]["reachable"] is False and body["registry"]["failures"] == 1
        assert "unreachable" in body["registry"]["error"]
        assert "127.0.0.1" not in ready.text  # the registry address is not published
        metrics = c.get("/metrics").text
        assert "lpa_registry_up 0.0" in metrics
        assert "lpa_registry_failures_total 1.0" in metrics
        r = c.post("/v1/recommendations", json={"capital_usd": 1e6, "pools": pools})
        assert r.status_code == 200
        assert r.json()["model_versions"] == before["model_versions"]

        monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the registry is back
        reload_state(app)
        body = c.get("/readyz").json()
        assert body["registry"]["reachable"] is True and not body["degraded"]
        assert "lpa_registry_up 1.0" in c.get("/metrics").text


def test_outage_at_start_is_not_ready_instead_of_baselines(workdir: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    _outage(monkeypatch)
    with TestClient(create_app(ServiceSettings(workdir=workdir, use_registry=True))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and not r.json()["ready"]
        assert "registry unreachable" in r.json()["reason"]
        assert "127.0.0.1" not in r.text
        assert c.get("/v1/pools").status_code == 503
        assert "lpa_registry_up 0.0" in c.get("/metrics").text


def test_removed_alias_is_a_deliberate_switch_to_baselines(workdir: Path) -> None:
    app = create_app(ServiceSettings(workdir=workdir, use_registry=True, reload_interval_s=3600))
    with TestClient(app) as c:
        assert c.get("/readyz").json()["model_versions"]["stress"].startswith("lpa-stress")
        uri = tracking_uri(workdir)
        mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).delete_registered_model_alias(
            registered_name("stress"), ALIAS)
        assert reload_state(app) is True
        body = c.get("/readyz").json()
        assert body["model_versions"]["stress"] == "baseline"
        assert body["registry"]["reachable"] is True and not body["degraded"]


def test_champion_loads_the_version_read_not_the_alias_again(workdir: Path) -> None:
    uri = tracking_uri(workdir)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = registered_name("fee_yield")
    v1 = client.get_model_version_by_alias(name, ALIAS)
    source = client.get_model_version_download_uri(name, v1.version)
    v2 = client.create_model_version(name, source, run_id=v1.run_id, tags={"kind": "moved"})
    client.set_registered_model_alias(name, ALIAS, v2.version)  # the alias moved after a read
    champ = load_champion("fee_yield", uri, version=str(v1.version))
    assert champ.version == str(v1.version) and champ.kind == v1.tags["kind"]
    assert load_champion("fee_yield", uri).version == str(v2.version)


def test_loading_champions_leaves_mlflow_global_uris_alone(workdir: Path) -> None:
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, which would redirect every
    # later tracking_uri() of the process; the service must touch neither
    sentinel = f"sqlite:///{workdir / 'elsewhere.db'}"
    mlflow.set_tracking_uri(sentinel)
    mlflow.set_registry_uri(sentinel)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    try:
        app = create_app(ServiceSettings(workdir=workdir, use_registry=True))
        with TestClient(app) as c:
            assert all(v.startswith("lpa-")
                       for v in c.get("/readyz").json()["model_versions"].values())
            reload_state(app)
        assert mlflow.get_tracking_uri() == sentinel
        assert mlflow.get_registry_uri() == sentinel
        assert "MLFLOW_TRACKING_URI" not in os.environ
        assert "MLFLOW_REGISTRY_URI" not in os.environ
    finally:
        _reset_mlflow_globals()
