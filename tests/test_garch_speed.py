"""The compiled GARCH(1,1) fit and forecast reproduce the ``arch`` fit and the Python loop.

References: ``garch_forecast_reference`` is the pure-Python variance recursion garch_forecast ran
before (models/garch.py as of commit 97b2a53), and ``garch_params_arch`` is the ``arch``
package's fit of the same model. Stated tolerances:

- forecast: |new - reference| <= 1e-12 max|reference|, identical NaN patterns;
- likelihood: our objective equals arch's log-likelihood to 1e-12 relative at any parameters;
- fit: log-likelihood at our optimum >= arch's - 1e-6 |loglik|, and the annualised forecasts
  with both parameter sets agree to 1e-3 relative, on simulated GARCH series, i.i.d. normal
  returns and the real pools' daily and hourly log returns.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from models.garch import (
    MAX_FIT_ROWS,
    MAX_PERSISTENCE,
    _Likelihood,
    _mle,
    garch_forecast,
    garch_forecast_reference,
    garch_loglik,
    garch_params,
    garch_params_arch,
)

SHARED = Path(os.environ.get("LPA_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
DAILY, MINUTE = SHARED / "uniswap-v3-daily", SHARED / "demeter-minute"
H, PPY = 24, 8760.0
LL_RTOL, FORECAST_RTOL = 1e-6, 1e-3




def _simulate(n: int, mu: float, omega: float, alpha: float, beta: float,
              rng: np.random.Generator) -> np.ndarray:
    """A GARCH(1,1) return path started at the variance's level."""
    z = rng.standard_normal(n)
    r, s2 = np.empty(n), omega / (1 - alpha - beta)
    for t in range(n):
        r[t] = mu + np.sqrt(s2) * z[t]
        s2 = omega + alpha * (r[t] - mu) ** 2 + beta * s2
    return r


def _scaled(returns: np.ndarray) -> np.ndarray:
    """The sample both fits read, scaled to unit standard deviation."""
    r = returns[np.isfinite(returns)][-MAX_FIT_ROWS:]
    return r * (1.0 / float(np.std(r)))


def _arch_fit(y: np.ndarray):  # type: ignore[no-untyped-def]
    from arch import arch_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arch_model(y, mean="Constant", vol="GARCH", p=1, q=1, rescale=False).fit(
            disp="off", show_warning=False, options={"maxiter": 300})


