"""The equilibrium Jacobian composed from the household block (hatrade.core.jacobian).

The reference is ``hatrade.solve.world_residual.reference_jacobian``: forward mode through the whole world, one
direction per unknown. The composed Jacobian (M + 2 or M + 3 block directions and the
chain rule through the price and market-clearing maps) must equal it in every layout of
unknowns. Small worlds (3 countries, n_a = 20, 6 income states) except one slow check on
the 19-country baseline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hatrade import Household, ParameterError, World, solve_equilibrium
from hatrade.core.income import income_process
from hatrade.core.jacobian import (
    block_jacobian,
    direction_rows,
    equilibrium_jacobian,
    household_block,
    predict_state,
    solver_directions,
)
from hatrade.core.markets import Layout, initial_states, model_arrays
from hatrade.solve.equilibrium import EquilibriumJacobian
from hatrade.solve.world_residual import reference_jacobian as _jacobian
from hatrade.solve.world_residual import residual as _residual

HH = Household(n_a=20, n_perm=3, n_iid=2, beta=0.93)
TARIFFS = np.array([[0.0, 0.2, 0.1], [0.1, 0.0, 0.15], [0.05, 0.2, 0.0]])
TIGHT = 1e-12  # household and tangent tolerances of the comparisons


@pytest.fixture(scope="module")
def world3():
    return World(
        countries=("AAA", "BBB", "CCC"),
        tfp=[1.0, 0.8, 1.2],
        labor=[1.0, 0.5, 0.7],
        d=[[1.0, 1.3, 1.6], [1.2, 1.0, 1.4], [1.8, 1.25, 1.0]],
    )


def _layout(solve_for, financial, tariffs, M=3):
    return Layout(
        M=M,
        financial=financial,
        solve_for=solve_for,
        tariffs=tariffs,
        R_fixed=1.01 if solve_for == "beta" else None,
        beta_fixed=None if solve_for == "beta" else 0.93,
    )


def _point(world, layout, hh=HH, tol=TIGHT):
    """Unknowns away from equilibrium, the converged households there, and aggregates."""
    arrs = model_arrays(world, hh, income_process(hh))
    R = np.array([1.005, 1.0, 0.995]) if layout.financial == "autarky" else 1.003
    u = jnp.asarray(
        layout.pack(
            np.array([1.2, 0.9, 0.9]),
            R if layout.solve_for == "R" else 1.01,
            np.array([0.01, 0.02, 0.015]),
            0.93,
        )
    )
    w, Rv, T, b = layout.prices(u)
    r, (agg, sol) = _residual(u, initial_states(arrs, w, Rv, T, b), arrs, layout, tol, 5000)
    return arrs, u, r, agg, sol["state"]


CASES = [
    ("beta", "globalization", False),
    ("R", "globalization", False),
    ("R", "autarky", False),
    ("R", "globalization", True),
    ("beta", "globalization", True),
    ("R", "autarky", True),
]


@pytest.mark.parametrize("solve_for,financial,tariffs", CASES)
def test_composed_jacobian_equals_forward_mode_through_the_world(
    world3, solve_for, financial, tariffs
):
    layout = _layout(solve_for, financial, tariffs)
    world = world3.replace(financial=financial, tariffs=TARIFFS if tariffs else None)
    with jax.enable_x64(True):
        arrs, u, r, agg, x = _point(world, layout)
        assert np.abs(np.asarray(r)).max() > 1e-3  # not at an equilibrium: J is generic
        ref = np.asarray(_jacobian(u, x, None, arrs, layout, TIGHT, 5000, TIGHT)[0])
        rows = direction_rows(3, solver_directions(layout))
        w, R, T, b = layout.prices(u)
        blk = household_block(
            arrs, w, R, T, b, x, rows, tol=TIGHT, max_iter=5000, tangent_tol=TIGHT
        )
        J = equilibrium_jacobian(arrs, layout, u, agg, blk)
    assert J.shape == (layout.n, layout.n)
    assert len(rows) == 3 + 2 + int(tariffs)
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(J, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    # every unknown moves the markets: no zero column (a wrong chain rule often leaves one)
    assert np.all(np.abs(J).max(axis=0) > 1e-6)


def test_block_needs_the_layouts_directions(world3):
    layout = _layout("beta", "globalization", False)
    with jax.enable_x64(True):
        arrs, u, _, agg, x = _point(world3, layout, tol=1e-10)
        w, R, T, b = layout.prices(u)
        blk = household_block(arrs, w, R, T, b, x, direction_rows(3, ("p", "w", "R")))
        with pytest.raises(ParameterError, match="beta"):
            equilibrium_jacobian(arrs, layout, u, agg, blk)
    with pytest.raises(ParameterError, match="direction 'q'"):
        direction_rows(3, ("p", "q"))


def test_predicted_states_are_closer_than_the_old_ones(world3):
    """First-order prediction from the block tangents: error O(step^2), not O(step)."""
    layout = _layout("R", "globalization", False)
    with jax.enable_x64(True):
        arrs, u, _, _, x = _point(world3, layout)
        w, R, T, b = layout.prices(u)
        blk = household_block(
            arrs,
            w,
            R,
            T,
            b,
            x,
            direction_rows(3, solver_directions(layout)),
            tol=TIGHT,
            max_iter=5000,
            tangent_tol=1e-10,
        )
        u1 = u + jnp.array([0.01, -0.005, 0.001])
        x1 = _residual(u1, x, arrs, layout, TIGHT, 5000)[1][1]["state"]
        pred = predict_state(x, blk, layout, u, u1)
    old = np.abs(np.asarray(x1.c - x.c)).max()
    new = np.abs(np.asarray(x1.c - pred.c)).max()
    assert old > 1e-4
    assert new < 0.05 * old


def test_block_jacobian_for_calibration_has_m_plus_4_directions(world3):
    eq = solve_equilibrium(
        world3, HH.replace(beta=None), solve_for="beta", R=1.01, wages=[1.2, 0.9, 0.9]
    )
    bj = block_jacobian(eq, tangent_tol=1e-10)
    assert bj.p.shape == (3, 3, 3) and bj.w.shape == (3, 3) and bj.Abeta.shape == (3,)
    assert bj.T is None
    # spending responds to every own price; a higher beta raises asset demand
    assert np.all(np.abs(np.diagonal(bj.p, axis1=1, axis2=2)) > 0)
    assert np.all(bj.Abeta > 0)
    # the calibration module uses the same function
    from hatrade.calibration import calibrate

    assert calibrate.block_jacobian is block_jacobian


def _mean_consumption(pol, prm, lam, weights):
    """An extra block output: each country's weighted mean total consumption (M,)."""
    c = jnp.sum(pol.pi * pol.c, axis=-1)  # (M, Na, Nz)
    return jnp.einsum("kaz,kaz,z->k", lam, c, weights)


