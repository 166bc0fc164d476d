"""The published 19-country calibrations (docs/model.md 1.3): full equilibrium solves.

The baseline solve from slightly perturbed published prices is not marked slow: it is the
suite's (and CI's) end-to-end check of the whole solver on the paper's world. The log
calibration and the solve from the author's initial prices are ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest

from hatrade import evaluate, solve_equilibrium
from hatrade.core.worlds import ek_world, published_household
from hatrade.data import INITIAL_BETA, load_calibration, load_initial_prices
from hatrade.data.published import published

PUBLISHED_BASELINE_BETA = published("beta.baseline").value


def perturbed(wages: np.ndarray) -> np.ndarray:
    """Wages times 1.01, 0.99, 1.01, ... (alternating signs)."""
    return np.asarray(wages) * (1.0 + 0.01 * (-1.0) ** np.arange(len(wages)))


def solve_calibration(name: str, wages, beta_guess: float):
    return solve_equilibrium(
        ek_world(name),
        published_household(name),
        solve_for="beta",
        R=1.01,
        wages=wages,
        beta_guess=beta_guess,
    )


def check_against_published(eq, name: str, market_residuals):
    cal = load_calibration(name)
    assert eq.converged and eq.residual < 1e-10
    assert eq.R == pytest.approx(1.01, abs=1e-15)
    assert abs(eq.beta / cal.beta - 1.0) < 1e-6, (eq.beta, cal.beta)
    rel_w = np.abs(eq.prices.w / cal.wages.to_numpy() - 1.0)
    assert rel_w.max() < 1e-4, dict(zip(cal.wages.index, rel_w))
    r = market_residuals(eq)
    assert abs(r["goods"][0]) < 1e-8, r  # Walras: the dropped market (AUS) clears too
    A = eq.aggregates["A"]
    np.testing.assert_allclose(
        eq.net_exports(), -(eq.R - 1) * A, atol=1e-8 * eq.aggregates["Y"].max()
    )


@pytest.fixture(scope="module")
def baseline_eq():
    cal = load_calibration("baseline")
    return solve_calibration("baseline", perturbed(cal.wages.to_numpy()), beta_guess=0.93)


def test_published_beta_constant():
    assert load_calibration("baseline").beta == PUBLISHED_BASELINE_BETA


def test_baseline_reproduces_published_equilibrium(baseline_eq, market_residuals):
    """beta = 0.9293630... (relative error < 1e-6), wages within 1e-4 of the published."""
    check_against_published(baseline_eq, "baseline", market_residuals)
    assert abs(baseline_eq.beta / PUBLISHED_BASELINE_BETA - 1.0) < 1e-6
    assert baseline_eq.world.countries[0] == "AUS" and baseline_eq.world.M == 19


def test_published_baseline_prices_clear_markets(baseline_eq, market_residuals):
    """Households at the published prices: every market clears to ~1e-5."""
    cal = load_calibration("baseline")
    ev = evaluate(
        baseline_eq.world,
        baseline_eq.household,
        wages=cal.wages.to_numpy(),
        R=1.01,
        beta=cal.beta,
        state=baseline_eq.state,
    )
    r = market_residuals(ev)
    assert np.abs(r["goods"]).max() < 1e-5, r
    assert abs(r["bonds"][0]) < 1e-5, r
    np.testing.assert_allclose(ev.lam.sum(axis=(1, 2)), 1.0, atol=1e-12)


@pytest.mark.slow
def test_log_calibration_reproduces_published_equilibrium(market_residuals):
    cal = load_calibration("log")
    eq = solve_calibration("log", perturbed(cal.wages.to_numpy()), beta_guess=0.93)
    check_against_published(eq, "log", market_residuals)
    ev = evaluate(
        eq.world, eq.household, wages=cal.wages.to_numpy(), R=1.01, beta=cal.beta, state=eq.state
    )
    r = market_residuals(ev)
    assert np.abs(r["goods"]).max() < 1e-5 and abs(r["bonds"][0]) < 1e-5, r


@pytest.mark.slow
def test_baseline_from_initial_prices(market_residuals):
    """The author's starting point (initial-prices.csv, beta 0.93) reaches the same numbers."""
    eq = solve_calibration("baseline", load_initial_prices().to_numpy(), beta_guess=INITIAL_BETA)
    check_against_published(eq, "baseline", market_residuals)
