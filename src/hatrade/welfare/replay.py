r"""The author's stopping rule, replayed with hatrade's household step (docs/differences.md).

The published code solves the household problem by value iteration with the same step as
hatrade (:func:`hatrade.core.household.egm_step`, docs/model.md 2.1) but stops differently:
it starts from :math:`v_0 = -1/(1-\beta)`, takes at most 500 steps and stops as soon as
*consumption* stops changing, :math:`\lVert c_{n+1} - c_n\rVert_2 < \text{tol}` (the
Euclidean norm over the whole (a, z, j) array; :math:`10^{-10}` for the new equilibrium,
:math:`10^{-12}` inside the welfare root finding). The norm is what reproduces the value
errors an independent check of the author's code found (US, log model, published prices:
about -0.05 at 1e-10, -0.019 to -0.005 at 1e-12 depending on :math:`\Lambda`; with the
largest change instead of the norm they would be -0.088 and -0.031 to -0.009;
docs/differences.md). The level of :math:`v` contracts only by :math:`\beta` per step, while the
policies (functions of *differences* of :math:`v`; with log utility they do not depend on
:math:`v` at all, Proposition 3) settle much sooner, so the values it stops at can be far
below the fixed point:

.. math::

    v_n - v^* \approx \beta^n (v_0 - v^*) \quad\text{(the level mode of the error)}.

The equivalent variation compares values, :math:`V^{old}(a,z;\Lambda) = V^{new}(a,z)`
(docs/model.md 5.4), so level errors that differ between the two sides move the gains.
:func:`replay_welfare` computes one country's EV both ways at *hatrade's* equilibrium prices:
with values that stop on the author's rule, and with converged values (hatrade's rule: c
and v both below the tolerance), through the same inversion, so the difference is the
stopping rule alone.

Inversion: :math:`V^{old}(\cdot;\Lambda)` is solved at a grid of :math:`\Lambda` nodes
(vmapped; under the author's rule each node stops at its own iteration, as a separate
solve would), and each state's :math:`\Lambda` is the root of the piecewise-linear
interpolant: the first root above one for states that gain (as
:func:`hatrade.welfare.equivalent_variation`), the first below one for states that lose.
With the default spacing of :math:`2.5\cdot10^{-4}` the interpolation error in a gain is of
order :math:`10^{-5}` points; the converged replay reproduces
:func:`~hatrade.welfare.country_welfare`'s mean (tests/test_replay.py). States whose root
lies outside the node range are undefined (NaN) and left out of the mean, as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.household import HHParams, egm_step, initial_state, logit
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.welfare.problem import household_problem, scale_income, solve_value

__all__ = [
    "StoppingRule",
    "ReplayResult",
    "stopping_rule_values",
    "converged_values",
    "node_roots",
    "replay_welfare",
]


@dataclass(frozen=True)
class StoppingRule:
    r"""The author's value-function-iteration stopping rule (docs/differences.md).

    Parameters
    ----------
    tol_new : float
        :math:`\max\lvert\Delta c\rvert` at which the new equilibrium's household solve
        stops (the author's 1e-10).
    tol_old : float
        The same inside the welfare root finding, for :math:`V^{old}(\cdot;\Lambda)` (1e-12).
    max_iter : int
        Steps at most (500); the author's loop then stops without a message.
    norm : {"l2", "max"}
        The size of the change of consumption: ``"l2"`` the Euclidean norm over all grid
        points (the author's), ``"max"`` the largest absolute change.
    converged_tol, converged_max_iter : float, int
        hatrade's rule for the converged comparison: c *and* v below ``converged_tol``.
    """

    tol_new: float = 1e-10
    tol_old: float = 1e-12
    max_iter: int = 500
    norm: str = "l2"
    converged_tol: float = 1e-12
    converged_max_iter: int = 5000

    def __post_init__(self):
        for name in ("tol_new", "tol_old", "converged_tol"):
            x = getattr(self, name)
            if not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0):
                raise ParameterError(f"{name} = {x!r} is not allowed: use a number > 0.")
        if self.norm not in ("l2", "max"):
            raise ParameterError(f"norm = {self.norm!r} is not allowed: use 'l2' or 'max'.")
        for name in ("max_iter", "converged_max_iter"):
            n = getattr(self, name)
            if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
                raise ParameterError(f"{name} = {n!r} is not allowed: use an integer >= 1.")


@partial(jax.jit, static_argnums=(1, 2, 3))
def stopping_rule_values(prm: HHParams, tol: float, max_iter: int, norm: str = "l2"):
    r"""Value iteration from the author's start, stopped on consumption.

    Iterates :math:`(c, v) \mapsto` :func:`~hatrade.core.household.egm_step` from
    :func:`~hatrade.core.household.initial_state` (:math:`v_0 = -1/(1-\beta)`) until
    :math:`\lVert c_{n+1} - c_n\rVert < \text{tol}` (``norm``: ``"l2"`` the Euclidean
    norm over all points, ``"max"`` the largest change) or ``max_iter`` steps, without
    hatrade's level correction. Call under 64-bit mode.

    Returns
    -------
    V : (Na, Nz) the log-sum value of the last step's :math:`v` (including :math:`\psi`).
    c : (Na, Nz, M) the last step's consumption.
    iterations : int, steps taken.
    dc : float, the last step's change of consumption in ``norm`` (>= tol when the loop
        stopped at ``max_iter``).
    """

    def cond(carry):
        _, it, dc = carry
        return (it < max_iter) & (dc >= tol)

    def body(carry):
        x, it, _ = carry
        new, _ = egm_step(x, prm)
        d = new.c - x.c
        size = jnp.sqrt(jnp.sum(d * d)) if norm == "l2" else jnp.max(jnp.abs(d))
        return new, it + 1, size

    x0 = initial_state(prm)
    x, it, dc = jax.lax.while_loop(cond, body, (x0, jnp.array(0), jnp.array(jnp.inf)))
    return logit(x.v, prm)[1], x.c, it, dc


def converged_values(prm: HHParams, tol: float, max_iter: int):
    """(V, c, iterations) at hatrade's fixed point (c and v below ``tol``; call under x64)."""
    V, x, it = solve_value(prm, initial_state(prm), tol, max_iter)
    return V, x.c, it


@partial(jax.jit, static_argnums=(2, 3, 4))
def _node_values(prm, lams, tol, max_iter, rule: str | None):
    """V^old(.; lam) at every node (vmapped), by the author's rule (its norm) or converged
    (None)."""

    def one(lam):
        p = scale_income(prm, lam)
        if rule:
            V, _, it, _ = stopping_rule_values(p, tol, max_iter, rule)
        else:
            V, _, it = converged_values(p, tol, max_iter)
        return V, it

    return jax.vmap(one)(lams)


def node_roots(lams, V_nodes, target) -> np.ndarray:
    r"""Each state's :math:`\Lambda` with :math:`V(\Lambda) = V^{target}`, piecewise linear.

    ``lams`` (K,) increasing and containing 1; ``V_nodes`` (K, ...) the values at the
    nodes; ``target`` (...). A state at least as well off at the target as at
    :math:`\Lambda = 1` gets the first crossing above one, a state worse off the first
    crossing below one; NaN where the node range holds no crossing.
    """
    lams = np.asarray(lams, dtype=float)
    d = np.asarray(V_nodes, dtype=float) - np.asarray(target, dtype=float)[None]
    k1 = int(np.flatnonzero(lams == 1.0)[0])
    flat = d.reshape(len(lams), -1)
    out = np.full(flat.shape[1], np.nan)
    for s in range(flat.shape[1]):
        col = flat[:, s]
        order = range(k1 + 1, len(lams)) if col[k1] <= 0 else range(k1 - 1, -1, -1)
        prev = k1
        for k in order:
            if (col[k] >= 0) if col[k1] <= 0 else (col[k] <= 0):
                t = col[prev] / (col[prev] - col[k]) if col[prev] != col[k] else 0.0
                out[s] = lams[prev] + t * (lams[k] - lams[prev])
                break
            prev = k
        if col[k1] == 0:
            out[s] = 1.0
    return out.reshape(d.shape[1:])


@dataclass
class ReplayResult:
    """One country's EV under the author's stopping rule and with converged values.

    ``mean_gain_rule`` and ``mean_gain_converged`` (percent) are weighted by the baseline
    stationary distribution over states with a defined EV; ``lam_*`` (Na, Nz) the
    per-state :math:`\\Lambda`; ``value_error_new`` (Na, Nz) the rule's :math:`V^{new}`
    minus the converged one, ``value_error_old`` (K, Na, Nz) the same for
    :math:`V^{old}(\\cdot;\\Lambda)` at the ``nodes``; ``iterations_*`` the rule's steps
    (new: one number; old: per node); ``hit_max_iter`` whether any rule solve stopped at
    ``max_iter`` (as the author's could).
    """

    country: str
    rule: StoppingRule
    nodes: np.ndarray
    lam_rule: np.ndarray
    lam_converged: np.ndarray
    mean_gain_rule: float
    mean_gain_converged: float
    value_error_new: np.ndarray
    value_error_old: np.ndarray
    iterations_new: int
    iterations_old: np.ndarray
    hit_max_iter: bool
    weights: np.ndarray

    def summary(self) -> dict:
        """Plain numbers: the two means, weighted mean value-level errors, iterations."""
        w = self.weights / self.weights.sum()
        k1 = int(np.flatnonzero(self.nodes == 1.0)[0])
        return {
            "country": self.country,
            "mean_gain_percent_author_rule": self.mean_gain_rule,
            "mean_gain_percent_converged": self.mean_gain_converged,
            "value_error_new_mean": float(np.sum(w * self.value_error_new)),
            "value_error_old_mean_at_lambda_1": float(np.sum(w * self.value_error_old[k1])),
            "value_error_old_range": (
                float(np.min(self.value_error_old)),
                float(np.max(self.value_error_old)),
            ),
            "iterations_new": self.iterations_new,
            "iterations_old_range": (
                int(np.min(self.iterations_old)),
                int(np.max(self.iterations_old)),
            ),
            "hit_max_iter": self.hit_max_iter,
            "undefined_mass_rule": float(np.sum(w[~np.isfinite(self.lam_rule)])),
            "undefined_mass_converged": float(np.sum(w[~np.isfinite(self.lam_converged)])),
        }


def _mean_gain(lam, weights) -> float:
    ok = np.isfinite(lam)
    return float(100.0 * np.sum(weights[ok] * (lam[ok] - 1.0)) / np.sum(weights[ok]))


def _nodes(spacing: float, low: float, high: float) -> np.ndarray:
    if not (0 < spacing and low < 1.0 < high):
        raise ParameterError(
            f"nodes: spacing = {spacing!r}, low = {low!r}, high = {high!r} are not allowed: "
            "use spacing > 0 and low < 1 < high."
        )
    below = np.arange(-math.floor((1.0 - low) / spacing), 0) * spacing
    above = np.arange(1, math.floor((high - 1.0) / spacing) + 1) * spacing
    return 1.0 + np.concatenate([below, [0.0], above])


@enable_x64
def replay_welfare(
    cf,
    country="USA",
    rule: StoppingRule | None = None,
    *,
    spacing: float = 2.5e-4,
    low: float = 0.99,
    high: float = 1.04,
    far: tuple[float, float] | None = None,
) -> ReplayResult:
    r"""One country's mean EV with the author's stopping rule and with converged values.

    Parameters
    ----------
    cf : :class:`~hatrade.analysis.counterfactual.Counterfactual`
        hatrade's baseline (``cf.baseline``) and new (``cf.new``) equilibria; their prices
        are used as they are (the replay changes only how the household values are solved).
    country : str or int
    rule : StoppingRule, optional
        The author's rule (the defaults) unless given.
    spacing, low, high : float
        The :math:`\Lambda` nodes: ``low`` to ``high`` in steps of ``spacing`` (through 1).
    far : (step, top), optional
        More nodes above ``high``, ``step`` apart up to ``top``, for the borrowers' first
        roots far above one (the baseline model's reach past 1.04).

    Returns
    -------
    ReplayResult
    """
    rule = rule or StoppingRule()
    lams = _nodes(spacing, low, high)
    if far is not None:
        step, top = far
        if not (step > 0 and top > high):
            raise ParameterError(
                f"far = {far!r} is not allowed: use (step, top) with step > 0, top > high."
            )
        lams = np.concatenate([lams, np.arange(lams[-1] + step, top + 0.5 * step, step)])
    prm_new, _ = household_problem(cf.new, country)
    prm_old, _ = household_problem(cf.baseline, country)
    V_new_rule, _, it_new, _ = stopping_rule_values(prm_new, rule.tol_new, rule.max_iter, rule.norm)
    V_new_conv, _, _ = converged_values(prm_new, rule.converged_tol, rule.converged_max_iter)
    grid = jnp.asarray(lams)
    V_old_rule, it_old = _node_values(prm_old, grid, rule.tol_old, rule.max_iter, rule.norm)
    V_old_conv, it_conv = _node_values(
        prm_old, grid, rule.converged_tol, rule.converged_max_iter, None
    )
    if int(jnp.max(it_conv)) >= rule.converged_max_iter:
        from hatrade.core.errors import EquilibriumError

        raise EquilibriumError(
            f"replay_welfare: a converged household solve hit {rule.converged_max_iter} "
            "iterations; try a larger converged_max_iter."
        )
    i = cf.baseline.world.index(country) if isinstance(country, str) else int(country)
    weights = np.asarray(cf.baseline.lam[i], dtype=float)
    lam_rule = node_roots(lams, np.asarray(V_old_rule), np.asarray(V_new_rule))
    lam_conv = node_roots(lams, np.asarray(V_old_conv), np.asarray(V_new_conv))
    its_old = np.asarray(it_old)
    return ReplayResult(
        country=cf.baseline.world.countries[i],
        rule=rule,
        nodes=lams,
        lam_rule=lam_rule,
        lam_converged=lam_conv,
        mean_gain_rule=_mean_gain(lam_rule, weights),
        mean_gain_converged=_mean_gain(lam_conv, weights),
        value_error_new=np.asarray(V_new_rule - V_new_conv),
        value_error_old=np.asarray(V_old_rule - V_old_conv),
        iterations_new=int(it_new),
        iterations_old=its_old,
        hit_max_iter=bool(int(it_new) >= rule.max_iter or its_old.max() >= rule.max_iter),
        weights=weights,
    )
