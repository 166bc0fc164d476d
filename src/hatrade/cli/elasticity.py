"""``hatrade elasticities`` and ``hatrade households``: Proposition 1 and the cross-section.

``hatrade elasticities --country USA`` writes, to ``results/elasticities-<name>-<country>``:

``elasticities.csv``
    One row per partner: ``partner``, ``theta`` (impact elasticity, Proposition 1: w, R
    and the stationary distribution fixed), ``theta_extensive``, ``theta_intensive``
    (theta = extensive + intensive), ``price`` (p_ij), ``trade_share`` (s_ij), then
    ``weight`` (weight in the country elasticity) and, unless ``--no-longrun``,
    ``theta_longrun`` (the distribution re-solved; w and R still fixed).
``summary.json``
    ``country``, ``theta`` (trade-weighted impact elasticity), its margins, the range
    across partners, ``theta_longrun``, the equilibrium's source; ``kind`` =
    ``"elasticities"``.
``micro.nc``
    The micro elasticities by partner and household state (xarray / NetCDF4).
``elasticities.png``
    Elasticity by partner against price.

``hatrade households --country USA`` writes, to ``results/households-<name>-<country>``:
``micro_table.csv`` (``grouping``, ``group``, ``import_share``, ``elasticity``, ``mpc``,
``mass``, then group means of ``labor_income``, ``expenditure``, ``assets``; exact
weights by the stationary distribution), ``cross_section.csv`` (one row per household
state, see :mod:`hatrade.analysis.cross_section`), ``micro_table.png`` (bars), ``summary.json``
(``kind`` = ``"households"``), and with ``--simulate N`` also
``micro_table_simulated.csv`` (N seeded simulated households).

For a shipped calibration the households are solved at the published equilibrium prices
(fast); for ``--config`` the equilibrium is solved first.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ._common import (
    calibration_option,
    config_option,
    console,
    err_console,
    handle_errors,
    load_world_config,
    out_option,
    print_table,
    progress,
)
from .solve import CalibrationName

__all__ = [
    "register",
    "elasticities_command",
    "households_command",
    "ELASTICITY_FILES",
    "HOUSEHOLD_FILES",
]

log = logging.getLogger(__name__)

#: Files of an elasticities folder.
ELASTICITY_FILES: tuple[str, ...] = (
    "elasticities.csv",
    "summary.json",
    "micro.nc",
    "elasticities.png",
)
#: Files of a households folder (plus micro_table_simulated.csv with --simulate).
HOUSEHOLD_FILES: tuple[str, ...] = (
    "micro_table.csv",
    "cross_section.csv",
    "summary.json",
    "micro_table.png",
)


def register(app: typer.Typer) -> None:
    """Add ``elasticities`` and ``households`` to ``app``."""
    app.command("elasticities")(elasticities_command)
    app.command("households")(households_command)


def _check_country(cfg, country: str) -> str:
    from hatrade.core.params import ParameterError

    code = country.strip()
    cfg.world.index(code)  # ParameterError listing the allowed codes
    if cfg.world.M < 2:
        raise ParameterError(
            f"country {code!r} has no trade partners (a one-country world): "
            "trade elasticities need at least two countries."
        )
    return code


def _equilibrium(cfg, prog):
    """Households at the published prices (calibration) or a solved equilibrium (config)."""
    from hatrade import evaluate, solve_equilibrium

    if cfg.calibration is not None:
        task = prog.add_task(
            "Households at the published equilibrium prices (the first call compiles)...",
            total=None,
        )
        eq = evaluate(
            cfg.world,
            cfg.household,
            cfg.wages,
            R=cfg.R,
            beta=cfg.calibration["published_beta"],
            income=cfg.income,
        )
        source = "published prices (households solved at the published wages and beta)"
    else:
        task = prog.add_task("Solving the equilibrium...", total=None)
        eq = solve_equilibrium(cfg.world, cfg.household, **cfg.solve_kwargs())
        source = f"solved ({eq.iterations} Newton iterations, max excess demand {eq.residual:.1e})"
    prog.finish(task, description=f"Equilibrium: {source}")
    return eq, source


def _header(kind: str, name: str, country: str, source: str) -> dict:
    from hatrade import __version__

    return {
        "kind": kind,
        "name": name,
        "country": country,
        "hatrade_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "equilibrium_source": source,
    }


def _write_json(path: Path, obj: dict) -> None:
    from hatrade.io.atomic import write_json

    write_json(path, obj, indent=2)


_COUNTRY_HELP = "Home country code (ISO3 for the 19-country world, e.g. USA)."
_CAL_HELP = (
    "A shipped calibration of the 19-country world (default: baseline, when --config "
    "is not given); households are solved at its published equilibrium prices."
)
_CONFIG_HELP = "A TOML file describing a world (as for hatrade solve); it is solved first."


def _out_help(kind: str) -> str:
    return (
        f"Output folder (default results/{kind}-<name>-<country>). A previous "
        f"'hatrade {kind}' folder there is replaced; a folder with other files is refused."
    )


@handle_errors
def elasticities_command(
    country: str = typer.Option(..., "--country", help=_COUNTRY_HELP),
    calibration: Optional[CalibrationName] = calibration_option(_CAL_HELP),
    config: Optional[Path] = config_option(_CONFIG_HELP),
    out: Optional[Path] = out_option(_out_help("elasticities")),
    longrun: bool = typer.Option(
        True,
        "--longrun/--no-longrun",
        help="Also report the long-run elasticity (stationary distribution re-solved; w and "
        "R still fixed) beside the impact one.",
    ),
) -> None:
    """Trade elasticities of one country by partner (Proposition 1, exact AD); write elasticities.csv, summary.json, micro.nc, elasticities.png."""
    from hatrade.io.folders import prepare_output

    cfg = load_world_config(calibration, config)
    code = _check_country(cfg, country)
    out = Path(out) if out is not None else Path("results") / f"elasticities-{cfg.name}-{code}"
    folder = prepare_output(out, "elasticities")
    err_console.print(
        f"[bold]{cfg.name}[/bold]: elasticities of {code} against its {cfg.world.M - 1} partners."
    )
    with progress() as prog:
        eq, source = _equilibrium(cfg, prog)
        res, lr = _elasticities(prog, eq, code, longrun)
        table = _elasticity_table(res, lr)
        summary = _elasticity_summary(cfg, code, source, res, lr)
        _write_elasticities(folder, cfg.name, code, res, lr, table, summary)
        log.info("wrote %s (%s)", out, ", ".join(ELASTICITY_FILES))
    _print_elasticities(table, res, lr, code, cfg.name)
    console.print(f"Wrote {escape(str(out))}")


def _elasticities(prog, eq, code: str, longrun: bool):
    """(the impact elasticities, the long-run ones or None without ``--longrun``) of
    ``code``, with progress."""
    from hatrade.analysis.elasticity import longrun_elasticities, trade_elasticities

    task = prog.add_task(
        "Elasticities (forward-mode AD through the household problem; the first call compiles)...",
        total=None,
    )
    if longrun:
        lr = longrun_elasticities(eq, code)
        res = lr.impact
    else:
        lr, res = None, trade_elasticities(eq, code)
    prog.finish(task, description=f"Elasticities: theta = {res.theta:.4f} ({res.seconds:.1f} s)")
    return res, lr


def _elasticity_table(res, lr):
    """elasticities.csv: one row per partner (``theta_longrun`` with the long run)."""
    from hatrade.analysis.elasticity import TABLE_COLUMNS

    table = res.table[list(TABLE_COLUMNS) + ["weight"]].copy()
    if lr is not None:
        table["theta_longrun"] = (
            lr.table.set_index("partner").loc[table["partner"], "theta_longrun"].to_numpy()
        )
    return table


def _elasticity_summary(cfg, code: str, source: str, res, lr) -> dict:
    """summary.json of ``hatrade elasticities``."""
    summary = {**_header("elasticities", cfg.name, code, source), **res.summary()}
    summary["kind"] = "elasticities"
    summary["theta_definition"] = (
        "impact elasticity d log(M_ij/M_ii) / d log p_ij "
        "(Proposition 1): w, R and the stationary "
        "distribution fixed; trade-share-weighted over partners"
    )
    if lr is not None:
        summary["theta_longrun"] = lr.theta_longrun
        summary["theta_longrun_definition"] = (
            "stationary distribution re-solved at the new policies; w and R still fixed"
        )
    summary["parameters"] = cfg.to_dict()
    return summary


def _write_elasticities(folder, name: str, code: str, res, lr, table, summary: dict) -> None:
    """Write the elasticities folder (:data:`ELASTICITY_FILES`) in one swap."""
    from hatrade.plots.elasticity import partner_elasticities_figure, save_figure

    ds = res.micro.copy()
    ds.attrs.update(name=name, **{k: summary[k] for k in ("hatrade_version", "created")})
    with folder.replace() as tmp:
        table.to_csv(tmp / "elasticities.csv", index=False, float_format="%.17g")
        _write_json(tmp / "summary.json", summary)
        ds.to_netcdf(tmp / "micro.nc", engine="h5netcdf")
        save_figure(
            partner_elasticities_figure(
                res, longrun=lr, title=f"{code} trade elasticities: {name}"
            ),
            tmp / "elasticities.png",
        )


def _print_elasticities(table, res, lr, code: str, name: str) -> None:
    tab = Table(title=f"Trade elasticities of {code} ({name})", title_justify="left")
    cols = ["partner", "theta", "extensive", "intensive", "price", "trade share"]
    if lr is not None:
        cols.append("long run")
    for c in cols:
        tab.add_column(c, justify="left" if c == "partner" else "right")
    for _, r in table.iterrows():
        row = [
            r["partner"],
            f"{r['theta']:.4f}",
            f"{r['theta_extensive']:.4f}",
            f"{r['theta_intensive']:.4f}",
            f"{r['price']:.4f}",
            f"{r['trade_share']:.5f}",
        ]
        if lr is not None:
            row.append(f"{r['theta_longrun']:.4f}")
        tab.add_row(*row)
    print_table(tab)
    line = f"trade-weighted theta (impact): {res.theta:.4f}"
    if lr is not None:
        line += f"; long run (distribution re-solved): {lr.theta_longrun:.4f}"
    console.print(line)


def _check_transfer(transfer: float) -> None:
    from hatrade.core.params import ParameterError

    if not (math.isfinite(transfer) and transfer > 0):
        raise ParameterError(
            f"--transfer {transfer} is not allowed: it must be a finite number > 0."
        )


def _check_simulation_memory(cfg, simulate: int) -> None:
    """Refuse ``--simulate N`` whose panel would not fit in memory, before any solve."""
    if not simulate:
        return
    from hatrade.core.income import income_process
    from hatrade.core.memory import check_memory, estimate_simulation_bytes

    n_z = (cfg.income or income_process(cfg.household)).z.size
    check_memory(
        estimate_simulation_bytes(simulate, cfg.world.M, n_z), f"--simulate {simulate} households"
    )


@handle_errors
def households_command(
    country: str = typer.Option(..., "--country", help=_COUNTRY_HELP),
    calibration: Optional[CalibrationName] = calibration_option(_CAL_HELP),
    config: Optional[Path] = config_option(_CONFIG_HELP),
    out: Optional[Path] = out_option(_out_help("households")),
    transfer: float = typer.Option(0.008, "--transfer", help="One-time transfer for the MPC."),
    simulate: int = typer.Option(
        0,
        "--simulate",
        min=0,
        help="Also tabulate N simulated households (seeded; the paper used 100000).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulation."),
) -> None:
    """Household cross-section of one country: import shares, trade elasticities and MPCs by income and expenditure group; write micro_table.csv, cross_section.csv, micro_table.png, summary.json."""
    from hatrade.analysis.cross_section import cross_section, micro_table
    from hatrade.io.folders import prepare_output

    _check_transfer(transfer)
    cfg = load_world_config(calibration, config)
    code = _check_country(cfg, country)
    _check_simulation_memory(cfg, simulate)
    out = Path(out) if out is not None else Path("results") / f"households-{cfg.name}-{code}"
    folder = prepare_output(out, "households")
    err_console.print(f"[bold]{cfg.name}[/bold]: household cross-section of {code}.")
    with progress() as prog:
        eq, source = _equilibrium(cfg, prog)
        task = prog.add_task(
            "Elasticities and MPCs by household state (the first call compiles)...", total=None
        )
        xs = cross_section(eq, code, transfer=transfer)
        table = micro_table(xs)
        prog.finish(task, description="Cross-section done")
        sim_table = _simulated_table(prog, eq, code, xs, simulate, seed) if simulate else None
        summary = _households_summary(cfg, code, source, transfer, xs, table, simulate, seed)
        _write_households(folder, cfg.name, code, table, xs.table, sim_table, summary)
        log.info("wrote %s (%s)", out, ", ".join(HOUSEHOLD_FILES))
    _print_households(table, code, cfg.name)
    console.print(f"Wrote {escape(str(out))}")


def _simulated_table(prog, eq, code: str, xs, simulate: int, seed: int):
    """The micro table of ``simulate`` seeded simulated households, with progress."""
    from hatrade.analysis.cross_section import micro_table, simulate_households

    task = prog.add_task(f"Simulating {simulate} households (seed {seed})...", total=None)
    sim_table = micro_table(simulate_households(eq, code, n=simulate, seed=seed, xs=xs))
    prog.finish(task, description=f"Simulated {simulate} households")
    return sim_table


def _households_summary(cfg, code, source, transfer, xs, table, simulate, seed) -> dict:
    """summary.json of ``hatrade households``."""
    t = xs.table
    return {
        **_header("households", cfg.name, code, source),
        "transfer": transfer,
        "mpc_definition": "sum_j pi_j p_ij (c_j(T + transfer) - c_j(T)) / transfer, "
        "one EGM step with next period's policies and the choice "
        "probabilities held fixed",
        "weights": "exact, by the stationary distribution (tied states split "
        "proportionally at group boundaries)",
        "mean": {
            c: float((t[c] * t["mass"]).sum())
            for c in (
                "import_share",
                "elasticity",
                "mpc",
                "labor_income",
                "expenditure",
                "assets",
            )
        },
        "theta_country": xs.elasticities.theta,
        "micro_table": table.to_dict(orient="records"),
        "simulation": None if not simulate else {"n": simulate, "seed": seed},
        "parameters": cfg.to_dict(),
    }


def _write_households(folder, name, code, table, cross, sim_table, summary: dict) -> None:
    """Write the households folder (:data:`HOUSEHOLD_FILES`, and micro_table_simulated.csv
    with ``--simulate``) in one swap."""
    from hatrade.plots.elasticity import micro_table_figure, save_figure

    with folder.replace() as tmp:
        table.to_csv(tmp / "micro_table.csv", index=False, float_format="%.17g")
        cross.to_csv(tmp / "cross_section.csv", index=False, float_format="%.17g")
        if sim_table is not None:
            sim_table.to_csv(tmp / "micro_table_simulated.csv", index=False, float_format="%.17g")
        _write_json(tmp / "summary.json", summary)
        save_figure(
            micro_table_figure(table, title=f"{code} households: {name}"),
            tmp / "micro_table.png",
        )


def _print_households(table, code: str, name: str) -> None:
    tab = Table(title=f"Households of {code} ({name}): exact weights", title_justify="left")
    for c in ("grouping", "group", "import share", "elasticity", "MPC", "mass"):
        tab.add_column(c, justify="left" if c in ("grouping", "group") else "right")
    for _, r in table.iterrows():
        tab.add_row(
            r["grouping"],
            r["group"],
            f"{r['import_share']:.4f}",
            f"{r['elasticity']:.3f}",
            f"{r['mpc']:.3f}",
            f"{r['mass']:.3f}",
        )
    print_table(tab)
