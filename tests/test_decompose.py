"""Proposition 2's general-equilibrium price responses under tariffs: the decomposition
clears markets exactly as the solver does (hatrade.core.markets), so its first-order price
changes are those of solve_equilibrium."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hatrade
from hatrade.analysis.counterfactual import run_counterfactual
from hatrade.core.markets import model_arrays, solve_households
from hatrade.core.x64 import enable_x64
from hatrade.welfare import decompose
from hatrade.welfare.decompose import price_responses
from smallworld import D3, small_household, small_world

#: Ad-valorem tariffs (importer rows) of the small world: 5-20%.
TARIFFS = [[0.0, 0.10, 0.15], [0.05, 0.0, 0.10], [0.20, 0.10, 0.0]]


def _direction():
    D = np.zeros((3, 3))
    D[0, 1] = D[0, 2] = 1.0  # H's import costs from F and G
    return D


def _solve_at(base, D, eps):
    """The equilibrium (beta fixed, R, wages and transfers solved) with d_ij exp(eps D_ij)."""
    w = base.world
    world = small_world(
        tariffs=None if w.tariffs is None else w.tariffs.tolist(),
        d=(np.asarray(D3) * np.exp(eps * D)).tolist(),
    )
    return run_counterfactual(base, world, tol=1e-12, hh_tol=1e-12).new


@enable_x64
def _consumer_price_responses(eq, D, hh_tol=1e-12, hh_max_iter=5000):
    """The former decomposition's price responses: goods markets cleared with spending at
    consumer (tariff-inclusive) prices M_ij instead of the factory prices X_ij the solver
    uses (globalization; kept here to show what the fix changes)."""
    M = eq.world.M
    arrs = model_arrays(eq.world, eq.household, eq.income)
    beta, Dj, x0 = jnp.asarray(eq.prices.beta), jnp.asarray(D), eq.state
    tariffs = eq.world.has_tariffs

    def f(u, eps):
        w = jnp.concatenate([u[: M - 1], M - jnp.sum(u[: M - 1], keepdims=True)])
        R = jnp.broadcast_to(u[M - 1], (M,))
        T = u[M : 2 * M] if tariffs else jnp.zeros(M)
        agg, _ = solve_households(
            arrs._replace(d=arrs.d * jnp.exp(eps * Dj)), w, R, T, beta, x0, hh_tol, hh_max_iter
        )
        Y = agg["Y"]
        parts = [
            ((jnp.sum(agg["M"], axis=0) - Y) / Y)[1:],
            jnp.sum(agg["A"], keepdims=True) / jnp.sum(Y),
        ]
        if tariffs:
            parts.append((T * arrs.L - agg["G"]) / Y)
        return jnp.concatenate(parts)

    parts = [np.asarray(eq.prices.w)[: M - 1], np.asarray(eq.prices.R)[:1]]
    if tariffs:
        parts.append(np.asarray(eq.prices.T))
    u = jnp.asarray(np.concatenate(parts))
    Ju = jax.jit(jax.jacfwd(lambda uu: f(uu, 0.0)))(u)
    _, Je = jax.jit(lambda: jax.jvp(lambda e: f(u, e), (0.0,), (1.0,)))()
    du = -np.linalg.solve(np.asarray(Ju), np.asarray(Je))
    dw = np.concatenate([du[: M - 1], [-np.sum(du[: M - 1])]])
    return dw, np.full(M, du[M - 1]), (du[M:] if tariffs else np.zeros(M))


@pytest.fixture(scope="module")
def tariff_base():
    return hatrade.solve_equilibrium(
        small_world(tariffs=TARIFFS),
        small_household(),
        solve_for="R",
        R_guess=1.02,
        tol=1e-12,
        hh_tol=1e-12,
    )


def test_price_responses_under_tariffs_match_the_equilibrium_solve(tariff_base):
    """du/deps of the decomposition = (u(eps) - u(-eps)) / (2 eps) of solve_equilibrium.

    Tolerance 1e-6 at eps = 1e-3: the central difference's truncation error is
    O(eps^2) (about 1.4e-6 at eps = 1e-2 and 1.4e-8 at 1e-3 here, quadratic), and the
    solves' error (excess demands below 1e-12, household tolerance 1e-12) contributes
    about 1e-12 / eps = 1e-9. Clearing goods markets at consumer prices instead (the
    former code) is off by about 1e-2 in the wages, four orders of magnitude more.
    """
    D, eps = _direction(), 1e-3
    dec = decompose(tariff_base, "H", D)
    dw, dR, dT = (np.asarray(dec.dprices[k]) for k in ("w", "R", "T"))
    up, down = _solve_at(tariff_base, D, eps), _solve_at(tariff_base, D, -eps)
    fd = {
        k: (np.asarray(getattr(up.prices, k)) - np.asarray(getattr(down.prices, k))) / (2 * eps)
        for k in ("w", "R", "T")
    }
    np.testing.assert_allclose(dw, fd["w"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(dR, fd["R"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(dT, fd["T"], rtol=0, atol=1e-6)
    assert abs(dw.sum()) < 1e-12 and np.max(np.abs(dT)) > 1e-3  # transfers respond
    # the split still adds up to the total derivative
    assert dec.sum_error < 1e-8 * max(np.max(np.abs(dec.total)), 1.0)
    # the consumer-price clearing of the former code misses the solve by far more
    old_w = _consumer_price_responses(tariff_base, D)[0]
    assert np.max(np.abs(old_w - fd["w"])) > 1e-3


def test_without_tariffs_factory_and_consumer_prices_agree():
    """Without tariffs X_ij = M_ij: the shared-markets responses equal the former code's."""
    base = hatrade.solve_equilibrium(small_world(), small_household(), solve_for="R", R_guess=1.02)
    D = _direction()
    new = price_responses(base, D)
    old = _consumer_price_responses(base, D)
    for a, b in zip(new, old):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
