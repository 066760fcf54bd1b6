"""Dependencies point one way: pipelines -> models -> features."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"features": {"features"}, "models": {"features", "models"},
           "pipelines": {"features", "models", "pipelines"}}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_respect_layers(package: str) -> None:
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top in ALLOWED and top not in ALLOWED[package]:
                    bad.append(f"{path.relative_to(ROOT)} imports {n}")
    assert not bad, bad