def _real_series() -> list[tuple[str, np.ndarray]]:
    """Log returns of the real pools' close price: daily (8 pools) and hourly (1 pool)."""
    from features.sources.importer import import_exports

    out = []
    for path, fmt, freq in ((DAILY, "uniswap-v3-subgraph", None),
                            (MINUTE, "demeter-minute", "1h")):
        if not path.exists():
            continue
        panel, _ = import_exports([path], fmt, freq=freq)
        for pool, g in panel.frame.sort_values("timestamp").groupby("pool_id"):
            close = g["close"].to_numpy(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append((f"{fmt}:{pool}", np.diff(np.log(np.where(close > 0, close,
                                                                     np.nan)))))
    return out


def _cases() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(20240611)
    sims = [(f"garch{i}", _simulate(int(n), 2e-4, 2e-6, a, b, rng))
            for i, (n, a, b) in enumerate([(3000, 0.05, 0.93), (3000, 0.15, 0.8),
                                           (2000, 0.3, 0.5), (1000, 0.08, 0.9),
                                           (500, 0.1, 0.6), (4000, 0.02, 0.97)])]
    iid = [(f"iid{i}", 0.01 * rng.standard_normal(n)) for i, n in enumerate([60, 400, 3000])]
    return sims + iid


CASES = _cases()
REAL = _real_series()


def test_forecast_matches_the_python_recursion() -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        n = int(rng.integers(1, 2000))
        ret = 0.01 * rng.standard_normal(n) * np.exp(rng.standard_normal(n))
        ret[rng.random(n) < 0.1] = np.nan
        ret[rng.random(n) < 0.005] = np.inf
        a = rng.uniform(0, 0.3)
        params = {"mu": rng.normal(0, 1e-3), "omega": rng.uniform(1e-7, 1e-4), "alpha": a,
                  "beta": rng.uniform(0, MAX_PERSISTENCE - a)}
        for init in (rng.uniform(1e-6, 1e-3), np.nan, 0.0, -1.0, np.inf):
            h = int(rng.integers(1, 200))
            new = garch_forecast(ret, init, params, h, PPY)
            old = garch_forecast_reference(ret, init, params, h, PPY)
            np.testing.assert_array_equal(np.isnan(new), np.isnan(old), err_msg=f"{trial}")
            ok = np.isfinite(old)
            assert np.max(np.abs(new[ok] - old[ok]), initial=0.0) <= 1e-12 * np.max(
                np.abs(old[ok]), initial=0.0), (trial, init)


def test_forecast_of_an_empty_series_is_empty() -> None:
    p = {"mu": 0.0, "omega": 1e-6, "alpha": 0.1, "beta": 0.8}
    assert garch_forecast(np.array([]), np.nan, p, H, PPY).shape == (0,)


@pytest.mark.parametrize("name,returns", CASES[:4] + REAL[:2], ids=lambda v: str(v)[:20])
def test_likelihood_is_arch_s(name: str, returns: np.ndarray) -> None:
    from arch import arch_model

    y = _scaled(returns)
    lik = _Likelihood(y)
    model = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
    for x in ([0.01, 0.05, 0.1, 0.85], [-0.02, 0.3, 0.0, 0.6], [0.0, 0.9, 0.05, 0.0],
              [0.0, 1e-9, 0.0, 0.0], [0.0, 1e9, 0.5, 0.5], list(lik.start())):
        ref = model.fix(x).loglikelihood
        assert -lik.value(np.array(x)) == pytest.approx(ref, rel=1e-12), (name, x)


@pytest.mark.parametrize("x", [[0.01, 0.05, 0.1, 0.85], [-0.02, 0.3, 0.2, 0.6],
                               [0.0, 1e-9, 0.0, 0.0], [0.0, 1e8, 0.5, 0.3]],
                         ids=["interior", "high persistence", "floor", "ceiling"])
def test_gradient_matches_finite_differences(x: list[float]) -> None:
    y = _scaled(CASES[0][1])
    lik = _Likelihood(y)
    x0 = np.array(x)
    f, g = lik.value_grad(x0)
    assert f == pytest.approx(lik.value(x0), rel=1e-14)
    for i in range(4):
        step = 1e-6 * max(abs(x0[i]), 1e-3)
        up, down = x0.copy(), x0.copy()
        up[i] += step
        down[i] -= step
        fd = (lik.value(up) - lik.value(down)) / (2 * step)
        assert g[i] == pytest.approx(fd, rel=1e-5, abs=1e-6 * max(abs(f), 1.0)), (x, i)


@pytest.mark.parametrize("name,returns", CASES + REAL, ids=lambda v: str(v)[:20])
def test_fit_matches_arch(name: str, returns: np.ndarray) -> None:
    y = _scaled(returns)
    x = _mle(y)
    assert x is not None
    ours = -_Likelihood(y).value(x)
    ref = _arch_fit(y).loglikelihood
    assert ours >= ref - LL_RTOL * abs(ref), (name, ours, ref)

    new, old = garch_params(returns), garch_params_arch(returns)
    assert new is not None and old is not None
    assert garch_loglik(returns, new) >= garch_loglik(returns, old) - LL_RTOL * abs(ref)
    assert new["alpha"] + new["beta"] <= MAX_PERSISTENCE + 1e-15
    init = float(np.nanvar(returns))
    f_new = garch_forecast(returns, init, new, H, PPY)
    f_old = garch_forecast(returns, init, old, H, PPY)
    np.testing.assert_allclose(f_new, f_old, rtol=FORECAST_RTOL)


def test_simulated_parameters_are_recovered() -> None:
    rng = np.random.default_rng(5)
    omega, alpha, beta = 1e-6, 0.1, 0.85
    p = garch_params(_simulate(3000, 0.0, omega, alpha, beta, rng))
    assert p is not None
    assert abs(p["alpha"] - alpha) < 0.05 and abs(p["beta"] - beta) < 0.08
    level = p["omega"] / (1 - p["alpha"] - p["beta"])
    assert level == pytest.approx(omega / (1 - alpha - beta), rel=0.3)


def test_persistence_is_capped() -> None:
    # a variance that only trends has alpha + beta at the constraint alpha + beta <= 1
    rng = np.random.default_rng(3)
    r = rng.standard_normal(1500) * np.exp(np.linspace(-3, 3, 1500))
    y = _scaled(r)
    x = _mle(y)
    assert x is not None and x[2] + x[3] > MAX_PERSISTENCE
    p = garch_params(r)
    assert p is not None and p["alpha"] + p["beta"] == pytest.approx(MAX_PERSISTENCE)
    assert p["alpha"] / p["beta"] == pytest.approx(x[2] / x[3])


@pytest.mark.parametrize("returns", [np.full(200, 0.5), np.zeros(300), np.full(100, np.nan),
                                     np.r_[0.01 * np.ones(49), np.nan, np.inf], np.array([])],
                         ids=["constant", "zero", "all NaN", "49 finite", "empty"])
def test_no_fit_where_arch_has_none(returns: np.ndarray) -> None:
    assert garch_params(returns) is None and garch_params_arch(returns) is None
    assert np.isnan(garch_loglik(returns, {"mu": 0, "omega": 1, "alpha": 0, "beta": 0}))


def test_fit_reads_the_last_finite_returns_only() -> None:
    rng = np.random.default_rng(11)
    r = _simulate(MAX_FIT_ROWS + 500, 0.0, 1e-6, 0.1, 0.8, rng)
    holes = r.copy()
    holes[::7] = np.nan
    tail = holes[np.isfinite(holes)][-MAX_FIT_ROWS:]
    assert garch_params(holes) == garch_params(tail)
