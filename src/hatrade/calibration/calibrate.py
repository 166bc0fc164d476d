r"""Calibration by "gravity as a guide" (docs/model.md section 4).

The parameters :math:`\vartheta = (\log A_1..\log A_{M-1}, \theta^m_1..\theta^m_{M-1},
\delta_1..\delta_K)` are chosen so that the gravity regression run on model-generated trade
reproduces the regression on the data: :math:`m(\vartheta) = m^*`, with
:math:`m = (S_1..S_{M-1}, \theta^m_1..\theta^m_{M-1}, \text{coefficients})`; beta is solved
with the wages so that the world bond market clears at the given R.

Algorithm (Newton in the parameters through the equilibrium, implicit function theorem):

1. At :math:`\vartheta_k` solve the equilibrium (wages, beta) exactly, warm-started, with
   the equilibrium Jacobian from step 2 of the previous iteration (few household solves).
2. Compute the *household-block Jacobian*: the derivatives of every country's spending
   :math:`M_{ij}` and asset demand :math:`A_i` with respect to its log prices
   :math:`\log p_{ik}`, its wage (income), its TFP scaling (grid, sigma, psi), R and beta.
   Countries are independent, so all countries are differentiated at once: M + 4 forward
   directions in total (implicit differentiation of the household fixed point, with the
   stationary distribution re-solved), whatever the number of parameters.
3. Everything else is a known map (prices :math:`p_{ij} = d_{ij}(\vartheta) w_j / A_j`,
   market clearing, the regression, which is linear: :math:`m = G y`), so the Jacobians of
   excess demands and moments with respect to (wages, beta) and all parameters follow by
   the chain rule (``jax.jacfwd`` of a linearized composite), and
   :math:`dm/d\vartheta = \partial_\vartheta m - \partial_u m\, (\partial_u E)^{-1}
   \partial_\vartheta E`.
4. Newton step in :math:`\vartheta`, with the predicted equilibrium change as warm start.

Each iteration costs one equilibrium solve plus M + 4 tangent directions; the near-linear
map from trade-cost parameters to gravity coefficients makes Newton converge in a few
iterations. Every iteration is logged and checkpointed (JSON) and a run resumes from its
checkpoint.

psi_slope (optional, ``home_share_gap=``): a 47th parameter with a 47th moment, the home
share of the top labor-income quintile minus that of the bottom quintile of one country
(:func:`home_share_gaps`). The household block then has M + 5 directions (psi_slope
enters :math:`\psi_i(z, i) = \psi_{slope} A_i^{1-\gamma} \log z_{perm}`, docs/model.md 1.1) and
the gaps as outputs (:func:`block_jacobian_psi`), and the same Newton iteration solves for
all 47 with the exact Jacobian. Quintile membership is fixed by the income process
(:func:`income_group_fractions`): only shares and masses within the groups move, so the
moment is differentiable. Micro targets for gamma and sigma_eps (an outer loop) and
robustness grids are in :mod:`hatrade.calibration.micro` and :mod:`hatrade.calibration.grid`; the gravity moments and the map
from parameters to a world (:class:`GravitySetup`, :func:`ek_setup`, :func:`data_moments`,
:func:`model_moments`, :func:`world_from_params`, re-exported here) in
:mod:`hatrade.calibration.moments`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.analysis.groups import INCOME_GROUPS, income_fractions
from hatrade.calibration.micro_targets import check_calibrate_options
from hatrade.calibration.moments import (
    GravitySetup,
    data_moments,
    ek_setup,
    model_moments,
    world_from_params,
)
from hatrade.core.errors import EquilibriumError
from hatrade.core.income import income_process
from hatrade.core.jacobian import (
    BlockJacobian,
    block_jacobian,
    direction_rows,
    household_block,
    psi_slope_direction,
)
from hatrade.core.markets import Layout, model_arrays
from hatrade.core.params import Household, ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.data import load_labor
from hatrade.io.atomic import write_json
from hatrade.solve.equilibrium import Equilibrium, solve_equilibrium

__all__ = [
    "GravitySetup",
    "ek_setup",
    "CalibrationError",
    "CalibrationResult",
    "calibrate",
    "model_moments",
    "block_jacobian",
    "block_jacobian_psi",
    "home_share_gaps",
    "income_group_fractions",
    "PsiBlock",
    "GAP_GROUPS",
]

log = logging.getLogger(__name__)


class CalibrationError(RuntimeError):
    """The calibration stalled or failed; the best point is saved and reported."""


# ----------------------------------------------------------------------------- block Jacobian


def _composite_jacobian(
    eq: Equilibrium,
    bj: BlockJacobian,
    setup: GravitySetup,
    theta0,
    layout: Layout,
    psi: "PsiBlock | None" = None,
    gap_country: int | None = None,
):
    """Jacobians of (excess demands, moments) w.r.t. (u, theta) at the solved point.

    With ``psi`` (:func:`block_jacobian_psi`), ``theta0`` has psi_slope appended and the
    moments the home-share gap of the country at index ``gap_country``.
    """
    M = eq.world.M
    M0 = jnp.asarray(eq.spending)
    A0 = jnp.asarray(eq.aggregates["A"])
    N = jnp.asarray(eq.aggregates["N"])
    beta0 = float(eq.prices.beta)
    R0 = float(eq.prices.R[0])
    theta0 = jnp.asarray(theta0)
    K = setup.n_params
    u0 = jnp.asarray(layout.pack(eq.prices.w, eq.prices.R, None, beta0))

    def logp(u, theta):
        w, _, _, _ = layout.prices(u)
        lA = setup.log_tfp(theta[:K])
        return setup.log_d(theta[:K]) + (jnp.log(w) - lA)[None, :], jnp.log(w), lA

    lp0, lw0, lA0 = logp(u0, theta0)

    def phi(u, theta):
        lp, lw, lA = logp(u, theta)
        w, R, _, beta = layout.prices(u)
        dlp, dw, dA_ = lp - lp0, lw - lw0, lA - lA0
        dR, db = R[0] - R0, beta - beta0
        Mij = (
            M0
            + jnp.einsum("ijk,ik->ij", bj.p, dlp)
            + bj.w * dw[:, None]
            + bj.A * dA_[:, None]
            + bj.R * dR
            + bj.beta * db
        )
        Ai = (
            A0
            + jnp.einsum("ik,ik->i", bj.Ap, dlp)
            + bj.Aw * dw
            + bj.AA * dA_
            + bj.AR * dR
            + bj.Abeta * db
        )
        if psi is not None:
            dpsi = theta[K] - theta0[K]
            Mij = Mij + psi.M * dpsi
            Ai = Ai + psi.A * dpsi
        Y = w * N
        goods = (jnp.sum(Mij, axis=0) - Y) / Y
        bond = jnp.sum(Ai, keepdims=True) / jnp.sum(Y)
        ed = jnp.concatenate([goods[1:], bond])
        m = setup.moments_from_spending(Mij)
        if psi is not None:
            c = gap_country
            gap = (
                psi.gap[c]
                + psi.gp[c] @ dlp[c]
                + psi.gw[c] * dw[c]
                + psi.gA[c] * dA_[c]
                + psi.gR[c] * dR
                + psi.gbeta[c] * db
                + psi.gpsi[c] * dpsi
            )
            m = jnp.concatenate([m, gap[None]])
        return ed, m

    (Eu, Et), (mu, mt) = jax.jacfwd(phi, argnums=(0, 1))(u0, theta0)
    del M
    return np.asarray(Eu), np.asarray(Et), np.asarray(mu), np.asarray(mt)


# ----------------------------------------------------------------------------- psi_slope

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
    r"""The household-block Jacobian (:func:`block_jacobian`) with one more direction,
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


