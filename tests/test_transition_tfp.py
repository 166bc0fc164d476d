"""TFP along transition paths (issue 17, item 1): the household step across two asset grids
(hatrade.core.household.step), and permanent, temporary and zero TFP changes solved as paths
(hatrade.analysis.transition, hatrade.core.path).

Convention (docs/transitions.md): the assets chosen at t lie on the grid of period t's TFP,
so the assets held at t on period t-1's (at t = 0 the old steady state's). Small worlds
(2 countries, n_a = 20, 2 x 2 income states, T = 40) share module fixtures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from hatrade.analysis.counterfactual import Scenario
from hatrade.analysis.transition import path_shocks, run_transition
from hatrade.core.household import logit, step, utility
from hatrade.core.markets import country_params, model_arrays
from hatrade.core.params import Household, World
from hatrade.solve.equilibrium import solve_equilibrium
from hatrade.solve.transition import PathProblem, TransitionOptions
from hatrade.welfare.transition import transition_welfare

T = 40
HH = Household(n_a=20, beta=0.93, n_perm=2, n_iid=2)
TIGHT = TransitionOptions(tol=1e-11)


def _world(tfp=(1.0, 0.8)):
    return World(
        countries=("AAA", "BBB"), tfp=list(tfp), labor=[1.0, 0.5], d=[[1.0, 1.3], [1.2, 1.0]]
    )


@pytest.fixture(scope="module")
def old():
    return solve_equilibrium(_world(), HH, solve_for="R", tol=1e-11, hh_tol=1e-12)


@pytest.fixture(scope="module")
def perm(old):
    """An unanticipated permanent 5% rise of AAA's TFP."""
    sc = Scenario(tfp_change={"AAA": 0.05})
    return run_transition(old, sc, periods=T, options=TIGHT, hh_tol=1e-12, tol=1e-11)


def _country(eq, k: int):
    arrs = model_arrays(eq.world, eq.household, eq.income)
    f = jnp.asarray
    prm = country_params(arrs, f(eq.prices.w), f(eq.prices.R), f(eq.prices.T), f(eq.beta))
    pick = lambda x: x[k]  # noqa: E731
    return jax.tree_util.tree_map(pick, prm), jax.tree_util.tree_map(pick, eq.state)


def test_step_defaults_are_the_steady_state_step_bit_for_bit(old, x64):
    """Today's grid and taste parameters given explicitly change nothing (not one bit)."""
    f = jax.jit(step)
    for k in (1,):
        prm, x = _country(old, k)
        c, v = jnp.asarray(x.c) * 1.01, jnp.asarray(x.v) - 0.1
        mu = jnp.exp(-prm.gamma * jnp.log(c))
        for nxt in ((None, None), (prm.p * 1.02, prm.R + 1e-3)):
            a = f(c, mu, v, prm, *nxt)
            b = f(c, mu, v, prm, *nxt, prm.a_grid, prm.sigma, prm.psi)
            for x_a, x_b in zip(a, b):
                np.testing.assert_array_equal(np.asarray(x_a), np.asarray(x_b))


