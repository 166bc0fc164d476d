r"""The optimal policy of one country, the others' fixed (docs/policy.md section 3).

:func:`optimal_policy` maximizes a criterion (:mod:`hatrade.policy.criteria`) of country
i's households in the new stationary equilibrium over its tariffs (one uniform tariff on
all partners, or one per partner) and optionally its labor-income tax (revenue rebated lump
sum), with SciPy's L-BFGS-B inside bounds. Every evaluation solves the equilibrium
(warm-started from the previous one, with the previous exact Jacobian) and takes the exact
gradient by the implicit function theorem (:func:`hatrade.policy.gradient.criterion_gradient`).
Household criteria are optimized in their consumption-equivalent form (a smooth function of
the new values); the equivalent variation is reported at the optimum.

Resuming: every evaluation is passed to ``on_evaluation`` (the CLI writes it to a JSON
checkpoint) and a ``history`` of earlier evaluations is replayed without solving: the
optimizer is deterministic, so a restarted run retraces the same points and solves only
from where the interrupted one stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hatrade.core.instruments import check_rebate
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.policy.criteria import CriteriaPanel, ce_map, criterion_weights, parse_criterion
from hatrade.policy.gradient import Objective, PolicySpace, criterion_gradient
from hatrade.solve.equilibrium import solve_equilibrium

__all__ = [
    "INSTRUMENTS",
    "PolicyOptions",
    "PolicyResult",
    "make_objective",
    "optimal_policy",
    "policy_space",
    "solve_policy",
]

log = logging.getLogger(__name__)

#: Instrument sets of :func:`optimal_policy`.
INSTRUMENTS = ("tariff", "tariff+transfer", "partner-tariffs", "partner-tariffs+transfer")


@dataclass(frozen=True)
class PolicyOptions:
    """Bounds and tolerances of :func:`optimal_policy`.

    tariff_bounds, tax_bounds : (lower, upper) of every tariff and of the labor tax.
    gtol : the optimum's projected gradient (percent per unit of the instrument) is below
        this. coarse_gtol : L-BFGS-B stops at this projected gradient (its line search
        compares criterion values, accurate only to the solver tolerance); quasi-Newton
        steps on the exact gradient then go on to ``gtol`` (:func:`_polish`).
    max_solves : equilibrium solves of L-BFGS-B at most.
    step : the length, in units of the instruments, of L-BFGS-B's first step (its variables
        are the instruments divided by ``step``; the first step of L-BFGS-B has unit length,
        a whole tariff range without the scaling).
    tol, hh_tol : equilibrium and household tolerances of every solve.
    """

    tariff_bounds: tuple = (0.0, 1.0)
    tax_bounds: tuple = (0.0, 0.9)
    gtol: float = 1e-7
    coarse_gtol: float = 1e-5
    max_solves: int = 30
    step: float = 0.1
    tol: float = 1e-10
    hh_tol: float = 1e-10

    def __post_init__(self):
        for name in ("tariff_bounds", "tax_bounds"):
            lo, hi = (float(x) for x in getattr(self, name))
            if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo < hi):
                raise ParameterError(
                    f"{name} = {getattr(self, name)!r} is not allowed: need 0 <= lower < upper, "
                    "finite."
                )
        if self.tax_bounds[1] >= 1.0:
            raise ParameterError(f"tax_bounds = {self.tax_bounds!r}: the upper bound must be < 1.")
        if not (np.isfinite(self.step) and self.step > 0):
            raise ParameterError(f"step = {self.step!r}: must be positive and finite.")
        if not int(self.max_solves) >= 1:
            raise ParameterError(f"max_solves = {self.max_solves!r}: must be at least 1.")


def policy_space(world, country: str, instrument: str = "tariff") -> PolicySpace:
    """The :class:`PolicySpace` of ``country`` (checked: a known code and instrument)."""
    if instrument not in INSTRUMENTS:
        raise ParameterError(
            f"instrument = {instrument!r} is not allowed: use one of {', '.join(INSTRUMENTS)}."
        )
    i = world.index(country)
    if world.M < 2:
        raise ParameterError("a tariff policy needs at least two countries.")
    partners = tuple(j for j in range(world.M) if j != i)
    return PolicySpace(
        i=i,
        partners=partners,
        uniform=instrument.startswith("tariff"),
        transfer=instrument.endswith("+transfer"),
    )


def make_objective(baseline, country, criterion) -> Objective:
    """The differentiated form of ``criterion`` for ``country`` against ``baseline``."""
    crit = parse_criterion(criterion)
    i = baseline.world.index(country)
    sigma = float(
        baseline.household.sigma_eps * baseline.world.tfp[i] ** (1 - baseline.household.gamma)
    )
    if not crit.household_mean:
        from hatrade.policy.criteria import price_index

        e = np.sum(baseline.aggregates["M"][i]) / baseline.world.labor[i]
        P = float(price_index(np.asarray(baseline.p[i]), np.asarray(sigma)))
        return Objective(W=None, cm=None, real0=float(e / P), sigma=sigma)
    W = criterion_weights(baseline, country, crit)
    return Objective(W=W, cm=ce_map(baseline, i), real0=float("nan"), sigma=sigma)


def world_at(world, space: PolicySpace, theta):
    """``world`` with country i's instruments set to ``theta``."""
    base_t = np.zeros((world.M, world.M)) if world.tariffs is None else world.tariffs
    t = space.tariffs(base_t, np.asarray(theta, float))
    tax = None
    if space.transfer or world.labor_tax is not None:
        tax = np.zeros(world.M) if world.labor_tax is None else np.array(world.labor_tax)
        if space.transfer:
            tax[space.i] = float(theta[-1])
    return world.replace(tariffs=t, labor_tax=tax)


