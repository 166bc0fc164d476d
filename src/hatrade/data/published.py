r"""The paper's published numbers, as data: the one place that holds them.

Each number is a :class:`PublishedNumber` record (key, quantity, value, source, tolerance,
printed decimals, note) in :data:`PUBLISHED_NUMBERS`; :func:`published` looks one up by key.
``hatrade replicate`` compares each with its own result (the reproduction table of the
report and of the README) and the tests check the package against them.

What is here, and where it comes from
-------------------------------------
- ``table1.<coefficient>``: Table 1 of the paper, the gravity regression of
  :math:`\log(X_{ij}/X_{ii})` on the distance bins, shared border, shared language, EC and
  EFTA (docs/model.md section 4; the same regression as Eaton and Kortum (2002), Table 3). The
  paper prints the "Moment" (the regression on the data) and the "Model fit" (the regression
  on model-generated trade), equal to two decimals: one set of numbers serves both.
  Coefficient names are those of :data:`hatrade.analysis.gravity.COEFFICIENT_NAMES`
  (:data:`TABLE1_COEFFICIENTS` here).
- ``theta.impact``, ``theta.longrun``: the US aggregate trade elasticity of the baseline
  model (Proposition 1): on impact (wages, R and the distribution fixed; the paper says
  "about -4.2", three decimals from the author's finite differences) and in the long run
  (the distribution re-solved: a reference computation, not printed in the paper)
  (docs/model.md section 5).
- ``theta.log``: the log model's elasticity, exactly :math:`-1/\sigma_\epsilon`
  (Proposition 3) with the published :math:`\sigma_\epsilon` of the log calibration
  (:data:`hatrade.data.CALIBRATIONS`).
- ``welfare.<experiment>.<model>.<statistic>``: US welfare of a 10% cut of trade costs
  (:data:`WELFARE_TRADE_COST_CHANGE`), ``unilateral`` (the US's import costs) or
  ``global`` (all pairs), ``baseline`` or ``log`` model, in percent: the mean
  equivalent-variation gain, the poorest (``Q1``) and richest (``Q5``) expenditure
  quintiles, the ACR benchmark, the change of :math:`R/w`, and the share of households
  that lose (``share_losers``: "no losers"). The paper gives them as "about", so their
  tolerances are wider than half a unit of the last digit (0.05 points for means and Q5,
  0.15 for Q1, 0.03 for the unilateral ACR and 0.01 for the global one, 0.1 for
  :math:`R/w`); the log model's means keep half a unit of the last digit. The log model's
  published means are a known gap (:data:`WELFARE_GAP_NOTE`).
- ``acr_theta``: the trade elasticity of the ACR benchmark,
  :math:`100\,(1/4.22)\log(s_{ii}/s_{ii}')` (docs/model.md section 5).
- ``beta.baseline``, ``beta.log``: the published discount factors at :math:`R = 1.01`, the
  last line of ``calibration/<name>-prices.csv`` (the shipped files are the source; the
  constants here let tests check the files). The published wages are read from the same
  files (:func:`hatrade.data.load_calibration`), not copied here. Re-solved prices are
  compared with :data:`BETA_TOLERANCE` and :data:`WAGE_RELATIVE_TOLERANCE`.

Tolerances: where the paper prints a number to :math:`d` decimals, the tolerance is half a
unit of the last digit, :math:`0.5 \cdot 10^{-d}` (:func:`half_unit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hatrade.data import CALIBRATIONS

__all__ = [
    "PublishedNumber",
    "PUBLISHED_NUMBERS",
    "AUTHOR_RULE_REPLAY",
    "AUTHOR_RULE_REPLAY_SOURCE",
    "author_rule_note",
    "published",
    "published_numbers",
    "table1_values",
    "half_unit",
    "TABLE1_COEFFICIENTS",
    "TABLE1_SOURCE",
    "WELFARE_SOURCE",
    "WELFARE_TRADE_COST_CHANGE",
    "WELFARE_GAP_NOTE",
    "WELFARE_STATISTICS",
    "BETA_TOLERANCE",
    "WAGE_RELATIVE_TOLERANCE",
]


def half_unit(decimals: int) -> float:
    """Half a unit of the last printed digit: ``0.5 * 10 ** -decimals``."""
    return 0.5 * 10**-decimals


@dataclass(frozen=True)
class PublishedNumber:
    """One published number.

    Attributes
    ----------
    key : str
        Dotted identifier (see the module docstring for the scheme).
    quantity : str
        What it is, in words.
    value : float
    source : str
        Where it is published (shown in the reproduction table).
    tolerance : float
        Largest absolute difference that counts as reproducing it.
    decimals : int or None
        Decimals printed in the source (None: a number read from a data file).
    note : str
        Anything a reader of the comparison must know.
    """

    key: str
    quantity: str
    value: float
    source: str
    tolerance: float
    decimals: int | None = None
    note: str = ""


#: Source of Table 1's numbers.
TABLE1_SOURCE = "docs/model.md section 4 (Table 1, 'Moment' = 'Model fit' column)"

#: Source of the welfare numbers.
WELFARE_SOURCE = "the paper: US welfare of a 10% trade-cost cut (docs/model.md section 8)"

#: The counterfactual of the published welfare numbers: :math:`d' = (1 - 0.10)\,d`.
WELFARE_TRADE_COST_CHANGE: float = -0.10

#: Why the log model's published welfare means are not reproduced.
WELFARE_GAP_NOTE = (
    "known gap (the log model's published gains lie below its own ACR): see "
    "docs/differences.md and "
    "tests/test_welfare.py::test_published_log_model_gains"
)

#: The log model's US mean gains (percent) with hatrade's household step stopped by the
#: author's value-iteration rule, at hatrade's equilibrium prices
#: (:func:`hatrade.welfare.replay.replay_welfare`, docs/differences.md): the output of
#: ``benchmarks/stopping_rule.py`` (:data:`AUTHOR_RULE_REPLAY_SOURCE`), stored because the
#: 19-country replay takes minutes. The reproduction table quotes them in its note for
#: these rows; they are not published numbers.
AUTHOR_RULE_REPLAY: dict[str, float] = {
    "welfare.unilateral.log.mean": 0.2173,
    "welfare.global.log.mean": 0.4678,
}

#: Where :data:`AUTHOR_RULE_REPLAY` comes from.
AUTHOR_RULE_REPLAY_SOURCE = "benchmarks/stopping_rule.py at commit 092488a, 2026-12-03"


def author_rule_note(key: str) -> str:
    """The reproduction table's note for a row the author's stopping rule explains."""
    return (
        "not reproduced by the converged model; hatrade's own household step stopped by the "
        "author's rule (v0 = -1/(1-beta), at most 500 steps, stop when consumption stops "
        f"changing) gives {AUTHOR_RULE_REPLAY[key]:.3f} ({AUTHOR_RULE_REPLAY_SOURCE}): "
        "docs/differences.md"
    )


#: Tolerance of a re-solved discount factor against the published one (absolute): the
#: published prices clear markets to about 1e-6 (relative).
BETA_TOLERANCE: float = 1e-6

#: Tolerance of re-solved wages against the published ones (relative): the author's
#: published outputs come from a re-solve whose wages differ from the files by up to this.
WAGE_RELATIVE_TOLERANCE: float = 1.5e-5

#: Table 1's coefficients, in the order of the paper (and of
#: :data:`hatrade.analysis.gravity.COEFFICIENT_NAMES`), with the printed numbers.
_TABLE1 = (
    ("dist_[0,375)", "distance [0,375) miles", -3.10),
    ("dist_[375,750)", "distance [375,750) miles", -3.67),
    ("dist_[750,1500)", "distance [750,1500) miles", -4.03),
    ("dist_[1500,3000)", "distance [1500,3000) miles", -4.22),
    ("dist_[3000,6000)", "distance [3000,6000) miles", -6.06),
    ("dist_[6000,max)", "distance [6000,max) miles", -6.56),
    ("border", "shared border", 0.30),
    ("language", "shared language", 0.51),
    ("ec", "both in the European Community", 0.04),
    ("efta", "both in EFTA", 0.54),
)

#: Table 1's coefficient names, in order.
TABLE1_COEFFICIENTS: tuple[str, ...] = tuple(k for k, _, _ in _TABLE1)

#: Statistics of the welfare numbers: key suffix -> what it is.
WELFARE_STATISTICS = {
    "mean": "mean welfare gain (%)",
    "Q1": "welfare gain of the poorest expenditure quintile (%)",
    "Q5": "welfare gain of the richest expenditure quintile (%)",
    "ACR": "ACR benchmark gain (%)",
    "R/w": "change of R/w (%)",
    "share_losers": "share of households that lose",
}

_EXPERIMENTS = {"unilateral": "10% cut of US import costs", "global": "10% cut of all trade costs"}

# (experiment, model, statistic, value, printed decimals, tolerance or None: half a unit)
_WELFARE = (
    ("unilateral", "baseline", "mean", 1.35, 2, 0.05),
    ("unilateral", "baseline", "Q1", 2.9, 1, 0.15),
    ("unilateral", "baseline", "Q5", 0.65, 2, 0.05),
    ("unilateral", "baseline", "ACR", 0.45, 2, 0.03),
    ("unilateral", "baseline", "R/w", 4.6, 1, 0.1),
    ("unilateral", "baseline", "share_losers", 0.0, None, 0.0),
    ("unilateral", "log", "mean", 0.21, 2, None),
    ("global", "baseline", "mean", 1.97, 2, 0.05),
    ("global", "baseline", "ACR", 0.73, 2, 0.01),
    ("global", "log", "mean", 0.44, 2, None),
)


def _table1_records() -> tuple[PublishedNumber, ...]:
    return tuple(
        PublishedNumber(
            key=f"table1.{key}",
            quantity=f"Table 1 coefficient: {what}",
            value=value,
            source=TABLE1_SOURCE,
            tolerance=half_unit(2),
            decimals=2,
        )
        for key, what, value in _TABLE1
    )


def _theta_records() -> tuple[PublishedNumber, ...]:
    sigma_log = CALIBRATIONS["log"][2]
    return (
        PublishedNumber(
            "theta.impact",
            "US aggregate trade elasticity on impact, baseline",
            -4.230,
            "docs/model.md section 5 (Proposition 1, US, impact)",
            half_unit(3),
            3,
        ),
        PublishedNumber(
            "theta.longrun",
            "US aggregate trade elasticity in the long run (distribution re-solved), baseline",
            -4.246,
            "docs/model.md section 5 (US, distribution re-solved)",
            half_unit(3),
            3,
        ),
        PublishedNumber(
            "theta.log",
            "US aggregate trade elasticity, log model (exact: -1/sigma_eps)",
            -1.0 / sigma_log,
            "docs/model.md section 5, Proposition 3: -1/sigma_eps (sigma_eps of docs/model.md 1.3)",
            1e-6,
            note=f"sigma_eps = {sigma_log} of the log calibration",
        ),
    )


def _welfare_records() -> tuple[PublishedNumber, ...]:
    out = []
    for kind, model, stat, value, decimals, tol in _WELFARE:
        note = WELFARE_GAP_NOTE if model == "log" else ""
        out.append(
            PublishedNumber(
                key=f"welfare.{kind}.{model}.{stat}",
                quantity=f"US {WELFARE_STATISTICS[stat]}, {_EXPERIMENTS[kind]}, {model} model",
                value=value,
                source=WELFARE_SOURCE,
                tolerance=half_unit(decimals) if tol is None else tol,
                decimals=decimals,
                note=note,
            )
        )
    return tuple(out)


def _other_records() -> tuple[PublishedNumber, ...]:
    return (
        PublishedNumber(
            "acr_theta",
            "trade elasticity of the ACR benchmark",
            4.22,
            "docs/model.md section 5 (ACR benchmark 100 (1/4.22) log(s_ii/s_ii'))",
            0.0,
            2,
        ),
        PublishedNumber(
            "beta.baseline",
            "discount factor at R = 1.01, baseline",
            0.9293630720608874,
            "data/calibration/baseline-prices.csv",
            BETA_TOLERANCE,
            note="the shipped file is the source; this copy checks it",
        ),
        PublishedNumber(
            "beta.log",
            "discount factor at R = 1.01, log model",
            0.9496077537929984,
            "data/calibration/log-prices.csv",
            BETA_TOLERANCE,
            note="the shipped file is the source; this copy checks it",
        ),
    )


#: Every published number, in the order of the reproduction table.
PUBLISHED_NUMBERS: tuple[PublishedNumber, ...] = (
    _table1_records() + _theta_records() + _welfare_records() + _other_records()
)

_BY_KEY = {r.key: r for r in PUBLISHED_NUMBERS}


def published(key: str) -> PublishedNumber:
    """The published number with this key.

    Raises
    ------
    KeyError
        Unknown key (the message lists the known ones).
    """
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no published number {key!r}; known: {', '.join(_BY_KEY)}") from None


def published_numbers(prefix: str = "") -> tuple[PublishedNumber, ...]:
    """The published numbers whose key starts with ``prefix`` (all by default), in order."""
    return tuple(r for r in PUBLISHED_NUMBERS if r.key.startswith(prefix))


def table1_values() -> dict[str, float]:
    """Table 1's published coefficients: name (:data:`TABLE1_COEFFICIENTS`) -> value."""
    return {k: published(f"table1.{k}").value for k in TABLE1_COEFFICIENTS}
