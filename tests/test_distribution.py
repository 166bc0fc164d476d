"""Tests for the stationary distribution (hatrade.core.distribution, docs/model.md 2.2).

The default solver is BiCGStab on the factorized (sparse) transition ("krylov"); the dense
LU solve ("direct") is exact to machine precision and serves as the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hatrade.core import distribution as dist_mod
from hatrade.core.distribution import (
    METHODS,
    apply_transition,
    distribution_residual,
    iterate_distribution,
    push,
    stationary_distribution,
    stationary_distribution_info,
    transition_blocks,
    transition_matrix,
)
from hatrade.core.household import initial_state, policies, solve_fixed_point

pytestmark = pytest.mark.usefixtures("x64")


@jax.jit
def _household(prm):
    x, _ = solve_fixed_point(prm, initial_state(prm), 1e-12, 5000)
    return policies(x, prm)


_direct = jax.jit(lambda *a: stationary_distribution(*a, method="direct"))
_krylov = jax.jit(stationary_distribution)
_krylov_info = jax.jit(stationary_distribution_info)


@pytest.fixture(scope="module")
def case(x64, hh_params_factory):
    """A household solution (Na = 30, 6 income states, 3 varieties) and its distribution."""
    prm = hh_params_factory(30)
    pol = _household(prm)
    lam = _direct(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    return prm, pol, lam


@pytest.fixture(scope="module")
def countries(x64, hh_params_factory):
    """Three 'countries' (different prices, wages, home variety) at Na = 60, batched."""
    prms = [
        hh_params_factory(60, prices=p, w=w, home=h)
        for p, w, h in [
            ((1.0, 1.25, 1.6), 1.0, 0),
            ((1.4, 0.9, 1.1), 0.8, 1),
            ((2.0, 1.5, 0.7), 1.3, 2),
        ]
    ]
    prm = jax.tree.map(lambda *x: jnp.stack(x), *prms)
    pol = jax.jit(jax.vmap(_household))(prm)
    return prm, pol


def test_nonnegative_and_sums_to_one(case):
    prm, pol, lam_d = case
    lam = np.asarray(_krylov(pol.a_p, pol.pi, prm.a_grid, prm.Pz))
    for x in (lam, np.asarray(lam_d)):
        assert x.shape == (prm.a_grid.shape[0], prm.z.shape[0])
        assert x.min() >= -1e-14
        assert x.sum() == pytest.approx(1.0, abs=1e-13)
    assert lam.min() >= 0.0  # round-off negatives are clipped
    # the income marginal is the income chain's stationary distribution
    inc_dist = np.asarray(
        jnp.linalg.matrix_power(prm.Pz.T, 2000) @ jnp.ones(prm.z.shape[0]) / prm.z.shape[0]
    )
    np.testing.assert_allclose(lam.sum(axis=0), inc_dist, atol=1e-12)
    # some households are at the borrowing limit, and mass is spread over the grid
    assert lam[0].sum() > 1e-4 and (lam > 1e-8).sum() > lam.size // 3


def test_krylov_matches_direct(case):
    """The default (BiCGStab) solve agrees with the dense LU solve to 1e-12 (observed ~1e-14)."""
    prm, pol, lam_d = case
    lam, info = _krylov_info(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    assert float(jnp.max(jnp.abs(lam - lam_d))) < 1e-12
    assert 0 < float(info.iterations) < 200
    assert float(info.residual) <= 1e-14
    # the residual reported is that of the returned distribution (round-off level here)
    assert float(distribution_residual(lam, pol.a_p, pol.pi, prm.a_grid, prm.Pz)) <= 1e-14
    # the direct solve reports its (round-off) residual too, and no iterations
    lam_d2, info_d = stationary_distribution_info(
        pol.a_p, pol.pi, prm.a_grid, prm.Pz, method="direct"
    )
    assert float(info_d.iterations) == 0 and float(info_d.residual) < 1e-15
    np.testing.assert_allclose(np.asarray(lam_d2), np.asarray(lam_d), atol=1e-15)


def test_vmapped_over_countries(countries):
    """Batched over countries (as hatrade.solve.equilibrium does): same as one by one, and as LU."""
    prm, pol = countries
    args = (pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    lam, info = jax.jit(jax.vmap(stationary_distribution_info))(*args)
    lam_d = jax.jit(jax.vmap(_direct))(*args)
    assert float(jnp.max(jnp.abs(lam - lam_d))) < 1e-12
    assert np.all(np.asarray(info.residual) <= 1e-14)
    its = np.asarray(info.iterations)
    assert np.all(its > 0) and np.all(its < 200) and its.min() < its.max()
    for c in range(lam.shape[0]):
        one, info1 = _krylov_info(*[a[c] for a in args])
        assert float(jnp.max(jnp.abs(one - lam[c]))) < 1e-13
        # each member stops at its own tolerance (batched products round differently,
        # so the counts may differ by a few iterations)
        assert abs(float(info1.iterations) - its[c]) <= 0.25 * its[c]
    # the countries differ (the test would be vacuous otherwise)
    assert float(jnp.max(jnp.abs(lam[0] - lam[1]))) > 1e-3


def test_non_convergence_is_reported(case):
    prm, pol, lam_d = case
    lam, info = stationary_distribution_info(pol.a_p, pol.pi, prm.a_grid, prm.Pz, max_iter=2)
    assert float(info.iterations) == 2
    assert float(info.residual) > 1e-14  # callers compare with tol and raise
    assert float(info.residual) == pytest.approx(
        float(distribution_residual(lam, pol.a_p, pol.pi, prm.a_grid, prm.Pz)), rel=1e-12
    )
    # a looser tolerance stops earlier, with a larger error
    lam8, info8 = stationary_distribution_info(pol.a_p, pol.pi, prm.a_grid, prm.Pz, tol=1e-8)
    full = _krylov_info(pol.a_p, pol.pi, prm.a_grid, prm.Pz)[1]
    assert float(info8.residual) <= 1e-8 and float(info8.iterations) < float(full.iterations)
    assert float(jnp.max(jnp.abs(lam8 - lam_d))) < 1e-6


def test_unknown_method(case):
    prm, pol, _ = case
    with pytest.raises(ValueError, match="method='lu'.*krylov"):
        stationary_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz, method="lu")
    assert METHODS == ("krylov", "direct")


def test_agrees_with_forward_iteration(case):
    prm, pol, lam = case
    lam_it, it, err = iterate_distribution(
        pol.a_p, pol.pi, prm.a_grid, prm.Pz, tol=1e-15, max_iter=200_000
    )
    assert int(it) < 200_000 and float(err) <= 1e-15
    assert float(jnp.max(jnp.abs(lam_it - lam))) < 1e-9
    # started elsewhere (all mass at the top), the iteration reaches the same distribution
    lam0 = jnp.zeros_like(lam).at[-1, :].set(1.0 / lam.shape[1])
    lam_it2, _, _ = iterate_distribution(
        pol.a_p, pol.pi, prm.a_grid, prm.Pz, lam0=lam0, tol=1e-15, max_iter=200_000
    )
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


def test_factorized_transition(case):
    """T[(a,z),(k,z')] = Q_z[a,k] P[z,z'], and lam T by the blocks equals lam @ T."""
    prm, pol, _ = case
    Na, Nz = prm.a_grid.shape[0], prm.z.shape[0]
    T = np.asarray(transition_matrix(pol.a_p, pol.pi, prm.a_grid, prm.Pz))
    Q = np.asarray(transition_blocks(pol.a_p, pol.pi, prm.a_grid))
    assert Q.shape == (Nz, Na, Na) and Q.min() >= 0
    np.testing.assert_allclose(Q.sum(axis=2), 1.0, atol=1e-13)
    T_blocks = np.einsum("zak,zy->azky", Q, np.asarray(prm.Pz)).reshape(Na * Nz, Na * Nz)
    np.testing.assert_allclose(T_blocks, T, atol=1e-15)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.random((Na, Nz)))
    np.testing.assert_allclose(
        np.asarray(apply_transition(x, jnp.asarray(Q), prm.Pz)).ravel(),
        np.asarray(x).ravel() @ T,
        atol=1e-14,
    )
    # the residual measure: zero (round-off) at the solution, not elsewhere
    x = x / jnp.sum(x)
    assert float(distribution_residual(x, pol.a_p, pol.pi, prm.a_grid, prm.Pz)) > 1e-4


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
        float(jnp.sum(lam[..., None] * pol.pi * pol.a_p)), abs=1e-13
    )


def _directions(prm, pol, seed=0):
    """Random tangents that stay on the domain where lambda is differentiable.

    a': zero where a' sits on a grid node (the borrowing limit: the lottery weights have a
    kink there); pi: rows sum to zero; P: rows sum to zero, zero where P is zero.
    """
    rng = np.random.default_rng(seed)
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

    def zero(x):
        return np.zeros_like(np.asarray(x))

    z = (zero(a_p), zero(a_p), zero(a), zero(P))
    return {
        "a_p": (da, z[1], z[2], z[3]),
        "pi": (z[0], dpi, z[2], z[3]),
        "Pz": (z[0], z[1], z[2], dP),
        "all": (da, dpi, z[2], dP),
    }


@jax.jit
def _jvp_direct(primals, tangents):
    return jax.jvp(lambda *a: stationary_distribution(*a, method="direct"), primals, tangents)


@jax.jit
def _jvp_krylov(primals, tangents):
    return jax.jvp(stationary_distribution, primals, tangents)


@pytest.mark.parametrize("direction", ["a_p", "pi", "Pz", "all"])
def test_jvp_matches_central_differences(case, direction):
    """Both JVPs vs central differences of the exact (LU) solve, step 1e-6 (~4e-10 observed).

    Differences of the Krylov solve itself would carry its error (~1e-14) / 1e-6: so the
    Krylov JVP is compared with the differences and, much more tightly, with the LU JVP.
    """
    prm, pol, lam = case
    primals = (pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    tangents = tuple(jnp.asarray(t) for t in _directions(prm, pol)[direction])
    lam_d, dlam_d = _jvp_direct(primals, tangents)
    lam_k, dlam_k = _jvp_krylov(primals, tangents)
    np.testing.assert_allclose(np.asarray(lam_d), np.asarray(lam), atol=1e-15)
    assert float(jnp.max(jnp.abs(lam_k - lam))) < 1e-12
    h = 1e-6
    fp = _direct(*[p + h * t for p, t in zip(primals, tangents)])
    fm = _direct(*[p - h * t for p, t in zip(primals, tangents)])
    fd = (fp - fm) / (2 * h)
    scale = max(1.0, float(jnp.max(jnp.abs(fd))))
    assert float(jnp.max(jnp.abs(dlam_d - fd))) / scale < 1e-8
    assert float(jnp.max(jnp.abs(dlam_k - fd))) / scale < 1e-8
    assert float(jnp.max(jnp.abs(dlam_k - dlam_d))) / scale < 1e-10
    assert float(jnp.max(jnp.abs(dlam_d))) > 1e-3  # non-trivial
    for d in (dlam_d, dlam_k):
        assert float(jnp.sum(d)) == pytest.approx(0.0, abs=1e-12)  # mass is conserved


def test_jvp_batched_over_directions_and_countries(countries):
    """vmap over countries of vmap over tangent directions (the world's Jacobians)."""
    prm, pol = countries
    dirs = []
    for c in range(prm.a_grid.shape[0]):
        pc = jax.tree.map(lambda x, c=c: x[c], prm)
        pl = jax.tree.map(lambda x, c=c: x[c], pol)
        dirs.append([_directions(pc, pl, seed)["all"] for seed in range(3)])
    tang = tuple(jnp.asarray(np.array([[d[i] for d in row] for row in dirs])) for i in range(4))
    primals = (pol.a_p, pol.pi, prm.a_grid, prm.Pz)

    def jac(fn):
        def one(p, t):
            return jax.vmap(lambda t_: fn(p, t_)[1])(t)

        return jax.jit(jax.vmap(one))(primals, tang)

    dk, dd = jac(_jvp_krylov), jac(_jvp_direct)
    assert dk.shape == (3, 3) + prm.a_grid.shape[1:] + prm.z.shape[1:]
    scale = float(jnp.max(jnp.abs(dd)))
    assert scale > 1e-3
    assert float(jnp.max(jnp.abs(dk - dd))) / scale < 1e-10
    # zero tangents give zero derivatives (no iterations, no NaN)
    zero = tuple(jnp.zeros_like(t[:, 0]) for t in tang)
    _, dz = jax.jit(jax.vmap(_jvp_krylov))(primals, zero)
    assert np.all(np.asarray(dz) == 0.0)


@pytest.fixture(scope="module")
def one_good(x64, hh_params_factory):
    """One variety (M = 1) at Na = 60: the product with T is done by scatter-adds."""
    prm = hh_params_factory(60, prices=(1.0,))
    pol = _household(prm)
    return prm, pol


def test_one_good_scatter_path(one_good, monkeypatch):
    prm, pol = one_good
    Na, Nz, M = pol.a_p.shape
    assert M == 1 and dist_mod._use_scatter(Na, M) and not dist_mod._use_scatter(Na, 3)
    args = (pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    # the scatter product equals the dense blocks' product and the matrix
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.random((Nz, Na)))
    op = dist_mod._transition_operator(*args)
    Q = transition_blocks(pol.a_p, pol.pi, prm.a_grid)
    np.testing.assert_allclose(
        np.asarray(op(x)), np.asarray(apply_transition(x.T, Q, prm.Pz).T), atol=1e-15
    )
    T = np.asarray(transition_matrix(*args))
    np.testing.assert_allclose(np.asarray(op(x)).T.ravel(), np.asarray(x).T.ravel() @ T, atol=1e-14)
    # distribution and derivatives agree with the LU solve
    lam, info = _krylov_info(*args)
    lam_d = _direct(*args)
    assert float(jnp.max(jnp.abs(lam - lam_d))) < 1e-12 and float(info.residual) <= 1e-14
    tangents = tuple(jnp.asarray(t) for t in _directions(prm, pol)["all"])
    _, dk = _jvp_krylov(args, tangents)
    _, dd = _jvp_direct(args, tangents)
    scale = float(jnp.max(jnp.abs(dd)))
    assert scale > 1e-3 and float(jnp.max(jnp.abs(dk - dd))) / scale < 1e-10
    # forcing the dense product gives the same distribution (the choice is only speed)
    monkeypatch.setattr(dist_mod, "_use_scatter", lambda Na, M: False)
    lam_dense, _ = stationary_distribution_info(*args)
    assert float(jnp.max(jnp.abs(lam_dense - lam))) < 1e-13
