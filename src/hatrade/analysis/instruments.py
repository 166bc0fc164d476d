r"""Scenario helpers: checked numbers, pairs, and the policy instruments of a scenario.

A :class:`~hatrade.analysis.counterfactual.Scenario` may set, besides trade costs and
tariff *changes*:

* ``tariff``: the ad-valorem tariff of every selected pair, :math:`t'_{ij} = t` (a uniform
  tariff, e.g. one importer's on all its partners);
* ``rebate``: how tariff revenue is paid out (:data:`hatrade.core.instruments.REBATE_RULES`:
  ``"lump-sum"``, ``"labor-income"``, ``"group:<income group>"``), for every country;
* ``labor_tax``: labor-income tax rates by country, :math:`\tau_i \in [0, 1)`, whose revenue
  is rebated lump sum.

The household side of these instruments is :mod:`hatrade.core.instruments`; they are part of
the :class:`~hatrade.core.params.World`, so every solve of that world (stationary or, later,
along a transition path) sees them.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

from hatrade.core.instruments import check_labor_tax, check_rebate
from hatrade.core.params import ParameterError, World

__all__ = [
    "apply_instruments",
    "check_tariff",
    "finite_number",
    "labor_tax_mapping",
    "parse_assignments",
    "parse_pairs",
    "scaled_by_country",
    "selected_pairs",
]


def finite_number(x, name: str) -> float:
    """``x`` as a finite float, else a one-line ParameterError naming ``name``."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} = {x!r} is not allowed: {name} must be a number.") from None
    if not math.isfinite(v):
        raise ParameterError(f"{name} = {x!r} is not allowed: {name} must be finite.")
    return v


def check_tariff(x, name: str = "tariff") -> float:
    """An ad-valorem tariff: a finite number >= 0."""
    v = finite_number(x, name)
    if v < 0:
        raise ParameterError(f"{name} = {x!r} is not allowed: tariffs must be >= 0.")
    return v


def labor_tax_mapping(raw, name: str = "labor_tax") -> dict:
    """A mapping country -> labor-income tax rate in [0, 1), checked entry by entry."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ParameterError(
            f"{name} must be a mapping country -> rate (e.g. {{USA = 0.1}}), got {raw!r}."
        )
    return {str(k): check_labor_tax(v, f"{name}[{k}]") for k, v in raw.items()}


def parse_assignments(items: Iterable[str] | None, name: str) -> dict:
    """``["USA=0.1", "CAN=0.05"]`` -> {"USA": "0.1", "CAN": "0.05"} (values unchecked)."""
    out = {}
    for it in items or ():
        code, sep, val = str(it).partition("=")
        if not sep or not code.strip() or not val.strip():
            raise ParameterError(f"{name} {it!r} is not allowed: write CODE=VALUE (e.g. USA=0.1).")
        out[code.strip()] = val.strip()
    return out


def parse_pairs(text: str | Iterable[str] | None) -> tuple:
    """``"USA,CAN;CAN,USA"`` (or a list of ``"USA,CAN"``) -> (("USA","CAN"), ("CAN","USA"))."""
    if text is None:
        return ()
    items = text.split(";") if isinstance(text, str) else list(text)
    out = []
    for it in items:
        it = it.strip()
        if not it:
            continue
        parts = [p.strip() for p in it.split(",")]
        if len(parts) != 2:
            raise ParameterError(
                f"pair {it!r} is not allowed: write IMPORTER,EXPORTER (e.g. USA,CAN)."
            )
        out.append(tuple(parts))
    return tuple(out)


def selected_pairs(world: World, scenario) -> np.ndarray:
    """Boolean (M, M) mask of the ordered pairs (importer, exporter) a scenario changes.

    Raises ParameterError naming an unknown country code.
    """
    M = world.M
    mask = np.zeros((M, M), bool)
    if scenario.all_pairs:
        mask[:] = True
    if scenario.importer is not None:
        mask[world.index(scenario.importer), :] = True
    if scenario.exporter is not None:
        mask[:, world.index(scenario.exporter)] = True
    for i_code, j_code in scenario.pairs:
        i, j = world.index(i_code), world.index(j_code)
        mask[i, j] = True
        if scenario.symmetric:
            mask[j, i] = True
    np.fill_diagonal(mask, False)
    return mask


def scaled_by_country(world: World, values, changes: Mapping, name: str, field_: str, what: str):
    """``values`` with ``(1 + x)`` applied for each country code in ``changes``; stays > 0."""
    out = np.array(values, float)
    for code, x in changes.items():
        i = world.index(code)
        out[i] = (1.0 + x) * out[i]
        if not out[i] > 0:
            raise ParameterError(
                f"scenario {name!r}: {field_}[{code}] = {x} makes {what} of "
                f"{code} {out[i]:.6g}; it must stay positive (the change must "
                "be > -1)."
            )
    return out


def apply_instruments(world: World, tariffs, mask, *, tariff, rebate, labor_tax) -> dict:
    """The World fields ``tariffs``, ``rebate``, ``labor_tax`` after a scenario's instruments.

    ``tariffs`` is the scenario's tariff matrix so far (None: none), ``mask`` the selected
    pairs; ``tariff`` (or None) sets their level; ``rebate`` (or None: the baseline's) the
    rebate rule; ``labor_tax`` a checked mapping country -> rate (unknown codes raise).
    """
    if tariff is not None:
        tariffs = np.zeros((world.M, world.M)) if tariffs is None else np.array(tariffs)
        tariffs[mask] = tariff
    tax = None if world.labor_tax is None else np.array(world.labor_tax, float)
    for code, rate in labor_tax.items():
        tax = np.zeros(world.M) if tax is None else tax
        tax[world.index(code)] = rate
    return dict(
        tariffs=tariffs,
        rebate=world.rebate if rebate is None else check_rebate(rebate),
        labor_tax=tax,
    )
