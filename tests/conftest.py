"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SimWorkdir = Callable[..., Path]


@pytest.fixture(scope="session")
def sim_workdir(tmp_path_factory: pytest.TempPathFactory) -> SimWorkdir:
    """A factory of work directories holding the features of a simulated market.

    ``sim_workdir(name, n_pools=, days=, seed=, panel=False)`` simulates the market, writes its
    feature table (and, with ``panel=True``, the panel and its ground truth) to a new temporary
    folder and returns that folder.
    """

    def make(name: str, *, n_pools: int, days: int, seed: int, panel: bool = False) -> Path:
        # imported here: test modules that never ask for a work directory do not load them
        from features.build import build_features, write_features
        from features.sources.simulator import simulate_market
        from features.sources.store import write_panel

        wd = tmp_path_factory.mktemp(name)
        market, truth = simulate_market(n_pools=n_pools, days=days, seed=seed)
        if panel:
            write_panel(market, wd, truth)
        write_features(build_features(market), wd)
        return wd

    return make
