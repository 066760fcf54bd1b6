"""Token-level pieces of the simulator: pool universe, regimes, stress events, USD prices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOURS_PER_YEAR = 24 * 365

# symbol: (start USD price, annual volatility, market beta)
VOLATILE = {
    "WETH": (2000.0, 0.70, 1.0), "WBTC": (30000.0, 0.55, 0.8), "UNI": (6.0, 1.00, 1.2),
    "LINK": (7.0, 0.95, 1.1), "AAVE": (80.0, 1.00, 1.2), "MKR": (1200.0, 0.90, 1.0),
    "CRV": (0.6, 1.20, 1.3), "LDO": (2.0, 1.10, 1.3), "ARB": (1.1, 1.05, 1.2),
    "OP": (1.5, 1.05, 1.2),
}
STABLE = ("USDC", "USDT", "DAI")
TOKENS = list(VOLATILE) + list(STABLE)

# (token0, token1) in order of importance; the universe is filled round by round so that the
# first pools cover many tokens and later rounds add fee tiers / protocols of the same pair.
PAIRS = [
    ("WETH", "USDC"), ("WBTC", "WETH"), ("WETH", "USDT"), ("USDC", "USDT"), ("WBTC", "USDC"),
    ("UNI", "WETH"), ("LINK", "WETH"), ("DAI", "USDC"), ("AAVE", "WETH"), ("WETH", "DAI"),
    ("MKR", "WETH"), ("CRV", "WETH"), ("LDO", "WETH"), ("DAI", "USDT"), ("ARB", "WETH"),
    ("OP", "WETH"), ("WBTC", "USDT"), ("LINK", "USDC"), ("UNI", "USDC"), ("ARB", "USDC"),
]
VOLATILE_VENUES = [("uniswap_v3", 0.0005), ("uniswap_v3", 0.003), ("uniswap_v2", 0.003),
                   ("uniswap_v3", 0.01)]
STABLE_VENUES = [("stableswap", 0.0004), ("uniswap_v3", 0.0001), ("uniswap_v2", 0.003)]
CHAINS = ["ethereum", "arbitrum", "optimism", "base", "polygon"]
_SHORT = {"uniswap_v2": "v2", "uniswap_v3": "v3", "stableswap": "ss"}


@dataclass(frozen=True)
class PoolSpec:
    """One simulated pool."""

    pool_id: str
    protocol: str
    chain: str
    token0: str
    token1: str
    fee_tier: float
    pair: int


def pool_universe(n_pools: int) -> list[PoolSpec]:
    """Deterministic list of n pools: pairs x venues, then copies on other chains."""
    specs: list[PoolSpec] = []
    for chain in CHAINS * (1 + n_pools // 60):
        depth = max(len(VOLATILE_VENUES), len(STABLE_VENUES))
        for rnd in range(depth):
            for p, (t0, t1) in enumerate(PAIRS):
                venues = STABLE_VENUES if t0 in STABLE and t1 in STABLE else VOLATILE_VENUES
                if rnd >= len(venues):
                    continue
                proto, fee = venues[rnd]
                suffix = "" if chain == "ethereum" else f"@{chain}"
                pid = f"{_SHORT[proto]}-{t0}-{t1}-{fee * 100:g}%{suffix}"
                if any(s.pool_id == pid for s in specs):
                    continue
                specs.append(PoolSpec(pid, proto, chain, t0, t1, fee, p))
                if len(specs) == n_pools:
                    return specs
    return specs


def markov_regime(rng: np.random.Generator, n: int, p_enter: float, p_exit: float) -> np.ndarray:
    """Calm (0) / stress (1) two-state Markov chain of length n."""
    u = rng.random(n)
    out = np.zeros(n, dtype=np.int8)
    state = 0
    for t in range(n):
        if state == 0 and u[t] < p_enter:
            state = 1
        elif state == 1 and u[t] < p_exit:
            state = 0
        out[t] = state
    return out


@dataclass
class TokenEvents:
    """Per-token stress event paths on the hourly grid (hours x tokens)."""

    precursor: np.ndarray  # 0..1 ramp in the hours before an onset
    active: np.ndarray  # bool, event under way
    shock: np.ndarray  # log-price shock path added to the token (crash or depeg)


def token_events(
    rng: np.random.Generator, regime: np.ndarray, n_tokens: int, stable: np.ndarray,
    rate_per_day: float = 1 / 45,
) -> TokenEvents:
    """Draw token stress events with a precursor ramp, raised rate in market stress."""
    n = len(regime)
    pre = np.zeros((n, n_tokens))
    active = np.zeros((n, n_tokens), dtype=bool)
    shock = np.zeros((n, n_tokens))
    rate = rate_per_day / 24 * np.where(regime == 1, 4.0, 1.0)
    draws = rng.random((n, n_tokens))
    for k in range(n_tokens):
        candidates = np.flatnonzero(draws[:, k] < rate * (0.5 if stable[k] else 1.0))
        busy_until = -1
        for onset in candidates.tolist():
            lead = int(rng.integers(18, 73))
            dur = int(rng.integers(24, 97))
            if onset - lead <= busy_until or onset < 24:
                continue
            busy_until = onset + dur + 48
            a = onset - lead
            pre[a:onset, k] = np.maximum(pre[a:onset, k], np.linspace(0.1, 1.0, onset - a))
            end = min(n, onset + dur)
            active[onset:end, k] = True
            span = end - onset
            if stable[k]:
                depth = -rng.uniform(0.03, 0.12)
                hit = min(6, span)
                path = np.concatenate([np.linspace(0, depth, hit),
                                       np.linspace(depth, 0, span - hit + 1)[1:]])
                shock[onset:end, k] = np.log1p(path)
            else:
                drop = -rng.uniform(0.10, 0.35)
                hit = min(12, span)
                path = np.concatenate([np.linspace(0, drop, hit),
                                       np.linspace(drop, 0.7 * drop, span - hit + 1)[1:]])
                shock[onset:end, k] = path
                shock[end:, k] += 0.7 * drop  # a volatile token keeps most of its loss
    return TokenEvents(precursor=pre, active=active, shock=shock)


def token_prices(
    rng: np.random.Generator, regime: np.ndarray, events: TokenEvents,
    adjacency: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Hourly USD close prices (hours x tokens) and the per-token volatility multiplier."""
    n = len(regime)
    sym = TOKENS
    k = len(sym)
    stable = np.array([s in STABLE for s in sym])
    start = np.array([VOLATILE[s][0] if s in VOLATILE else 1.0 for s in sym])
    sigma = np.array([VOLATILE[s][1] if s in VOLATILE else 0.0 for s in sym])
    beta = np.array([VOLATILE[s][2] if s in VOLATILE else 0.0 for s in sym])
    h = np.sqrt(1 / HOURS_PER_YEAR)
    # volatility multiplier: market regime, own precursor/event, neighbours' events (contagion)
    mult = np.where(regime[:, None] == 1, 2.0, 1.0) * np.ones((1, k))
    own = 1 + 1.5 * events.precursor + 3.0 * events.active
    spill = 1 + 0.8 * (events.active.astype(float) @ adjacency).clip(0, 1)
    mult = mult * own * spill
    market = rng.standard_normal(n) * 0.6 * h
    idio = rng.standard_normal((n, k)) * h
    jumps = (rng.random((n, k)) < 1 / 500) * rng.standard_normal((n, k)) * 0.03
    vol_part = (beta * market[:, None] + np.sqrt(np.clip(1 - 0.36 * beta**2, 0.1, None))
                * sigma * idio) * mult
    rets = np.where(stable, 0.0, vol_part + jumps - 0.5 * (sigma * h * mult) ** 2)
    logp = np.cumsum(rets, axis=0) + events.shock
    peg_noise = rng.standard_normal((n, k)) * 0.0004
    logp = np.where(stable, events.shock + peg_noise, logp)
    return start * np.exp(logp), mult
