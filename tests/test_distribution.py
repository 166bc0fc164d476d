"""Tests for the stationary distribution (hatrade.distribution, MODEL.md 2.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hatrade.distribution import (
    iterate_distribution,
    push,
    stationary_distribution,
    transition_matrix,
)
from hatrade.household import initial_state, policies, solve_fixed_point

pytestmark = pytest.mark.usefixtures("x64")


@jax.jit
def _household(prm):
    x, _ = solve_fixed_point(prm, initial_state(prm), 1e-12, 5000)
    return policies(x, prm)


@pytest.fixture(scope="module")
def case(x64, hh_params_factory):
    """A household solution (Na = 30, 6 income states, 3 varieties) and its distribution."""
    prm = hh_params_factory(30)
    pol = _household(prm)
    lam = jax.jit(stationary_distribution)(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    return prm, pol, lam


def test_nonnegative_and_sums_to_one(case):
    prm, _pol, lam = case
    lam = np.asarray(lam)
    assert lam.shape == (prm.a_grid.shape[0], prm.z.shape[0])
    assert lam.min() >= -1e-14
    assert lam.sum() == pytest.approx(1.0, abs=1e-13)
    # the income marginal is the income chain's stationary distribution
    inc_dist = np.asarray(jnp.linalg.matrix_power(prm.Pz.T, 2000) @ jnp.ones(prm.z.shape[0])
                          / prm.z.shape[0])
    np.testing.assert_allclose(lam.sum(axis=0), inc_dist, atol=1e-12)
    # some households are at the borrowing limit, and mass is spread over the grid
    assert lam[0].sum() > 1e-4 and (lam > 1e-8).sum() > lam.size // 3


def test_agrees_with_forward_iteration(case):
    prm, pol, lam = case
    lam_it, it, err = iterate_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz, tol=1e-15,
                                           max_iter=200_000)
    assert int(it) < 200_000 and float(err) <= 1e-15
    assert float(jnp.max(jnp.abs(lam_it - lam))) < 1e-9
    # started elsewhere (all mass at the top), the iteration reaches the same distribution
    lam0 = jnp.zeros_like(lam).at[-1, :].set(1.0 / lam.shape[1])
    lam_it2, _, _ = iterate_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz, lam0=lam0,
                                         tol=1e-15, max_iter=200_000)
    assert float(jnp.max(jnp.abs(lam_it2 - lam))) < 1e-9


def test_fixed_point_of_the_lottery_transition(case):
    prm, pol, lam = case
    T = np.asarray(transition_matrix(pol.a_p, pol.pi, prm.a_grid, prm.Pz))
    assert T.min() >= 0
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-13)
    lam_flat = np.asarray(lam).ravel()  # a-major, like T
    np.testing.assert_allclose(lam_flat @ T, lam_flat, atol=1e-15)
    pushed = np.asarray(push(lam, pol.a_p, pol.pi, prm.a_grid, prm.Pz))
    np.testing.assert_allclose(pushed.ravel(), lam_flat @ T, atol=1e-15)


def test_lottery_preserves_mean_assets(case):
    """Splitting mass between bracketing nodes keeps E[a'] = sum lam pi a' exactly."""
    prm, pol, lam = case
    rng = np.random.default_rng(0)
    lam_r = jnp.asarray(rng.random(lam.shape))
    lam_r = lam_r / lam_r.sum()
    nxt = push(lam_r, pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    mean_next = float(jnp.sum(nxt * prm.a_grid[:, None]))
    mean_policy = float(jnp.sum(lam_r[..., None] * pol.pi * pol.a_p))
    assert mean_next == pytest.approx(mean_policy, abs=1e-13)
    # at the stationary distribution aggregate assets are constant
    assert float(jnp.sum(lam * prm.a_grid[:, None])) == pytest.approx(
        float(jnp.sum(lam[..., None] * pol.pi * pol.a_p)), abs=1e-13)


def _directions(prm, pol):
    """Random tangents that stay on the domain where lambda is differentiable.

    a': zero where a' sits on a grid node (the borrowing limit: the lottery weights have a
    kink there); pi: rows sum to zero; P: rows sum to zero, zero where P is zero.
    """
    rng = np.random.default_rng(0)
    a_p, a = np.asarray(pol.a_p), np.asarray(prm.a_grid)
    on_node = np.min(np.abs(a_p[..., None] - a), axis=-1) < 1e-7
    assert on_node.any() and not on_node.all()
    da = np.where(on_node, 0.0, rng.normal(size=a_p.shape))
    dpi = rng.normal(size=a_p.shape)
    dpi = (dpi - dpi.mean(axis=-1, keepdims=True)) * np.asarray(pol.pi)
    dpi = dpi - np.asarray(pol.pi) * dpi.sum(axis=-1, keepdims=True)
    P = np.asarray(prm.Pz)
    dP = rng.normal(size=P.shape) * (P > 0)
    dP = dP - (P > 0) * dP.sum(axis=1, keepdims=True) / (P > 0).sum(axis=1, keepdims=True)
    zero = lambda x: np.zeros_like(np.asarray(x))
    z = (zero(a_p), zero(a_p), zero(a), zero(P))
    return {
        "a_p": (da, z[1], z[2], z[3]),
        "pi": (z[0], dpi, z[2], z[3]),
        "Pz": (z[0], z[1], z[2], dP),
        "all": (da, dpi, z[2], dP),
    }


_stationary = jax.jit(stationary_distribution)


@jax.jit
def _stationary_jvp(primals, tangents):
    return jax.jvp(stationary_distribution, primals, tangents)


@pytest.mark.parametrize("direction", ["a_p", "pi", "Pz", "all"])
def test_jvp_matches_central_differences(case, direction):
    """Custom JVP (LU solve) vs central differences, step 1e-6; observed error ~4e-10."""
    prm, pol, lam = case
    primals = (pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    tangents = tuple(jnp.asarray(t) for t in _directions(prm, pol)[direction])
    lam_j, dlam = _stationary_jvp(primals, tangents)
    np.testing.assert_allclose(np.asarray(lam_j), np.asarray(lam), atol=1e-15)
    h = 1e-6
    fp = _stationary(*[p + h * t for p, t in zip(primals, tangents)])
    fm = _stationary(*[p - h * t for p, t in zip(primals, tangents)])
    fd = (fp - fm) / (2 * h)
    scale = max(1.0, float(jnp.max(jnp.abs(fd))))
    assert float(jnp.max(jnp.abs(dlam - fd))) / scale < 1e-8
    assert float(jnp.max(jnp.abs(dlam))) > 1e-3  # non-trivial
    assert float(jnp.sum(dlam)) == pytest.approx(0.0, abs=1e-12)  # mass is conserved
