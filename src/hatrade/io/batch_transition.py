r"""Transitions as batch runs: the run keys, their checks, and the solve of one run.

A run of a batch file (:mod:`hatrade.io.batch_spec`) is a transition
(:func:`hatrade.analysis.transition.run_transition`) rather than a counterfactual when it
has ``kind = "transition"``::

    [[runs]]
    name = "USA-cut-path"
    kind = "transition"           # "counterfactual" (default) or "transition"
    importer = "USA"              # the scenario keys, as for a counterfactual, or:
    trade_cost_change = -0.10     #   path = "shock.csv" (a per-period table, relative to
    periods = 300                 #   the batch file; no scenario change keys then)
    news_date = 0                 # the scenario's change holds from this period on
    linear = false                # the first-order path

Everything is checked when the file is read, before any solve: the keys (``periods``,
``news_date``, ``linear``, ``path`` only with ``kind = "transition"``), their types and
ranges (``periods`` an integer >= 2, ``news_date`` in [0, periods), ``linear`` a
boolean), the path table (:func:`hatrade.io.transition_results.read_path_table` and the
engine's :func:`~hatrade.analysis.transition.path_shocks`), and what transitions do not
take (another financial regime). The scenario's ``rebate`` and ``labor_tax``
hold from period 0 on (with ``news_date`` = 0; a path table keeps the baseline's
instruments and takes none of the scenario keys). The run's folder
``OUT/runs/<name>/`` is a transition folder
(:func:`hatrade.io.transition_results.save_transition`).
"""

from __future__ import annotations

from pathlib import Path

from hatrade.core.params import ParameterError
from hatrade.io.validate import BOOLEAN, integer, option_problems

__all__ = [
    "RUN_KINDS",
    "TRANSITION_RUN_KEYS",
    "transition_fields",
    "check_transition_run",
    "solve_transition_run",
]

#: The kinds of batch runs.
RUN_KINDS = ("counterfactual", "transition")

#: Keys of a transition run besides the scenario keys.
TRANSITION_RUN_KEYS = ("kind", "periods", "news_date", "linear", "path")

_RULES = {"periods": integer(2), "news_date": integer(0), "linear": BOOLEAN}

#: Scenario keys that describe a change (not allowed together with ``path``).
_CHANGE_KEYS = (
    "trade_cost_change",
    "importer",
    "exporter",
    "pairs",
    "all_pairs",
    "tariff_change",
    "tfp_change",
    "labor_change",
    "financial",
    "tariff",
    "rebate",
    "labor_tax",
)


def _path_table(where: str, path, world, periods: int, base_dir: Path | None) -> list:
    """The path table of a run, read and checked; as records (JSON-able: it travels with
    the run to the workers and enters its fingerprint)."""
    from hatrade.analysis.transition import path_shocks
    from hatrade.io.transition_results import read_path_table

    if not isinstance(path, str) or not path.strip():
        raise ParameterError(f"{where}: path = {path!r}: must be a CSV file name")
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    try:
        table = read_path_table(p, world.countries, periods)
        path_shocks(world, table, periods)
    except ParameterError as err:
        raise ParameterError(f"{where}: {err}") from None
    return [
        {k: (None if v != v else v) for k, v in row.items()}  # NaN (blank cell) -> None
        for row in table.to_dict("records")
    ]


def transition_fields(where: str, d: dict, world, base_dir: Path | None) -> dict:
    """Pop the transition keys from the run table ``d`` and check them.

    Returns
    -------
    dict
        ``{}`` for a counterfactual run; else ``periods``, ``news_date``, ``linear``,
        ``path`` (the file name as given, or None) and ``table`` (the path table's records,
        or None).

    Raises
    ------
    ParameterError
        Naming the run and the key.
    """
    kind = d.pop("kind", "counterfactual")
    given = {k: d.pop(k) for k in TRANSITION_RUN_KEYS[1:] if k in d}
    if kind not in RUN_KINDS:
        raise ParameterError(
            f"{where}: kind = {kind!r} is not allowed; use {' or '.join(RUN_KINDS)}"
        )
    if kind == "counterfactual":
        if given:
            raise ParameterError(
                f'{where}: {", ".join(sorted(given))} only apply to kind = "transition"'
            )
        return {}
    fields = {"periods": 300, "news_date": 0, "linear": False, **given}
    problems = option_problems({k: fields[k] for k in _RULES}, _RULES)
    if problems:
        raise ParameterError(f"{where}: {problems[0]}")
    if fields["news_date"] >= fields["periods"]:
        raise ParameterError(
            f"{where}: news_date = {fields['news_date']}: must be below periods = "
            f"{fields['periods']}"
        )
    path = fields.get("path")
    table = None
    if path is not None:
        change = [k for k in _CHANGE_KEYS if d.get(k) not in (None, False, 0, 0.0, [], {})]
        if change:
            raise ParameterError(
                f"{where}: path and the scenario key(s) {change} are given; use one of them"
            )
        if fields["news_date"]:
            raise ParameterError(
                f"{where}: news_date is not allowed with path (its periods are the dates)"
            )
        table = _path_table(where, path, world, fields["periods"], base_dir)
    return {
        "periods": int(fields["periods"]),
        "news_date": int(fields["news_date"]),
        "linear": bool(fields["linear"]),
        "path": path,
        "table": table,
    }


def check_transition_run(where: str, scenario, world, news_date: int = 0) -> None:
    """What a transition run does not take: another financial regime, a change of the
    instruments (``rebate``, ``labor_tax``: from period 0 on) with a later ``news_date``."""
    from hatrade.io.transition_results import check_transition_scenario

    try:
        check_transition_scenario(scenario, world, news_date=news_date)
    except ParameterError as err:
        raise ParameterError(f"{where}: {err}") from None


def solve_transition_run(run, baseline, options: dict):
    """Solve one transition run and the welfare of its countries.

    Returns
    -------
    (Transition, {country: welfare summary}, welfare table or None)
    """
    import pandas as pd

    from hatrade.analysis.transition import run_transition
    from hatrade.welfare.transition import transition_welfare

    t = run.transition
    shock = pd.DataFrame(t["table"]) if t.get("table") is not None else run.scenario
    tr = run_transition(
        baseline,
        shock,
        periods=t["periods"],
        news_date=t["news_date"],
        linear=t["linear"],
        tol=options["tol"],
        max_iter=options["max_iter"],
    )
    wel, tables = {}, []
    for c in run.welfare:
        w = transition_welfare(tr, c, n_nodes=options["n_nodes"], verify=options["verify_ev"])
        wel[c] = w.summary
        tables.append(w.table)
    return tr, wel, (pd.concat(tables) if tables else None)