# ----------------------------------------------------------------------------- driver


@dataclass
class CalibrationResult:
    """Calibrated parameters, the equilibrium there, and the path."""

    params: np.ndarray
    equilibrium: Equilibrium
    moments: np.ndarray
    targets: np.ndarray
    converged: bool
    iterations: int
    residual: float
    equilibrium_solves: int
    household_solves: int
    block_jacobians: int
    history: list = field(default_factory=list)
    seconds: float = 0.0
    psi_slope: float | None = None
    gap_country: str | None = None

    @property
    def household(self) -> Household:
        """The household parameters of the calibrated equilibrium (psi_slope included)."""
        return self.equilibrium.household

    def moment_table(self, setup: GravitySetup | None = None) -> pd.DataFrame:
        """Moment, target, model and difference; with psi_slope calibrated the last row is
        ``home_share_gap_<country>`` (top minus bottom labor-income quintile)."""
        setup = setup or ek_setup()
        c = setup.countries[:-1]
        names = [f"S_{x}" for x in c] + [f"theta_m_{x}" for x in c] + list(setup.names)
        if len(self.targets) == len(names) + 1:
            names.append(f"home_share_gap_{self.gap_country}")
        return pd.DataFrame(
            {
                "moment": names,
                "target": self.targets,
                "model": self.moments,
                "difference": self.moments - self.targets,
            }
        )


