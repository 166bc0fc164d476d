r"""Exact gradients of a policy criterion through the stationary equilibrium.

The equilibrium unknowns :math:`u` (wages, R or :math:`R_i`, transfers :math:`T_i`) solve
:math:`F(u, \theta) = 0` for the policy :math:`\theta` (country i's tariffs, its labor tax).
A criterion :math:`C(u, \theta)` (:mod:`hatrade.policy.criteria`) has, by the implicit
function theorem, the total derivative

.. math::

    \frac{dC}{d\theta} = C_\theta - \nu^\top F_\theta, \qquad F_u^\top \nu = C_u^\top

(adjoint form: one linear solve whatever the number of instruments). Every piece is exact
(to the tangent tolerance) and comes from one household-block Jacobian at the solution
(:func:`hatrade.core.jacobian.household_block`, directions ``p``, ``w``, ``R``, ``T``: the
tangents of every country's spending, asset demand and household state) plus, for a labor
tax, one tangent direction of country i alone (:func:`_tax_direction`). A tariff moves
households only through the log prices :math:`\log p_{ik}`, which the ``p`` directions
cover, so tariff instruments need no direction of their own. With these tangents
:func:`_linearized` writes excess demands and criterion as functions of :math:`(u, \theta)`
that are exact to first order at the solution; ``jax.jacfwd`` of it gives
:math:`F_u, F_\theta, C_u, C_\theta`. Household criteria use the consumption equivalent
(:func:`hatrade.policy.criteria.ce_of_value`) of the new values
:math:`V_i = \mathrm{policies}(x_i, \mathrm{prm}_i).V`, with
:math:`dx_i = \sum_r c_{r,i}\, \partial_r x_i` from the block's state tangents.

That is the ``"block"`` route: :math:`M + 3` world tangent directions whatever the number
of instruments. The ``"krylov"`` route (:mod:`hatrade.policy.krylov`) solves the forward
tangent system :math:`F_u \dot u = -F_\theta e_k` by GMRES, each product one world
direction along the change of every country's inputs (:func:`_direction`), preconditioned by
the solver's Jacobian at the solution, warm-started from the previous gradient; a few
directions per instrument. ``method="auto"`` (the default) takes it when the solve carries
a Jacobian and the instruments are few (:func:`_use_krylov`), and falls back to the block if
GMRES does not converge. Both are exact to the tangent tolerance and agree to it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from hatrade.core.distribution import stationary_distribution
from hatrade.core.household import policies, solve_fixed_point
from hatrade.core.instruments import rebate_weights
from hatrade.core.jacobian import direction_rows, household_block
from hatrade.core.markets import Layout, country_params, excess_demands, model_arrays
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.policy.criteria import CEMap, ce_of_value, price_index
from hatrade.policy.krylov import KrylovWarm, secant_update, tangent_gmres, world_jvps
from hatrade.solve.equilibrium import EquilibriumJacobian

__all__ = [
    "Gradient",
    "Objective",
    "PolicySpace",
    "criterion_gradient",
    "instrumented_arrays",
    "solver_layout",
]

log = logging.getLogger(__name__)

tree_map = jax.tree_util.tree_map


@dataclass(frozen=True)
class PolicySpace:
    """Country ``i``'s instruments: ``partners`` (indices whose imports carry the tariff),
    ``uniform`` (one tariff for them all, else one each) and ``transfer`` (a labor tax).
    The vector :math:`\\theta` is [tariffs..., tau]."""

    i: int
    partners: tuple
    uniform: bool = True
    transfer: bool = False

    @property
    def n(self) -> int:
        return (1 if self.uniform else len(self.partners)) + int(self.transfer)

    def tariffs(self, base_t, theta):
        """The tariff matrix with row i's partners set from theta (JAX or NumPy)."""
        xp = jnp if isinstance(theta, jax.Array) else np
        k = len(self.partners)
        vals = xp.full(k, theta[0]) if self.uniform else theta[:k]
        idx = (np.full(k, self.i), np.asarray(self.partners))
        if xp is jnp:
            return jnp.asarray(base_t).at[idx].set(vals)
        t = np.array(base_t, float)
        t[idx] = vals
        return t

    def tax(self, theta):
        return theta[-1] if self.transfer else None


