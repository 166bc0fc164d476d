"""``hatrade policy``: the optimal tariff (and transfer) of one country, and tariff wars.

``hatrade policy optimal`` writes ``policy.csv`` (instrument values, bounds, gradient),
``welfare.csv`` (every household state: EV and consumption equivalent against the
baseline, consumption equivalent against free trade), ``summary.json``, ``criteria.png``
and ``quintile_gains.png``, and keeps ``checkpoint.json`` (every evaluation) so that an
interrupted run resumes where it stopped. ``hatrade policy nash`` writes ``nash.csv`` and
``summary.json``. docs/policy.md.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.markup import escape

from ._common import (
    HatradeCommand,
    calibration_option,
    config_option,
    console,
    err_console,
    handle_errors,
    load_world_config,
    out_option,
    progress,
)
from .solve import CalibrationName

__all__ = ["register", "optimal_command", "nash_command", "POLICY_FILES"]

log = logging.getLogger(__name__)

#: Files of a ``hatrade policy optimal`` folder.
POLICY_FILES = (
    "policy.csv",
    "welfare.csv",
    "summary.json",
    "checkpoint.json",
    "criteria.png",
    "quintile_gains.png",
)

_KIND = "policy"


def register(app: typer.Typer) -> None:
    """Add ``policy optimal`` and ``policy nash`` to ``app``."""
    sub = typer.Typer(help="Optimal trade policy with redistribution, and tariff wars.")
    sub.command("optimal", cls=HatradeCommand)(optimal_command)
    sub.command("nash", cls=HatradeCommand)(nash_command)
    app.add_typer(sub, name="policy")


def _checked(country, instrument, criterion, rebate, cfg):
    """Everything checked before any solve (one-line ParameterErrors)."""
    from hatrade.core.instruments import check_rebate
    from hatrade.policy.criteria import parse_criterion
    from hatrade.policy.optimal import policy_space

    if rebate is not None:
        check_rebate(rebate, "--rebate")
    parse_criterion(criterion, "--criterion")
    return policy_space(cfg.world, country, instrument)


def _baseline(cfg):
    from hatrade import solve_equilibrium
    from hatrade.analysis.counterfactual import baseline_equilibrium

    if cfg.calibration is not None:
        return baseline_equilibrium(cfg.calibration["name"])
    return solve_equilibrium(cfg.world, cfg.household, **cfg.solve_kwargs())


def _resume_history(folder, spec: dict) -> list:
    """Earlier evaluations of the same problem from ``checkpoint.json`` (else none)."""
    import json

    path = folder.path / "checkpoint.json"
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("checkpoint.json unreadable; starting afresh")
        return []
    if data.get("spec") != spec:
        log.info("checkpoint.json is for another problem; starting afresh")
        return []
    log.info("resuming: %d evaluations in checkpoint.json", len(data["evaluations"]))
    return list(data["evaluations"])


@handle_errors
def optimal_command(
    country: str = typer.Option(..., "--country", help="The country whose policy is chosen."),
    instrument: str = typer.Option(
        "tariff",
        "--instrument",
        help="tariff (uniform), tariff+transfer (and a labor tax rebated lump sum), "
        "partner-tariffs, partner-tariffs+transfer.",
    ),
    criterion: str = typer.Option(
        "utilitarian",
        "--criterion",
        help="utilitarian, quintile:Q1..Q5, group:<income group>, real_income.",
    ),
    rebate: Optional[str] = typer.Option(
        None, "--rebate", help="Tariff revenue: lump-sum, labor-income or group:<income group>."
    ),
    calibration: Optional[CalibrationName] = calibration_option(
        "The shipped calibration of the baseline world (default: baseline)."
    ),
    config: Optional[Path] = config_option("A world TOML file instead of a calibration."),
    out: Optional[Path] = out_option("Output folder (default results/policy-<country>)."),
    max_solves: int = typer.Option(30, "--max-solves", help="Equilibrium solves at most."),
    tariff_max: float = typer.Option(1.0, "--tariff-max", help="Upper bound of the tariffs."),
) -> None:
    """Optimal tariff (and transfer) of one country; the others' policies fixed."""
    from hatrade.io.folders import prepare_output
    from hatrade.policy.optimal import PolicyOptions, optimal_policy

    cfg = load_world_config(calibration, config)
    _checked(country, instrument, criterion, rebate, cfg)
    opts = PolicyOptions(tariff_bounds=(0.0, tariff_max), max_solves=max_solves)
    out = Path(out) if out is not None else Path("results") / f"policy-{country}"
    folder = prepare_output(out, _KIND, update=True)
    folder.check_paths(*POLICY_FILES)
    spec = dict(
        country=country, instrument=instrument, criterion=criterion, rebate=rebate,
        source=cfg.source, tariff_max=tariff_max,
    )  # fmt: skip
    with folder.session(), progress() as prog:
        task = prog.add_task("Baseline equilibrium (the first call compiles)...", total=None)
        base = _baseline(cfg)
        prog.finish(task, description=f"Baseline: beta {base.beta:.6f}")
        evals = _resume_history(folder, spec)
        task = prog.add_task("Optimizing...", total=None)

        def record(e):
            evals.append(e)
            folder.write_json("checkpoint.json", {"spec": spec, "evaluations": evals})
            prog.update(task, description=f"Evaluation {len(evals)}: criterion {e['value']:.6f}")

        res = optimal_policy(
            base, country, instrument=instrument, criterion=criterion, rebate=rebate,
            options=opts, history=list(evals), on_evaluation=record, report_criteria=True,
        )  # fmt: skip
        prog.finish(task, description=f"Optimum after {res.solves} new equilibrium solves")
        task = prog.add_task("Welfare of every state...", total=None)
        summary = _write_optimal(folder, base, res, spec)
        prog.finish(task, description="Welfare done")
    _print(summary, out)