def test_psi_direction_and_extra_output(world3):
    """The optional psi_slope direction and extra output: the shared rows are those of the
    default block, and the new derivatives match central differences in psi_slope."""
    from hatrade.core.jacobian import psi_slope_direction

    hh = HH.replace(psi_slope=0.3)
    layout = _layout("R", "globalization", False)
    inc = income_process(hh)
    weights = jnp.linspace(1.0, 2.0, len(inc.z))
    with jax.enable_x64(True):
        arrs, u, _, agg, x = _point(world3, layout, hh=hh)
        w, R, T, b = layout.prices(u)
        base = household_block(
            arrs,
            w,
            R,
            T,
            b,
            x,
            direction_rows(3, ("p", "w", "R")),
            tol=TIGHT,
            max_iter=5000,
            tangent_tol=TIGHT,
        )
        unit = psi_slope_direction(world3, hh, inc)
        ext = household_block(
            arrs,
            w,
            R,
            T,
            b,
            x,
            direction_rows(3, ("p", "w", "R", "psi")),
            tol=TIGHT,
            max_iter=5000,
            tangent_tol=TIGHT,
            psi_unit=unit,
            output=_mean_consumption,
            output_args=(weights,),
        )

        def at(psi_slope):
            h2 = hh.replace(psi_slope=psi_slope)
            a2 = model_arrays(world3, h2, income_process(h2))
            _, (ag, sol) = _residual(u, x, a2, layout, TIGHT, 5000)
            return ag, _mean_consumption(sol["pol"], sol["prm"], sol["lam"], weights)

        h = 1e-4
        (agp, op), (agm, om) = at(0.3 + h), at(0.3 - h)
    assert base.doutput is None and ext.doutput.shape == (3 + 3, 3)
    assert [r for r in ext.rows if r[0] != "psi"] == list(base.rows)
    n = len(base.rows)
    np.testing.assert_allclose(ext.dM[:n], base.dM, rtol=0, atol=1e-12 * np.abs(base.dM).max())
    np.testing.assert_allclose(ext.dA[:n], base.dA, rtol=0, atol=1e-12 * np.abs(base.dA).max())
    k = ext.index("psi")
    fd_M = (np.asarray(agp["M"]) - np.asarray(agm["M"])) / (2 * h)
    fd_A = (np.asarray(agp["A"]) - np.asarray(agm["A"])) / (2 * h)
    fd_o = (np.asarray(op) - np.asarray(om)) / (2 * h)
    assert np.abs(fd_M).max() > 1e-4 and np.abs(fd_o).max() > 1e-4  # psi_slope matters
    np.testing.assert_allclose(ext.dM[k], fd_M, rtol=0, atol=1e-6 * np.abs(fd_M).max())
    np.testing.assert_allclose(ext.dA[k], fd_A, rtol=0, atol=1e-6 * np.abs(fd_A).max())
    np.testing.assert_allclose(ext.doutput[k], fd_o, rtol=0, atol=1e-6 * np.abs(fd_o).max())
    # the psi direction and psi_unit go together
    with jax.enable_x64(True):
        with pytest.raises(ParameterError, match="psi_unit"):
            household_block(arrs, w, R, T, b, x, direction_rows(3, ("p", "psi")))
        with pytest.raises(ParameterError, match="psi_unit"):
            household_block(arrs, w, R, T, b, x, direction_rows(3, ("p",)), psi_unit=unit)
        with pytest.raises(ParameterError, match="shape"):
            household_block(arrs, w, R, T, b, x, direction_rows(3, ("p", "psi")), psi_unit=unit[:2])