@dataclass(frozen=True)
class Objective:
    """What is differentiated: the criterion's baseline weights ``W`` (Na, Nz) and
    consumption-equivalent map ``cm`` (household criteria), or ``real0`` and ``sigma``
    (the real-income criterion; ``W`` None)."""

    W: np.ndarray | None
    cm: object
    real0: float
    sigma: float


@dataclass
class Gradient:
    """Criterion value and exact gradient at a solved equilibrium.

    ``jacobian``: the exact equilibrium Jacobian :math:`F_u` (labeled, unknowns with
    transfers), reusable as the next solve's ``jacobian=``; ``tangents``: the block's state
    tangents (warm start of the next block); ``directions``: forward directions computed
    (world directions of the block plus country directions of the tax); ``krylov_history``:
    per instrument, GMRES's (residual, derivative) after each world direction (empty for the
    block route; see :class:`hatrade.policy.krylov.TangentSolve`).
    """

    value: float
    grad: np.ndarray
    jacobian: EquilibriumJacobian
    tangents: object
    directions: int
    seconds: float
    krylov_history: list = field(default_factory=list)


def solver_layout(world, beta: float) -> Layout:
    """The unknowns of a policy solve: wages, R (or R_i) and the transfers, beta fixed."""
    return Layout(
        M=world.M,
        financial=world.financial,
        solve_for="R",
        tariffs=True,
        R_fixed=None,
        beta_fixed=float(beta),
    )


def instrumented_arrays(eq):
    """Model arrays with both instruments present (zeros / lump sum when unused), so that
    the extra income is computed and can be differentiated."""
    arrs = model_arrays(eq.world, eq.household, eq.income)
    if arrs.tau is not None:
        return arrs
    M = eq.world.M
    r = rebate_weights(eq.world.rebate, eq.income.z, eq.income.dist)
    return arrs._replace(tau=jnp.zeros(M), rebate=jnp.asarray(np.broadcast_to(r, (M, r.size))))


@partial(jax.jit, static_argnums=(7, 8))
def _tax_direction(arrs, w, R, T, beta, state, i, tol, max_iter):
    """d(M_i., A_i, state_i) / d tau_i: one tangent solve of country i alone."""
    x0 = tree_map(lambda a: a[i], state)

    def f(tau_i):
        prm = country_params(arrs._replace(tau=arrs.tau.at[i].set(tau_i)), w, R, T, beta)
        prm = tree_map(lambda a: a[i], prm)
        x, _ = solve_fixed_point(prm, x0, tol, max_iter)
        pol = policies(x, prm)
        lam = stationary_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
        L = arrs.L[i]
        Mi = L * jnp.einsum("az,azj->j", lam, pol.pi * pol.c * prm.p[None, None, :])
        Ai = L * jnp.sum(lam[..., None] * pol.pi * pol.a_p)
        return Mi, Ai, x

    _, out = jax.jvp(f, (arrs.tau[i],), (jnp.ones_like(arrs.tau[i]),))
    return out