def _write_optimal(folder, base, res, spec) -> dict:
    """policy.csv, welfare.csv, summary.json and the figures of an optimum."""
    from hatrade import __version__
    from hatrade.io.atomic import jsonable
    from hatrade.plots.policy import save_policy_figures
    from hatrade.policy.criteria import CriteriaPanel, ce_map, ce_of_value
    from hatrade.policy.optimal import policy_space, solve_policy, world_at
    from hatrade.welfare.summary import country_welfare

    space = policy_space(res.eq.world, res.country, res.instrument)
    free = solve_policy(base, world_at(res.eq.world, space, np.zeros(space.n)), res.eq)
    cw = country_welfare(base, res.eq, res.country)
    i = base.world.index(res.country)
    table = cw.table.copy()
    g_free = 100.0 * np.asarray(ce_of_value(ce_map(free, i), np.asarray(res.eq.policies.V[i])))
    table["cev_vs_free_trade_percent"] = g_free.ravel()
    crit = CriteriaPanel(base, res.country).values(res.eq, ev=cw.ev)
    pol = [
        dict(instrument=n, value=float(v), lower=b[0], upper=b[1], on_bound=n in res.on_bound,
             gradient_percent_per_unit=float(g))
        for n, v, b, g in zip(res.names, res.theta, res.bounds, res.grad)
    ]  # fmt: skip
    import pandas as pd

    summary = jsonable(
        {
            "kind": _KIND,
            "hatrade_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "spec": spec,
            "optimum": {n: float(v) for n, v in zip(res.names, res.theta)},
            "criterion_percent": res.value,
            "gradient": res.grad.tolist(),
            "projected_gradient_norm": res.grad_norm,
            "on_bound": list(res.on_bound),
            "converged": res.converged,
            "message": res.message,
            "new_equilibrium_solves": res.solves,
            "evaluations": len(res.history),
            "criteria_vs_baseline": crit,
            "welfare_vs_baseline": cw.summary,
            "mean_cev_vs_free_trade_percent": float(
                np.sum(base.lam[i] * g_free) / base.lam[i].sum()
            ),
            "seconds": res.seconds,
        }
    )
    folder.write_text("policy.csv", pd.DataFrame(pol).to_csv(index=False, float_format="%.17g"))
    folder.write_text("welfare.csv", table.to_csv(index=False, float_format="%.17g"))
    folder.write_json("summary.json", summary, indent=2)
    folder.claim("criteria.png", "quintile_gains.png")
    gains = {"EV": crit["ev"], "consumption equivalent": crit["ce"]}
    gains = {
        k: {q: v[f"quintile:{q}"] for q in ("Q1", "Q2", "Q3", "Q4", "Q5")} for k, v in gains.items()
    }
    save_policy_figures(
        folder.path, res.history, float(res.theta[0]), gains,
        title=f"{res.country}: {res.instrument}, {res.criterion}",
    )  # fmt: skip
    return summary


