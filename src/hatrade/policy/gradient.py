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
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import stationary_distribution
from hatrade.core.household import policies, solve_fixed_point
from hatrade.core.instruments import rebate_weights
from hatrade.core.jacobian import direction_rows, household_block
from hatrade.core.markets import Layout, country_params, excess_demands, model_arrays
from hatrade.core.x64 import enable_x64
from hatrade.policy.criteria import ce_of_value, price_index
from hatrade.solve.equilibrium import EquilibriumJacobian

__all__ = ["Gradient", "Objective", "PolicySpace", "criterion_gradient", "solver_layout"]

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
    (world directions of the block plus country directions of the tax).
    """

    value: float
    grad: np.ndarray
    jacobian: EquilibriumJacobian
    tangents: object
    directions: int
    seconds: float


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


def _instrumented(eq):
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
) -> Gradient:
    """Value and exact gradient of the criterion at the solved equilibrium ``eq`` of
    policy ``theta`` (see the module docstring)."""
    t0 = time.perf_counter()
    M = eq.world.M
    arrs = _instrumented(eq)
    layout = solver_layout(eq.world, eq.beta)
    w, R, T = (jnp.asarray(a) for a in (eq.prices.w, eq.prices.R, eq.prices.T))
    beta = jnp.asarray(eq.beta)
    rows = direction_rows(M, ("p", "w", "R", "T"))
    blk = household_block(
        arrs, w, R, T, beta, eq.state, rows, tangents=tangents, tol=hh_tol,
        max_iter=hh_max_iter, tangent_tol=tangent_tol,
    )  # fmt: skip
    ctx = dict(
        space=space,
        arrs=arrs,
        layout=layout,
        rows=rows,
        objective=objective,
        u0=jnp.asarray(layout.pack(eq.prices.w, eq.prices.R, eq.prices.T, eq.beta)),
        blk=dict(dM=jnp.asarray(blk.dM), dA=jnp.asarray(blk.dA), tangents=blk.tangents),
        M0=jnp.asarray(eq.aggregates["M"]),
        A0=jnp.asarray(eq.aggregates["A"]),
        N=jnp.asarray(eq.aggregates["N"]),
        state=eq.state,
    )
    directions = len(rows) * M
    if space.transfer:
        ctx["tax"] = _tax_direction(arrs, w, R, T, beta, eq.state, space.i, hh_tol, hh_max_iter)
        directions += 1
    th0 = jnp.asarray(np.asarray(theta, float))
    f = partial(_linearized, ctx)
    (F_u, F_th), (C_u, C_th) = jax.jacfwd(f, argnums=(0, 1))(ctx["u0"], th0)
    _, C = f(ctx["u0"], th0)
    F_u, F_th = np.asarray(F_u), np.asarray(F_th)
    nu = np.linalg.solve(F_u.T, np.asarray(C_u))
    grad = np.asarray(C_th) - F_th.T @ nu
    J = EquilibriumJacobian(
        F_u, layout.unknown_names(eq.world.countries), layout.residual_names(eq.world.countries)
    )
    return Gradient(
        value=float(C),
        grad=grad,
        jacobian=J,
        tangents=blk.tangents,
        directions=directions,
        seconds=time.perf_counter() - t0,
    )
