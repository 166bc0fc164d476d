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
moment is differentiable.

This module holds the Newton iteration. The home-share gap and the psi_slope block
(:data:`GAP_GROUPS`, :func:`income_group_fractions`, :func:`home_share_gaps`,
:class:`PsiBlock`, :func:`block_jacobian_psi`, re-exported here) are in
:mod:`hatrade.calibration.home_share`; the result and the error (:class:`CalibrationResult`,
:class:`CalibrationError`, re-exported here) in :mod:`hatrade.calibration.result`; the
checked start and resuming from a checkpoint in :mod:`hatrade.calibration.start`; the
gravity moments and the map from parameters to a world (:class:`GravitySetup`,
:func:`ek_setup`, :func:`data_moments`, :func:`model_moments`, :func:`world_from_params`,
re-exported here) in :mod:`hatrade.calibration.moments`. Micro targets for gamma and
sigma_eps (an outer loop) and robustness grids are in :mod:`hatrade.calibration.micro` and
:mod:`hatrade.calibration.grid`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.calibration.home_share import (
    GAP_GROUPS,
    PsiBlock,
    block_jacobian_psi,
    home_share_gaps,
    income_group_fractions,
)
from hatrade.calibration.micro_targets import check_calibrate_options
from hatrade.calibration.moments import (
    GravitySetup,
    data_moments,
    ek_setup,
    model_moments,
    world_from_params,
)
from hatrade.calibration.result import CalibrationError, CalibrationResult
from hatrade.calibration.start import checked_start, checkpoint_start
from hatrade.core.errors import EquilibriumError
from hatrade.core.income import income_process
from hatrade.core.jacobian import BlockJacobian, block_jacobian
from hatrade.core.markets import Layout
from hatrade.core.params import Household
from hatrade.core.x64 import enable_x64
from hatrade.data import load_labor
from hatrade.io.atomic import write_json
from hatrade.solve.equilibrium import Equilibrium, solve_equilibrium

__all__ = [
    "GravitySetup",
    "ek_setup",
    "data_moments",
    "world_from_params",
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


# ----------------------------------------------------------------------------- driver


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
    theta, targets, gi, gap_country = checked_start(
        theta0, targets, setup, household, home_share_gap, gap_country
    )
    with_psi = home_share_gap is not None
    if labor is None:
        labor = load_labor().to_numpy()
    hh = household.replace(beta=None)
    ckpt = Path(checkpoint) if checkpoint else None
    history: list = []
    if resume and ckpt and ckpt.exists():
        theta, wages, beta_guess, history = checkpoint_start(ckpt, with_psi)
    pb = _problem(setup, targets, hh, labor, R, with_psi, gi, gap_country, ckpt)
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
            return _converged(pb, st, eq, m, res, it - it0, t0)
        if it == it0 + max_iter:
            break
        _newton_step(pb, st, eq, F)
    raise _stalled(pb, st, tol, it0)


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


def _problem(setup, targets, hh, labor, R, with_psi, gi, gap_country, ckpt) -> _Problem:
    """The fixed part of a run, with the income process and the layout of the unknowns
    (wages and beta at the given R, globalization, no tariffs)."""
    return _Problem(
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


def _converged(
    pb: _Problem, st: _Iterate, eq: Equilibrium, m: np.ndarray, res: float, iterations: int, t0
) -> CalibrationResult:
    """The result of a run that reached its tolerance at ``eq``."""
    return CalibrationResult(
        params=st.theta[: pb.K],
        equilibrium=eq,
        moments=m,
        targets=pb.targets,
        converged=True,
        iterations=iterations,
        residual=res,
        equilibrium_solves=st.n_eq,
        household_solves=st.n_hh,
        block_jacobians=st.n_block,
        history=st.history,
        seconds=time.perf_counter() - t0,
        psi_slope=float(st.theta[pb.K]) if pb.with_psi else None,
        gap_country=pb.gap_country if pb.with_psi else None,
    )


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