# ----------------------------------------------------------------------------- solver


@pytest.fixture(scope="module")
def eq_beta3(world3):
    return solve_equilibrium(
        world3,
        HH.replace(beta=None),
        solve_for="beta",
        R=1.01,
        wages=[1.2, 0.9, 0.9],
        beta_guess=0.93,
    )


def test_solver_counts_jacobian_work_and_labels_its_jacobian(eq_beta3):
    eq = eq_beta3
    assert eq.converged and eq.residual < 1e-10
    assert eq.jacobians >= 1
    assert eq.jacobian_directions == eq.jacobians * (3 + 2)  # p (3), w, beta
    J = eq.jacobian
    assert isinstance(J, EquilibriumJacobian)
    assert J.unknowns == ("w_AAA", "w_BBB", "beta")
    assert J.residuals == ("goods_BBB", "goods_CCC", "bonds")
    frame = J.to_frame()
    assert list(frame.columns) == list(J.unknowns) and list(frame.index) == list(J.residuals)
    assert np.asarray(J, float).shape == (3, 3)
    assert eq.summary()["jacobian_directions"] == eq.jacobian_directions


def test_jacobian_of_another_layout_is_rejected(world3, eq_beta3):
    with pytest.raises(
        ParameterError, match=r"unknowns \(w_AAA, w_BBB, beta\).*\(w_AAA, w_BBB, R\)"
    ):
        solve_equilibrium(
            world3, HH.replace(beta=eq_beta3.beta), solve_for="R", jacobian=eq_beta3.jacobian
        )
    with pytest.raises(ParameterError, match="shape"):
        solve_equilibrium(world3, HH.replace(beta=eq_beta3.beta), solve_for="R", jacobian=np.eye(4))


def test_jacobian_of_a_nearby_equilibrium_saves_the_block(world3, eq_beta3):
    """Same unknowns, slightly different world: Broyden from the given Jacobian."""
    world = world3.replace(d=np.asarray(world3.d) * np.where(np.eye(3) > 0, 1.0, 0.995))
    kw = dict(
        solve_for="beta",
        R=1.01,
        wages=eq_beta3.prices.w,
        beta_guess=eq_beta3.beta,
        state=eq_beta3.state,
        method="broyden",
    )
    fresh = solve_equilibrium(world, HH.replace(beta=None), **kw)
    reused = solve_equilibrium(world, HH.replace(beta=None), jacobian=eq_beta3.jacobian, **kw)
    assert fresh.jacobians >= 1 and reused.jacobians == 0
    assert reused.residual < 1e-10
    np.testing.assert_allclose(reused.prices.w, fresh.prices.w, rtol=1e-8)
    assert reused.beta == pytest.approx(fresh.beta, abs=1e-9)


def test_methods_agree(world3, eq_beta3):
    eq = solve_equilibrium(
        world3,
        HH.replace(beta=None),
        solve_for="beta",
        R=1.01,
        wages=[1.2, 0.9, 0.9],
        beta_guess=0.93,
        method="broyden",
    )
    assert eq.residual < 1e-10
    np.testing.assert_allclose(eq.prices.w, eq_beta3.prices.w, rtol=1e-8)
    assert eq.beta == pytest.approx(eq_beta3.beta, abs=1e-9)


# ----------------------------------------------------------------------------- 19 countries


