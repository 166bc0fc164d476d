r"""Transition folders: the path after a shock and who gains along it, written atomically.

A transition folder (:func:`save_transition`; ``hatrade transition``, a transition run of
``hatrade batch``, the ``transitions`` stage of ``hatrade replicate``) holds:

``summary.json``
    ``kind`` (``"transition"``, or ``"batch-run"`` in a batch); ``hatrade_version``;
    ``created``; the writer's header (e.g. ``name``, ``label``, ``source``); ``scenario``
    (the Scenario's fields, or ``{"path_table": true}`` for a per-period table);
    ``periods`` (T), ``news_date``, ``linear``, ``financial``; ``convergence``
    (``converged``, ``iterations``, ``residual``: the largest excess demand along the
    path, ``end_gap``: the last period's distance to the new steady state, ``work``);
    ``wage_t0``, ``R_t1``, ``R_old``, ``R_new`` (by country); ``steady_state`` (wages and
    R of the old and the new stationary equilibria, by country); ``welfare`` (by reported
    country: :func:`hatrade.welfare.transition.transition_welfare`'s summary: mean,
    quintile and income-group gains in percent for the transition and the steady-state
    comparison, the shares of losers); ``parameters`` (household, world, calibration).
``paths.csv``
    One row per period and country
    (:data:`~hatrade.analysis.transition.PATHS_COLUMNS`): ``period`` (0 .. T-1),
    ``country``, ``wage`` (the numeraire: mean one each period), ``R`` (the return paid at
    t on the assets carried into t; period 0: the old steady state's), ``price_index``,
    ``import_share``, ``consumption`` (spending per household over the price index),
    ``assets`` (net foreign assets carried into t), ``net_exports``.
``welfare.csv``
    One row per household state of each reported country
    (:data:`~hatrade.welfare.transition.TRANSITION_WELFARE_COLUMNS`): ``country``,
    ``a_index``, ``z_index`` (1-based), ``a``, ``z``, ``mass`` (the old stationary
    distribution), ``lambda_transition``, ``gain_transition_percent`` = 100 (lambda - 1)
    (the equivalent variation at t = 0 of the path the state faces),
    ``lambda_steady_state``, ``gain_steady_state_percent`` (the steady-state comparison),
    ``defined_transition``, ``defined_steady_state``.
figures (``figures=True``)
    ``paths.png`` (wages, R and import shares over the periods: the reported country bold,
    the others thin) and ``gains_by_quintile_<C>.png`` (transition against steady state
    by expenditure quintile, bars side by side) for each reported country.

Write the files into the temporary folder of :meth:`hatrade.io.folders.OutputFolder.replace`
(or :func:`hatrade.io.atomic.atomic_dir`), so that the folder appears whole or not at all.

:func:`read_path_table` reads a per-period shock table (``hatrade transition --path``)
from CSV, checked.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.core.params import ParameterError
from hatrade.io.atomic import jsonable, write_json, write_text

__all__ = [
    "TRANSITION_FILES",
    "PATH_TABLE_NUMBERS",
    "transition_summary",
    "save_transition",
    "read_path_table",
    "check_transition_scenario",
]

log = logging.getLogger(__name__)

#: The files of a transition folder (figures come on top, see :func:`save_transition`).
TRANSITION_FILES: tuple[str, ...] = ("summary.json", "paths.csv", "welfare.csv")

#: The numeric columns of a per-period shock table (the others are ``period`` and codes).
PATH_TABLE_NUMBERS: tuple[str, ...] = (
    "trade_cost_change",
    "tariff_change",
    "labor_change",
    "tfp_change",
)


def _by_country(countries, values) -> dict:
    return {c: float(v) for c, v in zip(countries, np.asarray(values, float).ravel())}


def _parameters(eq) -> dict:
    """Household, world and (for a shipped calibration) the calibration vector of ``eq``."""
    params = {"household": eq.household.to_dict(), "world": eq.world.to_dict()}
    if eq.world.meta.get("params") is not None:
        params["calibration"] = {
            "name": eq.world.meta.get("calibration"),
            "vector": list(eq.world.meta["params"]),
            "correct_germany": eq.world.meta.get("correct_germany"),
        }
    params["beta"] = float(eq.beta)
    return params


def transition_summary(transition, welfare: dict, /, **header) -> dict:
    """The content of a transition folder's ``summary.json`` (module docstring).

    Parameters
    ----------
    transition : hatrade.analysis.transition.Transition
    welfare : dict
        Welfare summary by reported country (``TransitionWelfare.summary``).
    **header
        Entries placed first, e.g. ``name``, ``label``, ``source``; ``kind`` defaults to
        ``"transition"``.
    """
    from hatrade import __version__

    s = transition.summary()
    old, new = transition.old, transition.new
    countries = list(old.world.countries)
    head = {
        "kind": "transition",
        "hatrade_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **header,
    }
    body = {
        "scenario": s["scenario"],
        "periods": s["periods"],
        "news_date": s["news_date"],
        "linear": s["linear"],
        "financial": s["financial"],
        "countries": countries,
        "convergence": {
            k: s[k] for k in ("converged", "iterations", "residual", "end_gap", "work")
        },
        "wage_t0": s["wage_t0"],
        "R_t1": s["R_t1"],
        "R_old": s["R_old"],
        "R_new": s["R_new"],
        "steady_state": {
            "wages_old": _by_country(countries, old.prices.w),
            "wages_new": _by_country(countries, new.prices.w),
            "R_old": s["R_old"],
            "R_new": s["R_new"],
            "new_converged": bool(getattr(new, "converged", True)),
        },
        "welfare": welfare,
        "parameters": _parameters(old),
    }
    return jsonable({**head, **body})


def save_transition(
    folder, paths: pd.DataFrame, welfare_table: pd.DataFrame | None, summary: dict, *, figures=False
) -> list[str]:
    """Write a transition folder's files into ``folder``, each atomically.

    Parameters
    ----------
    folder : path-like
        Where to write (created when needed); typically the temporary folder of
        :meth:`hatrade.io.folders.OutputFolder.replace` or of
        :func:`hatrade.io.atomic.atomic_dir`, so that the whole folder appears at once.
    paths : pandas.DataFrame
        The transition's paths table (:attr:`hatrade.analysis.transition.Transition.paths`).
    welfare_table : pandas.DataFrame or None
        The welfare rows of the reported countries (None: none reported, the file holds
        only the header).
    summary : dict
        The content of ``summary.json`` (:func:`transition_summary`).
    figures : bool
        Also draw the figures (:func:`hatrade.plots.transition.save_transition_figures`).

    Returns
    -------
    list of str
        The names of the files written: :data:`TRANSITION_FILES`, then the figures.
    """
    from hatrade.welfare.transition import TRANSITION_WELFARE_COLUMNS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = welfare_table
    if table is None:
        table = pd.DataFrame(columns=list(TRANSITION_WELFARE_COLUMNS))
    write_json(folder / "summary.json", summary, indent=2)
    write_text(folder / "paths.csv", paths.to_csv(index=False, float_format="%.17g"))
    write_text(folder / "welfare.csv", table.to_csv(index=False, float_format="%.17g"))
    names = list(TRANSITION_FILES)
    if figures:
        from hatrade.plots.transition import save_transition_figures

        drawn = save_transition_figures(folder, paths, summary)
        names += [Path(p).name for p in drawn]
    log.info("wrote %s (%s)", folder, ", ".join(names))
    return names


# ----------------------------------------------------------------------------- checks


def check_transition_scenario(
    scenario,
    world,
    *,
    financial="financial",
    news_date: int = 0,
    news_field: str = "news_date",
):
    """What a transition does not take, before any solve: a financial regime other than
    the baseline's, or a change of the instruments with a later news date
    (:func:`~hatrade.analysis.transition.check_instrument_timing`).
    ``financial``/``news_field`` name the fields in the message (e.g. ``--financial`` in
    the CLI).

    Raises
    ------
    ParameterError
    """
    if scenario.financial is not None and scenario.financial != world.financial:
        raise ParameterError(
            f"{financial} = {scenario.financial!r} is not allowed in a transition: the "
            f"financial regime stays the baseline's ({world.financial!r})."
        )
    from hatrade.analysis.transition import check_instrument_timing

    check_instrument_timing(world, scenario, news_date, news_field)


# ----------------------------------------------------------------------------- reading


def _rows(mask) -> list[int]:
    """Data rows of a CSV file (2 = the first line after the header) where ``mask``."""
    return [int(k) + 2 for k in np.where(np.asarray(mask))[0][:10]]


def _number_column(df: pd.DataFrame, col: str, where: str) -> pd.Series:
    """A numeric column of the CSV text: blank = no change (NaN), anything else a finite
    number."""
    text = df[col].astype(str).str.strip()
    blank = text == ""
    vals = pd.to_numeric(text.where(~blank, "0"), errors="coerce").to_numpy(float)
    bad = ~blank.to_numpy() & ~np.isfinite(vals)
    if bad.any():
        shown = [df[col].iloc[r - 2] for r in _rows(bad)]
        raise ParameterError(
            f"{where}: {col} is not a finite number in rows {_rows(bad)} (values {shown}); "
            "give finite changes (an empty cell is no change)."
        )
    return pd.Series(np.where(blank, np.nan, vals), index=df.index, dtype=float)


def _period_column(df: pd.DataFrame, where: str) -> pd.Series:
    text = df["period"].astype(str).str.strip()
    vals = pd.to_numeric(text, errors="coerce").to_numpy(float)
    ok = np.isfinite(vals) & (vals >= 0) & (np.mod(np.where(np.isfinite(vals), vals, 0), 1) == 0)
    if not ok.all():
        raise ParameterError(
            f"{where}: period must be an integer >= 0; rows {_rows(~ok)} are not "
            f"(values {[df['period'].iloc[r - 2] for r in _rows(~ok)]})."
        )
    return pd.Series(vals.astype(int), index=df.index)


def read_path_table(path, countries=None, periods: int | None = None) -> pd.DataFrame:
    """Read a per-period shock table (CSV, columns of
    :data:`~hatrade.analysis.transition.PATH_COLUMNS`), checked before any solve.

    Blank cells are no change (and no code); ``period`` must be integers; every period
    from 0 to the last must appear. With ``countries`` the codes are checked against
    them, with ``periods`` the last period against the horizon.

    Raises
    ------
    ParameterError
        One line naming the file, the column and the rows (CSV line numbers, the header
        being line 1): an unreadable file, unknown columns, a missing ``period`` column,
        non-integer or missing periods, unknown country codes, non-finite values.
    """
    from hatrade.analysis.transition import PATH_COLUMNS

    where = f"path table {path}"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        raise ParameterError(f"{where}: cannot read it as CSV ({err}).") from None
    df.columns = [str(c).strip() for c in df.columns]
    unknown = [c for c in df.columns if c not in PATH_COLUMNS]
    if unknown:
        raise ParameterError(
            f"{where}: unknown column(s) {unknown}; allowed: {', '.join(PATH_COLUMNS)}."
        )
    if "period" not in df.columns or df.empty:
        raise ParameterError(f"{where}: a 'period' column and at least one row are needed.")
    out = pd.DataFrame(index=df.index)
    out["period"] = _period_column(df, where)
    for col in ("importer", "exporter", "country"):
        if col in df.columns:
            codes = df[col].astype(str).str.strip()
            if countries is not None:
                bad = (codes != "") & ~codes.isin(list(countries))
                if bad.any():
                    raise ParameterError(
                        f"{where}: {col} has unknown country codes "
                        f"{sorted(set(codes[bad]))} in rows {_rows(bad)}; allowed: "
                        f"{', '.join(countries)}."
                    )
            out[col] = codes
    for col in PATH_TABLE_NUMBERS:
        if col in df.columns:
            out[col] = _number_column(df, col, where)
    per = out["period"].to_numpy()
    missing = sorted(set(range(int(per.max()) + 1)) - set(int(p) for p in per))
    if missing:
        raise ParameterError(
            f"{where}: periods {missing[:10]} are missing; every period from 0 to the last "
            f"({int(per.max())}) needs a row (a row with only the period is no change)."
        )
    if periods is not None and per.max() >= periods:
        raise ParameterError(
            f"{where}: period {int(per.max())} is beyond the horizon (--periods {periods}); "
            f"use --periods {max(2 * periods, int(per.max()) + 1)} or more."
        )
    return out
