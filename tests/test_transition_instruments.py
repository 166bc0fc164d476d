"""Transitions with issue 18's policy instruments (a labor-income rebate of tariff revenue,
a labor-income tax, tariffs): the exact sequence-space Jacobian, the path, its budgets,
and the conventions (the old steady state has the baseline's instruments, a scenario's
hold from period 0 on).

One two-country world (n_a = 20, 2 x 2 income states) with all three instruments; T = 60
(its paths settle more slowly than the plain world's of tests/test_transition.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import transition_jacobian_and_fd
from hatrade.analysis.counterfactual import Scenario, apply_scenario
from hatrade.analysis.transition import run_transition
from hatrade.core.instruments import rebate_weights
from hatrade.core.params import Household, ParameterError, World
from hatrade.solve.equilibrium import solve_equilibrium
from hatrade.solve.transition import TransitionOptions
from hatrade.welfare.transition import transition_welfare

T = 60
TIGHT = TransitionOptions(tol=1e-11)
HH = Household(n_a=20, beta=0.93, n_perm=2, n_iid=2)


def _world(**instruments):
    return World(
        countries=("AAA", "BBB"),
        tfp=[1.0, 0.8],
        labor=[1.0, 0.5],
        d=[[1.0, 1.3], [1.2, 1.0]],
        tariffs=[[0.0, 0.1], [0.05, 0.0]],
        **instruments,
    )


def _solve(world):
    return solve_equilibrium(world, HH, solve_for="R", tol=1e-11, hh_tol=1e-12)


@pytest.fixture(scope="module")
def old():
    return _solve(_world(rebate="labor-income", labor_tax=[0.2, 0.1]))


@pytest.fixture(scope="module")
def cut(old):
    """A permanent 5% cut of AAA's import costs, instruments in place."""
    sc = Scenario(importer="AAA", trade_cost_change=-0.05)
    return run_transition(old, sc, periods=T, options=TIGHT, hh_tol=1e-12, tol=1e-11)


@pytest.fixture(scope="module")
def reform(old):
    """The instruments change at t = 0: AAA's labor tax up, tariff revenue to the poorest."""
    sc = Scenario(labor_tax={"AAA": 0.25}, rebate="group:bottom_20")
    return run_transition(old, sc, periods=T, options=TIGHT, hh_tol=1e-12, tol=1e-11)


def _fd_error(eq, Tn: int = 6):
    """Largest |J - finite differences| of the transition Jacobian at the steady state eq,
    and the largest |J|."""
    M = eq.world.M
    J, Jfd, prob = transition_jacobian_and_fd(eq, Tn)
    n = prob.layout.n
    assert prob.layout.tariffs and n == (M - 1) + (M if eq.world.financial == "autarky" else 1) + M
    return np.max(np.abs(J - Jfd)), np.max(np.abs(J))


def test_jacobian_with_instruments_equals_finite_differences(old, x64):
    err, size = _fd_error(old)
    assert err < 1e-7 * size


def test_jacobian_with_a_group_rebate_equals_finite_differences(x64):
    err, size = _fd_error(_solve(_world(rebate="group:bottom_20")))
    assert err < 1e-7 * size


def _steady_state(old, sc):
    """The new stationary equilibrium from solve_equilibrium (beta fixed at the old one)."""
    world = apply_scenario(old.world, sc)
    hh = old.household.replace(beta=old.beta)
    return solve_equilibrium(world, hh, solve_for="R", tol=1e-11, hh_tol=1e-12)


@pytest.mark.parametrize("which", ["cut", "reform"])
def test_path_converges_to_the_new_steady_state(old, cut, reform, which):
    tr = {"cut": cut, "reform": reform}[which]
    s = tr.solution
    assert tr.converged and tr.residual < 1e-11
    new = _steady_state(old, Scenario(**{k: v for k, v in tr.scenario.items() if k != "name"}))
    assert np.max(np.abs(new.prices.w - tr.new.prices.w)) < 1e-9
    gap = 1e-8 if which == "cut" else 1e-7  # the reform moves more (settles later)
    assert np.max(np.abs(s.w[-1] - new.prices.w)) < gap
    assert np.max(np.abs(s.R[-1] - new.prices.R)) < gap
    assert np.max(np.abs(s.T[-1] - new.prices.T)) < gap
    assert s.R[0, 0] == old.prices.R[0]
    assert np.max(np.abs(s.w[0] - old.prices.w)) > 1e-5  # it moves at t = 0


