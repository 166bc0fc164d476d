r"""Steps 1-3 of the equivalent variation (:mod:`hatrade.welfare.ev`): first guesses,
:math:`\lambda` nodes and the inversion per state.

1. :func:`first_guesses`: the new values :math:`V^{new}`, the old ones at
   :math:`\lambda = 1` and their exact slope give :math:`\lambda^0 = 1 + (V^{new} -
   V^{old})/V^{old}_\lambda` per state, and the largest feasible :math:`\lambda`;
2. :func:`cover_roots`: batches of nodes (Chebyshev points over the bulk's guesses, then
   towards roots outside the range); :func:`reach_first_roots`: nodes above the range until
   the borrowers whose value first falls in :math:`\lambda` cross :math:`V^{new}`;
3. :func:`invert`: every state's root of its spline through the nodes
   (:mod:`hatrade.welfare.interpolate`) with error estimates; :func:`refine`: nodes at the
   roots of the states whose estimate exceeds ``lam_tol``; :func:`finish`: the local root
   where nothing changes, NaN where the EV is not a gain measure.

The solved nodes live in :class:`Nodes` (grown in place), what step 1 fixes in
:class:`EVStart`, the settings in :class:`EVOptions`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from hatrade.core.household import HHState
from hatrade.core.params import ParameterError
from hatrade.welfare.interpolate import (
    first_crossing,
    hermite_eval,
    hermite_roots,
    loo_estimate,
    predict_crossing,
    spline_slopes,
)
from hatrade.welfare.problem import (
    check_iterations,
    household_problem,
    solve_value,
    value_tangent,
    values_at_nodes,
)

__all__ = [
    "EV_RANGES",
    "EVOptions",
    "ev_option_problem",
    "EVStart",
    "Inversion",
    "Nodes",
    "cover_roots",
    "finish",
    "first_guesses",
    "invert",
    "reach_first_roots",
    "refine",
]


#: The allowed values of :class:`EVOptions`' numeric fields: (integer?, low, high, low
#: open?); None: no bound. ``n_nodes`` >= 3: with no node besides lambda = 1 the inversion
#: stops at the first-order guesses (``n_nodes = 0`` moved welfare gains by about 10%).
#: Measured on the 3-country test world (H, 10% cut in its import costs) against the
#: verified EV: n_nodes = 2 left max |lambda error| 9e-4 and the mean gain off by 0.035
#: percentage points (3 nodes in all, the error estimate did not ask for more); 3 gave
#: 1.5e-4 and 0.0002 points, as good as 8 (1.0e-4, 0.0002): 3 is the smallest that meets
#: ``lam_tol`` = 1e-4 (about).
EV_RANGES: dict[str, tuple[bool, float, float | None, bool]] = {
    "n_nodes": (True, 3, None, False),
    "tol": (False, 0.0, None, True),
    "hh_tol": (False, 0.0, 1e-2, True),
    "hh_max_iter": (True, 1, None, False),
    "node_batch": (True, 1, None, False),
    "chunk": (True, 1, None, False),
    "max_rounds": (True, 0, None, False),
    "lam_tol": (False, 0.0, None, True),
    "refine_rounds": (True, 0, None, False),
}


def ev_option_problem(name: str, value) -> str | None:
    """``"<name> = <value>: must be ..."`` when ``value`` is outside :data:`EV_RANGES`."""
    integer, lo, hi, lo_open = EV_RANGES[name]
    need = ("an integer" if integer else "a finite number") + (
        f" > {lo:g}" if lo_open else f" >= {lo:g}"
    )
    need += "" if hi is None else f" and <= {hi:g}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (np.integer, int) if integer else (np.integer, np.floating, int, float)
    ):
        return f"{name} = {value!r} is not allowed: {name} must be {need}."
    v = float(value)
    ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
    return None if ok else f"{name} = {value!r} is not allowed: {name} must be {need}."


@dataclass(frozen=True)
class EVOptions:
    """Settings of :func:`equivalent_variation` (the defaults are its defaults; see its
    parameters), checked on construction against :data:`EV_RANGES` (a value outside its
    range raises :class:`ParameterError` naming the field)."""

    n_nodes: int = 8
    verify: bool = False
    tol: float = 1e-10
    hh_tol: float = 1e-12
    hh_max_iter: int = 5000
    node_batch: int = 4
    chunk: int = 64
    max_rounds: int = 8
    lam_tol: float = 1e-4
    refine_rounds: int = 1

    def __post_init__(self) -> None:
        for name in EV_RANGES:
            problem = ev_option_problem(name, getattr(self, name))
            if problem is not None:
                raise ParameterError(problem)
        if not isinstance(self.verify, (bool, np.bool_)):
            raise ParameterError(f"verify = {self.verify!r} is not allowed: use True or False.")


@dataclass
class EVStart:
    r"""What step 1 fixes for one country (flat arrays (n,) over states, a-major).

    ``prm`` the old problem; ``V_new``, ``V1``, ``S1`` (Na, Nz) the new values, the old ones
    at :math:`\lambda = 1` and their slope; ``dx1`` the slope of the old state (warm starts);
    ``diff`` :math:`V^{new} - V^{old}`, ``S1f`` the slope, ``target`` :math:`V^{new}`,
    ``lam0`` the first guesses; masks ``defined`` (slope > 0), ``local`` (no change),
    ``nonmono`` (slope <= 0 but better off: the first root above 1); ``lam_max`` the largest
    :math:`\lambda` with positive consumption at the borrowing limit, ``lam_cap`` the bound
    of the nodes below it.
    """

    code: str
    prm: object
    Na: int
    Nz: int
    V_new: np.ndarray
    V1: np.ndarray
    S1: np.ndarray
    dx1: HHState
    diff: np.ndarray
    S1f: np.ndarray
    target: np.ndarray
    lam0: np.ndarray
    defined: np.ndarray
    local: np.ndarray
    nonmono: np.ndarray
    lam_max: float
    lam_cap: float


@dataclass
class Nodes:
    """The solved nodes, sorted: ``lams`` (K,), values ``F`` (K, n), states ``xs`` (K, ...)
    (warm starts), and ``stages`` (batches of new nodes so far)."""

    lams: np.ndarray
    F: np.ndarray
    xs: HHState
    stages: int = 0


class Inversion(NamedTuple):
    """Node slopes ``S`` (K, n), roots ``lam``, ``bracketed``, error estimates in V (``est``)
    and in lambda (``lam_est``), per state."""

    S: np.ndarray
    lam: np.ndarray
    bracketed: np.ndarray
    est: np.ndarray
    lam_est: np.ndarray


# ----------------------------------------------------------------------------- step 1


def first_guesses(
    old, new, ci: int, opt: EVOptions, work: dict, target=None
) -> tuple[EVStart, Nodes]:
    """Step 1: the new values, and the old ones at lambda = 1 with their exact derivative.

    ``target`` (Na, Nz), optional: the values to reach instead of the new steady state's
    (e.g. the value at the start of a transition); ``new`` is then not solved.
    """
    code = old.world.countries[ci]
    prm_o, x_o = household_problem(old, ci)
    prm_n, x_n = household_problem(new, ci)
    if prm_o.a_grid.shape != prm_n.a_grid.shape or prm_o.z.shape != prm_n.z.shape:
        raise ParameterError("old and new equilibria have different household grids.")
    Na, Nz = prm_o.a_grid.shape[0], prm_o.z.shape[0]
    t0 = time.perf_counter()
    if target is None:
        V_new, _, it_n = solve_value(prm_n, x_n, opt.hh_tol, opt.hh_max_iter)
    else:
        V_new, it_n = np.asarray(target, float).reshape(Na, Nz), 0
    one = jnp.asarray(1.0)
    V1, S1, x1, dx1, it_1 = value_tangent(prm_o, x_o, one, opt.hh_tol, opt.hh_max_iter)
    check_iterations([it_n, it_1], opt.hh_max_iter, code)
    V_new, V1, S1 = (np.asarray(a, float) for a in (V_new, V1, S1))
    work["solves"] += 2 if target is None else 1
    work["tangents"] += 1
    work["iterations"] += int(it_n) + int(it_1)
    work["seconds"]["new_and_lambda_1"] = time.perf_counter() - t0
    diff = (V_new - V1).ravel()
    S1f = S1.ravel()
    defined = S1f > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lam0 = 1.0 + np.where(defined, diff / S1f, 0.0)
    local = np.abs(diff) <= 1e-3 * opt.tol  # equal values (a zero change): the local root
    # borrowers near the limit whose value falls with a small scaling but who are better
    # off: their EV is the first root above 1
    nonmono = ~defined & ~local & (diff > 0)
    # lambda must keep consumption feasible at the borrowing limit: lam (R a_0 + w z + T)
    # > a_0 where total income there is negative; nodes stay below (a margin of 2%)
    inc0 = np.asarray(prm_o.R * prm_o.a_grid[0] + prm_o.w * prm_o.z + prm_o.T)
    a_min = float(prm_o.a_grid[0])
    with np.errstate(divide="ignore"):
        lam_max = float(np.min(np.where(inc0 < 0, a_min / inc0, np.inf)))
    lam_cap = 1.0 + 0.98 * (lam_max - 1.0) if np.isfinite(lam_max) else np.inf
    st = EVStart(
        code=code,
        prm=prm_o,
        Na=Na,
        Nz=Nz,
        V_new=V_new,
        V1=V1,
        S1=S1,
        dx1=dx1,
        diff=diff,
        S1f=S1f,
        target=V_new.ravel(),
        lam0=lam0,
        defined=defined,
        local=local,
        nonmono=nonmono,
        lam_max=lam_max,
        lam_cap=lam_cap,
    )
    nodes = Nodes(lams=np.array([1.0]), F=V1.reshape(1, -1), xs=HHState(x1.c[None], x1.v[None]))
    return st, nodes


# ----------------------------------------------------------------------------- nodes


def _bulk_nodes(st: EVStart, n_nodes: int) -> np.ndarray:
    """Chebyshev nodes spanning the first guesses of the bulk of the states.

    A few states with a small slope at 1 (far roots) are reached by extra nodes later, so
    they do not thin out the bulk's nodes; no nodes on a side of 1 without guesses (the
    node at 1, with its exact slope, closes the range there)."""
    defined, local, S1f, lam0 = st.defined, st.local, st.S1f, st.lam0
    if not np.any(defined & ~local):
        return np.array([])
    bulk = defined & ~local & (S1f >= 0.25 * np.median(S1f[defined]))
    g = lam0[bulk] if np.any(bulk) else lam0[defined & ~local]
    lo, hi = float(min(g.min(), 1.0)), float(max(g.max(), 1.0))
    width = max(hi - lo, 1e-6)
    lo = lo - 0.1 * width if g.min() < 1.0 else 1.0
    hi = hi + 0.1 * width if g.max() > 1.0 else 1.0
    if lo == 1.0 or hi == 1.0:  # Chebyshev-Lobatto points of one side; 1 is solved
        kk = np.arange(1, n_nodes + 1)
        x = 0.5 - 0.5 * np.cos(np.pi * kk / max(n_nodes, 1))
        return 1.0 + (hi - lo) * x if hi > 1.0 else 1.0 - (hi - lo) * x
    kk = np.arange(n_nodes)
    return (
        0.5 * (lo + hi) - 0.5 * (hi - lo) * np.cos(np.pi * kk / max(n_nodes - 1, 1))
        if n_nodes > 1
        else np.array([hi] if n_nodes else [])
    )


def _fresh(nodes: Nodes, new_nodes) -> np.ndarray:
    """The candidate nodes not already solved (farther than 1e-9 from every node)."""
    new_nodes = np.asarray(new_nodes, float)
    if not len(new_nodes):
        return new_nodes
    return new_nodes[np.min(np.abs(new_nodes[:, None] - nodes.lams[None, :]), axis=1) > 1e-9]


def _solve_nodes(st: EVStart, nodes: Nodes, new_nodes, opt: EVOptions, work: dict) -> None:
    """Batched solves at new nodes (below ``lam_cap``), merged into ``nodes``, sorted.

    Batches of ``node_batch`` nodes of similar lambda (a vmapped loop runs until its slowest
    member converges; convergence slows as beta lambda R approaches 1), each member
    warm-started from the nearest solved node along the exact tangent at 1.
    """
    new_nodes = new_nodes[new_nodes < st.lam_cap]
    if not len(new_nodes):
        return
    nb = opt.node_batch
    new_nodes = np.sort(new_nodes)
    lams, xs, dx1 = nodes.lams, nodes.xs, st.dx1
    vals, sts = [], []
    for g0 in range(0, len(new_nodes), nb):
        grp = new_nodes[g0 : g0 + nb]
        m = len(grp)
        # pad to node_batch (repeating the last node) so that one batch size is compiled;
        # the padded members are dropped below
        grp = np.concatenate([grp, np.full(nb - m, grp[-1])])
        near = np.argmin(np.abs(grp[:, None] - lams[None, :]), axis=1)
        dl = jnp.asarray(grp - lams[near])[:, None, None, None]
        x0s = HHState(
            jnp.clip(xs.c[jnp.asarray(near)] + dx1.c[None] * dl, 1e-12),
            xs.v[jnp.asarray(near)] + dx1.v[None] * dl,
        )
        Vk, xk, itk = values_at_nodes(st.prm, x0s, jnp.asarray(grp), opt.hh_tol, opt.hh_max_iter)
        itk = np.asarray(itk)
        check_iterations(itk.tolist(), opt.hh_max_iter, st.code)
        work["solves"] += nb
        work["iterations"] += int(itk.max()) * nb  # to the slowest member
        vals.append(np.asarray(Vk)[:m].reshape(m, -1))
        sts.append(HHState(xk.c[:m], xk.v[:m]))
    lams = np.concatenate([lams, new_nodes])
    F = np.concatenate([nodes.F] + vals)
    xs = HHState(*(jnp.concatenate([a] + [s[j] for s in sts]) for j, a in enumerate(xs)))
    order = np.argsort(lams)
    nodes.lams, nodes.F = lams[order], F[order]
    nodes.xs = HHState(*(a[jnp.asarray(order)] for a in xs))


def _add_nodes(st: EVStart, nodes: Nodes, new_nodes, opt: EVOptions, work: dict) -> None:
    """One stage: solve the candidates in ``new_nodes`` (already fresh) if there are any."""
    if len(new_nodes):
        nodes.stages += 1
        _solve_nodes(st, nodes, new_nodes, opt, work)


# ----------------------------------------------------------------------------- inversion


def invert(st: EVStart, nodes: Nodes) -> Inversion:
    """Spline slopes, each state's root (the first root above 1 for the borrowers whose
    value falls at 1), and the interpolation error estimates (V, lambda)."""
    lams, F, target, lam0 = nodes.lams, nodes.F, st.target, st.lam0
    if len(lams) < 2:
        nan = np.full_like(lam0, np.nan)
        return Inversion(st.S1f[None, :], lam0.copy(), np.zeros(lam0.shape, bool), nan, nan)
    k1 = int(np.where(lams == 1.0)[0][0])
    S = spline_slopes(lams, F, (k1, st.S1f))
    lam, bracketed = hermite_roots(lams, F - target[None, :], S, lam0)
    if np.any(st.nonmono):
        cols = np.where(st.nonmono)[0]
        k, found = first_crossing(lams, F[:, cols] - target[None, cols])
        guess = 0.5 * (lams[k] + lams[np.minimum(k + 1, len(lams) - 1)])
        r_up, _ = hermite_roots(lams, F[:, cols] - target[None, cols], S[:, cols], guess)
        lam[cols] = np.where(found, r_up, np.nan)
        bracketed[cols] = found
    est = loo_estimate(lams, F, S, lam, k1)
    # the same estimate in lambda: divided by |dV_old/dlambda| at the root (V's units
    # differ across countries, A^(1-gamma), so this is the comparable one)
    with np.errstate(divide="ignore", invalid="ignore"):
        _, der = hermite_eval(lams, F, S, np.where(np.isfinite(lam), lam, 1.0))
        lam_est = np.where(np.isfinite(lam), est / np.abs(der), np.nan)
    return Inversion(S, lam, bracketed, est, lam_est)


def _extension(st: EVStart, nodes: Nodes, ext: np.ndarray, node_batch: int) -> list:
    """Extra nodes towards the roots ``ext`` outside the node range (a few states with far
    roots); a batch above reaches the borrowers' predicted first roots above 1 too."""
    lams, F = nodes.lams, nodes.F
    span = lams[-1] - lams[0]
    above = ext[np.isfinite(ext) & (ext > lams[-1])]
    below = ext[np.isfinite(ext) & (ext < lams[0])]
    if not len(above) and not len(below):  # no usable extrapolation: widen both ways
        above, below = np.array([lams[-1] + span]), np.array([max(lams[0] - span, 0.05)])
    new_nodes = []
    if len(above):
        if np.any(st.nonmono):
            pn = predict_crossing(lams, F[:, st.nonmono] - st.target[None, st.nonmono])
            above = np.concatenate([above, pn[np.isfinite(pn) & (pn > lams[-1])]])
        top = min(
            above.max() + 0.15 * (above.max() - lams[-1]),
            lams[-1] + 4 * span,
            0.5 * (lams[-1] + st.lam_cap),
        )
        new_nodes += list(np.linspace(lams[-1], top, node_batch + 1)[1:])
    if len(below):
        bot = max(below.min() - 0.1 * (lams[0] - below.min()), lams[0] - 4 * span, 0.05)
        new_nodes += list(np.linspace(bot, lams[0], 3)[:-1])
    return new_nodes