def _linearized(ctx, u, th):
    """(excess demands, criterion) as functions of (u, theta), exact to first order at
    (u0, theta0): the block's derivatives times the changes of each country's inputs."""
    sp, arrs, layout, blk = ctx["space"], ctx["arrs"], ctx["layout"], ctx["blk"]
    i, obj = sp.i, ctx["objective"]
    t = sp.tariffs(arrs.t, th)
    tau = arrs.tau if not sp.transfer else arrs.tau.at[i].set(sp.tax(th))
    a2 = arrs._replace(t=t, tau=tau)
    w, R, T, b = layout.prices(u)
    w0, R0, T0, _ = layout.prices(ctx["u0"])
    dlw = jnp.log(w) - jnp.log(w0)
    dlt = jnp.log1p(t) - jnp.log1p(arrs.t)
    coef = []
    for name, k in ctx["rows"]:
        if name == "p":  # log p_i'k moves with log w_k and log(1 + t_i'k)
            coef.append(dlw[k] + dlt[:, k])
        elif name == "w":
            coef.append(dlw)
        elif name == "R":
            coef.append(R - R0)
        else:  # "T"
            coef.append(T - T0)
    c = jnp.stack(coef)  # (rows, M)
    dtau = (tau - arrs.tau)[i]
    Mij = ctx["M0"] + jnp.einsum("ri,rij->ij", c, blk["dM"])
    Ai = ctx["A0"] + jnp.einsum("ri,ri->i", c, blk["dA"])
    if sp.transfer:
        Mij = Mij.at[i].add(dtau * ctx["tax"][0])
        Ai = Ai.at[i].add(dtau * ctx["tax"][1])
    agg = dict(M=Mij, X=Mij / (1.0 + t), A=Ai, Y=w * ctx["N"])
    agg["G"] = jnp.sum(t / (1.0 + t) * Mij, axis=1)
    F = excess_demands(layout, a2, agg, T)
    prm = tree_map(lambda a: a[i], country_params(a2, w, R, T, b))
    if obj.W is None:  # real income per person relative to the baseline
        real = jnp.sum(Mij[i]) / arrs.L[i] / price_index(prm.p, jnp.asarray(obj.sigma))
        return F, 100.0 * (real / obj.real0 - 1.0)
    dx = tree_map(lambda d: jnp.einsum("r,r...->...", c[:, i], d[:, i]), blk["tangents"])
    if sp.transfer:
        dx = tree_map(lambda a, d: a + dtau * d, dx, ctx["tax"][2])
    x = tree_map(lambda a, d: a[i] + d, ctx["state"], dx)
    g = ce_of_value(obj.cm, policies(x, prm).V)
    W = jnp.asarray(obj.W)
    return F, 100.0 * jnp.sum(W * g) / jnp.sum(W)


def _inputs(ctx, u, th):
    """Every country's household inputs as functions of (u, theta): log p (M, M), log w,
    R, T, tau (their tangents are the world directions of :mod:`hatrade.policy.krylov`)."""
    sp, arrs, layout = ctx["space"], ctx["arrs"], ctx["layout"]
    t = sp.tariffs(arrs.t, th)
    tau = arrs.tau if not sp.transfer else arrs.tau.at[sp.i].set(sp.tax(th))
    w, R, T, _ = layout.prices(u)
    logp = jnp.log(w)[None, :] + jnp.log1p(t)
    return dict(p=logp, w=jnp.log(w), R=jnp.broadcast_to(R, w.shape), T=T, tau=tau)


def _outer(ctx, u, th, Mij, Ai, xi):
    """(excess demands, criterion) from the households' aggregates and country i's state
    (the known maps around the household block)."""
    sp, arrs, layout, obj, i = (
        ctx["space"],
        ctx["arrs"],
        ctx["layout"],
        ctx["objective"],
        ctx["space"].i,
    )
    t = sp.tariffs(arrs.t, th)
    tau = arrs.tau if not sp.transfer else arrs.tau.at[i].set(sp.tax(th))
    a2 = arrs._replace(t=t, tau=tau)
    w, R, T, b = layout.prices(u)
    agg = dict(M=Mij, X=Mij / (1.0 + t), A=Ai, Y=w * ctx["N"])
    agg["G"] = jnp.sum(t / (1.0 + t) * Mij, axis=1)
    F = excess_demands(layout, a2, agg, T)
    prm = tree_map(lambda a: a[i], country_params(a2, w, R, T, b))
    if obj.W is None:
        real = jnp.sum(Mij[i]) / arrs.L[i] / price_index(prm.p, jnp.asarray(obj.sigma))
        return F, 100.0 * (real / obj.real0 - 1.0)
    g = ce_of_value(obj.cm, policies(xi, prm).V)
    W = jnp.asarray(obj.W)
    return F, 100.0 * jnp.sum(W * g) / jnp.sum(W)


