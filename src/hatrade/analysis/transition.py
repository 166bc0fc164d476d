r"""Transitions: the perfect-foresight path after a change of trade costs, tariffs, labor
or TFP.

:func:`run_transition` starts the economy in the old stationary equilibrium (its
distribution, and the old return :math:`R_0` on the assets carried into period 0: bonds
bought before the shock) and ends it in the new one, solved by
:func:`~hatrade.analysis.counterfactual.run_counterfactual` with beta fixed, by period T.
The path of the world is known at t = 0 (perfect foresight), so a change dated later is
news announced at t = 0. It is given as

* a :class:`~hatrade.analysis.counterfactual.Scenario`: a permanent change from period
  ``news_date`` on (0: unanticipated at t = 0);
* a per-period table (:data:`PATH_COLUMNS`, a pandas DataFrame or a mapping of columns):
  one row per period and pair or country, changes relative to the old world,

  ============  =====================================================================
  period        0, 1, ... (every period from 0 to the last must appear)
  importer      pair rows: importer code (with exporter)
  exporter      pair rows: exporter code
  trade_cost_change  pair rows: :math:`d_{ij,t} = (1+x) d_{ij}`
  tariff_change pair rows: :math:`t_{ij,t} = t_{ij} + x`
  country       country rows: the country code
  labor_change  country rows: :math:`L_{i,t} = (1+x) L_i`
  tfp_change    country rows: :math:`A_{i,t} = (1+x) A_i` (prices, taste-shock scales
                and the asset grid of period t; docs/transitions.md)
  ============  =====================================================================

  Entries not listed in a period are unchanged in it (an empty cell, NaN or None in a
  DataFrame, means "not listed"; an infinite change is rejected); the last listed period's world
  holds from then on (it is the new steady state's), so a temporary change ends with a
  period of zero changes.

Policy instruments (:mod:`hatrade.core.instruments`: the rebate rule of tariff revenue and
labor-income taxes): the old steady state has the baseline world's; a scenario's hold from
period 0 on, unanticipated and permanent (with a later ``news_date`` a change of them is
refused, :func:`check_instrument_timing`), while its trade-cost and tariff changes follow
``news_date``; a path table keeps the baseline's instruments. Each period's tariff
revenue is rebated by the rule in that period, and the labor tax's revenue lump sum.

The solve itself is :func:`hatrade.solve.transition.solve_transition`
(docs/transitions.md).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from hatrade.analysis.counterfactual import Scenario, apply_scenario, run_counterfactual
from hatrade.core.params import ParameterError, World
from hatrade.core.x64 import enable_x64
from hatrade.solve.transition import (
    PathShocks,
    TransitionOptions,
    TransitionSolution,
    solve_transition,
)

__all__ = [
    "PATH_COLUMNS",
    "PATHS_COLUMNS",
    "Transition",
    "check_instrument_timing",
    "path_shocks",
    "scenario_shocks",
    "paths_table",
    "run_transition",
]

log = logging.getLogger(__name__)

#: Columns of a per-period shock table (:func:`path_shocks`).
PATH_COLUMNS = (
    "period",
    "importer",
    "exporter",
    "trade_cost_change",
    "tariff_change",
    "country",
    "labor_change",
    "tfp_change",
)

#: Columns of :attr:`Transition.paths`.
PATHS_COLUMNS = (
    "period",
    "country",
    "wage",
    "R",
    "price_index",
    "import_share",
    "consumption",
    "assets",
    "net_exports",
)


@dataclass
class Transition:
    r"""A solved transition.

    Attributes
    ----------
    old, new : Equilibrium
        The stationary equilibria at the start and the end.
    solution : TransitionSolution
        Prices and aggregates per period (numpy), iterations and residuals.
    paths : pandas.DataFrame
        :data:`PATHS_COLUMNS`, one row per period and country: ``wage`` :math:`w_{i,t}`
        (mean one each period), ``R`` the return paid at t on the assets carried into t
        (period 0: the old steady state's), ``price_index`` the spending-weighted mean of
        consumer prices :math:`\sum_j s_{ij,t} p_{ij,t}`, ``import_share``
        :math:`1 - s_{ii,t}`, ``consumption`` spending per household over the price index,
        ``assets`` the country's assets carried into t (net foreign assets), and
        ``net_exports`` :math:`Y_{i,t} - \sum_j X_{ij,t}` (at factory prices; equal to
        :math:`A'_{i,t} - R_{i,t} A_{i,t}`).
    V0 : (M, Na, Nz) the value at t = 0 of every state (``policies.V``'s convention).
    periods, news_date, linear : the horizon T, the date of a scenario's change, and
        whether the path is the first-order one.
    """

    old: object
    new: object
    solution: TransitionSolution
    paths: object
    V0: np.ndarray
    periods: int
    news_date: int = 0
    linear: bool = False
    scenario: dict = field(default_factory=dict)

    @property
    def countries(self):
        return self.old.world.countries

    @property
    def converged(self) -> bool:
        return self.solution.converged

    @property
    def iterations(self) -> int:
        return self.solution.iterations

    @property
    def residual(self) -> float:
        return self.solution.residual

    @property
    def lam0(self) -> np.ndarray:
        """The distribution entering period 0 (the old stationary one)."""
        return np.asarray(self.old.lam)

    def summary(self) -> dict:
        """Convergence, work and the first periods' prices (JSON-ready)."""
        s = self.solution
        c = list(self.countries)
        return {
            "periods": self.periods,
            "news_date": self.news_date,
            "linear": self.linear,
            "converged": bool(s.converged),
            "iterations": int(s.iterations),
            "residual": float(s.residual),
            "end_gap": float(s.end_gap),
            "financial": self.new.world.financial,
            "wage_t0": dict(zip(c, map(float, s.w[0]))),
            "R_t1": dict(zip(c, map(float, s.R[1]))),
            "R_old": dict(zip(c, map(float, np.asarray(self.old.prices.R)))),
            "R_new": dict(zip(c, map(float, np.asarray(self.new.prices.R)))),
            "work": s.work,
            "scenario": self.scenario,
        }


# ----------------------------------------------------------------------------- inputs


def _frame(table):
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return table.copy()
    if isinstance(table, Mapping):
        try:
            return pd.DataFrame(dict(table))
        except ValueError as err:
            raise ParameterError(f"path table: {err}") from None
    raise ParameterError(
        f"path = {type(table).__name__} is not allowed: give a Scenario, a pandas DataFrame "
        f"or a mapping of columns ({', '.join(PATH_COLUMNS)})."
    )


def _check_columns(df) -> None:
    unknown = sorted(set(df.columns) - set(PATH_COLUMNS))
    if unknown:
        raise ParameterError(
            f"path table: unknown column(s) {unknown}; allowed: {', '.join(PATH_COLUMNS)}."
        )
    if "period" not in df.columns or len(df) == 0:
        raise ParameterError("path table: a 'period' column and at least one row are needed.")
    per = df["period"].to_numpy()
    ok = np.array([isinstance(p, (int, np.integer)) or float(p).is_integer() for p in per])
    if not ok.all() or (per.astype(float) < 0).any():
        raise ParameterError(
            f"path table: period must be integers >= 0; rows {list(np.where(~ok)[0][:10])} are not."
        )
    for col in ("trade_cost_change", "tariff_change", "labor_change", "tfp_change"):
        if col in df.columns:
            v = df[col].to_numpy(dtype=float, na_value=0.0)
            bad = np.where(~np.isfinite(v))[0]
            if len(bad):
                raise ParameterError(
                    f"path table: {col} is not finite in rows {list(bad[:10])}; changes "
                    "must be finite numbers."
                )


def _missing_periods(periods: np.ndarray) -> list:
    last = int(periods.max())
    return sorted(set(range(last + 1)) - set(int(p) for p in periods))


def _row_value(row, col) -> float:
    v = row.get(col, 0.0)
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _apply_row(world: World, d, tar, L, A, row, k: int) -> None:
    imp, exp, cty = (row.get(c) for c in ("importer", "exporter", "country"))
    has = lambda x: isinstance(x, str) and x != ""  # noqa: E731
    if has(imp) or has(exp):
        if not (has(imp) and has(exp)) or imp == exp:
            raise ParameterError(
                f"path table row {k}: a pair row needs importer and exporter, two "
                f"different country codes (got {imp!r}, {exp!r})."
            )
        i, j = world.index(imp), world.index(exp)
        d[i, j] *= 1.0 + _row_value(row, "trade_cost_change")
        tar[i, j] += _row_value(row, "tariff_change")
    if has(cty):
        L[world.index(cty)] *= 1.0 + _row_value(row, "labor_change")
        A[world.index(cty)] *= 1.0 + _row_value(row, "tfp_change")
    if not (has(imp) or has(exp) or has(cty)):
        nonzero = [c for c in PATH_COLUMNS[3:] if _row_value(row, c) != 0.0]
        if nonzero:
            raise ParameterError(
                f"path table row {k}: {nonzero[0]} needs importer and exporter (pair "
                "changes) or country (country changes)."
            )


def _check_world_arrays(world: World, d, tar, L, A, t: int) -> None:
    c = world.countries
    bad = [(c[i], c[j]) for i, j in np.argwhere(~(d > 0))]
    if bad:
        raise ParameterError(f"path table period {t}: trade_cost_change makes d <= 0 for {bad}.")
    bad = [(c[i], c[j]) for i, j in np.argwhere(tar < 0)]
    if bad:
        raise ParameterError(f"path table period {t}: tariff_change makes tariffs < 0 for {bad}.")
    bad = [c[i] for i in np.where(~(L > 0))[0]]
    if bad:
        raise ParameterError(f"path table period {t}: labor_change makes labor <= 0 for {bad}.")
    bad = [c[i] for i in np.where(~(A > 0))[0]]
    if bad:
        raise ParameterError(f"path table period {t}: tfp_change makes TFP <= 0 for {bad}.")


def path_shocks(world: World, table, periods: int) -> tuple[PathShocks, World]:
    """The per-period arrays of a shock table (module docstring) and the final world.

    Raises ParameterError (naming the column, rows or periods) for unknown columns or
    countries, missing periods, non-finite values, a last period beyond ``periods`` - 1,
    or arrays out of range, before any solve.
    """
    df = _frame(table)
    _check_columns(df)
    per = df["period"].to_numpy().astype(int)
    if per.max() >= periods:
        raise ParameterError(
            f"path table: period {per.max()} is beyond the horizon (periods = {periods}); "
            "use more periods."
        )
    missing = _missing_periods(per)
    if missing:
        raise ParameterError(
            f"path table: periods {missing[:10]} are missing; every period from 0 to the "
            f"last ({per.max()}) needs a row (a row of zero changes is enough)."
        )
    M = world.M
    t0 = np.zeros((M, M)) if world.tariffs is None else np.asarray(world.tariffs, float)
    d_p, t_p, L_p, A_p = [], [], [], []
    rows = df.to_dict("records")
    for t in range(int(per.max()) + 1):
        d, tar = world.d.copy(), t0.copy()
        L, A = np.asarray(world.labor, float).copy(), np.asarray(world.tfp, float).copy()
        for k in np.where(per == t)[0]:
            _apply_row(world, d, tar, L, A, rows[k], int(k))
        _check_world_arrays(world, d, tar, L, A, t)
        d_p.append(d), t_p.append(tar), L_p.append(L), A_p.append(A)
    n_fill = periods - len(d_p)
    for x in (d_p, t_p, L_p, A_p):
        x += [x[-1]] * n_fill
    final = world.replace(
        d=d_p[-1],
        tariffs=t_p[-1] if np.any(t_p[-1] != 0) or world.tariffs is not None else None,
        labor=L_p[-1],
        tfp=A_p[-1],
        allow_d_below_one=bool(world.allow_d_below_one or np.any(d_p[-1] < 1.0 - 1e-12)),
    )
    return PathShocks(np.stack(d_p), np.stack(t_p), np.stack(L_p), np.stack(A_p)), final


def check_instrument_timing(world: World, sc: Scenario, news_date: int, field="news_date"):
    """A scenario's policy instruments (``rebate``, ``labor_tax``) hold from period 0 on
    (unanticipated and permanent, docs/transitions.md): refuse a later ``news_date`` with a
    change of them (one line naming ``field``), before any solve."""
    if not news_date:
        return
    tax = np.zeros(world.M) if world.labor_tax is None else np.asarray(world.labor_tax)
    changed = [c for c, x in sc.labor_tax.items() if x != tax[world.index(c)]]
    if (sc.rebate is not None and sc.rebate != world.rebate) or changed:
        shown = f"{field} {news_date}" if field.startswith("--") else f"{field} = {news_date}"
        raise ParameterError(
            f"{shown} is not allowed with a change of rebate or labor_tax: a "
            "scenario's instruments apply from period 0 (unanticipated, permanent); use "
            "news date 0 or keep the baseline's instruments."
        )


def scenario_shocks(world: World, sc: Scenario, periods: int, news_date: int):
    """The per-period arrays of a permanent ``sc`` from ``news_date`` on, and the final
    world (:func:`~hatrade.analysis.counterfactual.apply_scenario`)."""
    if sc.financial is not None and sc.financial != world.financial:
        raise ParameterError(
            f"scenario {sc.name!r}: financial = {sc.financial!r} is not allowed in a "
            "transition: the financial regime must stay the baseline's."
        )
    final = apply_scenario(world, sc)
    check_instrument_timing(world, sc, news_date)
    M = world.M
    t_old = np.zeros((M, M)) if world.tariffs is None else np.asarray(world.tariffs, float)
    t_new = np.zeros((M, M)) if final.tariffs is None else np.asarray(final.tariffs, float)
    after = np.arange(periods) >= news_date
    pick = lambda a, b: np.where(after.reshape((-1,) + (1,) * a.ndim), b[None], a[None])  # noqa: E731
    d = pick(np.asarray(world.d, float), np.asarray(final.d, float))
    tar = pick(t_old, t_new)
    L = pick(np.asarray(world.labor, float), np.asarray(final.labor, float))
    A = pick(np.asarray(world.tfp, float), np.asarray(final.tfp, float))
    return PathShocks(d, tar, L, A), final


# ----------------------------------------------------------------------------- outputs


def paths_table(countries, sol: TransitionSolution, shocks: PathShocks, A):
    """The :data:`PATHS_COLUMNS` table of a solved path (module docstring of
    :class:`Transition`); ``A`` the TFP (M,), used where ``shocks.tfp`` is None."""
    import pandas as pd

    out = sol.outputs
    Tn, M = sol.w.shape
    A = np.broadcast_to(np.asarray(A, float) if shocks.tfp is None else shocks.tfp, (Tn, M))
    Mij = np.asarray(out.M)  # (T, M, M)
    spend = Mij.sum(axis=2)
    share = Mij / spend[..., None]
    p = shocks.d * (sol.w / A)[:, None, :] * (1.0 + shocks.tariffs)
    price_index = np.sum(share * p, axis=2)
    net_exports = np.asarray(out.Y) - np.asarray(out.X).sum(axis=2)
    cols = {
        "period": np.repeat(np.arange(Tn), M),
        "country": np.tile(np.asarray(countries, dtype=object), Tn),
        "wage": sol.w.ravel(),
        "R": sol.R[:Tn].ravel(),
        "price_index": price_index.ravel(),
        "import_share": (1.0 - np.einsum("tii->ti", share)).ravel(),
        "consumption": (spend / shocks.labor / price_index).ravel(),
        "assets": np.asarray(out.A_held).ravel(),
        "net_exports": net_exports.ravel(),
    }
    return pd.DataFrame(cols, columns=list(PATHS_COLUMNS))


def _same_world(a: World, b: World) -> bool:
    ta = np.zeros((a.M, a.M)) if a.tariffs is None else np.asarray(a.tariffs)
    tb = np.zeros((b.M, b.M)) if b.tariffs is None else np.asarray(b.tariffs)
    xa = np.zeros(a.M) if a.labor_tax is None else np.asarray(a.labor_tax)
    xb = np.zeros(b.M) if b.labor_tax is None else np.asarray(b.labor_tax)
    return (
        np.array_equal(a.d, b.d)
        and np.array_equal(ta, tb)
        and np.array_equal(a.labor, b.labor)
        and np.array_equal(a.tfp, b.tfp)
        and a.financial == b.financial
        and a.rebate == b.rebate
        and np.array_equal(xa, xb)
    )


def _options(periods, linear, options) -> TransitionOptions:
    if options is not None and not isinstance(options, TransitionOptions):
        raise ParameterError("options must be a TransitionOptions (or None).")
    base = options or TransitionOptions()
    allowed = set(TransitionOptions.__dataclass_fields__)
    kw = {"periods": periods, "linear": linear}
    try:
        return TransitionOptions(**{**base.__dict__, **kw})
    except TypeError as err:  # pragma: no cover - fields are fixed
        raise ParameterError(f"{err}; allowed: {sorted(allowed)}") from None


@enable_x64
def run_transition(
    old,
    shock,
    *,
    periods: int = 300,
    news_date: int = 0,
    linear: bool = False,
    options: TransitionOptions | None = None,
    progress=None,
    **overrides,
) -> Transition:
    r"""Solve the perfect-foresight transition from ``old`` after ``shock``.

    Parameters
    ----------
    old : Equilibrium
        The stationary equilibrium the economy starts in (its distribution, prices and
        the return on the assets carried into period 0).
    shock : Scenario or pandas.DataFrame or mapping of columns
        A :class:`~hatrade.analysis.counterfactual.Scenario` (a permanent change from
        ``news_date`` on) or a per-period table (:data:`PATH_COLUMNS`, module docstring).
    periods : int
        The horizon T (from T on: the new steady state). Default 300.
    news_date : int
        With a Scenario: the period from which the change holds, announced at t = 0
        (0: unanticipated). Must be 0 with a table (its periods are the dates).
    linear : bool
        Return the first-order path (one step from the new steady state's prices with the
        exact Jacobian there) instead of the nonlinear one.
    options : TransitionOptions, optional
        ``tol`` (1e-8), ``max_iter``, ``settle_tol``, ``segment``; ``periods`` and
        ``linear`` above override its fields.
    progress : callable(iteration, largest excess demand), optional
        Called after each quasi-Newton iteration of the path.
    **overrides
        Passed to :func:`~hatrade.analysis.counterfactual.run_counterfactual` for the new
        steady state (``tol``, ``hh_tol``, ...).

    Returns
    -------
    Transition

    Raises
    ------
    ParameterError
        A bad shock or option (naming the field, rows or periods), before any solve.
    EquilibriumError
        The new steady state or the path does not converge, or the path has not settled
        by period T (try more periods).
    """
    if not isinstance(periods, (int, np.integer)) or isinstance(periods, bool) or periods < 2:
        raise ParameterError(f"periods = {periods!r} is not allowed: an integer >= 2.")
    if not isinstance(news_date, (int, np.integer)) or not 0 <= news_date < periods:
        raise ParameterError(
            f"news_date = {news_date!r} is not allowed: an integer in [0, periods) = "
            f"[0, {periods})."
        )
    opts = _options(int(periods), bool(linear), options)
    if isinstance(shock, Scenario):
        shocks, final = scenario_shocks(old.world, shock, opts.periods, int(news_date))
        desc = shock.to_dict()
    else:
        if news_date:
            raise ParameterError(
                "news_date is not allowed with a path table: its periods are the dates."
            )
        shocks, final = path_shocks(old.world, shock, opts.periods)
        desc = {"path_table": True}
    if _same_world(old.world, final):
        new = old
    else:
        overrides.pop("warn", None)  # the path's own checks have run; no second warning
        new = run_counterfactual(old, final, warn=False, **overrides).new
    sol = solve_transition(old, new, shocks, opts, progress)
    paths = paths_table(old.world.countries, sol, shocks, old.world.tfp)
    return Transition(
        old=old, new=new, solution=sol, paths=paths, V0=np.asarray(sol.outputs.V0),
        periods=opts.periods, news_date=int(news_date), linear=bool(linear), scenario=desc,
    )  # fmt: skip
