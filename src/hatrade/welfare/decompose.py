r"""Proposition 2: the welfare effect of a marginal change of trade costs, split by channel
(docs/model.md section 5).

For a marginal change of log trade costs in a direction :math:`D_{ij}` (per unit of
:math:`\epsilon`, :math:`d_{ij} \to d_{ij} e^{\epsilon D_{ij}}`), with the general
equilibrium responses of wages, interest rates and transfers, the total derivative of
every state's value is split as

.. math::

    dV = (I - \beta T)^{-1} \Big[\underbrace{-\textstyle\sum_j \pi_j u'(c_j) c_j\, d\log p_j}_{A}
    + \underbrace{\textstyle\sum_j \pi_j \frac{u'(c_j)}{p_j}(z\,dw + a\,dR + dT)}_{B}
    + \underbrace{\textstyle\sum_j \pi_j \big(\beta \partial_{a'} EV(a'_j) - \frac{u'(c_j)}{p_j}\big)
      da'_j}_{C} + L \Big]

(A substitution/goods prices, B factor prices, C the change in asset holdings times the
Euler-equation wedge, L the re-choice of varieties, zero by the logit envelope property),
checked against the total derivative computed directly (forward-mode AD through the fixed
point). Aggregate: :math:`dW = \sum \mu\, dV + \sum V d\mu`.

The price responses :math:`du = (dw, dR, dT)` come from the implicit function theorem on
the solver's own market-clearing conditions :math:`E(u, \epsilon) = 0`
(:func:`hatrade.core.markets.residual_fn`, unknowns laid out by
:class:`hatrade.core.markets.Layout` with beta fixed): :math:`du = -E_u^{-1} E_\epsilon`,
both Jacobians exact (forward mode through the household fixed points and the stationary
distributions). Goods markets clear at factory prices (exporters receive
:math:`M_{ij}/(1+t_{ij})`), tariff revenue is rebated.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import transition_matrix
from hatrade.core.markets import Layout, model_arrays, residual_fn, solve_households
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.welfare.problem import (
    country_index,
    household_problem,
    tree_map,
    value_tangent,
)

__all__ = ["Decomposition", "decompose", "price_responses"]


@dataclass
class Decomposition:
    r"""Proposition 2 split of a marginal change (per unit change of log trade costs).

    Arrays (Na, Nz) in utils: ``total`` (dV by AD through the fixed point), ``A``
    (goods prices/substitution), ``B_wage``, ``B_interest``, ``B_transfer`` (factor prices
    and transfers; ``B`` their sum), ``C`` (asset holdings x Euler wedge), ``L`` (variety
    re-choice, zero by the logit envelope property, reported). ``sum_error`` =
    max |A + B + C + L - total|. ``dprices``: dw, dR, dT (all countries).
    ``dW``: aggregate split (households' dV at the old distribution, distribution change).
    ``dlog_home_share``: d log s_ii. ``gain_percent``: total / (dV/dlam) * 100, the
    marginal EV in percent per unit log change.
    """

    country: str
    total: np.ndarray
    A: np.ndarray
    B_wage: np.ndarray
    B_interest: np.ndarray
    B_transfer: np.ndarray
    C: np.ndarray
    L: np.ndarray
    sum_error: float
    dprices: dict
    dW: dict
    dlog_home_share: float
    gain_percent: np.ndarray
    general_equilibrium: bool

    @property
    def B(self):
        return self.B_wage + self.B_interest + self.B_transfer


def _direction(eq, direction) -> np.ndarray:
    """:math:`D_{ij}` (M, M) from an array (diagonal zeroed) or a Scenario (its pairs)."""
    from hatrade.analysis.counterfactual import Scenario, selected_pairs

    if isinstance(direction, Scenario):
        return selected_pairs(eq.world, direction).astype(float)
    D = np.asarray(direction, float)
    if D.shape != (eq.world.M, eq.world.M):
        raise ParameterError(
            f"direction has shape {D.shape}; it must be ({eq.world.M}, {eq.world.M})."
        )
    D = D.copy()
    np.fill_diagonal(D, 0.0)
    return D


def _layout(eq) -> Layout:
    """The solver's unknowns with beta fixed at ``eq``'s: wages (one dropped), R, T."""
    return Layout(
        M=eq.world.M,
        financial=eq.world.financial,
        solve_for="R",
        tariffs=eq.world.has_tariffs,
        R_fixed=None,
        beta_fixed=float(np.asarray(eq.prices.beta)),
    )


@enable_x64
def price_responses(eq, direction, *, hh_tol: float = 1e-12, hh_max_iter: int = 5000):
    r"""General-equilibrium price responses to a marginal change of log trade costs.

    Implicit function theorem on the solver's excess demands
    (:func:`hatrade.core.markets.residual_fn`) at ``eq`` with beta fixed:
    :math:`du/d\epsilon = -E_u^{-1} E_\epsilon`, where :math:`d_{ij} e^{\epsilon D_{ij}}`.

    Parameters
    ----------
    eq : Equilibrium
    direction : (M, M) array or Scenario
        :math:`D_{ij}` (see :func:`decompose`).

    Returns
    -------
    (dw, dR, dT) : arrays (M,)
        Per unit of :math:`\epsilon` (wages stay normalized: ``sum(dw) = 0``).
    """
    layout = _layout(eq)
    arrs = model_arrays(eq.world, eq.household, eq.income)
    Dj = jnp.asarray(_direction(eq, direction))
    x0 = eq.state

    def f(u, eps):
        a2 = arrs._replace(d=arrs.d * jnp.exp(eps * Dj))
        return residual_fn(a2, layout, hh_tol, hh_max_iter)(u, x0)[0]

    u = jnp.asarray(layout.pack(eq.prices.w, eq.prices.R, eq.prices.T, eq.prices.beta))
    Ju = jax.jit(jax.jacfwd(lambda uu: f(uu, 0.0)))(u)
    _, Je = jax.jit(lambda: jax.jvp(lambda e: f(u, e), (0.0,), (1.0,)))()
    du = -np.linalg.solve(np.asarray(Ju), np.asarray(Je))
    _, (dw, dR, dT, _) = jax.jvp(layout.prices, (u,), (jnp.asarray(du),))
    return np.asarray(dw), np.asarray(dR), np.asarray(dT)


def _household_tangent(eq, D, dw, dR, dT, hh_tol, hh_max_iter):
    """Households at ``eq``'s prices and their tangent along (eps D, dw, dR, dT)."""
    arrs = model_arrays(eq.world, eq.household, eq.income)
    w, R, T = (jnp.asarray(a) for a in (eq.prices.w, eq.prices.R, eq.prices.T))
    beta = jnp.asarray(eq.prices.beta)
    Dj = jnp.asarray(D)
    x0 = eq.state

    def world_fn(eps, dwv, dRv, dTv):
        a2 = arrs._replace(d=arrs.d * jnp.exp(eps * Dj))
        return solve_households(
            a2, w + eps * dwv, R + eps * dRv, T + eps * dTv, beta, x0, hh_tol, hh_max_iter
        )

    @jax.jit
    def run(dwv, dRv, dTv):
        return jax.jvp(lambda e: world_fn(e, dwv, dRv, dTv), (0.0,), (1.0,))

    return run(jnp.asarray(dw), jnp.asarray(dR), jnp.asarray(dT))


def _flows(pol, dpol, prm, dprm) -> np.ndarray:
    """Per-period flows of the split (Na Nz, 6): A, B_w, B_R, B_T, C, L."""
    Nz = pol.c.shape[1]
    g = float(prm.gamma)
    uprime = pol.c ** (-g)
    a = np.asarray(prm.a_grid)[:, None, None]
    z = np.asarray(prm.z)[None, :, None]
    p = np.asarray(prm.p)[None, None, :]
    dlogp = np.asarray(dprm.p)[None, None, :] / p
    A_flow = np.sum(pol.pi * (-uprime * pol.c * dlogp), axis=-1)
    mu = pol.pi * uprime / p
    B_w = np.sum(mu * z * float(dprm.w), axis=-1)
    B_R = np.sum(mu * a * float(dprm.R), axis=-1)
    B_T = np.sum(mu * float(dprm.T), axis=-1)
    # C: Euler wedge times the change in savings; continuation slope of the interpolant
    Wc = np.asarray(pol.V) @ np.asarray(prm.Pz).T  # W[k, z] = sum_z' P[z,z'] V[k, z']
    grid = np.asarray(prm.a_grid)
    hgrid = (grid[-1] - grid[0]) / (len(grid) - 1)
    kk = np.clip(np.floor((pol.a_p - grid[0]) / hgrid).astype(int), 0, len(grid) - 2)
    zi = np.broadcast_to(np.arange(Nz)[None, :, None], pol.a_p.shape)
    slope = (Wc[kk + 1, zi] - Wc[kk, zi]) / hgrid
    C_flow = np.sum(pol.pi * (float(prm.beta) * slope - uprime / p) * dpol.a_p, axis=-1)
    # L: re-choice of varieties (zero by the logit identity psi + v - sigma log pi = V)
    psi = np.asarray(prm.psi)[None]
    q = psi + pol.v - float(prm.sigma) * np.log(np.clip(pol.pi, 1e-300, None)) - float(prm.sigma)
    L_flow = np.sum(dpol.pi * q, axis=-1)
    return np.stack(
        [A_flow.ravel(), B_w.ravel(), B_R.ravel(), B_T.ravel(), C_flow.ravel(), L_flow.ravel()],
        axis=1,
    )


def _cumulate(pol, prm, flows) -> np.ndarray:
    r"""Present values :math:`(I - \beta T)^{-1}` flows under the old policies."""
    Na, Nz, _ = pol.c.shape
    Tm = np.asarray(
        transition_matrix(
            jnp.asarray(pol.a_p), jnp.asarray(pol.pi), jnp.asarray(prm.a_grid), jnp.asarray(prm.Pz)
        )
    )
    Amat = np.eye(Na * Nz) - float(prm.beta) * Tm
    return np.linalg.solve(Amat, flows)


@enable_x64
def decompose(
    eq,
    country,
    direction,
    *,
    general_equilibrium: bool = True,
    hh_tol: float = 1e-12,
    hh_max_iter: int = 5000,
) -> Decomposition:
    r"""Proposition 2: split a marginal change of log trade costs into A, B and C.

    Parameters
    ----------
    eq : Equilibrium (the point of linearization; beta fixed)
    country : str
    direction : (M, M) array or Scenario
        :math:`D_{ij} = d\log d_{ij}` per unit of the change (a Scenario: 1 on its selected
        pairs).
    general_equilibrium : bool
        True: wages, interest rates and transfers respond (:func:`price_responses`, the
        solver's market clearing, exact Jacobian). False: all of them held fixed (then
        B = 0; with log utility, Proposition 3).
    """
    D = _direction(eq, direction)
    ci = country_index(eq, country)
    M = eq.world.M
    if general_equilibrium:
        dw, dR, dT = price_responses(eq, D, hh_tol=hh_tol, hh_max_iter=hh_max_iter)
    else:
        dw, dR, dT = np.zeros(M), np.zeros(M), np.zeros(M)
    (agg, sol), (dagg, dsol) = _household_tangent(eq, D, dw, dR, dT, hh_tol, hh_max_iter)

    def take(x):
        return np.asarray(x[ci])

    pol, dpol = tree_map(take, sol["pol"]), tree_map(take, dsol["pol"])
    prm, dprm = tree_map(take, sol["prm"]), tree_map(take, dsol["prm"])
    lam, dlam = take(sol["lam"]), take(dsol["lam"])
    Na, Nz, _ = pol.c.shape
    cum = _cumulate(pol, prm, _flows(pol, dpol, prm, dprm))
    A_, Bw_, BR_, BT_, C_, L_ = (cum[:, k].reshape(Na, Nz) for k in range(6))
    total = np.asarray(dpol.V)
    sum_err = float(np.max(np.abs(A_ + Bw_ + BR_ + BT_ + C_ + L_ - total)))
    Mij, dMij = np.asarray(agg["M"])[ci], np.asarray(dagg["M"])[ci]
    dlog_sii = dMij[ci] / Mij[ci] - dMij.sum() / Mij.sum()
    dW = {
        "households": float(np.sum(lam * total)),
        "distribution": float(np.sum(np.asarray(pol.V) * dlam)),
    }
    dW["total"] = dW["households"] + dW["distribution"]
    # marginal EV in percent: total / dV/dlam at lam = 1
    prm_o, x_o = household_problem(eq, ci)
    _, S1, *_ = value_tangent(prm_o, x_o, jnp.asarray(1.0), hh_tol, hh_max_iter)
    gain = 100.0 * total / np.asarray(S1)
    return Decomposition(
        country=eq.world.countries[ci],
        total=total,
        A=A_,
        B_wage=Bw_,
        B_interest=BR_,
        B_transfer=BT_,
        C=C_,
        L=L_,
        sum_error=sum_err,
        dprices={
            "w": np.asarray(dw).tolist(),
            "R": np.asarray(dR).tolist(),
            "T": np.asarray(dT).tolist(),
        },
        dW=dW,
        dlog_home_share=float(dlog_sii),
        gain_percent=gain,
        general_equilibrium=general_equilibrium,
    )