@dataclass(frozen=True)
class _Static:
    """The hashable part of a gradient's context (a static argument of :func:`_direction`)."""

    space: PolicySpace
    layout: Layout
    real: bool
    gamma: float
    beta: float
    real0: float
    sigma: float
    hh_tol: float
    hh_max_iter: int
    tangent_tol: float


def _static_context(ctx) -> _Static:
    obj = ctx["objective"]
    cm = obj.cm
    return _Static(
        space=ctx["space"],
        layout=ctx["layout"],
        real=obj.W is None,
        gamma=0.0 if cm is None else float(cm.gamma),  # no NaN: the key must compare equal
        beta=0.0 if cm is None else float(cm.beta),
        real0=float(obj.real0) if obj.W is None else 0.0,
        sigma=float(obj.sigma),
        hh_tol=float(ctx["hh_tol"]),
        hh_max_iter=int(ctx["hh_max_iter"]),
        tangent_tol=float(ctx["tangent_tol"]),
    )


def _array_context(ctx) -> dict:
    obj = ctx["objective"]
    keys = ("arrs", "u0", "th0", "M0", "A0", "N", "state", "w", "R", "T", "beta")
    out = {k: ctx[k] for k in keys}
    if obj.W is not None:
        out.update(
            W=jnp.asarray(obj.W), U_c=jnp.asarray(obj.cm.U_c), U_psi=jnp.asarray(obj.cm.U_psi)
        )
    return out


@partial(jax.jit, static_argnums=(0,))
def _direction(st: _Static, ar: dict, v, dth, basis):
    """(dF, dC) along (v, dth): one world tangent direction (compiled), its tangent
    iterations warm-started from the combination of the ``basis`` (block tangents, rows p,
    w, R, T) that the inputs' changes give."""
    cm = None if st.real else CEMap(ar["U_c"], ar["U_psi"], st.gamma, st.beta)
    obj = Objective(W=None if st.real else ar["W"], cm=cm, real0=st.real0, sigma=st.sigma)
    ctx = dict(ar, space=st.space, layout=st.layout, objective=obj)
    th0 = ar["th0"]
    _, dins = jax.jvp(partial(_inputs, ctx), (ar["u0"], th0), (v, dth))
    c = jnp.concatenate([dins["p"].T, jnp.stack([dins["w"], dins["R"], dins["T"]])])
    guess = tree_map(lambda d: jnp.einsum("ri,ri...->i...", c, d)[None], basis)
    dM, dA, dx = world_jvps(
        ar["arrs"], ar["w"], ar["R"], ar["T"], ar["beta"], ar["state"],
        tree_map(lambda a: a[None], dins), st.hh_tol, st.hh_max_iter, st.tangent_tol, guess,
    )  # fmt: skip
    i = st.space.i
    primals = (ar["u0"], th0, ar["M0"], ar["A0"], tree_map(lambda a: a[i], ar["state"]))
    tangents = (v, dth, dM[0], dA[0], tree_map(lambda a: a[0, i], dx))
    _, (dF, dC) = jax.jvp(partial(_outer, ctx), primals, tangents)
    return dF, dC


def _product(st, ar, basis, k, v, s):
    """:func:`_direction` along (v, s e_k), with NumPy in and out (the GMRES's product)."""
    th0 = ar["th0"]
    dth = jnp.asarray(s * np.eye(th0.size)[k])
    dF, dC = _direction(st, ar, jnp.asarray(v, dtype=th0.dtype), dth, basis)
    return np.asarray(dF), float(dC)