def cover_roots(st: EVStart, nodes: Nodes, opt: EVOptions, work: dict) -> None:
    """Step 2: the bulk's nodes, then (at most 3 stages in all) nodes towards the roots
    that fall outside the range."""
    new_nodes = _bulk_nodes(st, opt.n_nodes)
    while True:
        _add_nodes(st, nodes, _fresh(nodes, new_nodes), opt, work)
        if len(nodes.lams) < 2:
            return
        inv = invert(st, nodes)
        far = st.defined & ~st.local & ~inv.bracketed
        if not np.any(far) or nodes.stages >= 3:
            return
        new_nodes = _extension(st, nodes, inv.lam[far], opt.node_batch)


def reach_first_roots(st: EVStart, nodes: Nodes, opt: EVOptions, work: dict) -> None:
    """Nodes above the range until V_old crosses V_new in every borrower whose value
    first falls in lambda (dV/dlam <= 0 at 1) but who is better off.

    V_old turns up again as lambda grows (lambda R makes saving worth more): each round
    predicts the crossings (the parabola through the top three nodes, else the tangent at
    the top node) and solves one batch of nodes reaching past the farthest prediction, not
    past the feasibility bound.
    """
    if not np.any(st.nonmono):
        return
    t1 = time.perf_counter()
    cols = np.where(st.nonmono)[0]
    tgt = st.target[None, cols]
    step = max(0.5 * (nodes.lams.max() - 1.0), 0.01)
    for _ in range(opt.max_rounds):
        if np.all(first_crossing(nodes.lams, nodes.F[:, cols] - tgt)[1]):
            break
        top = nodes.lams.max()
        pred = predict_crossing(nodes.lams, nodes.F[:, cols] - tgt)
        pred = pred[np.isfinite(pred) & (pred > top)]
        reach = min(1.15 * (pred.max() - top), 4 * step) if len(pred) else step
        end = min(top + max(reach, 1e-4), 0.5 * (top + st.lam_cap))
        new_nodes = _fresh(
            nodes, top + (end - top) * np.arange(1, opt.node_batch + 1) / opt.node_batch
        )
        if top >= st.lam_cap or not len(new_nodes) or new_nodes.max() <= top:
            break
        step *= 2.0
        _add_nodes(st, nodes, new_nodes, opt, work)
    work["seconds"]["gain_side"] = time.perf_counter() - t1


