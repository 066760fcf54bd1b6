"""Service hygiene: bounded metric labels, the API key scheme, no paths published, typed
responses on every route, and the command-line checks of pool lists and ports."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipelines.service import deps
from pipelines.service.app import check_port, create_app
from pipelines.service.recommend import parse_pool_ids, recommend_from_workdir
from pipelines.service.settings import ServiceSettings

_ABS_PATH = re.compile(r"(?<![\w:/.<>-])/(?:tmp|home|root|work|var|usr)\b")


@pytest.fixture(scope="module")
def workdir(sim_workdir: Callable[..., Path]) -> Path:
    return sim_workdir("svc-hygiene", n_pools=4, days=20, seed=3)


def _app(workdir: Path, **kw: Any) -> TestClient:
    return TestClient(create_app(ServiceSettings(workdir=workdir, use_registry=False, **kw)))


def _request_lines(metrics: str) -> list[str]:
    return [line for line in metrics.splitlines() if line.startswith("lpa_requests_total{")]


def test_metric_labels_are_bounded(workdir: Path) -> None:
    with _app(workdir) as c:
        for i in range(5):
            c.request(f"BREW{i}", "/v1/pools")
            c.get(f"/random/{i}/path")
        c.get("/v1/pools/some-unknown-pool/forecast")
        lines = _request_lines(c.get("/metrics").text)
    methods = {m.group(1) for x in lines if (m := re.search(r'method="([^"]*)"', x))}
    routes = {m.group(1) for x in lines if (m := re.search(r'route="([^"]*)"', x))}
    assert methods <= {"GET", "POST", "other"} and "other" in methods
    assert "unmatched" in routes and not any(r.startswith("/random") for r in routes)
    assert "/v1/pools/{pool_id}/forecast" in routes
    assert not any("some-unknown-pool" in r for r in routes)


def test_api_key_scheme_in_openapi_and_compared_in_constant_time(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = deps.secrets.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.secrets, "compare_digest", spy)
    with _app(workdir, api_key="s3cret") as c:
        schema = c.get("/openapi.json").json()
        schemes = schema["components"]["securitySchemes"]
        assert any(s["type"] == "apiKey" and s["in"] == "header" and s["name"] == "X-API-Key"
                   for s in schemes.values())
        assert schema["paths"]["/v1/recommendations"]["post"]["security"]
        assert c.get("/v1/pools", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/v1/pools", headers={"X-API-Key": "s3cr\u00e9t".encode()}).status_code == 401
        assert c.get("/v1/pools", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200
    assert (b"s3cret", b"s3cret") in calls and len(calls) == 3


def test_readyz_publishes_no_absolute_paths(workdir: Path, tmp_path: Path) -> None:
    with _app(tmp_path / "empty") as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "lpa features build" in r.json()["reason"]
        assert str(tmp_path) not in r.text and not _ABS_PATH.search(r.text), r.text
    with _app(workdir) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and str(workdir) not in r.text
        assert not _ABS_PATH.search(r.text), r.text


def test_every_route_declares_a_typed_response(workdir: Path) -> None:
    with _app(workdir) as c:
        paths = c.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/healthz", "/readyz", "/metrics", "/v1/pools",
                          "/v1/pools/{pool_id}/forecast", "/v1/recommendations",
                          "/v1/routes"}
    for path, ops in paths.items():
        for method, op in ops.items():
            content = op["responses"]["200"]["content"]
            if path == "/metrics":  # Prometheus text format, declared as such
                assert any(k.startswith("text/plain") for k in content), content
                continue
            ref = content["application/json"]["schema"].get("$ref", "")
            assert ref.startswith("#/components/schemas/"), (method, path, content)
    err = paths["/v1/recommendations"]["post"]["responses"]["422"]["content"]
    assert err["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


@pytest.mark.parametrize("text", [",,,", " , ", ","])
def test_pool_option_without_ids_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="names no pool id"):
        parse_pool_ids(text)


def test_pool_option_parsing() -> None:
    assert parse_pool_ids("") is None
    assert parse_pool_ids(" a, b,,") == ["a", "b"]


def test_empty_pool_list_is_not_all_pools(workdir: Path) -> None:
    with pytest.raises(ValueError, match="no pool ids"):
        recommend_from_workdir(workdir, [], 1e6)


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_port_outside_tcp_range_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="1-65535"):
        check_port(port)


def test_serve_with_a_bad_port_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    from pipelines.cli import app

    res = CliRunner().invoke(app, ["serve", "--port", "99999", "--workdir", str(tmp_path)])
    assert res.exit_code == 1
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "1-65535" in text and "Traceback" not in text