def solve_policy(baseline, world, start, *, jacobian=None, tol=1e-10, hh_tol=1e-10):
    """The stationary equilibrium of ``world`` (beta at the baseline's), warm-started from
    the equilibrium ``start``; ``jacobian`` (with transfers) is used when it fits."""
    hh = baseline.household.replace(beta=float(baseline.beta))
    R = np.asarray(start.prices.R, float)
    R_guess = R.copy() if world.financial == "autarky" else float(np.mean(R))
    return solve_equilibrium(
        world,
        hh,
        solve_for="R",
        wages=start.prices.w,
        R_guess=R_guess,
        T_guess=np.asarray(start.prices.T, float),
        state=start.state,
        income=baseline.income,
        jacobian=jacobian if world.has_tariffs else None,
        tol=tol,
        hh_tol=hh_tol,
    )


@dataclass
class PolicyResult:
    """The optimum of :func:`optimal_policy`.

    theta, names : instrument values and labels (``tariff`` or ``tariff_<ISO>``,
    ``labor_tax``); value, grad : criterion (percent against the baseline) and its exact
    gradient there; grad_norm : projected gradient norm (zero components where a bound is
    active and the gradient points outward); on_bound : the instruments at a bound;
    converged, message : the optimizer's; solves : equilibrium solves; history : every
    evaluation (theta, value, grad, seconds); eq : the equilibrium at the optimum.
    """

    country: str
    instrument: str
    criterion: str
    rebate: str
    theta: np.ndarray
    names: tuple
    bounds: list
    value: float
    grad: np.ndarray
    grad_norm: float
    on_bound: tuple
    converged: bool
    message: str
    solves: int
    history: list = field(default_factory=list)
    eq: object = None
    seconds: float = 0.0


def _names(world, space: PolicySpace) -> tuple:
    c = world.countries
    names = ("tariff",) if space.uniform else tuple(f"tariff_{c[j]}" for j in space.partners)
    return names + (("labor_tax",) if space.transfer else ())


class _CoarseOptimum(Exception):
    """Raised by an evaluation whose projected gradient is below ``coarse_gtol``: L-BFGS-B
    is stopped there (its line search would go on comparing values within solver noise)."""

    def __init__(self, theta):
        super().__init__("coarse optimum")
        self.theta = np.array(theta, float)