def _krylov_gradient(ctx, P, warm, tol):
    """Gradient by GMRES per instrument (:mod:`hatrade.policy.krylov`); None if it fails."""
    lu = scipy.linalg.lu_factor(P)
    st, ar = _static_context(ctx), _array_context(ctx)
    n_th, n_rows = ctx["space"].n, len(ctx["rows"])
    basis = None if warm is None else warm.basis
    if basis is None:
        basis = tree_map(lambda a: jnp.zeros((n_rows,) + a.shape, a.dtype), ctx["state"])
    grad, du, Z, AZ, directions, history = np.zeros(n_th), [], [], [], 0, []
    for k in range(n_th):
        du0 = np.zeros(P.shape[0]) if warm is None or warm.du is None else warm.du[k]
        sol = tangent_gmres(
            partial(_product, st, ar, basis, k),
            du0,
            lambda r: scipy.linalg.lu_solve(lu, r),
            tol=tol,
            max_iter=min(P.shape[0], n_rows),
        )
        if sol is None:
            return None
        grad[k], directions = sol.dC, directions + sol.directions
        du.append(sol.du), Z.extend(sol.Z), AZ.extend(sol.AZ), history.append(sol.history)
    return grad, secant_update(P, Z, AZ), KrylovWarm(np.array(du), basis), directions, history


def _use_krylov(method, eq, space, layout, rows, tangents):
    """The preconditioner (eq's Jacobian) when the Krylov route is to be taken, else None.

    ``"auto"`` takes it with a warm start (an earlier block's tangents: cold Krylov
    directions cost about as much as a household solve each, warm ones a fraction) and few
    instruments (about 4 directions each, against the block's len(rows) (+1 with the tax)).
    """
    J = getattr(eq, "jacobian", None)
    if method == "block" or J is None or np.shape(J) != (layout.n, layout.n):
        if method == "krylov":
            log.info("criterion gradient: no fitting solver Jacobian, full block instead")
        return None
    if method == "auto" and (
        not isinstance(tangents, KrylovWarm) or 4 * space.n >= len(rows) + int(space.transfer)
    ):
        return None
    return np.array(J, float)


def _context(eq, space, objective, theta, hh_tol, hh_max_iter, tangent_tol) -> dict:
    """What both routes need at the solved equilibrium ``eq``."""
    M = eq.world.M
    arrs = instrumented_arrays(eq)
    layout = solver_layout(eq.world, eq.beta)
    w, R, T = (jnp.asarray(a) for a in (eq.prices.w, eq.prices.R, eq.prices.T))
    rows = direction_rows(M, ("p", "w", "R", "T"))
    ctx = dict(
        space=space,
        arrs=arrs,
        layout=layout,
        rows=rows,
        objective=objective,
        u0=jnp.asarray(layout.pack(eq.prices.w, eq.prices.R, eq.prices.T, eq.beta)),
        th0=jnp.asarray(np.asarray(theta, float)),
        M0=jnp.asarray(eq.aggregates["M"]),
        A0=jnp.asarray(eq.aggregates["A"]),
        N=jnp.asarray(eq.aggregates["N"]),
        state=eq.state,
        w=w,
        R=jnp.broadcast_to(R, (M,)),
        T=T,
        beta=jnp.asarray(eq.beta),
        hh_tol=hh_tol,
        hh_max_iter=hh_max_iter,
        tangent_tol=tangent_tol,
    )
    return ctx