@enable_x64
def calibrate(
    theta0,
    household: Household,
    *,
    setup: GravitySetup | None = None,
    targets=None,
    labor=None,
    R: float = 1.01,
    wages=None,
    beta_guess: float = 0.93,
    tol: float = 1e-8,
    max_iter: int = 15,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress=None,
    home_share_gap: float | None = None,
    gap_country: str | None = None,
    state=None,
) -> CalibrationResult:
    r"""Solve for the parameters whose model-generated gravity moments equal the targets.

    Parameters
    ----------
    theta0 : array (2(M-1)+K,)
        Starting parameters (the published layout for the EK setup: 46 numbers).
    household : Household
        gamma, sigma_eps, psi_slope (beta is solved at R; psi_slope is the start when
        ``home_share_gap`` is given).
    setup : GravitySetup, optional
        Default: the paper's Eaton-Kortum regression (:func:`ek_setup`).
    targets : array, optional
        Moments to match. Default: the data moments (:func:`data_moments`).
    labor : array (M,), optional
        Default: the published labor forces.
    R : float
        Interest rate at which beta clears the bond market.
    wages, beta_guess : starting equilibrium guess (beta_guess in (0, 1)).
    tol, max_iter : float, int
        Convergence: max |model moment - target| in (0, 1); Newton iterations (>= 1).
    checkpoint : path, optional
        JSON file written after every iteration (best point, path); with ``resume=True`` an
        existing checkpoint is the starting point.
    home_share_gap : float, optional
        Target of the rich-minus-poor home share of ``gap_country`` (top minus bottom
        labor-income quintile, :func:`home_share_gaps`). When given, psi_slope is calibrated
        too: a 47th parameter (appended to the 46) with this 47th moment, in the same Newton
        iteration with the exact Jacobian: the household block gets the psi_slope direction
        and the gaps as outputs (:func:`block_jacobian_psi`, M + 5 directions). Income
        quintile membership depends on the income process alone
        (:func:`income_group_fractions`), so only the shares and the masses within the
        groups move and the moment is differentiable.
    gap_country : str, optional
        Country of the home-share gap (default "USA").
    state : HHState, optional
        Warm start of the household problems (``other.equilibrium.state``).

    Returns
    -------
    CalibrationResult
        ``params`` the 2(M-1)+K parameters; ``psi_slope`` the calibrated psi_slope (None
        when it is held); ``moments``/``targets`` with the gap last when calibrated.

    Raises
    ------
    ParameterError
        Wrong lengths, an out-of-range ``home_share_gap``, an unknown ``gap_country``, or a
        checkpoint of another kind of calibration.
    CalibrationError
        When the iteration stalls or reaches ``max_iter``; the best point is saved in the
        checkpoint and the message names the moments that are off.
    """
    t0 = time.perf_counter()
    setup = setup or ek_setup()
    check_calibrate_options(tol=tol, max_iter=max_iter, R=R, beta_guess=beta_guess)
    theta, targets, gi, gap_country = _check_inputs(
        theta0, targets, setup, household, home_share_gap, gap_country
    )
    with_psi = home_share_gap is not None
    if labor is None:
        labor = load_labor().to_numpy()
    hh = household.replace(beta=None)
    ckpt = Path(checkpoint) if checkpoint else None
    history: list = []
    if resume and ckpt and ckpt.exists():
        theta, wages, beta_guess, history = _resume(ckpt, with_psi)
    pb = _Problem(
        setup=setup,
        targets=targets,
        hh=hh,
        inc=income_process(hh),
        labor=labor,
        R=R,
        with_psi=with_psi,
        gi=gi,
        gap_country=gap_country,
        ckpt=ckpt,
        layout=Layout(
            M=setup.M,
            financial="globalization",
            solve_for="beta",
            tariffs=False,
            R_fixed=float(R),
            beta_fixed=None,
        ),
    )
    st = _Iterate(theta=theta, wages=wages, beta_guess=beta_guess, state=state, history=history)
    it0 = len(history)
    for it in range(it0, it0 + max_iter + 1):
        eq = _solve_at(pb, st)
        if eq is None:  # the equilibrium failed after a step, which was halved
            continue
        m, F, res = _record(pb, st, it, eq, t0, progress)
        if st.best is None or res < st.best["residual"]:
            st.keep_best(pb, eq, m, res)
        elif st.step_theta is not None and res > 0.9 * st.history[-2]["residual"]:
            # no progress: back off toward the best point
            st.back_off()
            pb.save(st)
            if np.max(np.abs(st.step_theta)) < 1e-12:
                break
            continue
        pb.save(st)
        if res < tol:
            return CalibrationResult(
                params=st.theta[: pb.K],
                equilibrium=eq,
                moments=m,
                targets=targets,
                converged=True,
                iterations=it - it0,
                residual=res,
                equilibrium_solves=st.n_eq,
                household_solves=st.n_hh,
                block_jacobians=st.n_block,
                history=st.history,
                seconds=time.perf_counter() - t0,
                psi_slope=float(st.theta[pb.K]) if with_psi else None,
                gap_country=gap_country if with_psi else None,
            )
        if it == it0 + max_iter:
            break
        _newton_step(pb, st, eq, F)
    raise _stalled(pb, st, tol, it0)


