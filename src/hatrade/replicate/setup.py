r"""The setup of a replication: which models, which world, which options.

:func:`paper_setup` is the paper's replication (the 19-country world with the baseline and
the log calibration, starting from the published prices); :class:`Setup` and
:class:`ModelSpec` describe any other.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hatrade.core.params import Household, ParameterError, World

__all__ = ["ModelSpec", "Setup", "paper_setup", "QUICK_N_A", "FULL_N_A"]

#: Asset grid of ``--quick`` runs.
QUICK_N_A = 30

#: Asset grid of the paper (full runs).
FULL_N_A = 100


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """One model of the run.

    Attributes
    ----------
    name : str
        ``"baseline"`` or ``"log"`` (file and column names).
    title : str
        For tables and legends.
    world : World
    household : Household
        With ``beta=None`` (solved at ``R``).
    wages, beta : starting prices (the published equilibrium).
    params : the calibration vector (Table 1's parameter column), or None.
    calibration : name of the shipped calibration it comes from (published numbers).
    """

    name: str
    title: str
    world: World
    household: Household
    wages: np.ndarray
    beta: float
    params: np.ndarray | None = None
    calibration: str | None = None


@dataclass(frozen=True, eq=False)
class Setup:
    """What a replication computes.

    Attributes
    ----------
    models : the models (the first is the reference for single-model results).
    home : the country whose elasticities, households and welfare are reported.
    trade_cost_change : the counterfactual change, d' = (1 + change) d.
    R : world interest rate at which beta is solved.
    tol, hh_tol : equilibrium and household tolerances.
    quick : a ``--quick`` run (approximate).
    paper : the paper's full world (the published numbers apply).
    ev_nodes : lambda nodes of the batched equivalent-variation solve (None: the default
        of :func:`hatrade.welfare.summary.country_welfare`).
    planner_weights : 'matched' or 'equal'.
    efficient_elasticities : compute Proposition 1 elasticities of every pair for the
        efficient-vs-decentralized comparison (19 country problems).
    two_country_d : trade cost of the symmetric two-country world of the micro figure.
    transfer : the MPC's one-time transfer.
    transition_periods : horizon T of the transitions of the opt-in ``transitions`` stage.
    """

    models: tuple
    home: str = "USA"
    trade_cost_change: float = -0.10
    R: float = 1.01
    tol: float = 1e-10
    hh_tol: float = 1e-10
    quick: bool = False
    paper: bool = True
    ev_nodes: int | None = None
    planner_weights: str = "matched"
    efficient_elasticities: bool = True
    two_country_d: float = 1.5
    transfer: float = 0.008
    transition_periods: int = 300

    def __post_init__(self):
        if not self.models:
            raise ParameterError("a setup needs at least one model.")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ParameterError(f"model names must be unique, got {names}.")
        for m in self.models:
            m.world.index(self.home)
        if not (-1.0 < self.trade_cost_change < 1.0) or self.trade_cost_change == 0.0:
            raise ParameterError(
                f"trade_cost_change = {self.trade_cost_change} is not allowed: "
                "use a non-zero number in (-1, 1), e.g. -0.10."
            )
        T = self.transition_periods
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
            raise ParameterError(
                f"transition_periods = {T!r} is not allowed: an integer >= 2 (e.g. 300)."
            )

    def resolved_ev_nodes(self) -> int:
        """``ev_nodes``, or the welfare module's default when it is None."""
        if self.ev_nodes is not None:
            return int(self.ev_nodes)
        from hatrade.welfare.summary import country_welfare

        return int(inspect.signature(country_welfare).parameters["n_nodes"].default)

    @property
    def n_a(self) -> int:
        """Asset grid points (of the first model)."""
        return self.models[0].household.n_a

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise ParameterError(f"unknown model {name!r}; models: {[m.name for m in self.models]}.")

    def describe(self) -> dict:
        """The setup as plain data (``replicate.json``)."""
        return {
            "models": {
                m.name: {
                    "title": m.title,
                    "countries": list(m.world.countries),
                    "household": m.household.to_dict(),
                    "calibration": m.calibration,
                }
                for m in self.models
            },
            "home": self.home,
            "trade_cost_change": self.trade_cost_change,
            "R": self.R,
            "tol": self.tol,
            "hh_tol": self.hh_tol,
            "quick": self.quick,
            "paper": self.paper,
            "ev_nodes": self.resolved_ev_nodes(),
            "planner_weights": self.planner_weights,
            "efficient_elasticities": self.efficient_elasticities,
            "two_country_d": self.two_country_d,
            "transfer": self.transfer,
            "transition_periods": self.transition_periods,
        }


def _sub_world(world: World, countries: Sequence[str]) -> World:
    """``world`` restricted to ``countries`` (TFP, labor and trade costs; no tariffs)."""
    idx = [world.index(c) for c in countries]
    return World(
        countries=tuple(countries),
        tfp=world.tfp[idx],
        labor=world.labor[idx],
        d=world.d[np.ix_(idx, idx)],
        tariffs=None,
        financial=world.financial,
        meta={**world.meta, "subset_of": list(world.countries)},
    )


def paper_setup(
    *,
    quick: bool = False,
    n_a: int | None = None,
    countries: Sequence[str] | None = None,
    household: dict | None = None,
    models: Sequence[str] = ("baseline", "log"),
    **options,
) -> Setup:
    """The paper's replication: the 19-country world with the baseline and log calibrations.

    Parameters
    ----------
    quick : bool
        Coarse asset grid (:data:`QUICK_N_A` points) and beta and wages re-solved on it
        from the published prices: approximate numbers, labeled as such.
    n_a : int, optional
        Asset grid points (overrides the default: :data:`FULL_N_A`, or :data:`QUICK_N_A`
        when quick).
    countries : sequence of str, optional
        A subset of the 19 countries (TFP, labor and trade costs restricted to them): for
        experiments and tests; the published numbers do not apply to it.
    household : dict, optional
        Other household fields (e.g. a smaller income process ``n_perm=3``); the
        published numbers do not apply then either.
    models : which shipped calibrations to include (default both).
    **options
        Other :class:`Setup` fields (``home``, ``trade_cost_change``, ``tol``, ...).
    """
    from hatrade.core.worlds import ek_world, published_household
    from hatrade.data import load_calibration

    if n_a is None:
        n_a = QUICK_N_A if quick else FULL_N_A
    titles = {"baseline": "Baseline (γ = 1.45)", "log": "Log model (γ = 1)"}
    specs = []
    for name in models:
        cal = load_calibration(name)
        world = ek_world(name)
        hh = published_household(name, n_a=int(n_a), **(household or {}))
        wages = cal.wages.reindex(list(world.countries)).to_numpy(float)
        if countries is not None:
            world = _sub_world(world, countries)
            wages = cal.wages.reindex(list(countries)).to_numpy(float)
            if np.any(~np.isfinite(wages)):
                raise ParameterError(
                    f"countries {list(countries)} include codes that are not "
                    "in the shipped calibration."
                )
        specs.append(
            ModelSpec(
                name=name,
                title=titles.get(name, name),
                world=world,
                household=hh,
                wages=wages,
                beta=float(cal.beta),
                params=np.asarray(cal.params, float),
                calibration=name,
            )
        )
    # the paper's world and households (on the quick grid: approximately)
    paper = (
        countries is None and not household and n_a in (FULL_N_A, QUICK_N_A if quick else FULL_N_A)
    )
    if quick:
        options.setdefault("ev_nodes", 5)
    return Setup(models=tuple(specs), quick=quick, paper=paper, **options)
