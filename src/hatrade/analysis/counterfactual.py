r"""Counterfactuals: change trade costs, tariffs, TFP or labor and solve the new equilibrium.

A :class:`Scenario` describes the change relative to a baseline world:

* trade costs, as in the paper: :math:`d'_{ij} = (1 + \Delta)\, d_{ij}` for the selected
  ordered pairs :math:`i \ne j` (importer :math:`i`, exporter :math:`j`), applied to the
  calibrated :math:`d` with no new floor. The pairs are a country's imports
  (``importer``), a country's exports (``exporter``), explicit pairs (``pairs``,
  optionally both directions with ``symmetric``) or every pair (``all_pairs``, the paper's
  "global" change);
* ad-valorem tariffs on the same pairs, :math:`t'_{ij} = t_{ij} + \Delta t` (revenue
  rebated lump sum to the importer's households, :math:`T_i L_i = \sum_j
  t_{ij}/(1+t_{ij}) M_{ij}`);
* TFP and labor by country, :math:`A'_i = (1 + \Delta^A_i) A_i`,
  :math:`L'_i = (1 + \Delta^L_i) L_i`;
* the financial regime (``"globalization"`` or ``"autarky"``);
* policy instruments (:mod:`hatrade.analysis.instruments`): a uniform tariff level on the
  selected pairs, the rule by which tariff revenue is rebated, labor-income taxes.

The new stationary equilibrium holds the discount factor at its baseline value and solves
the wages and the interest rate(s) (and the transfers under tariffs), warm-started from the
baseline prices and household solutions (:func:`run_counterfactual`). Every entry is
checked before any solve (:func:`apply_scenario`): a non-positive TFP or labor force, a
negative tariff, a change :math:`\Delta \le -1` or an unknown country raises
:class:`~hatrade.core.params.ParameterError` naming the entry. A change that makes some
:math:`d'_{ij} < 1` is applied as in the paper (its 10% cut of US import costs makes
:math:`d'_{USA,CAN} = 0.959`) with one logged warning naming the pairs, unless the
scenario forbids it (``allow_d_below_one=False``, CLI ``--forbid-d-below-one``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import numpy as np

from hatrade.analysis.instruments import (
    apply_instruments,
    check_tariff,
    finite_number,
    labor_tax_mapping,
    parse_pairs,
    scaled_by_country,
    selected_pairs,
)
from hatrade.core.instruments import check_rebate
from hatrade.core.params import FINANCIAL_REGIMES, ParameterError, World

__all__ = [
    "Scenario",
    "Counterfactual",
    "apply_scenario",
    "selected_pairs",
    "run_counterfactual",
    "baseline_equilibrium",
    "SCENARIO_KEYS",
    "parse_pairs",
]

log = logging.getLogger(__name__)

#: The keys of a scenario mapping (:meth:`Scenario.from_dict`): the fields of :class:`Scenario`.
SCENARIO_KEYS = (
    "name",
    "trade_cost_change",
    "importer",
    "exporter",
    "pairs",
    "symmetric",
    "all_pairs",
    "tariff_change",
    "tfp_change",
    "labor_change",
    "financial",
    "allow_d_below_one",
    "tariff",
    "rebate",
    "labor_tax",
)


@dataclass(frozen=True)
class Scenario:
    r"""A counterfactual change relative to a baseline world.

    Parameters
    ----------
    name : str
        Label of the run (used in batch summaries and output folders).
    trade_cost_change : float
        Proportional change :math:`\Delta` of the selected iceberg costs,
        :math:`d'_{ij} = (1+\Delta) d_{ij}` (e.g. -0.10 for the paper's 10% cut).
    importer : str, optional
        Select the imports of this country: pairs (importer, j) for every j != importer.
    exporter : str, optional
        Select the exports of this country: pairs (i, exporter) for every i != exporter.
    pairs : sequence of (importer, exporter), optional
        Explicit ordered pairs.
    symmetric : bool
        Also select the reverse of each explicit pair.
    all_pairs : bool
        Select every pair i != j (the paper's "global" change).
    tariff_change : float
        Added to the ad-valorem tariff of every selected pair (0.05 = 5 percentage points).
    tfp_change, labor_change : mapping country -> float
        :math:`A'_i = (1+x) A_i`, :math:`L'_i = (1+x) L_i`.
    financial : {"globalization", "autarky"} or None
        The new financial regime (None: as in the baseline).
    allow_d_below_one : bool
        Apply the change even where it makes some :math:`d'_{ij} < 1`, as the paper does
        (no new floor; default True): :func:`apply_scenario` then logs one warning naming
        the pairs below one. The paper's experiments need it: the 10% cut of US imports
        makes :math:`d'_{USA,CAN} = 0.959` (baseline calibration), and the global cut puts
        16 pairs below one (Belgium's imports from 13 countries, whose calibrated costs are
        at the floor 1, among them). False keeps the floor: such a change is rejected
        before any solve, naming the pairs (CLI ``--forbid-d-below-one``, batch files
        ``allow_d_below_one = false``).
    tariff : float, optional
        Sets the ad-valorem tariff of every selected pair to this level (>= 0), a uniform
        tariff (after ``tariff_change``, which it cannot be combined with).
    rebate : str, optional
        How tariff revenue is rebated in every country
        (:data:`hatrade.core.instruments.REBATE_RULES`; None: as in the baseline).
    labor_tax : mapping country -> float
        Labor-income tax rates in [0, 1), revenue rebated lump sum
        (:mod:`hatrade.core.instruments`).
    """

    name: str = "counterfactual"
    trade_cost_change: float = 0.0
    importer: str | None = None
    exporter: str | None = None
    pairs: tuple = ()
    symmetric: bool = False
    all_pairs: bool = False
    tariff_change: float = 0.0
    tfp_change: Mapping[str, float] = field(default_factory=dict)
    labor_change: Mapping[str, float] = field(default_factory=dict)
    financial: str | None = None
    allow_d_below_one: bool = True
    tariff: float | None = None
    rebate: str | None = None
    labor_tax: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.tariff is not None:
            object.__setattr__(self, "tariff", check_tariff(self.tariff, "tariff"))
        if self.rebate is not None:
            check_rebate(self.rebate, "rebate")
        object.__setattr__(self, "labor_tax", labor_tax_mapping(self.labor_tax))
        object.__setattr__(
            self, "trade_cost_change", finite_number(self.trade_cost_change, "trade_cost_change")
        )
        object.__setattr__(
            self, "tariff_change", finite_number(self.tariff_change, "tariff_change")
        )
        pairs = []
        for p in self.pairs or ():
            if isinstance(p, str):
                p = tuple(s.strip() for s in p.split(","))
            p = tuple(p)
            if len(p) != 2 or not all(isinstance(c, str) and c for c in p):
                raise ParameterError(
                    f"pairs entry {p!r} is not allowed: each pair must be "
                    "(importer, exporter), two country codes."
                )
            if p[0] == p[1]:
                raise ParameterError(
                    f"pairs entry {p[0]},{p[1]} is not allowed: a pair needs "
                    "two different countries (d_ii = 1 is fixed)."
                )
            pairs.append(p)
        object.__setattr__(self, "pairs", tuple(pairs))
        for attr in ("tfp_change", "labor_change"):
            raw = getattr(self, attr) or {}
            if not isinstance(raw, Mapping):
                raise ParameterError(f"{attr} must be a mapping country -> change, got {raw!r}.")
            object.__setattr__(
                self, attr, {str(k): finite_number(v, f"{attr}[{k}]") for k, v in raw.items()}
            )
        if not isinstance(self.allow_d_below_one, (bool, np.bool_)):
            raise ParameterError(
                f"allow_d_below_one = {self.allow_d_below_one!r} is not allowed: use true or false."
            )
        object.__setattr__(self, "allow_d_below_one", bool(self.allow_d_below_one))
        if self.financial is not None and self.financial not in FINANCIAL_REGIMES:
            raise ParameterError(
                f"financial = {self.financial!r} is not allowed: use one of "
                f"{FINANCIAL_REGIMES} (or leave it out to keep the baseline's)."
            )
        selects = (
            self.importer is not None
            or self.exporter is not None
            or bool(self.pairs)
            or self.all_pairs
        )
        if self.tariff is not None and self.tariff_change != 0.0:
            raise ParameterError(
                f"scenario {self.name!r}: give tariff (a level) or tariff_change, not both."
            )
        changes = self.trade_cost_change != 0.0 or self.tariff_change != 0.0
        if (changes or self.tariff is not None) and not selects:
            raise ParameterError(
                f"scenario {self.name!r}: a trade cost or tariff change needs "
                "pairs: give importer, exporter, pairs or all_pairs."
            )
        if self.all_pairs and (self.importer or self.exporter or self.pairs):
            raise ParameterError(
                f"scenario {self.name!r}: all_pairs selects every pair; do not "
                "combine it with importer, exporter or pairs."
            )

    # --- (de)serialization (batch files, summaries)
    @classmethod
    def from_dict(cls, d: Mapping, where: str = "scenario") -> "Scenario":
        """Build from a plain mapping (a TOML table); unknown keys are rejected by name."""
        unknown = sorted(set(d) - set(SCENARIO_KEYS))
        if unknown:
            raise ParameterError(
                f"{where}: unknown key(s) {unknown}; allowed: {', '.join(SCENARIO_KEYS)}."
            )
        kw = dict(d)
        if "pairs" in kw:
            kw["pairs"] = tuple(tuple(p) if not isinstance(p, str) else p for p in kw["pairs"])
        try:
            return cls(**kw)
        except ParameterError as err:
            raise ParameterError(f"{where}: {err}") from None
        except TypeError as err:
            raise ParameterError(f"{where}: {err}") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pairs"] = [list(p) for p in self.pairs]
        d["tfp_change"] = dict(self.tfp_change)
        d["labor_change"] = dict(self.labor_change)
        d["labor_tax"] = dict(self.labor_tax)
        return d

    @property
    def is_zero(self) -> bool:
        return (
            self.trade_cost_change == 0.0
            and self.tariff_change == 0.0
            and not any(self.tfp_change.values())
            and not any(self.labor_change.values())
            and self.financial is None
            and self.tariff is None
            and self.rebate is None
            and not self.labor_tax
        )


def apply_scenario(world: World, scenario: Scenario, *, warn: bool = True) -> World:
    r"""The counterfactual world, checked entry by entry before any solve.

    Parameters
    ----------
    world : World
        The baseline world.
    scenario : Scenario
    warn : bool
        Log one warning (``logging.WARNING``) naming the pairs whose new trade cost is
        below 1 (only when the scenario allows them). False: log it at DEBUG level only
        (for a second application of the same scenario, e.g. by
        :func:`run_counterfactual` after a check).

    Returns
    -------
    World
        The counterfactual world; ``meta["d_below_one"]`` lists the pairs below one
        (importer, exporter, new d).

    Raises
    ------
    ParameterError
        Unknown country codes; a change :math:`\Delta \le -1`; with
        ``scenario.allow_d_below_one`` False, a pair whose new
        :math:`d'_{ij} = (1+\Delta) d_{ij}` is below 1 (all offending pairs are named); a
        negative tariff; a non-positive TFP or labor force.
    """
    c = world.countries
    mask = selected_pairs(world, scenario)
    d = world.d.copy()
    if scenario.trade_cost_change != 0.0:
        if scenario.trade_cost_change <= -1.0:
            raise ParameterError(
                f"scenario {scenario.name!r}: trade_cost_change = "
                f"{scenario.trade_cost_change} would make trade costs "
                "non-positive; it must be > -1."
            )
        d[mask] = (1.0 + scenario.trade_cost_change) * d[mask]
        bad = np.argwhere(mask & (d < 1.0))
        if len(bad) and scenario.allow_d_below_one:
            shown = ", ".join(f"{c[i]},{c[j]} (d = {d[i, j]:.4f})" for i, j in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            log.log(
                logging.WARNING if warn else logging.DEBUG,
                "scenario %r: trade_cost_change = %s makes iceberg costs below 1 for %d "
                "pair(s) (importer,exporter): %s%s; applied as in the paper (no floor). "
                "To forbid it: allow_d_below_one = false (CLI --forbid-d-below-one).",
                scenario.name,
                scenario.trade_cost_change,
                len(bad),
                shown,
                more,
            )
        elif len(bad):
            names = ", ".join(
                f"{c[i]},{c[j]} (d = {world.d[i, j]:.6g} -> {d[i, j]:.6g})" for i, j in bad[:10]
            )
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise ParameterError(
                f"scenario {scenario.name!r}: trade_cost_change = {scenario.trade_cost_change} "
                f"makes iceberg costs below 1 for importer,exporter {names}{more}, which "
                "allow_d_below_one = false (CLI --forbid-d-below-one) forbids; d_ij must "
                "stay >= 1 then. Leave it out to apply the change as the paper does."
            )
    tariffs = None if world.tariffs is None else world.tariffs.copy()
    if scenario.tariff_change != 0.0:
        tariffs = np.zeros((world.M, world.M)) if tariffs is None else tariffs
        tariffs[mask] = tariffs[mask] + scenario.tariff_change
        bad = np.argwhere(mask & (tariffs < 0))
        if len(bad):
            names = ", ".join(f"{c[i]},{c[j]}" for i, j in bad[:10])
            raise ParameterError(
                f"scenario {scenario.name!r}: tariff_change = "
                f"{scenario.tariff_change} makes tariffs negative for "
                f"importer,exporter {names}; tariffs must be >= 0."
            )
    instruments = apply_instruments(
        world,
        tariffs,
        mask,
        tariff=scenario.tariff,
        rebate=scenario.rebate,
        labor_tax=scenario.labor_tax,
    )
    tfp = scaled_by_country(
        world, world.tfp, scenario.tfp_change, scenario.name, "tfp_change", "TFP"
    )
    labor = scaled_by_country(
        world, world.labor, scenario.labor_change, scenario.name, "labor_change", "the labor force"
    )
    financial = scenario.financial or world.financial
    meta = dict(world.meta)
    meta["scenario"] = scenario.to_dict()
    below = d < 1.0 - 1e-12
    if np.any(below):
        meta["d_below_one"] = [[c[i], c[j], float(d[i, j])] for i, j in np.argwhere(below)]
    return world.replace(
        d=d,
        tfp=tfp,
        labor=labor,
        financial=financial,
        meta=meta,
        allow_d_below_one=bool(world.allow_d_below_one or np.any(below)),
        **instruments,
    )


@dataclass
class Counterfactual:
    """A baseline and a counterfactual equilibrium, with the changes between them.

    Attributes
    ----------
    scenario : Scenario
    baseline, new : :class:`hatrade.solve.equilibrium.Equilibrium`
    """

    scenario: Scenario
    baseline: object
    new: object

    @property
    def countries(self):
        return self.baseline.countries

    def R_change_percent(self) -> np.ndarray:
        """100 (R'/R - 1) by country."""
        return 100.0 * (self.new.prices.R / self.baseline.prices.R - 1.0)

    def R_over_w_change_percent(self) -> np.ndarray:
        """100 ((R'/w')/(R/w) - 1) by country: the return on assets relative to wages."""
        old = self.baseline.prices.R / self.baseline.prices.w
        new = self.new.prices.R / self.new.prices.w
        return 100.0 * (new / old - 1.0)

    def changes(self):
        r"""By-country table of the changes (pandas DataFrame indexed by country).

        Columns: ``wage_old``, ``wage_new``, ``wage_change_percent``, ``R_old``, ``R_new``,
        ``R_over_w_change_percent``, ``home_share_old``, ``home_share_new``
        (:math:`s_{ii}`), ``import_share_old``, ``import_share_new``,
        ``net_foreign_assets_old``, ``net_foreign_assets_new`` (aggregate bond holdings
        :math:`A_i = L_i \sum \lambda a'`; with one world bond market these are the
        country's net foreign assets), ``nfa_to_gdp_old``, ``nfa_to_gdp_new``
        (:math:`A_i / Y_i`) and ``net_exports_old``, ``net_exports_new``.
        """
        import pandas as pd

        b, n = self.baseline, self.new
        sb, sn = np.diag(b.trade_shares), np.diag(n.trade_shares)
        tab = pd.DataFrame(
            {
                "wage_old": b.prices.w,
                "wage_new": n.prices.w,
                "wage_change_percent": 100.0 * (n.prices.w / b.prices.w - 1.0),
                "R_old": b.prices.R,
                "R_new": n.prices.R,
                "R_over_w_change_percent": self.R_over_w_change_percent(),
                "home_share_old": sb,
                "home_share_new": sn,
                "import_share_old": 1.0 - sb,
                "import_share_new": 1.0 - sn,
                "net_foreign_assets_old": b.aggregates["A"],
                "net_foreign_assets_new": n.aggregates["A"],
                "nfa_to_gdp_old": b.aggregates["A"] / b.aggregates["Y"],
                "nfa_to_gdp_new": n.aggregates["A"] / n.aggregates["Y"],
                "net_exports_old": b.net_exports(),
                "net_exports_new": n.net_exports(),
            },
            index=pd.Index(list(self.countries), name="country"),
        )
        return tab

    def trade_share_changes(self):
        """Long table: importer, exporter, share_old, share_new, log_change."""
        import pandas as pd

        c = list(self.countries)
        so, sn = self.baseline.trade_shares, self.new.trade_shares
        rows = [
            (c[i], c[j], so[i, j], sn[i, j], math.log(sn[i, j] / so[i, j]))
            for i in range(len(c))
            for j in range(len(c))
        ]
        return pd.DataFrame(
            rows, columns=["importer", "exporter", "share_old", "share_new", "log_change"]
        )

    def summary(self) -> dict:
        tab = self.changes()
        glob = self.new.world.financial == "globalization"
        return {
            "scenario": self.scenario.to_dict(),
            "financial": self.new.world.financial,
            "beta": float(self.new.beta),
            "R": {
                "old": float(self.baseline.prices.R[0]),
                "new": float(self.new.prices.R[0]),
                "change_percent": float(self.R_change_percent()[0]),
            }
            if glob
            else {
                c: {"old": float(o), "new": float(v)}
                for c, o, v in zip(self.countries, self.baseline.prices.R, self.new.prices.R)
            },
            "wages": {
                c: {
                    "old": float(r.wage_old),
                    "new": float(r.wage_new),
                    "change_percent": float(r.wage_change_percent),
                }
                for c, r in tab.iterrows()
            },
            "R_over_w_change_percent": {
                c: float(v) for c, v in tab["R_over_w_change_percent"].items()
            },
            "home_share": {
                c: {"old": float(r.home_share_old), "new": float(r.home_share_new)}
                for c, r in tab.iterrows()
            },
            "net_foreign_assets": {
                c: {"old": float(r.net_foreign_assets_old), "new": float(r.net_foreign_assets_new)}
                for c, r in tab.iterrows()
            },
            "convergence": {
                "converged": bool(self.new.converged),
                "newton_iterations": int(self.new.iterations),
                "max_excess_demand": float(self.new.residual),
                "household_solves": int(self.new.household_solves),
                "jacobians": int(self.new.jacobians),
                "seconds": float(self.new.seconds),
            },
        }


def baseline_equilibrium(calibration: str = "baseline", **kw):
    """The published equilibrium of a shipped calibration, re-solved from the published
    prices (beta at R = 1.01; one or two Newton steps).

    Keyword arguments go to :func:`hatrade.solve_equilibrium`.
    """
    from hatrade.core.worlds import ek_world, published_household
    from hatrade.data import load_calibration
    from hatrade.solve.equilibrium import solve_equilibrium

    cal = load_calibration(calibration)
    return solve_equilibrium(
        ek_world(calibration),
        published_household(calibration),
        solve_for="beta",
        R=1.01,
        wages=cal.wages.values,
        beta_guess=cal.beta,
        **kw,
    )


def run_counterfactual(
    baseline,
    scenario: Scenario | World,
    *,
    progress: Callable[[int, float], None] | None = None,
    warn: bool = True,
    **solve_options,
) -> Counterfactual:
    r"""Solve the counterfactual equilibrium of ``scenario`` with beta fixed.

    The new world is :func:`apply_scenario` of the baseline's (or ``scenario`` itself when it
    is a :class:`~hatrade.core.params.World`); the household parameters are the baseline's with
    :math:`\beta` at its baseline value. Unknowns: wages (mean one), the interest rate(s)
    and, with tariffs, the transfers. Newton starts at the baseline prices with the
    baseline household solutions as warm starts, so a zero change returns the baseline
    equilibrium at once.

    Parameters
    ----------
    baseline : Equilibrium
    scenario : Scenario or World
    progress : callable(iteration, residual), optional
    warn : bool
        Passed to :func:`apply_scenario` (False when the caller has applied the scenario
        already, so that its warning about trade costs below 1 is logged once).
    **solve_options
        Passed to :func:`hatrade.solve_equilibrium` (``tol``, ``max_iter``, ``hh_tol``,
        ``jacobian`` of another counterfactual with the same unknowns, ...).

    Returns
    -------
    Counterfactual

    Raises
    ------
    ParameterError
        Invalid scenario (before any solve).
    EquilibriumError
        The new equilibrium did not converge (with diagnostics).
    """
    from hatrade.solve.equilibrium import solve_equilibrium

    if isinstance(scenario, World):
        world_new, sc = scenario, Scenario(name="world")
    else:
        sc = scenario
        world_new = apply_scenario(baseline.world, sc, warn=warn)
    hh = baseline.household.replace(beta=float(baseline.beta))
    R_old = np.asarray(baseline.prices.R, float)
    if world_new.financial == "autarky":
        R_guess = R_old.copy()
    else:
        R_guess = float(np.mean(R_old))
    opts = dict(tol=1e-10, hh_tol=1e-10)
    opts.update(solve_options)
    T_old = np.asarray(baseline.prices.T, float)
    if world_new.has_tariffs:
        opts.setdefault("T_guess", T_old)
    log.info(
        "counterfactual %s: solving the new equilibrium (beta = %.6f fixed)", sc.name, baseline.beta
    )
    new = solve_equilibrium(
        world_new,
        hh,
        solve_for="R",
        wages=baseline.prices.w,
        R_guess=R_guess,
        state=baseline.state,
        income=baseline.income,
        progress=progress,
        **opts,
    )
    return Counterfactual(scenario=sc, baseline=baseline, new=new)