def _check_inputs(
    theta0, targets, setup: GravitySetup, household: Household, home_share_gap, gap_country
):
    """Checked starting parameters and targets (psi_slope and the gap appended when
    ``home_share_gap`` is given), the index of the gap country (or None) and its code."""
    K = setup.n_params
    theta = np.asarray(theta0, float).copy()
    if theta.shape != (K,):
        raise ParameterError(
            f"parameter vector has {theta.size} entries; this setup needs "
            f"{K} (2*(M-1) log TFP and theta_m, then "
            f"{len(setup.names)} coefficients {list(setup.names)})."
        )
    targets = data_moments() if targets is None else np.asarray(targets, float)
    if targets.shape != (K,):
        raise ParameterError(f"targets have {targets.size} entries; expected {K}.")
    if home_share_gap is None:
        if gap_country is not None:
            raise ParameterError(
                "gap_country is given without home_share_gap: give the target "
                "home_share_gap to calibrate psi_slope."
            )
        return theta, targets, None, None
    try:
        gap_target = float(home_share_gap)
    except (TypeError, ValueError):
        raise ParameterError(
            f"home_share_gap = {home_share_gap!r} is not allowed: it must be a number in (-1, 1)."
        ) from None
    if not (np.isfinite(gap_target) and -1.0 < gap_target < 1.0):
        raise ParameterError(
            f"home_share_gap = {home_share_gap!r} is not allowed: it must "
            "be a number in (-1, 1) (a difference of two shares)."
        )
    gap_country = "USA" if gap_country is None else gap_country
    if gap_country not in setup.countries:
        raise ParameterError(
            f"gap_country = {gap_country!r} is not allowed: use one of "
            f"{', '.join(setup.countries)}."
        )
    gi = setup.countries.index(gap_country)
    return (np.append(theta, household.psi_slope), np.append(targets, gap_target), gi, gap_country)


