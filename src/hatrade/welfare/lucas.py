r"""The consumption-equivalent (Lucas) welfare measure (docs/model.md section 5).

:math:`g(a,z)` scales consumption of the old allocation in every period and state (choices
unchanged) so that it is worth :math:`V^{new}`. With the old policies, V splits exactly as
:math:`V = U_c + U_\psi` with

.. math::

    U_c = (I - \beta T)^{-1} \sum_j \pi_j u(c_j), \qquad
    U_\psi = (I - \beta T)^{-1} \sum_j \pi_j (\psi_j - \sigma \log \pi_j)

(T the household's Markov matrix over (a, z), the lottery weights of the value update),
so :math:`(1+g)^{1-\gamma} U_c + U_\psi = V^{new}` in closed form
(:math:`g = \exp((1-\beta)(V^{new} - V^{old})) - 1` at :math:`\gamma = 1`). Unlike the
equivalent variation it is defined in every state.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import transition_matrix
from hatrade.core.household import policies, utility
from hatrade.core.x64 import enable_x64
from hatrade.welfare.problem import country_index, household_problem

__all__ = ["consumption_equivalent", "value_split"]


@enable_x64
def value_split(eq, country):
    r"""Policy evaluation of the old allocation: :math:`U_c`, :math:`U_\psi` and the check.

    Returns (U_c, U_psi, T) with :math:`U_c + U_\psi = V` up to the household tolerance
    (arrays (Na, Nz); T the (Na Nz)^2 Markov matrix).
    """
    ci = country_index(eq, country)
    prm, x = household_problem(eq, ci)
    pol = policies(x, prm)
    Na, Nz, _ = pol.c.shape
    T = transition_matrix(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    r_c = jnp.sum(pol.pi * utility(pol.c, prm.gamma), axis=-1).ravel()
    r_psi = jnp.sum(
        pol.pi * (prm.psi[None] - prm.sigma * jnp.log(jnp.clip(pol.pi, 1e-300))), axis=-1
    ).ravel()
    A = jnp.eye(Na * Nz) - prm.beta * T
    U = jnp.linalg.solve(A, jnp.stack([r_c, r_psi], axis=1))
    return (np.asarray(U[:, 0]).reshape(Na, Nz), np.asarray(U[:, 1]).reshape(Na, Nz), np.asarray(T))


@enable_x64
def consumption_equivalent(old, V_new, country) -> tuple[np.ndarray, float]:
    r"""Lucas consumption equivalent :math:`g(a,z)` (fraction) for target values ``V_new``.

    Solves :math:`(1+g)^{1-\gamma} U_c + U_\psi = V^{new}` per state (the old allocation,
    all consumption scaled by 1+g). Returns (g, split_error) where split_error is
    :math:`\max|U_c + U_\psi - V^{old}|` (the policy evaluation check).
    """
    ci = country_index(old, country)
    U_c, U_psi, _ = value_split(old, ci)
    prm, x = household_problem(old, ci)
    V_old = np.asarray(policies(x, prm).V)
    err = float(np.max(np.abs(U_c + U_psi - V_old)))
    gamma = float(old.household.gamma)
    beta = float(old.beta)
    V_new = np.asarray(V_new, float)
    if abs(gamma - 1.0) < 1e-12:
        g = np.exp((1.0 - beta) * (V_new - U_c - U_psi)) - 1.0
    else:
        ratio = (V_new - U_psi) / U_c
        with np.errstate(invalid="ignore"):
            g = np.where(ratio > 0, ratio ** (1.0 / (1.0 - gamma)) - 1.0, np.nan)
    return g, err