@pytest.mark.parametrize("which", ["cut", "reform"])
def test_tariff_revenue_and_labor_tax_budgets_balance_each_period(old, cut, reform, which):
    tr = {"cut": cut, "reform": reform}[which]
    s, out, world = tr.solution, tr.solution.outputs, tr.new.world
    inc = tr.new.income
    L = np.asarray(world.labor)[None]
    # the z-marginal of every period's distribution is the stationary one
    mu = np.asarray(old.lam).sum(axis=1)
    assert np.max(np.abs(mu - inc.dist[None])) < 1e-12
    assert np.max(np.abs(out.lam_end.sum(axis=1) - inc.dist[None])) < 1e-12
    assert np.max(np.abs(out.N - L)) < 1e-10 * np.max(L)
    # tariff revenue rebated (T_t r(z) to each household: T_t L sum_z mu r) = collected
    r = rebate_weights(world.rebate, inc.z, inc.dist)
    rebated = s.T * L * (inc.dist @ r)
    assert np.max(np.abs(rebated - out.G) / out.Y) < 1e-10
    if world.rebate == "labor-income":  # from each period's own distribution: N_t
        assert np.max(np.abs(s.T * out.N / (inc.dist @ inc.z) - out.G) / out.Y) < 1e-10
    # labor tax: collected tau w_t N_t, rebated tau w_t per household
    tau = np.asarray(world.labor_tax)[None]
    assert np.max(np.abs(tau * s.w * out.N - tau * s.w * L) / out.Y) < 1e-10
    assert np.max(np.abs(out.A.sum(axis=1) / out.Y.sum(axis=1))) < 1e-10  # bonds


def test_zero_shock_with_instruments_stays_at_the_steady_state(old):
    tr = run_transition(old, Scenario(), periods=T)
    assert tr.converged and tr.iterations == 0 and tr.new is old
    s = tr.solution
    assert np.max(np.abs(s.w - old.prices.w)) < 1e-10
    assert np.max(np.abs(s.R - old.prices.R)) < 1e-10
    assert np.max(np.abs(s.T - old.prices.T)) < 1e-10
    assert np.max(np.abs(s.outputs.G - old.aggregates["G"][None])) < 1e-10
    assert np.max(np.abs(tr.V0 - old.policies.V)) < 1e-10
    w = transition_welfare(tr, "AAA")
    assert np.max(np.abs(w.table["lambda_transition"] - 1.0)) < 1e-10
    assert w.summary["share_losers_transition"] == 0.0


def test_welfare_along_paths_with_instruments(cut, reform):
    w = transition_welfare(cut, "AAA").summary
    gt, gs = w["transition"]["mean_gain_percent"], w["steady_state"]["mean_gain_percent"]
    assert gt > 0 and abs(gt - gs) < 0.1 * abs(gs)  # a small cut: close to the steady state
    w = transition_welfare(reform, "AAA").summary
    q = w["transition"]["quintile_gain_percent"]
    assert np.isfinite(w["transition"]["mean_gain_percent"]) and all(map(np.isfinite, q.values()))
    g = w["transition"]["income_group_gain_percent"]
    assert g["bottom_20"] > g["top_20"]  # tariff revenue to the poorest, a higher labor tax
    assert 0.0 <= w["share_losers_transition"] <= 1.0


def test_instrument_changes_need_news_date_zero(old):
    with pytest.raises(ParameterError, match="news_date = 3 is not allowed with a change"):
        run_transition(old, Scenario(labor_tax={"AAA": 0.25}), periods=T, news_date=3)
    with pytest.raises(ParameterError, match="news_date = 3"):
        run_transition(old, Scenario(rebate="lump-sum"), periods=T, news_date=3)