def _resume(ckpt: Path, with_psi: bool):
    """Parameters, wages, beta guess and history of the best point of a checkpoint."""
    saved = json.loads(ckpt.read_text())
    if with_psi != ("psi_slope" in saved["best"]):
        raise ParameterError(
            f"checkpoint {ckpt} is from a calibration {'without' if with_psi else 'with'} "
            "psi_slope (home_share_gap); resume it the same way or use a new checkpoint."
        )
    theta = np.asarray(saved["best"]["params"], float)
    if with_psi:
        theta = np.append(theta, float(saved["best"]["psi_slope"]))
    wages = np.asarray(saved["best"]["wages"], float)
    beta_guess = float(saved["best"]["beta"])
    history = saved.get("history", [])
    log.info(
        "calibration: resuming from %s (iteration %d, residual %.3e)",
        ckpt,
        len(history),
        saved["best"]["residual"],
    )
    return theta, wages, beta_guess, history


@dataclass(frozen=True, eq=False)
class _Problem:
    """What a calibration run holds fixed: the regression, targets, primitives, checkpoint."""

    setup: GravitySetup
    targets: np.ndarray
    hh: Household
    inc: object
    labor: object
    R: float
    with_psi: bool
    gi: int | None
    gap_country: str | None
    ckpt: Path | None
    layout: Layout

    @property
    def K(self) -> int:
        return self.setup.n_params

    def household_at(self, x) -> Household:
        return self.hh.replace(psi_slope=float(x[self.K])) if self.with_psi else self.hh

    def moments_at(self, eq: Equilibrium) -> np.ndarray:
        m = model_moments(eq, self.setup)
        return np.append(m, home_share_gaps(eq).iloc[self.gi]) if self.with_psi else m

    def save(self, st: "_Iterate") -> None:
        if self.ckpt:
            write_json(
                self.ckpt,
                {"best": st.best, "history": st.history, "targets": self.targets.tolist()},
            )


@dataclass(eq=False)
class _Iterate:
    """What moves between the calibration's Newton iterations: the parameters, the
    equilibrium warm start, the last step, the best point and the counters."""

    theta: np.ndarray
    wages: object
    beta_guess: float
    state: object
    history: list
    J_u: np.ndarray | None = None
    tangents: object = None
    step_theta: np.ndarray | None = None
    best: dict | None = None
    best_eq: Equilibrium | None = None
    best_m: np.ndarray | None = None
    n_eq: int = 0
    n_hh: int = 0
    n_block: int = 0

    def back_off(self) -> None:
        """Halve the last step, from the point it reached."""
        self.theta = self.theta - 0.5 * self.step_theta
        self.step_theta = 0.5 * self.step_theta

    def keep_best(self, pb: _Problem, eq: Equilibrium, m: np.ndarray, res: float) -> None:
        K = pb.K
        self.best = {
            "params": self.theta[:K].tolist(),
            "wages": eq.prices.w.tolist(),
            "beta": eq.beta,
            "residual": res,
        }
        if pb.with_psi:
            self.best["psi_slope"] = float(self.theta[K])
        self.best_eq, self.best_m = eq, m


def _solve_at(pb: _Problem, st: _Iterate) -> Equilibrium | None:
    """The equilibrium at the current parameters (warm-started); None when it fails after
    a step, which is then halved (a failure at the start is raised)."""
    world = world_from_params(st.theta[: pb.K], pb.setup, pb.labor)
    try:
        eq = solve_equilibrium(
            world,
            pb.household_at(st.theta),
            solve_for="beta",
            R=pb.R,
            wages=st.wages,
            beta_guess=st.beta_guess,
            income=pb.inc,
            state=st.state,
            jacobian=st.J_u,
            method="newton" if st.J_u is None else "broyden",
        )
    except EquilibriumError as err:
        if st.best is None or st.step_theta is None:
            raise
        log.warning("calibration: equilibrium failed after a step (%s); halving it", err)
        st.back_off()
        return None
    st.n_eq += 1
    st.n_hh += eq.household_solves
    return eq


