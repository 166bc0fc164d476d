"""The reproduction table: the paper's published numbers next to a run's.

One row per published number (:mod:`hatrade.data.published`; the published prices are
read from the shipped price files): the quantity, its source, the published number, ours,
the difference (ours - published), the tolerance, whether they agree and a note. Rows whose
number the run did not produce (a failed stage) show "not computed".
"""

from __future__ import annotations

import pandas as pd

from hatrade.data.published import (
    AUTHOR_RULE_REPLAY,
    BETA_TOLERANCE,
    TABLE1_SOURCE,
    WAGE_RELATIVE_TOLERANCE,
    WELFARE_GAP_NOTE,
    WELFARE_SOURCE,
    WELFARE_TRADE_COST_CHANGE,
    author_rule_note,
    published,
    published_numbers,
    table1_values,
)
from hatrade.replicate.setup import Setup

__all__ = ["reproduction_table", "REPRODUCTION_COLUMNS", "PUBLISHED"]

#: Columns of the reproduction table.
REPRODUCTION_COLUMNS = [
    "quantity",
    "source",
    "published",
    "ours",
    "difference",
    "tolerance",
    "agrees",
    "note",
]

#: Welfare statistics shown in the table: key suffix -> (label, key of the run's numbers).
_WELFARE_STATS = {
    "mean": ("mean", "mean_gain_percent"),
    "Q1": ("poorest expenditure quintile (Q1)", ("quintile_gain_percent", "Q1")),
    "Q5": ("richest expenditure quintile (Q5)", ("quintile_gain_percent", "Q5")),
    "ACR": ("ACR benchmark", "acr_percent"),
    "R/w": ("change of R/w", "R_over_w_change_percent"),
}


def _row(quantity: str, source: str, published_value, ours, tol: float, note: str = "") -> dict:
    """One row; ``ours`` None: not computed."""
    if ours is None:
        return {
            "quantity": quantity,
            "source": source,
            "published": published_value,
            "ours": "not computed",
            "difference": None,
            "tolerance": tol,
            "agrees": "–",
            "note": note,
        }
    diff = None
    agrees = "–"
    if isinstance(published_value, (int, float)) and isinstance(ours, (int, float)):
        diff = float(ours) - float(published_value)
        agrees = "yes" if abs(diff) <= tol else "no"
    return {
        "quantity": quantity,
        "source": source,
        "published": published_value,
        "ours": ours,
        "difference": diff,
        "tolerance": tol,
        "agrees": agrees,
        "note": note,
    }


def _price_rows(setup: Setup, numbers: dict) -> list[dict]:
    """beta, the home wage and the largest relative wage difference of every model,
    against the shipped price files."""
    from hatrade.data import load_calibration

    rows = []
    home = setup.home
    for spec in setup.models:
        name = spec.name
        if spec.calibration is None:
            continue
        cal = load_calibration(spec.calibration)
        src = f"data/calibration/{spec.calibration}-prices.csv"
        rows.append(
            _row(
                f"β, {name} (R = 1.01)",
                src,
                float(cal.beta),
                numbers.get("beta", {}).get(name),
                BETA_TOLERANCE,
            )
        )
        wages = numbers.get("wages", {}).get(name)
        pub_w = cal.wages
        if home in pub_w.index:
            rows.append(
                _row(
                    f"wage of {home}, {name} (mean wage 1)",
                    src,
                    float(pub_w[home]),
                    None if wages is None else wages.get(home),
                    WAGE_RELATIVE_TOLERANCE * float(pub_w[home]),
                )
            )
        if wages is not None:
            common = [c for c in wages if c in pub_w.index]
            rel = {c: abs(wages[c] / pub_w[c] - 1.0) for c in common}
            worst = max(rel, key=rel.get) if rel else None
            if worst is not None:
                rows.append(
                    _row(
                        f"largest relative wage difference, {name} ({len(common)} wages)",
                        src,
                        0.0,
                        float(rel[worst]),
                        WAGE_RELATIVE_TOLERANCE,
                        note=f"at {worst}",
                    )
                )
    return rows


def _table1_rows(setup: Setup, numbers: dict) -> list[dict]:
    """Table 1's model fit: every coefficient of the first model, the largest difference
    of the others."""
    from hatrade.analysis.gravity import BARRIER_LABELS

    pub = table1_values()
    tol = published_numbers("table1.")[0].tolerance
    fits = numbers.get("table1_model_fit", {})
    first = setup.models[0].name
    rows = [
        _row(
            f"Table 1 model fit: {BARRIER_LABELS.get(k, k)} ({first})",
            TABLE1_SOURCE,
            v,
            fits.get(first, {}).get(k),
            tol,
        )
        for k, v in pub.items()
    ]
    for spec in setup.models[1:]:
        f = fits.get(spec.name)
        worst = None
        if f:
            d = {k: abs(f[k] - v) for k, v in pub.items() if k in f}
            worst = max(d, key=d.get)
        rows.append(
            _row(
                f"Table 1 model fit, {spec.name}: largest |difference| over the 10 coefficients",
                TABLE1_SOURCE,
                0.0,
                None if worst is None else float(d[worst]),
                tol,
                note="" if worst is None else f"at {BARRIER_LABELS.get(worst, worst)}",
            )
        )
    return rows


