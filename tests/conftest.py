"""Shared fixtures for the core test suite (issue 2).

hatrade's public entry points switch JAX's 64-bit mode on for the duration of each call
(:func:`hatrade.core.x64.enable_x64`), so tests of public functions need nothing. Tests that
call the low-level JAX functions directly (:mod:`hatrade.core.household`,
:mod:`hatrade.core.distribution`) request the module-scoped :func:`x64` fixture, which turns
64-bit mode on for that module only; the global configuration is never changed, so a
missing ``enable_x64`` on a public function is still caught by the rest of the suite.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hatrade.core.household import HHParams
from hatrade.core.income import income_process
from hatrade.core.params import Household, World


def _persistent_compilation_cache() -> None:
    """Keep JAX's compiled executables on disk for the whole test run (CI time).

    Most of the suite's time is XLA compilation, and the same functions are compiled again
    and again: after each module (:func:`_fresh_jax_caches` drops the in-memory cache), in
    every ``pytest-xdist`` worker, in the subprocess tests (CLI, interrupts) and in the
    second ``pytest`` invocation of ``.ci/run``. JAX's persistent cache turns a repeated
    compilation into a file read; the executables are the same, so are the results.

    The folder is ``$JAX_COMPILATION_CACHE_DIR`` when set (``.ci/run`` sets a fresh one per
    run), else ``<tmp>/hatrade-test-jax-cache-<uid>`` (kept between local runs; JAX keys its
    entries by the program, the compile options and the jax/jaxlib versions). The setting
    goes into the environment too, so subprocesses and xdist workers share the folder.
    ``HATRADE_TEST_JAX_CACHE=off`` runs the suite without it. Set once, before the first
    compilation, and never switched in this process (switching it mid-run crashed XLA
    compilations before: tests/test_replicate.py runs the scoped cache in a subprocess).
    """
    if os.environ.get("HATRADE_TEST_JAX_CACHE", "").lower() in ("0", "off", "false", "no"):
        return
    default = Path(tempfile.gettempdir()) / f"hatrade-test-jax-cache-{os.getuid()}"
    folder = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(default))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )
    jax.config.update(
        "jax_persistent_cache_min_entry_size_bytes",
        int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
    )


_persistent_compilation_cache()


@pytest.fixture(scope="module")
def x64():
    """JAX 64-bit mode for the requesting module (restored afterwards)."""
    with jax.enable_x64(True):
        yield


def make_hh_params(
    n_a: int = 30,
    prices=(1.0, 1.25, 1.6),
    *,
    hh: Household | None = None,
    w: float = 1.0,
    R: float = 1.01,
    T: float = 0.0,
    beta: float = 0.93,
    home: int = 0,
) -> HHParams:
    r"""One country's household inputs (call under 64-bit mode).

    Defaults: the baseline preferences (gamma 1.45, sigma 0.33, psi_slope 0.725), a reduced
    income process (3 persistent x 2 transitory states), three varieties with prices
    ``prices``, a linear grid of ``n_a`` points on [-phi, a_max] (TFP 1), and the home-bias
    shifter :math:`\psi(z, j) = \psi_{slope} \log z_{perm}` on variety ``home``.
    """
    hh = hh or Household(n_perm=3, n_iid=2, n_a=n_a)
    inc = income_process(hh)
    M = len(prices)
    psi = np.zeros((inc.n, M))
    psi[:, home] = hh.psi_slope * inc.log_z_perm

    def f(x):
        return jnp.asarray(np.asarray(x, dtype=np.float64))

    return HHParams(
        p=f(prices),
        w=f(w),
        R=f(R),
        T=f(T),
        beta=f(beta),
        gamma=f(hh.gamma),
        sigma=f(hh.sigma_eps),
        psi=f(psi),
        a_grid=f(np.linspace(-hh.phi, hh.a_max, n_a)),
        z=f(inc.z),
        Pz=f(inc.P),
    )


@pytest.fixture(scope="session")
def hh_params_factory():
    """:func:`make_hh_params` (use it under the :func:`x64` fixture)."""
    return make_hh_params


@pytest.fixture(scope="session")
def small_household() -> Household:
    """Baseline preferences on a coarse grid (n_a = 30) with beta fixed at 0.93."""
    return Household(n_a=30, beta=0.93)


@pytest.fixture(scope="session")
def three_countries() -> World:
    """Three countries with different TFP and labor and asymmetric trade costs."""
    return World(
        countries=("AAA", "BBB", "CCC"),
        tfp=[1.0, 0.8, 1.2],
        labor=[1.0, 0.5, 0.7],
        d=[[1.0, 1.3, 1.6], [1.2, 1.0, 1.4], [1.8, 1.25, 1.0]],
    )


def excess_demands(eq) -> dict:
    r"""Relative excess demands of a solved or evaluated world, recomputed from aggregates.

    Goods: :math:`(\sum_i M_{ij}/(1+t_{ij}) - Y_j)/Y_j` for every j (spending net of tariffs
    is what the exporter receives; without tariffs this is :math:`\sum_i M_{ij}`); bonds:
    :math:`\sum_i A_i / \sum_i Y_i` (globalization) or :math:`A_i/Y_i` (autarky); tariff
    budgets :math:`(T_i L_i - G_i)/Y_i`.
    """
    agg = eq.aggregates
    world = eq.world
    Mij, Y, A = np.asarray(agg["M"]), np.asarray(agg["Y"]), np.asarray(agg["A"])
    t = np.zeros_like(Mij) if world.tariffs is None else world.tariffs
    goods = ((Mij / (1.0 + t)).sum(axis=0) - Y) / Y
    bonds = A / Y if world.financial == "autarky" else np.atleast_1d(A.sum() / Y.sum())
    budget = (eq.prices.T * world.labor - np.asarray(agg["G"])) / Y
    return {"goods": goods, "bonds": bonds, "tariff_budget": budget}


@pytest.fixture(scope="session")
def market_residuals():
    """:func:`excess_demands` as a fixture."""
    return excess_demands


@pytest.fixture(scope="module", autouse=True)
def _fresh_jax_caches():
    """Drop JAX's compiled functions after each test module (a long single-process run
    crashed inside an XLA compilation late in the suite)."""
    yield
    jax.clear_caches()


def transition_jacobian_and_fd(eq, Tn: int):
    """The transition Jacobian at the steady state ``eq`` (T = Tn, no shock) and its central
    finite differences through direct path evaluations (step 1e-6): (J, Jfd, problem)."""
    from hatrade.solve.path_jacobian import transition_jacobian
    from hatrade.solve.transition import PathProblem, PathShocks, TransitionOptions

    M = eq.world.M
    t = np.zeros((Tn, M, M)) + (0.0 if eq.world.tariffs is None else eq.world.tariffs)
    sh = PathShocks(np.tile(eq.world.d, (Tn, 1, 1)), t, np.tile(eq.world.labor, (Tn, 1)))
    prob = PathProblem(eq, eq, sh, TransitionOptions(periods=Tn))
    U0 = prob.guess()
    assert np.max(np.abs(prob.residuals(U0)[0])) < 1e-9
    J = transition_jacobian(prob.arrs, prob.layout, eq, Tn)
    n, eps = prob.layout.n, 1e-6
    Jfd = np.zeros_like(J)
    for c in range(Tn * n):
        dU = np.zeros(Tn * n)
        dU[c] = eps
        hp = prob.residuals(U0 + dU.reshape(Tn, n))[0]
        hm = prob.residuals(U0 - dU.reshape(Tn, n))[0]
        Jfd[:, c] = (hp - hm).ravel() / (2 * eps)
    return J, Jfd, prob