def test_step_across_grids_is_exact_at_the_endogenous_points(old, x64):
    r"""Next period's state on a grid 10% wider (TFP up) with a larger taste-shock scale:
    at a held grid whose ends are two endogenous points of column (z, j) = (0, 0), a' is
    exactly the chosen grid's knot, c solves the Euler equation with next period's
    marginal utilities at that knot, and v = u(c) + beta E V'(a') with V' the logit of next
    period's values at next period's scale (brute force, no interpolation)."""
    prm, x = _country(old, 0)
    g = prm.gamma
    grid_n, sig_n, psi_n = 1.1 * prm.a_grid, 1.3 * prm.sigma, 1.3 * prm.psi
    c1, v1 = jnp.asarray(x.c), jnp.asarray(x.v)
    # brute force: the endogenous points of column (0, 0) for a' = grid_n[k]
    nxt = prm._replace(sigma=sig_n, psi=psi_n)
    pi1, V1 = logit(v1, nxt)
    m = np.sum(np.asarray(pi1 * c1 ** (-g) / prm.p), axis=-1)  # (Na, Nz)
    E = prm.beta * prm.R * m @ np.asarray(prm.Pz[0])  # z = 0
    ck = (prm.p[0] * E) ** (-1.0 / g)
    y = prm.w * prm.z[0] + prm.T
    a_tilde = (prm.p[0] * ck + grid_n - y) / prm.R
    k0, k1 = 6, 14
    held = jnp.linspace(a_tilde[k0], a_tilde[k1], prm.a_grid.shape[0])
    pr = prm._replace(a_grid=held)
    c, _, v, a_p = jax.jit(step)(c1, c1 ** (-g), v1, pr, None, None, grid_n, sig_n, psi_n)
    EV = np.asarray(V1) @ np.asarray(prm.Pz[0])
    for end, k in ((0, k0), (-1, k1)):
        assert abs(float(a_p[end, 0, 0] - grid_n[k])) < 1e-12
        assert abs(float(c[end, 0, 0] / ck[k] - 1.0)) < 1e-12
        v_brute = utility(ck[k], g) + prm.beta * EV[k]
        assert abs(float(v[end, 0, 0] - v_brute)) < 1e-10 * abs(float(v_brute))


def test_permanent_tfp_change_ends_at_the_new_steady_state(old, perm):
    s = perm.solution
    assert perm.converged and perm.residual < 1e-10
    # the new steady state, solved directly with beta fixed
    new = solve_equilibrium(_world((1.05, 0.8)), HH, solve_for="R", tol=1e-11, hh_tol=1e-12)
    assert np.max(np.abs(s.w[-1] - new.prices.w)) < 1e-8
    assert np.max(np.abs(s.R[-1] - new.prices.R)) < 1e-8
    assert np.max(np.abs(perm.new.prices.w - new.prices.w)) < 1e-10
    # t = 0: the old steady state's assets on its grid, the old return; the wage jumps
    assert np.max(np.abs(s.outputs.A_held[0] - old.aggregates["A"])) < 1e-12
    assert s.R[0, 0] == old.prices.R[0]
    assert abs(s.w[0, 0] - old.prices.w[0]) > 1e-3
    # prices in the path table use the period's TFP
    first = perm.paths[perm.paths["period"] == 0].set_index("country")
    share = s.outputs.M[0, 0] / s.outputs.M[0, 0].sum()
    p = old.world.d[0] * s.w[0] / np.array([1.05, 0.8])
    assert first.loc["AAA", "price_index"] == pytest.approx(share @ p, rel=1e-14)


def test_accounting_along_a_tfp_path(perm):
    out = perm.solution.outputs
    assert np.max(np.abs(out.A.sum(axis=1) / out.Y.sum(axis=1))) < 1e-10  # bonds clear
    nx = perm.paths.pivot(index="period", columns="country", values="net_exports").to_numpy()
    assert np.max(np.abs(nx.sum(axis=1))) < 1e-10 * out.Y.sum(axis=1).max()
    R = perm.solution.R[:T]
    assert np.max(np.abs(nx - (out.A - R * out.A_held))) < 1e-12


def test_tfp_transition_welfare(perm):
    w = transition_welfare(perm, "AAA").summary
    gt, gs = w["transition"]["mean_gain_percent"], w["steady_state"]["mean_gain_percent"]
    assert gt > 0 and gs > 0 and abs(gt - gs) < 0.1 * gs


