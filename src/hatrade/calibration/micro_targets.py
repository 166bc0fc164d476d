"""Micro targets of the outer calibration loop: what may be targeted and moved, the
micro-targets file (:func:`load_micro_targets`), checked before any solve, and the model
values of the targets at an equilibrium (:func:`micro_moments`).

The targets' definitions and the loop are in :mod:`hatrade.calibration.micro`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hatrade.analysis.groups import INCOME_GROUPS, group_weights
from hatrade.calibration.home_share import home_share_gaps
from hatrade.core.params import Household, ParameterError
from hatrade.io.validate import (
    BOOLEAN,
    FRACTION,
    NUMBER,
    Rule,
    check_keys,
    check_table,
    integer,
    loads_toml,
    option_problems,
)
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "MICRO_TARGETS",
    "MICRO_PARAMS",
    "MicroTarget",
    "check_targets",
    "check_params",
    "parse_micro_targets",
    "load_micro_targets",
    "CALIBRATE_OPTION_RULES",
    "check_calibrate_options",
    "micro_moments",
]

#: Micro targets the outer loop knows (module docstring for the definitions).
MICRO_TARGETS = ("elasticity_gap", "elasticity", "home_share_gap")

#: Household parameters the outer loop may move, with the box it searches in (open).
MICRO_PARAMS: dict[str, tuple[float, float]] = {
    "gamma": (0.2, 10.0),
    "sigma_eps": (0.01, 5.0),
    "psi_slope": (-10.0, 10.0),
}


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class MicroTarget:
    """One micro target: ``name`` (one of :data:`MICRO_TARGETS`), its ``value`` and the
    ``country`` whose households it describes."""

    name: str
    value: float
    country: str = "USA"

    @property
    def key(self) -> str:
        return f"{self.name}_{self.country}"


def check_targets(targets, countries, where: str = "targets") -> tuple[MicroTarget, ...]:
    """The targets as :class:`MicroTarget` s, each checked (name, finite value, range,
    country among ``countries``, no duplicates); errors name ``where`` and the entry."""
    if isinstance(targets, Mapping):
        targets = [MicroTarget(name=k, value=v) for k, v in targets.items()]
    out = []
    for k, t in enumerate(targets):
        if isinstance(t, Mapping):
            unknown = sorted(set(t) - {"name", "value", "country"})
            if unknown:
                raise ParameterError(
                    f"{where}[{k}]: unknown key(s) {unknown}; allowed: name, value, country."
                )
            if "name" not in t or "value" not in t:
                raise ParameterError(f"{where}[{k}]: needs 'name' and 'value'.")
            t = MicroTarget(name=t["name"], value=t["value"], country=t.get("country", "USA"))
        if not isinstance(t, MicroTarget):
            raise ParameterError(
                f"{where}[{k}] = {t!r}: give a MicroTarget or a table with name, value, country."
            )
        if t.name not in MICRO_TARGETS:
            raise ParameterError(
                f"{where}[{k}]: name = {t.name!r} is not allowed: use one of "
                f"{', '.join(MICRO_TARGETS)}."
            )
        if (
            isinstance(t.value, bool)
            or not isinstance(t.value, (int, float, np.floating))
            or not math.isfinite(float(t.value))
        ):
            raise ParameterError(
                f"{where}[{k}] ({t.name}): value = {t.value!r} is not allowed: "
                "it must be a finite number."
            )
        if t.name == "home_share_gap" and not -1.0 < float(t.value) < 1.0:
            raise ParameterError(
                f"{where}[{k}] (home_share_gap): value = {t.value!r} is not "
                "allowed: it must be in (-1, 1) (a difference of two shares)."
            )
        if t.country not in countries:
            raise ParameterError(
                f"{where}[{k}] ({t.name}): country = {t.country!r} is not "
                f"allowed: use one of {', '.join(countries)}."
            )
        out.append(MicroTarget(name=t.name, value=float(t.value), country=t.country))
    keys = [t.key for t in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ParameterError(f"{where}: duplicate target(s) {dup} (one per name and country).")
    if not out:
        raise ParameterError(
            f"{where}: no targets; give at least one of {', '.join(MICRO_TARGETS)}."
        )
    return tuple(out)


def check_params(params, household: Household, where: str = "params") -> tuple[str, ...]:
    """The household parameters to move, checked (known, starts inside their box, no
    duplicates, at least one)."""
    if isinstance(params, str):
        params = [params]
    params = tuple(params)
    for p in params:
        if p not in MICRO_PARAMS:
            raise ParameterError(
                f"{where}: {p!r} is not allowed: the outer loop moves {', '.join(MICRO_PARAMS)}."
            )
        lo, hi = MICRO_PARAMS[p]
        v = getattr(household, p)
        if not lo < v < hi:
            raise ParameterError(
                f"{where}: the start {p} = {v!r} is out of range: {p} must be in ({lo}, {hi})."
            )
    dup = sorted({p for p in params if params.count(p) > 1})
    if dup:
        raise ParameterError(f"{where}: duplicate parameter(s) {dup}.")
    if not params:
        raise ParameterError(f"{where}: no parameters; give some of {', '.join(MICRO_PARAMS)}.")
    return params


_MICRO_TOP = ("params", "target", "targets", "start", "options")
_MICRO_OPTIONS = ("tol", "max_iter", "inner_tol", "inner_max_iter", "fd_step", "inner_psi")
#: Typed checks of [options], in the order they are reported (the first failure is raised).
_MICRO_OPTION_RULES = {
    "tol": FRACTION,
    "inner_tol": FRACTION,
    "fd_step": FRACTION,
    "max_iter": integer(1),
    "inner_max_iter": integer(1),
    "inner_psi": BOOLEAN,
}


#: The ranges of the numeric options of :func:`hatrade.calibration.calibrate.calibrate` and
#: :func:`hatrade.calibration.grid.calibration_grid` (the CLI's ``hatrade calibrate`` builds
#: them, so it gets the same checks): tol and beta_guess in (0, 1), max_iter >= 1, R > 0.
CALIBRATE_OPTION_RULES: dict[str, Rule] = {
    "tol": FRACTION,
    "max_iter": integer(1),
    "R": Rule(lambda v: NUMBER.ok(v) and float(v) > 0, "a finite number > 0"),  # type: ignore[arg-type]
    "beta_guess": FRACTION,
}


def check_calibrate_options(**options) -> None:
    """Raise :class:`ParameterError` (one line: the field, its value and the allowed range)
    for the first option outside :data:`CALIBRATE_OPTION_RULES`; before any solve."""
    problems = option_problems(options, CALIBRATE_OPTION_RULES)
    if problems:
        raise ParameterError(f"{problems[0].replace(': must be', ' is not allowed: it must be')}.")


def parse_micro_targets(raw: dict, source: str = "<dict>", countries=None) -> dict:
    """Validate a micro-targets table (the TOML layout of :func:`load_micro_targets`).

    Returns a dict with ``params`` (tuple), ``targets`` (tuple of :class:`MicroTarget`),
    ``start`` (dict of starting household values) and ``options`` (keyword arguments of
    :func:`calibrate_micro`). Every error names the file and the field.
    """
    if countries is None:
        from hatrade.data import COUNTRIES

        countries = tuple(COUNTRIES)
    check_keys(raw, _MICRO_TOP, source, ParameterError)
    params = raw.get("params")
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise ParameterError(
            f"{source}: params = {params!r} is not allowed: give a list of "
            f"parameter names among {', '.join(MICRO_PARAMS)}."
        )
    for p in params:
        if p not in MICRO_PARAMS:
            raise ParameterError(
                f"{source}: params: {p!r} is not allowed: use {', '.join(MICRO_PARAMS)}."
            )
    tg = raw.get("target", raw.get("targets"))
    if "target" in raw and "targets" in raw:
        raise ParameterError(f"{source}: give [[target]] tables or targets, not both.")
    if not isinstance(tg, list):
        raise ParameterError(
            f"{source}: targets missing: add [[target]] tables with name, value and country."
        )
    targets = check_targets(tg, tuple(countries), where=f"{source}: target")
    start = raw.get("start", {}) or {}
    if not isinstance(start, dict):
        raise ParameterError(f"{source}: [start] must be a table of household parameters.")
    for k, v in start.items():
        if k not in MICRO_PARAMS:
            raise ParameterError(
                f"{source}: [start] {k!r} is not allowed: use {', '.join(MICRO_PARAMS)}."
            )
        lo, hi = MICRO_PARAMS[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < float(v) < hi:
            raise ParameterError(
                f"{source}: [start] {k} = {v!r} is out of range: {k} must be "
                f"a number in ({lo}, {hi})."
            )
    opts = check_table(raw.get("options"), _MICRO_OPTIONS, f"{source}: [options]", ParameterError)
    problems = option_problems(opts, _MICRO_OPTION_RULES)
    if problems:
        raise ParameterError(f"{source}: [options] {problems[0]}.")
    return {
        "params": tuple(params),
        "targets": targets,
        "start": {k: float(v) for k, v in start.items()},
        "options": dict(opts),
    }


def load_micro_targets(path, countries=None) -> dict:
    """Read a micro-targets TOML file::

        params = ["gamma", "sigma_eps"]   # household parameters the outer loop moves

        [[target]]
        name = "elasticity_gap"           # elasticity_gap | elasticity | home_share_gap
        country = "USA"                   # default USA
        value = -0.5

        [[target]]
        name = "elasticity"
        value = -4.2

        [start]                           # optional starting values (default: the
        gamma = 1.45                      # calibration's household)

        [options]                         # optional, see calibrate_micro
        tol = 1e-6
        max_iter = 20
        fd_step = 1e-4
        inner_tol = 1e-9
        inner_psi = true

    See :func:`parse_micro_targets` for the returned dict.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ParameterError(
            f"cannot read micro-targets file {path}: {err.strerror or err}"
        ) from None
    return parse_micro_targets(
        loads_toml(text, str(path), ParameterError), source=str(path), countries=countries
    )