@enable_x64
def criterion_gradient(
    eq,
    space: PolicySpace,
    objective: Objective,
    theta,
    *,
    tangents=None,
    hh_tol: float = 1e-10,
    hh_max_iter: int = 3000,
    tangent_tol: float = 1e-10,
    method: str = "auto",
    krylov_tol: float = 1e-11,
) -> Gradient:
    """Value and exact gradient of the criterion at the solved equilibrium ``eq`` of
    policy ``theta`` (see the module docstring).

    ``method``: ``"block"`` (the full household-block Jacobian, M + 3 world directions, and
    the adjoint solve), ``"krylov"`` (GMRES on the tangent system preconditioned by
    ``eq.jacobian``, a few world directions per instrument,
    :mod:`hatrade.policy.krylov`) or ``"auto"`` (Krylov when ``eq`` has a Jacobian and the
    instruments are few). ``krylov_tol``: GMRES stops when the residual of the tangent
    system (relative excess demands per unit of the instrument) is below it; if it does not
    within as many directions as the block has, the block is used. ``tangents``: the
    previous gradient's (warm start of either route).
    """
    if method not in ("auto", "block", "krylov"):
        raise ParameterError(f"method = {method!r} is not allowed: use auto, block or krylov.")
    t0 = time.perf_counter()
    ctx = _context(eq, space, objective, theta, hh_tol, hh_max_iter, tangent_tol)
    layout, rows = ctx["layout"], ctx["rows"]
    P = _use_krylov(method, eq, space, layout, rows, tangents)
    out, history = None, []
    if P is not None:
        warm = tangents if isinstance(tangents, KrylovWarm) else None
        out = _krylov_gradient(ctx, P, warm, krylov_tol)
        if out is None:
            log.info("criterion gradient: GMRES did not reach %g, full block instead", krylov_tol)
    if out is not None:
        grad, Fu, warm_out, directions, history = out
        i = space.i
        xi = tree_map(lambda a: a[i], eq.state)
        C = _outer(ctx, ctx["u0"], ctx["th0"], ctx["M0"], ctx["A0"], xi)[1]
    else:
        basis = tangents.basis if isinstance(tangents, KrylovWarm) else tangents
        C, grad, Fu, warm_out, directions = _block_gradient(ctx, eq, basis)
    J = EquilibriumJacobian(
        Fu, layout.unknown_names(eq.world.countries), layout.residual_names(eq.world.countries)
    )
    return Gradient(
        value=float(C),
        grad=grad,
        jacobian=J,
        tangents=warm_out,
        directions=directions,
        seconds=time.perf_counter() - t0,
        krylov_history=history,
    )


def _block_gradient(ctx, eq, tangents):
    """The full household-block route: M + 3 world directions, then the adjoint solve."""
    space, arrs, rows = ctx["space"], ctx["arrs"], ctx["rows"]
    w, R, T, beta = ctx["w"], ctx["R"], ctx["T"], ctx["beta"]
    blk = household_block(
        arrs, w, R, T, beta, eq.state, rows, tangents=tangents, tol=ctx["hh_tol"],
        max_iter=ctx["hh_max_iter"], tangent_tol=ctx["tangent_tol"],
    )  # fmt: skip
    ctx = dict(ctx, blk=dict(dM=jnp.asarray(blk.dM), dA=jnp.asarray(blk.dA), tangents=blk.tangents))
    directions = len(rows)
    if space.transfer:
        ctx["tax"] = _tax_direction(
            arrs, w, R, T, beta, eq.state, space.i, ctx["hh_tol"], ctx["hh_max_iter"]
        )
        directions += 1
    f = partial(_linearized, ctx)
    (F_u, F_th), (C_u, C_th) = jax.jacfwd(f, argnums=(0, 1))(ctx["u0"], ctx["th0"])
    _, C = f(ctx["u0"], ctx["th0"])
    F_u, F_th = np.asarray(F_u), np.asarray(F_th)
    nu = np.linalg.solve(F_u.T, np.asarray(C_u))
    grad = np.asarray(C_th) - F_th.T @ nu
    du = -np.linalg.solve(F_u, F_th).T  # (n_theta, n): the Krylov route's warm start
    return C, grad, F_u, KrylovWarm(du, blk.tangents), directions