def refine(st: EVStart, nodes: Nodes, inv: Inversion, opt: EVOptions, work: dict) -> Inversion:
    """Step 3's refinement: where the estimated error in lambda exceeds ``lam_tol``, nodes
    at those states' roots (quantiles of their lambdas; one batch per round)."""
    refined = 0
    nb = opt.node_batch
    for _ in range(opt.refine_rounds):
        bad = (
            np.isfinite(inv.lam_est)
            & (inv.lam_est > opt.lam_tol)
            & ~st.local
            & (st.defined | st.nonmono)
        )
        if not np.any(bad):
            break
        cand = np.unique(np.quantile(inv.lam[bad], (np.arange(nb) + 0.5) / nb))
        cand = cand[
            (cand < st.lam_cap)
            & (np.min(np.abs(cand[:, None] - nodes.lams[None, :]), axis=1) > 1e-6)
        ]
        if len(cand) > 1:  # nodes closer than 1e-6 measure kinks, not the curve
            cand = cand[np.concatenate([[True], np.diff(cand) > 1e-6])]
        if not len(cand):
            break
        refined += len(cand)
        _add_nodes(st, nodes, cand, opt, work)
        inv = invert(st, nodes)
    work["refinement_nodes"] = refined
    return inv


def finish(st: EVStart, inv: Inversion) -> tuple[Inversion, np.ndarray]:
    """The final roots: the local root where nothing changes, NaN where the EV is not a
    gain measure. Returns the inversion and the mask of those undefined states."""
    local, diff, S1f = st.local, st.diff, st.S1f
    defined = st.defined | (st.nonmono & np.isfinite(inv.lam))
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(local, 1.0 + np.where(S1f != 0, diff / S1f, 0.0), inv.lam)
    est = np.where(local, np.abs(diff), inv.est)
    undefined = ~defined & ~local
    lam = np.where(undefined, np.nan, lam)
    est = np.where(undefined, np.nan, est)
    with np.errstate(divide="ignore", invalid="ignore"):  # the slope at the root is S1f there
        lam_est = np.where(local, np.abs(diff) / np.abs(S1f), inv.lam_est)
    lam_est = np.where(undefined, np.nan, lam_est)
    bracketed = inv.bracketed & ~undefined
    return Inversion(inv.S, lam, bracketed, est, lam_est), undefined