def _record(pb: _Problem, st: _Iterate, it: int, eq: Equilibrium, t0: float, progress):
    """Moments at ``eq``, their distance to the targets and its max; logged, reported and
    appended to the history."""
    m = pb.moments_at(eq)
    F = m - pb.targets
    res = float(np.max(np.abs(F)))
    rec = {
        "iteration": it,
        "residual": res,
        "beta": eq.beta,
        "household_solves": eq.household_solves,
        "seconds": time.perf_counter() - t0,
        "worst_moment": int(np.argmax(np.abs(F))),
    }
    if pb.with_psi:
        rec["psi_slope"] = float(st.theta[pb.K])
    st.history.append(rec)
    log.info(
        "calibration: iteration %d, max |moment - target| %.3e, beta %.8f%s",
        it,
        res,
        eq.beta,
        f", psi_slope {st.theta[pb.K]:.8f}" if pb.with_psi else "",
    )
    if progress:
        progress(it, res)
    return m, F, res


def _newton_step(pb: _Problem, st: _Iterate, eq: Equilibrium, F: np.ndarray) -> None:
    r"""Newton step in the parameters with the total derivative
    :math:`dm/d\vartheta = \partial_\vartheta m - \partial_u m (\partial_u E)^{-1}\partial_\vartheta E`
    (module docstring, steps 2-4), and the predicted equilibrium as the next warm start."""
    M = pb.setup.M
    if pb.with_psi:
        bj, psib = block_jacobian_psi(eq, st.tangents)
    else:
        bj, psib = block_jacobian(eq, st.tangents), None
    st.tangents = bj.tangents
    st.n_block += 1
    Eu, Et, mu, mt = _composite_jacobian(eq, bj, pb.setup, st.theta, pb.layout, psib, pb.gi)
    total = mt - mu @ np.linalg.solve(Eu, Et)
    st.step_theta = -np.linalg.solve(total, F)
    du = -np.linalg.solve(Eu, Et @ st.step_theta)
    u_new = pb.layout.pack(eq.prices.w, eq.prices.R, None, eq.beta) + du
    wages = np.append(u_new[: M - 1], M - u_new[: M - 1].sum())
    beta_guess = float(u_new[-1])
    if np.any(wages <= 0) or not 0 < beta_guess < 1:
        wages, beta_guess = eq.prices.w, eq.beta
    st.wages, st.beta_guess = wages, beta_guess
    st.theta = st.theta + st.step_theta
    st.state, st.J_u = eq.state, Eu


def _stalled(pb: _Problem, st: _Iterate, tol: float, it0: int) -> CalibrationError:
    """The error of a run that stopped short of ``tol``, naming the moments furthest off."""
    best_m, targets = st.best_m, pb.targets
    worst = np.argsort(-np.abs(best_m - targets))[:5]
    names = (
        CalibrationResult(
            st.best["params"],
            st.best_eq,
            best_m,
            targets,
            False,
            0,
            0,
            0,
            0,
            0,
            gap_country=pb.gap_country if pb.with_psi else None,
        )
        .moment_table(pb.setup)["moment"]
        .to_numpy()
    )
    off = ", ".join(f"{names[k]} (model {best_m[k]:.5f} vs target {targets[k]:.5f})" for k in worst)
    ckpt = pb.ckpt
    return CalibrationError(
        f"calibration stopped without reaching tol {tol:.1e}: best max |moment - target| "
        f"{st.best['residual']:.3e} after {len(st.history) - it0} iterations. Moments furthest "
        f"off: {off}. The best point is saved{' in ' + str(ckpt) if ckpt else ''}; try "
        "resuming, a start closer to the published calibration, or a looser tol."
    )
