"""The fake-news household Jacobian (issue 17) against sequence-jacobian's one-asset
household (M = 1): same grid, income process and policies. (The composed transition
Jacobian against finite differences: tests/test_transition.py.)"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hatrade.core.fakenews import fake_news_jacobian
from hatrade.core.household import policies, solve_fixed_point
from hatrade.core.income import income_process
from hatrade.core.markets import country_params, initial_states, model_arrays
from hatrade.core.params import Household, World


def _ssj_household():
    """sequence-jacobian's one-asset household with hatrade's EGM conventions: a'(a) by
    linear interpolation in cash on hand, a' in [a_min, a_max] (flat above the top, as
    hatrade), income y = w z from a hetinput (benchmarks/bench_core.py's ``capped``)."""
    sj = pytest.importorskip("sequence_jacobian")
    from sequence_jacobian import interpolate as sj_interp
    from sequence_jacobian import misc as sj_misc

    def init(a_grid, y, r, eis):
        coh = (1 + r) * a_grid[np.newaxis, :] + y[:, np.newaxis]
        Va = (1 + r) * (coh - a_grid[0]) ** (-1 / eis)
        return Va

    def backward(Va_p, a_grid, y, r, beta, eis):
        c_next = (beta * Va_p) ** (-eis)
        coh = (1 + r) * a_grid[np.newaxis, :] + y[:, np.newaxis]
        a = sj_interp.interpolate_y(c_next + a_grid, coh, a_grid)
        sj_misc.setmin(a, a_grid[0])
        a = np.minimum(a, a_grid[-1])
        c = coh - a
        Va = (1 + r) * c ** (-1 / eis)
        return Va, a, c

    def income(w, z):
        y = w * z
        return y

    blk = sj.het(exogenous="Pi", policy="a", backward="Va", backward_init=init)(backward)
    return blk.add_hetinputs([income])


def test_one_good_jacobians_equal_sequence_jacobians(x64):
    blk = _ssj_household()
    gamma, beta, R, Tn = 1.45, 0.93, 1.01, 40
    hh = Household(gamma=gamma, psi_slope=0.0, beta=beta, n_a=40, n_perm=3, n_iid=2)
    inc = income_process(hh)
    arrs = model_arrays(World(countries=["A"], tfp=[1.0], labor=[1.0], d=[[1.0]]), hh, inc)
    one = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731
    args = (arrs, jnp.ones(1), jnp.asarray(R), jnp.zeros(1), jnp.asarray(beta))
    prm, x0 = one(country_params(*args)), one(initial_states(*args))
    x, _ = solve_fixed_point(prm, x0, 1e-13, 20000)
    pol = policies(x, prm)
    from hatrade.core.distribution import stationary_distribution

    lam = stationary_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    J = fake_news_jacobian(prm, x, lam, 1.0, Tn)
    cal = dict(Pi=np.asarray(inc.P), a_grid=np.asarray(prm.a_grid), z=np.asarray(inc.z), w=1.0,
               r=R - 1.0, beta=beta, eis=1.0 / gamma)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = blk.steady_state(cal, backward_tol=1e-13, forward_tol=1e-14)
        Js = blk.jacobian(ss, inputs=["w", "r"], outputs=["A", "C"], T=Tn, h=1e-6, twosided=True)
    assert abs(float(ss["A"]) - float(np.sum(lam * pol.a_p[..., 0]))) < 1e-9
    # outputs: 0 = spending (C at p = 1), 1 = assets; directions: 0 p, 1 w, 2 R
    for o, name in ((0, "C"), (1, "A")):
        for k, inp in ((1, "w"), (2, "r")):
            ref = np.asarray(Js[name][inp])
            err = np.max(np.abs(J[:, o, :, k] - ref))
            assert err < 1e-6 * max(1.0, np.max(np.abs(ref))), (name, inp, err)


def test_truncated_jacobian_equals_the_full_one(x64):
    """The truncated passes (news effects and expectation vectors below ``tol``) give the
    Jacobian of all horizons to within ``tol``; the chunk size changes nothing."""
    from hatrade.solve.equilibrium import solve_equilibrium

    world = World(countries=("AAA", "BBB"), tfp=[1.0, 0.8], labor=[1.0, 0.5],
                  d=[[1.0, 1.3], [1.2, 1.0]])  # fmt: skip
    hh = Household(n_a=20, beta=0.93, n_perm=2, n_iid=2)
    eq = solve_equilibrium(world, hh, solve_for="R", tol=1e-11, hh_tol=1e-13)
    arrs = model_arrays(eq.world, eq.household, eq.income)
    p = eq.prices
    prm = country_params(arrs, jnp.asarray(p.w), jnp.asarray(p.R), jnp.asarray(p.T), eq.beta)
    one = lambda t: type(t)(*(jnp.asarray(np.asarray(a)[0]) for a in t))  # noqa: E731
    args = (one(prm), one(eq.state), eq.lam[0], float(np.asarray(arrs.L)[0]), 120)
    full = fake_news_jacobian(*args, tol=0.0)
    scale = np.max(np.abs(full))
    assert np.max(np.abs(full[:, :, -20:, :])) > 0  # the full one has every horizon
    for chunk in (10, 25):
        J = fake_news_jacobian(*args, tol=1e-12, chunk=chunk)
        assert np.max(np.abs(J - full)) < 1e-10 * scale, chunk
    # truncation did happen: late news (s near T) is dropped exactly
    assert np.all(fake_news_jacobian(*args, tol=1e-6, chunk=10)[0, :, 100:, :] == 0.0)