def test_tfp_news_changes_the_path_before_the_date(old, perm):
    """A TFP rise announced at t = 0 for period 5: the grid changes only from period 5's
    choices on, prices move before, and the path ends at the same new steady state."""
    sc = Scenario(tfp_change={"AAA": 0.05})
    news = run_transition(old, sc, periods=T, news_date=5, options=TIGHT)
    a, b = perm.solution, news.solution
    assert news.converged and np.max(np.abs(a.w[:5] - b.w[:5])) > 1e-4
    assert np.max(np.abs(b.w[-1] - perm.new.prices.w)) < 1e-6
    # the assets carried into period 5 were chosen at 4 on the old grid: bonds still clear
    assert np.max(np.abs(b.outputs.A_held.sum(axis=1))) < 1e-10


def test_zero_tfp_change_is_the_path_without_tfp(old):
    """A tfp_change column of zeros (a TFP path equal to the world's) changes nothing."""
    rows = dict(period=[0, 1, 2], importer=["AAA"] * 3, exporter=["BBB"] * 3,
                trade_cost_change=[-0.05, -0.05, 0.0])  # fmt: skip
    a = run_transition(old, rows, periods=T, options=TIGHT)
    rows2 = pd.DataFrame(rows)
    rows2 = pd.concat(
        [rows2, pd.DataFrame(dict(period=[0, 1], country=["AAA", "BBB"], tfp_change=[0.0, 0.0]))]
    )
    b = run_transition(old, rows2, periods=T, options=TIGHT)
    assert b.solution.iterations == a.solution.iterations
    for f in ("w", "R"):
        assert np.max(np.abs(getattr(a.solution, f) - getattr(b.solution, f))) < 1e-12
    assert np.max(np.abs(a.V0 - b.V0)) < 1e-12
    assert np.max(np.abs(a.solution.outputs.M - b.solution.outputs.M)) < 1e-12
    # the same with the TFP path given explicitly or left out (None: the world's)
    shocks, _ = path_shocks(old.world, rows2, T)
    assert shocks.tfp is not None and np.all(shocks.tfp == old.world.tfp)
    U = PathProblem(old, old, shocks, TransitionOptions(periods=T)).guess() * 1.001
    H1, o1 = PathProblem(old, old, shocks, TransitionOptions(periods=T)).residuals(U)
    no_tfp = type(shocks)(shocks.d, shocks.tariffs, shocks.labor)
    H2, o2 = PathProblem(old, old, no_tfp, TransitionOptions(periods=T)).residuals(U)
    assert np.max(np.abs(H1 - H2)) < 1e-12 and np.max(np.abs(o1.V0 - o2.V0)) < 1e-12


def test_temporary_tfp_shock_ends_at_the_old_steady_state(old):
    rows = dict(period=[0, 1, 2], country=["AAA"] * 3, tfp_change=[0.05, 0.05, 0.0])
    tr = run_transition(old, rows, periods=T, options=TIGHT)
    s = tr.solution
    assert tr.converged and tr.new is old
    # settled (settle_tol 1e-6), the gap shrinking geometrically (3e-8 at T = 40, 1e-12 at
    # T = 80: the wealth effect of two good years dies out slowly)
    gap = lambda t: np.max(np.abs(s.w[t] - old.prices.w))  # noqa: E731
    assert gap(T - 1) < 1e-6 and gap(T - 1) < 1e-2 * gap(T // 2)
    assert np.max(np.abs(s.R[-1] - old.prices.R)) < 1e-6
    assert abs(s.w[0, 0] - old.prices.w[0]) > 1e-3
    out = s.outputs
    assert np.max(np.abs(out.A.sum(axis=1) / out.Y.sum(axis=1))) < 1e-10


def test_bad_tfp_paths_are_rejected(old):
    from hatrade.core.params import ParameterError

    with pytest.raises(ParameterError, match="tfp_change makes TFP <= 0"):
        run_transition(old, dict(period=[0], country=["AAA"], tfp_change=[-1.0]), periods=T)
    with pytest.raises(ParameterError, match="tfp_change"):
        run_transition(old, Scenario(tfp_change={"AAA": -2.0}), periods=T)
