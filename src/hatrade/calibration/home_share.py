r"""The home-share gap moment and the psi_slope direction of the household block.

psi_slope (docs/model.md 1.1) is the optional 47th parameter of the calibration by
"gravity as a guide" (:func:`hatrade.calibration.calibrate.calibrate`, ``home_share_gap=``);
its moment is the home share of the top labor-income quintile minus that of the bottom
quintile of one country (:func:`home_share_gaps`). Quintile membership is fixed by the
income process (:func:`income_group_fractions`): only shares and masses within the groups
move, so the moment is differentiable, and :func:`block_jacobian_psi` gives the household
block with the psi_slope direction and the gaps as outputs (M + 5 directions).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.analysis.groups import INCOME_GROUPS, income_fractions
from hatrade.core.jacobian import (
    BlockJacobian,
    direction_rows,
    household_block,
    psi_slope_direction,
)
from hatrade.core.markets import model_arrays
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "GAP_GROUPS",
    "income_group_fractions",
    "home_share_gaps",
    "PsiBlock",
    "block_jacobian_psi",
]


#: Income groups of the home-share gap (population quantiles of labor income w z):
#: the gap is the home share of the top group minus that of the bottom group.
GAP_GROUPS = {"bottom": INCOME_GROUPS["bottom_20"], "top": INCOME_GROUPS["top_20"]}


def income_group_fractions(inc, lo: float, hi: float) -> np.ndarray:
    r"""Share of each income state's population inside the labor-income quantile range
    [lo, hi] (Nz,): :func:`hatrade.analysis.groups.income_fractions`.

    The weight of state (a, z) in the group is :math:`\lambda(a,z) f(z)` with these
    constant :math:`f` (the groups of the welfare summaries and the micro table, ties split
    by mass), so the moment is differentiable.
    """
    return income_fractions(inc, lo, hi)


def _gap_fractions(inc) -> np.ndarray:
    return np.stack(
        [
            income_group_fractions(inc, *GAP_GROUPS["top"]),
            income_group_fractions(inc, *GAP_GROUPS["bottom"]),
        ]
    )


def _home_share_gap(pi, c, p, lam, home, fr):
    r"""One country's home-share gap: :math:`H_{top} - H_{bottom}`, with
    :math:`H_g = \sum \lambda f_g h / \sum \lambda f_g` and the household home share
    :math:`h = \pi_i p_{ii} c_i / \sum_j \pi_j p_{ij} c_j`."""
    spend = pi * c * p
    h = spend[..., home] / jnp.sum(spend, axis=-1)
    wt = lam[None] * fr[:, None, :]  # (2, Na, Nz)
    H = jnp.sum(wt * h[None], axis=(1, 2)) / jnp.sum(wt, axis=(1, 2))
    return H[0] - H[1]


def _gaps(pol, p, lam, fr):
    M = p.shape[0]
    return jax.vmap(_home_share_gap, in_axes=(0, 0, 0, 0, 0, None))(
        pol.pi, pol.c, p, lam, jnp.arange(M), fr
    )


@enable_x64
def home_share_gaps(eq: Equilibrium) -> pd.Series:
    r"""Rich-minus-poor home shares of every country (docs/model.md 4).

    For country i: the mean household home share :math:`h(a,z) = \pi_i p_{ii} c_i /
    \sum_j \pi_j p_{ij} c_j` of the top labor-income quintile minus that of the bottom
    quintile, weighted exactly by the stationary distribution (the group means of
    :func:`hatrade.analysis.cross_section.micro_table`: ``import_share`` of ``bottom_20`` minus
    that of ``top_20``). See :func:`income_group_fractions` for the group weights.
    """
    fr = jnp.asarray(_gap_fractions(eq.income))
    pol = eq.policies
    g = _gaps(type(pol)(*[jnp.asarray(a) for a in pol]), jnp.asarray(eq.p), jnp.asarray(eq.lam), fr)
    return pd.Series(np.asarray(g), index=list(eq.countries), name="home_share_gap")


@dataclass
class PsiBlock:
    r"""The psi_slope direction of the household block and the home-share gaps.

    ``M`` (M, M) :math:`dM_{ij}/d\psi_{slope}`; ``A`` (M,) :math:`dA_i/d\psi_{slope}`;
    ``gap`` (M,) the home-share gaps at the solved point; ``gp`` (M, M)
    :math:`d\,gap_i/d\log p_{ik}`; ``gw, gA, gR, gbeta, gpsi`` (M,) their derivatives in the
    log wage, the own log TFP scaling, R, beta and psi_slope.
    """

    M: np.ndarray
    A: np.ndarray
    gap: np.ndarray
    gp: np.ndarray
    gw: np.ndarray
    gA: np.ndarray
    gR: np.ndarray
    gbeta: np.ndarray
    gpsi: np.ndarray


def _gaps_output(pol, prm, lam, fr):
    """The gaps as an extra output of the household block (:func:`household_block`)."""
    return _gaps(pol, prm.p, lam, fr)


@enable_x64
def block_jacobian_psi(
    eq: Equilibrium, tangents=None, tol: float = 1e-10, tangent_tol: float = 1e-9
) -> tuple[BlockJacobian, PsiBlock]:
    r"""The household-block Jacobian (:func:`hatrade.core.jacobian.block_jacobian`) with one more direction,
    psi_slope, and the home-share gaps of every country as outputs (M + 5 directions).

    psi_slope enters country i's problem as :math:`\psi_i(z, i) = \psi_{slope}
    A_i^{1-\gamma} \log z_{perm}` (docs/model.md 1.1) on the home variety only; its direction
    is that array per unit of psi_slope (:func:`hatrade.core.jacobian.psi_slope_direction`),
    scaled like psi by the TFP direction. The gap of country i (:func:`home_share_gaps`)
    depends on i's policies and distribution only; its income groups are fixed
    (:func:`income_group_fractions`), so it is differentiable. Both are options of
    :func:`hatrade.core.jacobian.household_block`.
    """
    if eq.world.has_tariffs:
        raise ParameterError("block_jacobian_psi supports worlds without tariffs.")
    arrs = model_arrays(eq.world, eq.household, eq.income)
    M = eq.world.M
    rows = direction_rows(M, ("p", "w", "A", "R", "beta", "psi"))
    blk = household_block(
        arrs,
        eq.prices.w,
        eq.prices.R,
        eq.prices.T,
        eq.prices.beta,
        eq.state,
        rows,
        tangents=tangents,
        tol=tol,
        tangent_tol=tangent_tol,
        psi_unit=psi_slope_direction(eq.world, eq.household, eq.income),
        output=_gaps_output,
        output_args=(jnp.asarray(_gap_fractions(eq.income)),),
    )
    ip, k = blk.p_rows(), {n: blk.index(n) for n in ("w", "A", "R", "beta", "psi")}
    dg = blk.doutput  # (M+5, M): d gap_i along each direction
    pb = PsiBlock(
        M=blk.dM[k["psi"]],
        A=blk.dA[k["psi"]],
        gap=home_share_gaps(eq).to_numpy(),
        gp=dg[ip].T,
        gw=dg[k["w"]],
        gA=dg[k["A"]],
        gR=dg[k["R"]],
        gbeta=dg[k["beta"]],
        gpsi=dg[k["psi"]],
    )
    return BlockJacobian.from_block(blk), pb
