"""``hatrade counterfactual`` and ``hatrade batch``: who gains from a change in trade costs.

A counterfactual folder holds:

``summary.json``
    ``kind`` = ``"counterfactual"``; ``scenario``; ``R`` (old, new, change_percent; by
    country under financial autarky); ``wages`` (by country: old, new, change_percent);
    ``R_over_w_change_percent`` (by country); ``home_share``, ``net_foreign_assets`` (by
    country: old, new); ``by_country`` (for each reported country: ``mean_gain_percent``
    (weighted by the baseline stationary distribution), ``acr_percent``, ``share_losers``,
    ``quintile_gain_percent`` (by expenditure quintile Q1 poorest .. Q5),
    ``income_group_gain_percent``, ``mean_cev_percent``, ``social_welfare``, ``ev``
    diagnostics); ``convergence``.
``welfare.csv``
    One row per state of each reported country: ``country, a_index, z_index`` (1-based,
    assets then income state), ``assets, z, mass`` (baseline distribution), ``lambda``,
    ``gain_percent`` = 100 (lambda - 1), ``cev_percent`` (Lucas), ``ev_residual`` (the
    evaluated residual V_old(a,z;lambda) - V_new(a,z); empty unless --verify-ev),
    ``ev_residual_verified``, ``ev_gain_error_estimate_points`` (without --verify-ev: the
    estimated error of ``gain_percent`` from the interpolation in lambda), ``ev_defined``,
    ``ev_first_root_above_one`` (borrowers near the limit whose value falls with a small
    scaling of income: lambda is the first root above 1).
``changes.csv``, ``trade.csv``
    By-country changes (wages, R/w, home shares, net foreign assets) and trade shares
    old/new by pair.
``gains_by_quintile_<C>.png``, ``gains_by_income_<C>.png``, ``gains_heatmap_<C>.png``,
``gains_by_assets_<C>.png``
    Figures (with ``--compare DIR``, the other folder's gains are drawn side by side).

The folder is written by :func:`hatrade.io.results.save_counterfactual` (as are the run
folders of ``hatrade batch``), under the output-folder policy of :mod:`hatrade.io.folders`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from hatrade.io.results import COUNTERFACTUAL_FILES

from ._common import err_console, handle_errors, out_option, print_table, progress
from .scenario_options import (
    ScenarioOptions,
    allow_d_below_one_option,
    base_world,
    baseline_calibration_option,
    baseline_config_option,
    baseline_equilibrium_of,
    check_n_nodes,
    exporter_option,
    financial_option,
    forbid_d_below_one_option,
    global_option,
    importer_option,
    labor_option,
    labor_tax_option,
    n_nodes_option,
    name_option,
    pair_option,
    rebate_option,
    run_folder,
    run_label,
    symmetric_option,
    tariff_change_option,
    tariff_option,
    tfp_option,
    trade_cost_change_option,
)
from .solve import CalibrationName

__all__ = ["register", "counterfactual_command", "COUNTERFACTUAL_FILES"]

log = logging.getLogger(__name__)

_KIND = "counterfactual"


def register(app: typer.Typer) -> None:
    """Add ``counterfactual`` to ``app``."""
    app.command("counterfactual")(counterfactual_command)


def _countries_option():
    return typer.Option(
        None,
        "--countries",
        help="Countries whose welfare to report, comma separated "
        "(default: the importer; every country with --global).",
    )


def _verify_ev_option():
    return typer.Option(
        False,
        "--verify-ev",
        help="Evaluate every state's EV residual by a solve at its own "
        "lambda and polish below 1e-10 (about 2-3 solves per state: minutes per country).",
    )


def _compare_option():
    return typer.Option(
        None,
        "--compare",
        file_okay=False,
        help="Another counterfactual folder (e.g. the log model's) drawn side by side.",
    )


@handle_errors
def counterfactual_command(
    importer: Optional[str] = importer_option(),
    exporter: Optional[str] = exporter_option(),
    pair: Optional[List[str]] = pair_option(),
    symmetric: bool = symmetric_option(),
    all_pairs: bool = global_option(),
    trade_cost_change: float = trade_cost_change_option(),
    tariff_change: float = tariff_change_option(),
    tariff: Optional[float] = tariff_option(),
    rebate: Optional[str] = rebate_option(),
    labor_tax: Optional[List[str]] = labor_tax_option(),
    tfp: Optional[List[str]] = tfp_option(),
    labor: Optional[List[str]] = labor_option(),
    financial: Optional[str] = financial_option(),
    calibration: Optional[CalibrationName] = baseline_calibration_option(),
    config: Optional[Path] = baseline_config_option(),
    countries: Optional[str] = _countries_option(),
    out: Optional[Path] = out_option(
        "Output folder (default results/counterfactual-<calibration or config>-<name>)."
    ),
    verify_ev: bool = _verify_ev_option(),
    n_nodes: int = n_nodes_option(),
    forbid_d_below_one: bool = forbid_d_below_one_option(),
    allow_d_below_one: bool = allow_d_below_one_option(),
    compare: Optional[Path] = _compare_option(),
    name: Optional[str] = name_option(),
) -> None:
    """Solve a counterfactual (beta fixed) and the welfare of every household state."""
    from hatrade.analysis.counterfactual import apply_scenario
    from hatrade.io.folders import prepare_output

    # ---- everything (options, files, folders) is checked before any solve
    cal_name, cfg, world0, source = base_world(calibration, config)
    options = ScenarioOptions(
        importer=importer,
        exporter=exporter,
        pair=pair,
        symmetric=symmetric,
        all_pairs=all_pairs,
        trade_cost_change=trade_cost_change,
        tariff_change=tariff_change,
        tariff=tariff,
        tfp=tfp,
        labor=labor,
        financial=financial,
        rebate=rebate,
        labor_tax=labor_tax,
        forbid_d_below_one=forbid_d_below_one,
        allow_d_below_one=allow_d_below_one,
    )
    scenario = options.scenario(name)
    name = scenario.name
    check_n_nodes(n_nodes)
    report = _report_countries(countries, world0, scenario)
    compare_summary = _read_compare(compare) if compare is not None else None
    out = run_folder(out, _KIND, cal_name, config, name)
    folder = prepare_output(out, _KIND, what="counterfactual")
    apply_scenario(world0, scenario)  # the last check: raises, or warns once, before solving

    err_console.print(
        f"[bold]{escape(name)}[/bold]: {world0.M} countries ({escape(source)}), "
        f"beta fixed, solving wages and R; welfare for {', '.join(report) or 'none'}."
    )
    with progress() as prog:
        base_eq, cf, results = _solve(prog, cal_name, cfg, scenario, report, verify_ev, n_nodes)
        label = run_label(cal_name, config)
        summary = _write_folder(
            folder, base_eq, cf, results, compare_summary, name=name, label=label, source=source
        )
    _print_summary(summary, cf, out)


def _report_countries(countries: str | None, world0, scenario) -> list[str]:
    """The countries whose welfare to report: ``--countries`` (checked), every country
    with ``--global``, else the importer(s), else the exporter."""
    from hatrade.core.params import ParameterError

    if countries is not None:
        report = list(dict.fromkeys(c.strip() for c in countries.split(",") if c.strip()))
        if not report:
            raise ParameterError(
                f"--countries {countries!r} is not allowed: list country codes separated "
                f"by commas, from {', '.join(world0.countries)}."
            )
        for c in report:
            world0.index(c)
        return report
    if scenario.all_pairs:
        return list(world0.countries)
    return [
        c for c in dict.fromkeys([scenario.importer] + [p[0] for p in scenario.pairs]) if c
    ] or ([scenario.exporter] if scenario.exporter else [])


#: What the figures take from each country of a ``--compare`` summary: the groups of each
#: entry (``None``: a number).
_COMPARE_FIELDS = {
    "mean_gain_percent": None,
    "acr_percent": None,
    "quintile_gain_percent": ("Q1", "Q2", "Q3", "Q4", "Q5"),
    "income_group_gain_percent": (
        "bottom_20",
        "below_median",
        "median_45_55",
        "above_median",
        "top_20",
    ),
}


def _number(x) -> float | None:
    """``x`` as a float (JSON null: NaN), or None when it is not a number."""
    if x is None:
        return float("nan")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def _compare_entry(where: str, entry) -> dict:
    """One country of a ``--compare`` summary, checked (JSON nulls become NaN)."""
    from hatrade.core.params import ParameterError

    if not isinstance(entry, dict):
        raise ParameterError(f"{where} must be an object, got {type(entry).__name__}.")
    out = dict(entry)
    for key, groups in _COMPARE_FIELDS.items():
        value = entry.get(key)
        if groups is None:
            out[key] = _number(value)
            if out[key] is None:
                raise ParameterError(f"{where}.{key} must be a number, got {value!r}.")
            continue
        if not isinstance(value, dict):
            raise ParameterError(
                f"{where}.{key} must be an object with {', '.join(groups)}, got {value!r}."
            )
        out[key] = {g: _number(value.get(g)) for g in groups}
        bad = [g for g, v in out[key].items() if v is None or g not in value]
        if bad:
            raise ParameterError(f"{where}.{key} lacks a number for {', '.join(bad)}.")
    return out


def _read_compare(compare: Path) -> dict:
    """The summary of the ``--compare`` folder, checked before any solve (a counterfactual
    or batch-run summary with the welfare groups the figures draw)."""
    from hatrade.core.params import ParameterError

    path = compare / "summary.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ParameterError(
            f"--compare {compare}: cannot read its summary.json ({err}); give a folder "
            "written by 'hatrade counterfactual'."
        ) from None
    where = f"--compare {path}"
    if not isinstance(doc, dict) or doc.get("kind") not in ("counterfactual", "batch-run"):
        raise ParameterError(
            f'{where} is not a counterfactual summary (no "kind": "counterfactual"); '
            "give a folder written by 'hatrade counterfactual'."
        )
    by_country = doc.get("by_country")
    if not isinstance(by_country, dict):
        raise ParameterError(f"{where}: 'by_country' must be an object by country code.")
    label = doc.get("label")
    if label is not None and not isinstance(label, str):
        raise ParameterError(f"{where}: 'label' must be a string, got {label!r}.")
    return {
        **doc,
        "by_country": {
            str(c): _compare_entry(f"{where}: by_country.{c}", e) for c, e in by_country.items()
        },
        "label": label or compare.name,
    }


def _solve(prog, cal_name: str, cfg, scenario, report: list[str], verify_ev: bool, n_nodes: int):
    """The baseline, the counterfactual and the welfare of ``report``, with progress."""
    from hatrade.analysis.counterfactual import run_counterfactual
    from hatrade.welfare.summary import country_welfare

    task = prog.add_task("Baseline equilibrium (the first call compiles)...", total=None)
    base_eq = baseline_equilibrium_of(cal_name, cfg)
    prog.finish(
        task,
        description=f"Baseline: beta {base_eq.beta:.6f}, R "
        f"{float(base_eq.prices.R[0]):.6f}, {base_eq.seconds:.0f} s",
    )

    t2 = prog.add_task("Counterfactual equilibrium...", total=None)

    def report_newton(iteration: int, residual: float) -> None:
        prog.update(
            t2, description=f"Counterfactual: Newton {iteration}, max excess demand {residual:.2e}"
        )

    # the scenario was applied (and its trade costs below 1 reported) before the solve
    cf = run_counterfactual(base_eq, scenario, progress=report_newton, warn=False)
    prog.finish(
        t2,
        description=f"Counterfactual: converged in {cf.new.iterations} Newton "
        f"steps, {cf.new.seconds:.0f} s",
    )
    t3 = prog.add_task("Welfare...", total=None)
    results = {}
    for k, c in enumerate(report):
        prog.update(t3, description=f"Welfare of {c} ({k + 1}/{len(report)}): all states")
        results[c] = country_welfare(cf, country=c, verify=verify_ev, n_nodes=n_nodes)
    prog.finish(
        t3, description=f"Welfare: {len(report)} countr{'y' if len(report) == 1 else 'ies'}"
    )
    return base_eq, cf, results


def _write_folder(
    folder, base_eq, cf, results: dict, compare_summary, *, name: str, label: str, source: str
) -> dict:
    """Write the counterfactual folder (:func:`hatrade.io.results.save_counterfactual`,
    with figures) in one swap; returns its summary."""
    import pandas as pd

    from hatrade.io.results import counterfactual_summary, save_counterfactual

    baseline_convergence = {
        k: v
        for k, v in base_eq.summary().items()
        if k in ("converged", "newton_iterations", "max_excess_demand", "seconds")
    }
    summary = counterfactual_summary(
        cf,
        {c: r.summary for c, r in results.items()},
        name=name,
        label=label,
        source=source,
        baseline_convergence=baseline_convergence,
    )
    table = pd.concat([r.table for r in results.values()]) if results else None
    with folder.replace() as tmp:
        save_counterfactual(
            tmp, cf, table, summary, figures=True, compare=compare_summary, label=label
        )
    return summary


def _print_summary(summary: dict, cf, out: Path) -> None:
    head = Table(
        title=f"Counterfactual: {escape(summary['name'])}", show_header=False, title_justify="left"
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    R = summary["R"]
    if "change_percent" in R:
        head.add_row("R", f"{R['old']:.6f} -> {R['new']:.6f} ({R['change_percent']:+.4f}%)")
    conv = summary["convergence"]
    head.add_row(
        "convergence",
        f"{conv['newton_iterations']} Newton steps, max excess demand "
        f"{conv['max_excess_demand']:.1e}",
    )
    head.add_row("output", str(out))
    print_table(head)
    tab = Table(title="Who gains (percent, equivalent variation)", title_justify="left")
    for col in ("country", "mean", "Q1", "Q2", "Q3", "Q4", "Q5", "losers", "ACR", "R/w", "wage"):
        tab.add_column(col, justify="right" if col != "country" else "left")
    for c, s in summary["by_country"].items():
        q = s["quintile_gain_percent"]
        tab.add_row(
            c,
            f"{s['mean_gain_percent']:.3f}",
            *(f"{q[f'Q{k}']:.3f}" for k in range(1, 6)),
            f"{100 * s['share_losers']:.1f}%",
            f"{s['acr_percent']:.3f}",
            f"{summary['R_over_w_change_percent'][c]:+.3f}",
            f"{summary['wages'][c]['change_percent']:+.3f}",
        )
    print_table(tab)
    notes = []
    for c, s in summary["by_country"].items():
        ev = s["ev"]
        if ev["verified"]:
            notes.append(f"{c}: EV residuals evaluated, max {ev['max_abs_residual']:.1e}")
        else:
            notes.append(
                f"{c}: EV by interpolation (estimated error of the gains up to "
                f"{ev['max_gain_error_estimate_points']:.1e} percentage points, "
                f"{ev['max_residual_estimate']:.1e} in V; --verify-ev evaluates "
                "every residual)"
            )
        if ev.get("first_root_above_one_states"):
            notes.append(
                f"{c}: {ev['first_root_above_one_states']} states "
                f"({100 * ev['first_root_above_one_mass']:.1f}% of households, "
                "borrowers near the limit) lose from a small scaling of income, so "
                "their lambda is the first root above 1 (column "
                "ev_first_root_above_one)"
            )
        if ev["undefined_states"]:
            notes.append(
                f"{c}: {ev['undefined_states']} states ({100 * ev['undefined_mass']:.1f}% "
                "of households): borrowers for whom scaling income lowers V at 1 and "
                "no feasible scaling above 1 makes them as well off, so the EV is "
                "undefined (lambda empty; mean Lucas gain "
                f"{ev['undefined_cev_percent_mean']:.3f}%); means leave them out"
            )
    for n in notes:
        err_console.print(f"[dim]{escape(n)}[/dim]")
