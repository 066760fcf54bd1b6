"""The simulator gives as many pools as asked, past its distinct pairs x venues x chains."""

from __future__ import annotations

from features.build import build_features
from features.sources._sim_market import pool_universe
from features.sources.simulator import simulate_market


def test_more_pools_than_the_distinct_universe_are_further_deployments() -> None:
    distinct = len(pool_universe(2_000))  # every pair x venue x chain, each once
    n = distinct + 40
    panel, truth = simulate_market(n_pools=n, days=2, seed=1)
    ids = panel.meta["pool_id"]
    assert ids.nunique() == n and panel.frame["pool_id"].nunique() == n
    assert truth["pool_id"].nunique() == n
    copies = ids[ids.str.endswith("#2")]
    assert len(copies) == 40
    # a further deployment has its original's tokens, venue and chain
    meta = panel.meta.set_index("pool_id")
    for c in copies:
        assert meta.loc[c].equals(meta.loc[c.removesuffix("#2")])


def test_pools_within_the_universe_are_unchanged() -> None:
    panel, _ = simulate_market(n_pools=30, days=2, seed=1)
    assert sorted(panel.meta["pool_id"]) == sorted(s.pool_id for s in pool_universe(30))


def test_features_build_on_copied_pools() -> None:
    n = len(pool_universe(2_000)) + 3
    panel, _ = simulate_market(n_pools=n, days=3, seed=2, freq="1d")
    fs = build_features(panel)
    assert fs.features["pool_id"].nunique() == n