class _Evaluations:
    """Criterion and gradient by theta, with a replayable record (see the module doc)."""

    def __init__(self, baseline, world, space, objective, opts, history, on_evaluation):
        self.baseline, self.world, self.space = baseline, world, space
        self.objective, self.opts = objective, opts
        self.done = {tuple(e["theta"]): e for e in (history or [])}
        self.history, self.on_evaluation, self.seen = [], on_evaluation, set()
        self.last, self.J, self.tangents, self.solves = baseline, None, None, 0
        self.eqs = {}
        self.panel = None
        self.coarse, self.bounds = None, None  # set while L-BFGS-B runs

    def __call__(self, x):
        key = tuple(float(v) for v in x)
        if key in self.done:  # replayed from a checkpoint, or evaluated before in this run
            e = self.done[key]
            if key not in self.seen:
                self.seen.add(key)
                self.history.append(e)
            self._stop_if_coarse(x, e["grad"])
            return -e["value"], -np.asarray(e["grad"])
        t0 = time.perf_counter()
        w = world_at(self.world, self.space, x)
        eq = solve_policy(
            self.baseline, w, self.last, jacobian=self.J, tol=self.opts.tol, hh_tol=self.opts.hh_tol
        )
        g = criterion_gradient(
            eq, self.space, self.objective, x, tangents=self.tangents, hh_tol=self.opts.hh_tol
        )
        self.solves += 1
        self.last, self.J, self.tangents = eq, g.jacobian, g.tangents
        self.eqs[key] = eq
        e = dict(
            theta=list(key),
            value=g.value,
            grad=g.grad.tolist(),
            seconds=time.perf_counter() - t0,
            gradient_seconds=g.seconds,
            gradient_directions=int(g.directions),
            newton_iterations=int(eq.iterations),
            residual=float(eq.residual),
            criteria=self.panel.values(eq) if self.panel is not None else None,
        )
        log.info(
            "policy evaluation %d: theta = %s, criterion %.8g, gradient %s (%.1f s; gradient "
            "%.1f s, %d directions)",
            self.solves,
            np.array2string(np.asarray(key), precision=6),
            g.value,
            np.array2string(g.grad, precision=3),
            e["seconds"],
            g.seconds,
            g.directions,
        )
        self.history.append(e)
        self.done[key] = e
        self.seen.add(key)
        if self.on_evaluation is not None:
            self.on_evaluation(e)
        self._stop_if_coarse(x, g.grad)
        return -g.value, -g.grad

    def _stop_if_coarse(self, x, grad):
        if self.coarse is not None and _projected_norm(x, grad, self.bounds)[0] <= self.coarse:
            raise _CoarseOptimum(x)


def _projected_norm(theta, grad, bounds, eps: float = 1e-12):
    pg, active = np.array(grad, float), []
    for k, (lo, hi) in enumerate(bounds):
        if theta[k] <= lo + eps and pg[k] <= 0:
            pg[k], _ = 0.0, active.append(k)
        elif theta[k] >= hi - eps and pg[k] >= 0:
            pg[k], _ = 0.0, active.append(k)
    return float(np.linalg.norm(pg)), active


def _polish(ev, theta, bounds, gtol: float, steps: int = 4):
    r"""Quasi-Newton steps on the first-order conditions of the free instruments.

    The criterion is flat at the optimum, so its values (accurate to the solver tolerance)
    stop a line search a little short of it; the exact gradient locates it much better. The
    Hessian of the free instruments is fitted to the gradients of the evaluations nearest
    the point (:math:`\Delta g \approx H \Delta\theta`, a secant step in one
    dimension) and a Newton step is kept when it reduces the projected gradient.
    """
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    for _ in range(steps):
        g = -ev(theta)[1]
        norm, active = _projected_norm(theta, g, bounds)
        free = np.array([k not in active for k in range(theta.size)])
        if norm <= gtol or not free.any():
            break
        pts = {tuple(e["theta"]): np.asarray(e["grad"]) for e in ev.history}
        pts.pop(tuple(float(v) for v in theta), None)
        if len(pts) < int(free.sum()):
            break
        near = sorted(pts, key=lambda q: np.linalg.norm(np.asarray(q) - theta))
        near = near[: int(free.sum()) + 1]
        dT = np.array([np.asarray(q) - theta for q in near])[:, free]
        dG = np.array([pts[q] - g for q in near])[:, free]
        X = np.linalg.lstsq(dT, dG, rcond=None)[0]  # dT @ X = dG, X = H^T
        try:
            step = np.linalg.solve(X.T, -g[free])
        except np.linalg.LinAlgError:
            break
        trial = theta.copy()
        trial[free] = np.clip(theta[free] + step, lo[free], hi[free])
        if np.array_equal(trial, theta):
            break
        g2 = -ev(trial)[1]
        if _projected_norm(trial, g2, bounds)[0] >= norm:
            break
        theta = trial
    return theta


