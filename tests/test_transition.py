"""Perfect-foresight transitions (issue 17): hatrade.analysis.transition, hatrade.solve
.transition, hatrade.core.fakenews / path, hatrade.welfare.transition.

Small worlds (2 countries, n_a = 20, 2 x 2 income states, T = 40) share module fixtures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import transition_jacobian_and_fd
from hatrade.analysis.counterfactual import Scenario
from hatrade.analysis.transition import PATHS_COLUMNS, run_transition
from hatrade.core.errors import EquilibriumError
from hatrade.core.params import Household, ParameterError, World
from hatrade.solve.equilibrium import solve_equilibrium
from hatrade.solve.path_jacobian import transition_jacobian
from hatrade.solve.transition import PathProblem, PathShocks, TransitionOptions
from hatrade.welfare.transition import transition_welfare

T = 40
SHOCK = Scenario(importer="AAA", trade_cost_change=-0.05)


def _world(financial="globalization"):
    return World(
        countries=("AAA", "BBB"),
        tfp=[1.0, 0.8],
        labor=[1.0, 0.5],
        d=[[1.0, 1.3], [1.2, 1.0]],
        financial=financial,
    )


@pytest.fixture(scope="module")
def old():
    hh = Household(n_a=20, beta=0.93, n_perm=2, n_iid=2)
    return solve_equilibrium(_world(), hh, solve_for="R", tol=1e-11, hh_tol=1e-12)


@pytest.fixture(scope="module")
def perm(old):
    return run_transition(old, SHOCK, periods=T, hh_tol=1e-12, tol=1e-11)


def test_zero_shock_stays_at_the_steady_state(old):
    tr = run_transition(old, Scenario(), periods=T)
    assert tr.converged and tr.iterations == 0
    s = tr.solution
    assert np.max(np.abs(s.w - old.prices.w)) < 1e-10
    assert np.max(np.abs(s.R - old.prices.R)) < 1e-10
    assert np.max(np.abs(s.outputs.M - old.aggregates["M"][None])) < 1e-10
    assert np.max(np.abs(s.outputs.A - old.aggregates["A"][None])) < 1e-10
    assert np.max(np.abs(tr.V0 - old.policies.V)) < 1e-10
    w = transition_welfare(tr, "AAA")
    assert np.max(np.abs(w.table["lambda_transition"] - 1.0)) < 1e-10
    assert w.summary["share_losers_transition"] == 0.0


def test_path_converges_and_ends_at_the_new_steady_state(old, perm):
    s = perm.solution
    assert perm.converged and perm.residual < 1e-8
    new = perm.new
    assert np.max(np.abs(s.w[-1] - new.prices.w)) < 1e-8
    assert np.max(np.abs(s.R[-1] - new.prices.R)) < 1e-8
    assert s.R[0, 0] == old.prices.R[0]  # the old return on assets carried into t = 0
    assert list(perm.paths.columns) == list(PATHS_COLUMNS)
    assert len(perm.paths) == T * 2
    assert np.allclose(s.w.mean(axis=1), 1.0, atol=1e-14)  # the numeraire every period


def test_accounting_along_the_path(perm):
    out = perm.solution.outputs
    bonds = out.A.sum(axis=1) / out.Y.sum(axis=1)
    assert np.max(np.abs(bonds)) < 1e-8  # every period's bond market clears
    nx = perm.paths.pivot(index="period", columns="country", values="net_exports").to_numpy()
    assert np.max(np.abs(nx.sum(axis=1))) < 1e-8 * out.Y.sum(axis=1).max()
    # net exports = change in net foreign assets net of interest: A'_t - R_t A_t
    R = perm.solution.R[:T]
    assert np.max(np.abs(nx - (out.A - R * out.A_held))) < 1e-12


def test_doubling_the_horizon_changes_nothing_at_t0(old, perm):
    long = run_transition(old, SHOCK, periods=2 * T, hh_tol=1e-12, tol=1e-11)
    a, b = perm.solution, long.solution
    assert np.max(np.abs(a.w[0] - b.w[0])) < 1e-6
    assert np.max(np.abs(a.R[1] - b.R[1])) < 1e-6
    ga = transition_welfare(perm, "AAA").summary["transition"]["mean_gain_percent"]
    gb = transition_welfare(long, "AAA").summary["transition"]["mean_gain_percent"]
    assert abs(ga - gb) < 1e-6 * 100


def test_transition_welfare_table_and_summary(perm):
    w = transition_welfare(perm, "AAA")
    tab = w.table
    assert len(tab) == 20 * 4
    assert np.isclose(tab["mass"].sum(), 1.0)
    ok = tab["defined_transition"]
    assert np.allclose(
        tab.loc[ok, "gain_transition_percent"], 100 * (tab.loc[ok, "lambda_transition"] - 1)
    )
    s = w.summary
    assert set(s["transition"]["quintile_gain_percent"]) == {"Q1", "Q2", "Q3", "Q4", "Q5"}
    assert 0.0 <= s["share_losers_transition"] <= 1.0
    # a small permanent cut: the path's gains are close to the steady-state ones
    gt, gs = s["transition"]["mean_gain_percent"], s["steady_state"]["mean_gain_percent"]
    assert gt > 0 and abs(gt - gs) < 0.1 * abs(gs)


def test_news_shock_differs_before_and_ends_at_the_same_steady_state(old, perm):
    news = run_transition(old, SHOCK, periods=T, news_date=5, hh_tol=1e-12, tol=1e-11)
    assert news.converged and news.new.prices.w[0] == perm.new.prices.w[0]
    a, b = perm.solution, news.solution
    assert np.max(np.abs(a.w[:5] - b.w[:5])) > 1e-6
    # settled (settle_tol 1e-6; later news settles later at a given T)
    assert np.max(np.abs(b.w[-1] - perm.new.prices.w)) < 1e-6
    assert np.max(np.abs(b.R[-1] - perm.new.prices.R)) < 1e-6


def test_linear_path_is_first_order(old):
    gaps = []
    tight = TransitionOptions(tol=1e-11)
    for x in (-0.1, -0.05):  # a temporary cut of AAA's import costs (periods 0-2)
        rows = dict(period=[0, 1, 2, 3], importer=["AAA"] * 4, exporter=["BBB"] * 4,
                    trade_cost_change=[x, x, x, 0.0])  # fmt: skip
        nl = run_transition(old, rows, periods=T, options=tight)
        lin = run_transition(old, rows, periods=T, linear=True)
        gaps.append(np.max(np.abs(nl.solution.w - lin.solution.w)))
    assert gaps[1] > 1e-9  # well above the solver's precision
    assert 3.0 < gaps[0] / gaps[1] < 5.0  # halving the shock quarters the gap


def test_path_table_gives_a_temporary_shock(old):
    rows = [dict(period=t, importer="AAA", exporter="BBB", trade_cost_change=-0.05) for t in (0, 1)]
    rows.append(dict(period=2, importer="AAA", exporter="BBB", trade_cost_change=0.0))
    tr = run_transition(old, pd.DataFrame(rows), periods=T)
    assert tr.new is old  # back to the old world
    s = tr.solution
    assert tr.converged and np.max(np.abs(s.w[-1] - old.prices.w)) < 1e-6
    assert np.max(np.abs(s.w[0] - old.prices.w)) > 1e-4


@pytest.mark.parametrize(
    "table, match",
    [
        (dict(period=[0, 2], country=["AAA", "AAA"], labor_change=[0.1, 0.1]), "missing"),
        (dict(period=[0], country=["XXX"], labor_change=[0.1]), "XXX"),
        (dict(period=[0], country=["AAA"], labor_change=[np.inf]), "labor_change"),
        (dict(period=[0], country=["AAA"], tfp_change=[-1.0]), "tfp_change makes TFP"),
        (dict(period=[0], country=["AAA"], wage=[0.1]), "unknown column"),
        (dict(period=[0], importer=["AAA"], trade_cost_change=[0.1]), "importer and exporter"),
        (dict(period=[0.5], country=["AAA"], labor_change=[0.1]), "period"),
        (dict(period=[50], country=["AAA"], labor_change=[0.1]), "horizon"),
    ],
)
def test_bad_path_tables_are_rejected_before_any_solve(old, table, match):
    with pytest.raises(ParameterError, match=match):
        run_transition(old, table, periods=T)


def test_bad_options_are_rejected(old):
    with pytest.raises(ParameterError, match="periods"):
        run_transition(old, SHOCK, periods=1)
    with pytest.raises(ParameterError, match="news_date"):
        run_transition(old, SHOCK, periods=T, news_date=T)
    with pytest.raises(ParameterError, match="financial"):
        run_transition(old, Scenario(financial="autarky"), periods=T)
    with pytest.raises(ParameterError, match="tol"):
        TransitionOptions(tol=0.0)


def test_a_path_that_has_not_settled_raises(old, perm):
    opts = TransitionOptions(settle_tol=1e-30)
    with pytest.raises(EquilibriumError, match="larger number of periods"):
        run_transition(old, SHOCK, periods=T, options=opts, hh_tol=1e-12, tol=1e-11)


def _fd_check(eq, Tn):
    J, Jfd, _ = transition_jacobian_and_fd(eq, Tn)
    return np.max(np.abs(J - Jfd)), np.max(np.abs(J))


def test_transition_jacobian_equals_finite_differences(old, x64):
    err, size = _fd_check(old, 6)
    assert err < 1e-7 * size


def test_autarky_transition():
    hh = Household(n_a=20, beta=0.93, n_perm=2, n_iid=2)
    old = solve_equilibrium(_world("autarky"), hh, solve_for="R", tol=1e-11, hh_tol=1e-12)
    tr = run_transition(old, SHOCK, periods=T, hh_tol=1e-12, tol=1e-11)
    s = tr.solution
    assert tr.converged and s.R.shape == (T + 1, 2) and abs(s.R[1, 0] - s.R[1, 1]) > 1e-8
    assert np.max(np.abs(s.outputs.A / s.outputs.Y)) < 1e-8  # each country's bond market
    assert np.max(np.abs(s.R[-1] - tr.new.prices.R)) < 1e-8


def test_temporary_tariff_is_rebated_each_period(old):
    rows = dict(period=[0, 1, 2], importer=["AAA"] * 3, exporter=["BBB"] * 3,
                tariff_change=[0.05, 0.05, 0.0])  # fmt: skip
    tr = run_transition(old, rows, periods=T)
    s = tr.solution
    assert tr.converged and tr.new is old
    G = s.outputs.G
    assert np.max(np.abs(s.T * old.world.labor[None] - G)) < 1e-8 * np.max(s.outputs.Y)
    assert G[0, 0] > 0 and np.max(np.abs(G[3:])) == 0.0


# The 19-country US cut at T = 300 (converged to 1e-8, the end of the path at the new steady
# state to 1e-8) is checked by `python benchmarks/transition.py --us-cut`, which exits with
# an error when a check fails: about 7 minutes on two cores, too long for CI.


def test_stored_and_checkpointed_path_evaluations_agree(old, perm, x64):
    """segment=None (one backward pass keeping every period's policies) and checkpoints
    (policies recomputed per segment) give the same path outputs off the solution."""
    sh = PathShocks(np.tile(perm.new.world.d, (T, 1, 1)), np.zeros((T, 2, 2)),
                    np.tile(old.world.labor, (T, 1)))  # fmt: skip
    stored = PathProblem(old, perm.new, sh, TransitionOptions(periods=T))
    checked = PathProblem(old, perm.new, sh, TransitionOptions(periods=T, segment=8))
    assert stored.segment is None and checked.segment == 8
    U = stored.guess() * (1.0 + 0.01 * np.sin(np.arange(T * stored.layout.n))).reshape(T, -1)
    (Ha, a), (Hb, b) = stored.residuals(U), checked.residuals(U)
    assert np.max(np.abs(Ha - Hb)) < 1e-13
    for f in a._fields:
        x, y = np.asarray(getattr(a, f)), np.asarray(getattr(b, f))
        assert np.max(np.abs(x - y)) <= 1e-14 * max(1.0, np.max(np.abs(x))), f
    tiny = TransitionOptions(periods=T, policy_memory_gb=0.0)
    assert PathProblem(old, perm.new, sh, tiny).segment == tiny.segment_length


def test_truncated_composed_jacobian_equals_the_full_one(old, x64):
    """The chain applied to the truncated fake-news matrices, then the diagonal sums, gives
    the Jacobian of all horizons (the R column's shift included) within the truncation."""
    import jax.numpy as jnp

    from hatrade.core.fakenews import fake_news_matrix
    from hatrade.core.markets import country_params

    Tn = 80
    sh = PathShocks(np.tile(old.world.d, (Tn, 1, 1)), np.zeros((Tn, 2, 2)),
                    np.tile(old.world.labor, (Tn, 1)))  # fmt: skip
    prob = PathProblem(old, old, sh, TransitionOptions(periods=Tn))
    full = transition_jacobian(prob.arrs, prob.layout, old, Tn, tol=0.0)
    size = np.max(np.abs(full))
    J = transition_jacobian(prob.arrs, prob.layout, old, Tn)
    assert np.max(np.abs(J - full)) < 1e-10 * size
    coarse = transition_jacobian(prob.arrs, prob.layout, old, Tn, tol=1e-3)
    assert 0 < np.max(np.abs(coarse - full)) < 1e-4 * size
    p = old.prices
    prm = country_params(prob.arrs, jnp.asarray(p.w), jnp.asarray(p.R), jnp.asarray(p.T),
                         old.beta)  # fmt: skip
    one = lambda x: type(x)(*(jnp.asarray(np.asarray(a)[0]) for a in x))  # noqa: E731
    F = fake_news_matrix(one(prm), one(old.state), old.lam[0], 1.0, Tn + 1, tol=1e-3)
    assert F.shape[0] < Tn and F.shape[2] < Tn  # rows and horizons were truncated