def _print(summary: dict, out: Path) -> None:
    opt = ", ".join(f"{k} = {v:.6f}" for k, v in summary["optimum"].items())
    console.print(
        f"Optimum: {opt}; criterion {summary['criterion_percent']:.4f}% "
        f"(projected gradient {summary['projected_gradient_norm']:.1e}"
        + (f", on bound: {', '.join(summary['on_bound'])}" if summary["on_bound"] else "")
        + f"); {summary['new_equilibrium_solves']} equilibrium solves."
    )
    console.print(f"Wrote {escape(str(out))}")


@handle_errors
def nash_command(
    countries: Optional[str] = typer.Option(
        None, "--countries", help="Players, comma separated (default: every country)."
    ),
    criterion: str = typer.Option("utilitarian", "--criterion", help="As for 'optimal'."),
    rebate: Optional[str] = typer.Option(None, "--rebate", help="As for 'optimal'."),
    calibration: Optional[CalibrationName] = calibration_option(
        "The shipped calibration of the baseline world (default: baseline)."
    ),
    config: Optional[Path] = config_option("A world TOML file instead of a calibration."),
    out: Optional[Path] = out_option("Output folder (default results/policy-nash)."),
    max_rounds: int = typer.Option(20, "--max-rounds", help="Best-response rounds at most."),
) -> None:
    """Nash tariffs: every player's uniform tariff is its best response."""
    from hatrade import __version__
    from hatrade.core.instruments import check_rebate
    from hatrade.io.atomic import jsonable
    from hatrade.io.folders import prepare_output
    from hatrade.policy.criteria import parse_criterion
    from hatrade.policy.nash import nash_tariffs

    cfg = load_world_config(calibration, config)
    players = None if countries is None else tuple(c.strip() for c in countries.split(","))
    for c in players or ():
        cfg.world.index(c)
    parse_criterion(criterion, "--criterion")
    if rebate is not None:
        check_rebate(rebate, "--rebate")
    out = Path(out) if out is not None else Path("results") / "policy-nash"
    folder = prepare_output(out, "policy-nash")
    err_console.print(f"Nash tariffs of {', '.join(players or cfg.world.countries)}.")
    with progress() as prog:
        task = prog.add_task("Baseline and best responses...", total=None)
        base = _baseline(cfg)
        res = nash_tariffs(base, players, criterion=criterion, rebate=rebate, max_rounds=max_rounds)
        prog.finish(task, description=f"Nash after {res.rounds} rounds, {res.solves} solves")
    import pandas as pd

    tab = pd.DataFrame(
        {"country": list(res.tariffs), "tariff": list(res.tariffs.values()),
         "criterion_percent": [res.criterion[c] for c in res.tariffs]}
    )  # fmt: skip
    summary = jsonable(
        {
            "kind": "policy-nash",
            "hatrade_version": __version__,
            "criterion": criterion,
            "tariffs": res.tariffs,
            "criterion_percent": res.criterion,
            "rounds": res.rounds,
            "equilibrium_solves": res.solves,
            "best_responses": res.best_responses,
            "seconds": res.seconds,
        }
    )
    with folder.replace() as tmp:
        (tmp / "nash.csv").write_text(tab.to_csv(index=False, float_format="%.17g"))
        from hatrade.io.atomic import write_json

        write_json(tmp / "summary.json", summary, indent=2)
    console.print(tab.to_string(index=False))
    console.print(f"Wrote {escape(str(out))}")