@pytest.mark.slow
def test_composed_jacobian_on_the_baseline():
    """The 19-country calibration layout (18 wages + beta) at the published prices."""
    from hatrade.core.worlds import ek_world, published_household
    from hatrade.data import load_calibration

    cal = load_calibration("baseline")
    world, hh = ek_world("baseline"), published_household("baseline")
    layout = Layout(
        M=19,
        financial="globalization",
        solve_for="beta",
        tariffs=False,
        R_fixed=1.01,
        beta_fixed=None,
    )
    with jax.enable_x64(True):
        arrs = model_arrays(world, hh, income_process(hh))
        u = jnp.asarray(layout.pack(cal.wages.to_numpy(), 1.01, None, cal.beta))
        w, R, T, b = layout.prices(u)
        _, (agg, sol) = _residual(u, initial_states(arrs, w, R, T, b), arrs, layout, 1e-11, 5000)
        x = sol["state"]
        ref = np.asarray(_jacobian(u, x, None, arrs, layout, 1e-11, 5000, 1e-11)[0])
        blk = household_block(
            arrs,
            w,
            R,
            T,
            b,
            x,
            direction_rows(19, solver_directions(layout)),
            tol=1e-11,
            max_iter=5000,
            tangent_tol=1e-11,
        )
        J = equilibrium_jacobian(arrs, layout, u, agg, blk)
    np.testing.assert_allclose(J, ref, rtol=0, atol=1e-8 * np.abs(ref).max())


def test_chunked_block_equals_the_block_at_once(world3, monkeypatch):
    """Directions in chunks (memory, issue 19) give the block of all directions at once to
    rounding: derivatives, extra output and state tangents, warm starts either way, and a
    chunk sized from a memory limit (the uneven split is checked below)."""
    from hatrade.core.jacobian import psi_slope_direction
    from hatrade.core.memory import direction_chunk

    hh = HH.replace(psi_slope=0.3)
    layout = _layout("R", "globalization", False)
    inc = income_process(hh)
    rows = direction_rows(3, ("p", "w", "R", "psi"))  # as above: the whole block compiled once
    with jax.enable_x64(True):
        arrs, u, _, _, x = _point(world3, layout, hh=hh)
        w, R, T, b = layout.prices(u)
        kw = dict(
            tol=TIGHT,
            max_iter=5000,
            tangent_tol=TIGHT,
            psi_unit=psi_slope_direction(world3, hh, inc),
            output=_mean_consumption,
            output_args=(jnp.linspace(1.0, 2.0, len(inc.z)),),
        )
        whole = household_block(arrs, w, R, T, b, x, rows, chunk=len(rows), **kw)
        # a limit that fits 4 directions at a time: two chunks of 3
        n_a, n_z = HH.n_a, len(inc.z)
        monkeypatch.setenv("HATRADE_MEMORY_LIMIT", str(_bytes_for(3, n_a, n_z, len(rows), 4)))
        assert direction_chunk(3, n_a, n_z, len(rows)) == 4
        parts = household_block(arrs, w, R, T, b, x, rows, **kw)
        monkeypatch.delenv("HATRADE_MEMORY_LIMIT")
        warm = household_block(arrs, w, R, T, b, x, rows, chunk=4, tangents=parts.tangents, **kw)
        with pytest.raises(ParameterError, match="chunk = 0"):
            household_block(arrs, w, R, T, b, x, rows, chunk=0, **kw)
    assert isinstance(parts.tangents.c, np.ndarray) and parts.tangents.c.shape[0] == len(rows)
    for blk in (parts, warm):
        assert blk.rows == whole.rows
        for a, ref in (
            (blk.dM, whole.dM),
            (blk.dA, whole.dA),
            (blk.doutput, whole.doutput),
            (blk.tangents.c, whole.tangents.c),
            (blk.tangents.v, whole.tangents.v),
        ):
            ref = np.asarray(ref)
            np.testing.assert_allclose(a, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def _bytes_for(M, n_a, n_z, D, chunk):
    from hatrade.core.memory import estimate_bytes

    return estimate_bytes(M, n_a, n_z, directions=D, chunk=chunk)


def test_chunks_are_equal_padded_and_in_order():
    """The chunking itself (no compilation): 7 directions in chunks of at most 3 are three
    calls of 3 (the last padded with a zero direction), gathered in order."""
    from hatrade.core.jacobian import _chunked_jvps

    calls = []

    def call(sd, dx):
        calls.append(sd["w"].shape[0])
        return sd["w"] * 2.0, sd["w"][:, 0], dx, None

    seeds = {"w": jnp.arange(14.0).reshape(7, 2)}
    state = jnp.zeros(2)
    dM, dA, dx, dout = _chunked_jvps(call, seeds, None, state, 7, 3)
    assert calls == [3, 3, 3] and dout is None
    np.testing.assert_array_equal(dM, 2.0 * np.arange(14.0).reshape(7, 2))
    np.testing.assert_array_equal(dA, np.arange(0.0, 14.0, 2.0))
    assert dx.shape == (7, 2) and not dx.any()
    warm = np.ones((7, 2))
    assert (_chunked_jvps(call, seeds, warm, state, 7, 3)[2] == 1.0).all()
    assert calls[-1] == 3 and len(calls) == 6