# ----------------------------------------------------------------------------- model values


def _income_group_mean(values, lam, labor_income, group: str) -> float:
    lo, hi = INCOME_GROUPS[group]
    wt = group_weights(labor_income.ravel(), lam.ravel(), lo, hi)
    return float(np.sum(wt * values.ravel()) / np.sum(wt))


def micro_moments(eq: Equilibrium, targets: Sequence[MicroTarget]) -> dict:
    """The model values of micro targets at an equilibrium: ``{target.key: value}``
    (definitions in the docstring of :mod:`hatrade.calibration.micro`)."""
    from hatrade.analysis.elasticity import trade_elasticities

    out: dict = {}
    elas: dict = {}
    gaps = None
    for t in targets:
        if t.name == "home_share_gap":
            gaps = home_share_gaps(eq) if gaps is None else gaps
            out[t.key] = float(gaps[t.country])
            continue
        if t.country not in elas:
            elas[t.country] = trade_elasticities(eq, t.country)
        r = elas[t.country]
        if t.name == "elasticity":
            out[t.key] = float(r.theta)
        else:  # elasticity_gap
            i = eq.world.index(t.country)
            ds = r.micro
            lam = ds["distribution"].values
            inc = float(eq.prices.w[i]) * np.broadcast_to(ds["z"].values[None, :], lam.shape)
            el = ds["household_elasticity"].values
            out[t.key] = _income_group_mean(el, lam, inc, "bottom_20") - _income_group_mean(
                el, lam, inc, "top_20"
            )
    return out