def _lbfgsb(ev, x, bounds, opts):
    """L-BFGS-B on the instruments divided by ``opts.step``, stopped at ``ev.coarse``."""
    from scipy.optimize import minimize

    h = float(opts.step)

    def scaled(y):
        f, g = ev(np.asarray(y, float) * h)
        return f, np.asarray(g) * h

    try:
        res = minimize(
            scaled,
            x / h,
            jac=True,
            method="L-BFGS-B",
            bounds=[(a / h, b / h) for a, b in bounds],
            options=dict(gtol=ev.coarse * h, ftol=1e-12, maxfun=opts.max_solves),
        )
        x_end, success = np.asarray(res.x, float) * h, bool(res.success)
        message = str(res.message)
    except _CoarseOptimum as stop:
        x_end, success = stop.theta, True
        message = f"projected gradient below coarse_gtol = {ev.coarse:g}"
    return x_end, success, message


@enable_x64
def optimal_policy(
    baseline,
    country: str,
    *,
    instrument: str = "tariff",
    criterion: str = "utilitarian",
    rebate: str | None = None,
    world=None,
    x0=None,
    options: PolicyOptions | None = None,
    history: list | None = None,
    on_evaluation: Callable[[dict], None] | None = None,
    start=None,
    report_criteria: bool = False,
) -> PolicyResult:
    """Maximize ``criterion`` of ``country`` over its instruments (docs/policy.md 3).

    Parameters
    ----------
    baseline : Equilibrium
        The reference (criteria are relative to it; beta is held at its value).
    country : str
    instrument : one of :data:`INSTRUMENTS`.
    criterion : see :func:`hatrade.policy.criteria.parse_criterion`.
    rebate : rule for tariff revenue (:data:`hatrade.core.instruments.REBATE_RULES`; None:
        the world's).
    world : World, optional
        The world whose other policies are held fixed (default the baseline's).
    x0 : starting instrument values (default: the lower bounds plus 0.1 of the range).
    options : :class:`PolicyOptions`.
    history, on_evaluation : replay and record of evaluations (resuming).
    start : Equilibrium, optional
        Warm start of the first solve (default the baseline).
    report_criteria : bool
        Record every criterion at every evaluation (``history[k]["criteria"]``, for the
        criterion-against-tariff figure).

    Raises
    ------
    ParameterError
        Unknown country, instrument, criterion or rebate rule, an undefined criterion, bad
        bounds or start, all before any solve.
    """
    t0 = time.perf_counter()
    opts = options or PolicyOptions()
    world = baseline.world if world is None else world
    if rebate is not None:
        world = world.replace(rebate=check_rebate(rebate))
    space = policy_space(world, country, instrument)
    crit = parse_criterion(criterion)
    objective = make_objective(baseline, country, crit)
    bounds = [tuple(opts.tariff_bounds)] * (space.n - int(space.transfer))
    bounds += [tuple(opts.tax_bounds)] if space.transfer else []
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    x = lo + 0.1 * (hi - lo) if x0 is None else np.atleast_1d(np.asarray(x0, float))
    if x.shape != lo.shape or not np.all(np.isfinite(x)) or np.any(x < lo) or np.any(x > hi):
        raise ParameterError(
            f"x0 = {x0!r} is not allowed: {space.n} finite values inside the bounds {bounds}."
        )
    ev = _Evaluations(baseline, world, space, objective, opts, history, on_evaluation)
    ev.last = baseline if start is None else start
    ev.panel = CriteriaPanel(baseline, country) if report_criteria else None
    ev.coarse, ev.bounds = max(opts.gtol, opts.coarse_gtol), bounds
    x_end, success, message = _lbfgsb(ev, x, bounds, opts)
    ev.coarse = None
    theta = _polish(ev, x_end, bounds, opts.gtol)
    f, g = ev(theta)  # cached: evaluated before
    key = tuple(float(v) for v in theta)
    eq = ev.eqs.get(key) or solve_policy(baseline, world_at(world, space, theta), ev.last)
    norm, active = _projected_norm(theta, -np.asarray(g), bounds)
    names = _names(world, space)
    return PolicyResult(
        country=country,
        instrument=instrument,
        criterion=crit.text,
        rebate=world.rebate,
        theta=theta,
        names=names,
        bounds=bounds,
        value=float(-f),
        grad=-np.asarray(g),
        grad_norm=norm,
        on_bound=tuple(names[k] for k in active),
        converged=success,
        message=message,
        solves=ev.solves,
        history=ev.history,
        eq=eq,
        seconds=time.perf_counter() - t0,
    )