def _theta_rows(setup: Setup, numbers: dict) -> list[dict]:
    """The home country's trade elasticity: impact and long run of the first model, and
    Proposition 3's exact value for log models."""
    home = setup.home
    theta = numbers.get("theta", {})
    first = setup.models[0].name
    rows = []
    for key, what in (("impact", "impact"), ("longrun", "long run")):
        p = published(f"theta.{key}")
        rows.append(
            _row(
                f"{home} trade elasticity, {what} ({first})",
                p.source,
                p.value,
                theta.get(first, {}).get(key),
                p.tolerance,
            )
        )
    p = published("theta.log")
    for spec in setup.models:
        if spec.household.gamma == 1.0:
            rows.append(
                _row(
                    f"{home} trade elasticity, {spec.name} (exact: −1/σ_ε)",
                    p.source,
                    -1.0 / spec.household.sigma_eps,
                    theta.get(spec.name, {}).get("impact"),
                    p.tolerance,
                )
            )
    return rows


def _welfare_value(got: dict | None, stat: str):
    """The run's number for a welfare statistic (None when not computed)."""
    if got is None:
        return None
    path = _WELFARE_STATS[stat][1]
    value = got.get(path) if isinstance(path, str) else got.get(path[0], {}).get(path[1])
    return None if value is None else float(value)


def _welfare_rows(setup: Setup, numbers: dict) -> list[dict]:
    """The home country's welfare gains of the models that have published ones."""
    home = setup.home
    welfare = numbers.get("welfare", {})
    models = {m.name for m in setup.models}
    source = WELFARE_SOURCE
    if setup.trade_cost_change != WELFARE_TRADE_COST_CHANGE:
        source += f" (this run: a {setup.trade_cost_change:+.0%} change)"
    rows = []
    for rec in published_numbers("welfare."):
        _, kind, name, stat = rec.key.split(".")
        if name not in models or stat not in _WELFARE_STATS:
            continue
        ours = _welfare_value(welfare.get(kind, {}).get(name), stat)
        if stat == "R/w":
            quantity = f"{home} change of R/w (%), {kind}, {name}"
        else:
            quantity = f"{home} {_WELFARE_STATS[stat][0]} welfare gain (%), {kind}, {name}"
        agrees = ours is not None and abs(ours - rec.value) <= rec.tolerance
        rows.append(
            _row(
                quantity,
                source,
                rec.value,
                ours,
                rec.tolerance,
                note=""
                if ours is None or agrees
                else author_rule_note(rec.key)
                if rec.key in AUTHOR_RULE_REPLAY
                else WELFARE_GAP_NOTE,
            )
        )
    return rows


def reproduction_table(setup: Setup, numbers: dict) -> pd.DataFrame:
    """Published numbers next to this run's, with the difference (ours - published).

    Parameters
    ----------
    setup : the run's setup.
    numbers : the run's key numbers (``ReplicateResult.numbers``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REPRODUCTION_COLUMNS`. Published beta and wages are read from the
        shipped price files; the other published numbers are those of
        :mod:`hatrade.data.published`. Rows whose number this run did not produce (a failed
        stage) show "not computed".
    """
    rows = (
        _price_rows(setup, numbers)
        + _table1_rows(setup, numbers)
        + _theta_rows(setup, numbers)
        + _welfare_rows(setup, numbers)
    )
    return pd.DataFrame(rows, columns=REPRODUCTION_COLUMNS)


def _published_by_group() -> dict:
    """The published numbers in the layout of earlier versions (see :data:`PUBLISHED`)."""
    theta = {k: published(f"theta.{k}") for k in ("impact", "longrun")}
    welfare: dict = {}
    for rec in published_numbers("welfare."):
        _, kind, name, stat = rec.key.split(".")
        if stat in _WELFARE_STATS:
            welfare.setdefault(kind, {}).setdefault(name, {})[stat] = (
                rec.value,
                rec.decimals,
                rec.tolerance,
            )
    return {
        "table1_moments": {
            "source": TABLE1_SOURCE,
            "decimals": 2,
            "values": table1_values(),
        },
        "theta_us_impact": {
            "source": theta["impact"].source,
            "value": theta["impact"].value,
            "decimals": theta["impact"].decimals,
        },
        "theta_us_longrun": {
            "source": theta["longrun"].source,
            "value": theta["longrun"].value,
            "decimals": theta["longrun"].decimals,
        },
        "theta_log": {"source": published("theta.log").source},
        "welfare": {
            "source": WELFARE_SOURCE,
            "trade_cost_change": WELFARE_TRADE_COST_CHANGE,
            "values": welfare,
            "note": WELFARE_GAP_NOTE,
        },
    }


#: The published numbers grouped as earlier versions of this module had them (kept for
#: compatibility; :mod:`hatrade.data.published` is where they are kept).
PUBLISHED: dict = _published_by_group()
