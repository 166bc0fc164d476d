r"""Household-block Jacobians and the equilibrium Jacobian composed from them.

Countries' household problems are independent given their own prices: country i's
spending :math:`M_{ij}` and asset demand :math:`A_i` depend only on its row of goods prices
:math:`p_{i\cdot}`, its wage :math:`w_i` (income), :math:`R_i`, :math:`T_i`, :math:`\beta`
and its TFP scaling (grid, :math:`\sigma_i`, :math:`\psi_i`). One forward-mode direction
that moves the same input of *every* country at once therefore gives every country's
derivative with respect to its own input. The **household-block Jacobian** uses the
directions

* ``p``: :math:`\log p_{ik}` for all i, one direction per variety k (M directions);
* ``w``: :math:`\log w_i` in income; ``R``: :math:`R_i`; ``T``: :math:`T_i`; ``beta``;
  ``A``: the log TFP scaling (one direction each);
* ``psi`` (optional, for calibrating psi_slope): :math:`\psi_{slope}`, which enters
  :math:`\psi_i(z, k) = \psi_{slope} A_i^{1-\gamma} \log z_{perm}\,1[k = i]`
  (:func:`psi_slope_direction` gives that array per unit of psi_slope),

each an implicit differentiation of the household fixed point (warm-started tangents) with
the stationary distribution re-solved. Besides :math:`M_{ij}`, :math:`A_i` and the states,
the block can differentiate one more output of each country's solution, given as a
function of its policies, inputs and distribution (``output=``; e.g. the home-share gaps
of :mod:`hatrade.calibration.home_share`); the default block computes neither the extra direction nor
the extra output, so its cost is unchanged. Everything between the block and the excess demands
is a known map,

.. math::

    \log p_{ij} = \log d_{ij} + \log w_j - \log A_j + \log(1 + t_{ij}), \quad
    Y_j = w_j N_j, \quad X_{ij} = \frac{M_{ij}}{1 + t_{ij}}, \quad
    G_i = \sum_j \frac{t_{ij}}{1+t_{ij}} M_{ij},

so the Jacobian of :func:`hatrade.solve.equilibrium.solve_equilibrium`'s excess demands in its unknowns
(wages, R or beta, R_i under financial autarky, T_i with tariffs) follows by the chain rule
(:func:`equilibrium_jacobian`): with :math:`c_{r,i}(u)` the change of country i's input of
direction r when the unknowns move from :math:`u_0` to u,

.. math::

    M_{ij}(u) \approx M_{ij}(u_0) + \sum_r c_{r,i}(u)\, \partial_r M_{ij}, \qquad
    A_i(u) \approx A_i(u_0) + \sum_r c_{r,i}(u)\, \partial_r A_i,

and the Jacobian is ``jax.jacfwd`` of the excess demands of these linearized aggregates at
:math:`u_0` (exact at :math:`u_0`). The same coefficients applied to the state tangents
predict the household solution at a new point (:func:`predict_state`), a first-order warm
start for the next household solve.

Cost: the solver's Jacobian takes M + 2 directions (``p``, ``w``, and ``beta`` or ``R``;
M + 3 with tariffs), each a tangent fixed-point iteration through all countries, whatever
the number of unknowns: forward mode through the whole world needs one direction per
unknown, M under financial globalization (M - 1 wages and R or beta: two fewer than the
block), 2M - 1 under autarky (one R per country), M more with tariffs (the transfers).
Warm-started tangents (from the previous Jacobian) need fewer iterations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import stationary_distribution
from hatrade.core.errors import EquilibriumError
from hatrade.core.household import HHState, policies
from hatrade.core.markets import (
    aggregate,
    country_params,
    excess_demands,
    income_transfers,
    model_arrays,
    solve_countries,
)
from hatrade.core.memory import direction_chunk
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64

__all__ = [
    "DIRECTIONS",
    "BlockJacobian",
    "HouseholdBlock",
    "block_jacobian",
    "direction_rows",
    "equilibrium_jacobian",
    "household_block",
    "predict_state",
    "psi_slope_direction",
    "solver_directions",
]

log = logging.getLogger(__name__)

#: Names of the household-block directions (``p`` stands for M directions, one per variety;
#: ``psi`` needs the ``psi_unit`` array of :func:`psi_slope_direction`).
DIRECTIONS = ("p", "w", "A", "R", "beta", "T", "psi")


# ----------------------------------------------------------------------------- directions


def direction_rows(M: int, directions) -> tuple:
    """Expand direction names into rows: ``(("p", 0), ..., ("p", M-1), ("w", None), ...)``."""
    rows: list[tuple[str, int | None]] = []
    for name in directions:
        if name not in DIRECTIONS:
            raise ParameterError(
                f"direction {name!r} is not allowed: use one of {', '.join(DIRECTIONS)}."
            )
        if any(r[0] == name for r in rows):
            raise ParameterError(f"direction {name!r} is given twice.")
        rows.extend([("p", k) for k in range(M)] if name == "p" else [(name, None)])
    return tuple(rows)


def _seed_tangents(M: int, rows) -> dict:
    """Input tangents of each direction (leading axis: direction), as numpy arrays.

    ``psi`` (a scalar per direction) is present only when a row asks for it, so the default
    block traces the same function as without it.
    """
    n = len(rows)
    seeds = {
        "p": np.zeros((n, M, M)),
        "w": np.zeros((n, M)),
        "A": np.zeros((n, M)),
        "R": np.zeros((n, M)),
        "beta": np.zeros(n),
        "T": np.zeros((n, M)),
    }
    if any(name == "psi" for name, _ in rows):
        seeds["psi"] = np.zeros(n)
    for r, (name, k) in enumerate(rows):
        if name == "p":
            seeds["p"][r, :, k] = 1.0
        else:
            seeds[name][r] = 1.0
    return seeds


# ----------------------------------------------------------------------------- the block


@partial(jax.jit, static_argnums=(7, 8, 9), static_argnames=("output",))
def _block_jvps(
    arrs,
    w0,
    R0,
    T0,
    beta0,
    state,
    seeds,
    tol,
    max_iter,
    ttol,
    dstate,
    psi_unit=None,
    output=None,
    output_args=(),
):
    """Forward-mode derivatives of (M_ij, A_i, household state[, output]) along the seeds.

    ``w0, R0, T0`` are (M,), ``beta0`` a scalar; ``state`` the converged household states;
    ``dstate`` tangent guesses (zeros: start from the direct effect). With ``seeds["psi"]``,
    ``psi_unit`` (M, Nz, M) is d psi / d psi_slope. ``output(pol, prm, lam, *output_args)``
    (static: a module-level function) is an extra output of the countries' solutions; its
    derivatives come fourth (None without it).
    """
    M = w0.shape[0]
    g = arrs.gamma
    base = country_params(arrs, w0, R0, T0, beta0)
    bc = lambda x: jnp.broadcast_to(x, (M,) + jnp.shape(x))  # noqa: E731
    with_psi = "psi" in seeds

    def f(xp, xw, xA, R, beta, T, x0, *xpsi):
        scale = jnp.exp((1.0 - g) * xA)
        psi = arrs.psi + xpsi[0] * psi_unit if with_psi else arrs.psi
        prm = base._replace(
            p=base.p * jnp.exp(xp),
            w=w0 * jnp.exp(xw),
            R=R,
            T=income_transfers(arrs, w0 * jnp.exp(xw), T),
            beta=bc(beta),
            sigma=arrs.sigma * scale,
            psi=psi * scale[:, None, None],
            a_grid=arrs.a_grid * jnp.exp(xA)[:, None],
        )
        x, _ = solve_countries(prm, x0, tol, max_iter, ttol)
        pol = jax.vmap(policies)(x, prm)
        lam = jax.vmap(stationary_distribution)(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
        agg = aggregate(arrs, prm, pol, lam)
        extra = None if output is None else output(pol, prm, lam, *output_args)
        return agg["M"], agg["A"], x, extra

    zM = jnp.zeros(M)
    primal = (jnp.zeros((M, M)), zM, zM, base.R, base.beta[0], T0, state)
    primal += (jnp.zeros(()),) if with_psi else ()

    def one(dp, dw, dA, dR, db, dT, dx, *dpsi):
        _, out = jax.jvp(f, primal, (dp, dw, dA, dR, db, dT, dx) + dpsi)
        return out

    return jax.vmap(one)(
        seeds["p"],
        seeds["w"],
        seeds["A"],
        seeds["R"],
        seeds["beta"],
        seeds["T"],
        dstate,
        *((seeds["psi"],) if with_psi else ()),
    )


def _chunked_jvps(call, seeds, tangents, state, n: int, chunk: int):
    """``call(seeds, tangent guesses)`` (:func:`_block_jvps`) over all n directions at once
    when ``chunk >= n``, else over equal chunks (the last padded with zero directions),
    gathered into numpy arrays (no second copy of the tangents)."""

    def zeros(m):
        return jax.tree.map(lambda a: jnp.zeros((m,) + a.shape, a.dtype), state)

    if chunk >= n:
        return call(seeds, zeros(n) if tangents is None else tangents)
    k = -(-n // chunk)
    c = -(-n // k)
    log.debug("household block: %d directions in %d chunks of %d (memory)", n, k, c)
    out = None
    for lo in range(0, n, c):
        hi = min(n, lo + c)

        def part(a, lo=lo, hi=hi):
            a = jnp.asarray(a[lo:hi])
            return jnp.concatenate([a, jnp.zeros((c - (hi - lo),) + a.shape[1:], a.dtype)])

        res = call(
            {key: part(v) for key, v in seeds.items()},
            zeros(c) if tangents is None else jax.tree.map(part, tangents),
        )
        if out is None:
            out = jax.tree.map(lambda a: np.empty((n,) + a.shape[1:], a.dtype), res)

        def put(o, a, lo=lo, hi=hi):
            o[lo:hi] = np.asarray(a[: hi - lo])

        jax.tree.map(put, out, res)
        del res
    return out


@dataclass
class HouseholdBlock:
    """Raw household-block derivatives along ``rows`` (see :func:`household_block`).

    ``dM`` (n, M, M): dM_ij along each direction; ``dA`` (n, M): dA_i; ``tangents``: the
    state tangents (HHState of (n, M, Na, Nz, M) arrays), reusable as warm starts;
    ``doutput`` (n, ...): derivatives of the extra ``output=`` (None without one).
    """

    rows: tuple
    dM: np.ndarray
    dA: np.ndarray
    tangents: HHState
    doutput: np.ndarray | None = None

    def index(self, name: str) -> int:
        """Position of the single-row direction ``name`` (e.g. ``"w"``, ``"psi"``) in ``rows``."""
        for r, (n, _) in enumerate(self.rows):
            if n == name:
                return r
        raise ParameterError(
            f"household block has no direction {name!r}; it has "
            f"{', '.join(dict.fromkeys(n for n, _ in self.rows))}."
        )

    def p_rows(self) -> list:
        """Positions of the M ``p`` directions, by variety."""
        return [r for _, r in sorted((k, r) for r, (n, k) in enumerate(self.rows) if n == "p")]


def psi_slope_direction(world, household, income) -> np.ndarray:
    r"""d psi / d psi_slope (M, Nz, M): :math:`A_i^{1-\gamma} \log z_{perm}` on the home
    variety (docs/model.md 1.1), the ``psi_unit`` of the ``psi`` direction."""
    M = world.M
    scale = np.asarray(world.tfp, float) ** (1.0 - household.gamma)
    return (
        scale[:, None, None]
        * np.asarray(income.log_z_perm, float)[None, :, None]
        * np.eye(M)[:, None, :]
    )


def household_block(
    arrs,
    w,
    R,
    T,
    beta,
    state,
    rows,
    *,
    tangents=None,
    tol: float = 1e-10,
    max_iter: int = 3000,
    tangent_tol: float = 1e-9,
    psi_unit=None,
    output=None,
    output_args=(),
    chunk: int | None = None,
) -> HouseholdBlock:
    """Household-block derivatives at prices (w, R, T, beta) along direction ``rows``.

    ``state`` must be the converged household states at those prices (it is the primal of
    the implicit differentiation); ``tangents`` (from an earlier block with the same rows)
    warm-start the tangent iterations. Call with 64-bit mode on.

    chunk : int, optional
        Directions solved at once. Default: all of them when they fit in memory, else the
        most that fit (:func:`hatrade.core.memory.direction_chunk`; a world where even one
        does not fit is refused with the estimate). In chunks the directions are split
        into equal parts (the last padded with zero directions, one compilation) and the
        state tangents come back as numpy arrays; the derivatives are the same to rounding
        (each direction's tangent iteration stops on its own criterion either way).

    Options (off by default: the solver's block neither pays for nor returns them):

    psi_unit : (M, Nz, M) array, optional
        d psi / d psi_slope (:func:`psi_slope_direction`); required by, and only allowed
        with, a ``"psi"`` row.
    output : callable (pol, prm, lam, *output_args) -> array, optional
        An extra output of all countries' solutions (batched policies, inputs and
        distributions), differentiated along every row into ``doutput``. Pass a module-level
        function (it is a static argument of the compiled block: a new function compiles
        anew).
    output_args : tuple of arrays
        Further (traced) arguments of ``output``.
    """
    M = int(np.shape(w)[0])
    seeds = {k: jnp.asarray(v) for k, v in _seed_tangents(M, rows).items()}
    if ("psi" in seeds) != (psi_unit is not None):
        raise ParameterError(
            "the psi direction needs psi_unit= (d psi / d psi_slope, see "
            "psi_slope_direction) and psi_unit= needs a 'psi' direction."
        )
    if psi_unit is not None:
        psi_unit = jnp.asarray(psi_unit)
        if psi_unit.shape != np.shape(arrs.psi):
            raise ParameterError(
                f"psi_unit has shape {psi_unit.shape}; psi has "
                f"{np.shape(arrs.psi)} (countries, income states, "
                "varieties)."
            )
    n = len(rows)
    if tangents is not None and jax.tree.leaves(tangents)[0].shape[0] != n:
        tangents = None
    if chunk is None:
        chunk = direction_chunk(M, np.shape(arrs.a_grid)[1], np.shape(arrs.z)[0], n)
    if int(chunk) < 1:
        raise ParameterError(f"chunk = {chunk} is not allowed: it must be a whole number >= 1.")
    prices = (
        jnp.asarray(w),
        jnp.broadcast_to(jnp.asarray(R), (M,)),
        jnp.asarray(T),
        jnp.asarray(beta),
    )

    def call(sd, dx):
        return _block_jvps(
            arrs,
            *prices,
            state,
            sd,
            tol,
            max_iter,
            tangent_tol,
            dx,
            psi_unit,
            output=output,
            output_args=tuple(output_args),
        )

    dM, dA, dxs, dout = _chunked_jvps(call, seeds, tangents, state, n, int(chunk))
    dM, dA = np.asarray(dM), np.asarray(dA)
    dout = None if output is None else np.asarray(dout)
    if not (
        np.all(np.isfinite(dM))
        and np.all(np.isfinite(dA))
        and (dout is None or np.all(np.isfinite(dout)))
    ):
        raise EquilibriumError(
            "household-block Jacobian has non-finite entries; the household "
            "solution is not differentiable here (check the inputs)."
        )
    return HouseholdBlock(rows=tuple(rows), dM=dM, dA=dA, tangents=dxs, doutput=dout)


@dataclass
class BlockJacobian:
    """Derivatives of each country's spending M_ij and asset demand A_i.

    ``p[i, j, k] = dM_ij / dlog p_ik``; ``w, A, R, beta`` (M, M): with respect to the log wage
    in income, own log TFP scaling (grid, sigma, psi), R and beta; ``Ap`` (M, M) and ``Aw,
    AA, AR, Abeta`` (M,) the same for asset demand. ``T``/``AT``: with respect to the
    transfer T_i (None unless requested). ``tangents``: household-state tangents (warm
    starts for the next call).
    """

    p: np.ndarray
    w: np.ndarray
    A: np.ndarray
    R: np.ndarray
    beta: np.ndarray
    Ap: np.ndarray
    Aw: np.ndarray
    AA: np.ndarray
    AR: np.ndarray
    Abeta: np.ndarray
    tangents: object = None
    T: np.ndarray | None = None
    AT: np.ndarray | None = None

    @classmethod
    def from_block(cls, blk: HouseholdBlock) -> BlockJacobian:
        """Arrange a :class:`HouseholdBlock` with rows p, w, A, R, beta (T optional; other
        rows, e.g. ``psi``, are left to the caller) by input."""
        ip = blk.p_rows()
        k = {name: blk.index(name) for name in ("w", "A", "R", "beta")}
        iT = blk.index("T") if any(n == "T" for n, _ in blk.rows) else None
        dM, dA = blk.dM, blk.dA
        return cls(
            p=np.transpose(dM[ip], (1, 2, 0)),
            w=dM[k["w"]],
            A=dM[k["A"]],
            R=dM[k["R"]],
            beta=dM[k["beta"]],
            Ap=dA[ip].T,
            Aw=dA[k["w"]],
            AA=dA[k["A"]],
            AR=dA[k["R"]],
            Abeta=dA[k["beta"]],
            tangents=blk.tangents,
            T=None if iT is None else dM[iT],
            AT=None if iT is None else dA[iT],
        )


@enable_x64
def block_jacobian(
    eq, tangents=None, tol: float = 1e-10, tangent_tol: float = 1e-9, transfers: bool = False
) -> BlockJacobian:
    """Household-block Jacobian of a solved world (M + 4 forward directions, all countries).

    Directions: the M log prices ``p``, ``w``, ``A``, ``R``, ``beta`` (and ``T`` with
    ``transfers=True``: M + 5). ``tangents`` (from a previous call) warm-start the
    implicit-differentiation iterations.
    """
    arrs = model_arrays(eq.world, eq.household, eq.income)
    M = eq.world.M
    names = ("p", "w", "A", "R", "beta") + (("T",) if transfers else ())
    blk = household_block(
        arrs,
        eq.prices.w,
        eq.prices.R,
        eq.prices.T,
        eq.prices.beta,
        eq.state,
        direction_rows(M, names),
        tangents=tangents,
        tol=tol,
        tangent_tol=tangent_tol,
    )
    return BlockJacobian.from_block(blk)


# ----------------------------------------------------------------------------- composition


def solver_directions(layout) -> tuple:
    """The block directions an equilibrium layout needs: p, w, its rate or beta, T."""
    names = ["p", "w"]
    names.append("beta" if (layout.financial != "autarky" and layout.solve_for == "beta") else "R")
    if layout.tariffs:
        names.append("T")
    return tuple(names)


def _coefficients(rows, layout, u0, u):
    """c[r, i]: change of country i's input of direction r when the unknowns go u0 -> u."""
    w0, R0, T0, b0 = layout.prices(u0)
    w, R, T, b = layout.prices(u)
    dlw = jnp.log(w) - jnp.log(w0)
    M = w.shape[0]
    out = []
    for name, k in rows:
        if name == "p":
            out.append(jnp.full((M,), dlw[k]))  # log p_ik moves with log w_k, for every i
        elif name == "w":
            out.append(dlw)
        elif name == "R":
            out.append(R - R0)
        elif name == "beta":
            out.append(jnp.broadcast_to(b - b0, (M,)))
        elif name == "T":
            out.append(T - T0)
        else:  # "A", "psi": TFP and psi_slope are not equilibrium unknowns
            out.append(jnp.zeros(M, dtype=dlw.dtype))
    return jnp.stack(out)


def equilibrium_jacobian(arrs, layout, u, agg, block: HouseholdBlock) -> np.ndarray:
    """Jacobian of the excess demands (``hatrade.solve.equilibrium``'s residuals) in the unknowns at u.

    Parameters
    ----------
    arrs : model arrays (:func:`hatrade.core.markets.model_arrays`).
    layout : the solver's unknowns (``hatrade.core.markets.Layout``).
    u : (n,) unknowns at which ``agg`` and ``block`` were computed.
    agg : aggregates at u (needs ``M``, ``A``, ``N``).
    block : :class:`HouseholdBlock` at u, with at least :func:`solver_directions`.
    """
    missing = set(solver_directions(layout)) - {r[0] for r in block.rows}
    if missing:
        raise ParameterError(
            f"household block lacks the direction(s) {sorted(missing)} that these unknowns need."
        )
    u0 = jnp.asarray(u)
    M0, A0, N = (jnp.asarray(agg[k]) for k in ("M", "A", "N"))
    dM, dA = jnp.asarray(block.dM), jnp.asarray(block.dA)
    t = arrs.t

    def resid(u_):
        c = _coefficients(block.rows, layout, u0, u_)  # (n, M)
        Mij = M0 + jnp.einsum("ri,rij->ij", c, dM)
        Ai = A0 + jnp.einsum("ri,ri->i", c, dA)
        w, _, T, _ = layout.prices(u_)
        lin = dict(M=Mij, X=Mij / (1.0 + t), A=Ai, Y=w * N, G=jnp.sum(t / (1.0 + t) * Mij, axis=1))
        return excess_demands(layout, arrs, lin, T)

    return np.asarray(jax.jacfwd(resid)(u0))


def predict_state(state: HHState, block: HouseholdBlock, layout, u0, u) -> HHState:
    r"""First-order prediction of the household states at u from the states at u0.

    :math:`x_i(u) \approx x_i(u_0) + \sum_r c_{r,i}(u)\, \partial_r x_i` with the block's
    state tangents; consumption is kept at least half its old value (a warm start only
    needs to be a valid guess).
    """
    c = _coefficients(block.rows, layout, jnp.asarray(u0), jnp.asarray(u))  # (n, M)
    step = jax.tree.map(lambda d: jnp.einsum("ri,ri...->i...", c, d), block.tangents)
    c_new = jnp.maximum(state.c + step.c, 0.5 * state.c)
    return HHState(c=c_new, v=state.v + step.v)
